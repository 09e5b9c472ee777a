"""Fuse each requantisation into the window layer that produces its first input.

A QRequant whose first input is the accumulator stream of a QAdderConv2D / QIntConv2D read by nothing
else becomes part of that layer: the window layer latches its finished accumulators and requantises them
over rq_reuse <= RF cycles while its kernel computes the next pixel (hls_templates/nnet_adder_stream.h),
so the accumulator stream, its FIFO and a whole dataflow process disappear. A second (residual) input
becomes the window layer's shortcut stream, read as each pixel's requantisation starts. Exact: the same
integer operations on the same values. Model option 'FuseRequant' (default True) turns it off.
"""

import numpy as np
from hls4ml.model.optimizer import OptimizerPass

from flow.hls.layers import QAdderConv2D, QIntConv2D, QRequant

WINDOW_CLASSES = (QAdderConv2D, QIntConv2D)


def fuse_requant_enabled(model) -> bool:
    return bool((model.config.get_config_value("HLSConfig") or {}).get("Model", {}).get("FuseRequant", True))


class FuseRequant(OptimizerPass):
    def match(self, node):
        if not isinstance(node, QRequant) or not fuse_requant_enabled(node.model):
            return False
        prod = node.get_input_node(node.inputs[0])
        if not isinstance(prod, WINDOW_CLASSES) or prod.get_attr("fused"):
            return False
        users = [n for n in node.model.get_layers() if node.inputs[0] in n.inputs]
        return len(users) == 1 and node.inputs[0] not in node.model.outputs

    def transform(self, model, node):
        win = node.get_input_node(node.inputs[0])
        out_prec = node.get_output_variable().type.precision
        win.set_attr("fused", True)
        win.set_attr("n_inputs", len(node.inputs))
        win.set_attr("shift", int(node.get_attr("shift")))
        win.set_attr("sum_width", int(node.get_attr("sum_width")))
        win.set_attr("out_bits", int(out_prec.width))
        win.set_attr("out_signed", bool(out_prec.signed))
        win.set_attr("fused_requant", node.name)
        # the requant's own shift-add request (its apot_terms, its per-layer ShiftAdd) goes with its constants
        from flow.hls.passes.shift_add import shift_add_requested

        win.set_attr("rq_shift_add", shift_add_requested(node))
        for name in ("rq_mult", "rq_bias"):
            w = node.weights[name]
            win.add_weights_variable(name=name, var_name=name.replace("_", "") + "{index}",
                                     data=np.asarray(w.data, np.float64), precision=w.type.precision)
        if len(node.inputs) > 1:
            win.inputs.append(node.inputs[1])
            node.inputs = node.inputs[:1]
        win.get_output_variable().type.precision = out_prec
        # the fused layer takes the requant's place in the graph order: after both of its inputs (C
        # simulation runs the dataflow processes one after another in this order)
        order = [win.name if name == node.name else name for name in model.graph if name != win.name]
        model.graph = type(model.graph)((name, model.graph[name]) for name in order)
        model.graph[node.name] = node
        model.remove_node(node)
        return True
