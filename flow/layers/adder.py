"""`AdderConv2D`: the float AdderNet layer (Chen et al., CVPR 2020) for tf.keras 2.14, NHWC.

    y[n, i, j, o] = -sum_{kh, kw, c} | x[n, i*s + kh, j*s + kw, c] - w[kh, kw, c, o] |  (+ bias[o])

Padding pads with zeros, which then contribute |0 - w| like in the official PyTorch code (`unfold`).
Besides 'same'/'valid' it takes explicit padding (an int, (ph, pw) or ((top, bottom), (left, right))):
PyTorch pads a 3x3 stride-2 window by 1 on every side while TF 'same' pads (0, 1), so an imported
model must use the explicit form to give the same numbers.

Memory: the |x - w| tensor of a whole layer (N*Ho*Wo*K*K*Cin*Cout floats, 1.2 GB for a ResNet-20 layer
at batch 128) is never built. Two backends compute the same numbers (`backend()`): 'numba' (default
on CPU) runs fused loops over the im2col rows; 'tf' (pure TF ops, `ADDERFLOW_ADDER_BACKEND=tf`) processes
the rows in blocks of at most `BLOCK_ELEMENTS` floats. The backward pass keeps only the layer input and
recomputes the rows.

Gradients (`adder_gradient`):
  'addernet' (default): the paper's training rule, as in the official adder.py:
      dL/dW = sum (x - w) * g      (full precision, not the sign),
      dL/dX = sum HardTanh(w - x) * g,
      then per layer dL/dW <- eta * sqrt(numel(W)) / ||dL/dW||_2 * dL/dW with eta = 0.2.
  'sign': the exact gradient of -|x - w|: dL/dW = sum sign(x - w) * g, dL/dX = sum sign(w - x) * g.
"""

from __future__ import annotations

import math
import os

import tensorflow as tf

from flow.errors import AdderFlowError

ADDER_GRADIENTS = ("addernet", "sign")
DEFAULT_ETA = 0.2
# Upper bound on the floats of one |x - w| block (64 MB in float32); a forward block holds ~2 of them,
# a backward block ~3.
BLOCK_ELEMENTS = 1 << 24
# 'numba': fused CPU loops (flow.layers.adder_numba) run through tf.numpy_function, ~10x faster on CPU;
# 'tf': pure TensorFlow ops (any device, XLA, SavedModel export). Chosen when a model is traced.
BACKENDS = ("numba", "tf")
BACKEND_ENV = "ADDERFLOW_ADDER_BACKEND"


def backend() -> str:
    """The adder backend in force: $ADDERFLOW_ADDER_BACKEND, else numba when it imports, else tf."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    if chosen and chosen not in BACKENDS:
        raise AdderFlowError(f"{BACKEND_ENV}={chosen} is not one of {BACKENDS}")
    if chosen == "tf":
        return "tf"
    try:
        import flow.layers.adder_numba  # noqa: F401
    except ImportError:
        if chosen == "numba":
            raise AdderFlowError(f"{BACKEND_ENV}=numba but numba is not installed") from None
        return "tf"
    return "numba"


def _numba_rows(a):
    return a.dtype == tf.float32 and backend() == "numba"


def normalize_padding(padding, kernel_size, strides=(1, 1)):
    """'same', 'valid' or explicit ((top, bottom), (left, right)) from the accepted spellings."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in ("same", "valid"):
            raise AdderFlowError(f"padding must be 'same', 'valid' or explicit integers, got '{padding}'")
        return p
    bad = AdderFlowError(f"padding must be 'same', 'valid', an int, (ph, pw) or ((t, b), (l, r)) >= 0, got {padding!r}")
    try:
        if isinstance(padding, int):
            pads = ((padding, padding), (padding, padding))
        else:
            items = list(padding)
            if len(items) == 2 and all(isinstance(v, int) for v in items):
                pads = ((items[0], items[0]), (items[1], items[1]))
            elif len(items) == 2 and all(len(list(v)) == 2 for v in items):
                pads = tuple(tuple(int(u) for u in v) for v in items)
            else:
                raise bad
    except (TypeError, ValueError):
        raise bad from None
    if min(min(p) for p in pads) < 0:
        raise bad
    return pads


