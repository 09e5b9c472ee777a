"""Annotate each layer with the constant multipliers its datapath still needs (0 for the SAD PEs)."""

import numpy as np
from hls4ml.model.optimizer import OptimizerPass

from flow.hls import schedule

OUR_LAYERS = ("QIntConv2D", "QAdderConv2D", "QRequant", "QGlobalSumPool", "QIntDense")


def _requant_multipliers(node, n_chan: int, rf_limit: int, fused: bool) -> int:
    if int(node.get_attr("rq_csd_terms", 0) or 0) > 0:
        return 0
    r = schedule.requant_reuse(n_chan, rf_limit) if fused else int(node.get_attr("reuse_factor", 1) or 1)
    return (n_chan // r) * int(node.get_attr("n_inputs", len(node.inputs)))


def multipliers_of(node) -> int:
    kind = node.class_name
    own = int(node.get_attr("csd_terms", 0) or 0) > 0
    if kind in ("QIntConv2D", "QAdderConv2D"):
        rf = int(node.get_attr("reuse_factor"))
        n = 0
        if kind == "QIntConv2D" and not own:
            n = int(node.get_attr("n_terms")) // rf
        if kind == "QAdderConv2D" and not own:   # per-group input rescale lanes (the SAD itself has none)
            n = int(node.get_attr("n_chan")) * int(np.count_nonzero(node.weights["group_mult"].data))
        if node.get_attr("fused"):
            n += _requant_multipliers(node, int(node.get_attr("n_filt")), rf, True)
        return n
    if kind == "QIntDense":
        return 0 if own else int(node.get_attr("n_terms")) // int(node.get_attr("reuse_factor"))
    if kind == "QRequant":
        return _requant_multipliers(node, int(node.get_attr("n_chan")), 0, False)
    return 0


class CountMultipliers(OptimizerPass):
    def match(self, node):
        return node.class_name in OUR_LAYERS and node.get_attr("multipliers") is None

    def transform(self, model, node):
        node.set_attr("multipliers", multipliers_of(node))
        return False
