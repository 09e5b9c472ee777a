"""Additive Powers-of-Two quantization (Li, Dong, Wang, ICLR 2020).

Levels are sums of power-of-two terms. `apot_values(B)` reproduces the term sets of the authors' code
(`build_power_value`, additive=True) for B = 2..6 magnitude bits; B = 1 is the ternary set {0, 1}.
A weight quantizer with b bits uses B = b - 1 magnitude bits plus a sign, an activation quantizer
B = b (unsigned). Levels are normalised to a maximum of 1 and scaled by the clipping threshold alpha.

Numpy helpers (used by the QNet builder for the first conv, the classifier and the requantisation
multipliers) come first; the Keras/QKeras quantizer class is built lazily so that importing this
module needs no TensorFlow.
"""

from __future__ import annotations

import functools

import numpy as np

from flow.csd import csd_nonzero_digits
from flow.errors import AdderFlowError

APOT_BITS = (1, 2, 3, 4, 5, 6)


def _term_sets(B: int) -> list[list[float]]:
    """The authors' additive term sets (each level picks one value from every set and sums them)."""
    a, b, c = [0.0], [0.0], [0.0]
    if B == 1:
        a.append(1.0)
    elif B == 2:
        a += [2.0 ** (-i - 1) for i in range(3)]
    elif B == 3:
        a += [0.5, 0.25, 2.0 ** -4]
        b += [2.0 ** -3]
    elif B == 4:
        a += [2.0 ** (-2 * i - 1) for i in range(3)]
        b += [2.0 ** (-2 * i - 2) for i in range(3)]
    elif B == 5:
        a += [2.0 ** -1, 2.0 ** -3, 2.0 ** -6]
        b += [2.0 ** -2, 2.0 ** -4, 2.0 ** -7]
        c += [2.0 ** -5]
    elif B == 6:
        a += [2.0 ** (-3 * i - 1) for i in range(3)]
        b += [2.0 ** (-3 * i - 2) for i in range(3)]
        c += [2.0 ** (-3 * i - 3) for i in range(3)]
    else:
        raise AdderFlowError(f"APoT levels exist for 1-6 magnitude bits (2-7 bit signed weights), got {B}")
    return [a, b, c]


@functools.lru_cache(maxsize=None)
def apot_sums(B: int) -> tuple[np.ndarray, int]:
    """Unnormalised levels as integers: (sorted unique sums * 2^D, D), each a sum of <= 3 powers of two."""
    a, b, c = _term_sets(B)
    sums = sorted({x + y + z for x in a for y in b for z in c})
    d = max(int(round(-np.log2(t))) for t in a + b + c if t > 0)
    return np.asarray([int(round(s * 2 ** d)) for s in sums], dtype=np.int64), d


def apot_values(B: int) -> np.ndarray:
    """Normalised levels in [0, 1] (the authors' `values.mul(1 / max(values))`), ascending."""
    ints, _ = apot_sums(B)
    return ints.astype(np.float64) / ints.max()


