"""Config and function-call templates of the AdderVitis backend (C++ in hls_templates/nnet_adder_stream.h).

Every number a config carries comes from flow.hls.schedule (reuse rule, lanes, widths, CSD terms), read
from the layer's attributes, so the generated C++ and the estimate describe one design.
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.types import IntegerPrecisionType

from flow.hls import schedule
from flow.hls.layers import QAdderConv2D, QGlobalSumPool, QIntConv2D, QIntDense, QRequant, cpp_int, range_of

INCLUDE = ["nnet_utils/nnet_adder_stream.h"]

WINDOW_CONFIG = """struct config{index} {{
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
    static const unsigned n_in = {n_in};
    static const unsigned n_terms = {n_terms};
    static const unsigned reuse_factor = {reuse};
    static const unsigned lanes_per_filter = {lanes_per_filter};
    static const unsigned block_factor = {block};
    static const unsigned act_bits = {act_bits};
    static const unsigned term_bits = {term_bits};
    static const unsigned csd_terms = {csd_terms};
    static const unsigned w_table_size = {w_table_size};
    static const unsigned w_table_factor = {w_table_factor};
    static const unsigned g_csd_terms = {g_csd_terms};
    static const unsigned g_table_size = {g_table_size};
    // input group of each filter, compiled in (lane wiring is fixed at compile time)
    static constexpr unsigned group_of(unsigned f) {{ return {group_of}; }}
    typedef {act_t} act_t;
    typedef {weight_t} weight_t;
    typedef {diff_t} diff_t;
    typedef {term_t} term_t;
    typedef {psum_t} psum_t;
    typedef {accum_t} accum_t;
    typedef {gmult_t} gmult_t;
    typedef {gshift_t} gshift_t;
    typedef {gprod_t} gprod_t;
{requant}}};
"""

# the requantisation fields, shared by a fused window layer and a requant process
REQUANT_FIELDS = """    static const bool fused = {fused};
    static const unsigned n_inputs = {n_inputs};
    static const unsigned rq_chan = {rq_chan};
    static const unsigned rq_reuse = {rq_reuse};
    static const unsigned rq_lanes = {rq_lanes};
    static const unsigned rq_csd_terms = {rq_csd_terms};
    static const unsigned rq_mult_size = {rq_mult_size};
    static const unsigned rq_mult_factor = {rq_mult_factor};
    static const unsigned rq_bias_size = {rq_bias_size};
    static const unsigned rq_table_size = {rq_table_size};
    static const unsigned rq_table_factor = {rq_table_factor};
    static const unsigned shift = {shift};
    static const long long out_lo = {out_lo}LL;
    static const long long out_hi = {out_hi}LL;
    typedef {sum_t} sum_t;
    typedef {mult_t} mult_t;
    typedef {bias_t} bias_t;
    typedef {out_elem_t} out_elem_t;
"""

REQUANT_CONFIG = """struct config{index} {{
    static const unsigned n_chan = {n_chan};
    static const unsigned n_pixels = {n_pixels};
{requant}}};
"""

POOL_CONFIG = """struct config{index} {{
    static const unsigned n_chan = {n_chan};
    static const unsigned n_pixels = {n_pixels};
    typedef {accum_t} accum_t;
}};
"""

DENSE_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_filt = {n_out};
    static const unsigned n_terms = {n_terms};
    static const unsigned reuse_factor = {reuse};
    static const unsigned lanes_per_filter = {lanes_per_filter};
    static const unsigned block_factor = {block};
    static const unsigned csd_terms = {csd_terms};
    static const unsigned w_table_size = {w_table_size};
    static const unsigned w_table_factor = {w_table_factor};
    typedef {weight_t} weight_t;
    typedef {accum_t} accum_t;
}};
"""

NO_TABLES = ("nnet::no_exps", "nnet::no_signs")


def tables(node, prefix=""):
    """Names of the term-major shift-add tables `{prefix}csd_exps/signs`, or the one-element stand-ins."""
    if int(node.get_attr(f"{prefix}csd_terms", 0) or 0) == 0:
        return NO_TABLES
    return node.weights[f"{prefix}csd_exps"].name, node.weights[f"{prefix}csd_signs"].name


def _table_shape(node, prefix, n_consts, lanes):
    """(size, reshape factor) of a term-major table of n_consts constants whose reuse-cycle word holds
    `lanes` of them; (1, 1) without shift-add."""
    t = int(node.get_attr(f"{prefix}csd_terms", 0) or 0)
    return (t * n_consts, t * lanes) if t else (1, 1)


