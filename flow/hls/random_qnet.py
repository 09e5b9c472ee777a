"""Random valid QNets (small adder ResNets) for bit-exactness tests of the Keras and HLS realisations.

Numpy only. Every QNet is built op by op with its accumulator widths derived from the bound
propagation of `QNet.infer_widths` and passes `QNet.validate()`. Requantisation constants are drawn so that
outputs spread over the output range (some saturate), which exercises rounding and clipping.
"""

from __future__ import annotations

import numpy as np

from flow.kernels import out_size
from flow.models import RESNET20_INPUT_SHAPE, RESNET20_STEM, resnet20_blocks
from flow.qnet import Op, QNet, TensorSpec


class QNetBuilder:
    """Appends ops to a QNet, each accumulator as narrow as `QNet.infer_widths` allows: the one QNet
    builder for seeded and random networks (tests, benches, `adderflow hls --model random`, the
    estimator's seeded ResNet-20, the stock-hls4ml test network)."""

    def __init__(self, input_shape, input_bits: int = 8, input_signed: bool = True, input_scale: float = 1.0,
                 input_quant: dict | None = None, meta: dict | None = None):
        spec = TensorSpec("input", tuple(int(s) for s in input_shape), input_bits, input_signed, input_scale, "act")
        self.net = QNet(tensors={"input": spec}, ops=[], input="input", output="input",
                        input_quant=dict(input_quant or {"mean": [0.0], "std": [1.0], "scale": 1.0 / 64}),
                        meta=dict(meta or {"model": "random"}))
        self.bounds = self.net.infer_widths()   # tensor -> Range(lo, hi), extended op by op

    def shape(self, t):
        return self.net.tensors[t].shape

    def _add(self, op: Op, out_shape, spec: TensorSpec | None = None) -> str:
        """Append `op`; without `spec` its output is an accumulator of the narrowest exact width."""
        self.net.tensors[op.output] = spec or TensorSpec(op.output, tuple(out_shape), 64, True, 1.0, "acc")
        self.net.ops.append(op)
        self.bounds = self.net.infer_widths(self.bounds)
        if spec is None:
            r = self.bounds[op.output]
            self.net.tensors[op.output].bits, self.net.tensors[op.output].signed = r.bits, r.signed
        self.net.output = op.output
        return op.output

    def conv_out_shape(self, x, kh, kw, stride, pads, cout):
        h, w, _ = self.shape(x)
        return (out_size(h, kh, stride, pads[0], pads[1]), out_size(w, kw, stride, pads[2], pads[3]), cout)

    def conv2d(self, name, x, weight, stride, pads, out=None, attrs=None):
        kh, kw, _, cout = weight.shape
        op = Op("conv2d", name, [x], out or name, {"stride": int(stride), "pads": [int(p) for p in pads], **(attrs or {})},
                {"weight": weight.astype(np.int64)})
        return self._add(op, self.conv_out_shape(x, kh, kw, stride, pads, cout))

    def adder2d(self, name, x, weight, stride, pads, group_of_channel, group_in_mult, group_in_shift, out=None,
                attrs=None):
        kh, kw, _, cout = weight.shape
        op = Op("adder2d", name, [x], out or name, {"stride": int(stride), "pads": [int(p) for p in pads], **(attrs or {})},
                {"weight": weight.astype(np.int64), "group_of_channel": np.asarray(group_of_channel, np.int64),
                 "group_in_mult": np.asarray(group_in_mult, np.int64),
                 "group_in_shift": np.asarray(group_in_shift, np.int64)})
        return self._add(op, self.conv_out_shape(x, kh, kw, stride, pads, cout))

    def requant(self, name, inputs, mult, bias, shift, bits, signed, attrs=None, out=None, scale=1.0):
        out = out or name
        op = Op("requant", name, list(inputs), out, {"shift": int(shift), **(attrs or {})},
                {"mult": np.asarray(mult, np.int64), "bias": np.asarray(bias, np.int64)})
        spec = TensorSpec(out, tuple(self.shape(inputs[0])), int(bits), bool(signed), float(scale), "act")
        return self._add(op, spec.shape, spec)

    def global_sum_pool(self, name, x, out=None):
        return self._add(Op("global_sum_pool", name, [x], out or name), (self.shape(x)[-1],))

    def dense(self, name, x, weight, out=None, attrs=None):
        return self._add(Op("dense", name, [x], out or name, dict(attrs or {}), {"weight": weight.astype(np.int64)}),
                         (weight.shape[1],))

    def build(self) -> QNet:
        return self.net.validate()


