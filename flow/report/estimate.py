"""Analytical latency/resource model of the io_stream DATAFLOW design the AdderVitis backend generates
(hls_templates/nnet_adder_stream.h), used when no vendor report exists. Every figure is an estimate.

The design's numbers are not restated here: lanes, legal reuse factors, cycles per image, derived widths,
fused requants and FIFO depths come from flow/hls/schedule.py, the module the templates are built from.
What this module adds is the price of each piece:
* window layer: F * n_in/RF SAD (or MAC / CSD shift-add) lanes, the bound-typed adder tree and one
  accumulator per filter, an RF:1 operand selection per lane input, the weight ROM (RF words; LUT ROM when
  shallow, BRAM18K otherwise, constants in logic at RF = 1), hls4ml's line buffer ((KH-1) shift-register
  rows of the padded width per channel: SRL32) and window registers, the group input rescale, and the
  requant fused into it (C/R lanes, R <= RF).
* a requant that is not fused, global_sum_pool (one pixel per cycle), dense (RF cycles).
* stream FIFOs: fifo_depth='minimal' (what the backend writes) or 'hls4ml-default' (a whole tensor).
* `bram_weights` (layer names) binds those layers' shallow weight memories to BRAM instead of LUT ROM.
* every process loops over the images of a call, so the interval is the slowest process's cycles per
  image; the latency is the longest start-to-end path through the graph at the clock.
Resources: the yosys-calibrated element costs (calibration.PECost) + memories + line buffers + stream
FIFOs + per-process control (calibration.ASSUMPTIONS), plus the PYNQ platform (DMA).
"""

from __future__ import annotations

import math

import numpy as np

from flow.boards import Board
from flow.errors import AdderFlowError
from flow.hls import schedule
from flow.qnet import QNet, bits_for
from flow.report.calibration import (ASSUMPTIONS, FAMILY_OF_BOARD, PECost, assumption, bram18_for, lut_scales, lut_term,
                                     uses_dsp)
from flow.report.opcount import csd_nonzero_digits

RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP")
TUNABLE = schedule.TUNABLE_KINDS
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


def memory(depth: int, width: int, lut_max_depth: int) -> dict:
    """A depth x width ROM: LUT6 ROMs (64 words x 1 bit each) when shallow, else BRAM18K."""
    if depth <= 0 or width <= 0:
        return _zero()
    if depth <= lut_max_depth:
        return {**_zero(), "LUT": float(width * math.ceil(depth / 64))}
    return {**_zero(), "BRAM_18K": float(bram18_for(depth, width))}


def fifo(depth: int, width: int) -> dict:
    ctl = {**_zero(), "LUT": assumption("fifo_ctrl_lut"), "FF": assumption("fifo_ctrl_ff")}
    if depth <= assumption("fifo_srl_max_depth"):
        return _add_into(ctl, {"LUT": width * math.ceil(max(depth, 1) / 32), "FF": width if depth <= 2 else 0})
    return _add_into(ctl, {"BRAM_18K": bram18_for(depth, width)})


# ---- per-op models ---------------------------------------------------------------------------------

