"""The schedule of the AdderVitis design: the ONE definition of every number the generated C++
(hls_templates/nnet_adder_stream.h) is built from, and that the estimator prices.

Numpy only (no hls4ml, no flow.report): the backend's templates and passes read it from layer
attributes, the estimator (flow/report/estimate.py) from the QNet, so both describe the same design.

What is defined here
--------------------
* Reuse factors (hls4ml's rule, `dense_resource` with RF <= n_in): a window or dense layer with
  n_in = KH*KW*Cin inputs per output takes RF cycles per output pixel with n_filt * n_in/RF lanes, lane
  (f, m) wired to filter f and, in cycle r, tap m*RF + r. Only RF that divide n_in make every lane's
  filter and tap a compile-time function of (f, m, r): `legal_reuse_factors`. A requantisation of C
  channels over R cycles has C/R lanes (lane b on channel b*R + q): R divides C.
* Cycles: a window layer runs one flattened II=1 loop per image of HP*WP walker steps + Ho*Wo*RF kernel
  cycles (+ R drain cycles when the requant is fused): `window_steps`. Requant: pixels*R; pool: pixels;
  dense: RF.
* Widths of every derived C++ type: SAD difference, term, adder-tree levels and partial sum
  (`sad_widths`), requant sum (`requant_sum_bits`), group-rescale product (`rescale_prod_bits`).
* CSD (shift-add) term counts: `csd_terms`.
* Stream FIFO depths: `join_fifo_depths`, with the slack rule in FIFO_SLACK's comment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flow.csd import csd_digits
from flow.errors import AdderFlowError
from flow.qnet import bits_for

# ---- reuse factors -----------------------------------------------------------------------------------


TUNABLE_KINDS = ("conv2d", "adder2d", "dense")   # QNet ops with a reuse factor (lanes = n_terms / RF)


class ScheduleError(AdderFlowError):
    """A configuration the generated design cannot implement (names the layer and the legal values)."""


def divisors(n: int) -> list:
    n = int(n)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def legal_reuse_factors(n_in: int) -> list:
    """Reuse factors with a fixed lane-to-filter-and-tap map: the divisors of the inputs per output."""
    return divisors(n_in)


def nearest_legal(rf: int, legal: list) -> tuple:
    below = max((v for v in legal if v <= rf), default=None)
    above = min((v for v in legal if v >= rf), default=None)
    return below, above


def check_reuse(layer: str, n_in: int, rf: int, what: str = "reuse factor") -> int:
    """rf if legal for a layer with n_in inputs per output, else a ScheduleError naming the nearest legal values."""
    rf = int(rf)
    legal = legal_reuse_factors(n_in)
    if rf in legal:
        return rf
    below, above = nearest_legal(rf, legal)
    near = " or ".join(str(v) for v in (below, above) if v is not None)
    raise ScheduleError(f"layer {layer}: {what} {rf} is not legal (it must divide {n_in}, the inputs per output, so "
                        f"that every lane has a fixed filter and tap); nearest legal: {near}")


def requant_reuse(n_chan: int, limit: int) -> int:
    """Largest R that divides n_chan and is <= limit (a fused requant must finish within the window's RF)."""
    return max(d for d in divisors(n_chan) if d <= max(1, int(limit)))


# ---- geometry and cycles -----------------------------------------------------------------------------

WINDOW_KEYS = ("in_height", "in_width", "n_chan", "out_height", "out_width", "n_filt", "filt_height", "filt_width",
               "stride", "pad_top", "pad_bottom", "pad_left", "pad_right")


@dataclass(frozen=True)
class WindowGeometry:
    in_height: int
    in_width: int
    n_chan: int
    out_height: int
    out_width: int
    n_filt: int
    filt_height: int
    filt_width: int
    stride: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int

    @classmethod
    def from_attrs(cls, get) -> "WindowGeometry":
        """From a mapping or an attribute getter (hls4ml layer.get_attr) holding WINDOW_KEYS."""
        get = get.get if isinstance(get, dict) else get
        return cls(**{k: int(get(k)) for k in WINDOW_KEYS})

    @classmethod
    def from_qnet_op(cls, net, op) -> "WindowGeometry":
        h, w, c = net.tensors[op.inputs[0]].shape
        ho, wo, f = net.tensors[op.output].shape
        kh, kw = op.arrays["weight"].shape[:2]
        pt, pb, pl, pr = (list(op.attrs.get("pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
        return cls(h, w, c, ho, wo, f, kh, kw, int(op.attrs.get("stride", 1)), pt, pb, pl, pr)

    @property
    def hp(self) -> int:
        return self.in_height + self.pad_top + self.pad_bottom

    @property
    def wp(self) -> int:
        return self.in_width + self.pad_left + self.pad_right

    @property
    def n_in(self) -> int:
        return self.filt_height * self.filt_width * self.n_chan

    @property
    def n_terms(self) -> int:
        return self.n_in * self.n_filt

    @property
    def out_pixels(self) -> int:
        return self.out_height * self.out_width

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in WINDOW_KEYS}


def lanes_per_filter(n_in: int, rf: int) -> int:
    return int(n_in) // int(rf)


def window_steps(g: WindowGeometry, rf: int, rq_reuse: int = 0) -> int:
    """Iterations of the window layer's II=1 loop per image (rq_reuse > 0: fused requant drain)."""
    return g.hp * g.wp + g.out_pixels * int(rf) + int(rq_reuse)


def requant_steps(n_pixels: int, r: int) -> int:
    return int(n_pixels) * int(r)


# Loop-entry/exit overhead of one image's pipelined loop (the pipeline fills once per image, since the
# image loop is not flattened): stream read, line-buffer shift, lane, tree, accumulate, write.
PIPELINE_DEPTH = {"window": 8, "requant": 4, "pool": 3, "dense": 6, "clone": 2}


# ---- widths of the derived types ---------------------------------------------------------------------

def sad_widths(a_lo: int, a_hi: int, w_lo: int, w_hi: int, lanes: int) -> dict:
    """Bits of the SAD datapath: signed difference a - w, unsigned term |a - w|, and the bound-typed tree
    over a filter's `lanes` terms per cycle (level l sums 2^l terms: term_bits + l bits)."""
    d_lo, d_hi = int(a_lo) - int(w_hi), int(a_hi) - int(w_lo)
    dmax = max(abs(d_lo), abs(d_hi), 1)
    diff_bits = bits_for(-dmax, dmax)[0]
    term_bits = bits_for(0, dmax)[0]
    levels = max(0, math.ceil(math.log2(lanes))) if lanes > 1 else 0
    return {"diff_bits": diff_bits, "term_bits": term_bits, "term_max": dmax,
            "psum_bits": term_bits + levels, "tree_levels": [term_bits + lv for lv in range(1, levels + 1)]}


def requant_sum_bits(bias, mult, in_ranges, shift: int) -> int:
    """Signed width holding |bias| + sum_k max|in_k| * max|mult_k| + the rounding constant: every partial
    sum of the requant fits, so modular arithmetic on it is exact."""
    mult = np.asarray(mult, np.int64).reshape(len(in_ranges), -1)
    top = int(np.abs(np.asarray(bias, np.int64)).max()) if np.size(bias) else 0
    for k, (lo, hi) in enumerate(in_ranges):
        top += max(abs(int(lo)), abs(int(hi))) * int(np.abs(mult[k]).max())
    top += (1 << (int(shift) - 1)) if int(shift) > 0 else 0
    return bits_for(-top - 1, top)[0]


def rescale_prod_bits(a_lo: int, a_hi: int, gmult, gshift) -> int:
    """Signed width of x * gmult + rounding, before the shift (group input rescale)."""
    gm = np.asarray(gmult, np.int64)
    mlo, mhi = min(int(gm.min()), 0), max(int(gm.max()), 0)
    smax = int(np.asarray(gshift).max()) if np.size(gshift) else 0
    rnd = (1 << (smax - 1)) if smax > 0 else 0
    lo = min(mlo * a_hi, mhi * a_lo, 0) - 1
    hi = max(mhi * a_hi, mlo * a_lo) + rnd
    return bits_for(lo, max(hi, a_hi))[0]


# ---- canonical signed digits -------------------------------------------------------------------------

def csd_tables(values) -> tuple:
    """Term-major tables (exps (T, N), signs (T, N), T): entry [t, n] is term t of constant n, so that the
    reshape that gives lane n its constant at a reuse-cycle address gives it its terms too."""
    digits = [csd_digits(v) for v in np.asarray(values).reshape(-1)]
    t = max([len(d) for d in digits] + [1])
    exps = np.zeros((t, len(digits)), np.int64)
    signs = np.zeros((t, len(digits)), np.int64)
    for i, d in enumerate(digits):
        for j, (e, s) in enumerate(d):
            exps[j, i], signs[j, i] = e, s
    return exps, signs, t


def csd_terms(values) -> int:
    """Shift-add terms per constant the generated code unrolls (the most any constant of the array needs)."""
    return csd_tables(values)[2] if np.size(values) else 0


# ---- stream FIFO depths ------------------------------------------------------------------------------
# A chain of processes runs with depth-2 FIFOs. Where two branches of a fork meet again (a residual join)
# the faster branch must buffer what the slower one holds back, or the fork blocks and the DATAFLOW
# region deadlocks. need_i[q] = fork tokens that must have been delivered before token q of stream i
# can exist (window layers from their raster walk of the padded input, element-wise nodes 1:1,
# reductions after their last input). A join stuck on output q has seen fewer than
# T(q) = max_i need_i[q] fork tokens; input i then holds at most #{q' : need_i[q'] <= T(q) - 1} - q
# tokens. Images run back to back, so the walk covers two consecutive images.
#
# Slack rule: depth = that backlog + FIFO_SLACK. The analysis counts tokens as if each process moved one
# token atomically; in hardware a pipelined process has read tokens it has not written yet (up to its
# pipeline depth, PIPELINE_DEPTH <= 8 for every process here) and a stall-style pipeline (Vitis default
# `config_compile -pipeline_style stp`) can hold the FIFO full flag one cycle late. FIFO_SLACK covers the
# largest pipeline depth plus 2. A depth is trusted only once a co-simulation of the design has passed
# (`--cosim` with vitis_hls also profiles the real depths: hls4ml's fifo_depth_optimization).

FIFO_MIN_DEPTH = 2
FIFO_SLACK = max(PIPELINE_DEPTH.values()) + 2
ANALYSED_IMAGES = 2


def window_reads_at_outputs(g: WindowGeometry) -> np.ndarray:
    """Input pixels the walker has read when each output pixel is computed (one image)."""
    h, w, s = g.in_height, g.in_width, g.stride
    rows_read = np.clip(np.arange(g.hp) - g.pad_top, 0, h)
    cols_read = np.clip(np.arange(g.wp) - g.pad_left + 1, 0, w)
    inside_row = (np.arange(g.hp) >= g.pad_top) & (np.arange(g.hp) < g.pad_top + h)
    out_rows = np.arange(g.filt_height - 1, g.hp, s)[: g.out_height]
    out_cols = np.arange(g.filt_width - 1, g.wp, s)[: g.out_width]
    reads = rows_read[out_rows, None] * w + np.where(inside_row[out_rows, None], cols_read[None, out_cols], 0)
    return reads.reshape(-1)


def _map_need(mapping, src: np.ndarray, n_out: int) -> np.ndarray:
    """need of each output token (ANALYSED_IMAGES images) from the need of the input stream."""
    per_in = len(src) // ANALYSED_IMAGES
    per_out = n_out // ANALYSED_IMAGES
    if isinstance(mapping, WindowGeometry):
        reads = window_reads_at_outputs(mapping)
        reads = np.concatenate([reads + i * per_in for i in range(ANALYSED_IMAGES)])
        return np.where(reads > 0, src[np.clip(reads - 1, 0, len(src) - 1)], 0)
    if mapping == "elementwise" and per_in == per_out:
        return src.copy()
    # reduction (or unknown): every output of an image after that image's last input
    last = src.reshape(ANALYSED_IMAGES, per_in)[:, -1]
    return np.repeat(last, per_out)


def input_maps(role: str, n_inputs: int, geometry: WindowGeometry | None = None) -> list:
    """How each input of a process maps to its outputs: a window layer's data input through its walk
    (a fused residual input 1:1), a reduction after its whole input, anything else 1:1."""
    if role == "window":
        return [geometry] + ["elementwise"] * (n_inputs - 1)
    return ["reduce" if role == "reduce" else "elementwise"] * n_inputs


def join_fifo_depths(nodes: list, stream_tokens: dict) -> dict:
    """{(node name, input stream): FIFO depth} for every input of every multi-input node.
    nodes: topological order of {"name", "inputs", "outputs", "tokens" (per image and output), "maps" (one
    per input: a WindowGeometry, "elementwise" or "reduce")}; stream_tokens: {stream: tokens per image}.
    A join that cannot be analysed gets a whole tensor (two images) per input."""
    producer = {o: k for k, n in enumerate(nodes) for o in n["outputs"]}

    def ancestors(v):
        seen, todo = set(), [v]
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                if x in producer:
                    todo.extend(nodes[producer[x]]["inputs"])
        return seen

    out = {}
    for k, join in enumerate(nodes):
        if len(join["inputs"]) < 2:
            continue
        common = set.intersection(*(ancestors(i) for i in join["inputs"]))
        backlog = None
        if common:
            fork = max(common, key=lambda v: producer.get(v, -1))
            need = {fork: np.arange(1, ANALYSED_IMAGES * int(stream_tokens[fork]) + 1, dtype=np.int64)}
            for node in nodes[producer.get(fork, -1) + 1:k + 1]:
                if not node["inputs"] or not all(i in need for i in node["inputs"]):
                    continue
                n_out = ANALYSED_IMAGES * int(node["tokens"])
                mapped = [_map_need(m, need[i], n_out) for i, m in zip(node["inputs"], node["maps"])]
                if node is join:
                    t = np.max(np.stack(mapped), axis=0)
                    q = np.arange(n_out)
                    backlog = {}
                    for i, m, mp in zip(node["inputs"], node["maps"], mapped):
                        # tokens of input i the join has not consumed while stuck on output q
                        consumed = _consumed_at(m, q, int(stream_tokens[i]))
                        avail = np.searchsorted(need[i], t - 1, side="right")
                        backlog[i] = max(0, int(np.max(avail - consumed)))
                    break
                o_need = np.max(np.stack(mapped), axis=0)
                for o in node["outputs"]:
                    need[o] = o_need
        for i in join["inputs"]:
            tokens = int(stream_tokens[i])
            depth = ANALYSED_IMAGES * tokens if backlog is None else backlog[i] + FIFO_SLACK
            out[(join["name"], i)] = int(min(max(FIFO_MIN_DEPTH, depth), max(ANALYSED_IMAGES * tokens, 1)))
    return out


def _consumed_at(mapping, q: np.ndarray, tokens_in: int) -> np.ndarray:
    """Fewest input tokens a node has consumed while it is stuck on output q (two images): a window layer
    waiting for the last pixel of window q, or an element-wise one waiting for token q."""
    if isinstance(mapping, WindowGeometry):
        reads = window_reads_at_outputs(mapping)
        reads = np.concatenate([reads + i * tokens_in for i in range(ANALYSED_IMAGES)])
        return np.maximum(reads[q] - 1, 0)
    return q


# ---- the QNet as the generated dataflow graph ----------------------------------------------------------

def inputs_per_output(op) -> int:
    """n_in of a window/dense op: the number its reuse factor must divide."""
    w = np.asarray(op.arrays["weight"])
    return int(w.size // w.shape[-1])


def fusable_requants(net) -> dict:
    """{window op name: requant op} for every requant the backend fuses (passes/fuse_requant.py): its first
    input comes from a conv2d/adder2d that feeds nothing else and is not the network output."""
    out = {}
    for op in net.ops:
        if op.kind != "requant":
            continue
        prod = net.producer(op.inputs[0])
        if (prod is not None and prod.kind in ("conv2d", "adder2d") and len(net.consumers(op.inputs[0])) == 1
                and op.inputs[0] != net.output and prod.name not in out):
            out[prod.name] = op
    return out


def qnet_stream_graph(net, fused: dict) -> tuple:
    """(nodes, tokens per image) of the generated design for join_fifo_depths: one node per process (a
    window layer with its fused requant is one node whose residual input is element-wise)."""
    tokens = {t: (int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 1) for t, s in net.tensors.items()}
    window_of = {rq.name: net.op(w) for w, rq in fused.items()}
    nodes = []
    # a fused window layer takes its requant's place: after both of its inputs (dependency order)
    for op in (window_of.get(o.name, o) for o in net.ops if o.name not in fused):
        inputs, output = list(op.inputs), op.output
        if op.kind in ("conv2d", "adder2d"):
            if op.name in fused:
                inputs += list(fused[op.name].inputs[1:])
                output = fused[op.name].output
            maps = input_maps("window", len(inputs), WindowGeometry.from_qnet_op(net, op))
        else:
            maps = input_maps("reduce" if op.kind in ("global_sum_pool", "dense") else "elementwise", len(inputs))
        nodes.append({"name": op.name, "inputs": inputs, "outputs": [output], "tokens": tokens[output],
                      "maps": maps})
    return nodes, tokens
