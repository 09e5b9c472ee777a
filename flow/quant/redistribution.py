"""Float graph + calibration stats -> integer QNet (all float-to-integer decisions live here).

Methods (`QuantConfig.method`):

* ``redistribution`` - Nie et al. 2022 as published: k-means groups on max|w|; per group s_g = A when
  max|w_g| > A (weights clamped to [-A, A], lossless bias -sum max(|w| - A, 0)) else s_g = max|w_g|;
  wq = clip(round(w (2^b-1) / (2 s_g)), -2^(b-1), 2^(b-1)-1), aq = clip(round(x (2^b-1) / s_g), 0, 2^b-1),
  SAD |aq - 2 wq| (the QNet weight array holds 2 wq).
* ``qssf`` - one shared scale per layer for weights and activations (s = max|W|, signed weight grid).
* ``redistribution+`` (ours, the default) - one-sided lossless range clamp on the activation grid: for
  x in [0, A], |x - w| = |x - clip(w, 0, A)| + max(-w, 0) + max(w - A, 0) exactly, so the weights need
  only the unsigned grid of the activations (wq = round(clip(w, 0, A) (2^b-1) / A) in [0, 2^b-1]: twice
  the resolution of the signed grid, and no weight level is wasted on w <= 0 where |x - w| is linear),
  the excess goes exactly into the per-channel bias; then sequential per-channel bias correction.

Options: groups, alpha (outlier clamp; a float or {tensor: alpha}), range_clamp, bias_correction,
bn_reestimation, first/last layer bits, APoT weights for them, APoT (k-term) requant multipliers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from flow import golden
from flow.errors import AdderFlowError
from flow.qnet import Op, QNet, TensorSpec, last_uses
from flow.quant import apot
from flow.quant.calibrate import CalibStats
from flow.quant.graph import FloatGraph
from flow.quant.grouping import group_kernels, kernel_absmax

METHODS = ("redistribution+", "redistribution", "qssf")
DEFAULT_METHOD = "redistribution+"
# alpha per method and bit width. The authors' default for theirs; ours chosen on train2k images
# 1000-1999 (bench/quant_select.py, results/quant_select.md), never on test images.
DEFAULT_ALPHA = {"redistribution+": {8: "mse", 7: "mse", 6: "mse", 5: "mse", 4: 0.999, 3: "mse", 2: "mse"},
                 "redistribution": 0.9997, "qssf": 1.0}


def default_alpha(method: str, bits: int):
    a = DEFAULT_ALPHA[method]
    return a.get(bits, 0.999) if isinstance(a, dict) else a
MULT_BITS = 24          # requant multipliers are signed 24-bit: |mult| < 2^23
GROUP_SHIFT = 16        # fixed-point precision of the per-group input rescale


@dataclass
class QuantConfig:
    bits: int = 4
    method: str = DEFAULT_METHOD
    groups: int = 4
    alpha: object = None              # float, {tensor: float}, or None for the method's default
    range_clamp: bool = True
    bias_correction: object = None    # None: on for redistribution+, off otherwise
    bn_reestimation: bool = False
    affine_correction: bool = False   # per-channel least-squares scale + offset instead of offset only
    bits_first: int = 8
    bits_last: int = 8
    apot_first: bool = False
    apot_last: bool = False
    apot_requant: int = 0             # 0: plain integer multipliers; k: at most k signed powers of two
    input_bits: int = 8
    output_bits: int = 16
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "QuantConfig":
        self.check()
        c = QuantConfig(**asdict(self))
        if c.alpha is None:
            c.alpha = default_alpha(c.method, c.bits)
        if c.bias_correction is None:
            c.bias_correction = c.method == "redistribution+"
        return c

    def check(self) -> None:
        if self.method not in METHODS:
            raise AdderFlowError(f"unknown method '{self.method}' (choose from {', '.join(METHODS)})")
        for name in ("bits", "bits_first", "bits_last"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not 2 <= v <= 8:
                raise AdderFlowError(f"{name.replace('_', '-')} must be an integer in 2..8, got {v}")
        if not isinstance(self.groups, (int, np.integer)) or self.groups < 1:
            raise AdderFlowError(f"groups must be a positive integer, got {self.groups}")
        alphas = self.alpha.values() if isinstance(self.alpha, dict) else [self.alpha]
        for a in alphas:
            if a is not None and a != "mse" and not (isinstance(a, (int, float)) and 0 < a <= 1):
                raise AdderFlowError(f"alpha must lie in (0, 1], got {a}")
        for flag, b in (("apot-first", self.bits_first), ("apot-last", self.bits_last)):
            if getattr(self, flag.replace("-", "_")) and not 2 <= b <= 7:
                raise AdderFlowError(f"--{flag} needs 2..7 bits (the authors' APoT sets), got {b}")
        if not 0 <= self.apot_requant <= 8:
            raise AdderFlowError(f"apot-requant terms must be in 0..8, got {self.apot_requant}")

    def alpha_for(self, tensor: str):
        """A quantile in (0, 1] or "mse" (the clamp minimising the activation's quantization MSE)."""
        a = self.alpha.get(tensor, self.alpha.get("*", default_alpha(self.method, self.bits))) if isinstance(self.alpha, dict) \
            else self.alpha
        return a if isinstance(a, str) else float(a)


# ---- per-layer weight quantization -------------------------------------------------------------

def quantize_linear_weights(w: np.ndarray, bits: int, use_apot: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric weights (last axis): integers and the real value of one step."""
    if use_apot:
        return apot.integer_weights(w, bits, axis=-1)
    qmax = (1 << (bits - 1)) - 1
    m = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
    step = np.where(m > 0, m / qmax, 1.0)
    return np.clip(np.round(w / step), -qmax, qmax).astype(np.int64), step


def quantize_adder(w: np.ndarray, A: float, bits: int, cfg: QuantConfig, layer: str) -> dict:
    """Integer SAD weights and per-group input rescale of one adder layer whose input has range A.

    Returns weight, group_of_channel, group_scale (s_g), group_step (real value of one activation
    step per group), lsb (C,) and offset (C,) such that sum|x - w| = lsb * SAD + offset, plus docs.
    """
    L = (1 << bits) - 1
    cout = w.shape[-1]
    m = kernel_absmax(w)
    if cfg.method == "redistribution+":
        step = A / L
        clipped = np.clip(w, 0.0, A)
        wq = np.clip(np.round(clipped / step), 0, L).astype(np.int64)
        excess = (np.maximum(-w, 0) + np.maximum(w - A, 0)).reshape(-1, cout).sum(axis=0)
        offset = excess if cfg.range_clamp else np.zeros(cout)
        return dict(weight=wq, group_of_channel=np.zeros(cout, np.int64), group_scale=np.array([A]),
                    group_step=np.array([step]), lsb=np.full(cout, step), offset=offset,
                    weight_bits=bits, weight_signed=False, weight_shift=0)
    if cfg.method == "qssf":
        s = float(m.max())
        step = s / ((1 << (bits - 1)) - 1)
        qmax = (1 << (bits - 1)) - 1
        wq = np.clip(np.round(w / step), -qmax, qmax).astype(np.int64)
        return dict(weight=wq, group_of_channel=np.zeros(cout, np.int64), group_scale=np.array([s]),
                    group_step=np.array([step]), lsb=np.full(cout, step), offset=np.zeros(cout),
                    weight_bits=bits, weight_signed=True, weight_shift=0)
    # redistribution as published
    gid = group_kernels(w, cfg.groups, layer)
    ng = int(gid.max()) + 1
    gmax = np.array([m[gid == g].max() for g in range(ng)])
    s_g = np.where(gmax > A, A, gmax) if cfg.range_clamp else gmax
    s_g = np.where(s_g > 0, s_g, A)
    s_c = s_g[gid]
    wc = np.clip(w, -s_c, s_c)
    wq = np.clip(np.round(wc * L / (2 * s_c)), -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype(np.int64)
    offset = np.maximum(np.abs(w) - s_c, 0).reshape(-1, cout).sum(axis=0)
    gstep = s_g / L
    return dict(weight=2 * wq, group_of_channel=gid, group_scale=s_g, group_step=gstep, lsb=gstep[gid],
                offset=offset, weight_bits=bits + 1, weight_signed=True, weight_shift=1)


def group_rescale(tensor_scale: float, group_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point factors tensor_scale / group_step (mult 0 = identity)."""
    mult, shift = [], []
    for st in group_step:
        r = tensor_scale / st
        if abs(r - 1.0) < 1e-9:
            mult.append(0), shift.append(0)
        else:
            mult.append(int(round(r * (1 << GROUP_SHIFT)))), shift.append(GROUP_SHIFT)
    return np.asarray(mult, np.int64), np.asarray(shift, np.int64)


# ---- requantisation ----------------------------------------------------------------------------

def choose_shift(m_real: np.ndarray) -> int:
    peak = float(np.max(np.abs(m_real))) if m_real.size else 0.0
    if peak == 0:
        return 1
    sh = int(np.floor(np.log2(((1 << (MULT_BITS - 1)) - 1) / peak)))
    return int(np.clip(sh, 1, 48))


def requant_integers(a: np.ndarray, b: np.ndarray, lsb: list, off: list, out_scale: float,
                     apot_terms: int = 0) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """mult (K, C), bias (C,), shift for v = sum_k a_k (lsb_k q_k + off_k) + b, output LSB out_scale."""
    m_real = np.stack([a[k] * lsb[k] for k in range(len(lsb))]) / out_scale
    bias_real = (b + sum(a[k] * off[k] for k in range(len(off)))) / out_scale
    sh = choose_shift(m_real)
    mult = np.round(m_real * (1 << sh)).astype(np.int64)
    if apot_terms:
        mult = apot.round_to_pow2_terms(mult, apot_terms)
    bias = np.round(bias_real * (1 << sh)).astype(np.int64)
    return mult, bias, sh, m_real


# ---- the builder ---------------------------------------------------------------------------------

def build_qnet(graph: FloatGraph, stats: CalibStats, cfg: QuantConfig, calib_images=None,
               progress: bool = False) -> QNet:
    """The integer network. `calib_images` (uint8) are needed for bias correction / BN re-estimation."""
    cfg = cfg.resolved()
    cfg.check()
    for fo in graph.ops:
        if fo.kind == "adder2d" and cfg.groups > fo.arrays["weight"].shape[-1]:
            raise AdderFlowError(f"layer {fo.name}: groups={cfg.groups} exceeds its "
                                 f"{fo.arrays['weight'].shape[-1]} output channels")
    b = cfg.bits
    tensors: dict = {}
    qin_scale = stats.input_absmax / ((1 << (cfg.input_bits - 1)) - 1)
    tensors[graph.input] = TensorSpec(graph.input, tuple(graph.input_shape), cfg.input_bits, True, qin_scale, "act")
    lsb: dict = {graph.input: None}   # tensor -> per-channel real LSB (acc) or None (activation: scalar scale)
    off: dict = {}
    ops, layer_docs = [], {}
    dense_ops = [o for o in graph.ops if o.kind == "dense"]
    last_dense = dense_ops[-1].name if dense_ops else None

    for fo in graph.ops:
        attrs = {k: v for k, v in fo.attrs.items() if k in ("stride", "pads")}
        shape = tuple(graph.shapes[fo.output])
        src = fo.inputs[0]
        if fo.kind in ("conv2d", "dense"):
            first = fo.kind == "conv2d" and src == graph.input
            last = fo.name == last_dense
            wbits = cfg.bits_first if first else (cfg.bits_last if last else b)
            use_apot = (first and cfg.apot_first) or (last and cfg.apot_last)
            wq, wstep = quantize_linear_weights(fo.arrays["weight"], wbits, use_apot)
            in_lsb = _scalar_lsb(tensors, lsb, src)
            lsb[fo.output], off[fo.output] = in_lsb * wstep, np.zeros(shape[-1])
            attrs.update(bits=wbits, weight_scales=wstep.tolist())
            if use_apot:
                attrs["apot_terms"] = 3
            ops.append(Op(fo.kind, fo.name, [src], fo.output, attrs, {"weight": wq}))
            layer_docs[fo.name] = {"kind": fo.kind, "weight_bits": wbits, "apot": use_apot,
                                   "weight_scale_min": float(wstep.min()), "weight_scale_max": float(wstep.max())}
        elif fo.kind == "adder2d":
            spec = tensors[src]
            if spec.signed or spec.kind != "act":
                raise AdderFlowError(f"adder layer {fo.name}: input '{src}' must be an unsigned activation")
            A = spec.scale * spec.hi
            q = quantize_adder(fo.arrays["weight"], A, spec.bits, cfg, fo.name)
            gm, gs = group_rescale(spec.scale, q["group_step"])
            lsb[fo.output], off[fo.output] = q["lsb"], q["offset"]
            attrs.update(bits=spec.bits, act_clamp=A, group_scales=q["group_scale"].tolist(),
                         weight_bits=q["weight_bits"], weight_signed=q["weight_signed"],
                         weight_shift=q["weight_shift"], method=cfg.method,
                         range_clamp_bias=q["offset"].tolist())
            ops.append(Op("adder2d", fo.name, [src], fo.output, attrs,
                          {"weight": q["weight"], "group_of_channel": q["group_of_channel"],
                           "group_in_mult": gm, "group_in_shift": gs}))
            gid = q["group_of_channel"]
            layer_docs[fo.name] = {"kind": "adder2d", "A": A, "groups": int(gid.max()) + 1,
                                   "group_scales": q["group_scale"].tolist(),
                                   "group_sizes": np.bincount(gid).tolist(),
                                   "kernel_absmax_min": float(kernel_absmax(fo.arrays["weight"]).min()),
                                   "kernel_absmax_max": float(kernel_absmax(fo.arrays["weight"]).max()),
                                   "range_clamp_bias_mean": float(np.mean(q["offset"])),
                                   "weight_bits": q["weight_bits"], "weight_signed": q["weight_signed"]}
        elif fo.kind == "global_sum_pool":
            lsb[fo.output], off[fo.output] = np.full(shape[-1], _scalar_lsb(tensors, lsb, src)), np.zeros(shape[-1])
            ops.append(Op("global_sum_pool", fo.name, [src], fo.output, {}, {}))
        elif fo.kind == "requant":
            if fo.attrs["relu"]:
                # per-tensor widths (QAT export of mixed-precision models); the adder reading it follows
                tb = int(cfg.extra.get("tensor_bits", {}).get(fo.output, b))
                alpha = cfg.alpha_for(fo.output)
                A = stats.mse_clamp(fo.output, tb) if alpha == "mse" else stats.clamp(fo.output, alpha)
                A = A if A > 0 else 1.0   # an all-zero tensor: any scale represents it
                out_spec = TensorSpec(fo.output, shape, tb, False, A / ((1 << tb) - 1), "act")
            else:
                ob = cfg.output_bits
                peak = stats.out_absmax.get(fo.output, 1.0) * 1.25
                peak = peak if peak > 0 else 1.0
                alpha, A = None, None
                out_spec = TensorSpec(fo.output, shape, ob, True, peak / ((1 << (ob - 1)) - 1), "act")
            tensors[fo.output] = out_spec
            in_lsb = [_vector_lsb(tensors, lsb, t, shape[-1]) for t in fo.inputs]
            in_off = [off.get(t, np.zeros(shape[-1])) for t in fo.inputs]
            mult, bias, sh, m_real = requant_integers(fo.arrays["a"], fo.arrays["b"], in_lsb, in_off,
                                                      out_spec.scale, cfg.apot_requant)
            attrs = {"shift": sh, "relu": bool(fo.attrs["relu"]), "out_scale": out_spec.scale,
                     "mult_real": m_real.tolist()}
            if alpha is not None:
                attrs.update(alpha=alpha, act_clamp=A)
            if cfg.apot_requant:
                attrs["apot_terms"] = int(cfg.apot_requant)
            ops.append(Op("requant", fo.name, list(fo.inputs), fo.output, attrs, {"mult": mult, "bias": bias}))
            layer_docs[fo.name] = {"kind": "requant", "inputs": list(fo.inputs), "shift": sh,
                                   "alpha": alpha, "A": A, "out_scale": out_spec.scale,
                                   "mult_abs_max": int(np.abs(mult).max())}
        else:
            raise AdderFlowError(f"op {fo.name}: unknown kind '{fo.kind}'")
        if fo.output not in tensors:
            tensors[fo.output] = TensorSpec(fo.output, shape, 64, True, float(np.mean(lsb[fo.output])), "acc")

    net = QNet(tensors=tensors, ops=ops, input=graph.input, output=graph.output,
               input_quant={"mean": list(graph.preprocess.get("mean", [0.0])),
                            "std": list(graph.preprocess.get("std", [1.0])), "scale": qin_scale})
    net.meta = {"model": graph.name, "bits": b, "method": cfg.method, "groups": cfg.groups,
                "alpha": cfg.alpha, "options": {k: v for k, v in asdict(cfg).items() if k not in ("alpha",)},
                "calibration": {"images": stats.n_images, "input_absmax": stats.input_absmax,
                                "alphas": list(stats.alphas)},
                "layers": layer_docs}
    ctx = _Context(graph, net, lsb, off, cfg)
    if cfg.bn_reestimation or cfg.bias_correction or cfg.affine_correction:
        if calib_images is None:
            raise AdderFlowError("bias correction / BN re-estimation need the calibration images")
        correct_sequentially(ctx, stats, calib_images, progress)
    narrow_accumulators(net)
    return net.validate()


class _Context:
    def __init__(self, graph, net, lsb, off, cfg):
        self.graph, self.net, self.lsb, self.off, self.cfg = graph, net, lsb, off, cfg


def _scalar_lsb(tensors, lsb, t) -> float:
    v = lsb.get(t)
    if v is None:
        return float(tensors[t].scale)
    if np.ndim(v) and np.ptp(v) > 0:
        raise AdderFlowError(f"tensor {t}: per-channel scales cannot feed a conv/dense/pool")
    return float(np.ravel(v)[0])


def _vector_lsb(tensors, lsb, t, c) -> np.ndarray:
    v = lsb.get(t)
    return np.full(c, float(tensors[t].scale)) if v is None else np.asarray(v, dtype=np.float64)


def narrow_accumulators(net: QNet) -> None:
    """Give every accumulator tensor the narrowest width that holds its worst case."""
    for name, r in net.infer_widths().items():
        spec = net.tensors[name]
        if spec.kind == "acc":
            spec.bits, spec.signed = r.bits, r.signed


# ---- sequential corrections on calibration data -----------------------------------------------

def correct_sequentially(ctx: _Context, stats: CalibStats, images, progress=False) -> None:
    """Run the integer network op by op on the calibration images; before each requant, re-estimate
    its BatchNorms from the quantized accumulators (option) and shift its bias so the per-channel mean
    of its pre-activation equals the float network's (bias correction), so every later layer sees the
    corrected values."""
    net, graph, cfg = ctx.net, ctx.graph, ctx.cfg
    from flow.quant.graph import pre_activation, run_float_op

    images = np.asarray(images)[:stats.pre_mean_images or None]
    env = {net.input: net.quantize_input(images)}
    fenv = {graph.input: graph.normalize(images)} if cfg.affine_correction else None
    last = last_uses(net.ops)
    ops = net.ops
    if progress:
        from tqdm import tqdm
        ops = tqdm(ops, desc="bias correction", unit="op", leave=False)
    for i, o in enumerate(ops):
        if o.kind == "requant":
            fo = graph.op(o.name)
            ins = [env[t] for t in o.inputs]
            spec = net.tensors[o.output]
            C = spec.shape[-1]
            lsb = [_vector_lsb(net.tensors, ctx.lsb, t, C) for t in o.inputs]
            off = [ctx.off.get(t, np.zeros(C)) for t in o.inputs]
            a, b = fo.arrays["a"].copy(), fo.arrays["b"].copy()
            if cfg.bn_reestimation:
                a, b = reestimate_bn(fo, ins, lsb, off)
            mult, bias, sh, m_real = requant_integers(a, b, lsb, off, spec.scale, cfg.apot_requant)
            if cfg.affine_correction:
                f = pre_activation(fo, [fenv[t] for t in o.inputs]).reshape(-1, C).astype(np.float64)
                v = np.zeros(ins[0].shape, np.float64) + bias
                for k, t in enumerate(ins):
                    v += t * mult[k].astype(np.float64)
                qr = v.reshape(-1, C) / (1 << sh) * spec.scale
                var = qr.var(axis=0)
                slope = np.where(var > 0, ((f - f.mean(0)) * (qr - qr.mean(0))).mean(0) / np.maximum(var, 1e-30), 1.0)
                slope = np.clip(slope, 0.5, 2.0)
                inter = f.mean(0) - slope * qr.mean(0)
                mult_f = mult * slope
                bias_f = bias * slope + inter / spec.scale * (1 << sh)
                while np.abs(mult_f).max() >= (1 << (MULT_BITS - 1)) and sh > 1:
                    mult_f, bias_f, sh = mult_f / 2, bias_f / 2, sh - 1
                mult = np.round(mult_f).astype(np.int64)
                if cfg.apot_requant:
                    mult = apot.round_to_pow2_terms(mult, cfg.apot_requant)
                bias = np.round(bias_f).astype(np.int64)
                o.attrs["affine_correction"] = {"slope": slope.tolist(), "offset": inter.tolist()}
            elif cfg.bias_correction and o.name in stats.pre_mean:
                v = np.zeros(ins[0].shape, np.float64) + bias
                for k, t in enumerate(ins):
                    v += t * mult[k].astype(np.float64)
                got = v.reshape(-1, C).mean(axis=0) / (1 << sh) * spec.scale
                delta = stats.pre_mean[o.name] - got
                bias = bias + np.round(delta / spec.scale * (1 << sh)).astype(np.int64)
                o.attrs["bias_correction"] = delta.tolist()
            o.arrays["mult"], o.arrays["bias"], o.attrs["shift"] = mult, bias, sh
            o.attrs["mult_real"] = m_real.tolist()
        env[o.output] = golden.run_op(net, o, env)
        if fenv is not None:
            fenv[o.output] = run_float_op(graph.op(o.name), fenv)
        for t in o.inputs:
            if last[t] == i and t != net.output:
                env.pop(t, None)
                if fenv is not None:
                    fenv.pop(t, None)


def reestimate_bn(fo, ins, lsb, off) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm statistics of each BN input recomputed from the quantized network's values."""
    a, b = fo.arrays["a"].copy(), fo.arrays["b"].copy()
    for k, bn in enumerate(fo.attrs["bn"]):
        if bn is None:
            continue
        C = a.shape[1]
        z = (ins[k].reshape(-1, C) * lsb[k] + off[k]) * bn["pre"] + bn["pre_b"]
        mean, var = z.mean(axis=0), z.var(axis=0)
        old = bn["gamma"] / np.sqrt(bn["var"] + bn["eps"])
        new = bn["gamma"] / np.sqrt(var + bn["eps"])
        a[k] = bn["pre"] * new
        b = b - (bn["beta"] + old * (bn["pre_b"] - bn["mean"])) + (bn["beta"] + new * (bn["pre_b"] - mean))
    return a, b
