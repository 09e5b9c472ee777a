"""QNet -> AdderVitis hls4ml model: configuration, conversion, C simulation helpers, test vectors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.hls import schedule
from flow.qnet import QNet

BACKEND = "AdderVitis"
TUNABLE = schedule.TUNABLE_KINDS


def legal_reuse(qnet: QNet) -> dict:
    """{window/dense op: its legal reuse factors} (requant reuse follows its window layer when fused)."""
    return {op.name: schedule.legal_reuse_factors(schedule.inputs_per_output(op))
            for op in qnet.ops if op.kind in TUNABLE}


def resolve_reuse(qnet: QNet, reuse: int = 1, reuse_config: dict | None = None) -> tuple:
    """({op: RF}, [adjustments]) for every window/dense op. A per-layer entry must be legal (else one
    error naming the layer and the nearest legal values); the model-wide default becomes, per layer, the
    largest legal value not above it (as hls4ml does for its default ReuseFactor), and each change is
    listed. A requant gets 1 unless named (a fused one follows its window layer's RF)."""
    if int(reuse) < 1:
        raise AdderFlowError(f"reuse factor must be >= 1, got {reuse}")
    cfg = dict(reuse_config or {})
    unknown = set(cfg) - {op.name for op in qnet.ops}
    if unknown:
        raise AdderFlowError(f"reuse config names unknown layers: {', '.join(sorted(unknown))}")
    out, adjusted = {}, []
    for op in qnet.ops:
        if op.name in cfg:
            rf = int(cfg[op.name])
            if rf < 1:
                raise AdderFlowError(f"reuse factor of layer {op.name} must be >= 1, got {rf}")
            if op.kind in TUNABLE:
                schedule.check_reuse(op.name, schedule.inputs_per_output(op), rf)
            elif op.kind == "requant":
                schedule.check_reuse(op.name, qnet.tensors[op.output].shape[-1], rf,
                                     "requant reuse factor (channels per lane)")
            out[op.name] = rf
        elif op.kind in TUNABLE:
            legal = schedule.legal_reuse_factors(schedule.inputs_per_output(op))
            rf = max(v for v in legal if v <= int(reuse))
            if rf != int(reuse):
                adjusted.append(f"{op.name}: {reuse} -> {rf}")
            out[op.name] = rf
        else:
            out[op.name] = 1
    return out, adjusted


def hls_config(qnet: QNet, reuse: int = 1, reuse_config: dict | None = None, shift_add: bool = False,
               stream_depths: str = "minimal", bram_weights=(), fuse_requant: bool = True) -> dict:
    """hls4ml config dict: per-layer ReuseFactor (resolve_reuse: `reuse_config` {layer: RF} overrides the
    model-wide `reuse`), optional zero-DSP shift-add constants. Layer names are the QNet op names.
    `stream_depths`: 'minimal' FIFOs (flow.hls.stream_depths) or 'hls4ml-default' (a whole tensor per
    stream). `bram_weights`: window/dense layers whose weight ROM is bound to BRAM (WeightStorage =
    'bram'; meaningful where RF > 1, with RF = 1 weights are constants). `fuse_requant`: requants fused
    into the window layer feeding them (passes/fuse_requant.py)."""
    if stream_depths not in ("minimal", "hls4ml-default"):
        raise AdderFlowError(f"stream_depths must be 'minimal' or 'hls4ml-default', got {stream_depths}")
    rfs, _ = resolve_reuse(qnet, reuse, reuse_config)
    layers = {name: {"ReuseFactor": rf, "Trace": False} for name, rf in rfs.items()}
    for name in bram_weights or ():
        if name not in layers or qnet.op(name).kind not in TUNABLE:
            raise AdderFlowError(f"bram_weights: {name} is not a window/dense layer of the network")
        layers[name]["WeightStorage"] = "bram"
    return {"Model": {"Precision": "ap_int<32>", "ReuseFactor": 1, "Strategy": "Resource",
                      "ShiftAdd": bool(shift_add), "StreamDepths": stream_depths, "FuseRequant": bool(fuse_requant)},
            "LayerName": layers}


# The per-layer keys of an hls4ml config this backend honours; anything else is an error, never dropped.
HONOURED_LAYER_KEYS = ("ReuseFactor",)


def load_reuse_config(path) -> dict:
    """YAML/JSON {layer name: reuse factor}, or an hls4ml-style {LayerName: {name: {ReuseFactor: R}}}. Keys
    this backend does not implement (Strategy, Precision, ... per layer; anything beside LayerName) are an
    error naming them: a setting that is silently ignored is a design the user did not ask for."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AdderFlowError(f"reuse config {p} does not exist")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AdderFlowError(f"reuse config {p}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise AdderFlowError(f"reuse config {p}: expected {{layer name: integer reuse factor}}")
    if "LayerName" in doc:
        extra = sorted(set(doc) - {"LayerName"})
        if extra:
            raise AdderFlowError(f"reuse config {p}: keys {', '.join(extra)} are not honoured by AdderVitis "
                                 f"(only LayerName.<layer>.{'/'.join(HONOURED_LAYER_KEYS)})")
        out = {}
        for name, v in (doc["LayerName"] or {}).items():
            unknown = sorted(set(v or {}) - set(HONOURED_LAYER_KEYS)) if isinstance(v, dict) else ["(not a mapping)"]
            if unknown:
                raise AdderFlowError(f"reuse config {p}: layer {name}: {', '.join(unknown)} not honoured by "
                                     f"AdderVitis (only {', '.join(HONOURED_LAYER_KEYS)})")
            out[name] = v.get("ReuseFactor")
        doc = out
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in doc.values()):
        raise AdderFlowError(f"reuse config {p}: expected {{layer name: integer reuse factor}}")
    return doc


def convert(qnet: QNet, output_dir, part: str = "xc7z020clg400-1", clock_mhz: float = 100.0, reuse: int = 1,
            reuse_config: dict | None = None, shift_add: bool = False, keras_model=None,
            stream_depths: str = "minimal", bram_weights=(), fuse_requant: bool = True):
    """Write nothing yet: build the hls4ml model of a QNet on the AdderVitis backend (io_stream)."""
    import hls4ml

    from flow.qlayers import qnet_to_keras

    model = keras_model if keras_model is not None else qnet_to_keras(qnet)
    cfg = hls_config(qnet, reuse, reuse_config, shift_add, stream_depths, bram_weights, fuse_requant)
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, backend=BACKEND, io_type="io_stream", output_dir=str(output_dir), part=part,
        clock_period=round(1000.0 / clock_mhz, 3), project_name="myproject")


def compile_model(hls_model) -> float:
    """g++ build of the C simulation library; returns seconds."""
    t0 = time.perf_counter()
    try:
        hls_model.compile()
    except Exception as exc:  # hls4ml prints the compiler log itself
        raise AdderFlowError(f"g++ compile of {hls_model.config.get_output_dir()} failed: {exc}") from None
    return time.perf_counter() - t0


def csim_predict(hls_model, x_int: np.ndarray) -> np.ndarray:
    """C simulation on integer inputs (N, H, W, C); returns int64 outputs (N, ...)."""
    x = np.ascontiguousarray(np.asarray(x_int, dtype=np.float32))
    y = hls_model.predict(x)
    if isinstance(y, list):
        y = y[0]
    y = np.asarray(y, dtype=np.float64).reshape(len(x_int), -1)
    yi = np.rint(y).astype(np.int64)
    if not np.array_equal(yi, y):
        raise AdderFlowError("C simulation returned non-integer outputs")
    return yi


def layer_multipliers(hls_model) -> dict:
    """{layer name: constant multipliers left in its datapath} (0 everywhere with shift-add)."""
    return {layer.name: int(layer.get_attr("multipliers")) for layer in hls_model.get_layers()
            if layer.get_attr("multipliers") is not None}


def write_tb_data(hls_dir, x_int: np.ndarray, y_int: np.ndarray) -> None:
    """tb_data/tb_input_features.dat and tb_output_predictions.dat (one image per line, as hls4ml does),
    so csim and RTL co-simulation in build_prj.tcl check the golden model's outputs."""
    d = Path(hls_dir) / "tb_data"
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in (("tb_input_features.dat", x_int), ("tb_output_predictions.dat", y_int)):
        rows = np.asarray(arr, dtype=np.int64).reshape(len(arr), -1)
        (d / name).write_text("".join(" ".join(str(int(v)) for v in r) + "\n" for r in rows))


def vitis_hls_available() -> bool:
    import shutil

    return shutil.which("vitis_hls") is not None


def set_build_options(hls_dir, csim=True, synth=True, cosim=True, export=True, fifo_opt=False) -> None:
    """build_opt.tcl read by build_prj.tcl (`vitis_hls -f build_prj.tcl`). `fifo_opt`: the cosim is the FIFO
    depth profiling run of hls4ml's fifo_depth_optimization (flow.hls.fifo_depths): it needs synth and
    cosim, and its csim/cosim comparison is skipped (the profiling streams are not the design's)."""
    if fifo_opt and not (synth and cosim):
        raise AdderFlowError("fifo_opt profiles the FIFOs in RTL co-simulation: it needs synth=True and cosim=True")
    opts = dict(reset=0, csim=int(csim), synth=int(synth), cosim=int(cosim), validation=int(cosim and not fifo_opt),
                export=int(export), vsynth=0, fifo_opt=int(bool(fifo_opt)))
    body = "".join(f"    {k:<10} {v}\n" for k, v in opts.items())
    Path(hls_dir, "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")


def _csim_axi_chunk(args) -> np.ndarray:
    """One worker: the whole chunk in ONE adderflow_top call (n_images = chunk), as the DMA would send it."""
    lib_path, x_int, inp, out = args
    from flow.driver.emulation import CsimLibrary
    from flow.driver.packing import pack, unpack

    lib = CsimLibrary(lib_path)
    lib.check_layouts(inp, out)
    words_in = pack(x_int, inp).reshape(-1)
    buf = np.zeros(len(x_int) * out.bytes_per_image, np.uint8)
    res = lib.run(words_in, buf, len(x_int))
    if res["status"] or res["out_words"] != len(x_int) * out.words or res["tlast_word"] != res["out_words"] - 1:
        raise AdderFlowError(f"C simulation of the AXI top: status {res['status']:#x}, {res['out_words']} output "
                             f"words (TLAST at {res['tlast_word']}) for {len(x_int)} images of {out.words} words")
    return unpack(buf, out, len(x_int))


def csim_axi(hls_dir, qnet: QNet, x_int: np.ndarray, workers: int | None = None, chunk: int | None = None,
             progress: bool = True) -> np.ndarray:
    """C simulation of the IP that is synthesized: adderflow_top (AXI unpack -> the network with n_images
    -> AXI pack) compiled with g++, each chunk of images in one call, so the image loop of every process
    runs. Chunks run in `workers` processes (default: the CPUs this process may use). Returns int64 logits."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm import tqdm

    from flow.driver.emulation import build_csim_library
    from flow.driver.packing import input_layout, output_layout

    lib = build_csim_library(hls_dir, opt="-O3")
    inp, out = input_layout(qnet), output_layout(qnet)
    x_int = np.asarray(x_int, np.int64)
    workers = max(1, workers or len(os.sched_getaffinity(0)))
    # chunks small enough to share the images among the workers and show progress, large enough that
    # each call runs several images back to back
    chunk = chunk or max(2, min(50, -(-len(x_int) // (2 * workers))))
    jobs = [(str(lib), x_int[i:i + chunk], inp, out) for i in range(0, len(x_int), chunk)]
    workers = min(workers, len(jobs))
    bar = tqdm(total=len(x_int), desc="C simulation (AXI top)", unit="img", leave=False, disable=not progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_csim_axi_chunk(job))
            bar.update(len(job[1]))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for job, y in zip(jobs, pool.map(_csim_axi_chunk, jobs)):
                results.append(y)
                bar.update(len(job[1]))
    bar.close()
    return np.concatenate(results) if results else np.zeros((0, out.values), np.int64)
