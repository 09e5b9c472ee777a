"""What each task of a sweep computes, through the library entry points (never the CLI).

A task is a plain dict (it crosses process and machine boundaries): stage, key, cache root, params.
`execute(task)` runs it and stores its result in the cache; `key_inputs` says which inputs its content
hash covers: file contents rather than paths, and the quantized network's own digest for every stage
after quantize (one quantization serves every board, design and data set).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from flow.errors import AdderFlowError
from flow.sweep.cache import Cache, file_digest

SOURCE_ESTIMATE = "estimate"
QNET_DIR = "qnet"
# stages a sweep accepts whose tool is not part of this version (issue 11 adds them)
NOT_AVAILABLE = {"cosim": "not available in this version", "yosys": "not available in this version"}
VENDOR_TOOL = {"synth": "vitis_hls"}
COMPUTED = ("quantize", "accuracy", "estimate", "csim")


def computed_stages() -> tuple:
    """The stages that run here: vendor synthesis too when its tool is on PATH."""
    return COMPUTED + tuple(s for s, tool in VENDOR_TOOL.items() if shutil.which(tool))


def _digest_or_name(v):
    return None if v is None else (v if v == "digits" else file_digest(v))


def quantize_inputs(cfg: dict) -> dict:
    from flow.quant.redistribution import DEFAULT_METHOD

    return {"model": cfg["model"], "weights": _digest_or_name(cfg["weights"]), "calib": _digest_or_name(cfg["calib"]),
            "calib_limit": cfg["calib_limit"], "bits": cfg["bits"], "groups": cfg["groups"], "alpha": cfg["alpha"],
            "method": cfg["method"] or DEFAULT_METHOD, "options": cfg["options"] or {}}


def stage_inputs(stage: str, cfg: dict, qnet_digest: str) -> dict:
    """What a stage after quantize depends on, beside the quantized network."""
    if stage == "accuracy":
        return {"qnet": qnet_digest, "data": _digest_or_name(cfg["data"]), "images": cfg["images"]}
    if stage == "estimate":
        return {"qnet": qnet_digest, "board": cfg["board"], "zero_dsp": bool(cfg["zero_dsp"]),
                "target_fps": cfg["target_fps"], "lut_limit": cfg["lut_limit"]}
    if stage == "csim":
        return {"qnet": qnet_digest, "board": cfg["board"], "zero_dsp": bool(cfg["zero_dsp"]),
                "data": _digest_or_name(cfg["data"]), "images": cfg["csim_images"]}
    if stage == "synth":
        return {"qnet": qnet_digest, "board": cfg["board"], "zero_dsp": bool(cfg["zero_dsp"]),
                "lut_limit": cfg["lut_limit"], "tool": shutil.which(VENDOR_TOOL["synth"])}
    raise ValueError(stage)


def not_run_reason(stage: str) -> str | None:
    """Why a stage is recorded without running (never as done), or None when it runs."""
    if stage in NOT_AVAILABLE:
        return NOT_AVAILABLE[stage]
    if stage in VENDOR_TOOL:
        tool = VENDOR_TOOL[stage]
        if shutil.which(tool) is None:
            return f"skipped: {tool} not on PATH"
    return None


# ---- the stages (each: params, an empty folder of its own -> a JSON-able result) ----------------------

def run_quantize(p: dict, out: Path) -> dict:
    from flow.commands.quantize import load_calibration
    from flow.quant import quantize
    from flow.quant.redistribution import DEFAULT_METHOD

    x = load_calibration(p["calib"], p["calib_limit"])
    qnet = quantize(p["model"], p["weights"], x, bits=p["bits"], groups=p["groups"], alpha=p["alpha"],
                    method=p["method"] or DEFAULT_METHOD, **(p["options"] or {}))
    qnet.save(out / QNET_DIR)
    return {"qnet_digest": file_digest(out / QNET_DIR), "calib_images": int(len(x))}


def _qnet(p: dict):
    from flow.qnet import load

    return load(p["qnet_dir"])


def run_accuracy(p: dict, out: Path) -> dict:
    from flow import golden
    from flow.data import load_dataset

    qnet = _qnet(p)
    x, y = load_dataset(p["data"], split="test", limit=p["images"])
    logits = golden.predict_int(qnet, x).reshape(len(x), -1)
    return {"accuracy": float((logits.argmax(1) == y).mean()), "images": int(len(x)),
            "source": f"golden model, {len(x)} test images"}


def run_estimate(p: dict, out: Path) -> dict:
    from flow.boards import get_board
    from flow.report.fit import fit_reuse, max_fps_that_fits, smallest_design

    board = get_board(p["board"])
    qnet = _qnet(p)
    kw = {"shift_add_all": bool(p["zero_dsp"])}
    if p["target_fps"]:
        f = fit_reuse(qnet, board, float(p["target_fps"]), board.clock_mhz, weights_to_bram=True, **kw)
        fit = (f if f["fits"] and f["meets_target"] else f.get("max_fps_that_fits")) or {"reuse": None}
        if fit is f:
            fit = {"fps": f["latency"]["images_per_s"], "interval_cycles": f["latency"]["interval_cycles"],
                   "reuse": f["reuse"], "resources": f["resources"],
                   "utilisation_pct": {k: v["utilisation_pct"] for k, v in f["board_fit"]["resources"].items()}}
    else:
        fit = max_fps_that_fits(qnet, board, board.clock_mhz, weights_to_bram=True,
                                lut_limit_pct=float(p["lut_limit"]), **kw)
    res = {"source": SOURCE_ESTIMATE, "board": board.name, "clock_mhz": board.clock_mhz,
           "zero_dsp": bool(p["zero_dsp"]), "fits": fit.get("reuse") is not None}
    if res["fits"]:
        res.update(fps=float(fit["fps"]), interval_cycles=int(fit["interval_cycles"]), reuse=fit["reuse"],
                   resources=fit["resources"], utilisation_pct=fit["utilisation_pct"])
    else:
        # nothing fits: what the smallest design (the largest reuse everywhere) would need
        small = smallest_design(qnet, board, board.clock_mhz, **kw)
        res.update(fps=0.0, note=fit.get("note", "does not fit"),
                   smallest_design={k: small[k] for k in ("LUT", "FF", "BRAM_18K", "DSP")},
                   smallest_lut_pct=round(100.0 * small["LUT"] / board.lut, 1))
    return res


def run_csim(p: dict, out: Path) -> dict:
    from flow.data import load_dataset
    from flow.hls.build import build

    qnet = _qnet(p)
    x, y = load_dataset(p["data"], split="test", limit=p["images"])
    # one process: a sweep task already runs in a pool worker, which may not start workers of its own
    b = build(qnet, out / "build", p["board"], images=x, labels=y, dsp="zero" if p["zero_dsp"] else "plain",
              force=True, csim_workers=1)
    cs = b.csim_result or {}
    # the build folder is large and nothing later reads it: keep the figures only
    shutil.rmtree(out / "build", ignore_errors=True)
    return {"source": "csim", "images": cs.get("images"), "mismatches": cs.get("mismatches"),
            "csim_images_per_s": cs.get("csim_images_per_s")}


def run_synth(p: dict, out: Path) -> dict:
    """The default design (as `adderflow hls` builds it) through vitis_hls csynth; the vendor report's
    figures, labelled with their source. A run that writes no report is an error, never a result."""
    from flow.hls.build import build
    from flow.report.parse import parse_reports

    b = build(_qnet(p), out / "build", p["board"], dsp="zero" if p["zero_dsp"] else "plain", force=True,
              lut_limit=float(p["lut_limit"]))
    b.synth()
    vendor = parse_reports(b.hls_dir)
    if not vendor:
        raise AdderFlowError(f"vitis_hls ran but wrote no csynth report under {b.hls_dir}")
    rep = b.report()
    shutil.rmtree(out / "build", ignore_errors=True)
    return {"source": rep["resources"].get("source"), "resources": {k: rep["resources"].get(k) for k in
                                                                   ("LUT", "FF", "BRAM_18K", "DSP")},
            "latency": {k: rep["latency"].get(k) for k in ("source", "cycles", "interval_cycles", "images_per_s")}}


RUNNERS = {"quantize": run_quantize, "accuracy": run_accuracy, "estimate": run_estimate, "csim": run_csim,
           "synth": run_synth}


def execute(task: dict) -> dict:
    """Run one task and store its result; a result another worker stored meanwhile is returned as is."""
    cache = Cache(task["cache"])
    stage, key = task["stage"], task["key"]
    hit = cache.get(stage, key)
    if hit is not None:
        return hit
    tmp = cache.staging(stage, key)
    try:
        t = time.perf_counter()
        result = RUNNERS[stage](task["params"], tmp)
        result["seconds"] = round(time.perf_counter() - t, 3)
        return cache.commit(stage, key, tmp, result)
    except BaseException:
        cache.discard(tmp)
        raise


def check_stage_error(exc: BaseException, memory_gb: float | None = None) -> str:
    """One line for a failed task: the user's error as is, anything else named with its type (shortened);
    running into the address-space cap shows up as MemoryError or as a library that cannot be mapped."""
    text = " ".join(str(exc).split())
    out_of_memory = isinstance(exc, MemoryError) or (
        isinstance(exc, (ImportError, OSError)) and ("failed to map segment" in text or "Cannot allocate memory" in text))
    if out_of_memory:
        return f"ran out of memory ({type(exc).__name__} under limits.memory_gb = {memory_gb:g})"
    if not isinstance(exc, AdderFlowError):
        text = f"{type(exc).__name__}: {text}"
        if len(text) > 300:
            text = text[:297] + "..."
    return text or type(exc).__name__
