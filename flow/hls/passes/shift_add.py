"""Constant multiplications as shift-and-add (canonical signed digits), so no DSP is inferred.

Enabled per layer (`config['LayerName'][name]['ShiftAdd'] = True`), per type, or for the whole model
(`config['Model']['ShiftAdd'] = True`); a QNet op carrying an `apot_terms` attribute asks for it too.
Exact: the CSD expansion of an integer is that integer, so bit-exactness is unchanged. The tables are
term-major (schedule.csd_tables), the layout the templates reshape to the lane words.
"""

import numpy as np
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import IntegerPrecisionType

from flow.hls.schedule import csd_tables

# which constant array of each layer is multiplied, and the prefix of its tables (the SAD has none)
CONSTANTS = {"QIntConv2D": [("weight", "")], "QIntDense": [("weight", "")], "QRequant": [("rq_mult", "rq_")],
             "QAdderConv2D": [("group_mult", "")]}
EXPONENT_TYPE = IntegerPrecisionType(width=8, signed=False)   # shift amounts are unsigned
SIGN_TYPE = IntegerPrecisionType(width=2, signed=True)


def shift_add_requested(node) -> bool:
    cfg = node.model.config
    layer_cfg = cfg.get_layer_config(node)
    if "ShiftAdd" in layer_cfg:
        return bool(layer_cfg["ShiftAdd"])
    if node.get_attr("apot_terms"):
        return True
    return bool((cfg.get_config_value("HLSConfig") or {}).get("Model", {}).get("ShiftAdd", False))


def constant_arrays(node) -> list:
    """[(array name, table prefix)] of a node that are to become shift-add: its own constants when
    shift-add is requested for the node, a fused requant's when requested for that requant."""
    own = shift_add_requested(node)
    out = list(CONSTANTS.get(node.class_name, [])) if own else []
    if node.get_attr("fused") and (own or node.get_attr("rq_shift_add")) and ("rq_mult", "rq_") not in out:
        out.append(("rq_mult", "rq_"))
    return out


class ShiftAddConstants(OptimizerPass):
    def match(self, node):
        return node.class_name in CONSTANTS and not node.get_attr("shift_add_done") and bool(constant_arrays(node))

    def transform(self, model, node):
        for array, prefix in constant_arrays(node):
            exps, signs, t = csd_tables(node.weights[array].data)
            node.add_weights_variable(name=f"{prefix}csd_exps", var_name=f"{prefix.replace('_', '')}csde{{index}}",
                                      data=exps.reshape(-1).astype(np.float64), precision=EXPONENT_TYPE)
            node.add_weights_variable(name=f"{prefix}csd_signs", var_name=f"{prefix.replace('_', '')}csds{{index}}",
                                      data=signs.reshape(-1).astype(np.float64), precision=SIGN_TYPE)
            node.set_attr(f"{prefix}csd_terms", t)
        node.set_attr("shift_add_done", True)
        return False
