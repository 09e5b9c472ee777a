"""Trainable QKeras-style layers of a quantization-aware adder network.

* `QATAdderConv2D`: the float `AdderConv2D` (same kernels, same AdderNet gradient: full precision for
  W, HardTanh for X, adaptive eta per layer) whose kernel passes through `kernel_quantizer`
  (`AdderKernelQuantizer`, an STE on the redistribution+ grid) and whose input passes through
  `input_quantizer` (`ActQuantizer` of the same alpha: idempotent on an already quantized input, and it
  keeps the input inside [0, alpha], where the one-sided clamp is exact). Its output is float64: in
  inference (training falsy) it is computed from the integer SAD exactly as the golden model does, so
  that the fake-quant model rounds where the integer network does (same integers, not 98% of them).
* `QATActivation`: a qkeras `QActivation` holding one of our quantizer objects with a config that
  round-trips (qkeras stores the object itself).
* `QATInput`: uint8 pixel values (as float) -> x/255, per-channel mean/std, int8 input grid: the
  network input of `QNet.quantize_input`, computed in float64 like the driver does.

The first conv and the classifier are qkeras `QConv2D` with a `ChannelKernelQuantizer`. BatchNorm stays
a plain `BatchNormalization` during training; the export folds it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras import QActivation

from flow.errors import AdderFlowError
from flow.layers.adder import AdderConv2D, adder_conv2d, adder_rows, explicit_padding, im2col, scale_kernel_gradient
from flow.qat.quantizers import PACKAGE, ActQuantizer, AdderKernelQuantizer, SignedQuantizer, deserialize, serialize


def _register(cls):
    return tf.keras.utils.register_keras_serializable(package=PACKAGE)(cls)


@_register
class QATAdderConv2D(AdderConv2D):
    """Quantization-aware adder conv: -sum |input_quantizer(x) - kernel_quantizer(W)| (+ bias)."""

    def __init__(self, filters, kernel_size, kernel_quantizer=None, input_quantizer=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.kernel_quantizer = deserialize(kernel_quantizer)
        self.input_quantizer = deserialize(input_quantizer)
        kq, iq = self.kernel_quantizer, self.input_quantizer
        if kq is not None and not isinstance(kq, AdderKernelQuantizer):
            raise AdderFlowError(f"layer {self.name}: kernel_quantizer must be an AdderKernelQuantizer, got {kq}")
        if iq is not None and not isinstance(iq, ActQuantizer):
            raise AdderFlowError(f"layer {self.name}: input_quantizer must be an ActQuantizer, got {iq}")
        if kq is not None and iq is not None and (kq.bits, kq.alpha) != (iq.bits, iq.alpha):
            # the one-sided clamp is exact only on the input's own grid (flow.quant.redistribution)
            raise AdderFlowError(f"layer {self.name}: kernel grid ({kq.bits} bits, alpha {kq.alpha}) must equal "
                                 f"the input's ({iq.bits} bits, alpha {iq.alpha})")

    def get_quantizers(self):
        return [self.kernel_quantizer, self.input_quantizer]

    def get_prunable_weights(self):
        return [self.kernel]

    def quantized_kernel(self):
        """The kernel as the forward pass sees it (numpy)."""
        k = self.kernel
        return (k if self.kernel_quantizer is None else self.kernel_quantizer(k)).numpy()

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs)
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        kh, kw = self.kernel_size
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise AdderFlowError(f"{self.name}: spatial input size must be known, got {x.shape}")
        pads = explicit_padding(self.padding, (h, w), self.kernel_size, self.strides)
        if not training and self.kernel_quantizer is not None and self.input_quantizer is not None \
                and not self.use_bias:
            return self._exact(x, pads)
        return tf.cast(self._trainable_forward(x, pads), tf.float64)

    def _exact(self, x, pads):
        """Inference: the same value as the training forward, computed as the contract does: the SAD of
        the integer activations and kernel (exact in float32 below 2^24), times the step, plus the
        range-clamp excess, in float64, so that the fake-quant model rounds where the golden model does.
        No gradient (train with training=True, as model.fit does)."""
        kq = self.kernel_quantizer
        step = tf.constant(kq.step, tf.float64)
        xi = tf.cast(tf.round(tf.cast(x, tf.float64) / step), tf.float32)
        k64 = tf.cast(self.kernel, tf.float64)
        wi = tf.clip_by_value(tf.round(tf.clip_by_value(k64, 0.0, kq.alpha) / step), 0.0, float(kq.levels))
        excess = tf.reduce_sum(tf.reshape(tf.nn.relu(-k64) + tf.nn.relu(k64 - kq.alpha), [-1, self.filters]), axis=0)
        wt = tf.transpose(tf.reshape(tf.cast(wi, tf.float32), [-1, self.filters]))
        neg_sad = adder_rows(im2col(xi, pads, self.kernel_size, self.strides), wt)
        ho = (x.shape[1] + pads[0][0] + pads[0][1] - self.kernel_size[0]) // self.strides[0] + 1
        wo = (x.shape[2] + pads[1][0] + pads[1][1] - self.kernel_size[1]) // self.strides[1] + 1
        y = tf.cast(tf.reshape(neg_sad, [-1, ho, wo, self.filters]), tf.float64) * step - excess
        return tf.stop_gradient(y)

    def _trainable_forward(self, x, pads):
        kh, kw = self.kernel_size
        kernel = tf.cast(self.kernel, x.dtype)
        if self.adder_gradient == "addernet":
            kernel = scale_kernel_gradient(kernel, self.eta)
        if self.kernel_quantizer is not None:
            kernel = self.kernel_quantizer(kernel)   # STE: the gradient reaches the float kernel unchanged
        wt = tf.transpose(tf.reshape(kernel, [kh * kw * x.shape[-1], self.filters]))
        y = adder_conv2d(x, wt, self.kernel_size, self.strides, pads, self.adder_gradient)
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return y

    def get_config(self):
        return {**super().get_config(), "kernel_quantizer": serialize(self.kernel_quantizer),
                "input_quantizer": serialize(self.input_quantizer)}


@_register
class QATActivation(QActivation):
    """qkeras QActivation with a serialisable QAT quantizer (ActQuantizer includes the ReLU)."""

    def __init__(self, activation, **kwargs):
        q = deserialize(activation)
        super().__init__(q, **kwargs)
        self.quantizer = q

    def get_quantizers(self):
        return [self.quantizer]

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = serialize(self.quantizer)
        return cfg

    def get_quantization_config(self):
        return str(self.quantizer)


@_register
class QATInput(tf.keras.layers.Layer):
    """Pixel values 0..255 (float) -> the int8 input grid of the QNet (`QNet.quantize_input`)."""

    def __init__(self, mean=(0.0,), std=(1.0,), quantizer=None, **kwargs):
        kwargs.setdefault("dtype", "float64")   # the driver quantizes in float64 too
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.std = [float(v) for v in np.ravel(std)]
        if min(self.std) <= 0:
            raise AdderFlowError(f"layer {self.name}: std must be positive, got {self.std}")
        self.quantizer = deserialize(quantizer) if quantizer is not None else SignedQuantizer(8, 1.0 / 127)

    def get_quantizers(self):
        return [self.quantizer]

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        mean = tf.constant(self.mean, self.compute_dtype)
        std = tf.constant(self.std, self.compute_dtype)
        return self.quantizer((x / 255.0 - mean) / std)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "quantizer": serialize(self.quantizer)}
