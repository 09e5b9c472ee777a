"""Config and function-call templates of the AdderVitis backend (C++ in hls_templates/nnet_adder_stream.h)."""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.types import IntegerPrecisionType

from flow.hls.layers import (QAdderConv2D, QGlobalSumPool, QIntConv2D, QIntDense, QRequant, array_type,
                             block_factor, bits_for, cpp_int, range_of)
from flow.report.estimate import sad_slots, sad_terms_per_cycle  # the schedule facts the estimate prices

INCLUDE = ["nnet_utils/nnet_adder_stream.h"]

WINDOW_CONFIG = """struct config{index} : nnet::window_config {{
    static const unsigned in_height = {in_height};
    static const unsigned in_width = {in_width};
    static const unsigned n_chan = {n_chan};
    static const unsigned out_height = {out_height};
    static const unsigned out_width = {out_width};
    static const unsigned n_filt = {n_filt};
    static const unsigned filt_height = {filt_height};
    static const unsigned filt_width = {filt_width};
    static const unsigned stride = {stride};
    static const unsigned pad_top = {pad_top};
    static const unsigned pad_bottom = {pad_bottom};
    static const unsigned pad_left = {pad_left};
    static const unsigned pad_right = {pad_right};
    static const unsigned n_groups = {n_groups};
    static const unsigned win_size = {win_size};
    static const unsigned n_terms = {n_terms};
    static const unsigned reuse_factor = {reuse};
    static const unsigned block_factor = {block};
    static const unsigned n_slots = {n_slots};
    static const unsigned csd_terms = {csd_terms};
    static const unsigned act_bits = {act_bits};
    typedef {act_t} act_t;
    typedef {weight_t} weight_t;
    typedef {diff_t} diff_t;
    typedef {accum_t} accum_t;
    typedef {psum_t} psum_t;
    typedef {gmult_t} gmult_t;
    typedef {gshift_t} gshift_t;
    typedef {gprod_t} gprod_t;
}};
"""

REQUANT_CONFIG = """struct config{index} {{
    static const unsigned n_chan = {n_chan};
    static const unsigned n_pixels = {n_pixels};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_lanes = {n_lanes};
    static const unsigned shift = {shift};
    static const unsigned csd_terms = {csd_terms};
    static const long long out_lo = {out_lo}LL;
    static const long long out_hi = {out_hi}LL;
    typedef {sum_t} sum_t;
    typedef {mult_t} mult_t;
    typedef {bias_t} bias_t;
    typedef {out_elem_t} out_elem_t;
}};
"""

POOL_CONFIG = """struct config{index} {{
    static const unsigned n_chan = {n_chan};
    static const unsigned n_pixels = {n_pixels};
    typedef {accum_t} accum_t;
}};
"""

