"""The sweep file: fixed settings at the top level, a cartesian `grid:`, an optional `configs:` list.

    model: resnet20
    weights: ${ADDERFLOW_SHARED}/models/ResNet20-AdderNet.pth
    calib: ${ADDERFLOW_SHARED}/data/cifar10_train2k.npz
    data: ${ADDERFLOW_SHARED}/data/cifar10_test1k.npz
    images: 1000
    grid: {bits: [3, 4, 5, 6, 8], board: [pynq-z2, ultra96v2, kv260, zcu104], zero_dsp: [true, false]}
    stages: [quantize, accuracy, estimate]      # + csim, cosim, yosys, synth
    limits: {seconds: 900, memory_gb: 8}

Relative paths are relative to the sweep file's folder; `$VARS` are expanded ($ADDERFLOW_SHARED defaults
to the project's shared folder). The shape of the file is checked here (one line naming the file and the
key); the values of one configuration (a board name, bits=1) are checked by its tasks, so a bad
configuration is recorded with its error and the others still run.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from flow.errors import AdderFlowError

# What one configuration may set (top level, grid axis or configs entry), with its default.
CONFIG_DEFAULTS = {
    "model": None,
    "weights": None,        # None: seeded random weights (accuracy meaningless)
    "calib": None,
    "calib_limit": 512,
    "data": None,
    "images": 1000,         # test images for accuracy
    "csim_images": 10,      # C simulation is slow (~7 images/s): a small N of its own
    "bits": 4,              # an int, or a per-layer dict as flow.quant.QuantConfig takes
    "groups": 4,
    "alpha": None,
    "method": None,         # None: flow.quant's default method
    "options": {},          # further QuantConfig fields (bits_first, apot_requant, ...)
    "board": "kv260",
    "zero_dsp": True,       # shift-add constants everywhere (no DSP) or plain
    "target_fps": None,     # None: the fastest design that fits the board (estimate)
    "lut_limit": 85.0,      # % of the board's LUTs a design may use
}
PATH_KEYS = ("weights", "calib", "data")
STAGES = ("quantize", "accuracy", "estimate", "csim", "cosim", "yosys", "synth")
DEFAULT_STAGES = ["quantize", "accuracy", "estimate"]
SWEEP_KEYS = ("grid", "configs", "stages", "limits", "workers")
DEFAULT_LIMITS = {"seconds": 900.0, "memory_gb": 8.0}


@dataclass
class Sweep:
    configs: list                       # one dict per configuration (every CONFIG_DEFAULTS key)
    stages: list
    limits: dict = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    workers: int | None = None
    source: str = ""
    varying: list = field(default_factory=list)   # keys whose value differs between configurations

    def label(self, cfg: dict) -> str:
        keys = self.varying or ["model"]
        return " ".join(f"{k}={_short(cfg[k])}" for k in keys)


def _short(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def load_sweep(path) -> Sweep:
    """Read and check a sweep file; raises AdderFlowError with one line naming the file and the key."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AdderFlowError(f"{p}: sweep file not found")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise AdderFlowError(f"{p}:{where} not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__})") from None
    return parse_sweep(doc, p)


def parse_sweep(doc, path: Path) -> Sweep:
    src = str(path)
    if not isinstance(doc, dict):
        raise AdderFlowError(f"{src}: a sweep file is a mapping of settings (model, grid, stages, ...)")
    unknown = [k for k in doc if k not in CONFIG_DEFAULTS and k not in SWEEP_KEYS]
    if unknown:
        raise AdderFlowError(f"{src}: unknown key '{unknown[0]}' (choose from "
                             f"{', '.join(list(CONFIG_DEFAULTS) + list(SWEEP_KEYS))})")
    base = {k: doc.get(k, v) for k, v in CONFIG_DEFAULTS.items()}

    grid = doc.get("grid") or {}
    if not isinstance(grid, dict):
        raise AdderFlowError(f"{src}: 'grid' must map settings to lists of values")
    for k, vals in grid.items():
        if k not in CONFIG_DEFAULTS:
            raise AdderFlowError(f"{src}: grid: unknown key '{k}' (choose from {', '.join(CONFIG_DEFAULTS)})")
        if not isinstance(vals, list) or not vals:
            raise AdderFlowError(f"{src}: grid: '{k}' must be a non-empty list of values")
    extra = doc.get("configs") or []
    if not isinstance(extra, list) or not all(isinstance(c, dict) for c in extra):
        raise AdderFlowError(f"{src}: 'configs' must be a list of mappings")
    for i, c in enumerate(extra):
        bad = [k for k in c if k not in CONFIG_DEFAULTS]
        if bad:
            raise AdderFlowError(f"{src}: configs[{i}]: unknown key '{bad[0]}' (choose from {', '.join(CONFIG_DEFAULTS)})")

    configs = []
    if grid or not extra:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            configs.append({**base, **dict(zip(keys, combo))})
    configs += [{**base, **c} for c in extra]
    from flow.quant.redistribution import DEFAULT_METHOD

    for cfg in configs:
        cfg["method"] = cfg["method"] or DEFAULT_METHOD
        for k in PATH_KEYS:
            cfg[k] = resolve_path(cfg[k], path.parent)
        if cfg["model"] is None:
            raise AdderFlowError(f"{src}: 'model' is not set (top level, grid or each configs entry)")

    stages = doc.get("stages", DEFAULT_STAGES)
    if not isinstance(stages, list) or not stages:
        raise AdderFlowError(f"{src}: 'stages' must be a non-empty list (from {', '.join(STAGES)})")
    for s in stages:
        if s not in STAGES:
            raise AdderFlowError(f"{src}: stages: unknown stage '{s}' (choose from {', '.join(STAGES)})")
    # every later stage needs the quantized network: one quantization serves them all
    stages = ["quantize"] + [s for s in STAGES if s in stages and s != "quantize"]
    for s, key in (("accuracy", "data"), ("quantize", "calib")):
        if s in stages and any(c[key] is None for c in configs):
            raise AdderFlowError(f"{src}: stage '{s}' needs '{key}' (a data file, or 'digits')")

    limits = {**DEFAULT_LIMITS, **(doc.get("limits") or {})}
    for k, v in limits.items():
        if k not in DEFAULT_LIMITS:
            raise AdderFlowError(f"{src}: limits: unknown key '{k}' (choose from {', '.join(DEFAULT_LIMITS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise AdderFlowError(f"{src}: limits: '{k}' must be a positive number, got {v!r}")
    workers = doc.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise AdderFlowError(f"{src}: 'workers' must be a positive integer, got {workers!r}")

    varying = [k for k in CONFIG_DEFAULTS if len({repr(c[k]) for c in configs}) > 1]
    return Sweep(configs, stages, {k: float(v) for k, v in limits.items()}, workers, src, varying)


def resolve_path(value, folder: Path):
    """A data/weights setting: None, 'digits' (a named data set), or a path ($VARS expanded, relative to
    the sweep file's folder)."""
    if value is None:
        return None
    text = str(value)
    if text == "digits":
        return text
    if "ADDERFLOW_SHARED" in text and "ADDERFLOW_SHARED" not in os.environ:
        from flow.paths import shared_dir

        d = shared_dir()
        if d is not None:
            text = text.replace("${ADDERFLOW_SHARED}", str(d)).replace("$ADDERFLOW_SHARED", str(d))
    p = Path(os.path.expanduser(os.path.expandvars(text)))
    return str(p if p.is_absolute() else (folder / p).resolve())
