"""Post-training quantization of adder networks into the integer QNet (see flow.qnet for the semantics).

    from flow.quant import quantize
    net = quantize("resnet20", "ResNet20-AdderNet.pth", calib_uint8, bits=4)   # -> validated QNet

Methods (`method=`):
  redistribution+  (default, ours) one-sided lossless range clamp: for activations x in [0, A],
                   |x - w| = |x - clip(w, 0, A)| + max(-w, 0) + max(w - A, 0) exactly, so weights live on
                   the activations' unsigned b-bit grid (SAD |aq - wq|), the excess is a per-channel
                   constant folded into the requant bias, and a sequential per-channel bias correction
                   removes the remaining rounding bias. alpha per bit width chosen on a train split.
  redistribution   Nie et al. 2022 as published (k-means groups, s_g, signed grid, SAD |aq - 2 wq|).
  qssf             one shared scale per layer (baseline).
Options: groups, alpha (quantile in (0, 1] or "mse"), range_clamp, bias_correction, bn_reestimation,
affine_correction, bits_first/bits_last, apot_first/apot_last (APoT weights), apot_requant=k
(multipliers with at most k signed powers of two). See flow.quant.redistribution.QuantConfig.
"""

from flow.quant.redistribution import DEFAULT_METHOD, METHODS, QuantConfig, build_qnet, default_alpha  # noqa: F401


def quantize(*args, **kwargs):
    """`flow.quant.api.quantize(model_name, weights, calib_images_uint8, bits, groups, alpha, method, **options)`."""
    from flow.quant.api import quantize as _quantize

    return _quantize(*args, **kwargs)


def quantize_keras(*args, **kwargs):
    """A QNet from a float Keras model: `quantize_keras(model, calib_images_uint8, bits=4, ...)`."""
    from flow.quant.api import quantize_keras as _quantize_keras

    return _quantize_keras(*args, **kwargs)
