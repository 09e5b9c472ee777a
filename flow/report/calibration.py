"""Per-operation costs the estimator uses: the yosys PE table (flow/report/data/pe_cost.csv, written by
bench/pe_cost/pe_cost.py) plus named assumptions.

Every number that is not read from the yosys table is listed in ASSUMPTIONS with the reason for its
value, and both go into report.json["calibration"], so a reader can see what an estimate rests on.
"""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError

# package data (pyproject [tool.setuptools.package-data]): an installed wheel has no bench/ to read
PE_COST_CSV = Path(__file__).resolve().parent / "data" / "pe_cost.csv"
# LUT scale per estimator term, fitted to yosys synth_xilinx of the register-transfer design by
# bench/rtl_vs_estimate.py --recalibrate (the command is in each row). No file = every scale 1.
LUT_CALIBRATION_CSV = Path(__file__).resolve().parent / "data" / "lut_calibration.csv"
LUT_CALIBRATION_FIELDS = ("family", "term", "scale", "fitted_on_layers", "tool", "made_by")
# term = "<class>.<part>": the class of the op a part belongs to (per-op models in estimate.py name their
# parts: lanes, adder_tree, weights, line_buffer, ...), "streams.fifo" for the stream FIFOs
TERM_CLASS = {"adder2d": "adder", "conv2d": "conv", "requant": "requant", "global_sum_pool": "pool",
              "dense": "dense"}


def lut_term(kind: str, part: str) -> str:
    return f"{TERM_CLASS[kind]}.{part}"


@functools.lru_cache(maxsize=4)
def _load_lut_calibration(path: str) -> tuple:
    p = Path(path)
    if not p.is_file():
        return ()
    with open(p) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        try:
            r["scale"] = float(r["scale"])
        except (KeyError, ValueError):
            raise AdderFlowError(f"{p}: row {r.get('term')!r} has no numeric scale") from None
    return tuple(rows)


def lut_scales(family: str, path: Path = LUT_CALIBRATION_CSV) -> dict:
    """{term: LUT scale} for a family (empty when there is no calibration table or no row for it)."""
    return {r["term"]: r["scale"] for r in _load_lut_calibration(str(path)) if r["family"] == family}
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]   # so describe() names it flow/report/data/pe_cost.csv
FAMILY_OF_BOARD = {"zynq7": "xc7", "zynqmp": "xcup"}

# name -> (value, why). Cycles are clock cycles; LUT/FF per block.
# Pipeline depths and cycle counts are not assumptions of the estimator: they are the generated design's
# (flow.hls.schedule.PIPELINE_DEPTH, window_steps, requant_steps).
ASSUMPTIONS = {
    "control_lut": (90, "FSM, loop counters and stream handshakes per dataflow process; the stock hls4ml "
                        "relu process of the csynth fixture is 256 LUT / 84 FF including 5 16-bit compares"),
    "control_ff": (80, "as control_lut"),
    "fifo_ctrl_lut": (12, "per stream FIFO: read/write pointers, full/empty"),
    "fifo_ctrl_ff": (8, "as fifo_ctrl_lut"),
    "fifo_srl_max_depth": (32, "stream FIFOs up to this depth are SRL32 shift registers, deeper ones BRAM"),
    "rom_lut_max_depth": (64, "weight ROM banks (depth = reuse factor) up to this depth are LUT ROMs "
                              "(one LUT6 per bit per 64 words), deeper ones BRAM18K"),
    "dsp_min_bits": (10, "a plain multiplication is bound to a DSP only when an operand has >= 10 bits; "
                         "narrower products go to LUTs (hls4ml/Vivado HLS practice for < 10-bit types)"),
    "dsp_a_bits": (25, "DSP48E1/E2 multiplier port A width (25x18; wider products take more DSPs)"),
    "dsp_b_bits": (18, "DSP48 multiplier port B width"),
    "platform_lut": (2500, "PYNQ overlay around the accelerator: AXI DMA (simple mode) + AXI interconnect + "
                           "width converters; typical Vivado figure, not measured here"),
    "platform_ff": (3500, "as platform_lut"),
    "platform_bram_18k": (4, "AXI DMA data FIFOs"),
    "fifo_depth": ("minimal", "'minimal' = what the backend writes (flow.hls.stream_depths): depth 2, residual-join "
                              "inputs sized to the branch lag; 'hls4ml-default' = pixels of the tensor (hls4ml "
                              "io_stream default, the backend's StreamDepths='hls4ml-default')"),
    "vivado_vs_yosys": ("not applied", "yosys LUT counts are higher than Vivado's for the same logic (it maps "
                                       "inverters/carry logic less tightly); no correction factor is applied"),
}


def assumption(name: str):
    return ASSUMPTIONS[name][0]


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple:
    p = Path(path)
    if not p.is_file():
        raise AdderFlowError(f"{p}: PE cost table missing (run bench/pe_cost/pe_cost.py with yosys installed)")
    with open(p) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("bits", "acc_bits", "dsp_inference", "LUT", "CARRY", "FF", "DSP"):
            r[k] = int(r[k])
    return tuple(rows)


