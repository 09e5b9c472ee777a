"""FIFO depths of the DATAFLOW streams: 2 on every edge, residual-join inputs sized to the branch lag.

hls4ml's io_stream default makes every stream as deep as its tensor has pixels (BRAM heavy). The depths
come from flow.report.estimate.join_fifo_depths (see there), so the estimate prices the FIFOs written.
"""

from __future__ import annotations

import numpy as np

from flow.report.estimate import FIFO_MIN_DEPTH, join_fifo_depths, window_reads_at_outputs  # noqa: F401

WINDOW_LAYERS = ("QAdderConv2D", "QIntConv2D")
WINDOW_KEYS = ("filt_height", "filt_width", "stride", "in_height", "in_width", "pad_top", "pad_bottom", "pad_left",
               "pad_right", "out_height", "out_width")


def _tokens(var) -> int:
    shape = list(var.shape)
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def stream_depths(model) -> dict:
    """{stream variable name: FIFO depth} for the streams of an io_stream hls4ml model."""
    nodes, tokens, var_name = [], {}, {}
    for name, v in zip(model.inputs, model.get_input_variables()):
        tokens[name], var_name[name] = _tokens(v), v.name
    for layer in model.get_layers():
        outs = [o for o in layer.outputs if o in layer.variables]
        for o in outs:
            tokens[o], var_name[o] = _tokens(layer.variables[o]), layer.variables[o].name
        node = {"name": layer.name, "inputs": list(layer.inputs), "outputs": outs,
                "tokens": tokens[outs[0]] if outs else 1}
        if layer.class_name in WINDOW_LAYERS:
            node["window"] = {k: layer.get_attr(k) for k in WINDOW_KEYS}
        nodes.append(node)
    depth = {var_name[s]: min(FIFO_MIN_DEPTH, t) for s, t in tokens.items()}
    for (_, stream), d in join_fifo_depths(nodes, tokens).items():
        depth[var_name[stream]] = max(depth[var_name[stream]], d)
    return depth


def apply_stream_depths(model) -> dict:
    """Set the `#pragma HLS STREAM depth` of every internal stream (the top's ports keep theirs)."""
    depths = stream_depths(model)
    ports = {v.name for v in model.get_input_variables()} | {v.name for v in model.get_output_variables()}
    for layer in model.get_layers():
        for var in layer.variables.values():
            pragma = getattr(var, "pragma", None)
            if var.name in depths and var.name not in ports and isinstance(pragma, tuple) and pragma[0] == "stream":
                var.pragma = ("stream", int(depths[var.name]))
    return depths