def _elem_type(node):
    return cpp_int(node.get_output_variable().type.precision)


def _input_precision(node, k=0):
    p = node.get_input_variable(node.inputs[k]).type.precision
    if not isinstance(p, IntegerPrecisionType):
        raise ValueError(f"layer {node.name}: input '{node.inputs[k]}' is not an integer type ({p})")
    return p


def constexpr_table(values) -> str:
    """A constexpr lookup of small unsigned values: an octal-escaped string literal indexed by f."""
    vals = [int(v) for v in values]
    if len(set(vals)) <= 1:
        return str(vals[0] if vals else 0)
    return '(unsigned char)"' + "".join(f"\\{v:03o}" for v in vals) + '"[f]'


def requant_params(node, n_chan: int, rf_limit: int, fused: bool) -> dict:
    """REQUANT_FIELDS of a requant (fused into a window layer when `fused`): R divides C, lanes C / R."""
    out = node.get_output_variable().type.precision
    n_inputs = int(node.get_attr("n_inputs", len(node.inputs)))
    if fused:
        r = schedule.requant_reuse(n_chan, rf_limit)
    else:
        r = schedule.check_reuse(node.name, n_chan, int(node.get_attr("reuse_factor", 1) or 1),
                                 "requant reuse factor (channels per lane)")
    lanes = n_chan // r
    size, factor = _table_shape(node, "rq_", n_inputs * n_chan, n_inputs * lanes)
    lo, hi = range_of(out.width, out.signed)
    return {"fused": "true" if fused else "false", "n_inputs": n_inputs, "rq_chan": n_chan, "rq_reuse": r, "rq_lanes": lanes,
            "rq_csd_terms": int(node.get_attr("rq_csd_terms", 0) or 0), "rq_mult_size": n_inputs * n_chan,
            "rq_mult_factor": n_inputs * lanes, "rq_bias_size": n_chan, "rq_table_size": size,
            "rq_table_factor": factor, "shift": int(node.get_attr("shift")), "out_lo": lo, "out_hi": hi,
            "sum_t": f"ap_int<{int(node.get_attr('sum_width'))}>", "mult_t": node.weights["rq_mult"].type.name,
            "bias_t": node.weights["rq_bias"].type.name, "out_elem_t": cpp_int(out)}


NO_REQUANT = {"fused": "false", "n_inputs": 1, "rq_chan": 1, "rq_reuse": 1, "rq_lanes": 1, "rq_csd_terms": 0, "rq_mult_size": 1,
              "rq_mult_factor": 1, "rq_bias_size": 1, "rq_table_size": 1, "rq_table_factor": 1, "shift": 0,
              "out_lo": 0, "out_hi": 0, "sum_t": "ap_int<2>", "mult_t": "ap_int<2>", "bias_t": "ap_int<2>",
              "out_elem_t": "ap_int<2>"}


def window_params(node) -> dict:
    geom = schedule.WindowGeometry.from_attrs(node.get_attr)
    rf = schedule.check_reuse(node.name, geom.n_in, int(node.get_attr("reuse_factor")))
    is_adder = node.class_name == "QAdderConv2D"
    inp = _input_precision(node)
    w = node.weights["weight"]
    wlo, whi = int(w.data.min()), int(w.data.max())
    alo, ahi = range_of(inp.width, inp.signed)
    m = schedule.lanes_per_filter(geom.n_in, rf)
    widths = schedule.sad_widths(alo, ahi, wlo, whi, m)
    p = {**geom.as_dict(), "index": node.index, "n_in": geom.n_in, "n_terms": geom.n_terms, "reuse": rf,
         "lanes_per_filter": m, "block": geom.n_filt * m, "act_bits": inp.width, "term_bits": widths["term_bits"],
         "act_t": cpp_int(inp), "weight_t": w.type.name,
         "diff_t": f"ap_int<{widths['diff_bits']}>", "term_t": f"ap_uint<{widths['term_bits']}>",
         "psum_t": f"ap_uint<{widths['psum_bits']}>",
         "accum_t": cpp_int(IntegerPrecisionType(width=int(node.get_attr("acc_bits")),
                                                 signed=bool(node.get_attr("acc_signed"))))}
    p["csd_terms"] = 0 if is_adder else int(node.get_attr("csd_terms", 0) or 0)
    p["w_table_size"], p["w_table_factor"] = (1, 1) if is_adder else _table_shape(node, "", geom.n_terms, p["block"])
    if is_adder:
        gm = node.weights["group_mult"]
        gs = node.weights["group_shift"]
        n_groups = int(np.asarray(gm.data).size)
        p.update(n_groups=n_groups, gmult_t=gm.type.name, gshift_t=gs.type.name,
                 gprod_t=f"ap_int<{schedule.rescale_prod_bits(alo, ahi, gm.data, gs.data)}>",
                 group_of=constexpr_table(node.get_attr("group_ids")),
                 g_csd_terms=int(node.get_attr("csd_terms", 0) or 0))
        p["g_table_size"] = _table_shape(node, "", n_groups, n_groups)[0]
    else:
        p.update(n_groups=1, gmult_t="ap_int<2>", gshift_t="ap_uint<1>", gprod_t="ap_int<2>", group_of="0",
                 g_csd_terms=0, g_table_size=1)
    rq = requant_params(node, geom.n_filt, rf, True) if node.get_attr("fused") else NO_REQUANT
    p["requant"] = REQUANT_FIELDS.format(**rq)
    return p


class WindowConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__((QAdderConv2D, QIntConv2D))
        self.template = WINDOW_CONFIG

    def format(self, node):
        return self.template.format(**window_params(node))


def _requant_args(node):
    if not node.get_attr("fused"):
        return "nnet::no_gmult, nnet::no_gmult, nnet::no_exps, nnet::no_signs"
    exps, signs = tables(node, "rq_")
    return f"{node.weights['rq_mult'].name}, {node.weights['rq_bias'].name}, {exps}, {signs}"


class AdderFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QAdderConv2D, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = tables(node)
        consts = (f"{node.weights['weight'].name}, {node.weights['group_mult'].name}, "
                  f"{node.weights['group_shift'].name}, {exps}, {signs}, {_requant_args(node)}, n_images")
        if len(node.inputs) > 1:
            sc = node.get_input_variable(node.inputs[1])
            return (f"nnet::adder_conv_2d_add_cl<{p['input_t']}, {sc.type.name}, {p['output_t']}, {p['config']}>("
                    f"{p['input']}, {sc.name}, {p['output']}, {consts});")
        return (f"nnet::adder_conv_2d_cl<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{consts});")


class IntConvFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QIntConv2D, include_header=INCLUDE)

    def format(self, node):
        if len(node.inputs) > 1:
            raise ValueError(f"layer {node.name}: a residual input into the integer convolution is not generated")
        p = self._default_function_params(node)
        exps, signs = tables(node)
        return (f"nnet::int_conv_2d_cl<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{node.weights['weight'].name}, {exps}, {signs}, {_requant_args(node)}, n_images);")


class RequantConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(QRequant)
        self.template = REQUANT_CONFIG

    def format(self, node):
        n_chan = int(node.get_attr("n_chan"))
        rq = requant_params(node, n_chan, n_chan, False)
        return self.template.format(index=node.index, n_chan=n_chan, n_pixels=int(node.get_attr("n_pixels")),
                                    requant=REQUANT_FIELDS.format(**rq))


class RequantFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QRequant, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = tables(node, "rq_")
        consts = f"{node.weights['rq_mult'].name}, {node.weights['rq_bias'].name}, {exps}, {signs}, n_images"
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
        return (f"nnet::global_sum_pool_stream<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, "
                f"{p['output']}, n_images);")


class DenseConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(QIntDense)
        self.template = DENSE_CONFIG

    def format(self, node):
        params = self._default_config_params(node)
        n_in, n_out = int(node.get_attr("n_in")), int(node.get_attr("n_out"))
        rf = schedule.check_reuse(node.name, n_in, int(node.get_attr("reuse_factor")))
        params["reuse"] = rf
        params["lanes_per_filter"] = schedule.lanes_per_filter(n_in, rf)
        params["block"] = n_out * params["lanes_per_filter"]
        params["csd_terms"] = int(node.get_attr("csd_terms", 0) or 0)
        params["w_table_size"], params["w_table_factor"] = _table_shape(node, "", n_in * n_out, params["block"])
        params["weight_t"] = node.weights["weight"].type.name
        params["accum_t"] = _elem_type(node)
        return self.template.format(**params)


class DenseFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(QIntDense, include_header=INCLUDE)

    def format(self, node):
        p = self._default_function_params(node)
        exps, signs = tables(node)
        return (f"nnet::int_dense_stream<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
                f"{node.weights['weight'].name}, {exps}, {signs}, n_images);")


TEMPLATES = (WindowConfigTemplate, AdderFunctionTemplate, IntConvFunctionTemplate, RequantConfigTemplate,
             RequantFunctionTemplate, PoolConfigTemplate, PoolFunctionTemplate, DenseConfigTemplate,
             DenseFunctionTemplate)
