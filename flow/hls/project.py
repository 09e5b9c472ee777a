"""QNet -> AdderVitis hls4ml model: configuration, conversion, C simulation helpers, test vectors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.qnet import QNet

BACKEND = "AdderVitis"


def hls_config(qnet: QNet, reuse: int = 1, reuse_config: dict | None = None, shift_add: bool = False,
               scheduled_pe: bool = False, stream_depths: str = "minimal", bram_weights=()) -> dict:
    """hls4ml config dict: per-layer ReuseFactor (`reuse_config` {layer: RF} overrides `reuse`; a requant op
    gets 1 unless named: its RF time-multiplexes its channels over RF cycles per pixel), optional
    zero-DSP shift-add constants, optional C simulation of the PE schedule itself (`scheduled_pe`).
    Layer names are the QNet op names. `stream_depths`: 'minimal' FIFOs (flow.hls.stream_depths) or
    'hls4ml-default' (a whole tensor per stream). `bram_weights`: window/dense layers whose weight ROM is
    bound to BRAM (WeightStorage = 'bram'; meaningful where RF > 1, with RF = 1 weights are constants)."""
    if stream_depths not in ("minimal", "hls4ml-default"):
        raise AdderFlowError(f"stream_depths must be 'minimal' or 'hls4ml-default', got {stream_depths}")
    if int(reuse) < 1:
        raise AdderFlowError(f"reuse factor must be >= 1, got {reuse}")
    layers = {}
    for op in qnet.ops:
        # a requant is time-multiplexed only where named: the global reuse factor trades window/dense lanes
        default = 1 if op.kind == "requant" else reuse
        rf = int((reuse_config or {}).get(op.name, default))
        if rf < 1:
            raise AdderFlowError(f"reuse factor of layer {op.name} must be >= 1, got {rf}")
        layers[op.name] = {"ReuseFactor": rf, "Trace": False}
    unknown = set(reuse_config or {}) - {op.name for op in qnet.ops}
    if unknown:
        raise AdderFlowError(f"reuse config names unknown layers: {', '.join(sorted(unknown))}")
    for name in bram_weights or ():
        if name not in layers or qnet.op(name).kind not in ("conv2d", "adder2d", "dense"):
            raise AdderFlowError(f"bram_weights: {name} is not a window/dense layer of the network")
        layers[name]["WeightStorage"] = "bram"
    return {"Model": {"Precision": "ap_int<32>", "ReuseFactor": int(reuse), "Strategy": "Latency",
                      "ShiftAdd": bool(shift_add), "ScheduledPE": bool(scheduled_pe),
                      "StreamDepths": stream_depths},
            "LayerName": layers}


def load_reuse_config(path) -> dict:
    """YAML/JSON {layer name: reuse factor} (or hls4ml-style {LayerName: {name: {ReuseFactor: R}}})."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AdderFlowError(f"reuse config {p} does not exist")
    doc = yaml.safe_load(p.read_text()) or {}
    if "LayerName" in doc:
        doc = {k: v.get("ReuseFactor", 1) for k, v in doc["LayerName"].items()}
    if not isinstance(doc, dict) or not all(isinstance(v, int) for v in doc.values()):
        raise AdderFlowError(f"reuse config {p}: expected {{layer name: integer reuse factor}}")
    return doc


def convert(qnet: QNet, output_dir, part: str = "xc7z020clg400-1", clock_mhz: float = 100.0, reuse: int = 1,
            reuse_config: dict | None = None, shift_add: bool = False, scheduled_pe: bool = False, keras_model=None,
            stream_depths: str = "minimal", bram_weights=()):
    """Write nothing yet: build the hls4ml model of a QNet on the AdderVitis backend (io_stream)."""
    import hls4ml

    from flow.qlayers import qnet_to_keras

    model = keras_model if keras_model is not None else qnet_to_keras(qnet)
    cfg = hls_config(qnet, reuse, reuse_config, shift_add, scheduled_pe, stream_depths, bram_weights)
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


def set_build_options(hls_dir, csim=True, synth=True, cosim=True, export=True) -> None:
    """build_opt.tcl read by build_prj.tcl (`vitis_hls -f build_prj.tcl`)."""
    opts = dict(reset=0, csim=int(csim), synth=int(synth), cosim=int(cosim), validation=int(cosim), export=int(export),
                vsynth=0, fifo_opt=0)
    body = "".join(f"    {k:<10} {v}\n" for k, v in opts.items())
    Path(hls_dir, "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")
