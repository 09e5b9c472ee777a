"""PYNQ boards AdderFlow targets: FPGA part, fabric capacity, processing system, default clock.

Capacities are the device data-sheet totals (AMD/Xilinx DS190 Zynq-7000, DS891 Zynq UltraScale+);
BRAM is counted in 18K halves as HLS reports do.
"""

from __future__ import annotations

from dataclasses import dataclass

from flow.errors import AdderFlowError


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    family: str          # "zynq7" | "zynqmp"  (selects the PS IP and yosys synth family)
    lut: int
    ff: int
    bram_18k: int
    dsp: int
    uram: int = 0
    clock_mhz: float = 100.0
    pmbus: bool = False  # on-board power rails readable through pynq.pmbus

    @property
    def capacity(self) -> dict:
        return {"LUT": self.lut, "FF": self.ff, "BRAM_18K": self.bram_18k, "DSP": self.dsp, "URAM": self.uram}


BOARDS = {
    b.name: b
    for b in (
        Board("pynq-z2", "xc7z020clg400-1", "zynq7", lut=53_200, ff=106_400, bram_18k=280, dsp=220),
        Board("zcu104", "xczu7ev-ffvc1156-2-e", "zynqmp", lut=230_400, ff=460_800, bram_18k=624, dsp=1_728,
              uram=96, clock_mhz=200.0, pmbus=True),
        Board("ultra96v2", "xczu3eg-sbva484-1-i", "zynqmp", lut=70_560, ff=141_120, bram_18k=432, dsp=360,
              clock_mhz=150.0, pmbus=True),
        Board("kv260", "xck26-sfvc784-2LV-c", "zynqmp", lut=117_120, ff=234_240, bram_18k=288, dsp=1_248,
              uram=64, clock_mhz=200.0),
    )
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise AdderFlowError(f"unknown board '{name}' (choose from {', '.join(BOARDS)})") from None
