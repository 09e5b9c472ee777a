"""FIFO depths of the DATAFLOW streams of a converted model: FIFO_MIN_DEPTH on every edge, the inputs of
every join (a residual add fused into a window layer, or a requant of two streams) sized by
flow.hls.schedule.join_fifo_depths (its slack rule is documented there).

hls4ml's io_stream default makes every stream as deep as its tensor has pixels (BRAM heavy).
"""

from __future__ import annotations

import numpy as np

from flow.hls.schedule import FIFO_MIN_DEPTH, WindowGeometry, input_maps, join_fifo_depths

WINDOW_LAYERS = ("QAdderConv2D", "QIntConv2D")
REDUCTIONS = ("QGlobalSumPool", "QIntDense")


def _tokens(var) -> int:
    shape = list(var.shape)
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def stream_graph(model) -> tuple:
    """(nodes, tokens per image, variable names) of an io_stream hls4ml model for join_fifo_depths."""
    nodes, tokens, var_name = [], {}, {}
    for name, v in zip(model.inputs, model.get_input_variables()):
        tokens[name], var_name[name] = _tokens(v), v.name
    for layer in model.get_layers():
        outs = [o for o in layer.outputs if o in layer.variables]
        for o in outs:
            tokens[o], var_name[o] = _tokens(layer.variables[o]), layer.variables[o].name
        if layer.class_name in WINDOW_LAYERS:
            maps = input_maps("window", len(layer.inputs), WindowGeometry.from_attrs(layer.get_attr))
        else:                                   # requant, clone: one token in, one token out
            maps = input_maps("reduce" if layer.class_name in REDUCTIONS else "elementwise", len(layer.inputs))
        nodes.append({"name": layer.name, "inputs": list(layer.inputs), "outputs": outs,
                      "tokens": tokens[outs[0]] if outs else 1, "maps": maps})
    return nodes, tokens, var_name


def stream_depths(model) -> dict:
    """{stream variable name: FIFO depth} for the streams of an io_stream hls4ml model."""
    nodes, tokens, var_name = stream_graph(model)
    depth = {var_name[s]: FIFO_MIN_DEPTH for s in tokens}
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
