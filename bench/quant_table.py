"""Issue 4's table for the project: FP vs the authors' recipe, + BN re-estimation, QSSF, + per-channel
bias correction, and ours (redistribution+), W8/6/5/4/3, golden model on all of test1k.

Calibration: train2k images 0-511 (cached). Options of ours were chosen on train2k images 1000-1999
(bench/quant_select.py). Writes bench/results/quant_table.md.
Usage: .venv/bin/python bench/quant_table.py [--bits 8 6 5 4 3] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from quant_experiment import CALIB, RUNS, Experiment, markdown_table, official_resnet20_or_exit
from flow.quant.redistribution import default_alpha

AUTHORS = dict(method="redistribution", groups=4, alpha=0.9997, bias_correction=False)
SKIP_AT_3 = ("authors' recipe as published", "+ BN re-estimation", "one shared scale (QSSF-style)")
COLUMNS = [
    ("authors' recipe as published", AUTHORS),
    ("+ BN re-estimation", dict(AUTHORS, bn_reestimation=True)),
    ("one shared scale (QSSF-style)", dict(method="qssf", alpha=1.0, bias_correction=False)),
    ("+ per-channel bias correction", dict(AUTHORS, bias_correction=True)),
    ("ours: redistribution+", dict(method="redistribution+")),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 5, 4, 3])
    ap.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    ap.add_argument("--columns", type=int, nargs="+", default=None, help="only these columns (0-based)")
    ap.add_argument("--all", action="store_true", help="also run the columns the issue leaves empty at W3A3")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "quant_table.md"))
    args = ap.parse_args(argv)
    loaded = official_resnet20_or_exit()
    graph, xtr, _, xte, yte = loaded
    xte, yte = xte[:args.limit], yte[:args.limit]
    ex = Experiment(graph, xtr[CALIB])
    t0 = time.time()
    fp = ex.float_accuracy_cached("test1k", xte, yte, RUNS)
    rows = []
    for b in args.bits:
        row = [f"W{b}A{b}"]
        for ci, (label, cfg) in enumerate(COLUMNS):
            if args.columns is not None and ci not in args.columns:
                row.append("(not run)")
                continue
            if b == 3 and label in SKIP_AT_3 and not args.all:
                row.append("–")
                continue
            acc, _ = ex.accuracy_cached("test1k", xte, yte, RUNS, bits=b, **cfg)
            row.append(acc)
            print(f"W{b}A{b} {label}: {acc:.2f}", flush=True)
        row.append(f"{row[-1] - fp:+.2f}" if isinstance(row[-1], float) else "")
        rows.append(row)
    header = ["bits", "FP"] + [c for c, _ in COLUMNS] + ["ours: drop vs FP"]
    rows = [[r[0], fp] + r[1:] for r in rows]
    alphas = ", ".join(f"W{b}: {default_alpha('redistribution+', b)}" for b in args.bits)
    text = (f"# Quantized ResNet-20 (official AdderNet checkpoint), top-1 % on {len(yte)} test1k images, golden model\n\n"
            f"Calibration: first 512 images of train2k. Authors' recipe: g = 4, alpha = 0.9997 (per batch of 128, "
            f"max over batches), signed weight grid, SAD |aq - 2wq|, lossless range clamp. Ours "
            f"(`--method redistribution+`): one-sided lossless range clamp on the activation grid (unsigned "
            f"weights, SAD |aq - wq|) + sequential per-channel bias correction; alpha per bit width chosen on "
            f"train2k images 1000-1999 ({alphas}). First conv and classifier: 8-bit weights.\n\n"
            + markdown_table(header, rows)
            + f"\n\nResults are stored in bench/results/quant_runs.json (with golden-model seconds per run) and "
              f"re-used. This run: {time.time() - t0:.0f} s.\n\n"
              f"Command: `.venv/bin/python bench/quant_table.py --bits {' '.join(map(str, args.bits))}`\n")
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
