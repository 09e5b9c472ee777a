"""ResNet-20 CNN twin through STOCK hls4ml (Vitis backend, QKeras QConv2D/QDense + quantized_relu,
io_stream), so users can compare the adder build with what hls4ml does out of the box.

No checkpoint exists for resnet20_cnn: weights are seeded random (BatchNorm statistics re-estimated
on the images given, so activations are not degenerate). Its accuracy is meaningless; it is here for
compile/csim timing and resources.
"""

from __future__ import annotations

import time

import numpy as np

from flow.errors import AdderFlowError


def build_qkeras_resnet20_cnn(bits: int = 4, seed: int = 0, num_classes: int = 10, calib=None):
    """QKeras ResNet-20 (regular convolutions, topology `flow.models.resnet20_blocks`): W`bits` kernels,
    A`bits` quantized_relu activations. Unlike `build_model("resnet20_cnn")` the classifier is a biased
    QDense straight after the pooling (no 1x1 conv + BatchNorm head), the form stock hls4ml converts."""
    import tensorflow as tf

    from flow.constants import BN_EPSILON
    from flow.models import RESNET20_INPUT_SHAPE, RESNET20_STEM, resnet20_blocks
    from qkeras import QActivation, QConv2D, QDense
    from qkeras.quantizers import quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    kq = quantized_bits(bits, 0, alpha=1)
    act = quantized_relu(bits, 2)   # activations in [0, 4) with bits-2 fractional bits

    def conv(x, filters, k, s, name):
        return QConv2D(filters, k, strides=s, padding="same", use_bias=False, kernel_quantizer=kq,
                       kernel_initializer=tf.keras.initializers.HeNormal(seed=seed), name=name)(x)

    def bn(x, name):
        return L.BatchNormalization(epsilon=BN_EPSILON, momentum=0.0, name=name)(x)

    inp = L.Input(shape=RESNET20_INPUT_SHAPE, name="image")
    x = QActivation(quantized_bits(8, 2, alpha=1), name="input_q")(inp)
    x = QActivation(act, name="relu")(bn(conv(x, RESNET20_STEM, 3, 1, "conv1"), "bn1"))
    for blk in resnet20_blocks():
        n, planes, s = blk.name, blk.planes, blk.stride
        y = QActivation(act, name=f"{n}_relu1")(bn(conv(x, planes, 3, s, f"{n}_conv1"), f"{n}_bn1"))
        y = bn(conv(y, planes, 3, 1, f"{n}_conv2"), f"{n}_bn2")
        sc = bn(conv(x, planes, 1, s, f"{n}_downsample_0"), f"{n}_downsample_1") if blk.downsample else x
        x = QActivation(act, name=f"{n}_relu2")(L.Add(name=f"{n}_add")([y, sc]))
    x = L.GlobalAveragePooling2D(name="avgpool")(x)
    out = QDense(num_classes, kernel_quantizer=quantized_bits(bits, 0, alpha=1), bias_quantizer=quantized_bits(8, 3),
                 name="fc")(x)
    model = tf.keras.Model(inp, out, name="resnet20_cnn")
    rng = np.random.default_rng(seed)
    x_cal = calib if calib is not None else rng.normal(0, 1, size=(64,) + RESNET20_INPUT_SHAPE).astype(np.float32)
    model(x_cal, training=True)   # momentum 0: moving statistics := these images' statistics
    return model


def preprocess(images_uint8, bits: int = 4):
    from flow.data import preprocess as pre

    return pre(images_uint8, "cifar10").astype(np.float32)


def hls_config(model, reuse: int = 1) -> dict:
    import hls4ml

    # hls4ml's default ap_fixed<16,6> overflows ResNet-20's conv sums (up to 576 products of 4-bit
    # values): 14 integer bits hold them; QKeras-quantized layers keep their own widths
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis",
                                               default_precision="fixed<24,14>", default_reuse_factor=int(reuse))
    cfg["Model"]["Strategy"] = "Resource" if reuse > 1 else "Latency"
    return cfg


def convert(model, output_dir, part: str = "xc7z020clg400-1", clock_mhz: float = 100.0, reuse: int = 1):
    import hls4ml

    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=hls_config(model, reuse), backend="Vitis", io_type="io_stream", output_dir=str(output_dir),
        part=part, clock_period=round(1000.0 / clock_mhz, 3), project_name="myproject")
    hm.write()
    return hm


def compile_model(hm) -> float:
    t0 = time.perf_counter()
    try:
        hm.compile()
    except Exception as exc:
        raise AdderFlowError(f"g++ compile of {hm.config.get_output_dir()} failed: {exc}") from None
    return time.perf_counter() - t0


def csim_predict(hm, x) -> np.ndarray:
    y = hm.predict(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(y, dtype=np.float64).reshape(len(x), -1)
