"""What the QAT networks buy in hardware: for each committed ResNet-20 QNet under bench/results/qat/,
the golden accuracy on the 1,000 test images, the fitter's design on pynq-z2 and kv260 (images/s and
LUT, ESTIMATE: flow/report/fit.py, the same search `adderflow hls` makes), and the C simulation of the
design `adderflow hls` builds for kv260 against the golden model (mismatching values).

    .venv/bin/python bench/qat_hardware.py [--bits 4,3,2] [--csim 100] [--out build/bench_qat_hw]

Writes bench/results/qat_hardware.md. Needs ../shared (or ADDERFLOW_SHARED) for the test images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LUT_LIMIT = 85.0   # the default of `adderflow hls` (flow.report.fit.TIGHT_PCT)


def fitted(qnet, board_name: str) -> dict:
    """The design `adderflow hls --board B` chooses (zero-DSP first, then plain), or the smallest one."""
    from flow.boards import get_board
    from flow.report.fit import max_fps_that_fits, smallest_design

    board = get_board(board_name)
    for variant, sa in (("zero-DSP", True), ("plain", False)):
        best = max_fps_that_fits(qnet, board, board.clock_mhz, weights_to_bram=True, lut_limit_pct=LUT_LIMIT,
                                 shift_add_all=sa)
        if best.get("reuse"):
            return {"fits": True, "variant": variant, "fps": best["fps"], "LUT": best["resources"]["LUT"],
                    "lut_pct": best["utilisation_pct"]["LUT"], "clock": board.clock_mhz, "lut_total": board.lut}
    res = smallest_design(qnet, board, board.clock_mhz, shift_add_all=True)
    return {"fits": False, "variant": "zero-DSP", "fps": None, "LUT": res["LUT"],
            "lut_pct": 100.0 * res["LUT"] / board.lut, "clock": board.clock_mhz, "lut_total": board.lut}


def csim(qdir: Path, out: Path, images: int, test: Path) -> dict:
    cmd = [sys.executable, "-m", "flow", "hls", "--qnet", str(qdir), "--board", "kv260", "--csim", str(images),
           "--data", str(test), "--out", str(out), "--force"]
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{qdir.name}: adderflow hls exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    cs = json.loads((out / "report.json").read_text()).get("csim") or {}
    return {"wall": time.perf_counter() - t0, **cs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="4,3,2")
    ap.add_argument("--csim", type=int, default=100, help="images C-simulated per network (0: none)")
    ap.add_argument("--out", default=str(REPO / "build" / "bench_qat_hw"))
    args = ap.parse_args(argv)
    shared = Path(os.environ.get("ADDERFLOW_SHARED", REPO.parent / "shared"))
    test = shared / "data" / "cifar10_test1k.npz"
    if not test.is_file():
        raise SystemExit(f"{test} not found (set ADDERFLOW_SHARED)")

    import numpy as np

    from flow import golden
    from flow.qnet import load, quantize_input

    data = np.load(test)
    rows = []
    for b in (int(v) for v in args.bits.split(",")):
        qdir = REPO / "bench" / "results" / "qat" / f"resnet20_w{b}a{b}"
        net = load(qdir)
        x = quantize_input(data["x"], net.input_quant, net.tensors[net.input])
        acc = float((golden.run(net, x)[net.output].argmax(-1) == data["y"]).mean())
        row = {"bits": b, "acc": acc, "pynq-z2": fitted(net, "pynq-z2"), "kv260": fitted(net, "kv260")}
        if args.csim:
            row["csim"] = csim(qdir, Path(args.out) / f"w{b}a{b}", args.csim, test)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "csim"}, default=str), flush=True)

    def board_cell(d):
        if not d["fits"]:
            return f"does not fit (smallest legal design: LUT {d['LUT']:,}, {d['lut_pct']:.0f}%)"
        return f"{d['fps']:,.0f} images/s at {d['clock']:g} MHz, LUT {d['LUT']:,} ({d['lut_pct']:.0f}%), {d['variant']}"

    lines = ["# QAT networks in hardware: accuracy, fitted design (ESTIMATE), C simulation", "",
             f"Made by `python bench/qat_hardware.py --bits {args.bits} --csim {args.csim}`. QNets: "
             "bench/results/qat/resnet20_w{B}a{B}/ (bench/qat_resnet20.py). Images/s and LUT are **estimates** "
             f"(flow/report/fit.py: the fastest design with LUT <= {LUT_LIMIT:g}%, zero-DSP first, as `adderflow hls` "
             "chooses). C simulation: `adderflow hls --qnet DIR --board kv260 --csim N` (the synthesized code "
             "through the AXI top) against the golden model on the first N test images.", "",
             "| bits | golden accuracy (1,000 test images) | pynq-z2 (estimate) | kv260 (estimate) | csim mismatching values |",
             "|---|---|---|---|---|"]
    for r in rows:
        cs = r.get("csim")
        cs_cell = "not run" if not cs else f"{cs.get('mismatches')} of {cs.get('outputs_compared')} ({cs.get('images')} images)"
        lines.append(f"| W{r['bits']}A{r['bits']} | {100 * r['acc']:.1f}% | {board_cell(r['pynq-z2'])} | "
                     f"{board_cell(r['kv260'])} | {cs_cell} |")
    base = next((r for r in rows if r["bits"] == 4), None)
    if base:
        lines.append("")
        for r in rows:
            if r is base:
                continue
            for bn in ("pynq-z2", "kv260"):
                a, c = base[bn], r[bn]
                if a["fits"] and c["fits"]:
                    lines.append(f"- {bn}: W{r['bits']}A{r['bits']} runs {c['fps'] / a['fps']:.2f}x the images/s of "
                                 f"W4A4 (estimate).")
                elif c["fits"] and not a["fits"]:
                    lines.append(f"- {bn}: W{r['bits']}A{r['bits']} fits where W4A4 does not (estimate).")
                else:
                    lines.append(f"- {bn}: smallest legal design W{r['bits']}A{r['bits']} needs LUT {c['LUT']:,} vs "
                                 f"{a['LUT']:,} at W4A4 ({100 * (c['LUT'] / a['LUT'] - 1):+.0f}%, estimate).")
    dst = REPO / "bench" / "results" / "qat_hardware.md"
    dst.write_text("\n".join(lines) + "\n")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
