"""AdderNet gradient vs plain sign gradient: adder_small trained on sklearn digits (held-out 20%).

Same recipe as `adderflow train --model adder_small --data digits` (SGD 0.9, wd 5e-4, cosine from 0.1,
batch 64), same seeds and epochs for both gradient rules. Writes bench/results/train_digits.md.

    .venv/bin/python bench/train_digits.py [--epochs 10] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from flow.train import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_digits.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for rule in ("addernet", "sign"):
        for seed in seeds:
            cfg = TrainConfig(model="adder_small", data="digits", epochs=args.epochs, batch_size=args.batch_size,
                              adder_gradient=rule, seed=seed)
            t0 = time.perf_counter()
            _, res = train(cfg, progress=False, log=False)
            wall = time.perf_counter() - t0
            rows.append((rule, seed, res.val_accuracy, res.train_accuracy, res.history[-1]["loss"], wall))
            print(f"{rule:8s} seed {seed}: held-out {100 * res.val_accuracy:.2f}%  ({wall:.1f} s)", flush=True)
    lines = [
        "# adder_small on sklearn digits: AdderNet gradient vs sign gradient",
        "",
        f"Command: `.venv/bin/python bench/train_digits.py --epochs {args.epochs} --seeds {args.seeds}` "
        f"(same recipe as `adderflow train --model adder_small --data digits --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --adder-gradient RULE --seed S`).",
        f"Data: 1438 train / 359 held-out images (fixed 80/20 split). Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores (shared with other jobs, so wall times are indicative; the first run includes numba's one-off compile).",
        "",
        "| adder_gradient | seed | held-out accuracy | final train accuracy | final train loss | wall time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule, seed, val, tr, loss, wall in rows:
        lines.append(f"| {rule} | {seed} | {100 * val:.2f}% | {100 * tr:.2f}% | {loss:.4f} | {wall:.1f} |")
    lines.append("")
    for rule in ("addernet", "sign"):
        vals = [r[2] for r in rows if r[0] == rule]
        lines.append(f"- **{rule}**: mean held-out accuracy {100 * sum(vals) / len(vals):.2f}% over {len(vals)} seed(s)")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
