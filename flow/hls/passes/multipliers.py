"""Annotate each layer with the constant multipliers its datapath still needs (0 for the SAD PEs)."""

import numpy as np
from hls4ml.model.optimizer import OptimizerPass

from flow.hls.layers import block_factor

OUR_LAYERS = ("QIntConv2D", "QAdderConv2D", "QRequant", "QGlobalSumPool", "QIntDense")


def multipliers_of(node) -> int:
    if int(node.get_attr("csd_terms", 0) or 0) > 0:
        return 0
    kind = node.class_name
    if kind in ("QIntConv2D", "QIntDense"):
        return block_factor(node.get_attr("n_terms"), node.get_attr("reuse_factor"))
    if kind == "QRequant":   # ceil(C/R) lanes when time-multiplexed over R cycles per pixel
        c = int(node.get_attr("n_chan"))
        r = min(max(1, int(node.get_attr("reuse_factor", 1) or 1)), c)
        return -(-c // r) * len(node.inputs)
    if kind == "QAdderConv2D":  # per-group input rescale lanes (the SAD itself has none)
        return int(node.get_attr("n_chan")) * int(np.count_nonzero(node.weights["group_mult"].data))
    return 0


class CountMultipliers(OptimizerPass):
    def match(self, node):
        return node.class_name in OUR_LAYERS and node.get_attr("multipliers") is None

    def transform(self, model, node):
        node.set_attr("multipliers", multipliers_of(node))
        return False
