"""Keras/QKeras realisation of a QNet: integer layers that are bit-exact with `flow.golden`.

Tensors flowing between these layers hold integers in float dtypes. A layer computes in float32 when
every partial sum it forms is below 2^24 (exact), otherwise in float64 (exact below 2^53); the
requantisation products are formed in tf.int64. Integer constants (group ids, requant multipliers,
biases, shifts) are int64 non-trainable weights; kernels are float weights on an integer grid, each
passed through a QKeras-style quantizer object (`kernel_quantizer=`), activations through
`input_quantizer=`.

`qnet_to_keras(qnet)` builds the whole network; the hls4ml backend (`flow.hls`) converts that model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras.quantizers import BaseQuantizer

from flow.qnet import QNet, QNetError

PACKAGE = "adderflow"
EXACT_F32 = 1 << 24


def _register(cls):
    return tf.keras.utils.register_keras_serializable(package=PACKAGE)(cls)


@_register
class IntQuantizer(BaseQuantizer):
    """Round to the integer grid and saturate to a `bits`-wide (un)signed range (QKeras interface)."""

    def __init__(self, bits: int = 8, signed: bool = True):
        super().__init__()
        self.bits = int(bits)
        self.signed = bool(signed)
        self.keep_negative = self.signed
        self.alpha = 1.0

    def min(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    def max(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        return tf.clip_by_value(tf.floor(x + 0.5), tf.cast(self.min(), x.dtype), tf.cast(self.max(), x.dtype))

    def __str__(self):
        return f"int_quantizer({self.bits}, signed={self.signed})"

    def get_config(self):
        return {"bits": self.bits, "signed": self.signed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _quantizer(q) -> IntQuantizer:
    if q is None or isinstance(q, IntQuantizer):
        return q
    if isinstance(q, dict):
        return IntQuantizer.from_config(q.get("config", q))
    raise QNetError(f"unsupported quantizer {q!r} (expected IntQuantizer)")


def _qconfig(q):
    return None if q is None else {"class_name": "IntQuantizer", "config": q.get_config()}


def _pad(x, pads):
    t, b, l, r = pads
    if not (t or b or l or r):
        return x
    return tf.pad(x, [[0, 0], [t, b], [l, r], [0, 0]])


def _first_shape(input_shape):
    """The first input's shape, whether Keras passes one shape or a list of them (as when loading)."""
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
        return tuple(input_shape[0])
    return tuple(input_shape)


