"""Post-training quantization of adder networks into the integer QNet (see flow.qnet).

`quantize(model_name, weights, calib_images_uint8, bits, groups, alpha, method, **options) -> QNet`,
`quantize_keras(model, calib_images, ...)`; methods: redistribution+ (default, ours), redistribution
(Nie et al. 2022 as published), qssf (one shared scale). Details in flow.quant.redistribution.
"""

from flow.quant.redistribution import DEFAULT_METHOD, METHODS, QuantConfig, build_qnet  # noqa: F401


def quantize(*args, **kwargs):
    from flow.quant.api import quantize as _quantize

    return _quantize(*args, **kwargs)


def quantize_keras(*args, **kwargs):
    from flow.quant.api import quantize_keras as _quantize_keras

    return _quantize_keras(*args, **kwargs)
