"""The integer golden model: executes a QNet exactly as `flow.qnet` defines it, in int64.

This is the reference that the HLS C simulation must equal bit for bit. Numpy (+ numba kernels) only.
"""

from __future__ import annotations

import numpy as np

from flow.kernels import conv2d, sad2d_grouped
from flow.qnet import QNet, QNetError, last_uses


def rescale_activation(x: np.ndarray, mult: int, shift: int, hi: int) -> np.ndarray:
    """Per-group input requantisation of an unsigned activation (identity when mult == 0)."""
    if mult == 0:
        return x
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    return np.clip((x * int(mult) + rnd) >> int(shift), 0, hi)


def requantize(inputs: list, mult: np.ndarray, bias: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    v = np.zeros_like(inputs[0], dtype=np.int64) + bias.astype(np.int64)
    for k, t in enumerate(inputs):
        v += t.astype(np.int64) * mult[k].astype(np.int64)
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    return np.clip((v + rnd) >> shift, lo, hi)


def run_op(net: QNet, op, env: dict) -> np.ndarray:
    a = op.attrs
    x = env[op.inputs[0]]
    if op.kind == "conv2d":
        return conv2d(x.astype(np.int64), op.arrays["weight"].astype(np.int64), int(a["stride"]), tuple(a["pads"]))
    if op.kind == "adder2d":
        hi = net.tensors[op.inputs[0]].hi
        mults, shifts = op.arrays["group_in_mult"], op.arrays["group_in_shift"]
        versions = np.stack([rescale_activation(x, int(m), int(s), hi) for m, s in zip(mults, shifts)])
        return sad2d_grouped(versions, op.arrays["weight"], op.arrays["group_of_channel"], int(a["stride"]),
                             tuple(a["pads"]))
    if op.kind == "requant":
        spec = net.tensors[op.output]
        return requantize([env[t] for t in op.inputs], op.arrays["mult"], op.arrays["bias"], int(a["shift"]),
                          spec.lo, spec.hi)
    if op.kind == "global_sum_pool":
        return x.astype(np.int64).sum(axis=(1, 2))
    if op.kind == "dense":
        return x.astype(np.int64) @ op.arrays["weight"].astype(np.int64)
    raise QNetError(f"op {op.name}: unknown kind '{op.kind}'")


def run(net: QNet, x_int: np.ndarray, keep_all: bool = False) -> dict:
    """Execute on integer inputs (N, H, W, C). Returns {tensor name: int64 array}; only the output
    unless keep_all (intermediates are freed once their last consumer ran)."""
    env = {net.input: np.asarray(x_int, dtype=np.int64)}
    last_use = last_uses(net.ops)
    for i, o in enumerate(net.ops):
        env[o.output] = run_op(net, o, env)
        if not keep_all:
            for t in o.inputs:
                if last_use[t] == i and t != net.output:
                    env.pop(t, None)
    return env if keep_all else {net.output: env[net.output]}


def predict_int(net: QNet, images_uint8: np.ndarray, batch_size: int = 100, progress: bool = False) -> np.ndarray:
    """Integer logits for uint8 images (the network's own input quantisation applied)."""
    outs = []
    rng = range(0, len(images_uint8), batch_size)
    if progress:
        from tqdm import tqdm
        rng = tqdm(rng, desc="golden model", unit="batch")
    for i in rng:
        xq = net.quantize_input(images_uint8[i:i + batch_size])
        outs.append(run(net, xq)[net.output])
    return np.concatenate(outs) if outs else np.zeros((0,) + tuple(net.output_spec.shape), np.int64)


def predict(net: QNet, images_uint8: np.ndarray, batch_size: int = 100, progress: bool = False) -> np.ndarray:
    """Dequantised float logits for uint8 images."""
    return net.dequantize_output(predict_int(net, images_uint8, batch_size, progress))
