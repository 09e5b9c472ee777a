"""FIFO depths of the DATAFLOW streams: 2 on every edge, residual-join inputs sized to the branch lag.

hls4ml's io_stream default makes every stream as deep as its tensor has pixels (BRAM heavy). A chain of
processes runs with depth-2 FIFOs; only where two branches of a fork meet again (a residual join) must
the faster branch buffer what the slower one holds back (a window layer emits its first output after
about (K-1) rows + K pixels of its input), or the fork blocks and the DATAFLOW region deadlocks.

Model: for every stream, need[q] = the number of graph-input pixels that must have entered before its
token q can exist (window layers from their raster walk of the padded input, element-wise layers 1:1,
pooling after its last input). A join waiting for token q of all inputs sees T(q) = max_i need_i[q]
input pixels enter; input i then holds at most #{q' : need_i[q'] <= T(q)} - q tokens. Its depth is the
largest such backlog plus a margin; every other stream gets MIN_DEPTH.
"""

from __future__ import annotations

import numpy as np

MIN_DEPTH = 2
JOIN_MARGIN = 2          # tokens in flight inside the producer/consumer pipelines
WINDOW_LAYERS = ("QAdderConv2D", "QIntConv2D")


def _tokens(var) -> int:
    shape = list(var.shape)
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def window_reads_at_outputs(a: dict) -> np.ndarray:
    """Input pixels read by the line-buffer walk (hls_templates window_stream) when each output is emitted."""
    kh, kw, s = int(a["filt_height"]), int(a["filt_width"]), int(a["stride"])
    h, w = int(a["in_height"]), int(a["in_width"])
    pt, pl = int(a["pad_top"]), int(a["pad_left"])
    hp, wp = h + pt + int(a["pad_bottom"]), w + pl + int(a["pad_right"])
    rows_read = np.clip(np.arange(hp) - pt, 0, h)                  # full input rows before padded row ip
    cols_read = np.clip(np.arange(wp) - pl + 1, 0, w)              # pixels of the current row through jp
    inside_row = (np.arange(hp) >= pt) & (np.arange(hp) < pt + h)
    out_rows = np.arange(kh - 1, hp, s)[: int(a["out_height"])]
    out_cols = np.arange(kw - 1, wp, s)[: int(a["out_width"])]
    reads = rows_read[out_rows, None] * w + np.where(inside_row[out_rows, None], cols_read[None, out_cols], 0)
    return reads.reshape(-1)


def _need_of_outputs(layer, need_in: list) -> np.ndarray:
    out = layer.get_output_variable()
    n = _tokens(out)
    if layer.class_name in WINDOW_LAYERS:
        reads = window_reads_at_outputs(layer.attributes)
        src = need_in[0]
        return np.where(reads > 0, src[np.clip(reads - 1, 0, len(src) - 1)], 0)
    if all(len(x) == n for x in need_in):          # element-wise: requant, residual join, clone, dense
        return np.max(np.stack(need_in), axis=0)
    last = max(int(x[-1]) for x in need_in)        # reduction (pooling) or unknown: after its whole input
    return np.full(n, last, dtype=np.int64)


def stream_depths(model) -> dict:
    """{stream variable name: FIFO depth} for the internal streams of an io_stream hls4ml model."""
    need = {}
    for name in model.inputs:
        v = model.get_input_variables()[list(model.inputs).index(name)]
        need[name] = np.arange(1, _tokens(v) + 1, dtype=np.int64)
    depth = {}
    for layer in model.get_layers():
        ins = [i for i in layer.inputs if i in need]
        if len(ins) != len(layer.inputs):      # an input this model does not track (e.g. a constant)
            continue
        need_in = [need[i] for i in ins]
        if len(ins) > 1 and len({len(x) for x in need_in}) == 1:
            t = np.max(np.stack(need_in), axis=0)
            q = np.arange(len(t))
            for name, x in zip(ins, need_in):
                backlog = int(np.max(np.searchsorted(x, t, side="right") - q))
                var = layer.get_input_variable(name)
                depth[var.name] = max(depth.get(var.name, MIN_DEPTH), backlog + JOIN_MARGIN)
        out_need = _need_of_outputs(layer, need_in)
        for o in layer.outputs:
            need[o] = out_need
            depth.setdefault(layer.variables[o].name, MIN_DEPTH) if o in layer.variables else None
    return depth


def apply_stream_depths(model) -> dict:
    """Set the `#pragma HLS STREAM depth` of every internal stream (the top's ports keep theirs)."""
    depths = stream_depths(model)
    ports = {v.name for v in model.get_input_variables()} | {v.name for v in model.get_output_variables()}
    for layer in model.get_layers():
        for var in layer.variables.values():
            pragma = getattr(var, "pragma", None)
            if var.name in depths and var.name not in ports and isinstance(pragma, tuple) and pragma[0] == "stream":
                var.pragma = ("stream", int(min(depths[var.name], _tokens(var))))
    return depths
