"""A small float graph with the same op structure as a QNet, and its numpy/numba executor.

Op kinds mirror `flow.qnet`: ``conv2d`` and ``adder2d`` (HWIO weights, stride, explicit pads; the adder
output is the positive sum |x - w|, the AdderNet minus sign lives in the next affine), ``requant``
(v = sum_k a[k, c] * in_k + b[c], optional ReLU: BN, residual add and ReLU fused), ``global_sum_pool``
and ``dense``. Every requant keeps the BatchNorm parameters of each input so BN can be re-estimated.
Builders: the official ResNet-20 state dict (`from_resnet20_state_dict`) and a Keras model
(`from_keras`). The quantizer turns this graph op by op into the integer QNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flow.constants import BN_EPSILON
from flow.errors import AdderFlowError
from flow.kernels import adder2d_float, conv2d
from flow.qnet import last_uses


@dataclass
class FOp:
    kind: str
    name: str
    inputs: list
    output: str
    attrs: dict = field(default_factory=dict)    # stride, pads, relu, bn (list per input or None)
    arrays: dict = field(default_factory=dict)   # weight (float HWIO / (Cin, Cout)), a (K, C), b (C,)


@dataclass
class FloatGraph:
    name: str
    input_shape: tuple
    ops: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)     # tensor -> shape without batch
    input: str = "input"
    output: str = "logits"
    preprocess: dict = field(default_factory=dict)  # {"mean": [...], "std": [...]} on x/255

    def op(self, name: str) -> FOp:
        return next(o for o in self.ops if o.name == name)

    def producer(self, tensor: str):
        return next((o for o in self.ops if o.output == tensor), None)

    def consumers(self, tensor: str) -> list:
        return [o for o in self.ops if tensor in o.inputs]

    def normalize(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> the float network input (x/255, then per-channel mean/std if any)."""
        x = np.asarray(images_uint8, dtype=np.float64) / 255.0
        mean = np.asarray(self.preprocess.get("mean", 0.0))
        std = np.asarray(self.preprocess.get("std", 1.0))
        return ((x - mean) / std).astype(np.float32)


# ---- building ----------------------------------------------------------------------------------

class GraphBuilder:
    """Emits ops while tracking pending affine expressions: sum_k a_k * t_k + b that a ReLU, a conv
    input or the end of the network turns into one `requant` op."""

    def __init__(self, name: str, input_shape, preprocess: dict | None = None):
        self.g = FloatGraph(name=name, input_shape=tuple(input_shape), preprocess=dict(preprocess or {}))
        self.g.shapes["input"] = tuple(input_shape)

    # a pending expression: {"terms": [(tensor, a (C,), bn or None)], "b": (C,)}
    def expr(self, tensor: str, channels: int | None = None) -> dict:
        """The real value of a tensor; an adder accumulator holds sum|x - w|, so its value is -acc."""
        channels = channels or self.g.shapes[tensor][-1]
        prod = self.g.producer(tensor)
        sign = -1.0 if prod is not None and prod.kind == "adder2d" else 1.0
        return {"terms": [(tensor, np.full(channels, sign), None)], "b": np.zeros(channels)}

    def layer(self, kind: str, name: str, x: str, weight: np.ndarray, stride: int = 1, pads=(0, 0, 0, 0)) -> str:
        shape = self.g.shapes[x]
        w = np.asarray(weight, dtype=np.float64)
        if kind == "dense":
            if w.ndim != 2 or w.shape[0] != shape[-1]:
                raise AdderFlowError(f"layer {name}: weight {w.shape} does not fit input {shape}")
            out_shape = (w.shape[1],)
        else:
            kh, kw, cin, cout = w.shape
            if cin != shape[-1]:
                raise AdderFlowError(f"layer {name}: weight {w.shape} does not fit input {shape}")
            ho = (shape[0] + pads[0] + pads[1] - kh) // stride + 1
            wo = (shape[1] + pads[2] + pads[3] - kw) // stride + 1
            out_shape = (ho, wo, cout)
        out = f"{name}_acc"
        self.g.ops.append(FOp(kind, name, [x], out, {"stride": int(stride), "pads": [int(p) for p in pads]},
                              {"weight": w}))
        self.g.shapes[out] = out_shape
        return out

    def pool(self, name: str, x: str) -> str:
        out = f"{name}_acc"
        self.g.ops.append(FOp("global_sum_pool", name, [x], out))
        self.g.shapes[out] = (self.g.shapes[x][-1],)
        return out

    @staticmethod
    def scale_expr(e: dict, a, b=0.0) -> dict:
        """a * e + b (per channel)."""
        a = np.asarray(a, dtype=np.float64)
        return {"terms": [(t, c * a, bn) for t, c, bn in e["terms"]], "b": e["b"] * a + b}

    @staticmethod
    def batchnorm(e: dict, gamma, beta, mean, var, eps=BN_EPSILON) -> dict:
        """BN over a single-term expression c * t + b0; remembers the BN so it can be re-estimated."""
        if len(e["terms"]) != 1 or e["terms"][0][2] is not None:
            raise AdderFlowError("BatchNorm must follow a conv/adder/dense layer directly")
        t, c, _ = e["terms"][0]
        gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in (gamma, beta, mean, var))
        a = gamma / np.sqrt(var + eps)
        bn = {"pre": c, "pre_b": e["b"], "gamma": gamma, "beta": beta, "mean": mean, "var": var, "eps": float(eps)}
        return {"terms": [(t, c * a, bn)], "b": beta + a * (e["b"] - mean)}

    @staticmethod
    def add(e1: dict, e2: dict) -> dict:
        return {"terms": e1["terms"] + e2["terms"], "b": e1["b"] + e2["b"]}

    def requant(self, name: str, e: dict, relu: bool, out: str | None = None) -> str:
        out = out or f"{name}_out"
        terms = e["terms"]
        self.g.ops.append(FOp("requant", name, [t for t, _, _ in terms], out,
                              {"relu": bool(relu), "bn": [bn for _, _, bn in terms]},
                              {"a": np.stack([c for _, c, _ in terms]), "b": np.asarray(e["b"], np.float64)}))
        self.g.shapes[out] = self.g.shapes[terms[0][0]]
        return out

    def finish(self, output: str) -> FloatGraph:
        self.g.output = output
        return self.g