def explicit_padding(padding, input_hw, kernel_size, strides):
    """((top, bottom), (left, right)) zeros to add for this input size; 'same' follows TF's rule."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        pads = []
        for size, k, s in zip(input_hw, kernel_size, strides):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return padding


def im2col(x, pads, kernel_size, strides):
    """(N*Ho*Wo, K*K*C) rows of the zero-padded NHWC input, columns ordered (kh, kw, c) like an HWIO
    kernel reshaped to (K*K*C, O). Built from strided slices, whose gradients (pads) are cheap."""
    (pt, pb), (pl, pr) = pads
    if pt or pb or pl or pr:
        x = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
    kh, kw = kernel_size
    sh, sw = strides
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    taps = [x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :] for i in range(kh) for j in range(kw)]
    patches = taps[0] if len(taps) == 1 else tf.concat(taps, axis=-1)
    return tf.reshape(patches, [-1, kh * kw * x.shape[-1]])


def adder_rows(a, wt):
    """-sum_d |a[m, d] - wt[o, d]| -> (M, O): fused numba loops, or TF in row blocks of bounded memory.

    No gradient of its own (see `adder_conv2d`)."""
    if _numba_rows(a):
        from flow.layers import adder_numba

        y = tf.numpy_function(adder_numba.forward, [a, wt], tf.float32, stateful=False)
        y.set_shape([a.shape[0], wt.shape[0]])
        return y
    return _blocked_rows(lambda ab: -tf.reduce_sum(tf.abs(ab[:, None, :] - wt[None]), axis=-1), [a], wt)


def adder_rows_grads(a, wt, g, adder_gradient):
    """(dL/da, dL/dwt) of `adder_rows` for upstream (M, O) gradient g under the chosen rule.

    The per-layer gradient scale of 'addernet' is not applied here (it needs the whole kernel's
    gradient): see `scale_kernel_gradient`.
    """
    if _numba_rows(a):
        from flow.layers import adder_numba

        if adder_gradient == "addernet":
            ga = tf.numpy_function(adder_numba.grad_rows_addernet, [a, wt, g], tf.float32, stateful=False)
            gw = tf.matmul(g, a, transpose_a=True) - wt * tf.reduce_sum(g, axis=0)[:, None]
        else:
            ga, gw = tf.numpy_function(adder_numba.grads_sign, [a, wt, g], [tf.float32, tf.float32], stateful=False)
        ga.set_shape(a.shape)
        gw.set_shape(wt.shape)
        return ga, gw
    if adder_gradient == "addernet":
        # sum_m (a[m] - wt[o]) * g[m, o] needs no (M, O, D) tensor
        gw = tf.matmul(g, a, transpose_a=True) - wt * tf.reduce_sum(g, axis=0)[:, None]
        ga = _blocked_rows(
            lambda ab, gb: tf.reduce_sum(tf.clip_by_value(wt[None] - ab[:, None, :], -1.0, 1.0) * gb[:, :, None], axis=1),
            [a, g],
            wt,
        )
        return ga, gw
    return _blocked_rows(lambda ab, gb: _sign_grads(ab, gb, wt), [a, g], wt, reduce_second=True)


def adder_conv2d(x, wt, kernel_size, strides, pads, adder_gradient="addernet"):
    """NHWC adder convolution with kernel rows wt (O, K*K*C); returns (N, Ho, Wo, O).

    One custom gradient around im2col and the adder: the backward pass keeps only x and recomputes the
    im2col rows, so training memory per layer is the layer input, not its K*K-times larger rows.
    """
    if adder_gradient not in ADDER_GRADIENTS:
        raise AdderFlowError(f"adder_gradient must be one of {ADDER_GRADIENTS}, got '{adder_gradient}'")
    (pt, pb), (pl, pr) = pads
    ho = (x.shape[1] + pt + pb - kernel_size[0]) // strides[0] + 1
    wo = (x.shape[2] + pl + pr - kernel_size[1]) // strides[1] + 1
    filters = wt.shape[0]

    @tf.custom_gradient
    def _op(x, wt):
        y = adder_rows(im2col(x, pads, kernel_size, strides), wt)

        def grad(gy):
            # recompute only once this layer's gradient exists; otherwise the graph executor may build the
            # rows of every layer at once, early, and hold them all
            with tf.control_dependencies([gy]), tf.GradientTape() as tape:
                tape.watch(x)
                a = im2col(tf.identity(x), pads, kernel_size, strides)
            g = tf.reshape(tf.cast(gy, a.dtype), [-1, filters])
            ga, gw = adder_rows_grads(a, wt, g, adder_gradient)
            return tape.gradient(a, x, output_gradients=ga), gw  # col2im of the row gradients

        return tf.reshape(y, [-1, ho, wo, filters]), grad

    return _op(x, wt)


def _sign_grads(ab, gb, wt):
    s = tf.sign(ab[:, None, :] - wt[None]) * gb[:, :, None]  # sign(x - w) * g, (B, O, D)
    return -tf.reduce_sum(s, axis=1), tf.reduce_sum(s, axis=0)


def _blocked_rows(fn, row_tensors, wt, reduce_second=False):
    """Apply `fn` to row blocks of `row_tensors` (all (M, ...)) so that each block's (B, O, D) stays small.

    Returns fn's (B, ...) outputs concatenated back to M rows; with `reduce_second`, fn returns a pair
    and its second item is summed over blocks instead (a weight gradient).
    """
    o = wt.shape[0] if wt.shape[0] is not None else tf.shape(wt)[0]
    d = wt.shape[1] if wt.shape[1] is not None else tf.shape(wt)[1]
    rows_cap = max(1, BLOCK_ELEMENTS // max(1, int(o) * int(d)))
    m_static = row_tensors[0].shape[0]
    if m_static is not None and m_static <= rows_cap:
        return fn(*row_tensors)
    m = tf.shape(row_tensors[0])[0]
    n_blocks = tf.maximum((m + rows_cap - 1) // rows_cap, 1)
    rows = (m + n_blocks - 1) // n_blocks
    padded = []
    for t in row_tensors:
        t = tf.pad(t, [[0, n_blocks * rows - m]] + [[0, 0]] * (t.shape.rank - 1))
        padded.append(tf.reshape(t, tf.concat([[n_blocks, rows], tf.shape(t)[1:]], axis=0)))
    if reduce_second:
        first, second = tf.map_fn(
            lambda ts: fn(*ts),
            tuple(padded),
            fn_output_signature=(wt.dtype, wt.dtype),
            parallel_iterations=1,
        )
        first = tf.reshape(first, tf.concat([[n_blocks * rows], tf.shape(first)[2:]], axis=0))[:m]
        return first, tf.reduce_sum(second, axis=0)
    out = tf.map_fn(lambda ts: fn(*ts), tuple(padded), fn_output_signature=wt.dtype, parallel_iterations=1)
    return tf.reshape(out, tf.concat([[n_blocks * rows], tf.shape(out)[2:]], axis=0))[:m]


def scale_kernel_gradient(kernel, eta=DEFAULT_ETA):
    """Identity on the kernel whose gradient is rescaled to eta * sqrt(numel) / ||g||_2 * g (AdderNet)."""

    @tf.custom_gradient
    def _identity(w):
        def grad(g):
            n = tf.cast(tf.size(g), g.dtype)
            return eta * tf.sqrt(n) / tf.maximum(tf.norm(g), 1e-12) * g

        return tf.identity(w), grad

    return _identity(kernel)


@tf.keras.utils.register_keras_serializable(package="adderflow")
class AdderConv2D(tf.keras.layers.Layer):
    """Adder 2-D convolution, NHWC in and out, kernel (K, K, Cin, Cout) like Conv2D (HWIO)."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        use_bias=False,
        kernel_initializer="random_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        adder_gradient="addernet",
        eta=DEFAULT_ETA,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = normalize_padding(padding, self.kernel_size, self.strides)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = tf.keras.regularizers.get(bias_regularizer)
        if adder_gradient not in ADDER_GRADIENTS:
            raise AdderFlowError(f"adder_gradient must be one of {ADDER_GRADIENTS}, got '{adder_gradient}'")
        self.adder_gradient = adder_gradient
        self.eta = float(eta)
        self.input_spec = tf.keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        cin = input_shape[-1]
        if cin is None:
            raise AdderFlowError(f"{self.name}: the channel dimension of the input must be known")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, int(cin), self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            trainable=True,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                trainable=True,
            )
            if self.use_bias
            else None
        )
        self.input_spec = tf.keras.layers.InputSpec(ndim=4, axes={-1: int(cin)})
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        kh, kw = self.kernel_size
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise AdderFlowError(f"{self.name}: spatial input size must be known, got {x.shape}")
        pads = explicit_padding(self.padding, (h, w), self.kernel_size, self.strides)
        (pt, pb), (pl, pr) = pads
        if h + pt + pb < kh or w + pl + pr < kw:
            raise AdderFlowError(f"{self.name}: kernel {self.kernel_size} does not fit input {h}x{w} with padding {self.padding}")
        kernel = tf.cast(self.kernel, x.dtype)
        if self.adder_gradient == "addernet":
            kernel = scale_kernel_gradient(kernel, self.eta)
        wt = tf.transpose(tf.reshape(kernel, [kh * kw * x.shape[-1], self.filters]))
        y = adder_conv2d(x, wt, self.kernel_size, self.strides, pads, self.adder_gradient)
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        n, h, w, _ = tf.TensorShape(input_shape).as_list()
        (pt, pb), (pl, pr) = explicit_padding(self.padding, (h, w), self.kernel_size, self.strides)
        ho = (h + pt + pb - self.kernel_size[0]) // self.strides[0] + 1
        wo = (w + pl + pr - self.kernel_size[1]) // self.strides[1] + 1
        return tf.TensorShape([n, ho, wo, self.filters])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            padding=self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding],
            use_bias=self.use_bias,
            kernel_initializer=tf.keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=tf.keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=tf.keras.regularizers.serialize(self.kernel_regularizer) if self.kernel_regularizer else None,
            bias_regularizer=tf.keras.regularizers.serialize(self.bias_regularizer) if self.bias_regularizer else None,
            adder_gradient=self.adder_gradient,
            eta=self.eta,
        )
        return config


def _pair(value, what):
    try:
        items = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise AdderFlowError(f"{what} must be a positive int or a pair, got {value!r}") from None
    if len(items) != 2 or min(items) <= 0:
        raise AdderFlowError(f"{what} must be a positive int or a pair, got {value!r}")
    return items


def count_adder_ops(layer, input_shape) -> int:
    """|x - w| evaluations of one forward pass per image (the adder-network's 'MACs')."""
    _, ho, wo, cout = layer.compute_output_shape((1, *input_shape)).as_list()
    return int(ho * wo * cout * math.prod(layer.kernel_size) * input_shape[-1])
