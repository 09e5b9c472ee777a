"""One adder layer against its CNN twin as its lane count grows (yosys synth_xilinx, xc7z020, LUT-only
products: the zero-DSP build's `-nodsp`): how much of the AdderNet LUT saving a layer shows depends on how
much of it is lanes rather than line buffer, weight ROM, requant and control.

    python bench/rtl_adder_vs_cnn.py [--layer layer1_0_conv1] [--rf 144,16,4] [--root build/bench_rtl]

For each RF: `adderflow hls --qnet R20/qnet --board pynq-z2 --shift-add --reuse 100000 --reuse-config
{layer: RF}` (the other layers as in the smallest design), `adderflow rtl`, `adderflow synth --yosys
--layers LAYER --no-whole`, and the twin (bench/rtl_vs_estimate.make_twin: every adder2d a conv2d of the
same integer weights, synthesised the same way). R20 is bench/rtl_resnet20.py's build. Steps already done
are reused. Writes bench/results/rtl_adder_vs_cnn.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))


def adderflow(*args) -> None:
    print("$ adderflow", " ".join(map(str, args)), flush=True)
    if subprocess.run([sys.executable, "-m", "flow", *map(str, args)], cwd=REPO).returncode != 0:
        raise SystemExit(f"adderflow {args[0]} failed")


def layer_figures(build: Path, layer: str) -> dict:
    return json.loads((build / "report.json").read_text())["yosys"]["layers"][layer]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="layer1_0_conv1")
    ap.add_argument("--rf", default="144,16,4")
    ap.add_argument("--r20", type=Path, default=REPO / "build" / "bench_rtl" / "r20")
    ap.add_argument("--root", type=Path, default=REPO / "build" / "bench_rtl")
    args = ap.parse_args(argv)
    import rtl_vs_estimate as rv

    from flow import qnet as qnet_mod
    from flow.hls import schedule

    net = qnet_mod.load(args.r20 / "qnet")
    op = net.op(args.layer)
    n_in, cout = schedule.inputs_per_output(op), net.tensors[op.output].shape[-1]
    rows = []
    for rf in (int(v) for v in args.rf.split(",")):
        b = args.root / f"r20_{args.layer}_rf{rf}"
        if not (b / "report.json").is_file():
            cfg = args.root / f"{args.layer}_rf{rf}.yaml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(f"{args.layer}: {rf}\n")
            adderflow("hls", "--qnet", args.r20 / "qnet", "--board", "pynq-z2", "--shift-add", "--reuse", 100000,
                      "--reuse-config", cfg, "--out", b)
        if not (b / "rtl" / "manifest.json").is_file():
            adderflow("rtl", b)
        if args.layer not in (json.loads((b / "report.json").read_text()).get("yosys") or {}).get("layers", {}):
            adderflow("synth", b, "--yosys", "--layers", args.layer, "--no-whole", "--jobs", 1, "--force")
        twin = b.with_name(b.name + "_cnn_twin")
        if not (twin / "report.json").is_file() or "yosys" not in json.loads((twin / "report.json").read_text()):
            rv.make_twin(rv.load_build(b), twin, 1, [args.layer], 3600)
        a, c = layer_figures(b, args.layer), layer_figures(twin, args.layer)
        rows.append({"rf": rf, "lanes": cout * n_in // rf, "a": a, "c": c})
    lines = [f"# {args.layer}: adder layer vs its CNN twin by lane count (yosys, xc7z020, products in LUTs)", "",
             f"Made by `python bench/rtl_adder_vs_cnn.py --layer {args.layer} --rf {args.rf}`; W4A4 ResNet-20 "
             f"(official checkpoint), {n_in} inputs per output, {cout} filters; lanes = filters x inputs / RF. The "
             "whole layer process is counted: line buffer, lanes and adder trees, weight ROM, fused requant, control.",
             "", "| RF | lanes | LUT adder | LUT CNN | LUT saving | FF adder | FF CNN | CARRY adder | CARRY CNN | DSP |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, c = r["a"], r["c"]
        lines.append(f"| {r['rf']} | {r['lanes']:,} | {a['LUT']:,} | {c['LUT']:,} | {100 * (1 - a['LUT'] / c['LUT']):.1f} % | "
                     f"{a['FF']:,} | {c['FF']:,} | {a['CARRY']:,} | {c['CARRY']:,} | {a['DSP']} / {c['DSP']} |")
    lines += ["", "Reference: AdderNet-FPGA reports 65 % less LUT for one 8-bit layer; the per-PE figures at 4 and 8 "
              "bits are in bench/results/pe_cost.md (yosys)."]
    out = REPO / "bench" / "results" / "rtl_adder_vs_cnn.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
