"""Task results stored under a content hash of their inputs.

An entry is a folder `<root>/<stage>/<key>/` holding result.json (and the stage's files, e.g. the
quantized network), written in a temporary sibling and renamed into place only when complete: a sweep
killed half-way leaves finished entries intact and no half-written one, so a re-run resumes. Failures
are not stored (a re-run tries them again: a timeout or a memory limit may have been the cause).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump when a stage's result format or meaning changes: old entries are then simply not found.
CACHE_VERSION = "sweep-1"
RESULT = "result.json"

_file_digests: dict = {}


def file_digest(path) -> str:
    """sha256 of a file's bytes (or of every file below a folder); memoised per (path, size, mtime)."""
    p = Path(path)
    if not p.exists():
        return f"missing:{p}"
    st = p.stat()
    memo = (str(p), st.st_size, st.st_mtime_ns)
    if memo in _file_digests:
        return _file_digests[memo]
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
        if f.is_file():
            h.update(f.relative_to(p).as_posix().encode() if p.is_dir() else b"")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    _file_digests[memo] = d = h.hexdigest()
    return d


def task_key(stage: str, inputs: dict) -> str:
    """The content hash of one task: its stage, the cache version and its inputs (canonical JSON)."""
    text = json.dumps({"v": CACHE_VERSION, "stage": stage, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Cache:
    def __init__(self, root):
        self.root = Path(root)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> dict | None:
        """The stored result, or None (absent or unreadable: then it is recomputed)."""
        p = self.entry(stage, key) / RESULT
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def staging(self, stage: str, key: str) -> Path:
        """An empty temporary folder beside the entry, for the task to write its files into."""
        parent = self.root / stage
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))

    def commit(self, stage: str, key: str, tmp: Path, result: dict) -> dict:
        """Write result.json into `tmp` and rename it into place (atomic); if another worker finished the
        same task first, its entry is kept and this one dropped (both hold the same inputs' result)."""
        (Path(tmp) / RESULT).write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
        dest = self.entry(stage, key)
        try:
            os.rename(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return self.get(stage, key) or result
        return result

    def discard(self, tmp) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
