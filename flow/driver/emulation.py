"""The emulated overlay: the same driver, with the AXI DMA and the accelerator replaced by the C
simulation of the very build (hls4ml firmware + the AXI wrapper, compiled with g++ into a shared
library and called through ctypes).

Only the hardware access differs from the board: `EmulatedDma` and `EmulatedAccelerator` model
what the driver touches on PYNQ (DMA channels with transfer/idle/error, the IP's control registers,
`allocate`d buffers with flush/invalidate/freebuffer); everything else (validation, quantisation,
packing, batching, buffer reuse, timeouts, errors) is `flow.driver.core`, shared with the board.
Timings measured here are host C-simulation speed, not board performance.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from flow.driver.core import CTRL_AP_START, InferenceEngine, REG_CTRL
from flow.driver.errors import DriverError, OverlayFileError
from flow.driver.packing import Layout
from flow.errors import ToolMissingError

LIB_PREFIX = "libadderflow_csim"
IP_JSON = "adderflow_ip.json"
BRIDGE = "adderflow_axi_bridge.cpp"


# ---- the C simulation library -------------------------------------------------------------------
def _csim_include() -> Path:
    from flow.paths import hls_templates_dir

    cand = hls_templates_dir() / "axi_csim"
    if (cand / "ap_axi_sdata.h").is_file():
        return cand
    raise OverlayFileError("hls_templates/axi_csim/ap_axi_sdata.h not found (needed to compile the emulation)")


def _project_name(hls_dir: Path) -> str:
    ip = hls_dir / IP_JSON
    return json.loads(ip.read_text()).get("network", "myproject") if ip.is_file() else "myproject"


def _sources_digest(hls_dir: Path, extra: list) -> str:
    h = hashlib.sha256()
    for p in sorted((hls_dir / "firmware").rglob("*")) + [hls_dir / BRIDGE] + extra:
        if p.is_file() and "ap_types" not in p.parts:
            h.update(str(p.relative_to(hls_dir) if hls_dir in p.parents else p.name).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_csim_library(hls_dir, out_dir=None, opt: str = "-O2", verbose: bool = False) -> Path:
    """Compile <hls_dir>/firmware/<network>.cpp + the AXI wrapper + the host bridge with g++ into a
    shared library (cached by a digest of the sources). Returns its path."""
    hls_dir = Path(hls_dir).resolve()
    fw = hls_dir / "firmware"
    if not (fw / "adderflow_axi_top.cpp").is_file() or not (hls_dir / BRIDGE).is_file():
        raise OverlayFileError(f"{hls_dir}: no AXI wrapper (firmware/adderflow_axi_top.cpp); "
                               "run flow.board.axi_top.write_axi_top on the HLS project first")
    name = _project_name(hls_dir)
    include = _csim_include()
    out_dir = Path(out_dir) if out_dir else hls_dir.parent / "emulation"
    digest = _sources_digest(hls_dir, [include / "ap_axi_sdata.h"])
    lib = out_dir / f"{LIB_PREFIX}-{digest}.so"
    if lib.is_file():
        return lib
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolMissingError("g++ not on PATH: the emulated overlay compiles the C simulation with it")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{lib.name}.{os.getpid()}.tmp"
    cmd = [cxx, opt, "-std=c++14", "-fPIC", "-shared", "-w", f"-I{fw}", f"-I{fw / 'ap_types'}", f"-I{include}",
           f'-DWEIGHTS_DIR="{fw / "weights"}"', str(fw / f"{name}.cpp"), str(fw / "adderflow_axi_top.cpp"),
           str(hls_dir / BRIDGE), "-o", str(tmp)]
    if verbose:
        print("compiling the C simulation:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=hls_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        log = out_dir / "g++.log"
        log.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise DriverError(f"g++ failed to compile the C simulation of {hls_dir}: {first.strip()} (full log: {log})")
    os.replace(tmp, lib)
    return lib


class CsimLibrary:
    """ctypes front of the compiled C simulation: DMA words in, DMA words out."""

    LAYOUT_FIELDS = ("word_bits", "in_values", "in_value_bits", "in_signed", "in_lane_bits", "in_words",
                     "out_values", "out_value_bits", "out_signed", "out_lane_bits", "out_words")

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.adderflow_csim_layout.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_int]
        self._lib.adderflow_csim_run.restype = ctypes.c_int
        self._lib.adderflow_csim_run.argtypes = [
            ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_int64),
            ctypes.POINTER(ctypes.c_uint32)]
        buf = (ctypes.c_uint32 * 16)()
        n = self._lib.adderflow_csim_layout(buf, 16)
        self.layout = dict(zip(self.LAYOUT_FIELDS, list(buf)[:n]))

    def check_layouts(self, inp: Layout, out: Layout) -> None:
        """The library's compiled constants must equal what flow.driver.packing computes."""
        mine = {"word_bits": inp.word_bits, "in_values": inp.values, "in_value_bits": inp.value_bits,
                "in_signed": int(inp.signed), "in_lane_bits": inp.lane_bits, "in_words": inp.words,
                "out_values": out.values, "out_value_bits": out.value_bits, "out_signed": int(out.signed),
                "out_lane_bits": out.lane_bits, "out_words": out.words}
        diff = {k: (v, self.layout.get(k)) for k, v in mine.items() if self.layout.get(k) != v}
        if diff:
            raise DriverError(f"{self.path.name} was built for another network/layout: "
                              + ", ".join(f"{k} driver={a} library={b}" for k, (a, b) in diff.items()))

    def run(self, in_bytes: np.ndarray, out_bytes: np.ndarray, n_images: int) -> dict:
        wb = self.layout["word_bits"] // 8
        in_bytes = np.ascontiguousarray(in_bytes).view(np.uint8)
        consumed, produced, tlast = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_int64()
        status = ctypes.c_uint32()
        self._lib.adderflow_csim_run(in_bytes.ctypes.data, in_bytes.size // wb, out_bytes.ctypes.data,
                                     out_bytes.nbytes // wb, n_images, ctypes.byref(consumed),
                                     ctypes.byref(produced), ctypes.byref(tlast), ctypes.byref(status))
        return {"consumed_words": consumed.value, "out_words": produced.value, "tlast_word": tlast.value,
                "status": status.value}


