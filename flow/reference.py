"""An independent float re-implementation of the official AdderNet ResNet-20 (numpy + numba) that
runs a PyTorch state dict directly.

It is the oracle for the Keras import: it shares no model code with `flow.models`, `flow.layers` or
`flow.quant` (it must not import them, and it spells the ResNet-20 topology out itself on purpose), so
a Keras model that matches its logits was imported correctly (tests/test_models_import.py,
bench/import_accuracy.py). Only the numeric kernels (`flow.kernels`) and the BatchNorm epsilon of the
checkpoint (`flow.constants`) are shared.
"""

from __future__ import annotations

import numpy as np

from flow.constants import BN_EPSILON
from flow.kernels import adder2d_float, conv2d

STAGES = (("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 2))   # (module, planes, first stride)
BLOCKS_PER_STAGE = 3


def _hwio(w_oihw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w_oihw, (2, 3, 1, 0)))


def _bn(sd, name, x):
    """BatchNorm in inference as y = a*x + b per channel."""
    a = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"] + BN_EPSILON)
    b = sd[f"{name}.bias"] - a * sd[f"{name}.running_mean"]
    return (x * a.astype(np.float64) + b.astype(np.float64)).astype(np.float32)


def _layer(sd, name, kind, h, stride, pad):
    w = sd[f"{name}.weight"] if kind == "conv" else sd[f"{name}.adder"]
    fn = conv2d if kind == "conv" else adder2d_float
    return fn(h.astype(np.float32), _hwio(w).astype(np.float32), stride, (pad,) * 4)


def resnet20_forward(sd: dict, x: np.ndarray) -> np.ndarray:
    """Logits for preprocessed NHWC float images."""
    h = np.maximum(_bn(sd, "bn1", _layer(sd, "conv1", "conv", x, 1, 1)), 0)
    for stage, _, stride in STAGES:
        for blk in range(BLOCKS_PER_STAGE):
            p, s = f"{stage}.{blk}", (stride if blk == 0 else 1)
            y = np.maximum(_bn(sd, f"{p}.bn1", _layer(sd, f"{p}.conv1", "adder", h, s, 1)), 0)
            y = _bn(sd, f"{p}.bn2", _layer(sd, f"{p}.conv2", "adder", y, 1, 1))
            if f"{p}.downsample.0.adder" in sd:
                sc = _bn(sd, f"{p}.downsample.1", _layer(sd, f"{p}.downsample.0", "adder", h, s, 0))
            else:
                sc = h
            h = np.maximum(y + sc, 0)
    pooled = h.mean(axis=(1, 2), keepdims=True)
    return _bn(sd, "bn2", _layer(sd, "fc", "conv", pooled, 1, 0)).reshape(x.shape[0], -1)


def resnet20_predict(sd: dict, x: np.ndarray, batch_size: int = 100) -> np.ndarray:
    return np.concatenate([resnet20_forward(sd, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
