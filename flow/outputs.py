"""Safe outputs: every command checks its output path before any work, builds beside the target and swaps
the result in only when it is complete.

    with staged_output(out, force, inputs=(ckpt, data), kind="dir") as tmp:
        ...write everything under tmp...
    # here `out` is the new, complete folder (with a completion marker); the old one is gone

Rules (issue 12, "Safe inputs, no lost data"):
- all checks happen before anything is written: a bad path leaves the disk as it was;
- the result is written to a temporary sibling of the target (same file system, so the final rename is
  atomic) and swapped in at the end; an existing target is removed only after the new one is complete,
  and only with --force;
- an output that is, contains or lies inside an input (checkpoint, data, the build being packaged) is
  refused, so a --force can never delete what the command reads;
- a finished build folder holds MARKER; a consumer (package, report, bitstream, compare) refuses a build
  folder that has content but no marker: it is what an interrupted run leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from flow.errors import AdderFlowError

MARKER = ".adderflow-complete"
KINDS = ("dir", "file")
_TMP_TAG = ".adderflow-tmp-"   # temporary siblings: .<name>.adderflow-tmp-XXXX[.suffix]


def _abs(p) -> Path:
    """Absolute, with symlinks and `..` resolved, whether or not the path exists yet."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output(target, force: bool = False, inputs=(), kind: str = "dir", holders=(), what: str = "") -> Path:
    """Every check on an output path, nothing written; returns the path. Raises AdderFlowError (one line).

    inputs:  paths the command reads; the target must not be, contain or lie inside any of them.
    holders: folders holding inputs (e.g. the build being packaged); the target must not be or contain
             them, but may lie inside them (a new name beside the inputs, as the default package folder).
    what:    how the user named the path in messages (e.g. '--out'); the path alone when empty.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    target = Path(target)
    label = f"{what} {target}" if what else str(target)
    t = _abs(target)
    for h in holders:
        if h is None:
            continue
        hp = _abs(h)
        if _within(hp, t):
            how = "is" if t == hp else "contains"
            raise AdderFlowError(f"{label} {how} the input {h}: choose another output path")
    for inp in inputs:
        if inp is None or str(inp) == "" or not os.path.lexists(inp):
            continue                # not a path on disk (a model name, 'digits'): nothing to protect
        i = _abs(inp)
        if _within(t, i) or _within(i, t):
            how = "is" if t == i else ("contains" if _within(i, t) else "is inside")
            raise AdderFlowError(f"{label} {how} the input {inp}: choose another output path")
    if target.exists() or target.is_symlink():
        if kind == "dir":
            if not target.is_dir():
                raise AdderFlowError(f"{label} is a file, but a folder is needed here")
            if any(target.iterdir()) and not force:
                raise AdderFlowError(f"{label} exists and is not empty; pass --force to replace it")
        else:
            if target.is_dir():
                raise AdderFlowError(f"{label} is a folder, but a file name is needed here")
            if not force:
                raise AdderFlowError(f"{label} exists; pass --force to overwrite it")
    # the nearest existing ancestor must be a folder we may write into (the rest is created later)
    anc = t.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise AdderFlowError(f"{label}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise AdderFlowError(f"{label}: cannot write into {anc} (permission denied)")
    return target


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_marker(folder, command: str | None = None) -> Path:
    """Mark `folder` as a complete build (what wrote it and when)."""
    p = Path(folder) / MARKER
    p.write_text(json.dumps({"command": command or " ".join(["adderflow"] + sys.argv[1:]),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
    return p


def require_complete(build, what: str = "build") -> Path:
    """`build` must be a folder that a finished command marked complete; raises one line otherwise."""
    build = Path(build)
    if not build.is_dir():
        raise AdderFlowError(f"{build}: {what} folder not found" if not build.exists()
                             else f"{build} is a file, not a {what} folder")
    if not (build / MARKER).is_file():
        if any(build.iterdir()):
            raise AdderFlowError(f"incomplete {what} at {build} (no {MARKER}: the run that wrote it did not "
                                 f"finish), rerun it with --force")
        raise AdderFlowError(f"{build}: empty folder, not a {what}")
    return build


@contextmanager
def staged_output(target, force: bool = False, inputs=(), kind: str = "dir", holders=(), what: str = "",
                  mark: bool = True, command: str | None = None):
    """Check `target` (see check_output), yield a temporary path beside it, swap it in on success.

    kind="dir": the yielded folder exists (empty); on success it gets MARKER (unless mark=False) and
    replaces the target. kind="file": the yielded path does not exist yet and keeps the target's suffix
    (Keras picks the format from it); on success it replaces the target atomically (os.replace).
    On any exception (KeyboardInterrupt too) the temporary path is removed, folders this call created
    are removed again and the target is left as it was.
    """
    target = check_output(target, force, inputs, kind, holders, what)
    parent = _abs(target).parent
    created = []                    # folders made here, removed again on failure
    p = parent
    while not p.exists():
        created.append(p)
        p = p.parent
    label = f"{what} {target}" if what else str(target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{target.stem if kind == 'file' else target.name}{_TMP_TAG}"
        if kind == "dir":
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes it private; the output is an ordinary folder
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=target.suffix, dir=parent)
            os.close(fd)
            os.unlink(name)         # writers (np.savez, model.save) create the file themselves
            tmp = Path(name)
    except OSError as exc:
        _cleanup(None, created)
        raise AdderFlowError(f"{label}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield tmp
        if kind == "dir":
            if mark:
                write_marker(tmp, command)
            _swap_dir(tmp, _abs(target))
        else:
            if not tmp.exists():
                raise AdderFlowError(f"{label}: nothing was written")
            os.replace(tmp, _abs(target))
    except OSError as exc:
        _cleanup(tmp, created)
        name = exc.filename or target
        raise AdderFlowError(f"{name}: {exc.strerror or exc}") from None
    except BaseException:
        _cleanup(tmp, created)
        raise


def _swap_dir(tmp: Path, target: Path) -> None:
    """tmp -> target; the old target (checked: empty or --force) is renamed aside first and removed last."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}{_TMP_TAG}old-{os.getpid()}")
        _remove(old)
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)  # put the previous output back
        raise
    if old is not None:
        _remove(old)


def _cleanup(tmp: Path | None, created: list) -> None:
    if tmp is not None:
        _remove(tmp)
    for d in created:               # innermost first
        try:
            d.rmdir()
        except OSError:
            break


def staged_outputs(targets, force: bool = False, inputs=(), kind: str = "file", what: str = ""):
    """staged_output for several files written together (a model and its summary, a table and its chart).

    Every target is checked here, at the call, before any is written; entering the returned context
    yields the temporary paths in order; all are swapped in on success, none on failure."""
    from contextlib import ExitStack

    targets = [Path(t) for t in targets]
    for t in targets:
        check_output(t, force, inputs, kind, what=what)

    @contextmanager
    def _all():
        with ExitStack() as stack:
            yield [stack.enter_context(staged_output(t, force, inputs, kind, what=what)) for t in targets]

    return _all()
