"""Gather what the board needs into one folder (or zip): bitstream + .hwh, the driver, the network,
the notebook, sample images and the build report. Copy it to the board (e.g. into
/home/xilinx/jupyter_notebooks/) and open the notebook there."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from flow.board import axi_top
from flow.errors import AdderFlowError
from flow.paths import REPO_ROOT, notebooks_dir, shared_dir

DRIVER_FILES = ["flow/__init__.py", "flow/errors.py", "flow/qnet.py"]
NOTEBOOK = notebooks_dir() / "resnet20_cifar10.ipynb"
SAMPLES = "samples.npz"


def _default_samples() -> Path | None:
    d = shared_dir()
    p = d / "data" / "cifar10_test1k.npz" if d else None
    return p if p is not None and p.is_file() else None


def make_package(build, board: str, out=None, samples=None, n_samples: int = 100, force: bool = False) -> dict:
    """Write the package; returns {"path", "files", "missing"} (missing: what could not be included and why).

    Everything is checked before anything is written; the package is built beside `out` and swapped in
    complete (flow.outputs), so a failure or --force never loses the build or a previous package."""
    from flow.outputs import require_complete, staged_output

    build = require_complete(Path(build)).resolve()
    if not (build / "qnet").is_dir():
        raise AdderFlowError(f"{build}: no qnet/ (not a build folder written by `adderflow hls`)")
    report = json.loads((build / "report.json").read_text()) if (build / "report.json").is_file() else {}
    if report.get("board") and report["board"] != board:
        raise AdderFlowError(f"{build} was built for {report['board']}, not {board}")
    if n_samples < 1:
        raise AdderFlowError(f"--n-samples must be >= 1, got {n_samples}")
    if samples and not Path(samples).is_file():
        raise AdderFlowError(f"--samples {samples}: file not found")
    src = Path(samples) if samples else _default_samples()
    sample_arrays = _load_samples(src, n_samples) if src is not None else None
    out = Path(out) if out else build / f"package_{board}"
    as_zip = out.suffix == ".zip"
    # what the package is made of: --out may sit inside the build (the default does) but never on them
    inputs = [build / n for n in ("qnet", "hls_prj", "bitstream", "report.json")] + [src]
    with staged_output(out, force, inputs=inputs, holders=[build], kind="file" if as_zip else "dir",
                       what="--out") as tmp:
        if as_zip:
            with tempfile.TemporaryDirectory() as scratch:
                stage = Path(scratch) / out.stem
                missing = _stage(build, board, stage, sample_arrays, report)
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                    for p in sorted(stage.rglob("*")):
                        if p.is_file():
                            zf.write(p, Path(stage.name) / p.relative_to(stage))
                files = _files(stage)
        else:
            missing = _stage(build, board, tmp, sample_arrays, report)
            files = _files(tmp)
    return {"path": out, "files": files, "missing": missing}


def _files(stage: Path) -> list:
    return sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())


def _load_samples(src: Path, n_samples: int):
    """(x, y or None) of the sample set, checked before anything is written; None when it is absent."""
    if not src.is_file():
        return None
    try:
        with np.load(src) as z:
            if "x" not in z.files:
                raise AdderFlowError(f"{src}: sample set needs arrays x (uint8 NHWC) and y")
            x, y = z["x"][:n_samples], z["y"][:n_samples] if "y" in z.files else None
    except (OSError, ValueError) as exc:
        raise AdderFlowError(f"{src}: cannot read the sample set ({type(exc).__name__})") from None
    if x.dtype != np.uint8:
        raise AdderFlowError(f"{src}: x must be uint8 images, got {x.dtype}")
    return x, y


def _stage(build: Path, board: str, stage: Path, sample_arrays, report: dict) -> dict:
    stage.mkdir(parents=True, exist_ok=True)
    missing = {}
    bitdir = build / "bitstream"
    for ext in ("bit", "hwh"):
        src = bitdir / f"adderflow.{ext}"
        if src.is_file():
            shutil.copyfile(src, stage / src.name)
        else:
            missing[src.name] = (f"not in {bitdir}: run `adderflow bitstream --board {board} {build}` "
                                 "on a machine with Vivado (the board cannot load the overlay without it)")
    ip = build / "hls_prj" / axi_top.IP_JSON
    if ip.is_file():
        shutil.copyfile(ip, stage / ip.name)
    else:
        missing[ip.name] = "no AXI wrapper generated (the driver falls back to default register offsets)"
    shutil.copytree(build / "qnet", stage / "qnet")
    for rel in DRIVER_FILES:
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / rel, stage / rel)
    shutil.copytree(REPO_ROOT / "flow" / "driver", stage / "flow" / "driver",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if NOTEBOOK.is_file():
        shutil.copyfile(NOTEBOOK, stage / NOTEBOOK.name)
    else:
        missing[NOTEBOOK.name] = f"{NOTEBOOK} not found"
    if sample_arrays is not None:
        x, y = sample_arrays
        np.savez_compressed(stage / SAMPLES, x=x, **({"y": np.asarray(y).ravel()} if y is not None else {}))
    else:
        missing[SAMPLES] = "no sample set (pass --samples D.npz; ../shared/data/cifar10_test1k.npz is absent)"
    if report:
        (stage / "report.json").write_text(json.dumps(report, indent=1))
    else:
        missing["report.json"] = f"{build / 'report.json'} not found"
    manifest = {"board": board, "build": str(build), "missing": missing,
                "files": {str(p.relative_to(stage)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                          for p in sorted(stage.rglob("*")) if p.is_file()}}
    (stage / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    (stage / "README.txt").write_text(_readme(board, missing))
    return missing


def _readme(board: str, missing: dict) -> str:
    lines = [f"AdderFlow package for {board}",
             "",
             "On the board: copy this folder next to your notebooks (e.g. /home/xilinx/jupyter_notebooks/adderflow)",
             "and open resnet20_cifar10.ipynb, or from Python in this folder:",
             "",
             "    from flow.driver import open_overlay",
             "    ov = open_overlay('.')              # loads adderflow.bit (+ .hwh) and qnet/",
             "    ov.classify(images_uint8)           # (N, 32, 32, 3) uint8",
             "",
             "Needs only numpy and pynq (PYNQ images ship both)."]
    if missing:
        lines += ["", "MISSING from this package:"] + [f"  {k}: {v}" for k, v in missing.items()]
    return "\n".join(lines) + "\n"