class PECost:
    """Costs of the datapath elements for one FPGA family, read from the yosys table."""

    def __init__(self, family: str, path: Path = PE_COST_CSV):
        self.family = family
        self.path = Path(path)
        self.rows = [r for r in _load(str(self.path)) if r["family"] == family]
        if not self.rows:
            raise AdderFlowError(f"{self.path}: no rows for FPGA family '{family}'")
        self.yosys = self.rows[0]["yosys"]

    def _series(self, element: str, dsp: int):
        rs = sorted((r for r in self.rows if r["element"] == element and r["dsp_inference"] == dsp),
                    key=lambda r: r["bits"])
        return rs

    def _at(self, element: str, bits: float, dsp: int) -> dict:
        """Linear interpolation (and extrapolation from the last two points) in the bit width."""
        rs = self._series(element, dsp)
        xs = np.array([r["bits"] for r in rs], dtype=float)
        out = {}
        for k in ("LUT", "CARRY", "FF", "DSP", "acc_bits"):
            ys = np.array([r[k] for r in rs], dtype=float)
            if bits <= xs[0]:
                v = ys[0] if len(xs) == 1 else ys[0] + (bits - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
            elif bits >= xs[-1]:
                v = ys[-1] + (bits - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            else:
                v = float(np.interp(bits, xs, ys))
            out[k] = max(0.0, v)
        return out

    def sad_lane(self, bits: int, acc_bits: int) -> dict:
        """|a - w| + accumulate at `bits` operands, re-based to the real accumulator width (1 LUT+FF/bit)."""
        c = self._at("sad_acc", bits, 1)
        d = acc_bits - c["acc_bits"]
        return {"LUT": max(0.0, c["LUT"] + d), "FF": max(0.0, c["FF"] + d), "CARRY": max(0.0, c["CARRY"] + d / 4),
                "DSP": 0.0}

    def mac_lane(self, a_bits: int, w_bits: int, acc_bits: int, dsp: bool) -> dict:
        """x*w + accumulate; an a x w product priced at the square table point sqrt(a*w) (LUT area ~ a*w)."""
        if dsp:   # product in the DSP; the accumulation/adder tree stays in fabric at accumulator width
            add = self.add(acc_bits)
            return {"LUT": add["LUT"], "FF": add["FF"] + a_bits + w_bits, "CARRY": add["CARRY"],
                    "DSP": float(dsp_count(a_bits, w_bits))}
        b = math.sqrt(a_bits * w_bits)
        c = self._at("mac_acc", b, 0)
        d = acc_bits - c["acc_bits"]
        return {"LUT": max(0.0, c["LUT"] + d), "FF": max(0.0, c["FF"] + d), "CARRY": max(0.0, c["CARRY"] + d / 4),
                "DSP": 0.0}

    def add(self, width: int) -> dict:
        c = self._at("add", width, 0)
        return {"LUT": c["LUT"], "FF": c["FF"], "CARRY": c["CARRY"], "DSP": 0.0}

    def const_mul(self, x_bits: int, m_bits: int, dsp: bool) -> dict:
        """x times a fixed constant of m_bits (table: 12-bit constant; LUT area scaled by m_bits/12)."""
        c = self._at("mul_const", x_bits, 1 if dsp else 0)
        if dsp:
            return {"LUT": c["LUT"], "FF": c["FF"], "CARRY": c["CARRY"], "DSP": float(dsp_count(x_bits, m_bits))}
        s = m_bits / 12.0
        return {"LUT": c["LUT"] * s, "FF": c["FF"], "CARRY": c["CARRY"] * s, "DSP": 0.0}

    def shifter(self, in_bits: int, out_bits: int, max_shift: int) -> dict:
        """Run-time left shift of an in_bits value by 0..max_shift, kept to out_bits (table: 12-bit value,
        shift 0..31; scaled by log2 of the candidates each output bit selects from)."""
        if max_shift <= 0:
            return {"LUT": 0.0, "FF": 0.0, "CARRY": 0.0, "DSP": 0.0}
        c = self._at("shift", out_bits, 0)
        scale = math.log2(max(2, min(in_bits, max_shift + 1))) / math.log2(12)
        return {"LUT": c["LUT"] * scale, "FF": 0.0, "CARRY": 0.0, "DSP": 0.0}

    def describe(self) -> dict:
        rows = [r for r in _load_lut_calibration(str(LUT_CALIBRATION_CSV)) if r["family"] == self.family]
        lut = {"table": str(LUT_CALIBRATION_CSV.relative_to(_PACKAGE_PARENT)) if LUT_CALIBRATION_CSV.is_relative_to(
            _PACKAGE_PARENT) else str(LUT_CALIBRATION_CSV), "terms": {r["term"]: r["scale"] for r in rows},
            "tool": rows[0]["tool"] if rows else None, "made_by": rows[0]["made_by"] if rows else None}
        return {"pe_table": str(self.path.relative_to(_PACKAGE_PARENT)) if self.path.is_relative_to(
            _PACKAGE_PARENT) else str(self.path), "family": self.family, "tool": self.yosys,
            "elements": sorted({r["element"] for r in self.rows}), "lut_calibration": lut}


def dsp_count(a_bits: int, b_bits: int) -> int:
    """DSP48 slices for one a x b product (25x18 tiles)."""
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    return math.ceil(a / assumption("dsp_a_bits")) * math.ceil(b / assumption("dsp_b_bits"))


def uses_dsp(a_bits: int, b_bits: int) -> bool:
    return max(a_bits, b_bits) >= assumption("dsp_min_bits")


def bram18_for(depth: int, width: int) -> int:
    """BRAM18K primitives for a depth x width memory (18K aspect ratios 512x36 ... 16384x1)."""
    if depth <= 0 or width <= 0:
        return 0
    for max_depth, w in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)):
        if depth <= max_depth:
            return math.ceil(width / w)
    return math.ceil(depth / 16384) * width