# ---- emulated PYNQ objects ----------------------------------------------------------------------
class EmulatedBuffer(np.ndarray):
    """Stands in for pynq.allocate's PynqBuffer (contiguous ndarray with cache ops and freebuffer)."""

    def freebuffer(self):
        self._allocator.live.discard(id(self))
        self._freed = True

    def flush(self):
        pass

    def invalidate(self):
        pass

    @property
    def physical_address(self):
        return self.ctypes.data

    device_address = physical_address


class EmulatedAllocator:
    """`allocate(shape, dtype)` like pynq.allocate; counts live buffers so tests can check frees."""

    def __init__(self):
        self.live = set()
        self.allocated = 0

    def __call__(self, shape, dtype=np.uint8, **_):
        buf = np.zeros(shape, dtype).view(EmulatedBuffer)
        buf._allocator, buf._freed = self, False
        self.live.add(id(buf))
        self.allocated += 1
        return buf


class EmulatedDmaChannel:
    def __init__(self, name: str):
        self.name = name
        self.buffer = None
        self.nbytes = 0
        self.running = False
        self.status = 0          # DMASR error bits (0x10 internal, 0x20 slave, 0x40 decode)
        self.transferred = 0

    @property
    def error(self):
        return bool(self.status & 0x70)

    def transfer(self, array, start=0, nbytes=0):
        if self.running:
            raise RuntimeError("DMA channel not idle")   # what pynq raises
        nbytes = nbytes or array.nbytes
        self.buffer = np.asarray(array).view(np.uint8).reshape(-1)[start:start + nbytes]
        self.nbytes, self.running, self.status, self.transferred = nbytes, True, 0, 0

    @property
    def idle(self):
        return not self.running

    def stop(self):
        self.running, self.buffer = False, None

    start = stop


