"""A tiny stock-hls4ml build with the same layout as `adderflow hls --out BUILD`, for tests and demos.

BUILD/qnet/      the integer network (flow.qnet) the HLS project implements exactly
BUILD/hls_prj/   a stock hls4ml io_stream Vitis project (Conv2D -> ReLU -> Conv2D -> ReLU -> Flatten -> Dense)
BUILD/report.json

Why it exists: the board side (AXI wrapper, emulation, driver, notebook, packaging) must be testable
without the AdderNet backend and in seconds. All hls4ml types are integer (`ap_fixed<W,W>`) and all
weights are small integers, so the hls4ml C simulation equals `flow.golden` on the QNet bit for bit:
conv2d -> requant(mult 1, shift 0, lo 0 == ReLU) -> conv2d -> requant -> global_sum_pool (1x1 ==
Flatten) -> dense. Weights are seeded random integers: its accuracy is chance level, not a result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flow.data import CIFAR_MEAN, CIFAR_STD
from flow.hls.random_qnet import QNetBuilder
from flow.qnet import QNet, bits_for
INPUT_SHAPE = (32, 32, 3)
C1, K1 = 4, 8          # conv1: 8x8 stride 8 -> 4x4x4
C2, K2 = 8, 4          # conv2: 4x4 valid -> 1x1x8
N_CLASSES = 10
INPUT_SCALE = 2.75 / 127
_BUILDS: dict = {}     # process-wide memo: tests in several files share one build


def make_qnet(seed: int = 0) -> QNet:
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-2, 3, size=(K1, K1, 3, C1)).astype(np.int64)
    w2 = rng.integers(-2, 3, size=(K2, K2, C1, C2)).astype(np.int64)
    wd = rng.integers(-8, 8, size=(C2, N_CLASSES)).astype(np.int64)
    qb = QNetBuilder(INPUT_SHAPE, 8, True, INPUT_SCALE,
                     input_quant={"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD), "scale": INPUT_SCALE},
                     meta={"model": "stock_tiny", "bits": 8, "source": "flow.board.stock (seeded test network)"})

    def relu(name, x, out, bits):   # mult 1, shift 0, lo 0: hls4ml's ReLU on an integer, never saturating
        c = qb.shape(x)[-1]
        return qb.requant(name, [x], np.ones((1, c), np.int64), np.zeros(c, np.int64), 0, bits, False, out=out)

    a1 = relu("relu1", qb.conv2d("conv1", "input", w1, K1, (0, 0, 0, 0), out="c1"), "a1", 16)
    c2 = qb.conv2d("conv2", a1, w2, 1, (0, 0, 0, 0), out="c2")
    a2 = relu("relu2", c2, "a2", bits_for(0, qb.bounds[c2].hi)[0])
    qb.dense("classifier", qb.global_sum_pool("flatten", a2, out="pool"), wd, out="logits")
    net = qb.build()
    net.tensors["logits"].scale = 1.0 / 4096
    return net


def keras_twin(net: QNet):
    """The Keras model computing the QNet in floating point (exact: all values are small integers)."""
    import tensorflow as tf
    L = tf.keras.layers
    inp = L.Input(INPUT_SHAPE, name="images")
    x = L.Conv2D(C1, K1, strides=K1, padding="valid", use_bias=False, name="conv1")(inp)
    x = L.Activation("relu", name="relu1")(x)
    x = L.Conv2D(C2, K2, padding="valid", use_bias=False, name="conv2")(x)
    x = L.Activation("relu", name="relu2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(N_CLASSES, use_bias=False, name="classifier")(x)
    model = tf.keras.Model(inp, x, name="stock_tiny")
    for name in ("conv1", "conv2", "classifier"):
        model.get_layer(name).set_weights([net.op(name).arrays["weight"].astype(np.float32)])
    return model


def _hls_config(model, net: QNet) -> dict:
    import hls4ml
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    w = max(t.bits for t in net.tensors.values()) + 1
    wide = f"ap_fixed<{w},{w}>"       # integer-valued and wide enough for every exact intermediate
    cfg["Model"]["Precision"] = wide
    cfg["Model"]["ReuseFactor"] = 1
    for name, layer in cfg["LayerName"].items():
        layer["Trace"] = False
        layer["Precision"] = {"weight": "ap_fixed<8,8>", "bias": "ap_fixed<8,8>", "result": wide, "accum": wide} \
            if name in ("conv1", "conv2", "classifier") else {"result": wide}
    cfg["LayerName"]["images"]["Precision"] = {"result": "ap_fixed<8,8>"}
    return cfg


def write_stock_build(out: Path, board: str = "pynq-z2", seed: int = 0) -> Path:
    """Write BUILD/{qnet,hls_prj,report.json}; returns `out`. Needs TensorFlow and hls4ml."""
    import hls4ml
    from flow.boards import get_board
    out = Path(out)
    b = get_board(board)
    net = make_qnet(seed)
    net.save(out / "qnet")
    model = keras_twin(net)
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=_hls_config(model, net), output_dir=str(out / "hls_prj"), backend="Vitis",
        io_type="io_stream", part=b.part, clock_period=1000.0 / b.clock_mhz)
    hls_model.write()
    from flow.board.axi_top import write_axi_top

    write_axi_top(out / "hls_prj", net)
    report = {"model": "stock_tiny", "bits": 8, "board": b.name, "part": b.part, "clock_mhz": b.clock_mhz,
              "source": "stock hls4ml (flow.board.stock test network)", "csim": {},
              "latency": {}, "resources": {}}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    from flow.outputs import write_marker
    write_marker(out, "flow.board.stock.write_stock_build")   # a complete build, as `adderflow hls` leaves one
    return out


def stock_build(root: Path, board: str = "pynq-z2") -> Path:
    """Memoised `write_stock_build` under `root` (one per process and board)."""
    key = (str(root), board)
    if key not in _BUILDS:
        _BUILDS[key] = write_stock_build(Path(root) / f"stock_{board}", board)
    return _BUILDS[key]
