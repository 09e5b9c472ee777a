"""The integer network contract (QNet): what the quantizer produces, the golden model executes,
the HLS backend implements bit for bit, the estimator counts and the PYNQ driver feeds.

Numpy-only on purpose: the board imports it.

Integer semantics (the ONE place they are defined)
--------------------------------------------------
Tensors are NHWC (or NC after pooling) integer arrays. An activation tensor has `bits` and `signed`;
its real value is `scale * q` (zero point 0). Accumulator tensors (`kind="acc"`) are exact int64
results of a conv/adder/pool/dense op; their widths (`bits`) are the narrowest that hold the bound.

Ops, in topological order (`QNet.ops`), each reading `inputs` (tensor names) and writing `output`:

* ``conv2d``   acc[n,i,j,c] = sum_{u,v,ci} xpad[n, i*s+u, j*s+v, ci] * W[u,v,ci,c]
  (multiplications remain: first conv). xpad: zeros, pads (top, bottom, left, right).
* ``adder2d``  per group g an input version a_g = rescale_g(x) (below; identity when
  group_in_mult[g] == 0), then acc[n,i,j,c] = sum_{u,v,ci} |a_{g(c)}pad[n,i*s+u,j*s+v,ci] - W[u,v,ci,c]|
  with g(c) = group_of_channel[c]. acc >= 0: the AdderNet minus sign lives in the requant multiplier.
  rescale_g(x) = clip((x * group_in_mult[g] + 2^(group_in_shift[g]-1)) >> group_in_shift[g], 0, 2^b-1).
* ``requant``  v[c] = sum_k in_k[..., c] * mult[k, c] + bias[c];
  out = clip((v + 2^(shift-1)) >> shift, lo, hi) where lo, hi are the output tensor's range.
  `>>` is an arithmetic shift (floor division by 2^shift), so the rounding is half-up. This one op is
  BN + ReLU (lo = 0) + requantisation, and with two inputs the residual add.
* ``global_sum_pool``  acc[n,c] = sum_{i,j} x[n,i,j,c] (the 1/(H*W) lives in the next multiplier).
* ``dense``    acc[n,c] = sum_ci x[n,ci] * W[ci,c].

Integers: int64 everywhere in the golden model; `QNet.infer_widths()` gives every tensor's exact range
and `QNet.validate()` checks each fits its declared width,
including the requant products (< 2^62), so the hardware can use the declared widths exactly.
The network input is int8 (`input_quant`): q = clip(floor(((x/255 - mean)/std) / scale + 0.5), lo, hi),
computed in float64 from uint8 images (driver side).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

QNET_JSON, QNET_NPZ = "qnet.json", "qnet.npz"
FORMAT_VERSION = 1
OP_KINDS = ("conv2d", "adder2d", "requant", "global_sum_pool", "dense")


class QNetError(ValueError):
    """The integer network is malformed (names the op/tensor at fault)."""


@dataclass
class TensorSpec:
    name: str
    shape: tuple            # without batch: (H, W, C) or (C,)
    bits: int
    signed: bool
    scale: float = 1.0      # real value = scale * q ; for accumulators, the scale of one LSB if known
    kind: str = "act"       # "act" (quantised activation, an op's clipped output or the input) | "acc"

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


@dataclass
class Op:
    kind: str
    name: str
    inputs: list
    output: str
    attrs: dict = field(default_factory=dict)    # JSON scalars/lists: stride, pads, shift, ...
    arrays: dict = field(default_factory=dict)   # numpy integer arrays: weight, mult, bias, ...


@dataclass
class QNet:
    tensors: dict                   # name -> TensorSpec
    ops: list                       # Op, topological order
    input: str = "input"
    output: str = "logits"
    input_quant: dict = field(default_factory=dict)  # {"mean": [..], "std": [..], "scale": s} (float preprocessing)
    meta: dict = field(default_factory=dict)         # model, bits, method, calibration, float scales, ...

    # ---- lookups -------------------------------------------------------------------------------
    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def producer(self, tensor: str) -> Op | None:
        return next((o for o in self.ops if o.output == tensor), None)

    def consumers(self, tensor: str) -> list:
        return [o for o in self.ops if tensor in o.inputs]

    @property
    def output_spec(self) -> TensorSpec:
        return self.tensors[self.output]

    # ---- input / output conversion (driver and golden share these) -------------------------------
    def quantize_input(self, images_uint8: np.ndarray) -> np.ndarray:
        return quantize_input(images_uint8, self.input_quant, self.tensors[self.input])

    def dequantize_output(self, q: np.ndarray) -> np.ndarray:
        return q.astype(np.float64) * self.output_spec.scale

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays, ops = {}, []
        for o in self.ops:
            for k, v in o.arrays.items():
                arrays[f"{o.name}/{k}"] = np.asarray(v)
            ops.append({"kind": o.kind, "name": o.name, "inputs": list(o.inputs), "output": o.output,
                        "attrs": _jsonable(o.attrs), "arrays": sorted(o.arrays)})
        doc = {"format": "adderflow-qnet", "version": FORMAT_VERSION, "input": self.input,
               "output": self.output, "input_quant": _jsonable(self.input_quant), "meta": _jsonable(self.meta),
               "tensors": [_jsonable(asdict(t)) for t in self.tensors.values()], "ops": ops}
        np.savez_compressed(d / QNET_NPZ, **arrays)
        (d / QNET_JSON).write_text(json.dumps(doc, indent=1))
        return d

    # ---- checks --------------------------------------------------------------------------------
    def infer_widths(self, known: dict | None = None) -> dict:
        """{tensor: Range(lo, hi)}: every tensor's exact worst-case integer range, from the input's
        declared range, with `.bits`/`.signed` the narrowest type that holds it. This is THE bound
        propagation: `validate` checks declared widths against it, the quantizer and the builders size
        accumulators from it. A requant saturates to its output tensor's declared range; every other op's
        result is exact (declared widths do not enter). `known`: ranges already inferred for a prefix of
        `ops` (a builder extending the net op by op); they are kept, only the rest is computed."""
        ranges = dict(known or {})
        if self.input not in ranges:
            spec = self.tensors[self.input]
            ranges[self.input] = Range(spec.lo, spec.hi)
        for o in self.ops:
            if o.output in ranges:
                continue
            lo, hi = op_output_bounds(self, o, ranges)
            if o.kind == "requant":  # saturates by definition
                spec = self.tensors[o.output]
                lo, hi = min(max(lo, spec.lo), spec.hi), max(min(hi, spec.hi), spec.lo)
            ranges[o.output] = Range(int(lo), int(hi))
        return ranges

    def validate(self) -> "QNet":
        """Structural checks, then every tensor's inferred range must fit its declared width."""
        known = {self.input}
        if self.input not in self.tensors:
            raise QNetError(f"input tensor '{self.input}' has no spec")
        for o in self.ops:
            if o.kind not in OP_KINDS:
                raise QNetError(f"op {o.name}: unknown kind '{o.kind}'")
            for t in o.inputs:
                if t not in known:
                    raise QNetError(f"op {o.name}: input '{t}' is not produced before it")
            if o.output not in self.tensors:
                raise QNetError(f"op {o.name}: output '{o.output}' has no spec")
            want = op_output_shape(self, o)
            if tuple(self.tensors[o.output].shape) != want:
                raise QNetError(f"op {o.name}: output '{o.output}' has shape {tuple(self.tensors[o.output].shape)}, "
                                f"the op produces {want}")
            known.add(o.output)
        if self.output not in known:
            raise QNetError(f"output tensor '{self.output}' is never produced")
        ranges = self.infer_widths()
        for o in self.ops:
            (lo, hi), spec = ranges[o.output], self.tensors[o.output]
            if lo < spec.lo or hi > spec.hi:
                raise QNetError(f"op {o.name}: output range [{lo}, {hi}] does not fit {spec.bits}-bit "
                                f"{'signed' if spec.signed else 'unsigned'} tensor '{o.output}'")
        return self


