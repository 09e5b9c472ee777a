"""Where AdderFlow finds things outside the repository: the shared data folder and the user cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """The project's shared data folder (`../shared` beside the checkout), or $ADDERFLOW_SHARED."""
    env = os.environ.get("ADDERFLOW_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


def cache_dir() -> Path:
    """User cache for downloaded checkpoints and data sets ($ADDERFLOW_CACHE or ~/.cache/adderflow)."""
    return Path(os.environ.get("ADDERFLOW_CACHE", Path.home() / ".cache" / "adderflow"))
