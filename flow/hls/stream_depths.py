"""FIFO depths of the DATAFLOW streams: 2 on every edge, residual-join inputs sized to the branch lag.

hls4ml's io_stream default makes every stream as deep as its tensor has pixels (BRAM heavy). A chain of
processes runs with depth-2 FIFOs; only where two branches of a fork meet again (a residual join) must
the faster branch buffer what the slower one holds back (a window layer emits its first output after
about (K-1) rows + K pixels of its input), or the fork blocks and the DATAFLOW region deadlocks.

Model, per join: from the fork (the nearest stream all its inputs descend from), need[q] = the number
of fork tokens that must have been delivered before token q of a stream can exist (window layers from
their raster walk of the padded input, element-wise layers 1:1, pooling after its last input). A join
stuck on token q has seen fewer than T(q) = max_i need_i[q] fork tokens; input i then holds at most
#{q' : need_i[q'] <= T(q) - 1} - q tokens. Its depth is the largest such backlog plus a margin (a join
this cannot analyse keeps a whole tensor); every other stream gets MIN_DEPTH.
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


def _ancestors(var: str, producer: dict) -> set:
    seen, todo = set(), [var]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in producer:
            todo.extend(producer[v].inputs)
    return seen


def _join_backlogs(join, layers: list, producer: dict, position: dict) -> dict | None:
    """{input name: most tokens it must buffer} for a multi-input layer, measured from the nearest
    stream all its inputs descend from (the fork) as the only pacing source; None if not analysable."""
    common = set.intersection(*(_ancestors(i, producer) for i in join.inputs))
    if not common:
        return None
    fork = max(common, key=lambda v: position.get(v, -1))
    fork_var = producer[fork].variables[fork] if fork in producer else None
    if fork_var is None:
        return None
    need = {fork: np.arange(1, _tokens(fork_var) + 1, dtype=np.int64)}
    for layer in layers[position.get(fork, -1) + 1:]:
        if layer is join:
            break
        if layer.inputs and all(i in need for i in layer.inputs):
            out_need = _need_of_outputs(layer, [need[i] for i in layer.inputs])
            for o in layer.outputs:
                need[o] = out_need
    if not all(i in need for i in join.inputs) or len({len(need[i]) for i in join.inputs}) != 1:
        return None
    t = np.max(np.stack([need[i] for i in join.inputs]), axis=0)
    q = np.arange(len(t))
    # stuck on token q: fewer than T(q) fork tokens have been delivered
    return {i: max(0, int(np.max(np.searchsorted(need[i], t - 1, side="right") - q))) for i in join.inputs}


def stream_depths(model) -> dict:
    """{stream variable name: FIFO depth} for the internal streams of an io_stream hls4ml model."""
    layers = list(model.get_layers())
    producer = {o: layer for layer in layers for o in layer.outputs}
    position = {o: k for k, layer in enumerate(layers) for o in layer.outputs}
    depth = {}
    for layer in layers:
        for o in layer.outputs:
            if o in layer.variables:
                depth.setdefault(layer.variables[o].name, MIN_DEPTH)
        if len(layer.inputs) < 2:
            continue
        backlogs = _join_backlogs(layer, layers, producer, position)
        for name in layer.inputs:
            var = layer.get_input_variable(name)
            want = _tokens(var) if backlogs is None else backlogs[name] + JOIN_MARGIN
            depth[var.name] = max(depth.get(var.name, MIN_DEPTH), want)
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
