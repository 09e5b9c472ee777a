"""Quantization-aware training of adder networks (issue 13): the API the `adderflow train --qat`
command and users' scripts use.

    init_model(init, bits, calib_images_uint8, **quant_options) -> tf.keras.Model
    export_qnet(model) -> flow.qnet.QNet
    custom_objects() -> dict                      # for tf.keras.models.load_model
    golden_accuracy(qnet, images_uint8, labels) -> float

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


def golden_accuracy(qnet, images_uint8, labels) -> float:
    """Top-1 accuracy of the integer golden model (`flow.golden`) on uint8 images."""
    from flow import golden

    x, y = np.asarray(images_uint8), np.asarray(labels).reshape(-1)
    if len(x) != len(y) or not len(y):
        raise AdderFlowError(f"golden accuracy: {len(x)} images but {len(y)} labels")
    return float(np.mean(golden.predict_int(qnet, x).argmax(axis=1) == y))


__all__ = ["init_model", "export_qnet", "custom_objects", "golden_accuracy"]
