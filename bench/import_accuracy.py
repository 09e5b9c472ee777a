"""Imported official AdderNet ResNet-20 (Keras) vs the independent numpy reference on CIFAR-10 test1k.

    .venv/bin/python bench/import_accuracy.py [--ckpt ../shared/models/ResNet20-AdderNet.pth]
                                              [--data ../shared/data/cifar10_test1k.npz]

Writes bench/results/import_accuracy.md: accuracy of both, their agreement, the largest logit error
relative to the largest reference logit, and the Keras evaluation time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from flow import data  # noqa: E402
from flow.paths import shared_dir  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "import_accuracy.md"


def main() -> int:
    shared = shared_dir()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=shared / "models" / "ResNet20-AdderNet.pth" if shared else None)
    ap.add_argument("--data", type=Path, default=shared / "data" / "cifar10_test1k.npz" if shared else None)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--backends", default="numba,tf", help="AdderConv2D backends to time (first one is checked)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.ckpt is None or args.data is None:
        ap.error("../shared is absent: pass --ckpt and --data")

    from flow.checkpoint import load_state_dict
    from flow.importer import keras_from_state_dict
    from flow.models import predict_logits
    from flow.reference import resnet20_predict

    x, y = data.load_dataset(args.data)
    xf = data.preprocess(x)
    sd = load_state_dict(args.ckpt)
    from flow.layers.adder import BACKEND_ENV

    timings, keras_logits = {}, None
    for backend in args.backends.split(","):
        os.environ[BACKEND_ENV] = backend  # read when the model's predict function is traced
        t0 = time.perf_counter()
        model = keras_from_state_dict(sd, "resnet20", source=str(args.ckpt))
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = predict_logits(model, xf, batch_size=args.batch_size, progress=True, desc=f"keras/{backend}")
        timings[backend] = (time.perf_counter() - t0, float((logits.argmax(1) == y).mean()),
                            float(np.abs(logits - (keras_logits if keras_logits is not None else logits)).max()))
        keras_logits = logits if keras_logits is None else keras_logits
    t0 = time.perf_counter()
    ref_logits = resnet20_predict(sd, xf, batch_size=args.batch_size)
    t_ref = time.perf_counter() - t0

    acc_r = float((ref_logits.argmax(1) == y).mean())
    agree = float((keras_logits.argmax(1) == ref_logits.argmax(1)).mean())
    rel_global = float(np.abs(keras_logits - ref_logits).max() / np.abs(ref_logits).max())
    rel_per_image = float((np.abs(keras_logits - ref_logits).max(1) / np.abs(ref_logits).max(1)).max())
    n = len(y)
    lines = [
        "# Imported official AdderNet ResNet-20 on CIFAR-10 test1k",
        "",
        f"Command: `.venv/bin/python bench/import_accuracy.py` (checkpoint `{args.ckpt.name}`, data `{args.data.name}`, "
        f"{n} images, preprocessing x/255, mean {data.CIFAR_MEAN}, std {data.CIFAR_STD}).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (times indicative).",
        "",
        "| model | accuracy | time (s) | images/s |",
        "| --- | --- | --- | --- |",
        *[f"| Keras import, AdderConv2D backend `{b}` (batch {args.batch_size}, incl. first-call compile) "
          f"| {100 * a:.2f}% | {t:.1f} | {n / t:.1f} |" for b, (t, a, _) in timings.items()],
        f"| numpy/numba reference (`flow.reference`) | {100 * acc_r:.2f}% | {t_ref:.1f} | {n / t_ref:.1f} |",
        "",
        "| check | value |",
        "| --- | --- |",
        f"| top-1 agreement Keras vs reference | {100 * agree:.2f}% |",
        f"| max abs logit error / max abs reference logit | {rel_global:.2e} |",
        f"| worst image: max abs logit error / its max abs logit | {rel_per_image:.2e} |",
        *[f"| max abs logit difference, backend `{b}` vs `{args.backends.split(',')[0]}` | {d:.2e} |"
          for b, (_, _, d) in list(timings.items())[1:]],
        f"| state dict -> Keras model (build + assign) | {t_import:.1f} s |",
        "",
        f"Expected: 91.60% (official float accuracy on test1k); logits within 1e-3 relative: "
        f"{'yes' if rel_global < 1e-3 else 'NO'}.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
