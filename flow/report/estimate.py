"""Analytical latency/resource model of the io_stream DATAFLOW design the AdderVitis backend generates
(hls_templates/nnet_adder_stream.h), used when no vendor report exists. Every figure is an estimate.

Schedule (per image):
* window layer (adder2d / conv2d): one flattened pipelined loop (II=1): one step per padded input
  position (reading the pixel into a K-row line buffer) and RF steps of the SAD/MAC lanes per complete
  strided window: cycles = HP*WP + Ho*Wo*RF + pipeline depth.
  block_factor = ceil(K*K*Cin*Cout / RF) parallel SAD or MAC lanes; weights ARRAY_RESHAPEd into one
  memory of depth RF and width block_factor * weight bits (LUT ROM when shallow, BRAM18K otherwise;
  constants folded into logic when RF = 1).
* requant (BN+ReLU+requant, residual add with 2 inputs): one pixel per R cycles with ceil(C/R) lanes
  (R = its entry in `reuse`, 1 when not named: C lanes, one pixel per cycle), each input a constant
  multiplier (DSP when wide, LUTs when narrow) or csd_terms shift-adds (APoT, no DSP).
* global_sum_pool: one pixel per cycle, C accumulators. dense: like a window layer with one pixel.
* stream FIFOs: fifo_depth='minimal' (default, what the backend writes: depth 2, residual-join inputs
  sized to the branch lag) or 'hls4ml-default' (a whole tensor per stream).
* design variants the template does NOT generate today, modelled so the fitting can show what they buy
  (reported per layer as "variant"): `fuse_requant=True` merges each requant into the window layer feeding
  it (no accumulator stream, no separate process); `narrow_partial_sums=True` sizes every level of the
  SAD adder tree by its own bound (the template types a filter's per-cycle partial sum by its bound,
  psum_t, and adds it once per cycle into the accumulator: modelled by default);
  `bram_weights` (layer names) binds those layers' shallow weight memories to BRAM instead of LUT ROM.
* processes run concurrently: the interval is the slowest process; the latency is the longest
  start-to-end path through the graph at the clock.
Resources: lanes x the yosys-calibrated element costs (calibration.PECost) + memories + line buffers +
stream FIFOs + per-process control (calibration.ASSUMPTIONS), plus the PYNQ platform (DMA).
"""

from __future__ import annotations

import math

import numpy as np

from flow.boards import Board
from flow.qnet import QNet, bits_for
from flow.report.calibration import ASSUMPTIONS, FAMILY_OF_BOARD, PECost, assumption, bram18_for, uses_dsp
from flow.report.opcount import csd_nonzero_digits

RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP")
TIGHT_PCT = 85          # utilisation above which a "fit" is flagged as doubtful for place and route
SOURCE = "estimate"


# ---- small helpers ---------------------------------------------------------------------------------

def _zero():
    return {"LUT": 0.0, "FF": 0.0, "BRAM_18K": 0.0, "DSP": 0.0, "CARRY": 0.0}


def _add_into(total: dict, part: dict, times: float = 1.0) -> dict:
    for k in total:
        total[k] += part.get(k, 0.0) * times
    return total


def _bits_of(a) -> int:
    a = np.asarray(a)
    return bits_for(int(a.min()), int(a.max()))[0] if a.size else 1


def csd_terms_of(op, shift_add_all: bool = False) -> int:
    """csd_terms the backend gives an op: max CSD digits of its constants when shift-add is requested."""
    if not (op.attrs.get("apot_terms") or op.attrs.get("shift_add") or shift_add_all):
        return 0
    arr = {"conv2d": "weight", "dense": "weight", "requant": "mult", "adder2d": "group_in_mult"}.get(op.kind)
    if arr is None or arr not in op.arrays or np.asarray(op.arrays[arr]).size == 0:
        return 0
    return max(1, int(csd_nonzero_digits(op.arrays[arr]).max()))


