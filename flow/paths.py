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


def hls_templates_dir() -> Path:
    """The C++ sources (hls_templates/): $ADDERFLOW_HLS_TEMPLATES, the checkout next to the package, or
    <prefix>/share/adderflow/hls_templates where a non-editable install puts them (pyproject data-files)."""
    import sys

    env = os.environ.get("ADDERFLOW_HLS_TEMPLATES")
    candidates = ([Path(env)] if env else []) + [REPO_ROOT / "hls_templates",
                                                 Path(sys.prefix) / "share" / "adderflow" / "hls_templates"]
    for c in candidates:
        if (c / "nnet_adder_stream.h").is_file():
            return c
    return candidates[-1 if not env else 0]
