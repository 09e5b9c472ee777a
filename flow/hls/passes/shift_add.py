"""Constant multiplications as shift-and-add (canonical signed digits), so no DSP is inferred.

Enabled per layer (`config['LayerName'][name]['ShiftAdd'] = True`), per type, or for the whole model
(`config['Model']['ShiftAdd'] = True`); a QNet op carrying an `apot_terms` attribute asks for it too.
Exact: the CSD expansion of an integer is that integer, so bit-exactness is unchanged.
"""

import numpy as np
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import IntegerPrecisionType

from flow.csd import csd_digits

# which constant array of each layer is multiplied (the SAD itself has no multiplier)
CONSTANTS = {"QIntConv2D": "weight", "QIntDense": "weight", "QRequant": "mult", "QAdderConv2D": "group_mult"}


def csd_tables(values) -> tuple:
    """(exps (N, T), signs (N, T), T) with T the most terms any value needs (at least 1)."""
    digits = [csd_digits(v) for v in np.asarray(values).reshape(-1)]
    t = max([len(d) for d in digits] + [1])
    exps = np.zeros((len(digits), t), np.int64)
    signs = np.zeros((len(digits), t), np.int64)
    for i, d in enumerate(digits):
        for j, (e, s) in enumerate(d):
            exps[i, j], signs[i, j] = e, s
    return exps, signs, t


def shift_add_requested(node) -> bool:
    cfg = node.model.config
    layer_cfg = cfg.get_layer_config(node)
    if "ShiftAdd" in layer_cfg:
        return bool(layer_cfg["ShiftAdd"])
    if node.get_attr("apot_terms"):
        return True
    return bool((cfg.get_config_value("HLSConfig") or {}).get("Model", {}).get("ShiftAdd", False))


class ShiftAddConstants(OptimizerPass):
    def match(self, node):
        return node.class_name in CONSTANTS and node.get_attr("csd_terms") is None and shift_add_requested(node)

    def transform(self, model, node):
        exps, signs, t = csd_tables(node.weights[CONSTANTS[node.class_name]].data)
        node.add_weights_variable(name="csd_exps", var_name="csde{index}", data=exps.reshape(-1).astype(np.float64),
                                  precision=IntegerPrecisionType(width=8, signed=True))
        node.add_weights_variable(name="csd_signs", var_name="csds{index}", data=signs.reshape(-1).astype(np.float64),
                                  precision=IntegerPrecisionType(width=2, signed=True))
        node.set_attr("csd_terms", t)
        return False