class Range(NamedTuple):
    """An integer tensor's exact range; `bits`/`signed`: the narrowest type holding it."""
    lo: int
    hi: int

    @property
    def bits(self) -> int:
        return bits_for(self.lo, self.hi)[0]

    @property
    def signed(self) -> bool:
        return bits_for(self.lo, self.hi)[1]


def last_uses(ops) -> dict:
    """{tensor name: index of the last op reading it}, so executors can free intermediates early."""
    last = {}
    for i, o in enumerate(ops):
        for t in o.inputs:
            last[t] = i
    return last


def load(directory) -> QNet:
    d = Path(directory)
    jp, npz = d / QNET_JSON, d / QNET_NPZ
    if not jp.is_file() or not npz.is_file():
        raise QNetError(f"{d}: not a quantized network folder (needs {QNET_JSON} and {QNET_NPZ})")
    doc = json.loads(jp.read_text())
    if doc.get("format") != "adderflow-qnet":
        raise QNetError(f"{jp}: not an AdderFlow qnet file")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    tensors = {}
    for t in doc["tensors"]:
        t = dict(t)
        t["shape"] = tuple(t["shape"])
        tensors[t["name"]] = TensorSpec(**t)
    ops = [Op(kind=o["kind"], name=o["name"], inputs=list(o["inputs"]), output=o["output"], attrs=o["attrs"],
              arrays={k: arrays[f"{o['name']}/{k}"] for k in o["arrays"]}) for o in doc["ops"]]
    return QNet(tensors=tensors, ops=ops, input=doc["input"], output=doc["output"],
                input_quant=doc.get("input_quant", {}), meta=doc.get("meta", {}))