def random_requant_params(rng, in_bounds: list, channels: int, out_lo: int, out_hi: int, negate_first=False):
    """(mult (K, C), bias (C,), shift): maps the inputs' typical spread onto about the output range."""
    shift = int(rng.integers(6, 18))
    span_out = out_hi - out_lo
    mult = np.zeros((len(in_bounds), channels), np.int64)
    centre = np.full(channels, (1 << shift) * (out_lo + out_hi) / 2.0)
    for k, (lo, hi) in enumerate(in_bounds):
        span_in = max(hi - lo, 1)
        # AdderNet accumulators are large and concentrated: aim a fraction of their bound at the range
        gain = (1 << shift) * span_out / span_in * rng.uniform(1.0, 6.0, channels) / len(in_bounds)
        m = np.maximum(1, np.round(gain)).astype(np.int64)
        if (k == 0 and negate_first) or rng.random() < 0.15:
            m = -m
        mult[k] = m
        centre -= m * (lo + hi) / 2.0 * rng.uniform(0.3, 0.7, channels)
    noise = rng.normal(0, (1 << shift) * span_out / 4.0, channels)
    bias = np.round(centre + noise).astype(np.int64)
    return mult, bias, shift


def _pads(rng, kh, kw, mode):
    if mode == "valid":
        return (0, 0, 0, 0)
    ph, pw = kh - 1, kw - 1  # "same": extra row/column at the bottom/right as TF does
    return (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)


def random_qnet(seed: int = 0, *, height=None, width=None, in_channels=None, bits=None, max_channels: int = 32,
                n_blocks=None, num_classes=None) -> QNet:
    """A random small adder ResNet: int8 input -> conv -> requant -> adder blocks (groups, per-group
    input rescale, residual 2-input requant, optional strided 1x1 downsample adder) -> global sum pool
    -> dense -> requant logits. Parameters are drawn from the issue's ranges."""
    rng = np.random.default_rng(seed)
    h = int(height or rng.integers(3, 9))
    w = int(width or rng.integers(3, 9))
    cin = int(in_channels or rng.integers(1, 4))
    b = int(bits or rng.integers(2, 9))
    nb = int(rng.integers(1, 3) if n_blocks is None else n_blocks)
    ncls = int(num_classes or rng.integers(2, 11))
    act_hi = (1 << b) - 1
    qb = QNetBuilder((h, w, cin))

    def chans():
        return int(rng.integers(1, max_channels + 1))

    def kernel():
        return int(rng.choice([1, 3]))

    def relu_requant(name, inputs, c):
        m, bb, s = random_requant_params(rng, [qb.bounds[t] for t in inputs], c, 0, act_hi,
                                         negate_first=qb.net.producer(inputs[0]).kind == "adder2d")
        return qb.requant(name, inputs, m, bb, s, b, False)

    def adder(name, x, cout, k, stride, mode):
        cin_ = qb.shape(x)[-1]
        wmax = 1 << b  # W = 2*wq spans a (b+1)-bit signed range
        wt = rng.integers(-wmax, wmax, size=(k, k, cin_, cout))
        groups = int(rng.integers(1, min(4, cout) + 1))
        goc = rng.integers(0, groups, size=cout)
        gshift = rng.integers(0, 9, size=groups)
        gmult = np.where(rng.random(groups) < 0.3, 0, rng.integers(1, 3 << np.maximum(gshift, 1)))
        return qb.adder2d(name, x, wt, stride, _pads(rng, k, k, mode), goc, gmult, gshift)

    # stem: regular conv on the signed int8 input
    c = chans()
    k = kernel()
    mode = str(rng.choice(["same", "valid"])) if min(h, w) > 3 else "same"
    wbits = int(rng.integers(2, 9))
    x = qb.conv2d("conv1", "input", rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), size=(k, k, cin, c)), 1,
                  _pads(rng, k, k, mode))
    x = relu_requant("conv1_rq", [x], c)

    for i in range(nb):
        hh, ww, cb = qb.shape(x)
        stride = int(rng.choice([1, 2])) if min(hh, ww) >= 3 else 1
        cout = chans() if rng.random() < 0.5 else cb
        k1 = kernel() if min(hh, ww) >= 3 else 1
        mode = str(rng.choice(["same", "valid"])) if min(hh, ww) >= 5 else "same"
        y = adder(f"b{i}_adder1", x, cout, k1, stride, mode)
        y = relu_requant(f"b{i}_rq1", [y], cout)
        k2 = kernel() if min(qb.shape(y)[:2]) >= 3 else 1
        y = adder(f"b{i}_adder2", y, cout, k2, 1, "same")
        if stride != 1 or cout != cb or qb.shape(y)[:2] != (hh, ww) or rng.random() < 0.3:
            if qb.shape(y)[:2] == tuple(out_size(s, 1, stride, 0, 0) for s in (hh, ww)):
                sc = adder(f"b{i}_down", x, cout, 1, stride, "valid")
            else:  # spatial sizes diverged (valid pads): no residual for this block
                sc = None
        else:
            sc = x
        x = relu_requant(f"b{i}_rq2", [y] if sc is None else [y, sc], cout)

    x = qb.global_sum_pool("pool", x)
    wd = rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=(qb.shape(x)[-1], ncls))
    x = qb.dense("fc", x, wd)
    lb = int(rng.integers(4, 17))
    m, bb, s = random_requant_params(rng, [qb.bounds[x]], ncls, -(1 << (lb - 1)), (1 << (lb - 1)) - 1)
    qb.requant("logits", [x], m, bb, s, lb, True)
    net = qb.build()
    net.meta.update({"model": "random", "seed": seed, "bits": b})
    return net