DENSE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned n_terms = {n_terms};
    static const unsigned reuse_factor = {reuse};
    static const unsigned block_factor = {block};
    static const unsigned csd_terms = {csd_terms};
    typedef {weight_t} weight_t;
    typedef {accum_t} accum_t;
}};
"""


def _csd_args(node, exps_name="csd_exps", signs_name="csd_signs"):
    """Names of the shift-add term tables, or null pointers when constants are plain multiplications."""
    if int(node.get_attr("csd_terms", 0)) == 0:
        return "0", "0"
    return node.weights[exps_name].name, node.weights[signs_name].name


def _elem_type(node):
    return cpp_int(node.get_output_variable().type.precision)


def _input_precision(node, k=0):
    p = node.get_input_variable(node.inputs[k]).type.precision
    if not isinstance(p, IntegerPrecisionType):
        raise ValueError(f"layer {node.name}: input '{node.inputs[k]}' is not an integer type ({p})")
    return p


class WindowConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__((QAdderConv2D, QIntConv2D))
        self.template = WINDOW_CONFIG

    def format(self, node):
        params = self._default_config_params(node)
        is_adder = node.class_name == "QAdderConv2D"
        inp = _input_precision(node)
        w = node.weights["weight"]
        wlo, whi = int(w.data.min()), int(w.data.max())
        alo, ahi = range_of(inp.width, inp.signed)
        params["n_groups"] = int(node.get_attr("n_groups", 1))
        params["block"] = block_factor(node.get_attr("n_terms"), node.get_attr("reuse_factor"))
        params["csd_terms"] = int(node.get_attr("csd_terms", 0))
        params["act_bits"] = inp.width
        params["act_t"] = cpp_int(inp)
        params["weight_t"] = w.type.name
        params["diff_t"] = "ap_int<{}>".format(bits_for(min(alo - whi, 0) - 1, max(ahi - wlo, 0))[0])
        params["accum_t"] = _elem_type(node)
        # a filter's per-cycle SAD partial sum, typed by its bound (terms per cycle x largest |a - w|)
        dmax = max(ahi - wlo, whi - alo, 0)
        tpc = sad_terms_per_cycle(node.get_attr("n_terms"), node.get_attr("n_filt"), node.get_attr("reuse_factor"))
        params["psum_t"] = cpp_int(array_type([0, tpc * dmax]))
        params["n_slots"] = sad_slots(node.get_attr("n_filt"), node.get_attr("reuse_factor"), params["block"])
        if is_adder:
            gm = node.weights["group_mult"]
            params["gmult_t"] = gm.type.name
            params["gshift_t"] = node.weights["group_shift"].type.name
            mlo, mhi = min(int(gm.data.min()), 0), max(int(gm.data.max()), 0)
            smax = int(node.weights["group_shift"].data.max())
            rnd = (1 << (smax - 1)) if smax > 0 else 0
            params["gprod_t"] = cpp_int(array_type([min(mlo * ahi, mhi * alo, 0) - 1,
                                                    max(mhi * ahi, mlo * alo) + rnd, ahi]))
        else:
            params["gmult_t"], params["gshift_t"], params["gprod_t"] = "ap_int<2>", "ap_uint<1>", "ap_int<2>"
        return self.template.format(**params)


class AdderFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QAdderConv2D, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = _csd_args(node)
        return (f"nnet::adder_conv_2d_cl<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{node.weights['weight'].name}, {node.weights['group_ids'].name}, {node.weights['group_mult'].name}, "
                f"{node.weights['group_shift'].name}, {exps}, {signs});")


class IntConvFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QIntConv2D, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = _csd_args(node)
        return (f"nnet::int_conv_2d_cl<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{node.weights['weight'].name}, {exps}, {signs});")


class RequantConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(QRequant)
        self.template = REQUANT_CONFIG

    def format(self, node):
        params = self._default_config_params(node)
        out = node.get_output_variable().type.precision
        params["out_lo"], params["out_hi"] = range_of(out.width, out.signed)
        # channels time-multiplexed over R cycles per pixel: R in [1, C], ceil(C/R) lanes
        n_chan = int(node.get_attr("n_chan"))
        params["reuse"] = min(max(1, int(node.get_attr("reuse_factor", 1))), n_chan)
        params["n_lanes"] = -(-n_chan // params["reuse"])
        params["csd_terms"] = int(node.get_attr("csd_terms", 0))
        params["sum_t"] = f"ap_int<{int(node.get_attr('sum_width'))}>"
        params["mult_t"] = node.weights["mult"].type.name
        params["bias_t"] = node.weights["bias"].type.name
        params["out_elem_t"] = cpp_int(out)
        return self.template.format(**params)


class RequantFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QRequant, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = _csd_args(node)
        consts = f"{node.weights['mult'].name}, {node.weights['bias'].name}, {exps}, {signs}"
        if len(node.inputs) == 1:
            return (f"nnet::requant_stream<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, "
                    f"{p['output']}, {consts});")
        in2 = node.get_input_variable(node.inputs[1])
        return (f"nnet::requant_add_stream<{p['input_t']}, {in2.type.name}, {p['output_t']}, {p['config']}>("
                f"{p['input']}, {in2.name}, {p['output']}, {consts});")


class PoolConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(QGlobalSumPool)
        self.template = POOL_CONFIG

    def format(self, node):
        params = self._default_config_params(node)
        params["accum_t"] = _elem_type(node)
        return self.template.format(**params)


class PoolFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QGlobalSumPool, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        return f"nnet::global_sum_pool_stream<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']});"


class DenseConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(QIntDense)
        self.template = DENSE_CONFIG

    def format(self, node):
        params = self._default_config_params(node)
        params["block"] = block_factor(node.get_attr("n_terms"), node.get_attr("reuse_factor"))
        params["csd_terms"] = int(node.get_attr("csd_terms", 0))
        params["weight_t"] = node.weights["weight"].type.name
        params["accum_t"] = _elem_type(node)
        return self.template.format(**params)


class DenseFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QIntDense, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = _csd_args(node)
        return (f"nnet::int_dense_stream<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{node.weights['weight'].name}, {exps}, {signs});")


TEMPLATES = (WindowConfigTemplate, AdderFunctionTemplate, IntConvFunctionTemplate, RequantConfigTemplate,
             RequantFunctionTemplate, PoolConfigTemplate, PoolFunctionTemplate, DenseConfigTemplate,
             DenseFunctionTemplate)
