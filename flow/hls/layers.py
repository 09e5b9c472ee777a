"""hls4ml IR layers for the integer QNet layers of `flow.qlayers`, and their Keras-2 handlers.

Every tensor between these layers is an integer (`ap_int`/`ap_uint`) of the width the QNet declares;
every constant array is an integer weight variable of the narrowest width that holds it.
"""

from __future__ import annotations


import numpy as np
from hls4ml.model.layers import Layer
from hls4ml.model.types import IntegerPrecisionType

from flow.hls import schedule
from flow.qnet import bits_for

# Values pass through hls4ml's weight writer as '{:.0f}'-formatted floats: exact below 2^53.
MAX_EXACT_CONSTANT = 1 << 53


def int_type(lo: int, hi: int) -> IntegerPrecisionType:
    bits, signed = bits_for(int(lo), int(hi))
    return IntegerPrecisionType(width=bits, signed=signed)


def array_type(a) -> IntegerPrecisionType:
    a = np.asarray(a)
    if a.size == 0:
        return IntegerPrecisionType(width=1, signed=False)
    return int_type(int(a.min()), int(a.max()))


def cpp_int(p: IntegerPrecisionType) -> str:
    return f"ap_{'' if p.signed else 'u'}int<{p.width}>"


def range_of(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


class _IntLayer(Layer):
    """Common: output integer type from the QNet's declared width (out_bits, out_signed)."""

    def _out_precision(self):
        return IntegerPrecisionType(width=int(self.get_attr("out_bits")), signed=bool(self.get_attr("out_signed")))

    def _add_int_weight(self, name: str, var_name: str, data, precision=None):
        data = np.asarray(data, dtype=np.int64)
        if data.size and int(np.abs(data).max()) >= MAX_EXACT_CONSTANT:
            raise ValueError(f"layer {self.name}: constant '{name}' exceeds 2^53 and would not be written exactly")
        self.add_weights_variable(name=name, var_name=var_name, data=data.astype(np.float64),
                                  precision=precision or array_type(data))

    def in_range(self):
        return range_of(int(self.get_attr("in_bits")), bool(self.get_attr("in_signed")))


class QWindowLayer(_IntLayer):
    """Line-buffer window layer base (adder or integer conv)."""

    def initialize(self):
        shape = [self.get_attr("out_height"), self.get_attr("out_width"), self.get_attr("n_filt")]
        self.add_output_variable(shape, precision=self._out_precision())
        w = np.asarray(self.get_attr("weight_data"), dtype=np.int64)
        n_in = int(w.size // w.shape[-1])
        self.set_attr("n_terms", int(w.size))
        self.set_attr("n_in", n_in)
        acc = self.get_output_variable().type.precision
        self.set_attr("acc_bits", int(acc.width))
        self.set_attr("acc_signed", bool(acc.signed))
        # filter-major (index f*n_in + k, tap k = (u*KW + v)*C + c: hls4ml's window order), so that the
        # reuse cycle r reads word r of the block-reshaped ROM (hls4ml's resource-strategy layout)
        self._add_int_weight("weight", "w{index}", w.reshape(n_in, -1).T.reshape(-1))


class QIntConv2D(QWindowLayer):
    """acc = sum x * W over the zero-padded window (the stem convolution; multipliers remain)."""


class QAdderConv2D(QWindowLayer):
    """acc = sum |a_g(c) - W| with per-group input rescale; the SAD datapath has no multiplier."""

    def initialize(self):
        super().initialize()
        # the filter -> input group map is compiled into the config (constexpr group_of), not a ROM
        self.set_attr("group_ids", [int(g) for g in np.asarray(self.get_attr("group_ids_data")).reshape(-1)])
        self._add_int_weight("group_mult", "gmult{index}", self.get_attr("group_mult_data"))
        self._add_int_weight("group_shift", "gshift{index}", self.get_attr("group_shift_data"))


class QRequant(_IntLayer):
    """Fused BN + ReLU + requantisation (+ residual add with two inputs), one pixel per cycle."""

    def initialize(self):
        inp = self.get_input_variable(self.inputs[0])
        self.add_output_variable(list(inp.shape), precision=self._out_precision())
        self.set_attr("n_chan", int(inp.shape[-1]))
        self.set_attr("n_pixels", int(np.prod(inp.shape[:-1])) if len(inp.shape) > 1 else 1)
        mult = np.asarray(self.get_attr("mult_data"), np.int64)
        bias = np.asarray(self.get_attr("bias_data"), np.int64)
        self._add_int_weight("rq_mult", "rqm{index}", mult.reshape(-1))   # index k*C + c
        self._add_int_weight("rq_bias", "rqb{index}", bias.reshape(-1))
        ranges = []
        for name in self.inputs:
            p = self.get_input_variable(name).type.precision
            ranges.append(range_of(p.width, p.signed) if isinstance(p, IntegerPrecisionType) else range_of(63, True))
        self.set_attr("sum_width", schedule.requant_sum_bits(bias, mult, ranges, int(self.get_attr("shift"))))


class QGlobalSumPool(_IntLayer):
    def initialize(self):
        inp = self.get_input_variable()
        self.add_output_variable([inp.shape[-1]], precision=self._out_precision())
        self.set_attr("n_chan", int(inp.shape[-1]))
        self.set_attr("n_pixels", int(np.prod(inp.shape[:-1])))


class QIntDense(_IntLayer):
    def initialize(self):
        w = np.asarray(self.get_attr("weight_data"), np.int64)
        self.set_attr("n_in", int(w.shape[0]))
        self.set_attr("n_out", int(w.shape[1]))
        self.set_attr("n_terms", int(w.size))
        self.add_output_variable([w.shape[1]], precision=self._out_precision())
        self._add_int_weight("weight", "w{index}", w.T.reshape(-1))   # filter-major: index f*n_in + ci


IR_LAYERS = {c.__name__: c for c in (QIntConv2D, QAdderConv2D, QRequant, QGlobalSumPool, QIntDense)}


# ---- Keras-2 handlers ------------------------------------------------------------------------------

def _weights(reader, layer_name, var):
    """hls4ml's reader matches weight names by substring; ours are unique ('sad_kernel', 'rq_mult', ...)."""
    data = reader.get_weights_data(layer_name, var)
    if data is None:
        raise ValueError(f"layer {layer_name}: weight '{var}' not found")
    return np.asarray(data)


def _as_int(a, what):
    r = np.rint(np.asarray(a, np.float64))
    if not np.array_equal(r, a):
        raise ValueError(f"{what} holds non-integer values")
    return r.astype(np.int64)


def _quantizer_width(cfg, key, default):
    q = cfg.get(key)
    if not q:
        return default
    q = q.get("config", q)
    return int(q["bits"]), bool(q["signed"])


def parse_default_keras_layer(keras_layer, input_names):
    # imported late: hls4ml loads backend plugins while its converter module is still importing
    from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer as parse

    return parse(keras_layer, input_names)


def _window_layer(keras_layer, input_names, input_shapes, reader, kernel_var):
    cfg = keras_layer["config"]
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = keras_layer["class_name"].split(">")[-1]
    _, h, w, c = input_shapes[0]
    kh, kw = cfg["kernel_size"]
    s = int(cfg["strides"])
    t, b, l, r = (int(p) for p in cfg["pads"])
    oh, ow = (h + t + b - kh) // s + 1, (w + l + r - kw) // s + 1
    weight = _as_int(_weights(reader, layer["name"], kernel_var), f"layer {layer['name']} kernel")
    in_bits, in_signed = _quantizer_width(cfg, "input_quantizer", (8, True))
    layer.update(in_height=h, in_width=w, n_chan=c, out_height=oh, out_width=ow, n_filt=int(cfg["filters"]),
                 filt_height=kh, filt_width=kw, stride=s, pad_top=t, pad_bottom=b, pad_left=l, pad_right=r,
                 in_bits=in_bits, in_signed=in_signed, out_bits=int(cfg["out_bits"]),
                 out_signed=bool(cfg["out_signed"]), weight_data=weight, apot_terms=int(cfg.get("apot_terms", 0)))
    return layer, [input_shapes[0][0], oh, ow, int(cfg["filters"])]


def parse_qintconv2d(keras_layer, input_names, input_shapes, reader):
    return _window_layer(keras_layer, input_names, input_shapes, reader, "conv_kernel")


def parse_qadderconv2d(keras_layer, input_names, input_shapes, reader):
    layer, shape = _window_layer(keras_layer, input_names, input_shapes, reader, "sad_kernel")
    name = layer["name"]
    layer.update(n_groups=int(keras_layer["config"]["n_groups"]),
                 group_ids_data=_weights(reader, name, "group_ids").astype(np.int64),
                 group_mult_data=_weights(reader, name, "group_mult").astype(np.int64),
                 group_shift_data=_weights(reader, name, "group_shift").astype(np.int64))
    if layer["in_signed"]:
        raise ValueError(f"layer {name}: the adder input must be unsigned")
    return layer, shape


def parse_qrequant(keras_layer, input_names, input_shapes, reader):
    cfg = keras_layer["config"]
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = "QRequant"
    name = layer["name"]
    layer.update(n_inputs=int(cfg["n_inputs"]), shift=int(cfg["shift"]), out_bits=int(cfg["out_bits"]),
                 apot_terms=int(cfg.get("apot_terms", 0)),
                 out_signed=bool(cfg["out_signed"]),
                 mult_data=_weights(reader, name, "rq_mult").astype(np.int64),
                 bias_data=_weights(reader, name, "rq_bias").astype(np.int64))
    if len(input_names) != layer["n_inputs"]:
        raise ValueError(f"layer {name}: {len(input_names)} inputs, config says {layer['n_inputs']}")
    return layer, list(input_shapes[0])


def parse_qglobalsumpool(keras_layer, input_names, input_shapes, reader):
    cfg = keras_layer["config"]
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = "QGlobalSumPool"
    layer.update(out_bits=int(cfg["out_bits"]), out_signed=bool(cfg["out_signed"]))
    return layer, [input_shapes[0][0], input_shapes[0][-1]]


def parse_qintdense(keras_layer, input_names, input_shapes, reader):
    cfg = keras_layer["config"]
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = "QIntDense"
    in_bits, in_signed = _quantizer_width(cfg, "input_quantizer", (32, True))
    layer.update(out_bits=int(cfg["out_bits"]), out_signed=bool(cfg["out_signed"]), in_bits=in_bits,
                 apot_terms=int(cfg.get("apot_terms", 0)),
                 in_signed=in_signed,
                 weight_data=_as_int(_weights(reader, layer["name"], "dense_kernel"), f"layer {layer['name']} kernel"))
    return layer, [input_shapes[0][0], int(cfg["units"])]


HANDLERS = {
    "QIntConv2D": parse_qintconv2d,
    "QAdderConv2D": parse_qadderconv2d,
    "QRequant": parse_qrequant,
    "QGlobalSumPool": parse_qglobalsumpool,
    "QIntDense": parse_qintdense,
}