def random_input(net: QNet, n: int, seed: int = 0) -> np.ndarray:
    spec = net.tensors[net.input]
    return np.random.default_rng(seed).integers(spec.lo, spec.hi + 1, size=(n,) + tuple(spec.shape)).astype(np.int64)


def resnet20_shaped_qnet(bits: int = 4, seed: int = 0, groups: int = 4, num_classes: int = 10) -> QNet:
    """A random QNet with exactly ResNet-20's topology and shapes (`flow.models.resnet20_blocks`)."""
    rng = np.random.default_rng(seed)
    act_hi = (1 << bits) - 1
    qb = QNetBuilder(RESNET20_INPUT_SHAPE)

    def rq(name, inputs, c, negate_first):
        m, bb, s = random_requant_params(rng, [qb.bounds[t] for t in inputs], c, 0, act_hi, negate_first)
        return qb.requant(name, inputs, m, bb, s, bits, False)

    def adder(name, x, cout, k, stride):
        cin = qb.shape(x)[-1]
        wt = rng.integers(-(1 << bits), 1 << bits, size=(k, k, cin, cout))
        g = min(groups, cout)
        gshift = np.full(g, 8)
        gmult = rng.integers(128, 512, size=g)
        gmult[0] = 0
        pads = (1, 1, 1, 1) if k == 3 else (0, 0, 0, 0)
        return qb.adder2d(name, x, wt, stride, pads, rng.integers(0, g, cout), gmult, gshift)

    x = qb.conv2d("conv1", "input", rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(3, 3, RESNET20_INPUT_SHAPE[-1], RESNET20_STEM)),
                  1, (1, 1, 1, 1))
    x = rq("bn1", [x], RESNET20_STEM, False)
    for blk in resnet20_blocks():
        name, planes, s = blk.name, blk.planes, blk.stride
        y = adder(f"{name}_conv1", x, planes, 3, s)
        y = rq(f"{name}_bn1", [y], planes, True)
        y = adder(f"{name}_conv2", y, planes, 3, 1)
        sc = adder(f"{name}_downsample_0", x, planes, 1, s) if blk.downsample else x
        x = rq(f"{name}_bn2", [y, sc], planes, True)
    x = qb.global_sum_pool("avgpool", x)
    x = qb.dense("fc", x, rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(qb.shape(x)[-1], num_classes)))
    m, bb, s = random_requant_params(rng, [qb.bounds[x]], num_classes, -(1 << 15), (1 << 15) - 1)
    qb.requant("logits", [x], m, bb, s, 16, True)
    net = qb.build()
    net.meta.update({"model": "resnet20", "bits": bits, "method": "random (ResNet-20 shapes)", "seed": seed})
    return net
