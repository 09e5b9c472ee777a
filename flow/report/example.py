"""ResNet-20-shaped integer networks with seeded weights, for the estimator, benches and tests.

Shapes only matter here (costs and op counts do not depend on weight values, except that widths come
from the declared bounds), so the weights are random but the bit widths are the ones a real
quantisation gives: activations `bits` unsigned, weights `bits` signed, accumulators as narrow as
`QNet.infer_widths` allows. The topology is `flow.models.resnet20_blocks`; the ops are appended by the
one QNet builder (`flow.hls.random_qnet.QNetBuilder`). Use `flow.quant.quantize(...)` for a network
with real weights.
"""

from __future__ import annotations

import numpy as np

from flow.data import CIFAR_MEAN, CIFAR_STD
from flow.hls.random_qnet import QNetBuilder
from flow.models import RESNET20_INPUT_SHAPE, RESNET20_STEM, resnet20_blocks
from flow.qnet import QNet

REQUANT_MULT_BITS = 24      # the quantizer's requant multipliers: signed 24-bit (flow.quant MULT_BITS)
NUM_CLASSES = 10


def resnet20_qnet(bits: int = 4, adder: bool = True, seed: int = 0, apot_terms: int | None = None,
                  first_last_apot: bool | None = None) -> QNet:
    """CIFAR ResNet-20 (`flow.models.resnet20_blocks`: conv1 3->16, 3 stages x 3 basic blocks at
    16/32/64 channels, strides 1/2/2, 1x1 strided downsample convolutions, global pool, fc 64->10) as a
    QNet; a downsample path gets its own requant before the residual add. Op names `s<stage>b<block>_*`.

    `adder`: 3x3/1x1 body layers are adder2d (AdderNet) else conv2d (the CNN twin); conv1 and fc stay
    multiplying layers either way. `apot_terms`: every requant gets attrs {"apot_terms": k} (shift-add
    constants, no DSP); `first_last_apot` (default: apot_terms is not None) gives conv1 and fc
    {"apot_terms": 3} too, as the quantizer does for APoT first/last layers (the backend then builds
    their products from shifts and adds).
    """
    rng = np.random.default_rng(seed)
    shift_add = (apot_terms is not None) if first_last_apot is None else first_last_apot
    first_last = {"apot_terms": 3} if shift_add else {}
    qb = QNetBuilder(RESNET20_INPUT_SHAPE, 8, True, 1.0,
                     input_quant={"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD), "scale": 1 / 32},
                     meta={"model": "resnet20" if adder else "resnet20_cnn", "bits": bits, "method": "seeded-shapes",
                           "note": "random weights: shapes and widths only"})

    def weights(shape):
        half = 1 << (bits - 1)
        return rng.integers(-half, half, size=shape, dtype=np.int64)

    def conv(x, cout, k, stride, name, is_adder, attrs=None):
        pad = (k - 1) // 2
        w = weights((k, k, qb.shape(x)[-1], cout))
        attrs = {"kernel": k, **(attrs or {})}
        if is_adder:
            zero = np.zeros(1, np.int64)
            return qb.adder2d(name, x, w, stride, (pad,) * 4, np.zeros(cout, np.int64), zero, zero,
                              out=f"{name}_acc", attrs=attrs)
        return qb.conv2d(name, x, w, stride, (pad,) * 4, out=f"{name}_acc", attrs=attrs)

    def requant(inputs, name, relu=True):
        shape = qb.shape(inputs[0])
        mult = rng.integers(1 << (REQUANT_MULT_BITS - 3), 1 << (REQUANT_MULT_BITS - 1),
                            size=(len(inputs), shape[-1]), dtype=np.int64)
        if apot_terms is not None:   # as the quantizer does: at most `apot_terms` signed powers of two
            from flow.quant.apot import round_to_pow2_terms
            mult = round_to_pow2_terms(mult, apot_terms)
        if adder and qb.net.tensors[inputs[0]].kind == "acc":
            mult[0] = -mult[0]
        acc_hi = max(abs(qb.bounds[t].lo) + abs(qb.bounds[t].hi) for t in inputs)
        shift = max(1, int(acc_hi * (1 << REQUANT_MULT_BITS)).bit_length() - bits)
        bias = rng.integers(0, 1 << shift, size=shape[-1], dtype=np.int64)
        if adder:  # the AdderNet sign lives in the multiplier; bias brings the result back up
            bias = bias + int(abs(mult[0]).max()) * acc_hi // 2
        attrs = {"apot_terms": apot_terms} if apot_terms is not None else {}
        out_bits = bits if relu or len(shape) == 3 else 8
        return qb.requant(name, inputs, mult, bias, shift, out_bits, not relu, attrs, out=f"{name}_out")

    y = requant([conv("input", RESNET20_STEM, 3, 1, "conv1", False, first_last)], "bn1")
    for blk in resnet20_blocks():
        name = f"s{blk.stage}b{blk.index}"
        x = y
        y = requant([conv(x, blk.planes, 3, blk.stride, f"{name}_conv1", adder)], f"{name}_rq1")
        y = conv(y, blk.planes, 3, 1, f"{name}_conv2", adder)
        sc = requant([conv(x, blk.planes, 1, blk.stride, f"{name}_down", adder)], f"{name}_rqd") if blk.downsample else x
        y = requant([y, sc], f"{name}_add")
    pooled = qb.global_sum_pool("gap", y, out="gap_acc")
    fc = qb.dense("fc", pooled, weights((qb.shape(pooled)[-1], NUM_CLASSES)), out="fc_acc", attrs=first_last)
    requant([fc], "fc_rq", relu=False)
    return qb.build()
