"""QKeras quantizer objects for quantization-aware training, on exactly the grids of the integer
contract (`flow.qnet`) that the PTQ builder (`flow.quant.redistribution`, method redistribution+) emits.

Every quantizer returns the fake-quantized real value `x + stop_gradient(q(x) - x)` (straight-through
estimator): the forward pass sees the grid value, the backward pass the identity (inside the clip).

* `ActQuantizer(bits, alpha)`: unsigned activation, step alpha / (2^b - 1), clip to [0, alpha] (the
  ReLU is part of it); rounding half up like the requant's `(v + 2^(sh-1)) >> sh`.
* `SignedQuantizer(bits, scale)`: signed grid [-2^(b-1), 2^(b-1) - 1] * scale, half up: the network
  input (int8) and the logits (int16).
* `AdderKernelQuantizer(bits, alpha)`: the redistribution+ weight grid of an adder layer whose input
  activation has range [0, alpha]: wq = round(clip(w, 0, alpha) / step), step = alpha / (2^b - 1).
  Its value is w + stop_gradient(wq * step - clip(w, 0, alpha)), i.e. wq * step inside [0, alpha] and w
  itself outside. For x in [0, alpha], |x - w| = |x - clip(w, 0, alpha)| + max(-w, 0) + max(w - alpha, 0)
  exactly, so the float adder on this value computes the integer SAD times step plus the one-sided
  range-clamp excess that the export folds into the requant bias: the fake-quant forward IS the
  contract, and the AdderNet gradient (full precision for W) flows through unchanged.
* `ChannelKernelQuantizer(bits)`: per-output-channel symmetric weights of the first conv and the
  classifier, step = max|w| / (2^(b-1) - 1), as `redistribution.quantize_linear_weights` (plain, not
  APoT) computes them.

The scales (alpha, scale) are fixed numbers taken from the PTQ solution: one activation range feeds the
kernel grid of every adder layer that reads it, and a fixed number keeps that one fact in one place
(the QNet tensor's scale) through save/load.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras.quantizers import BaseQuantizer

from flow.errors import AdderFlowError

PACKAGE = "adderflow"


def _register(cls):
    return tf.keras.utils.register_keras_serializable(package=PACKAGE)(cls)


def _check_bits(bits, lo=2, hi=16, what="bits"):
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not lo <= int(bits) <= hi:
        raise AdderFlowError(f"{what} must be an integer in {lo}..{hi}, got {bits!r}")
    return int(bits)


def _check_positive(v, what):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise AdderFlowError(f"{what} must be a positive number, got {v!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise AdderFlowError(f"{what} must be a positive number, got {v!r}")
    return f


def _const(v, dtype):
    """A Python number as a tensor of `dtype` (tf.cast of a Python float would pass through float32)."""
    return tf.constant(v, dtype=dtype)


def round_half_up(x):
    """floor(x + 0.5): the rounding of the requant shift and of the input quantization."""
    return tf.floor(x + 0.5)


def ste(x, q):
    """Value q, gradient of x."""
    return x + tf.stop_gradient(q - x)


class _Quantizer(BaseQuantizer):
    """Common QKeras surface: `bits`, `keep_negative`, `max()`/`min()` (real values), config round trip."""

    def __init__(self):
        super().__init__()
        self.qnoise_factor = 1.0

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __str__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    __repr__ = __str__

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class _UnsignedGrid(_Quantizer):
    """The unsigned b-bit grid on [0, alpha] (step alpha / (2^b - 1)) that an adder layer's activations and
    its kernel share, so that |a - w| is an integer SAD on it."""

    def __init__(self, bits: int = 4, alpha: float = 1.0, what: str = "activation alpha"):
        super().__init__()
        self.bits = _check_bits(bits, 2, 16)
        self.alpha = _check_positive(alpha, what)
        self.keep_negative = False
        self.levels = (1 << self.bits) - 1

    @property
    def scale(self) -> float:
        return self.alpha / self.levels

    def max(self):
        return self.alpha

    def min(self):
        return 0.0

    def get_config(self):
        return {"bits": self.bits, "alpha": self.alpha}


@_register
class ActQuantizer(_UnsignedGrid):
    """Unsigned b-bit activation on [0, alpha] (includes the ReLU); integer q = value / scale."""

    def __init__(self, bits: int = 4, alpha: float = 1.0):
        super().__init__(bits, alpha, "activation alpha")

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        s = _const(self.scale, x.dtype)
        c = tf.clip_by_value(x, _const(0.0, x.dtype), _const(self.alpha, x.dtype))
        return ste(c, tf.clip_by_value(round_half_up(c / s), 0.0, float(self.levels)) * s)


@_register
class SignedQuantizer(_Quantizer):
    """Signed b-bit grid q * scale, q in [-2^(b-1), 2^(b-1) - 1], rounded half up."""

    def __init__(self, bits: int = 8, scale: float = 1.0):
        super().__init__()
        self.bits = _check_bits(bits, 2, 32)
        self.scale = _check_positive(scale, "quantizer scale")
        self.keep_negative = True

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        s = _const(self.scale, x.dtype)
        lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        q = tf.clip_by_value(round_half_up(x / s), float(lo), float(hi))
        inside = tf.clip_by_value(x, lo * s, hi * s)
        return ste(inside, q * s)

    def max(self):
        return ((1 << (self.bits - 1)) - 1) * self.scale

    def min(self):
        return -(1 << (self.bits - 1)) * self.scale

    def get_config(self):
        return {"bits": self.bits, "scale": self.scale}


@_register
class AdderKernelQuantizer(_UnsignedGrid):
    """redistribution+ kernel grid of an adder layer reading an [0, alpha] activation of `bits` bits: the
    activation's own grid (so |a - w| is an integer SAD), rounded as quantize_adder rounds (np.round) and
    with the gradient passed straight through everywhere (the clipped excess is exact: it is folded into
    the requant bias at export, so weights outside [0, alpha] keep learning)."""

    def __init__(self, bits: int = 4, alpha: float = 1.0):
        super().__init__(bits, alpha, "adder kernel alpha")

    @property
    def step(self) -> float:
        return self.scale

    def __call__(self, w):
        w = tf.convert_to_tensor(w)
        s = _const(self.step, w.dtype)
        c = tf.clip_by_value(w, _const(0.0, w.dtype), _const(self.alpha, w.dtype))
        q = tf.clip_by_value(tf.round(c / s), 0.0, float(self.levels)) * s   # np.round, as quantize_adder
        return w + tf.stop_gradient(q - c)

    def integers(self, w) -> np.ndarray:
        """The QNet weight integers of a float kernel (the same formula `quantize_adder` applies)."""
        c = np.clip(np.asarray(w, np.float64), 0.0, self.alpha)
        return np.clip(np.round(c / self.step), 0, self.levels).astype(np.int64)

    def excess(self, w) -> np.ndarray:
        """Per output channel sum max(-w, 0) + max(w - alpha, 0): the range-clamp bias of the export."""
        w = np.asarray(w, np.float64)
        return (np.maximum(-w, 0) + np.maximum(w - self.alpha, 0)).reshape(-1, w.shape[-1]).sum(axis=0)



@_register
class ChannelKernelQuantizer(_Quantizer):
    """Per-output-channel (last axis) symmetric weights, step = max|w| / (2^(b-1) - 1)."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = _check_bits(bits, 2, 16)
        self.keep_negative = True
        self.qmax = (1 << (self.bits - 1)) - 1

    def steps(self, w):
        m = tf.reduce_max(tf.abs(tf.reshape(w, [-1, w.shape[-1]])), axis=0)
        return tf.stop_gradient(tf.where(m > 0, m / self.qmax, tf.ones_like(m)))

    def __call__(self, w):
        w = tf.convert_to_tensor(w)
        s = self.steps(w)
        q = tf.clip_by_value(tf.round(w / s), -float(self.qmax), float(self.qmax)) * s
        return ste(w, q)

    def max(self):
        return 1.0

    def min(self):
        return -1.0

    def get_config(self):
        return {"bits": self.bits}


QUANTIZERS = {c.__name__: c for c in (ActQuantizer, SignedQuantizer, AdderKernelQuantizer, ChannelKernelQuantizer)}


def serialize(q):
    return None if q is None else {"class_name": type(q).__name__, "config": q.get_config()}


def deserialize(q):
    """A quantizer from an object, a `serialize` dict or a Keras-registered name dict."""
    if q is None or isinstance(q, (_Quantizer, BaseQuantizer)):
        return q
    if isinstance(q, dict):
        name = str(q.get("class_name", "")).split(">")[-1]
        if name in QUANTIZERS:
            return QUANTIZERS[name].from_config(q.get("config", {}))
        from qkeras.quantizers import get_quantizer

        try:   # a qkeras quantizer (QATActivation is a QActivation; qkeras tools clone models with theirs)
            return get_quantizer(q)
        except (ValueError, TypeError):
            pass
    raise AdderFlowError(f"unsupported QAT quantizer {q!r} (expected one of {', '.join(QUANTIZERS)})")
