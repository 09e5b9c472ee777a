"""Quantization-aware training of adder networks (issue 13): the API the `adderflow train --qat`
command and users' scripts use.

    init_model(init, bits, calib_images_uint8, **quant_options) -> tf.keras.Model
    export_qnet(model) -> flow.qnet.QNet
    custom_objects() -> dict                      # for tf.keras.models.load_model
    golden_accuracy(qnet, images_uint8, labels) -> float
    integer_keras_model(model) -> tf.keras.Model   # flow.qlayers realisation, what the hls4ml backend converts

See `flow.qat.model.init_model` for what the model takes as input.
"""

from __future__ import annotations

import numpy as np

from flow.errors import AdderFlowError


def init_model(init, bits=4, calib_images_uint8=None, **quant_options):
    from flow.qat.model import init_model as _init

    return _init(init, bits, calib_images_uint8, **quant_options)


def export_qnet(model):
    from flow.qat.export import export_qnet as _export

    return _export(model)


def integer_keras_model(model):
    from flow.qat.export import integer_keras_model as _int

    return _int(model)


def custom_objects() -> dict:
    """Every class a saved QAT model needs (ours, qkeras', the float AdderConv2D)."""
    from qkeras.utils import _add_supported_quantized_objects

    from flow.models import custom_objects as float_objects
    from flow.qat import layers, quantizers

    objs = dict(float_objects())
    _add_supported_quantized_objects(objs)
    objs.update(quantizers.QUANTIZERS)
    objs.update({c.__name__: c for c in (layers.QATAdderConv2D, layers.QATActivation, layers.QATInput)})
    return objs


def print_qstats(model) -> None:
    """qkeras `print_qstats` of a QAT model. qkeras recognises quantizers by class name, so ours are
    shown for the call as the qkeras quantizer of the same width and sign (`quantized_bits` /
    `quantized_relu`); the adder layers are no multiplier layers, qkeras does not count them."""
    from qkeras import QActivation, QConv2D, QDense
    from qkeras import print_qstats as _print
    from qkeras.quantizers import quantized_bits, quantized_relu

    from flow.qat.quantizers import ActQuantizer, QUANTIZERS

    swapped = []
    for layer in model.layers:
        if not isinstance(layer, (QActivation, QConv2D, QDense)):
            continue
        for attr in ("kernel_quantizer_internal", "quantizer"):
            q = getattr(layer, attr, None)
            if type(q).__name__ in QUANTIZERS and isinstance(q, tuple(QUANTIZERS.values())):
                swapped.append((layer, attr, q))
                view = quantized_relu(q.bits, 0) if isinstance(q, ActQuantizer) else quantized_bits(q.bits, 0, 1)
                setattr(layer, attr, view)
    try:
        _print(model)
    finally:
        for layer, attr, q in swapped:
            setattr(layer, attr, q)


def golden_accuracy(qnet, images_uint8, labels) -> float:
    """Top-1 accuracy of the integer golden model (`flow.golden`) on uint8 images."""
    from flow import golden

    x, y = np.asarray(images_uint8), np.asarray(labels).reshape(-1)
    if len(x) != len(y) or not len(y):
        raise AdderFlowError(f"golden accuracy: {len(x)} images but {len(y)} labels")
    return float(np.mean(golden.predict_int(qnet, x).argmax(axis=1) == y))


__all__ = ["init_model", "export_qnet", "custom_objects", "golden_accuracy", "print_qstats", "integer_keras_model"]