def project(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Nearest level for each |x| (levels ascending, non-negative), keeping the sign of x."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.abs(x)
    idx = np.clip(np.searchsorted(levels, mag), 1, len(levels) - 1)
    lo, hi = levels[idx - 1], levels[idx]
    q = np.where(mag - lo <= hi - mag, lo, hi)
    return np.sign(x) * q


def quantize_weights(w: np.ndarray, bits: int, alpha, normalize: bool = False) -> np.ndarray:
    """APoT weights: clip to [-alpha, alpha], project on the signed levels (bits - 1 magnitude bits)."""
    w = np.asarray(w, dtype=np.float64)
    if normalize:
        w = (w - w.mean()) / (w.std() + 1e-12)
    alpha = np.asarray(alpha, dtype=np.float64)
    data = np.clip(w / alpha, -1, 1)
    return project(data, apot_values(bits - 1)) * alpha


def quantize_activations(x: np.ndarray, bits: int, alpha) -> np.ndarray:
    data = np.clip(np.asarray(x, dtype=np.float64) / alpha, 0, 1)
    return project(data, apot_values(bits)) * alpha


def integer_weights(w: np.ndarray, bits: int, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (along `axis`) APoT weights as integers plus the real value of one integer step.

    Each integer is +- a sum of at most three powers of two (shift-and-add). The clipping threshold of a
    channel is chosen from a small grid to minimise the squared error.
    """
    w = np.moveaxis(np.asarray(w, dtype=np.float64), axis, -1)
    flat = w.reshape(-1, w.shape[-1])
    ints, _ = apot_sums(bits - 1)
    levels = ints.astype(np.float64)
    out = np.zeros(flat.shape, dtype=np.int64)
    lsb = np.zeros(flat.shape[1])
    for c in range(flat.shape[1]):
        col, m = flat[:, c], np.abs(flat[:, c]).max()
        if m == 0:
            lsb[c] = 1.0
            continue
        best = None
        for frac in np.linspace(0.5, 1.0, 26):
            step = frac * m / levels.max()
            q = project(np.clip(col / step, -levels.max(), levels.max()), levels)
            err = float(np.sum((q * step - col) ** 2))
            if best is None or err < best[0]:
                best = (err, q, step)
        out[:, c], lsb[c] = best[1].astype(np.int64), best[2]
    return np.moveaxis(out.reshape(w.shape), -1, axis), lsb


def pow2_terms(value: int, terms: int) -> list[tuple[int, int]]:
    """Greedy signed power-of-two decomposition: [(sign, exponent)] with at most `terms` entries."""
    out, r = [], int(value)
    for _ in range(terms):
        if r == 0:
            break
        mag = abs(r)
        e = mag.bit_length() - 1
        # pick 2^e or 2^(e+1), whichever leaves the smaller remainder
        if (1 << (e + 1)) - mag < mag - (1 << e):
            e += 1
        s = 1 if r > 0 else -1
        out.append((s, e))
        r -= s * (1 << e)
    return out


def round_to_pow2_terms(values: np.ndarray, terms: int) -> np.ndarray:
    """Each integer replaced by its best greedy sum of at most `terms` signed powers of two."""
    v = np.asarray(values, dtype=np.int64)
    flat = [sum(s * (1 << e) for s, e in pow2_terms(int(x), terms)) for x in v.ravel()]
    return np.asarray(flat, dtype=np.int64).reshape(v.shape)


def count_pow2_terms(value: int) -> int:
    """Non-zero digits of the canonical signed-digit form (the fewest signed powers of two)."""
    return int(csd_nonzero_digits(int(value)))


# ---- Keras / QKeras quantizer -----------------------------------------------------------------

def _quantizer_class():
    """Build `APoTQuantizer` on first use (imports TensorFlow and QKeras)."""
    import tensorflow as tf

    try:
        from qkeras.quantizers import BaseQuantizer
    except Exception:  # qkeras missing: plain object still works as a Keras quantizer callable
        BaseQuantizer = object

    class APoTQuantizer(BaseQuantizer):
        """APoT quantizer usable as `kernel_quantizer=` / `activation=` in QKeras layers.

        Forward: optional weight normalisation (zero mean, unit variance), clip to [-alpha, alpha]
        (weights, `keep_negative=True`) or [0, alpha] (activations), projection on the APoT levels,
        straight-through gradient. With `learnable_alpha` the clipping threshold is a tf.Variable and
        gets the reparameterised clipping gradient of the paper: the projection is written as
        alpha * (P(x / alpha) - x / alpha) [no gradient] + alpha * clip(x / alpha), so d/dalpha is
        P(x/alpha) - x/alpha inside the range and sign(x) outside.
        """

        def __init__(self, bits=4, alpha=3.0, keep_negative=True, use_weight_normalization=False,
                     learnable_alpha=False, name=None):
            if BaseQuantizer is not object:
                super().__init__()
            self.bits = int(bits)
            magnitude = self.bits - 1 if keep_negative else self.bits
            if magnitude not in APOT_BITS:
                raise AdderFlowError(f"APoT quantizer: {bits} bits unsupported (weights 2-7, activations 1-6)")
            self.keep_negative = bool(keep_negative)
            self.use_weight_normalization = bool(use_weight_normalization)
            self.learnable_alpha = bool(learnable_alpha)
            self.init_alpha = float(alpha)
            self.quantizer_name = name
            self.levels = apot_values(magnitude).astype(np.float32)
            self.alpha = tf.Variable(self.init_alpha, trainable=self.learnable_alpha, dtype=tf.float32,
                                     name="apot_alpha")

        def _project(self, data):
            lv = tf.constant(self.levels)
            mag = tf.abs(data)
            idx = tf.argmin(tf.abs(mag[..., None] - lv), axis=-1)
            return tf.sign(data) * tf.gather(lv, idx)

        def __call__(self, x):
            x = tf.convert_to_tensor(x, dtype=tf.float32)
            if self.use_weight_normalization and self.keep_negative:
                mean, var = tf.nn.moments(x, axes=list(range(x.shape.rank)))
                x = (x - mean) / tf.sqrt(var + 1e-12)
            alpha = tf.cast(self.alpha, x.dtype)
            lo = -1.0 if self.keep_negative else 0.0
            data = tf.clip_by_value(x / alpha, lo, 1.0)
            q = self._project(data)
            return (tf.stop_gradient(q - data) + data) * alpha

        def max(self):
            return float(self.alpha.numpy())

        def min(self):
            return -float(self.alpha.numpy()) if self.keep_negative else 0.0

        def range(self):
            return np.concatenate([-self.levels[::-1], self.levels]) * self.max() if self.keep_negative \
                else self.levels * self.max()

        def get_config(self):
            return {"bits": self.bits, "alpha": float(self.alpha.numpy()), "keep_negative": self.keep_negative,
                    "use_weight_normalization": self.use_weight_normalization,
                    "learnable_alpha": self.learnable_alpha, "name": self.quantizer_name}

        @classmethod
        def from_config(cls, config):
            return cls(**config)

        def __str__(self):
            return f"apot({self.bits},{self.max():g})"

    return APoTQuantizer


@functools.lru_cache(maxsize=None)
def _cached_class():
    return _quantizer_class()


def __getattr__(name):
    if name == "APoTQuantizer":
        return _cached_class()
    raise AttributeError(name)