def quantize_input(images_uint8: np.ndarray, input_quant: dict, spec: TensorSpec) -> np.ndarray:
    """uint8 NHWC images -> the network's integer input (float64 math, round half up, saturate)."""
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8:
        raise QNetError(f"input images must be uint8, got {x.dtype}")
    mean = np.asarray(input_quant.get("mean", 0.0), dtype=np.float64)
    std = np.asarray(input_quant.get("std", 1.0), dtype=np.float64)
    v = ((x.astype(np.float64) / 255.0 - mean) / std) / float(input_quant["scale"])
    return np.clip(np.floor(v + 0.5), spec.lo, spec.hi).astype(np.int64)


def bits_for(lo: int, hi: int) -> tuple[int, bool]:
    """Narrowest (bits, signed) integer type that holds [lo, hi]."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return max(int(hi).bit_length(), int(-lo - 1).bit_length()) + 1, True


def op_output_shape(net: QNet, o: Op) -> tuple:
    """The shape (without batch) an op produces from its inputs' declared shapes."""
    ins = [tuple(net.tensors[t].shape) for t in o.inputs]
    if o.kind in ("conv2d", "adder2d"):
        kh, kw, cin, cout = o.arrays["weight"].shape
        h, w, c = ins[0]
        if c != cin:
            raise QNetError(f"op {o.name}: input '{o.inputs[0]}' has {c} channels, the weights expect {cin}")
        t, b, l, r = o.attrs["pads"]
        s = int(o.attrs["stride"])
        return ((h + t + b - kh) // s + 1, (w + l + r - kw) // s + 1, cout)
    if o.kind == "requant":
        if any(i != ins[0] for i in ins):
            raise QNetError(f"op {o.name}: inputs {o.inputs} have different shapes {ins}")
        if o.arrays["mult"].shape != (len(ins), ins[0][-1]) or o.arrays["bias"].shape != (ins[0][-1],):
            raise QNetError(f"op {o.name}: mult/bias shapes {o.arrays['mult'].shape}/{o.arrays['bias'].shape} "
                            f"do not match {len(ins)} inputs of {ins[0][-1]} channels")
        return ins[0]
    if o.kind == "global_sum_pool":
        return (ins[0][-1],)
    if o.kind == "dense":
        cin, cout = o.arrays["weight"].shape
        if ins[0] != (cin,):
            raise QNetError(f"op {o.name}: input shape {ins[0]} does not match weights ({cin}, {cout})")
        return (cout,)
    raise QNetError(f"op {o.name}: unknown kind '{o.kind}'")


def _range_dot(lo: int, hi: int, w: np.ndarray, axis) -> tuple[int, int]:
    """Bounds of sum x*w over `axis` with x in [lo, hi], per remaining index; returns the extremes."""
    w = w.astype(object)
    pos, neg = np.where(w > 0, w, 0), np.where(w < 0, w, 0)
    top = (pos * hi + neg * lo).sum(axis=axis)
    bot = (pos * lo + neg * hi).sum(axis=axis)
    return int(np.min(bot)), int(np.max(top))


def op_output_bounds(net: QNet, o: Op, bounds: dict) -> tuple[int, int]:
    """Worst-case integer range of an op's result (before its output clip), from its input ranges."""
    if o.kind in ("conv2d", "dense"):
        lo, hi = bounds[o.inputs[0]]
        w = o.arrays["weight"]
        return _range_dot(lo, hi, w, axis=tuple(range(w.ndim - 1)))
    if o.kind == "adder2d":
        lo, hi = bounds[o.inputs[0]]
        w = o.arrays["weight"].astype(np.int64)
        if np.any(o.arrays.get("group_in_mult", np.zeros(1)) != 0):
            lo, hi = min(lo, 0), max(hi, net.tensors[o.inputs[0]].hi)
        per = np.maximum(np.abs(hi - w), np.abs(w - lo)).reshape(-1, w.shape[-1]).sum(axis=0)
        return 0, int(per.max())
    if o.kind == "global_sum_pool":
        lo, hi = bounds[o.inputs[0]]
        hw = int(np.prod(net.tensors[o.inputs[0]].shape[:-1]))
        return lo * hw, hi * hw
    if o.kind == "requant":
        mult, bias = o.arrays["mult"].astype(object), o.arrays["bias"].astype(object)
        vlo, vhi = bias.copy(), bias.copy()
        for k, t in enumerate(o.inputs):
            lo, hi = bounds[t]
            vlo = vlo + np.minimum(mult[k] * lo, mult[k] * hi)
            vhi = vhi + np.maximum(mult[k] * lo, mult[k] * hi)
        if max(abs(int(vlo.min())), abs(int(vhi.max()))) >= (1 << 62):
            raise QNetError(f"op {o.name}: requant sum can reach 2^62; reduce shift or multipliers")
        sh = int(o.attrs["shift"])
        rnd = (1 << (sh - 1)) if sh > 0 else 0
        return int((vlo.min() + rnd) >> sh), int((vhi.max() + rnd) >> sh)
    raise QNetError(f"op {o.name}: unknown kind '{o.kind}'")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v