class EmulatedDma:
    def __init__(self):
        self.sendchannel = EmulatedDmaChannel("MM2S")
        self.recvchannel = EmulatedDmaChannel("S2MM")


class EmulatedAccelerator:
    """The IP's AXI4-Lite registers; ap_start runs the C simulation on what the MM2S channel holds.

    `stall = True` is a fault-injection hook: the IP accepts ap_start and never finishes, as a
    bitstream that does not match the driver would (tests use it to check timeouts)."""

    def __init__(self, lib: CsimLibrary, dma: EmulatedDma, registers: dict):
        self.lib, self.dma = lib, dma
        self.registers = dict(registers)
        self.values = {}
        self.stall = False
        self.calls = 0

    def write(self, offset: int, value: int):
        self.values[offset] = int(value)
        if offset == REG_CTRL and value & CTRL_AP_START:
            self._run()

    def read(self, offset: int) -> int:
        return self.values.get(offset, 0)

    def _run(self):
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        self.calls += 1
        if self.stall or not (send.running and recv.running):
            return                                  # hardware would sit waiting: channels stay busy
        n = self.values.get(self.registers["n_images"], 0)
        res = self.lib.run(send.buffer, recv.buffer, n)
        if "status" in self.registers:             # TLAST errors (hls_templates/axi_top.cpp)
            self.values[self.registers["status"]] = res["status"]
        wb = self.lib.layout["word_bits"] // 8
        send.running, send.transferred = False, res["consumed_words"] * wb
        if res["consumed_words"] * wb < send.nbytes:
            send.running = True                     # MM2S blocks: the IP does not take the rest
        cap = recv.nbytes // wb
        if res["out_words"] > cap:
            recv.status, recv.running = 0x10, False  # S2MM overflow: DMA internal error
        elif res["tlast_word"] < 0:
            recv.transferred = res["out_words"] * wb  # no TLAST: S2MM keeps waiting
        else:
            recv.running, recv.transferred = False, (res["tlast_word"] + 1) * wb
        self.values[REG_CTRL] = 0x4 | 0x2           # ap_idle | ap_done


# ---- the overlay --------------------------------------------------------------------------------
class EmulatedOverlay(InferenceEngine):
    """Same interface as flow.driver.AdderNetOverlay, backed by the C simulation of `build_dir`.

    build_dir holds qnet/ and hls_prj/ (the layout `adderflow hls --out` writes)."""

    is_emulation = True

    def __init__(self, build_dir, batch_size: int = 64, timeout_s: float = 10.0, qnet=None, verbose=False):
        from flow import qnet as qnet_mod
        self.build_dir = Path(build_dir)
        hls_dir = self.build_dir / "hls_prj"
        if not hls_dir.is_dir():
            raise OverlayFileError(f"{self.build_dir}: no hls_prj/ to emulate (a build written by `adderflow hls`)")
        net = qnet if qnet is not None else qnet_mod.load(self.build_dir / "qnet")
        if not (hls_dir / IP_JSON).is_file():       # an HLS project written without the AXI wrapper
            from flow.board.axi_top import write_axi_top
            write_axi_top(hls_dir, net)
        ip = json.loads((hls_dir / IP_JSON).read_text())
        self.csim = CsimLibrary(build_csim_library(hls_dir, verbose=verbose))
        self.allocator = EmulatedAllocator()
        dma = EmulatedDma()
        registers = ip["interfaces"]["s_axi_control"]["registers"]
        accel = EmulatedAccelerator(self.csim, dma, registers)
        self._engine_init(net, dma=dma, accel=accel, allocate=self.allocator, registers=registers,
                          word_bits=int(ip["layout"]["input"]["word_bits"]), batch_size=batch_size,
                          timeout_s=timeout_s)
        self.csim.check_layouts(self.input_layout, self.output_layout)
        self.description = f"emulation (C simulation of {hls_dir})"

    def power_w(self):
        return None
