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


def resource_dir(name: str, probe: str, env: str | None = None) -> Path:
    """A folder of files the package ships outside its Python modules (hls_templates/, overlays/,
    notebooks/): $env when set, the checkout next to the package, or <prefix>/share/adderflow/<name> where a
    non-editable install puts them (pyproject data-files). `probe` is a file the folder must hold."""
    import sys

    override = os.environ.get(env) if env else None
    candidates = ([Path(override)] if override else []) + [REPO_ROOT / name,
                                                           Path(sys.prefix) / "share" / "adderflow" / name]
    for c in candidates:
        if (c / probe).is_file():
            return c
    return candidates[0 if override else -1]


def hls_templates_dir() -> Path:
    """The C++ sources (hls_templates/; $ADDERFLOW_HLS_TEMPLATES overrides)."""
    return resource_dir("hls_templates", "nnet_adder_stream.h", "ADDERFLOW_HLS_TEMPLATES")


def overlays_dir() -> Path:
    """The Vivado block-design Tcl (overlays/)."""
    return resource_dir("overlays", "common/block_design.tcl")


def notebooks_dir() -> Path:
    return resource_dir("notebooks", "resnet20_cifar10.ipynb")
