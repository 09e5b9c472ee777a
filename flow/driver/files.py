"""Locating the files an overlay needs (numpy-free checks that run before pynq is touched)."""

from __future__ import annotations

import json
from pathlib import Path

from flow.driver.core import DEFAULT_REGISTERS
from flow.driver.errors import OverlayFileError

BITSTREAM_NAME = "adderflow"       # adderflow.bit + adderflow.hwh (PYNQ needs the same stem)
IP_JSON = "adderflow_ip.json"


def locate_bitstream(path) -> tuple[Path, Path]:
    """A .bit file, or a folder holding one (package folder or BUILD/bitstream) -> (bit, hwh)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / f"{BITSTREAM_NAME}.bit", p / "bitstream" / f"{BITSTREAM_NAME}.bit"):
            if cand.is_file():
                p = cand
                break
        else:
            bits = sorted(p.glob("*.bit"))
            if len(bits) != 1:
                raise OverlayFileError(f"{path}: no {BITSTREAM_NAME}.bit here (found {len(bits)} .bit files); "
                                       "build it with `adderflow bitstream` and copy it with `adderflow package`")
            p = bits[0]
    if not p.is_file():
        raise OverlayFileError(f"{p}: bitstream not found")
    hwh = p.with_suffix(".hwh")
    if not hwh.is_file():
        raise OverlayFileError(f"{hwh} is missing: PYNQ needs the block design's .hwh next to {p.name} "
                               "(Vivado writes it under <project>.gen/sources_1/bd/<design>/hw_handoff/; "
                               "`adderflow package` copies both)")
    return p, hwh


def ip_settings(folder) -> tuple[dict, int]:
    """AXI4-Lite register offsets and DMA word width from adderflow_ip.json (defaults when absent)."""
    for cand in (Path(folder) / IP_JSON, Path(folder) / "hls_prj" / IP_JSON):
        if cand.is_file():
            ip = json.loads(cand.read_text())
            return (ip["interfaces"]["s_axi_control"]["registers"], int(ip["layout"]["input"]["word_bits"]))
    return dict(DEFAULT_REGISTERS), 64
