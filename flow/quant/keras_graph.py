"""A Keras float model (flow.models: resnet20, resnet20_cnn, adder_small, or any model of the same
layer vocabulary) as a float graph: Conv2D / AdderConv2D / Dense (+ bias), ZeroPadding2D,
BatchNormalization, ReLU, Add, GlobalAveragePooling2D, Flatten, Dropout (inference: identity)."""

from __future__ import annotations

import numpy as np

from flow.errors import AdderFlowError
from flow.quant.graph import FloatGraph, GraphBuilder


def _parents(layer) -> list:
    node = layer._inbound_nodes[0]
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def from_keras(model, preprocess: dict | None = None) -> FloatGraph:
    import tensorflow as tf

    from flow.data import CIFAR_MEAN, CIFAR_STD
    from flow.layers.adder import AdderConv2D, explicit_padding

    L = tf.keras.layers
    in_shape = tuple(int(d) for d in model.input_shape[1:])
    if preprocess is None:
        preprocess = {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)} if in_shape[-1] == 3 else {}
    gb = GraphBuilder(model.name, in_shape, preprocess)
    val: dict = {}   # keras layer name -> ("tensor", name, pads) | ("expr", expr, last name)

    def tensor_of(v, what):
        if v[0] == "tensor":
            return v[1], v[2]
        e = v[1]
        if len(e["terms"]) == 1 and e["terms"][0][2] is None and np.all(e["b"] == 0) and np.ptp(e["terms"][0][1]) == 0:
            return e["terms"][0][0], (0, 0, 0, 0)   # a uniformly scaled integer tensor (pooling)
        name = v[2]
        return gb.requant(name, e, relu=False), (0, 0, 0, 0)

    def as_expr(v):
        if v[0] == "expr":
            return v[1]
        if any(v[2]):
            raise AdderFlowError("zero padding must be followed by a convolution")
        return gb.expr(v[1])

    def coeff_of(v):
        """Uniform scalar factor carried by a pooled integer tensor (1/(H*W)), else 1."""
        if v[0] == "expr":
            return float(v[1]["terms"][0][1][0])
        return 1.0

    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            val[layer.name] = ("tensor", "input", (0, 0, 0, 0))
            continue
        parents = [val[p.name] for p in _parents(layer)]
        src = parents[0]
        if isinstance(layer, L.ZeroPadding2D):
            t, pads = tensor_of(src, layer.name)
            (pt, pb), (pl, pr) = layer.padding
            val[layer.name] = ("tensor", t, (pads[0] + pt, pads[1] + pb, pads[2] + pl, pads[3] + pr))
        elif isinstance(layer, (AdderConv2D, L.Conv2D)) and not isinstance(layer, L.DepthwiseConv2D):
            factor = coeff_of(src)
            t, pads = tensor_of(src, layer.name)
            shape = gb.g.shapes[t]
            kernel = layer.kernel.numpy().astype(np.float64)
            adder = isinstance(layer, AdderConv2D)
            if not adder and len(shape) == 1 or (not adder and shape[:2] == (1, 1) and kernel.shape[:2] == (1, 1)):
                if len(shape) == 3:  # 1x1 conv on a 1x1 map after pooling: a dense layer
                    raise AdderFlowError(f"layer {layer.name}: pooling must keep a flat tensor before the classifier")
                out = gb.layer("dense", layer.name, t, kernel.reshape(kernel.shape[-2], kernel.shape[-1]))
            else:
                if len(shape) != 3:
                    raise AdderFlowError(f"layer {layer.name}: needs a feature map input, got shape {shape}")
                stride = int(layer.strides[0])
                if layer.strides[0] != layer.strides[1]:
                    raise AdderFlowError(f"layer {layer.name}: unequal strides {layer.strides} unsupported")
                padding = layer.padding if adder else layer.padding.lower()
                (a, b), (c, d) = explicit_padding(padding, shape[:2], tuple(kernel.shape[:2]), (stride, stride))
                pads = (pads[0] + a, pads[1] + b, pads[2] + c, pads[3] + d)
                out = gb.layer("adder2d" if adder else "conv2d", layer.name, t, kernel, stride, pads)
            e = gb.scale_expr(gb.expr(out), factor)
            if getattr(layer, "use_bias", False):
                e["b"] = e["b"] + layer.bias.numpy().astype(np.float64)
            val[layer.name] = ("expr", e, layer.name)
        elif isinstance(layer, L.Dense):
            factor = coeff_of(src)
            t, _ = tensor_of(src, layer.name)
            out = gb.layer("dense", layer.name, t, layer.kernel.numpy().astype(np.float64))
            e = gb.scale_expr(gb.expr(out), factor)
            if layer.use_bias:
                e["b"] = e["b"] + layer.bias.numpy().astype(np.float64)
            val[layer.name] = ("expr", e, layer.name)
        elif isinstance(layer, L.BatchNormalization):
            e = as_expr(src)
            gamma = layer.gamma.numpy() if layer.scale else np.ones(layer.moving_mean.shape)
            beta = layer.beta.numpy() if layer.center else np.zeros(layer.moving_mean.shape)
            e = gb.batchnorm(e, gamma, beta, layer.moving_mean.numpy(), layer.moving_variance.numpy(), layer.epsilon)
            val[layer.name] = ("expr", e, layer.name)
        elif isinstance(layer, L.ReLU) or (isinstance(layer, L.Activation) and layer.get_config()["activation"] == "relu"):
            if isinstance(layer, L.ReLU) and (layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0):
                raise AdderFlowError(f"layer {layer.name}: only plain ReLU is supported")
            e = as_expr(src)
            name = src[2] if src[0] == "expr" else layer.name
            t = gb.requant(name, e, relu=True, out=f"{name}_out")
            val[layer.name] = ("tensor", t, (0, 0, 0, 0))
        elif isinstance(layer, L.Add):
            e = as_expr(parents[0])
            for p in parents[1:]:
                e = gb.add(e, as_expr(p))
            val[layer.name] = ("expr", e, layer.name)
        elif isinstance(layer, L.GlobalAveragePooling2D):
            t, pads = tensor_of(src, layer.name)
            hw = int(np.prod(gb.g.shapes[t][:2]))
            pooled = gb.pool(layer.name, t)
            val[layer.name] = ("expr", gb.scale_expr(gb.expr(pooled), 1.0 / hw), layer.name)
        elif isinstance(layer, (L.Flatten, L.Dropout, L.Reshape)):
            if isinstance(layer, (L.Flatten, L.Reshape)) and src[0] == "tensor" and len(gb.g.shapes[src[1]]) == 3 \
                    and gb.g.shapes[src[1]][:2] != (1, 1):
                raise AdderFlowError(f"layer {layer.name}: flattening a feature map is unsupported (use pooling)")
            val[layer.name] = src
        else:
            raise AdderFlowError(f"layer {layer.name}: Keras layer type {type(layer).__name__} is not supported by the quantizer")
    out = val[model.layers[-1].name]
    if out[0] == "expr":
        gb.requant(out[2], out[1], relu=False, out="logits")
        return gb.finish("logits")
    return gb.finish(out[1])