class Estimator:
    def __init__(self, net: QNet, board: Board, clock_mhz: float, reuse=None, shift_add_all: bool = False,
                 fifo_depth: str | None = None, fuse_requant: bool = True, include_platform: bool = True,
                 bram_weights=(), strict: bool = True, pe: PECost | None = None, lut_calibration: bool = True):
        self.net, self.board, self.clock_mhz = net, board, float(clock_mhz)
        self.pe = pe or PECost(FAMILY_OF_BOARD.get(board.family, "xc7"))
        # per-term LUT scales fitted to yosys (calibration.LUT_CALIBRATION_CSV); off = the raw model, which
        # is what bench/rtl_vs_estimate.py fits them on
        self.lut_scale = lut_scales(self.pe.family) if lut_calibration else {}
        self.shift_add_all = shift_add_all
        self.fuse_requant = fuse_requant
        self.include_platform = include_platform
        self.bram_weights = set(bram_weights or ())
        self.strict = strict
        self.warnings: list = []
        self.fifo_depth = fifo_depth or assumption("fifo_depth")
        if self.fifo_depth not in ("hls4ml-default", "minimal"):
            raise ValueError(f"fifo_depth must be 'hls4ml-default' or 'minimal', got {self.fifo_depth}")
        # {window op: the requant fused into it} (the backend's passes/fuse_requant.py rule)
        self.fused_requant = schedule.fusable_requants(net) if fuse_requant else {}
        self.fused_into = {rq.name: w for w, rq in self.fused_requant.items()}
        self.reuse = self._resolve_reuse(reuse)

    def _resolve_reuse(self, reuse) -> dict:
        """{window/dense/requant op: RF}: an int for every window/dense layer (per layer the largest legal
        value not above it), or {op: RF} (a "default" key for the others), each entry legal
        (schedule.check_reuse). A requant: 1 unless named; fused ones follow their window layer."""
        names = {o.name for o in self.net.ops}
        cfg = dict(reuse) if isinstance(reuse, dict) else {}
        default = int(cfg.pop("default", 1)) if isinstance(reuse, dict) else (int(reuse) if reuse else 1)
        unknown = sorted(set(cfg) - names)
        if unknown and self.strict:
            raise AdderFlowError(f"reuse factor given for unknown layer(s) {', '.join(unknown)}")
        if unknown:
            self.warnings.append(f"reuse factors for unknown layer(s) ignored: {', '.join(unknown)}")
        out = {}
        for o in self.net.ops:
            if o.kind == "requant":
                c = self.net.tensors[o.output].shape[-1]
                if o.name in cfg and o.name not in self.fused_into:
                    out[o.name] = schedule.check_reuse(o.name, c, int(cfg[o.name]), "requant reuse factor")
                continue
            if o.kind not in TUNABLE:
                continue
            n_in = schedule.inputs_per_output(o)
            if o.name in cfg:
                out[o.name] = schedule.check_reuse(o.name, n_in, int(cfg[o.name]))
            else:
                out[o.name] = max(v for v in schedule.legal_reuse_factors(n_in) if v <= max(1, default))
        return out

    def _rom_lut_depth(self, op) -> int:
        """Deepest weight memory kept in LUTs; 0 when the layer's weights are bound to BRAM (proposal)."""
        return 0 if op.name in self.bram_weights else assumption("rom_lut_max_depth")

    def op_window(self, op) -> dict:
        """The window layer as generated (flow.hls.schedule): hls4ml line buffer + shift-register window,
        F*M lanes (M = n_in/RF) each wired to a filter and, per cycle, a tap; a bound-typed adder tree per
        filter; the fused requant (when the QNet's next op is fusable) over R <= RF cycles."""
        g = schedule.WindowGeometry.from_qnet_op(self.net, op)
        rf = self.reuse[op.name]
        m = schedule.lanes_per_filter(g.n_in, rf)
        lanes = g.n_filt * m
        a_spec = self.net.tensors[op.inputs[0]]
        a_bits, w = a_spec.bits, op.arrays["weight"]
        w_bits = _bits_of(w)
        acc_bits = self.net.tensors[op.output].bits
        adder = op.kind == "adder2d"
        rq = self.fused_requant.get(op.name)
        r_rq = schedule.requant_reuse(g.n_filt, rf) if rq is not None else 0
        cycles = schedule.window_steps(g, rf, r_rq) + schedule.PIPELINE_DEPTH["window"]
        fill = (g.filt_height - 1) * g.wp + g.filt_width
        res, parts = _zero(), {}
        csd = 0
        if adder:
            widths = schedule.sad_widths(a_spec.lo, a_spec.hi, int(w.min()), int(w.max()), m)
            lane = self.pe.sad_lane(max(a_bits, w_bits), widths["term_bits"])
            parts["lanes"] = _add_into(_zero(), lane, lanes)
            # the tree's upper levels are wider than a lane's add: one LUT per extra bit per node
            tree = _zero()
            nodes, level = m, 0
            while nodes > 1:
                nodes = math.ceil(nodes / 2)
                level += 1
                tree["LUT"] += nodes * level * g.n_filt
            tree = _add_into(tree, self.pe.add(acc_bits), g.n_filt)       # one accumulator per filter
            parts["adder_tree"] = tree
            mult_impl = "none (SAD)"
        else:
            csd = csd_terms_of(op, self.shift_add_all)
            if csd:
                lane = _zero()
                max_exp = int(np.abs(w).max()).bit_length()
                for _ in range(csd):
                    _add_into(lane, self.pe.add(acc_bits))
                    if rf > 1:   # exponents read from the ROM per cycle: a barrel shifter per term
                        lane["LUT"] += self.pe.shifter(a_bits, acc_bits, max_exp)["LUT"]
                mult_impl = f"shift-add ({csd} CSD terms)"
            else:
                dsp = uses_dsp(a_bits, w_bits)
                lane = self.pe.mac_lane(a_bits, w_bits, acc_bits, dsp)
                mult_impl = "DSP" if dsp else "LUT multiplier"
            parts["lanes"] = _add_into(_zero(), lane, lanes)
        # lane operand: an RF:1 selection of the window registers per (group, lane-in-filter) (LUT6 = 4:1)
        groups = len(op.arrays.get("group_in_mult", [0])) if adder else 1
        parts["operand_mux"] = {**_zero(), "LUT": float(groups * m * a_bits * math.ceil((rf - 1) / 3))} \
            if rf > 1 else _zero()
        # weights: RF words of lanes * w_bits (+ term-major CSD tables), LUT ROM when shallow, else BRAM
        rom_width = (0 if (csd and not adder) else lanes * w_bits) + lanes * csd * (8 + 2)
        parts["weights"] = _zero() if rf == 1 else memory(rf, rom_width, self._rom_lut_depth(op))
        # hls4ml line buffer: (KH-1) ap_shift_reg rows of WP per channel and group (SRL32: 1 LUT/bit/32)
        rows = max(g.filt_height - 1, 0)
        lb = {**_zero(), "LUT": float(groups * rows * g.n_chan * a_bits * math.ceil(g.wp / 32))}
        lb["FF"] += groups * g.n_in * a_bits                                  # the KH x KW x C window
        parts["line_buffer"] = lb
        rescale, n_mult = _zero(), 0
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
                    n_mult = active * g.n_chan
                _add_into(one, self.pe.add(prod_bits))                   # rounding add
                one["LUT"] += a_bits + 2                                 # clip to [0, 2^b - 1]
                _add_into(rescale, one, active * g.n_chan)
        parts["input_rescale"] = rescale
        parts["control"] = {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}
        if not adder and not csd:
            n_mult += lanes
        variant = "as generated"
        if rq is not None:
            rq_model = self.op_requant(rq, fused_into=(op, rf))
            parts["fused_requant"] = rq_model["resources"]
            parts["fused_requant"]["FF"] += g.n_filt * acc_bits                 # latched accumulators
            n_mult += rq_model["multipliers"]
            variant = f"requant {rq.name} fused (R={r_rq})"
        for p in parts.values():
            _add_into(res, p)
        return {"cycles": cycles, "first_out": fill + rf + r_rq + schedule.PIPELINE_DEPTH["window"],
                "tail": rf + r_rq + schedule.PIPELINE_DEPTH["window"], "rf": rf, "lanes": lanes,
                "lanes_per_filter": m, "pixels_in": g.hp * g.wp, "pixels_out": g.out_pixels,
                "cycles_per_output": rf, "mult_impl": mult_impl, "multipliers": n_mult, "csd_terms": csd,
                "weights_in": ("constants in logic" if rf == 1 else
                               "LUT ROM" if parts["weights"]["BRAM_18K"] == 0 else "BRAM"),
                "variant": variant, "resources": res, "parts": parts}

    def op_dense(self, op) -> dict:
        cin, f = op.arrays["weight"].shape
        rf = self.reuse[op.name]
        lanes = f * schedule.lanes_per_filter(cin, rf)
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
        per_out = rf + schedule.PIPELINE_DEPTH["dense"]
        return {"cycles": per_out, "first_out": per_out, "tail": per_out, "rf": rf, "lanes": lanes,
                "pixels_in": 1, "pixels_out": 1, "cycles_per_output": per_out, "mult_impl": impl,
                "multipliers": n_mult, "csd_terms": csd,
                "weights_in": "constants in logic" if rf == 1 else (
                    "LUT ROM" if parts["weights"]["BRAM_18K"] == 0 else "BRAM"),
                "resources": res, "parts": parts}

    def op_requant(self, op, fused_into=None) -> dict:
        """BN + ReLU + requant (+ residual add): C/R lanes over R cycles per pixel (R divides C). Fused into
        its window layer (fused_into = (window op, its RF)): R = the largest divisor of C <= RF, no process
        of its own; priced inside the window layer (op_window calls this)."""
        out = self.net.tensors[op.output]
        c = out.shape[-1]
        pixels = int(np.prod(out.shape[:-1])) if len(out.shape) > 1 else 1
        if fused_into is None and op.name in self.fused_into:
            win = self.fused_into[op.name]
            return {"cycles": 0, "first_out": 0, "tail": 0, "rf": schedule.requant_reuse(c, self.reuse[win]),
                    "lanes": 0, "pixels_in": pixels, "pixels_out": pixels, "cycles_per_output": 0,
                    "mult_impl": "in its window layer", "multipliers": 0, "csd_terms": 0,
                    "weights_in": "-", "variant": f"fused into {win}", "resources": _zero(), "parts": {}}
        r = schedule.requant_reuse(c, fused_into[1]) if fused_into else self.reuse.get(op.name, 1)
        lanes = c // r
        mult = np.asarray(op.arrays["mult"])
        m_bits = _bits_of(mult)
        shift = int(op.attrs.get("shift", 0))
        in_specs = [self.net.tensors[t] for t in op.inputs]
        sum_bits = schedule.requant_sum_bits(op.arrays["bias"], mult, [(t.lo, t.hi) for t in in_specs], shift)
        csd = csd_terms_of(op, self.shift_add_all)
        max_exp = int(np.abs(mult).max()).bit_length()
        lane, n_mult, dsp_any = _zero(), 0, False
        for spec in in_specs:
            b = spec.bits
            if csd:   # constant exponents (R = 1): shifts are wiring, one add per term
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
        parts = {"lanes": _add_into(_zero(), lane, lanes)}
        if not fused_into:
            parts["control"] = {**_zero(), "LUT": assumption("control_lut"), "FF": assumption("control_ff")}
        if r > 1:   # per-channel constants read each cycle (word q of the reshaped tables), R:1 operand mux
            parts["constants"] = memory(r, lanes * (m_bits * len(in_specs) + _bits_of(op.arrays["bias"])
                                                    + csd * (8 + 2) * len(in_specs)), assumption("rom_lut_max_depth"))
            parts["constants"]["FF"] += c * out.bits                 # output pixel register
            parts["operand_mux"] = {**_zero(), "LUT": float(lanes * sum(t.bits for t in in_specs)
                                                            * math.ceil((r - 1) / 3))}
        res = _zero()
        for p in parts.values():
            _add_into(res, p)
        depth = schedule.PIPELINE_DEPTH["requant"] + csd
        impl = f"shift-add ({csd} CSD terms)" if csd else ("DSP" if dsp_any else "LUT multiplier")
        return {"cycles": schedule.requant_steps(pixels, r) + depth, "first_out": depth + r, "tail": depth + r,
                "rf": r, "lanes": lanes, "pixels_in": pixels, "pixels_out": pixels, "cycles_per_output": r,
                "mult_impl": impl, "multipliers": n_mult * lanes, "csd_terms": csd,
                "weights_in": "constants in logic" if r == 1 else "constant ROM", "variant": "as generated",
                "resources": res, "parts": parts}

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
            m = self.op_window(op)
        elif op.kind == "dense":
            m = self.op_dense(op)
        elif op.kind == "requant":
            m = self.op_requant(op)
        elif op.kind == "global_sum_pool":
            m = self.op_pool(op)
        else:
            raise ValueError(f"op {op.name}: unknown kind {op.kind}")
        return self._calibrated(op, m)

    def _calibrated(self, op, m: dict) -> dict:
        """Each part's LUTs times its term's yosys-fitted scale; the op's resources re-summed from its parts."""
        if not self.lut_scale or not m["parts"]:
            return m
        res = _zero()
        for name, p in m["parts"].items():
            p["LUT"] = p.get("LUT", 0.0) * self.lut_scale.get(lut_term(op.kind, name), 1.0)
            _add_into(res, p)
        m["resources"] = res
        return m

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
                            "fuse_requant": self.fuse_requant,
                            "include_platform": self.include_platform, "bram_weights": sorted(self.bram_weights),
                            "requant_reuse": {k: v for k, v in self.reuse.items() if net.op(k).kind == "requant"}},
        }

    def streams(self, layers) -> list:
        """One FIFO per stream of the generated design (width C * bits): depth FIFO_MIN_DEPTH, join inputs
        sized by schedule.join_fifo_depths ('minimal', what the backend writes) or a whole tensor per
        stream ('hls4ml-default'). A fused requant's accumulator stream does not exist."""
        nodes, tokens = schedule.qnet_stream_graph(self.net, self.fused_requant)
        joins = schedule.join_fifo_depths(nodes, tokens) if self.fifo_depth == "minimal" else {}
        out = []
        for node in nodes:
            for t in node["inputs"]:
                spec = self.net.tensors[t]
                width = (spec.shape[-1] if len(spec.shape) else 1) * spec.bits
                depth = tokens[t] if self.fifo_depth == "hls4ml-default" else joins.get(
                    (node["name"], t), schedule.FIFO_MIN_DEPTH)
                res = fifo(depth, width)
                res["LUT"] *= self.lut_scale.get("streams.fifo", 1.0)     # yosys-fitted, as the layer terms
                out.append({"tensor": t, "to": node["name"], "depth": int(depth), "width": int(width),
                            "resources": _rounded(res)})
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


def board_fit(resources: dict, board: Board, per_layer: list | None = None, lut_limit_pct: float = 100.0) -> dict:
    """Capacity, utilisation %, fits or not (LUT at most lut_limit_pct % of the device: TIGHT_PCT is the
    routable margin the defaults keep), and which layers to re-tune when it does not fit."""
    cap = board.capacity
    rows, fits = {}, True
    for k in RESOURCES:
        used = resources.get(k, 0) or 0
        avail = cap.get(k, 0)
        pct = 100.0 * used / avail if avail else (0.0 if not used else float("inf"))
        ok = used <= avail * (lut_limit_pct / 100.0 if k == "LUT" else 1.0)
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
