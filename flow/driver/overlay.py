"""`AdderNetOverlay`: the accelerator on a PYNQ board (imports pynq; load it only on the board)."""

from __future__ import annotations

from pathlib import Path

import pynq

from flow import qnet as qnet_mod
from flow.driver.core import DEFAULT_TIMEOUT_S, InferenceEngine
from flow.driver.errors import OverlayFileError
from flow.driver.files import ip_settings, locate_bitstream

DMA_TYPE = "axi_dma"
ACCEL_TYPE = "adderflow_top"
INPUT_RAIL_NAMES = ("12V", "VCC12", "VIN", "VCCIN", "PSU")  # a board's input rail counts everything once


class AdderNetOverlay(pynq.Overlay, InferenceEngine):
    """FINN-style overlay: `predict(images_uint8)`, `classify`, `execute`, `throughput_test`.

    bitfile: adderflow.bit (adderflow.hwh beside it) or the package folder holding both;
    qnet_dir: the network (default: qnet/ beside the bitstream)."""

    def __init__(self, bitfile="adderflow.bit", qnet_dir=None, batch_size: int = 64,
                 timeout_s: float = DEFAULT_TIMEOUT_S, download: bool = True, **kwargs):
        bit, _ = locate_bitstream(bitfile)
        net = qnet_mod.load(qnet_dir or bit.parent / "qnet")
        super().__init__(str(bit), download=download, **kwargs)
        dma_name = self._find_ip(DMA_TYPE)
        accel_name = self._find_ip(ACCEL_TYPE)
        registers, word_bits = ip_settings(bit.parent)
        self._engine_init(net, dma=getattr(self, dma_name), accel=getattr(self, accel_name),
                          allocate=pynq.allocate, registers=registers, word_bits=word_bits,
                          batch_size=batch_size, timeout_s=timeout_s)
        self.description = f"board ({Path(bit).name})"

    def _find_ip(self, kind: str) -> str:
        names = [n for n, d in self.ip_dict.items() if kind in str(d.get("type", ""))]
        if len(names) != 1:
            raise OverlayFileError(f"the overlay's .hwh has {len(names)} IP blocks of type '{kind}' "
                                   f"(expected 1; found {', '.join(self.ip_dict) or 'none'})")
        return names[0]

    def power_rails(self) -> list:
        """PMBus power sensors: the board's input rail when there is one, else every rail (summed)."""
        try:
            rails = pynq.get_rails()
        except Exception:  # no PMBus on this board (e.g. PYNQ-Z2)
            return []
        with_power = {n: r for n, r in rails.items() if getattr(r, "power", None) is not None}
        main = [r for n, r in with_power.items() if n.upper() in INPUT_RAIL_NAMES]
        return main[:1] or list(with_power.values())

    def _fclk_mhz(self):
        """fclk0, the clock the PS feeds the accelerator (FINN reports the same); None if pynq has no Clocks."""
        try:
            return float(pynq.Clocks.fclk0_mhz)
        except Exception:  # an older pynq or a platform without PS clocks: the key is left out
            return None

    def _measure_power(self, fn):
        rails = self.power_rails()
        if not rails:
            return fn(), None
        recorder = pynq.pmbus.DataRecorder(*[r.power for r in rails])
        with recorder.record(0.05):
            out = fn()
        frame = recorder.frame
        cols = [c for c in frame.columns if c.endswith("_power")] or list(frame.columns)
        return out, float(frame[cols].mean().sum()) if len(frame) else None
