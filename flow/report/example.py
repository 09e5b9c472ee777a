"""ResNet-20-shaped integer networks with seeded weights, for the estimator, benches and tests.

Shapes only matter here (costs and op counts do not depend on weight values, except that widths come
from the declared bounds), so the weights are random but the bit widths are the ones a real
quantisation gives: activations `bits` unsigned, weights `bits` signed, accumulators as narrow as
`flow.qnet.op_output_bounds` allows. Use `flow.quant.quantize(...)` for a network with real weights.
"""

from __future__ import annotations

import numpy as np

from flow.qnet import Op, QNet, TensorSpec, bits_for, op_output_bounds

REQUANT_MULT_BITS = 24      # the quantizer's requant multipliers: signed 24-bit (flow.quant MULT_BITS)


class _Builder:
    def __init__(self, bits: int, adder: bool, seed: int, apot_terms: int | None):
        self.bits, self.adder, self.apot = bits, adder, apot_terms
        self.rng = np.random.default_rng(seed)
        self.tensors: dict = {}
        self.ops: list = []
        self.bounds: dict = {}

    def tensor(self, name, shape, bits, signed, kind="act", lo_hi=None):
        self.tensors[name] = TensorSpec(name, tuple(shape), bits, signed, 1.0, kind)
        spec = self.tensors[name]
        self.bounds[name] = lo_hi if lo_hi is not None else (spec.lo, spec.hi)
        return name

    def _emit(self, op: Op, shape, kind="acc"):
        lo, hi = op_output_bounds(self._net(), op, self.bounds)
        b, s = bits_for(lo, hi)
        self.tensor(op.output, shape, b, s, kind, (lo, hi))
        self.ops.append(op)
        return op.output

    def _net(self):
        return QNet(tensors=self.tensors, ops=self.ops)

    def weights(self, shape):
        half = 1 << (self.bits - 1)
        return self.rng.integers(-half, half, size=shape, dtype=np.int64)

    def conv(self, x, cout, k, stride, name, adder):
        h, w, cin = self.tensors[x].shape
        pad = (k - 1) // 2
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        attrs = {"stride": stride, "pads": [pad, pad, pad, pad], "kernel": k}
        arrays = {"weight": self.weights((k, k, cin, cout))}
        if adder:
            arrays.update(group_in_mult=np.zeros(1, np.int64), group_in_shift=np.zeros(1, np.int64),
                          group_of_channel=np.zeros(cout, np.int64))
        op = Op("adder2d" if adder else "conv2d", name, [x], f"{name}_acc", attrs, arrays)
        return self._emit(op, (ho, wo, cout))

    def requant(self, inputs, name, relu=True):
        c = self.tensors[inputs[0]].shape[-1]
        shape = self.tensors[inputs[0]].shape
        mult = self.rng.integers(1 << (REQUANT_MULT_BITS - 3), 1 << (REQUANT_MULT_BITS - 1),
                                 size=(len(inputs), c), dtype=np.int64)
        if self.apot is not None:   # as the quantizer does: at most `apot` signed powers of two
            from flow.quant.apot import round_to_pow2_terms
            mult = round_to_pow2_terms(mult, self.apot)
        if self.adder:
            mult[0] = -mult[0] if self.tensors[inputs[0]].kind == "acc" else mult[0]
        acc_hi = max(abs(self.bounds[t][0]) + abs(self.bounds[t][1]) for t in inputs)
        shift = max(1, int(acc_hi * (1 << REQUANT_MULT_BITS)).bit_length() - self.bits)
        bias = self.rng.integers(0, 1 << shift, size=c, dtype=np.int64)
        if self.adder:  # the AdderNet sign lives in the multiplier; bias brings the result back up
            bias = bias + int(abs(mult[0]).max()) * acc_hi // 2
        attrs = {"shift": shift}
        if self.apot is not None:
            attrs["apot_terms"] = self.apot
        out = f"{name}_out"
        if relu:
            self.tensor(out, shape, self.bits, False)
        else:
            self.tensor(out, shape, 8 if len(shape) == 1 else self.bits, True)
        self.ops.append(Op("requant", name, list(inputs), out, attrs, {"mult": mult, "bias": bias}))
        return out

    def block(self, x, planes, stride, name):
        cin = self.tensors[x].shape[-1]
        y = self.requant([self.conv(x, planes, 3, stride, f"{name}_conv1", self.adder)], f"{name}_rq1")
        y = self.conv(y, planes, 3, 1, f"{name}_conv2", self.adder)
        if stride != 1 or cin != planes:
            sc = self.requant([self.conv(x, planes, 1, stride, f"{name}_down", self.adder)], f"{name}_rqd")
        else:
            sc = x
        return self.requant([y, sc], f"{name}_add")


def resnet20_qnet(bits: int = 4, adder: bool = True, seed: int = 0, apot_terms: int | None = None,
                  first_last_apot: bool | None = None) -> QNet:
    """CIFAR ResNet-20 (conv1 3->16, 3 stages x 3 basic blocks at 16/32/64 channels, strides 1/2/2,
    1x1 stride-2 downsample convolutions, global pool, fc 64->10) as a QNet.

    `adder`: 3x3/1x1 body layers are adder2d (AdderNet) else conv2d (the CNN twin); conv1 and fc stay
    multiplying layers either way. `apot_terms`: every requant gets attrs {"apot_terms": k} (shift-add
    constants, no DSP); `first_last_apot` (default: apot_terms is not None) gives conv1 and fc
    {"apot_terms": 3} too, as the quantizer does for APoT first/last layers (the backend then builds
    their products from shifts and adds).
    """
    b = _Builder(bits, adder, seed, apot_terms)
    shift_add = (apot_terms is not None) if first_last_apot is None else first_last_apot
    x = b.tensor("input", (32, 32, 3), 8, True)
    c1 = b.conv(x, 16, 3, 1, "conv1", adder=False)
    if shift_add:
        b.ops[-1].attrs["apot_terms"] = 3
    y = b.requant([c1], "bn1")
    for stage, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for blk in range(3):
            y = b.block(y, planes, stride if blk == 0 else 1, f"s{stage}b{blk}")
    pooled = b._emit(Op("global_sum_pool", "gap", [y], "gap_acc"), (64,))
    fc = b._emit(Op("dense", "fc", [pooled], "fc_acc", {"apot_terms": 3} if shift_add else {},
                    {"weight": b.weights((64, 10))}), (10,))
    out = b.requant([fc], "fc_rq", relu=False)
    net = QNet(tensors=b.tensors, ops=b.ops, input="input", output=out,
               input_quant={"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010], "scale": 1 / 32},
               meta={"model": "resnet20" if adder else "resnet20_cnn", "bits": bits, "method": "seeded-shapes",
                     "note": "random weights: shapes and widths only"})
    return net.validate()
