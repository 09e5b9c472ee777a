"""Find arithmetic `*`, `/` and `%` in a C++ function body (the "no multiplier in the SAD PE" checks).

A plain `"*" not in body` misses division and modulo (HLS builds dividers from LUTs/DSPs too) and trips
on pointer declarations and comments. Here: comments, string/char literals and preprocessor lines
(`#include <a/b.h>`, `#pragma HLS ...`) are blanked first, then every `*`, `/`, `%` (and `*=`, `/=`, `%=`)
is classified; `*` counts only when it is binary (after an operand, not a dereference or a pointer
declarator such as `T *p = ...;`, `const T* p`, `(T *)`, `<T *>`).

    from cxx_grep import arithmetic_ops
    assert arithmetic_ops(source, "sad_step") == []      # [(op, line, text), ...] otherwise

`function_bodies` raises ValueError when the function has no definition in `source`, so a renamed
function fails the check instead of passing it vacuously.
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"\.?\d(?:[\w.']|[eEpP][+-])*")
# keywords and builtin types after which `*` is a pointer declarator, never a multiplication
_DECL_WORDS = {"const", "volatile", "static", "constexpr", "typename", "struct", "class", "unsigned",
               "signed", "int", "char", "short", "long", "float", "double", "void", "bool", "auto",
               "register", "mutable", "extern", "inline", "operator"}
_STMT_START = {";", "{", "}", "(", ",", ":", None}


def strip_cxx(source: str) -> str:
    """`source` with comments, string and char literals and preprocessor lines replaced by spaces
    (newlines kept, so offsets and line numbers are unchanged)."""
    out, i, n = list(source), 0, len(source)
    line_start = True

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = source[i]
        if c == "\n":
            line_start = True
            i += 1
            continue
        if line_start and c == "#":          # preprocessor directive, with backslash continuations
            j = i
            while j < n and not (source[j] == "\n" and source[j - 1] != "\\"):
                j += 1
            blank(i, j)
            i = j
            continue
        if not c.isspace():
            line_start = False
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c == 'R' and source.startswith('R"', i) and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', source[i:])
            end = source.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            blank(i, j)
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and source[i - 1].isalnum() and i + 1 < n and source[i + 1].isalnum() \
                    and _NUMBER.match(_token_before(source, i)):
                i += 1                        # digit separator (1'000'000)
                continue
            j = i + 1
            while j < n and source[j] != c and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            blank(i, min(j + 1, n))
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _token_before(s: str, i: int) -> str:
    j = i
    while j > 0 and (s[j - 1].isalnum() or s[j - 1] in "_.'"):
        j -= 1
    return s[j:i]


def function_bodies(source: str, name: str) -> list:
    """[(start offset, body text including braces)] of every definition of `name` in `source` (the stripped
    text; overloads and specialisations all count). ValueError when there is none."""
    code = strip_cxx(source)
    found = []
    for m in re.finditer(r"(?<![\w.])" + re.escape(name) + r"\s*(<[^;{}()]*>\s*)?\(", code):
        i, depth = m.end(), 1
        while i < len(code) and depth:            # the parameter list
            depth += {"(": 1, ")": -1}.get(code[i], 0)
            i += 1
        tail = re.match(r"\s*(?:(?:const|noexcept|override|final|volatile)\s*)*\{", code[i:])
        if not tail:                              # a call or a declaration
            continue
        start = i + tail.end() - 1
        j, depth = start + 1, 1
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        found.append((start, code[start:j]))
    if not found:
        raise ValueError(f"no definition of C++ function '{name}' found")
    return found


def _tokens(code: str):
    """(kind, text, offset) with kind in ident/number/punct; multi-char operators kept whole."""
    ops = ("->*", "<<=", ">>=", "::", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
           "*=", "/=", "%=", "+=", "-=", "&=", "|=", "^=")
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c.isspace():
            i += 1
            continue
        m = _NUMBER.match(code, i) if c.isdigit() or (c == "." and i + 1 < n and code[i + 1].isdigit()) else None
        if m:
            yield "number", m.group(), i
            i = m.end()
            continue
        m = _IDENT.match(code, i)
        if m:
            yield "ident", m.group(), i
            i = m.end()
            continue
        op = next((o for o in ops if code.startswith(o, i)), c)
        yield "punct", op, i
        i += len(op)


def _is_binary_star(toks, k) -> bool:
    """Token k is `*` or `*=`: a multiplication, or a dereference / pointer declarator?"""
    if toks[k][1] == "*=":
        return True
    prev = toks[k - 1] if k > 0 else None
    nxt = toks[k + 1] if k + 1 < len(toks) else None
    if prev is None:
        return False
    if prev[0] == "number" or prev[1] in (")", "]"):
        return True
    if prev[0] != "ident" and prev[1] != ">":
        return False                                  # after an operator or `(`: unary dereference
    if prev[1] in _DECL_WORDS:
        return False
    if nxt is not None and nxt[1] in (")", ">", ",", "&", "const", "volatile"):
        return False                                  # abstract declarator: (T *), <T *>, T * const
    if prev[1] == ">":                                # T<A> *p at a statement start vs a > *b
        return False
    # `T *p = ...;` / `T *p;` at the start of a statement (or of a for-init): a declaration. Not `(a * b)`,
    # `f(x, a * b[i])`: inside a body those are products (a false alarm beats a missed multiplier).
    j = k - 2
    while j >= 1 and toks[j][1] == "::":             # ns::T *p
        j -= 2
    before = toks[j][1] if j >= 0 else None
    m = k + 1
    while m < len(toks) and toks[m][1] == "*":       # T **pp
        m += 1
    nxt = toks[m] if m < len(toks) else None
    after = toks[m + 1][1] if m + 1 < len(toks) else None
    if (before in _STMT_START or before in _DECL_WORDS) and nxt is not None and nxt[0] == "ident" \
            and after in ("=", ";", "{"):
        return False
    return True


def arithmetic_ops(source: str, name: str, ops: str = "*/%") -> list:
    """[(op, line number in source, stripped line text)] for each arithmetic use of an operator in `ops`
    inside the definition(s) of function `name`. An empty list means none."""
    code = strip_cxx(source)
    hits = []
    for start, body in function_bodies(source, name):
        toks = list(_tokens(body))
        for k, (kind, text, off) in enumerate(toks):
            if kind != "punct" or text.rstrip("=") not in ops or text not in ("*", "/", "%", "*=", "/=", "%="):
                continue
            if text in ("*", "*=") and not _is_binary_star(toks, k):
                continue
            pos = start + off
            line = code.count("\n", 0, pos) + 1
            hits.append((text, line, code.splitlines()[line - 1].strip()))
    return hits
