"""Canonical signed digits (CSD): the ONE definition, used by the quantizer (APoT term counts), the
operation counter and estimator (shift-add adds) and the HLS shift-add pass (exponent/sign tables).

The CSD form of an integer n is the unique sum of signed powers of two sign_i * 2^e_i with no two
adjacent non-zero digits; it has the fewest non-zero digits of any signed-binary form, which is why the
shift-add hardware and the cost counts both use it. Numpy-only, like flow.qnet.
"""

from __future__ import annotations

import numpy as np


def csd_digit_planes(values) -> np.ndarray:
    """Digits of each integer, least significant first: int8 array of shape values.shape + (E,), in
    {-1, 0, +1}, with sum_e d[..., e] * 2^e == value. E is the most digits any value needs (>= 1)."""
    v = np.asarray(values, dtype=np.int64)
    sign = np.where(v < 0, -1, 1).astype(np.int64)
    # the magnitude of int64's minimum does not fit an int64; no quantizer constant is that wide
    m = np.abs(v)
    planes = []
    while True:
        odd = (m & 1) == 1
        # digit +1 when m % 4 == 1, -1 when m % 4 == 3 (then m + 1 carries into the next digit)
        d = np.where(odd, 2 - (m & 3), 0)
        planes.append((d * sign).astype(np.int8))
        m = (m - d) >> 1
        if not np.any(m):
            break
    return np.stack(planes, axis=-1)


def csd_digits(n: int) -> list:
    """CSD expansion of one integer: [(exponent, +1/-1), ...] with sum sign * 2^exponent == n."""
    d = csd_digit_planes(int(n))
    return [(int(e), int(d[e])) for e in np.flatnonzero(d)]


def csd_nonzero_digits(values) -> np.ndarray:
    """Number of non-zero CSD digits of each integer (0 for 0), same shape as `values`."""
    return np.count_nonzero(csd_digit_planes(values), axis=-1).astype(np.int64)
