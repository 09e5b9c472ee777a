"""Verilator co-simulation of a generated BUILD/rtl against the golden model.

    exe, build_s = build(rtl_dir)                   # verilator --cc --exe --build -O3 (cached when unchanged)
    out_words, stats = simulate(rtl_dir, words, n)  # images back to back through af_top
    res = cosim(build_dir, data, n_images)          # the whole `adderflow cosim` (compare, report, depths)

The harness (rtl/harness/af_harness.cpp, copied into BUILD/rtl by the generator) drives the packed DMA words
of flow/driver/packing.py and measures, per image, the latency (first input word accepted -> last output
word, cycles, inclusive) and, between consecutive images, the interval (cycles between their last output
words); per stream FIFO the high-water mark. Tools run with cwd BUILD/rtl ($readmemh paths are relative).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError, ToolMissingError
from flow.rtl.generate import HARNESS_CFG, HARNESS_CPP, MANIFEST, RTL_DIR, TOP

OBJ_DIR = "obj"
EXE = f"V{TOP}"
STAMP = ".af_build_hash"
DEADLOCK_EXIT = 3
COSIM_JSON = "cosim.json"
FIFO_DEPTHS_JSON = "fifo_depths.json"


class DeadlockError(AdderFlowError):
    """The simulated design stopped moving (names the stalled streams)."""

    exit_code = 3


def _say(msg: str) -> None:
    print(f"[cosim] {msg}", flush=True)


def verilator() -> str:
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolMissingError("verilator is not on PATH: cannot co-simulate the RTL (install Verilator >= 5)")
    return exe


def load_manifest(rtl_dir) -> dict:
    rtl_dir = Path(rtl_dir)
    p = rtl_dir / MANIFEST
    if not p.is_file():
        build = rtl_dir.parent
        raise AdderFlowError(f"{rtl_dir}: no {MANIFEST} (run `adderflow rtl {build}` first)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise AdderFlowError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _build_hash(rtl_dir: Path, man: dict, cmd: list) -> str:
    h = hashlib.sha256(" ".join(cmd).encode())
    for f in sorted(set(man["files"]) | {HARNESS_CPP, HARNESS_CFG}):
        h.update(f.encode())
        h.update((rtl_dir / f).read_bytes())
    return h.hexdigest()


def build(rtl_dir, jobs: int = 2, quiet: bool = False) -> tuple:
    """(executable, seconds spent building: 0.0 when the cached build is current)."""
    rtl_dir = Path(rtl_dir).resolve()
    man = load_manifest(rtl_dir)
    vl = verilator()
    obj = rtl_dir / OBJ_DIR
    # -Wno-fatal: lint is each module's own test (verilator --lint-only -Wall); a build must not stop on a
    # width warning of a generated wrapper that the lint tests already judged
    cmd = [vl, "--cc", "--exe", "--build", "-O3", "-j", str(jobs), "--top-module", TOP, "-Mdir", OBJ_DIR,
           "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", f"-I{rtl_dir}", *man["files"], HARNESS_CPP]
    stamp = obj / STAMP
    digest = _build_hash(rtl_dir, man, cmd[1:])
    exe = obj / EXE
    if exe.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return exe, 0.0
    if not quiet:
        _say(f"verilator build of {TOP} ({len(man['layers'])} layers) ...")
    t = time.perf_counter()
    log = rtl_dir / "verilator_build.log"
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=rtl_dir, stdout=fh, stderr=subprocess.STDOUT).returncode
    dt = time.perf_counter() - t
    if rc != 0 or not exe.is_file():
        raise AdderFlowError(f"verilator build failed (exit {rc}); see {log}")
    stamp.write_text(digest)
    if not quiet:
        _say(f"verilator build: {dt:.1f} s")
    return exe, dt


def default_timeout(man: dict) -> int:
    """Cycles without any handshake that mean a deadlock: well above the longest quiet stretch of a healthy
    design (a lane array computing RF cycles per output while every other process waits on it)."""
    return int(max(10_000, 8 * max([int(l["rf"]) for l in man["layers"]] + [1]) + 1_000))


def simulate(rtl_dir, words: np.ndarray, n_images: int, *, gap: float = 0.0, backpressure: float = 0.0,
             seed: int = 0, timeout: int | None = None, progress: int = 0) -> tuple:
    """(output words uint64, stats dict, run seconds). Raises DeadlockError naming the stalled streams."""
    rtl_dir = Path(rtl_dir).resolve()
    man = load_manifest(rtl_dir)
    exe, _ = build(rtl_dir, quiet=True)
    work = rtl_dir / "cosim_run"
    work.mkdir(exist_ok=True)
    fin, fout, fstats = work / "in.u64", work / "out.u64", work / "stats.json"
    for p in (fout, fstats):
        if p.exists():
            p.unlink()
    np.ascontiguousarray(words, dtype="<u8").tofile(fin)
    cmd = [str(exe), "--in", str(fin), "--out", str(fout), "--stats", str(fstats), "--images", str(int(n_images)),
           "--gap", repr(float(gap)), "--bp", repr(float(backpressure)), "--seed", str(int(seed)),
           "--timeout", str(int(timeout or default_timeout(man))), "--progress", str(int(progress))]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=rtl_dir, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    dt = time.perf_counter() - t
    stats = json.loads(fstats.read_text()) if fstats.is_file() else None
    if proc.returncode == DEADLOCK_EXIT and stats and stats.get("deadlock"):
        raise DeadlockError(f"deadlock in {TOP}: {stats['deadlock']}")
    if proc.returncode != 0 or stats is None:
        last = (proc.stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise AdderFlowError(f"simulation of {TOP} failed (exit {proc.returncode}): {last[0]}")
    out = np.fromfile(fout, dtype="<u8")
    return out, stats, dt


def timing(stats: dict) -> dict:
    """Latency per image and the steady-state interval from the harness's cycle stamps."""
    first, last = np.asarray(stats["first_in"], np.int64), np.asarray(stats["last_out"], np.int64)
    lat = (last - first + 1).tolist()
    iv = np.diff(last).tolist()
    # steady state: the images after the pipeline has filled (the first interval still includes the fill)
    steady = iv[1:] if len(iv) > 1 else iv
    return {"latency_cycles_per_image": lat, "latency_cycles": int(lat[0]) if lat else None,
            "interval_cycles_per_image": iv,
            "interval_cycles": int(np.median(steady)) if steady else None,
            "interval_cycles_max": int(max(steady)) if steady else None}


