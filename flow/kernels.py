"""Fast CPU kernels (numba) for the numpy-side models: the float reference and the integer golden model.

These are plain loops so their semantics are obvious; numba only makes them fast enough to evaluate
ResNet-20 on thousands of images on two cores. Inputs are already padded (NHWC); weights are HWIO.
"""

from __future__ import annotations

import numba
import numpy as np


def pad_nhwc(x: np.ndarray, pads, value=0) -> np.ndarray:
    """Zero-pad H and W by (top, bottom, left, right)."""
    t, b, l, r = pads
    if not (t or b or l or r):
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    return (size + pad_lo + pad_hi - k) // stride + 1


# fastmath lets numba vectorise the float32 reduction (reordered sums: ~1e-4 relative, float anyway).
@numba.njit(parallel=True, cache=True, fastmath=True)
def _adder2d_float(xp, w_ohwi, stride, ho, wo):
    n = xp.shape[0]
    cout, kh, kw, cin = w_ohwi.shape
    out = np.empty((n, ho, wo, cout), dtype=np.float32)
    for p in numba.prange(n * ho):
        b, i = p // ho, p % ho
        for j in range(wo):
            for c in range(cout):
                acc = np.float32(0.0)
                for u in range(kh):
                    for v in range(kw):
                        for ci in range(cin):
                            acc += abs(xp[b, i * stride + u, j * stride + v, ci] - w_ohwi[c, u, v, ci])
                out[b, i, j, c] = -acc
    return out


def adder2d_float(x, w_hwio, stride=1, pads=(0, 0, 0, 0)) -> np.ndarray:
    """Float AdderNet layer: y[n,i,j,c] = -sum_{u,v,ci} |x[n, i*s+u, j*s+v, ci] - w[u,v,ci,c]| (zero padding)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    kh, kw = w_hwio.shape[:2]
    ho = out_size(x.shape[1], kh, stride, pads[0], pads[1])
    wo = out_size(x.shape[2], kw, stride, pads[2], pads[3])
    w = np.ascontiguousarray(np.transpose(w_hwio, (3, 0, 1, 2)), dtype=np.float32)
    return _adder2d_float(pad_nhwc(x, pads), w, stride, ho, wo)


@numba.njit(parallel=True, cache=True)
def _sad2d_grouped(xg, w_ohwi, group_of_channel, stride, ho, wo):
    n = xg.shape[1]
    cout, kh, kw, cin = w_ohwi.shape
    out = np.empty((n, ho, wo, cout), dtype=np.int64)
    for p in numba.prange(n * ho):
        b, i = p // ho, p % ho
        for j in range(wo):
            for c in range(cout):
                g = group_of_channel[c]
                acc = 0
                for u in range(kh):
                    for v in range(kw):
                        for ci in range(cin):
                            acc += abs(xg[g, b, i * stride + u, j * stride + v, ci] - w_ohwi[c, u, v, ci])
                out[b, i, j, c] = acc
    return out


def sad2d_grouped(x_groups, w_hwio, group_of_channel, stride=1, pads=(0, 0, 0, 0)) -> np.ndarray:
    """Integer sum of absolute differences; output channel c reads input version x_groups[group_of_channel[c]].

    x_groups: int (G, N, H, W, Cin), zero-padded here; w_hwio: int (KH, KW, Cin, Cout). Returns int64.
    """
    xg = np.stack([pad_nhwc(xi, pads) for xi in x_groups]).astype(np.int32)
    kh, kw = w_hwio.shape[:2]
    ho = out_size(x_groups.shape[2], kh, stride, pads[0], pads[1])
    wo = out_size(x_groups.shape[3], kw, stride, pads[2], pads[3])
    w = np.ascontiguousarray(np.transpose(w_hwio, (3, 0, 1, 2)), dtype=np.int32)
    return _sad2d_grouped(xg, w, np.asarray(group_of_channel, dtype=np.int64), stride, ho, wo)


def conv2d(x, w_hwio, stride=1, pads=(0, 0, 0, 0)) -> np.ndarray:
    """Cross-correlation (NHWC, HWIO) via im2col; exact for integer inputs given an int64 dtype."""
    xp = pad_nhwc(x, pads)
    kh, kw, cin, cout = w_hwio.shape
    ho = out_size(x.shape[1], kh, stride, pads[0], pads[1])
    wo = out_size(x.shape[2], kw, stride, pads[2], pads[3])
    cols = np.empty((x.shape[0], ho, wo, kh, kw, cin), dtype=xp.dtype)
    for u in range(kh):
        for v in range(kw):
            cols[:, :, :, u, v, :] = xp[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride, :]
    return (cols.reshape(-1, kh * kw * cin) @ w_hwio.reshape(-1, cout).astype(xp.dtype)).reshape(
        x.shape[0], ho, wo, cout)
