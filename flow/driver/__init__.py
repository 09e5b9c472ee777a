"""PYNQ driver for the AdderFlow accelerator, and its host emulation. Imports with numpy alone.

    from flow.driver import open_overlay
    ov = open_overlay("build/resnet20")        # the board when run on PYNQ, else the C-simulation emulation
    logits = ov.predict(images_uint8)          # float logits; ov.classify(...) -> class indices
    ov.throughput_test()                       # images/s, latency per image (power where PMBus exists)

`AdderNetOverlay` (a pynq.Overlay) is imported lazily, so this package loads on a PC without pynq.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from flow.driver.errors import DmaError, DmaTimeoutError, DriverError, InputError, OverlayFileError
from flow.driver.files import locate_bitstream
from flow.driver.packing import Layout, input_layout, output_layout, pack, unpack

__all__ = ["open_overlay", "on_board", "AdderNetOverlay", "EmulatedOverlay", "Layout", "pack", "unpack",
           "input_layout", "output_layout", "locate_bitstream", "DriverError", "InputError",
           "OverlayFileError", "DmaTimeoutError", "DmaError"]

MODE_ENV = "ADDERFLOW_DRIVER"   # "board" | "emulation" to override the automatic choice


def on_board() -> bool:
    """pynq is installed and this machine has an FPGA manager (a PYNQ image)."""
    fpga = Path("/dev/xdevcfg").exists() or Path("/sys/class/fpga_manager/fpga0").exists()
    return fpga and importlib.util.find_spec("pynq") is not None


def open_overlay(path, mode: str | None = None, **kwargs):
    """The board overlay when on PYNQ with a bitstream in `path`, else the emulation of the build in `path`.

    path: a package folder (adderflow.bit/.hwh + qnet/) or a build folder (qnet/ + hls_prj/ [+ bitstream/])."""
    mode = mode or os.environ.get(MODE_ENV, "auto")
    if mode not in ("auto", "board", "emulation"):
        raise DriverError(f"overlay mode must be auto, board or emulation, got '{mode}'")
    p = Path(path)
    if mode == "board" or (mode == "auto" and on_board()):
        from flow.driver.overlay import AdderNetOverlay
        return AdderNetOverlay(p, **kwargs)
    if not (p / "hls_prj").is_dir():
        raise OverlayFileError(f"{p}: no board here and no hls_prj/ to emulate: open the build folder written by "
                               "`adderflow hls` on a PC, or run on the PYNQ board")
    from flow.driver.emulation import EmulatedOverlay
    ov = EmulatedOverlay(p, **kwargs)
    if mode == "auto":  # the user did not ask for the emulation: say so, its timings are not the board's
        why = "pynq is not installed" if importlib.util.find_spec("pynq") is None else "no FPGA manager"
        print(f"adderflow driver: no PYNQ board here ({why}): using the emulation (C simulation of {p / 'hls_prj'}); "
              f"timings are host C-simulation speed, not the board's (set {MODE_ENV}=emulation to silence this)",
              file=sys.stderr, flush=True)
    return ov


def __getattr__(name):
    if name == "AdderNetOverlay":
        from flow.driver.overlay import AdderNetOverlay
        return AdderNetOverlay
    if name == "EmulatedOverlay":
        from flow.driver.emulation import EmulatedOverlay
        return EmulatedOverlay
    raise AttributeError(name)
