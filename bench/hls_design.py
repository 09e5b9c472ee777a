"""The design `adderflow hls` builds by default, per board: ResNet-20 W4A4 from the official checkpoint,
zero-DSP and plain, the fastest balanced design with LUT <= 85% (flow.report.fit.max_fps_that_fits, the
function the command calls). Every figure is an ESTIMATE (no Vitis/Vivado here). Writes
bench/results/hls_design.md.

    .venv/bin/python bench/hls_design.py [--boards pynq-z2 zcu104 kv260] [--qnet DIR]

Needs ../shared (checkpoint + calibration images) unless --qnet names a quantized network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.boards import get_board  # noqa: E402
from flow.hls import schedule  # noqa: E402
from flow.report.estimate import TIGHT_PCT, estimate  # noqa: E402
from flow.report.fit import max_fps_that_fits, smallest_design  # noqa: E402

OUT_MD = ROOT / "bench" / "results" / "hls_design.md"


def official_qnet(args):
    from flow import qnet as qnet_mod

    if args.qnet:
        return qnet_mod.load(args.qnet), f"--qnet {args.qnet}"
    from flow.commands.quantize import load_calibration
    from flow.paths import shared_dir
    from flow.quant import quantize

    sd = shared_dir()
    if sd is None:
        sys.exit("bench/hls_design.py: ../shared is absent (checkpoint and calibration images); pass --qnet DIR")
    calib = load_calibration(sd / "data" / "cifar10_train2k.npz", 512)
    net = quantize("resnet20", sd / "models" / "ResNet20-AdderNet.pth", calib, bits=4, progress=True)
    return net, "official checkpoint, W4A4 redistribution+, calibration train2k[:512]"


def why_not(net, name) -> list:
    """Where the LUTs of the smallest legal design go (every layer at its largest legal RF), by part."""
    board = get_board(name)
    out = [f"## Why nothing fits {name}: LUT of the smallest legal design by part (estimate)", "",
           "| part | zero-DSP | plain |", "|---|---:|---:|"]
    cols = []
    for sa in (True, False):
        est = estimate(net, board, board.clock_mhz, 10**9, shift_add_all=sa)
        parts = {}
        for L in est["per_layer"]:
            for k, v in L["parts"].items():
                parts[k] = parts.get(k, 0) + v.get("LUT", 0)
        parts["stream FIFOs"] = est["resources"]["breakdown"]["stream_fifos"]["LUT"]
        parts["platform (DMA, interconnect)"] = est["resources"]["breakdown"]["platform (AXI DMA, interconnect)"]["LUT"]
        parts["total"] = est["resources"]["LUT"]
        cols.append(parts)
    for k in sorted(set(cols[0]) | set(cols[1]), key=lambda k: (k == "total", -cols[0].get(k, 0))):
        out.append(f"| {k} | {cols[0].get(k, 0):,.0f} | {cols[1].get(k, 0):,.0f} |")
    out += ["", f"{name} has {board.lut:,} LUT; 85% is {int(board.lut * TIGHT_PCT / 100):,}. The lane count cannot go "
            "below one lane per filter (RF <= n_in keeps every lane on a fixed filter), and the 24-bit requant "
            "multipliers of the quantizer cost, as run-time shift-add, most of the zero-DSP difference.", ""]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", nargs="+", default=["pynq-z2", "zcu104", "kv260"])
    ap.add_argument("--qnet")
    args = ap.parse_args()
    net, source = official_qnet(args)
    rows, per_layer = [], {}
    for name in args.boards:
        board = get_board(name)
        for variant, sa in (("zero-DSP", True), ("plain", False)):
            t = time.perf_counter()
            best = max_fps_that_fits(net, board, board.clock_mhz, weights_to_bram=True, lut_limit_pct=TIGHT_PCT,
                                     shift_add_all=sa)
            dt = time.perf_counter() - t
            if not best.get("reuse"):
                r = smallest_design(net, board, board.clock_mhz, shift_add_all=sa)
                rows.append(f"| {name} | {variant} | **does not fit** | – | smallest legal design: LUT {r['LUT']:,} "
                            f"({100 * r['LUT'] / board.lut:.0f}%), FF {r['FF']:,}, BRAM18K {r['BRAM_18K']}, DSP "
                            f"{r['DSP']} | {dt:.1f} s |")
                continue
            res, u = best["resources"], best["utilisation_pct"]
            rows.append(f"| {name} | {variant} | {best['fps']:,.0f} | {board.clock_mhz:g} MHz, interval "
                        f"{best['interval_cycles']:,} cycles | LUT {res['LUT']:,} ({u['LUT']}%), FF {res['FF']:,} "
                        f"({u['FF']}%), BRAM18K {res['BRAM_18K']} ({u['BRAM_18K']}%), DSP {res['DSP']} ({u['DSP']}%) "
                        f"| {dt:.1f} s |")
            per_layer[(name, variant)] = best["reuse"]
    lines = ["# Default designs of `adderflow hls` (ESTIMATE: no Vitis/Vivado on this machine)", "",
             f"`python bench/hls_design.py` on {source}. The fastest balanced design with LUT <= {TIGHT_PCT}% of "
             "the device (the routable margin), weight ROMs moved to BRAM while LUT is over; every reuse factor "
             "legal (it divides the layer's inputs per output). Source of every figure: estimate.", "",
             "| board | build | images/s | clock, interval | resources (estimate) | search time |",
             "|---|---|---|---|---|---|", *rows, ""]
    if per_layer:
        keys = list(per_layer)
        lines += ["## Per-layer reuse factors (all legal)", "",
                  "| layer | n_in | legal RF | " + " | ".join(f"{b} {v}" for b, v in keys) + " |",
                  "|---|---|---|" + "---|" * len(keys)]
        for op in net.ops:
            if op.kind not in ("conv2d", "adder2d", "dense"):
                continue
            n_in = schedule.inputs_per_output(op)
            legal = schedule.legal_reuse_factors(n_in)
            for k in keys:
                assert per_layer[k][op.name] in legal, (k, op.name)
            lines.append(f"| {op.name} | {n_in} | {len(legal)} values | "
                         + " | ".join(str(per_layer[k][op.name]) for k in keys) + " |")
        lines.append("")
    lines += why_not(net, "pynq-z2")
    OUT_MD.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {OUT_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
