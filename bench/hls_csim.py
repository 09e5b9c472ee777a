"""C-simulation benchmark: ResNet-20 adder (AdderVitis, ours) vs resnet20_cnn (stock hls4ml Vitis), W4.

For each: wall time of the whole `adderflow hls` command, of writing the HLS project, of the g++
compile, C-simulation images/s, mismatches vs the integer golden model (adder only; stock hls4ml has
no integer golden model), accuracy on the C-simulated images. Writes bench/results/hls_csim.md.

    .venv/bin/python bench/hls_csim.py [--images 100] [--bits 4] [--out build/bench_hls]

Needs ../shared (checkpoint + CIFAR-10 subsets). The CNN twin has no checkpoint: seeded random weights,
its accuracy is meaningless (shown only to prove the path runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_build(model: str, out: Path, images: int, bits: int, shared: Path, reuse: int | None, board: str) -> dict:
    cmd = [str(REPO / ".venv" / "bin" / "adderflow"), "hls", "--model", model, "--bits", str(bits),
           "--board", board, "--out", str(out), "--csim", str(images),
           "--data", str(shared / "data" / "cifar10_test1k.npz"), "--force"]
    if reuse or model == "resnet20_cnn":   # the adder default: the fastest zero-DSP design that fits the board
        cmd += ["--reuse", str(reuse or 16)]
    if model == "resnet20":
        cmd += ["--weights", str(shared / "models" / "ResNet20-AdderNet.pth"),
                "--calib", str(shared / "data" / "cifar10_train2k.npz")]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    sys.stdout.write(proc.stdout[-3000:])
    if proc.returncode not in (0,):
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{model}: adderflow hls exited {proc.returncode}")
    rep = json.loads((out / "report.json").read_text())
    return {"wall": wall, "report": rep, "cmd": " ".join(cmd[1:])}


def fmt(v, spec="{:.1f}"):
    return "–" if v is None else spec.format(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--reuse", type=int, default=None, help="default: the design `adderflow hls` picks")
    ap.add_argument("--board", default="kv260")
    ap.add_argument("--out", default=str(REPO / "build" / "bench_hls"))
    ap.add_argument("--models", default="resnet20")
    args = ap.parse_args(argv)
    shared = Path(os.environ.get("ADDERFLOW_SHARED", REPO.parent / "shared"))
    if not (shared / "data" / "cifar10_test1k.npz").is_file():
        raise SystemExit(f"{shared} lacks data/cifar10_test1k.npz (set ADDERFLOW_SHARED)")
    rows = []
    for model in args.models.split(","):
        r = run_build(model, Path(args.out) / model, args.images, args.bits, shared, args.reuse, args.board)
        rep = r["report"]
        cs = rep.get("csim") or {}
        steps = rep.get("hls", {}).get("step_seconds", {})
        write_s = steps.get("write HLS project", steps.get("write HLS project (stock Vitis)"))
        rows.append({
            "model": model, "backend": rep.get("hls", {}).get("backend"), "wall": r["wall"], "write": write_s,
            "compile": cs.get("compile_s"), "ips": cs.get("csim_images_per_s"), "images": cs.get("images"),
            "mism": cs.get("mismatches"), "outputs": cs.get("outputs_compared"), "acc": cs.get("accuracy"),
            "gacc": cs.get("golden_accuracy"), "cmd": r["cmd"],
            "mults": rep.get("hls", {}).get("layers_with_multipliers"),
            "qk_agree": cs.get("qkeras_top1_agreement"), "qk_corr": cs.get("qkeras_logit_correlation"),
            "quant_s": steps.get("quantized network"), "design": rep.get("hls", {}).get("design"),
            "path": cs.get("path"), "fps_est": (rep.get("latency") or {}).get("images_per_s"),
        })
    lines = [
        f"# C simulation: ResNet-20 adder (AdderVitis) vs resnet20_cnn (stock hls4ml), W{args.bits}A{args.bits}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), g++ "
        f"{subprocess.run(['g++', '-dumpversion'], capture_output=True, text=True).stdout.strip()}; "
        f"{args.images} CIFAR-10 test images (first of test1k); board {args.board}; reuse "
        f"{args.reuse or 'the default design (fastest zero-DSP that fits, LUT <= 85%, estimate)'}.",
        "",
        "| model | backend | whole command (s) | write project (s) | g++ compile (s) | csim images/s | "
        "mismatches vs golden | accuracy (csim) | accuracy (golden) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mism = "n/a (no integer golden)" if r["mism"] is None else f"{r['mism']} of {r['outputs']} values"
        acc = fmt(None if r["acc"] is None else 100 * r["acc"], "{:.1f}%")
        if r["model"] == "resnet20_cnn":
            acc += " (seeded weights: meaningless)"
        lines.append(f"| {r['model']} | {r['backend']} | {fmt(r['wall'])} | {fmt(r['write'])} | {fmt(r['compile'])} | "
                     f"{fmt(r['ips'], '{:.2f}')} | {mism} | {acc} | "
                     f"{fmt(None if r['gacc'] is None else 100 * r['gacc'], '{:.1f}%')} |")
    lines += ["", "Commands:", ""] + [f"    adderflow {r['cmd']}" for r in rows]
    lines += [""]
    for r in rows:
        if r["model"] == "resnet20" and r["quant_s"] is not None:
            lines.append(f"- resnet20: the whole command includes quantization ({r['quant_s']:.1f} s here; flow.quant "
                         "caches calibration statistics, a first run on a machine takes minutes longer) and the "
                         "golden model on the same images; `write project` is hls4ml conversion + writing files.")
        if r["qk_agree"] is not None:
            lines.append(f"- {r['model']}: its C simulation agrees with its own QKeras model on "
                         f"{100 * r['qk_agree']:.0f}% of top-1 predictions (logit correlation {r['qk_corr']:.4f}); "
                         "stock hls4ml has no integer golden model, so no exact mismatch count exists for it.")
    for r in rows:
        if r["path"]:
            lines.append(f"- {r['model']}: design {r['design']} ({r['fps_est']:,.0f} images/s, estimate); C simulation "
                         f"runs the synthesized code through {r['path']} (one C++ path: no simulation-only branch), "
                         "chunks of images per call in worker processes.")
    md = "\n".join(lines) + "\n"
    dst = REPO / "bench" / "results" / "hls_csim.md"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