def hwio(w_oihw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(w_oihw), (2, 3, 1, 0)))


def from_resnet20_state_dict(sd: dict, name: str = "resnet20") -> FloatGraph:
    """The official AdderNet ResNet-20 (PyTorch names, `module.` prefix allowed) as a float graph; the
    topology is `flow.models.resnet20_blocks` (numpy only: no Keras model is built)."""
    from flow.checkpoint import strip_module_prefix
    from flow.data import CIFAR_MEAN, CIFAR_STD
    from flow.models import RESNET20_INPUT_SHAPE, resnet20_blocks

    sd = {k: np.asarray(v) for k, v in strip_module_prefix(sd).items()}
    adder = any(k.endswith(".adder") for k in sd)

    def weight(layer):
        for key in (f"{layer}.adder", f"{layer}.weight"):
            if key in sd:
                return hwio(sd[key]), ("adder2d" if key.endswith(".adder") else "conv2d")
        raise AdderFlowError(f"state dict has no weights for layer {layer}")

    def bn(e, layer):
        try:
            return GraphBuilder.batchnorm(e, sd[f"{layer}.weight"], sd[f"{layer}.bias"],
                                          sd[f"{layer}.running_mean"], sd[f"{layer}.running_var"])
        except KeyError as exc:
            raise AdderFlowError(f"state dict lacks BatchNorm tensor {exc.args[0]}") from None

    gb = GraphBuilder(name if adder else "resnet20_cnn", RESNET20_INPUT_SHAPE,
                      {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)})
    w, kind = weight("conv1")
    h = gb.layer("conv2d", "conv1", "input", w, 1, (1, 1, 1, 1))
    h = gb.requant("bn1", bn(gb.expr(h, w.shape[-1]), "bn1"), relu=True, out="stem_out")
    for blk in resnet20_blocks():
        p, s, pn = blk.torch_name, blk.stride, blk.name
        w1, k1 = weight(f"{p}.conv1")
        y = gb.layer(k1, f"{pn}_conv1", h, w1, s, (1, 1, 1, 1))
        y = gb.requant(f"{pn}_bn1", bn(gb.expr(y, w1.shape[-1]), f"{p}.bn1"), relu=True, out=f"{pn}_conv1_out")
        w2, k2 = weight(f"{p}.conv2")
        y = gb.layer(k2, f"{pn}_conv2", y, w2, 1, (1, 1, 1, 1))
        main = bn(gb.expr(y, w2.shape[-1]), f"{p}.bn2")
        if blk.downsample:
            wd, kd = weight(f"{p}.downsample.0")
            d = gb.layer(kd, f"{pn}_downsample", h, wd, s, (0, 0, 0, 0))
            short = bn(gb.expr(d, wd.shape[-1]), f"{p}.downsample.1")
        else:
            short = gb.expr(h, gb.g.shapes[h][-1])
        h = gb.requant(f"{pn}_add", gb.add(main, short), relu=True, out=f"{pn}_out")
    hw = int(np.prod(gb.g.shapes[h][:2]))
    pooled = gb.pool("avgpool", h)
    wf, _ = weight("fc")
    f = gb.layer("dense", "fc", pooled, wf.reshape(wf.shape[-2], wf.shape[-1]))
    e = gb.scale_expr(gb.expr(f, wf.shape[-1]), 1.0 / hw)
    gb.requant("bn2", bn(e, "bn2"), relu=False, out="logits")
    return gb.finish("logits")


