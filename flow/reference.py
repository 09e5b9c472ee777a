"""Independent float reference of the official AdderNet ResNet-20 (numpy + numba), from a state dict.

It shares no code with the Keras layers, so it checks the import, and it is the float model that
calibration observes (named tensors, PyTorch module names).
"""

from __future__ import annotations

import numpy as np

from flow.kernels import adder2d_float, conv2d

BN_EPS = 1e-5
STAGES = (("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 2))
BLOCKS_PER_STAGE = 3


def hwio(w_oihw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w_oihw, (2, 3, 1, 0)))


def bn_affine(sd: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm in inference as y = a*x + b per channel."""
    a = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"] + BN_EPS)
    return a.astype(np.float64), (sd[f"{name}.bias"] - a * sd[f"{name}.running_mean"]).astype(np.float64)


def resnet20_layer_names() -> list[tuple[str, str, int, int]]:
    """(layer, kind, stride, pad) of every conv/adder layer in execution order, PyTorch names."""
    names = [("conv1", "conv", 1, 1)]
    for stage, _, stride in STAGES:
        for blk in range(BLOCKS_PER_STAGE):
            s = stride if blk == 0 else 1
            p = f"{stage}.{blk}"
            names += [(f"{p}.conv1", "adder", s, 1), (f"{p}.conv2", "adder", 1, 1)]
            if blk == 0 and stride != 1:
                names.append((f"{p}.downsample.0", "adder", s, 0))
    names.append(("fc", "conv", 1, 0))
    return names


def _bn(sd, name, x):
    a, b = bn_affine(sd, name)
    return (x * a + b).astype(np.float32)


def resnet20_forward(sd: dict, x: np.ndarray, collect: dict | None = None) -> np.ndarray:
    """Logits for preprocessed NHWC float images. If `collect` is a dict, it receives named tensors:
    `<layer>:in` (the layer's input), `<layer>:out` (pre-BN output), `<block>` (block output), `pool`."""
    keep = collect if collect is not None else {}

    def layer(name, kind, h, stride, pad):
        keep[f"{name}:in"] = h
        w = sd[f"{name}.weight"] if kind == "conv" else sd[f"{name}.adder"]
        fn = conv2d if kind == "conv" else adder2d_float
        out = fn(h.astype(np.float32), hwio(w).astype(np.float32), stride, (pad,) * 4)
        keep[f"{name}:out"] = out
        return out

    h = np.maximum(_bn(sd, "bn1", layer("conv1", "conv", x, 1, 1)), 0)
    for stage, _, stride in STAGES:
        for blk in range(BLOCKS_PER_STAGE):
            p, s = f"{stage}.{blk}", (stride if blk == 0 else 1)
            y = np.maximum(_bn(sd, f"{p}.bn1", layer(f"{p}.conv1", "adder", h, s, 1)), 0)
            y = _bn(sd, f"{p}.bn2", layer(f"{p}.conv2", "adder", y, 1, 1))
            if f"{p}.downsample.0.adder" in sd:
                sc = _bn(sd, f"{p}.downsample.1", layer(f"{p}.downsample.0", "adder", h, s, 0))
            else:
                sc = h
            h = np.maximum(y + sc, 0)
            keep[p] = h
    pooled = h.mean(axis=(1, 2), keepdims=True)
    keep["pool"] = pooled
    logits = _bn(sd, "bn2", layer("fc", "conv", pooled, 1, 0)).reshape(x.shape[0], -1)
    return logits


def resnet20_predict(sd: dict, x: np.ndarray, batch_size: int = 100) -> np.ndarray:
    return np.concatenate([resnet20_forward(sd, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