def cosim(build_dir, data, n_images: int, *, seed: int = 0, backpressure: float = 0.0, gap: float = 0.0,
          timeout: int | None = None) -> dict:
    """`adderflow cosim`: N test images of `data` through the Verilator model of BUILD/rtl, every output value
    compared with flow.golden.run; BUILD/rtl/cosim.json, fifo_depths.json and the report's "verilator"
    section written. Raises (one line) on a mismatch or a deadlock, after writing what was measured."""
    from flow import golden, qnet as qnet_mod
    from flow.data import load_dataset
    from flow.driver.packing import input_layout, output_layout, pack, unpack
    from flow.outputs import require_complete

    build_dir = require_complete(Path(build_dir))
    rtl_dir = build_dir / RTL_DIR
    man = load_manifest(rtl_dir)
    verilator()
    try:
        net = qnet_mod.load(build_dir / "qnet")
    except qnet_mod.QNetError as exc:
        raise AdderFlowError(str(exc)) from None
    x, _ = load_dataset(data, split="test", limit=n_images)
    want_shape = tuple(net.tensors[net.input].shape)
    if tuple(x.shape[1:]) != want_shape:
        raise AdderFlowError(f"{data}: images of shape {tuple(x.shape[1:])}, the network takes {want_shape}")
    if len(x) < n_images:
        raise AdderFlowError(f"{data}: holds {len(x)} test images, --images asks for {n_images}")
    x_int = net.quantize_input(x[:n_images])
    lin, lout = input_layout(net), output_layout(net)
    words = pack(x_int, lin).view("<u8").reshape(-1)
    exe, build_s = build(rtl_dir)
    want = golden.run(net, x_int)[net.output].reshape(n_images, -1)
    _say(f"simulating {n_images} images (backpressure {backpressure:g}, gaps {gap:g}, seed {seed}) ...")
    try:
        out, stats, run_s = simulate(rtl_dir, words, n_images, gap=gap, backpressure=backpressure, seed=seed,
                                     timeout=timeout, progress=max(1, n_images // 10) if n_images >= 20 else 0)
    except DeadlockError as exc:
        _write_json(rtl_dir / COSIM_JSON, {"images": n_images, "deadlock": str(exc), "seed": seed,
                                           "backpressure": backpressure, "gap": gap})
        raise
    got = unpack(out.view(np.uint8), lout, n_images)
    mism = int(np.sum(got != want))
    t = timing(stats)
    clock = float(man.get("clock_mhz") or 100.0)
    iv = t["interval_cycles"] or t["latency_cycles"]
    declared = {s["name"]: int(s["depth"]) for s in man["streams"]}
    res = {"source": "verilator", "images": n_images, "outputs_compared": int(want.size), "mismatches": mism,
           "tlast_errors": int(stats["tlast_errors"]), "status": int(stats["status"]),
           **t, "clock_mhz": clock,
           "images_per_s": round(clock * 1e6 / iv, 2) if iv else None,
           "images_per_s_100mhz": round(100e6 / iv, 2) if iv else None,
           "estimate_interval_cycles": man.get("estimate_interval_cycles"),
           "fifo_high_water": stats["high_water"], "fifo_declared_depths": declared,
           "verilator_build_s": round(build_s, 2), "simulation_s": round(run_s, 3),
           "simulated_images_per_s": round(n_images / run_s, 2) if run_s > 0 else None,
           "total_cycles": int(stats["cycles"]), "seed": seed, "backpressure": backpressure, "gap": gap}
    _write_json(rtl_dir / COSIM_JSON, res)
    _write_json(rtl_dir / FIFO_DEPTHS_JSON, {"source": "verilator", "images": n_images, "declared": declared,
                                             "measured_depths": stats["high_water"]})
    _merge_report(build_dir, res)
    _say(f"{mism} mismatching output values of {want.size} vs the golden model; latency {t['latency_cycles']} cycles, "
         f"interval {t['interval_cycles']} cycles (estimate {man.get('estimate_interval_cycles')}): "
         f"{res['images_per_s']} images/s at {clock:g} MHz, {res['images_per_s_100mhz']} at 100 MHz; verilator build "
         f"{build_s:.1f} s, simulation {run_s:.2f} s ({res['simulated_images_per_s']} images/s simulated)")
    if mism or stats["tlast_errors"] or stats["status"]:
        raise AdderFlowError(f"RTL co-simulation differs from the golden model: {mism} of {want.size} output values, "
                             f"{stats['tlast_errors']} misplaced TLAST, status {stats['status']} "
                             f"(details in {rtl_dir / COSIM_JSON})")
    return res


def _write_json(path: Path, doc: dict) -> None:
    """Write beside and rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _merge_report(build_dir: Path, res: dict) -> None:
    """The measured figures go under report.json "verilator", next to the estimate (never into it)."""
    p = build_dir / "report.json"
    rep = json.loads(p.read_text()) if p.is_file() else {}
    keep = ("source", "images", "mismatches", "latency_cycles", "interval_cycles", "interval_cycles_max",
            "images_per_s", "images_per_s_100mhz", "clock_mhz", "estimate_interval_cycles", "fifo_high_water",
            "fifo_declared_depths", "verilator_build_s", "simulated_images_per_s")
    rep["verilator"] = {k: res[k] for k in keep}
    _write_json(p, rep)