# ---- executing ---------------------------------------------------------------------------------

def run_float_op(op: FOp, env: dict) -> np.ndarray:
    x = env[op.inputs[0]]
    if op.kind == "conv2d":
        return conv2d(x.astype(np.float32), op.arrays["weight"].astype(np.float32), op.attrs["stride"],
                      tuple(op.attrs["pads"]))
    if op.kind == "adder2d":
        return -adder2d_float(x, op.arrays["weight"], op.attrs["stride"], tuple(op.attrs["pads"]))
    if op.kind == "global_sum_pool":
        return x.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)
    if op.kind == "dense":
        return (x.astype(np.float64) @ op.arrays["weight"]).astype(np.float32)
    if op.kind == "requant":
        v = pre_activation(op, [env[t] for t in op.inputs])
        return np.maximum(v, 0) if op.attrs["relu"] else v
    raise AdderFlowError(f"op {op.name}: unknown kind '{op.kind}'")


def pre_activation(op: FOp, inputs: list) -> np.ndarray:
    a, b = op.arrays["a"], op.arrays["b"]
    v = np.zeros(inputs[0].shape, np.float64) + b
    for k, t in enumerate(inputs):
        v += t * a[k]
    return v.astype(np.float32)


def recalibrate_bn(graph: FloatGraph, images_uint8: np.ndarray) -> FloatGraph:
    """Set every BatchNorm's statistics to those of the float network on these images (in order, so
    later layers see the recalibrated earlier ones). Makes seeded random weights produce live activations."""
    x = graph.normalize(images_uint8)

    def observe(op, inputs, out):
        if op.kind != "requant" or not any(op.attrs["bn"]):
            return
        for k, bn in enumerate(op.attrs["bn"]):
            if bn is None:
                continue
            c = inputs[k].shape[-1]
            z = inputs[k].reshape(-1, c).astype(np.float64) * bn["pre"] + bn["pre_b"]
            old_a = bn["gamma"] / np.sqrt(bn["var"] + bn["eps"])
            old_b = bn["beta"] + old_a * (bn["pre_b"] - bn["mean"])
            bn["mean"], bn["var"] = z.mean(axis=0), z.var(axis=0)
            new_a = bn["gamma"] / np.sqrt(bn["var"] + bn["eps"])
            op.arrays["a"][k] = bn["pre"] * new_a
            op.arrays["b"] = op.arrays["b"] - old_b + bn["beta"] + new_a * (bn["pre_b"] - bn["mean"])
        out[...] = run_float_op(op, {t: v for t, v in zip(op.inputs, inputs)})

    run(graph, x, observe)
    return graph


def run(graph: FloatGraph, x: np.ndarray, observe=None) -> np.ndarray:
    """Float forward pass on normalised inputs; `observe(op, inputs, output)` sees every op."""
    env = {graph.input: np.asarray(x, dtype=np.float32)}
    last = last_uses(graph.ops)
    for i, o in enumerate(graph.ops):
        env[o.output] = run_float_op(o, env)
        if observe is not None:
            observe(o, [env[t] for t in o.inputs], env[o.output])
        for t in o.inputs:
            if last[t] == i and t != graph.output:
                env.pop(t)
    return env[graph.output]


def predict(graph: FloatGraph, images_uint8: np.ndarray, batch_size: int = 100) -> np.ndarray:
    return np.concatenate([run(graph, graph.normalize(images_uint8[i:i + batch_size]))
                           for i in range(0, len(images_uint8), batch_size)])
