"""ResNet-20 adder W4A4 vs resnet20_cnn W4A4 on pynq-z2 at 100 MHz (estimates), and the goal:
>= 3,000 images/s with DSP = 0 within the board - the per-layer schedule that gets there, or what stops it.

    python bench/report_resnet20.py [--adder-qnet DIR --cnn-qnet DIR] [--fps 3000]

Without --*-qnet the networks are ResNet-20 QNets with seeded weights (flow.report.example: same shapes,
4-bit weights/activations, 24-bit requant multipliers rounded to 2 powers of two for the APoT build);
costs depend on shapes and widths, not on weight values. Writes bench/results/report_resnet20.md (+ .png)
and the two build folders under build/bench_report/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.boards import BOARDS, get_board  # noqa: E402
from flow.report import write_report  # noqa: E402
from flow.report.estimate import RESOURCES, board_fit, estimate  # noqa: E402
from flow.report.fit import fit_reuse  # noqa: E402

OUT_MD = ROOT / "bench" / "results" / "report_resnet20.md"
BUILD = ROOT / "build" / "bench_report"
CLOCK = 100.0
BOARD = "pynq-z2"

# cumulative design variants; only the first is what the backend generates today
VARIANTS = [
    ("as generated (hls4ml stream depths = pixels, requant C lanes/pixel)", {}),
    ("+ minimal FIFO depths (2; skip edges sized to the branch lag)", {"fifo_depth": "minimal"}),
    ("+ requant time-multiplexed over the pixel interval", {"fifo_depth": "minimal", "tune_requant": True}),
    ("+ requant fused into the window layer (no accumulator streams)",
     {"fifo_depth": "minimal", "tune_requant": True, "fuse_requant": True}),
    ("+ SAD partial sums typed by their bound",
     {"fifo_depth": "minimal", "tune_requant": True, "fuse_requant": True, "narrow_partial_sums": True}),
]


def nets(args):
    from flow.report.example import resnet20_qnet

    if args.adder_qnet:
        from flow.qnet import load
        adder, cnn = load(args.adder_qnet), load(args.cnn_qnet)
        src = f"quantized networks {args.adder_qnet}, {args.cnn_qnet}"
    else:
        adder = resnet20_qnet(4, adder=True, apot_terms=2)     # APoT requant + shift-add conv1/fc: no DSP
        cnn = resnet20_qnet(4, adder=False)                    # the CNN twin, plain integer multipliers
        src = "seeded-weight ResNet-20 QNets (flow.report.example)"
    return adder, cnn, src


def fmt_fit(f) -> str:
    return "yes" if f["fits"] else "no (" + ", ".join(k for k in RESOURCES if not f["resources"][k]["fits"]) + ")"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adder-qnet")
    ap.add_argument("--cnn-qnet")
    ap.add_argument("--fps", type=float, default=3000.0)
    args = ap.parse_args(argv)
    if bool(args.adder_qnet) != bool(args.cnn_qnet):
        ap.error("give both --adder-qnet and --cnn-qnet, or neither")
    adder, cnn, src = nets(args)
    board = get_board(BOARD)
    lines = [f"# ResNet-20 W4A4 on {BOARD} at {CLOCK:.0f} MHz: adder vs CNN, and the {args.fps:,.0f} images/s goal",
             "", f"All figures are ESTIMATES (flow/report, yosys-calibrated; no Vivado run). Networks: {src}.",
             f"Made by `python bench/report_resnet20.py`.", ""]

    # 1. side by side, both balanced for the goal frame rate as the backend generates them today
    fa = fit_reuse(adder, board, args.fps, CLOCK)
    fc = fit_reuse(cnn, board, args.fps, CLOCK)
    da, dc = BUILD / "resnet20_w4_pynq-z2", BUILD / "resnet20_cnn_w4_pynq-z2"
    write_report(da, adder, model="resnet20", bits=4, board=BOARD, clock_mhz=CLOCK, reuse=fa["reuse"])
    write_report(dc, cnn, model="resnet20_cnn", bits=4, board=BOARD, clock_mhz=CLOCK, reuse=fc["reuse"])
    cmp_md = BUILD / "compare.md"
    from flow.cli import main as cli
    cli(["compare", str(da), str(dc), "--out", str(cmp_md), "--force"])
    lines += [f"## 1. Side by side (`adderflow compare {da.relative_to(ROOT)} {dc.relative_to(ROOT)}`)", "",
              f"Both with reuse factors balanced for {args.fps:,.0f} images/s (`fit_reuse`), as the backend "
              f"generates them today.", ""]
    lines += [ln for ln in cmp_md.read_text().splitlines()[2:] if ln.strip()] + [""]

    # 2. the goal: design variants for the adder build
    lines += [f"## 2. Goal: >= {args.fps:,.0f} images/s, DSP = 0, within {BOARD} (adder W4A4)", "",
              "| design | images/s | LUT | FF | BRAM18K | DSP | fits | binding | fastest that fits (images/s) |",
              "|---|---:|---:|---:|---:|---:|---|---|---:|"]
    best = None
    for name, kw in VARIANTS:
        f = fit_reuse(adder, board, args.fps, CLOCK, **kw)
        r = f["resources"]
        u = {k: f["board_fit"]["resources"][k]["utilisation_pct"] for k in RESOURCES}
        mx = f.get("max_fps_that_fits", {}).get("fps") if not f["fits"] else f["latency"]["images_per_s"]
        lines.append(f"| {name} | {f['latency']['images_per_s']:,.0f} | {r['LUT']:,} ({u['LUT']:.0f}%) | "
                     f"{r['FF']:,} ({u['FF']:.0f}%) | {r['BRAM_18K']} ({u['BRAM_18K']:.0f}%) | {r['DSP']} | "
                     f"{fmt_fit(f['board_fit'])} | {f['binding'] or '-'} | {mx or 0:,.0f} |")
        best = (name, kw, f)
    name, kw, f = best
    ekw = {k: v for k, v in kw.items() if k != "tune_requant"}
    e = estimate(adder, board, CLOCK, f["reuse"], **ekw)
    lines += ["", f"### Per-layer schedule at {args.fps:,.0f} images/s, last design above "
                  f"(interval {e['latency']['interval_cycles']:,} cycles = {e['latency']['images_per_s']:,.0f} "
                  f"images/s, latency {e['latency']['latency_us']:.0f} us)", "",
              "| layer | kind | RF | lanes | cycles | LUT | FF | BRAM18K | DSP | multipliers | weights |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for L in e["per_layer"]:
        r = L["resources"]
        lines.append(f"| {L['name']} | {L['kind']} | {L['rf']} | {L['lanes']} | {L['cycles']:,} | {r['LUT']:,.0f} | "
                     f"{r['FF']:,.0f} | {r['BRAM_18K']:.0f} | {r['DSP']:.0f} | {L['mult_impl']} | {L['weights_in']} |")
    bd = e["resources"]["breakdown"]
    lines += ["", "Totals by part: " + "; ".join(f"{k}: LUT {v['LUT']:,.0f}, FF {v['FF']:,.0f}, BRAM18K "
                                                  f"{v['BRAM_18K']:.0f}" for k, v in bd.items()), ""]
    agg: dict = {}
    for L in e["per_layer"]:
        for part, v in L["parts"].items():
            agg[(L["kind"], part)] = agg.get((L["kind"], part), 0) + v["LUT"]
    top = sorted(agg.items(), key=lambda kv: -kv[1])[:6]
    lines += ["Largest LUT consumers: " + ", ".join(f"{k}/{p} {v:,.0f}" for (k, p), v in top), ""]

    # 3. the same design on every board
    lines += [f"## 3. Board table for the adder design above ({args.fps:,.0f} images/s at {CLOCK:.0f} MHz)", "",
              "| board | part | LUT | FF | BRAM18K | DSP | fits | re-tune first |", "|---|---|---:|---:|---:|---:|---|---|"]
    for bname in BOARDS:
        b = get_board(bname)
        eb = estimate(adder, b, CLOCK, f["reuse"], **ekw)
        fit = board_fit(eb["resources"], b, eb["per_layer"])
        cells = [f"{fit['resources'][k]['used']:,}/{fit['resources'][k]['available']:,} "
                 f"({fit['resources'][k]['utilisation_pct']:.0f}%)" for k in RESOURCES]
        hint = "-" if fit["fits"] else ", ".join(dict.fromkeys(
            L["name"] for h in fit.get("retune", []) for L in h["layers"][:2]))
        lines.append(f"| {bname} | {b.part} | " + " | ".join(cells) + f" | {fmt_fit(fit)} | {hint} |")
    lines.append("")

    # 4. verdict
    goal = [x for x in VARIANTS]
    ok_any = False
    verdict = []
    for vname, vkw in goal:
        fv = fit_reuse(adder, board, args.fps, CLOCK, **vkw)
        if fv["fits"] and fv["resources"]["DSP"] == 0 and fv["meets_target"]:
            ok_any = True
            verdict.append(f"- reached by: {vname}")
    lines += ["## 4. Verdict", ""]
    if ok_any:
        lines += verdict
    else:
        fm = f.get("max_fps_that_fits", {}).get("fps", 0)
        lines += [f"- Not reached on {BOARD} by this estimate. Every window layer meets the {args.fps:,.0f} images/s "
                  f"interval with DSP = 0, but the LUTs do not fit: {f['resources']['LUT']:,} LUT needed vs "
                  f"{board.lut:,} available with all design changes above ({fmt_fit(f['board_fit'])}); "
                  f"the fastest balanced design that fits runs at about {fm:,.0f} images/s.",
                  "- As generated today the design does not fit at any frame rate: the requant processes run "
                  "C lanes (one pixel per cycle) and the streams default to one image deep.",
                  "- The SAD lanes themselves are not the problem (see the per-layer table); the estimate is "
                  "yosys-calibrated and yosys maps adders less tightly than Vivado, so a Vivado run is needed "
                  "to settle the last ~10%."]
    lines.append("")
    OUT_MD.parent.mkdir(parents=True, exist_ok=True)
    OUT_MD.write_text("\n".join(lines))
    png = BUILD / "compare.png"
    if png.is_file():
        (OUT_MD.with_suffix(".png")).write_bytes(png.read_bytes())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