def sad_terms_per_cycle(n_terms: int, n_filt: int, reuse: int) -> int:
    """Most |a - w| terms one filter receives in one cycle of the SadReuse schedule (term idx = k*F + f
    runs in cycle idx % RF): the per-cycle partial sum of a filter adds this many terms."""
    idx = np.arange(int(n_terms), dtype=np.int64)
    pairs = (idx % max(1, int(reuse))) * int(n_filt) + idx % int(n_filt)
    return int(np.bincount(pairs).max()) if idx.size else 1


def sad_slots(n_filt: int, reuse: int, block: int) -> int:
    """Filters one SAD cycle touches (lanes b = j mod this share filter j's partial sum)."""
    return max(1, min(int(block), int(n_filt) // math.gcd(int(n_filt), max(1, int(reuse)))))


def memory(depth: int, width: int, lut_max_depth: int) -> dict:
    """A depth x width ROM: LUT6 ROMs (64 words x 1 bit each) when shallow, else BRAM18K."""
    if depth <= 0 or width <= 0:
        return _zero()
    if depth <= lut_max_depth:
        return {**_zero(), "LUT": float(width * math.ceil(depth / 64))}
    return {**_zero(), "BRAM_18K": float(bram18_for(depth, width))}


def lutram(depth: int, width: int, lut_max_depth: int) -> dict:
    """A simple-dual-port RAM with up to 3 read ports: RAM32M (32 x 6 bits in 4 LUTs) or RAM64M
    (64 x 3 bits in 4 LUTs) when shallow, else BRAM18K."""
    if depth <= 0 or width <= 0:
        return _zero()
    if depth <= 32:
        return {**_zero(), "LUT": 4.0 * math.ceil(width / 6)}
    if depth <= lut_max_depth:
        return {**_zero(), "LUT": 4.0 * math.ceil(width / 3) * math.ceil(depth / 64)}
    return {**_zero(), "BRAM_18K": float(bram18_for(depth, width))}


def fifo(depth: int, width: int) -> dict:
    ctl = {**_zero(), "LUT": assumption("fifo_ctrl_lut"), "FF": assumption("fifo_ctrl_ff")}
    if depth <= assumption("fifo_srl_max_depth"):
        return _add_into(ctl, {"LUT": width * math.ceil(max(depth, 1) / 32), "FF": width if depth <= 2 else 0})
    return _add_into(ctl, {"BRAM_18K": bram18_for(depth, width)})


# ---- stream FIFO depths (the backend's writer sizes its FIFOs with the same functions) ---------------
# A chain of processes runs with depth-2 FIFOs; where two branches of a fork meet again (a residual
# join) the faster branch must buffer what the slower one holds back, or the fork blocks and the
# DATAFLOW region deadlocks. Per join, from its fork (the nearest stream all its inputs descend from):
# need[q] = fork tokens delivered before token q of a stream can exist (window layers from their raster
# walk of the padded input, element-wise nodes 1:1, reductions after their last input). A join stuck on
# token q has seen fewer than T(q) = max_i need_i[q] fork tokens; input i then holds at most
# #{q' : need_i[q'] <= T(q) - 1} - q tokens: its depth is the largest such backlog + FIFO_JOIN_MARGIN.

FIFO_MIN_DEPTH = 2
FIFO_JOIN_MARGIN = 2          # tokens in flight inside the producer / consumer pipelines


def window_reads_at_outputs(a: dict) -> np.ndarray:
    """Input pixels the line-buffer walk (window_stream) has read when each output pixel is emitted."""
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


def _need_of_outputs(node: dict, need_in: list) -> np.ndarray:
    n = int(node["tokens"])
    if node.get("window"):
        reads = window_reads_at_outputs(node["window"])
        src = need_in[0]
        return np.where(reads > 0, src[np.clip(reads - 1, 0, len(src) - 1)], 0)
    if all(len(x) == n for x in need_in):          # element-wise: requant, residual join, clone, dense
        return np.max(np.stack(need_in), axis=0)
    last = max(int(x[-1]) for x in need_in)        # reduction (pooling) or unknown: after its whole input
    return np.full(n, last, dtype=np.int64)


def join_fifo_depths(nodes: list, stream_tokens: dict) -> dict:
    """{(join node name, input stream): FIFO depth} for every multi-input node of a streaming graph.
    nodes: topological order of {"name", "inputs", "outputs", "tokens" (per output), "window" (the
    window_reads_at_outputs geometry, window layers only)}; stream_tokens: {stream: tokens per image}.
    A join that cannot be analysed gets a whole tensor."""
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
            need = {fork: np.arange(1, int(stream_tokens[fork]) + 1, dtype=np.int64)}
            for node in nodes[producer.get(fork, -1) + 1:k]:
                if node["inputs"] and all(i in need for i in node["inputs"]):
                    o_need = _need_of_outputs(node, [need[i] for i in node["inputs"]])
                    for o in node["outputs"]:
                        need[o] = o_need
            ins = join["inputs"]
            if all(i in need for i in ins) and len({len(need[i]) for i in ins}) == 1:
                t = np.max(np.stack([need[i] for i in ins]), axis=0)
                q = np.arange(len(t))
                backlog = {i: max(0, int(np.max(np.searchsorted(need[i], t - 1, side="right") - q))) for i in ins}
        for i in join["inputs"]:
            tokens = int(stream_tokens[i])
            depth = tokens if backlog is None else backlog[i] + FIFO_JOIN_MARGIN
            out[(join["name"], i)] = int(min(max(FIFO_MIN_DEPTH, depth), max(tokens, 1)))
    return out


# ---- per-op models ---------------------------------------------------------------------------------

class Estimator:
    def __init__(self, net: QNet, board: Board, clock_mhz: float, reuse=None, shift_add_all: bool = False,
                 fifo_depth: str | None = None, fuse_requant: bool = False, narrow_partial_sums: bool = False,
                 include_platform: bool = True, bram_weights=(), strict: bool = True, pe: PECost | None = None):
        self.net, self.board, self.clock_mhz = net, board, float(clock_mhz)
        self.pe = pe or PECost(FAMILY_OF_BOARD.get(board.family, "xc7"))
        self.shift_add_all = shift_add_all
        self.fuse_requant = fuse_requant
        self.narrow_partial_sums = narrow_partial_sums
        self.include_platform = include_platform
        self.bram_weights = set(bram_weights or ())
        self.strict = strict
        self.warnings: list = []
        self.fifo_depth = fifo_depth or assumption("fifo_depth")
        if self.fifo_depth not in ("hls4ml-default", "minimal"):
            raise ValueError(f"fifo_depth must be 'hls4ml-default' or 'minimal', got {self.fifo_depth}")
        self.reuse = self._resolve_reuse(reuse)

    # reuse factors: an int for every window/dense layer, or {op: RF} (key "default" for the others);
    # clamped to [1, n_terms]
    def _resolve_reuse(self, reuse) -> dict:
        out = {}
        names = {o.name for o in self.net.ops}
        if isinstance(reuse, dict):
            unknown = sorted(set(reuse) - names - {"default"})
            if unknown and self.strict:
                from flow.errors import AdderFlowError
                raise AdderFlowError(f"reuse factor given for unknown layer(s) {', '.join(unknown)}")
            if unknown:
                self.warnings.append(f"reuse factors for unknown layer(s) ignored: {', '.join(unknown)}")
        for o in self.net.ops:
            if o.kind == "requant":   # time-multiplexed only when named (as the backend's hls_config does)
                if isinstance(reuse, dict) and o.name in reuse:
                    out[o.name] = int(min(max(1, int(reuse[o.name])), self.net.tensors[o.output].shape[-1]))
                continue
            if o.kind not in ("conv2d", "adder2d", "dense"):
                continue
            r = reuse.get(o.name, reuse.get("default", 1)) if isinstance(reuse, dict) else (int(reuse) if reuse else 1)
            out[o.name] = int(min(max(1, int(r)), o.arrays["weight"].size))
        return out

    def _rom_lut_depth(self, op) -> int:
        """Deepest weight memory kept in LUTs; 0 when the layer's weights are bound to BRAM (proposal)."""
        return 0 if op.name in self.bram_weights else assumption("rom_lut_max_depth")

    def window_geometry(self, op) -> dict:
        h, w, cin = self.net.tensors[op.inputs[0]].shape
        ho, wo, f = self.net.tensors[op.output].shape
        k = op.arrays["weight"].shape[0]
        pt, pb, pl, pr = (list(op.attrs.get("pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
        return {"H": h, "W": w, "C": cin, "HP": h + pt + pb, "WP": w + pl + pr, "K": k,
                "stride": int(op.attrs.get("stride", 1)), "Ho": ho, "Wo": wo, "F": f, "n_terms": k * k * cin * f}

    def op_window(self, op) -> dict:
        g = self.window_geometry(op)
        rf = self.reuse[op.name]
        lanes = math.ceil(g["n_terms"] / rf)
        a_bits = self.net.tensors[op.inputs[0]].bits
        w = op.arrays["weight"]
        w_bits = _bits_of(w)
        acc_bits = self.net.tensors[op.output].bits
        adder = op.kind == "adder2d"
        terms_per_acc = max(1, math.ceil(lanes / g["F"]))
        tree = math.ceil(math.log2(terms_per_acc + 1))
        # one flattened II=1 loop: HP*WP position steps + RF PE steps per output, its depth paid once
        depth = assumption("pe_call_cycles") + tree + math.ceil(g["K"] / 2)
        per_out = rf
        pixels_in = g["HP"] * g["WP"]
        pixels_out = g["Ho"] * g["Wo"]
        cycles = pixels_in * assumption("pixel_cycles") + pixels_out * per_out + depth
        fill = ((g["K"] - 1) * g["WP"] + g["K"]) * assumption("pixel_cycles")
        res, parts = _zero(), {}
        csd = 0
        # datapath lanes
        if adder:
            # generated: each lane adds into its filter slot's per-cycle partial sum (psum_t, typed by its
            # bound), then one accumulator add per slot (filter touched) and cycle
            dmax = max((1 << a_bits) - 1 - int(w.min()), int(w.max()), 1)
            psum_bits = int(dmax * sad_terms_per_cycle(g["n_terms"], g["F"], rf)).bit_length()
            lane_acc = min(acc_bits, psum_bits)
            if self.narrow_partial_sums:   # variant: every tree level sized to its own bound
                t = terms_per_acc
                lane_acc = min(lane_acc, ((t - 1) * (max(a_bits, w_bits) + 1 + math.log2(t) / 2) + acc_bits) / t)
            lane = self.pe.sad_lane(max(a_bits, w_bits), lane_acc)
            parts["accumulators"] = _add_into(_zero(), self.pe.add(acc_bits), sad_slots(g["F"], rf, lanes))
            mult_impl = "none (SAD)"
        else:
            csd = csd_terms_of(op, self.shift_add_all)
            if csd:
                max_exp = int(np.abs(w).max()).bit_length()
                lane = _zero()
                for _ in range(csd):
                    _add_into(lane, self.pe.add(acc_bits))
                    if rf > 1:  # exponents read from the ROM per cycle: a barrel shifter per term
                        lane["LUT"] += self.pe.shifter(a_bits, acc_bits, max_exp)["LUT"]
                mult_impl = f"shift-add ({csd} CSD terms)"
            else:
                dsp = uses_dsp(a_bits, w_bits)
                lane = self.pe.mac_lane(a_bits, w_bits, acc_bits, dsp)
                mult_impl = "DSP" if dsp else "LUT multiplier"
        parts["lanes"] = _add_into(_zero(), lane, lanes)
        # weights: one reshaped memory of depth RF, width lanes * w_bits (+ CSD exponent/sign tables)
        rom_width = lanes * w_bits + lanes * csd * (8 + 2)
        parts["weights"] = _zero() if rf == 1 else memory(rf, rom_width, self._rom_lut_depth(op))
        # line buffer lbuf[G][K][WP][C] partitioned on G, K, C: G*K*C memories of depth WP, width a_bits
        groups = len(op.arrays.get("group_in_mult", [0])) if adder else 1
        if g["K"] > 1:
            parts["line_buffer"] = _add_into(_zero(), lutram(g["WP"], a_bits, assumption("lutram_max_depth")),
                                             groups * g["K"] * g["C"])
        else:
            parts["line_buffer"] = {**_zero(), "FF": groups * g["C"] * a_bits}
        parts["line_buffer"]["FF"] += groups * g["K"] * g["K"] * g["C"] * a_bits     # window registers
        # per-group input rescale (adder): C lanes per rescaled group
        rescale = _zero()
        n_mult = 0
        if adder:
            gm = np.asarray(op.arrays.get("group_in_mult", np.zeros(1)))
            active = int(np.count_nonzero(gm))
            if active:
                m_bits = _bits_of(gm)
                gcsd = csd_terms_of(op, self.shift_add_all)
                prod_bits = a_bits + m_bits
                if gcsd:
                    one = _add_into(_zero(), self.pe.add(prod_bits), gcsd)
                else:
                    one = self.pe.const_mul(a_bits, m_bits, uses_dsp(a_bits, m_bits))
                    n_mult = active * g["C"]
                _add_into(one, self.pe.add(prod_bits))                   # rounding add
                one["LUT"] += a_bits + 2                                 # clip to [0, 2^b - 1]
                _add_into(rescale, one, active * g["C"])
        parts["input_rescale"] = rescale
        parts["control"] = {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}
        for p in parts.values():
            _add_into(res, p)
        if not adder and not csd:
            n_mult += lanes
        return {"cycles": cycles, "first_out": fill + per_out + depth, "tail": per_out + depth, "rf": rf,
                "lanes": lanes,
                "pixels_in": pixels_in, "pixels_out": pixels_out, "cycles_per_output": per_out,
                "mult_impl": mult_impl, "multipliers": n_mult, "csd_terms": csd,
                "weights_in": ("constants in logic" if rf == 1 else
                               "LUT ROM" if parts["weights"]["BRAM_18K"] == 0 else "BRAM"),
                "resources": res, "parts": parts}

    def op_dense(self, op) -> dict:
        cin, f = op.arrays["weight"].shape
        rf = self.reuse[op.name]
        lanes = math.ceil(cin * f / rf)
        a_bits = self.net.tensors[op.inputs[0]].bits
        w = op.arrays["weight"]
        w_bits = _bits_of(w)
        acc_bits = self.net.tensors[op.output].bits
        csd = csd_terms_of(op, self.shift_add_all)
        parts = {}
        lane_mults = lanes
        if csd:
            max_exp = int(np.abs(w).max()).bit_length()
            lane = _zero()
            for _ in range(csd):
                _add_into(lane, self.pe.add(acc_bits))
                if rf > 1:
                    lane["LUT"] += self.pe.shifter(a_bits, acc_bits, max_exp)["LUT"]
            impl, n_mult = f"shift-add ({csd} CSD terms)", 0
        else:
            dsp = uses_dsp(a_bits, w_bits)
            lane = self.pe.mac_lane(a_bits, w_bits, acc_bits, dsp)
            impl, n_mult = ("DSP" if dsp else "LUT multiplier"), lanes
            if rf == 1:   # constant weights: 0 / +-2^k products are folded into shifts by HLS
                trivial = int(np.count_nonzero(csd_nonzero_digits(w) <= 1))
                n_mult = lanes - trivial
                parts["trivial_products"] = _add_into(_zero(), self.pe.add(acc_bits), trivial)
                lane_mults = n_mult
        parts["lanes"] = _add_into(_zero(), lane, lanes if csd or rf != 1 else lane_mults)
        parts["weights"] = _zero() if rf == 1 else memory(rf, lanes * w_bits + lanes * csd * 10,
                                                          self._rom_lut_depth(op))
        parts["control"] = {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}
        res = _zero()
        for p in parts.values():
            _add_into(res, p)
        per_out = rf + assumption("pe_call_cycles") + math.ceil(math.log2(max(1, lanes // f) + 1))
        return {"cycles": per_out, "first_out": per_out, "tail": per_out, "rf": rf, "lanes": lanes,
                "pixels_in": 1, "pixels_out": 1, "cycles_per_output": per_out, "mult_impl": impl,
                "multipliers": n_mult, "csd_terms": csd,
                "weights_in": "constants in logic" if rf == 1 else (
                    "LUT ROM" if parts["weights"]["BRAM_18K"] == 0 else "BRAM"),
                "resources": res, "parts": parts}

    def op_requant(self, op) -> dict:
        out = self.net.tensors[op.output]
        c = out.shape[-1]
        pixels = int(np.prod(out.shape[:-1])) if len(out.shape) > 1 else 1
        r = self.reuse.get(op.name, 1)          # > 1: channels time-multiplexed (see module doc)
        lanes = math.ceil(c / r)
        mult = np.asarray(op.arrays["mult"])
        m_bits = _bits_of(mult)
        shift = int(op.attrs.get("shift", 0))
        in_bits = [self.net.tensors[t].bits for t in op.inputs]
        sum_bits = max(max(in_bits) + m_bits, _bits_of(op.arrays["bias"])) + len(op.inputs)
        csd = csd_terms_of(op, self.shift_add_all)
        max_exp = int(np.abs(mult).max()).bit_length()
        lane, n_mult, dsp_any = _zero(), 0, False
        for b in in_bits:
            if csd:   # constant exponents (channel loop unrolled): shifts are wiring, one add per term
                _add_into(lane, self.pe.add(sum_bits), csd)
                if r > 1:   # exponents change per cycle: a barrel shifter per term
                    lane["LUT"] += csd * self.pe.shifter(b, sum_bits, max_exp)["LUT"]
            elif int(csd_nonzero_digits(mult).max()) <= 1:   # 0 / +-2^k: HLS folds into a shift
                _add_into(lane, self.pe.add(sum_bits))
            else:
                dsp = uses_dsp(b, m_bits)
                dsp_any |= dsp
                _add_into(lane, self.pe.const_mul(b, m_bits, dsp))
                _add_into(lane, self.pe.add(sum_bits))
                n_mult += 1
        if shift > 0 or np.any(np.asarray(op.arrays["bias"]) != 0):
            _add_into(lane, self.pe.add(sum_bits))                   # bias (+ rounding constant)
        lane["LUT"] += max(1, sum_bits - shift) + out.bits           # clip compare + select
        lane["FF"] += out.bits
        parts = {"lanes": _add_into(_zero(), lane, lanes),
                 "control": {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}}
        if r > 1:   # per-channel constants read each cycle + output assembly register
            parts["constants"] = memory(r, lanes * (m_bits * len(in_bits) + _bits_of(op.arrays["bias"])),
                                        assumption("rom_lut_max_depth"))
            parts["constants"]["FF"] += c * out.bits
        fused = self.fuse_requant and self._fusable(op)
        if fused:
            parts["control"] = _zero()
        res = _zero()
        for p in parts.values():
            _add_into(res, p)
        depth = assumption("requant_depth") + csd
        impl = f"shift-add ({csd} CSD terms)" if csd else ("DSP" if dsp_any else "LUT multiplier")
        return {"cycles": pixels * r + depth, "first_out": depth + r, "tail": depth + r, "rf": r, "lanes": lanes,
                "pixels_in": pixels, "pixels_out": pixels, "cycles_per_output": r, "mult_impl": impl,
                "multipliers": n_mult * lanes, "csd_terms": csd,
                "weights_in": "constants in logic" if r == 1 else "constant ROM",
                "variant": "fused into producer" if fused else "as generated",
                "resources": res, "parts": parts}

    def _fusable(self, op) -> bool:
        """A requant whose first input comes straight from a window layer that feeds nothing else."""
        prod = self.net.producer(op.inputs[0])
        return (prod is not None and prod.kind in ("conv2d", "adder2d")
                and len(self.net.consumers(op.inputs[0])) == 1)

    def op_pool(self, op) -> dict:
        h, w, c = self.net.tensors[op.inputs[0]].shape
        acc_bits = self.net.tensors[op.output].bits
        parts = {"lanes": _add_into(_zero(), self.pe.add(acc_bits), c),
                 "control": {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}}
        res = _add_into(_add_into(_zero(), parts["lanes"]), parts["control"])
        return {"cycles": h * w + 2, "first_out": h * w + 2, "tail": 2, "rf": 1, "lanes": c, "pixels_in": h * w,
                "pixels_out": 1, "cycles_per_output": h * w, "mult_impl": "none", "multipliers": 0, "csd_terms": 0,
                "weights_in": "-", "resources": res, "parts": parts}

    def op_model(self, op) -> dict:
        if op.kind in ("conv2d", "adder2d"):
            return self.op_window(op)
        if op.kind == "dense":
            return self.op_dense(op)
        if op.kind == "requant":
            return self.op_requant(op)
        if op.kind == "global_sum_pool":
            return self.op_pool(op)
        raise ValueError(f"op {op.name}: unknown kind {op.kind}")

    # ---- the whole dataflow -------------------------------------------------------------------
    def run(self) -> dict:
        net = self.net
        layers, start, end = [], {net.input: 0.0}, {net.input: 0.0}
        first_ready = {net.input: 0.0}
        for op in net.ops:
            m = self.op_model(op)
            # a process starts when all its inputs have produced their first element; it ends no
            # earlier than its own cycle count after starting, nor earlier than its last input + tail
            s = max(first_ready[t] for t in op.inputs)
            if op.kind == "dense":       # needs the whole pooled vector
                s = max(end[t] for t in op.inputs)
            e = max(s + m["cycles"], max(end[t] for t in op.inputs) + m["tail"])
            start[op.output], end[op.output] = s, e
            first_ready[op.output] = s + m["first_out"]
            layers.append({"name": op.name, "kind": op.kind, "output_shape": list(net.tensors[op.output].shape),
                           "bits": net.tensors[op.output].bits, **m, "start": s, "end": e})
        streams = self.streams(layers)
        total = _zero()
        for L in layers:
            _add_into(total, L["resources"])
        fifo_total = _zero()
        for s in streams:
            _add_into(fifo_total, s["resources"])
        platform = {**_zero(), "LUT": assumption("platform_lut"), "FF": assumption("platform_ff"),
                    "BRAM_18K": assumption("platform_bram_18k")} if self.include_platform else _zero()
        grand = _add_into(_add_into(_add_into(_zero(), total), fifo_total), platform)
        interval = max(L["cycles"] for L in layers)
        bottleneck = max(layers, key=lambda L: L["cycles"])["name"]
        latency = end[net.output]
        hz = self.clock_mhz * 1e6
        for L in layers:
            L["resources"] = _rounded(L["resources"])
            L["parts"] = {k: _rounded(v) for k, v in L["parts"].items()}
        return {
            "source": SOURCE,
            "latency": {"source": SOURCE, "cycles": int(math.ceil(latency)), "interval_cycles": int(interval),
                        "latency_us": latency / hz * 1e6, "images_per_s": hz / interval,
                        "bottleneck": bottleneck, "clock_mhz": self.clock_mhz},
            "resources": {"source": SOURCE, **{k: int(math.ceil(grand[k])) for k in RESOURCES},
                          "CARRY4": int(math.ceil(grand["CARRY"])), "URAM": 0,
                          "breakdown": {"layers": _rounded(total), "stream_fifos": _rounded(fifo_total),
                                        "platform (AXI DMA, interconnect)": _rounded(platform)}},
            "per_layer": layers, "streams": streams,
            "assumptions": {"fifo_depth": self.fifo_depth, "shift_add_all": self.shift_add_all,
                            "fuse_requant": self.fuse_requant, "narrow_partial_sums": self.narrow_partial_sums,
                            "include_platform": self.include_platform, "bram_weights": sorted(self.bram_weights),
                            "requant_reuse": {k: v for k, v in self.reuse.items() if net.op(k).kind == "requant"}},
        }

    def stream_graph(self) -> tuple:
        """The QNet as the streaming graph join_fifo_depths takes (what the backend generates)."""
        nodes, tokens = [], {}
        for t, spec in self.net.tensors.items():
            tokens[t] = int(np.prod(spec.shape[:-1])) if len(spec.shape) > 1 else 1
        for op in self.net.ops:
            node = {"name": op.name, "inputs": list(op.inputs), "outputs": [op.output], "tokens": tokens[op.output]}
            if op.kind in ("conv2d", "adder2d"):
                g = self.window_geometry(op)
                pt, pb, pl, pr = (list(op.attrs.get("pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
                node["window"] = {"filt_height": g["K"], "filt_width": g["K"], "stride": g["stride"],
                                  "in_height": g["H"], "in_width": g["W"], "pad_top": pt, "pad_bottom": pb,
                                  "pad_left": pl, "pad_right": pr, "out_height": g["Ho"], "out_width": g["Wo"]}
            nodes.append(node)
        return nodes, tokens

    def streams(self, layers) -> list:
        """One FIFO per tensor edge (width C * bits); depth per the fifo_depth policy."""
        net, out = self.net, []
        joins = join_fifo_depths(*self.stream_graph()) if self.fifo_depth == "minimal" else {}
        for t, spec in net.tensors.items():
            consumers = net.consumers(t)
            if not consumers:
                continue
            width = (spec.shape[-1] if len(spec.shape) else 1) * spec.bits
            pixels = int(np.prod(spec.shape[:-1])) if len(spec.shape) > 1 else 1
            for c in consumers:
                if self.fuse_requant and c.kind == "requant" and c.inputs[0] == t and self._fusable(c):
                    continue
                if self.fifo_depth == "hls4ml-default":
                    depth = pixels
                else:
                    depth = joins.get((c.name, t), min(FIFO_MIN_DEPTH, pixels))
                out.append({"tensor": t, "to": c.name, "depth": int(depth), "width": int(width),
                            "resources": _rounded(fifo(depth, width))})
        return out


def _rounded(d: dict) -> dict:
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in d.items()}


def estimate(net: QNet, board: Board, clock_mhz: float, reuse=None, **kw) -> dict:
    """The analytical estimate (see module docstring); every figure in it is labelled source=estimate."""
    est = Estimator(net, board, clock_mhz, reuse, **kw)
    out = est.run()
    out["calibration"] = {"source": SOURCE, **est.pe.describe(),
                          "assumptions": {k: {"value": v, "why": why} for k, (v, why) in ASSUMPTIONS.items()}}
    out["reuse"] = dict(est.reuse)
    out["warnings"] = est.warnings
    return out


def _res(layer: dict, k: str) -> float:
    """A layer's resource k, from an estimator layer ({'resources': {...}}) or a report row (flat)."""
    return (layer.get("resources") or layer).get(k, 0) or 0


def board_fit(resources: dict, board: Board, per_layer: list | None = None) -> dict:
    """Capacity, utilisation %, fits or not, and which layers to re-tune when it does not fit."""
    cap = board.capacity
    rows, fits = {}, True
    for k in RESOURCES:
        used = resources.get(k, 0) or 0
        avail = cap.get(k, 0)
        pct = 100.0 * used / avail if avail else (0.0 if not used else float("inf"))
        ok = used <= avail
        fits &= ok
        rows[k] = {"used": used, "available": avail, "utilisation_pct": round(pct, 1), "fits": ok}
    out = {"board": board.name, "part": board.part, "fits": fits, "resources": rows}
    tight = [k for k in RESOURCES if rows[k]["fits"] and rows[k]["utilisation_pct"] > TIGHT_PCT]
    if tight:
        out["tight"] = tight
        out["tight_note"] = (f"{', '.join(tight)} above {TIGHT_PCT}% of the device: placement and routing may not "
                             f"close timing; treat as not fitting until Vivado implements it")
    over = [k for k in RESOURCES if not rows[k]["fits"]]
    if per_layer:
        worst = over or [max(RESOURCES, key=lambda k: rows[k]["utilisation_pct"])]
        hints = []
        for k in worst:
            top = sorted(per_layer, key=lambda L: -_res(L, k))[:3]
            hints.append({"resource": k, "layers": [{"name": L["name"], k: _res(L, k),
                                                     "reuse_factor": L.get("rf", L.get("reuse_factor", 1))}
                                                    for L in top if _res(L, k) > 0]})
        out["retune"] = hints
        if over:
            names = ", ".join(dict.fromkeys(h["layers"][0]["name"] for h in hints if h["layers"]))
            out["advice"] = (f"over capacity in {', '.join(over)}: raise the reuse factor of {names} "
                             f"(or use shift-add constants / a larger board)")
    return out