class _IntLayer(tf.keras.layers.Layer):
    """Common config: declared output width (bits, signed) of the tensor this layer writes."""

    def __init__(self, out_bits: int = 32, out_signed: bool = True, apot_terms: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.out_bits, self.out_signed = int(out_bits), bool(out_signed)
        self.apot_terms = int(apot_terms)  # > 0: constants are sums of powers of two (hardware: shift-add)
        self.trainable = False

    def get_config(self):
        return {**super().get_config(), "out_bits": self.out_bits, "out_signed": self.out_signed,
                "apot_terms": self.apot_terms}


class _WindowLayer(_IntLayer):
    def __init__(self, filters, kernel_size, strides=1, pads=(0, 0, 0, 0), kernel_quantizer=None,
                 input_quantizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        ks = kernel_size if isinstance(kernel_size, (list, tuple)) else (kernel_size, kernel_size)
        self.kernel_size = tuple(int(k) for k in ks)
        self.strides = int(strides[0] if isinstance(strides, (list, tuple)) else strides)
        self.pads = tuple(int(p) for p in pads)
        self.kernel_quantizer = _quantizer(kernel_quantizer)
        self.input_quantizer = _quantizer(input_quantizer)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": self.strides, "pads": list(self.pads),
                "kernel_quantizer": _qconfig(self.kernel_quantizer), "input_quantizer": _qconfig(self.input_quantizer)}

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        kh, kw = self.kernel_size
        t, b, l, r = self.pads
        return (input_shape[0], (h + t + b - kh) // self.strides + 1, (w + l + r - kw) // self.strides + 1,
                self.filters)

    def _patches(self, x):
        """(N, Ho, Wo, KH*KW*Cin) windows in (u, v, ci) order, matching kernel.reshape(-1, Cout)."""
        kh, kw = self.kernel_size
        s = self.strides
        return tf.image.extract_patches(_pad(x, self.pads), sizes=[1, kh, kw, 1], strides=[1, s, s, 1],
                                        rates=[1, 1, 1, 1], padding="VALID")

    def _qkernel(self, kernel):
        return kernel if self.kernel_quantizer is None else self.kernel_quantizer(kernel)

    def _qinput(self, x):
        return x if self.input_quantizer is None else self.input_quantizer(x)


@_register
class QIntConv2D(_WindowLayer):
    """Integer cross-correlation acc = sum x*W (the stem conv); zero padding `pads` (t, b, l, r)."""

    def build(self, input_shape):
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(name="conv_kernel", shape=(kh, kw, int(input_shape[-1]), self.filters),
                                      initializer="zeros", trainable=False)
        super().build(input_shape)

    def call(self, x):
        w = tf.cast(self._qkernel(self.kernel), self.compute_dtype)
        s = self.strides
        return tf.nn.conv2d(_pad(self._qinput(x), self.pads), w, strides=[1, s, s, 1], padding="VALID")


@_register
class QAdderConv2D(_WindowLayer):
    """Quantized AdderNet layer: acc[c] = sum |a_g(c) - W[..., c]| over the window (no minus sign;
    it lives in the following requant multiplier).

    Output channel c reads the input version of its group g(c) = group_ids[c]:
    a_g = clip((x * group_mult[g] + 2^(group_shift[g]-1)) >> group_shift[g], 0, 2^b - 1), the
    per-group input rescale (identity where group_mult[g] == 0). The range-clamp bias of the
    redistribution quantizer is folded into the requant bias of the QNet, so this layer has none.
    """

    def __init__(self, filters, kernel_size, n_groups: int = 1, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.n_groups = int(n_groups)

    def get_config(self):
        return {**super().get_config(), "n_groups": self.n_groups}

    def build(self, input_shape):
        kh, kw = self.kernel_size
        cin = int(input_shape[-1])
        self.kernel = self.add_weight(name="sad_kernel", shape=(kh, kw, cin, self.filters), initializer="zeros",
                                      trainable=False)
        self.group_ids = self.add_weight(name="group_ids", shape=(self.filters,), dtype="int64",
                                         initializer="zeros", trainable=False)
        self.group_mult = self.add_weight(name="group_mult", shape=(self.n_groups,), dtype="int64",
                                          initializer="zeros", trainable=False)
        self.group_shift = self.add_weight(name="group_shift", shape=(self.n_groups,), dtype="int64",
                                           initializer="zeros", trainable=False)
        super().build(input_shape)

    def _rescaled(self, x, g):
        """Input version of group g (float64: x * mult can exceed 2^24)."""
        hi = tf.constant(float(self.input_quantizer.max() if self.input_quantizer else 255), tf.float64)
        m = tf.cast(self.group_mult[g], tf.float64)
        sh = tf.cast(self.group_shift[g], tf.float64)
        p2 = tf.pow(tf.constant(2.0, tf.float64), sh)
        rnd = tf.where(sh > 0, p2 / 2.0, 0.0)
        x64 = tf.cast(x, tf.float64)
        a = tf.clip_by_value(tf.floor((x64 * m + rnd) / p2), 0.0, hi)
        return tf.cast(tf.where(m == 0, x64, a), self.compute_dtype)

    def call(self, x):
        x = self._qinput(x)
        kh, kw = self.kernel_size
        w = tf.reshape(tf.cast(self._qkernel(self.kernel), self.compute_dtype), (-1, self.filters))
        out = None
        for g in range(self.n_groups):
            p = self._patches(self._rescaled(x, g))
            sad = tf.reduce_sum(tf.abs(p[..., :, None] - w), axis=-2)          # exact: integers < 2^24 (or f64)
            sel = tf.cast(tf.equal(self.group_ids, g), self.compute_dtype)     # this group's channels
            out = sad * sel if out is None else out + sad * sel
        return out


@_register
class QRequant(_IntLayer):
    """Fused BN + ReLU + requantisation (+ residual add with two inputs), per channel, in int64:
    out = clip((sum_k in_k * rq_mult[k] + rq_bias + 2^(shift-1)) >> shift, lo, hi)."""

    def __init__(self, n_inputs: int = 1, shift: int = 0, **kwargs):
        kwargs.setdefault("dtype", "float64")  # accumulator inputs may exceed 2^24
        super().__init__(**kwargs)
        self.n_inputs, self.shift = int(n_inputs), int(shift)

    def get_config(self):
        return {**super().get_config(), "n_inputs": self.n_inputs, "shift": self.shift}

    def build(self, input_shape):
        c = int(_first_shape(input_shape)[-1])
        self.mult = self.add_weight(name="rq_mult", shape=(self.n_inputs, c), dtype="int64", initializer="zeros",
                                    trainable=False)
        self.bias = self.add_weight(name="rq_bias", shape=(c,), dtype="int64", initializer="zeros", trainable=False)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return _first_shape(input_shape)

    def call(self, inputs):
        xs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        v = self.bias
        for k, x in enumerate(xs):
            v = v + tf.cast(x, tf.int64) * self.mult[k]
        if self.shift > 0:
            v = tf.bitwise.right_shift(v + (1 << (self.shift - 1)), tf.constant(self.shift, tf.int64))
        lo = -(1 << (self.out_bits - 1)) if self.out_signed else 0
        hi = (1 << (self.out_bits - 1)) - 1 if self.out_signed else (1 << self.out_bits) - 1
        return tf.cast(tf.clip_by_value(v, lo, hi), self.compute_dtype)


@_register
class QGlobalSumPool(_IntLayer):
    """acc[n, c] = sum_{i,j} x[n, i, j, c] (the 1/(H*W) lives in the next multiplier)."""

    def call(self, x):
        return tf.reduce_sum(x, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@_register
class QIntDense(_IntLayer):
    """acc = x @ W on integers (float64: sums of pooled activations times weights exceed 2^24)."""

    def __init__(self, units: int, kernel_quantizer=None, input_quantizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_quantizer = _quantizer(kernel_quantizer)
        self.input_quantizer = _quantizer(input_quantizer)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "kernel_quantizer": _qconfig(self.kernel_quantizer),
                "input_quantizer": _qconfig(self.input_quantizer)}

    def build(self, input_shape):
        self.kernel = self.add_weight(name="dense_kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="zeros", trainable=False)
        super().build(input_shape)

    def call(self, x):
        w = self.kernel if self.kernel_quantizer is None else self.kernel_quantizer(self.kernel)
        return tf.matmul(x, tf.cast(w, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)


CUSTOM_OBJECTS = {c.__name__: c for c in (IntQuantizer, QIntConv2D, QAdderConv2D, QRequant, QGlobalSumPool, QIntDense)}


def custom_objects() -> dict:
    return dict(CUSTOM_OBJECTS)


def _dtype_for(bound: int) -> str:
    return "float32" if bound < EXACT_F32 else "float64"


def _abs_bound(spec) -> int:
    return max(abs(spec.lo), abs(spec.hi))


def qnet_to_keras(qnet: QNet, name: str | None = None) -> tf.keras.Model:
    """The Keras model of a QNet; its output (and every layer's output) equals golden.run exactly."""
    qnet.validate()
    L = tf.keras.layers
    spec_in = qnet.tensors[qnet.input]
    # 'input' is a reserved layer name in hls4ml
    in_name = "input_int" if qnet.input in ("input", "output") else _kname(qnet.input)
    inp = L.Input(shape=tuple(spec_in.shape), name=in_name, dtype="float32")
    env = {qnet.input: inp}
    for op in qnet.ops:
        xs = [env[t] for t in op.inputs]
        ispec, ospec = qnet.tensors[op.inputs[0]], qnet.tensors[op.output]
        common = {"name": _kname(op.name), "out_bits": ospec.bits, "out_signed": ospec.signed,
                  "apot_terms": int(op.attrs.get("apot_terms", 0) or 0)}
        iq = IntQuantizer(ispec.bits, ispec.signed)
        if op.kind in ("conv2d", "adder2d"):
            w = op.arrays["weight"]
            kh, kw, _, cout = w.shape
            wbits = int(max(int(w.max()).bit_length(), int(-w.min() - 1).bit_length() if w.min() < 0 else 0)) + 1
            kq = IntQuantizer(max(wbits, 2), True)
            # partial sums are bounded by the accumulator's declared width; inputs/weights are small
            dtype = _dtype_for(max(_abs_bound(ospec), 1 << (ispec.bits + wbits + 2)))
            kwargs = dict(common, kernel_size=(kh, kw), strides=int(op.attrs["stride"]), pads=tuple(op.attrs["pads"]),
                          kernel_quantizer=kq, input_quantizer=iq, dtype=dtype)
            if op.kind == "conv2d":
                layer = QIntConv2D(cout, **kwargs)
                y = layer(xs[0])
                layer.set_weights([w.astype(np.float32)])
            else:
                if ispec.signed:
                    raise QNetError(f"op {op.name}: adder2d input '{op.inputs[0]}' must be unsigned")
                g = len(op.arrays["group_in_mult"])
                layer = QAdderConv2D(cout, n_groups=g, **kwargs)
                y = layer(xs[0])
                layer.set_weights([w.astype(np.float32), op.arrays["group_of_channel"].astype(np.int64),
                                   op.arrays["group_in_mult"].astype(np.int64),
                                   op.arrays["group_in_shift"].astype(np.int64)])
        elif op.kind == "requant":
            layer = QRequant(n_inputs=len(xs), shift=int(op.attrs["shift"]), **common)
            y = layer(xs if len(xs) > 1 else xs[0])
            layer.set_weights([np.asarray(op.arrays["mult"], np.int64).reshape(len(xs), -1),
                               np.asarray(op.arrays["bias"], np.int64)])
        elif op.kind == "global_sum_pool":
            layer = QGlobalSumPool(dtype=_dtype_for(_abs_bound(ospec)), **common)
            y = layer(xs[0])
        elif op.kind == "dense":
            w = op.arrays["weight"]
            layer = QIntDense(w.shape[1], input_quantizer=iq, dtype="float64", **common)
            y = layer(xs[0])
            layer.set_weights([w.astype(np.float64)])
        else:
            raise QNetError(f"op {op.name}: unknown kind '{op.kind}'")
        env[op.output] = y
    return tf.keras.Model(inp, env[qnet.output], name=name or _kname(str(qnet.meta.get("model", "qnet"))))


def _kname(name: str) -> str:
    """Keras layer names cannot contain '/' or ':'; QNet names are kept otherwise."""
    return name.replace("/", "_").replace(":", "_")


def intermediate_model(model: tf.keras.Model, qnet: QNet) -> tf.keras.Model:
    """A model returning {tensor name: output} for every op of the QNet (for bit-exact checks)."""
    outs = {op.output: model.get_layer(_kname(op.name)).output for op in qnet.ops}
    return tf.keras.Model(model.inputs, outs)


def load_model(path):
    return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
