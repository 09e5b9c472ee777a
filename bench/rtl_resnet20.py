"""ResNet-20 W4A4 through the register-transfer realisation (issue 11): Verilator cosim against the golden
model, cycles against the estimate, FIFO high-water marks against the declared depths, yosys totals.

    python bench/rtl_resnet20.py [--build build/bench_rtl/r20] [--images 100] [--clean-verilator]

The design is the pynq-z2 zero-DSP one `adderflow hls` reports as the smallest legal design (no pynq-z2
design fits by the estimate: `--shift-add --reuse 100000` puts every layer at its largest legal reuse
factor). Steps already done in BUILD are reused (rtl/, rtl/cosim.json, rtl/yosys); --clean-verilator
removes the Verilator objects first so the build time is a cold one. Per-layer yosys figures against the
estimate are bench/rtl_vs_estimate.py's table. Writes bench/results/rtl_resnet20.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def adderflow(*args) -> float:
    cmd = [sys.executable, "-m", "flow", *map(str, args)]
    print("$ adderflow", " ".join(map(str, args)), flush=True)
    t0 = time.perf_counter()
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        raise SystemExit(f"adderflow {args[0]} failed")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, default=REPO / "build" / "bench_rtl" / "r20")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--clean-verilator", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    shared = Path(os.environ.get("ADDERFLOW_SHARED", REPO.parent / "shared"))
    test = shared / "data" / "cifar10_test1k.npz"
    if not test.is_file():
        raise SystemExit(f"{test} not found (set ADDERFLOW_SHARED)")
    b = args.build
    if not (b / "report.json").is_file():
        adderflow("hls", "--model", "resnet20", "--weights", shared / "models" / "ResNet20-AdderNet.pth",
                  "--calib", shared / "data" / "cifar10_train2k.npz", "--bits", 4, "--board", "pynq-z2",
                  "--shift-add", "--reuse", 100000, "--out", b)
    if not (b / "rtl" / "manifest.json").is_file():
        adderflow("rtl", b)
    if args.clean_verilator and (b / "rtl" / "obj").exists():
        shutil.rmtree(b / "rtl" / "obj")
    cos_file = b / "rtl" / "cosim.json"
    cos = json.loads(cos_file.read_text()) if cos_file.is_file() else {}
    if args.clean_verilator or cos.get("images") != args.images:
        adderflow("cosim", b, "--data", test, "--images", args.images)
        cos = json.loads(cos_file.read_text())
    if not (b / "rtl" / "yosys" / "yosys.json").is_file():
        adderflow("synth", b, "--yosys", "--jobs", args.jobs, "--keep-going")
    rep = json.loads((b / "report.json").read_text())
    ys = rep["yosys"]
    est_lat = rep["latency"]
    # the estimate with today's LUT calibration (report.json's `resources` shows the yosys figure once
    # there is one, and its `estimate` is the one made at build time)
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    import rtl_vs_estimate as rv

    est_res = rv.estimator_for(rv.load_build(b), calibrated=True)[1]["resources"]
    hw, dd = cos["fifo_high_water"], cos["fifo_declared_depths"]
    full = [s for s in hw if hw[s] >= dd[s]]
    clock = float(cos["clock_mhz"])

    lines = [
        "# ResNet-20 W4A4 in RTL: Verilator cosim and yosys (pynq-z2, zero-DSP, smallest legal design)", "",
        f"Made by `python bench/rtl_resnet20.py --images {args.images}{' --clean-verilator' if args.clean_verilator else ''}` "
        "(official checkpoint, `adderflow quantize` defaults; `adderflow hls --board pynq-z2 --shift-add --reuse "
        "100000`, then `adderflow rtl`, `adderflow cosim --data cifar10_test1k.npz`, `adderflow synth --yosys`). "
        "Each figure says the tool that made it.", "",
        "## Verilator co-simulation against the golden model", "",
        "| quantity | verilator | estimate |", "|---|---:|---:|",
        f"| images (back to back) | {cos['images']} | |",
        f"| mismatching output values | **{cos['mismatches']} of {cos['outputs_compared']}** | |",
        f"| latency (cycles, first input word to last output word) | {cos['latency_cycles']:,} | "
        f"{est_lat.get('cycles', 0):,} |",
        f"| interval (cycles, steady state) | {cos['interval_cycles']:,} | {cos['estimate_interval_cycles']:,} |",
        f"| images/s at {clock:g} MHz | {cos['images_per_s_100mhz'] if clock == 100 else cos['images_per_s']:,.1f} | "
        f"{100e6 / cos['estimate_interval_cycles']:,.1f} |",
        f"| TLAST errors / status | {cos['tlast_errors']} / {cos['status']} | |", "",
        f"Interval: verilator {100 * (cos['interval_cycles'] / cos['estimate_interval_cycles'] - 1):+.1f}% against "
        "the estimate.", "",
        "## FIFO high-water marks (verilator) against the declared depths (schedule + FIFO_SLACK)", "",
        f"{len(hw)} stream FIFOs; declared {sum(dd.values()):,} entries in all, high water {sum(hw.values()):,}. "
        f"Filled to their declared depth (no deadlock, but no slack left): {', '.join(full) or 'none'}. The measured "
        "marks are written to BUILD/rtl/fifo_depths.json (`measured_depths`).", "",
        "| stream | declared | high water |", "|---|---:|---:|"]
    for s in sorted(hw, key=lambda s: -dd[s]):
        if dd[s] > 2 or hw[s] >= dd[s]:
            lines.append(f"| {s} | {dd[s]} | {hw[s]} |")
    lines += ["", f"(streams of depth 2 that never filled are left out: {sum(1 for s in hw if dd[s] <= 2 and hw[s] < dd[s])})", "",
              "## yosys synth_xilinx, whole design, xc7z020", "",
              f"Command: `{ys['command']}` ({ys['tool']}); {ys['total'].get('what')}.", "",
              "| resource | yosys | estimate (LUT calibrated to yosys, flow/report/data/lut_calibration.csv) | pynq-z2 has |", "|---|---:|---:|---:|"]
    from flow.boards import get_board

    board = get_board("pynq-z2")
    have = {"LUT": board.lut, "FF": board.ff, "BRAM_18K": board.bram_18k, "DSP": board.dsp}
    for k in ("LUT", "FF", "BRAM_18K", "DSP"):
        y = ys["total"][k]
        lines.append(f"| {k} | {y:,} ({100 * y / have[k]:.0f}%) | {est_res[k]:,} | {have[k]:,} |")
    lines += ["", f"CARRY4 {ys['total'].get('CARRY', 0):,}; LUTs as memory {ys['total'].get('LUT_as_memory', 0):,}.", "",
              "## Wall times (this machine: 2 shared cores)", "",
              "| step | seconds |", "|---|---:|",
              f"| Verilator build (`verilator --cc --exe --build -O3 -j 2`{', cold' if args.clean_verilator else ''}) | "
              f"{cos['verilator_build_s']:.1f} |",
              f"| simulation of {cos['images']} images | {cos['simulation_s']:.1f} ({cos['simulated_images_per_s']:.2f} images/s) |",
              f"| yosys, {len(ys['layers'])} layers ({ys.get('jobs')} at a time, summed) | {ys['wall_s']['layers']:.0f} |",
              f"| yosys, whole design | {ys['wall_s']['whole'] or 0:.0f} |"]
    out = REPO / "bench" / "results" / "rtl_resnet20.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
