"""Your own adder network, quantization-aware, to a bit-exact C simulation: the example to copy.

1. define a small adder net in QKeras with the flow.qat layers and quantizers (below: `build`),
2. train it with QAT (flow.qat.train.train_qat: SGD, cosine LR, validation split of the training data,
   a checkpoint per epoch) on scikit-learn's 8x8 digits,
3. export the trained model to a QNet (flow.qat.export_qnet: BN folded, exactly the integers of the
   fake-quant forward) and score it with the golden model,
4. build it with the HLS flow (`adderflow hls --qnet`) and C-simulate the test images: 0 mismatches
   against the golden model.

Writes bench/results/qat_custom_net.md.

    .venv/bin/python bench/qat_custom_net.py [--bits 4] [--epochs 12] [--csim 359] [--work build/qat_custom_net]

About a minute of training on 2 CPU cores, plus the C++ compile of the HLS project.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's flow package, not another installed one

import numpy as np  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "qat_custom_net.md"


def build(bits: int = 4, alpha: float = 2.0, input_shape=(8, 8, 1), classes: int = 10):
    """A small QAT adder net: int8 input, 8-bit first conv, two `bits`-bit adder layers, 8-bit classifier.

    The rules the export checks: one QATInput first; each ReLU is a QATActivation(ActQuantizer) after a
    BatchNormalization (or Add); an adder layer's kernel grid is its input's grid (same bits and alpha);
    the first conv and the classifier carry a ChannelKernelQuantizer; the last layer is the signed logits
    quantizer. All activations share one width."""
    import tensorflow as tf
    from qkeras import QConv2D

    from flow.models import BN_MOMENTUM
    from flow.qat.layers import QATActivation, QATAdderConv2D, QATInput
    from flow.qat.quantizers import ActQuantizer, AdderKernelQuantizer, ChannelKernelQuantizer, SignedQuantizer

    L = tf.keras.layers
    # PyTorch's BN momentum (flow.models): Keras' 0.99 would leave the running statistics at their start
    # values after a short run, and the exported (inference) network is built from them
    bn = lambda name: L.BatchNormalization(momentum=BN_MOMENTUM, name=name)  # noqa: E731
    act = lambda name: QATActivation(ActQuantizer(bits, alpha), name=name)  # noqa: E731  ReLU on [0, alpha]

    def adder(x, filters, stride, name):
        return QATAdderConv2D(filters, 3, strides=stride, padding=1, use_bias=False, name=name,
                              kernel_initializer=tf.keras.initializers.RandomNormal(stddev=1.0),  # AdderNet's N(0, 1)
                              kernel_quantizer=AdderKernelQuantizer(bits, alpha),
                              input_quantizer=ActQuantizer(bits, alpha))(x)

    inputs = tf.keras.Input(shape=input_shape, name="input")
    # pixel values 0..255 -> x/255, (x - 0.5)/0.5, int8 grid: what the board driver sends
    x = QATInput([0.5] * input_shape[-1], [0.5] * input_shape[-1], SignedQuantizer(8, 1 / 127), name="input_quant")(inputs)
    x = L.ZeroPadding2D(1, name="conv1_pad")(x)
    x = QConv2D(16, 3, use_bias=False, kernel_quantizer=ChannelKernelQuantizer(8), name="conv1")(x)
    x = act("relu")(bn(name="bn1")(x))
    x = adder(x, 32, 1, "adder1")
    x = act("relu1")(bn(name="bn_adder1")(x))
    x = adder(x, 32, 2, "adder2")
    x = act("relu2")(bn(name="bn_adder2")(x))
    x = L.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
    x = QConv2D(classes, 1, use_bias=False, kernel_quantizer=ChannelKernelQuantizer(8), name="fc")(x)
    x = L.Flatten(name="flatten")(bn(name="bn2")(x))
    outputs = QATActivation(SignedQuantizer(16, 1 / 1024), name="logits")(x)   # int16 logits
    return tf.keras.Model(inputs, outputs, name=f"custom_adder_w{bits}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--steps-per-epoch", type=int, default=None)
    ap.add_argument("--csim", type=int, default=359, help="test images to C-simulate (0: skip the HLS step)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "qat_custom_net")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import tensorflow as tf

    import flow.qat as qat
    from flow.data import load_dataset
    from flow.qat.train import QATConfig, train_qat

    work = args.work
    if work.exists():
        shutil.rmtree(work)     # a scratch folder of this script
    work.mkdir(parents=True)
    tf.keras.utils.set_random_seed(0)
    model = build(args.bits)
    model.summary(print_fn=lambda *a, **k: None)

    # 2. QAT from scratch: the float recipe's lr 0.1, BN on batch statistics (nothing to keep yet)
    cfg = QATConfig(data="digits", epochs=args.epochs, batch_size=64, lr=0.1, steps_per_epoch=args.steps_per_epoch,
                    bn_stats="batch", bn_standardize=0)
    t0 = time.perf_counter()
    summary = train_qat(model, cfg, work / "run", preprocess=lambda x: np.asarray(x, np.float32),
                        export=qat.export_qnet, golden=qat.golden_accuracy, progress=False)
    train_s = time.perf_counter() - t0

    # 3. the exported QNet, scored on the held-out digits with the golden (integer) model
    from flow.qnet import load as load_qnet

    qnet_dir = work / "run" / "qnet"
    qnet = load_qnet(qnet_dir)
    x_test, y_test = load_dataset("digits", split="test")
    golden_acc = qat.golden_accuracy(qnet, x_test, y_test)
    keras_acc = float((np.asarray(model(x_test.astype(np.float32), training=False)).argmax(1) == y_test).mean())
    print(f"golden model {100 * golden_acc:.2f}%, Keras fake-quant forward {100 * keras_acc:.2f}% on "
          f"{len(y_test)} test digits", flush=True)

    # 4. the HLS flow on the QNet, C simulation against the golden model
    csim = None
    if args.csim:
        data = work / "digits_test.npz"
        np.savez(data, x=x_test, y=y_test)
        cmd = [sys.executable, "-m", "flow", "hls", "--qnet", str(qnet_dir), "--out", str(work / "hls"),
               "--csim", str(args.csim), "--data", str(data)]
        print("$ " + " ".join(cmd), flush=True)
        t1 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
        sys.stdout.write(proc.stdout[-2000:])
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-2000:])
            return proc.returncode
        rep = json.loads((work / "hls" / "report.json").read_text())
        csim = {"seconds": time.perf_counter() - t1, **(rep.get("csim") or {})}
    write_results(args, summary, golden_acc, keras_acc, len(y_test), train_s, csim, qnet)
    if csim is not None and csim.get("mismatches") not in (0, None):
        print(f"C simulation differs from the golden model on {csim.get('mismatches')} images", file=sys.stderr)
        return 1
    return 0


def write_results(args, summary, golden_acc, keras_acc, n_test, train_s, csim, qnet) -> None:
    h = summary["history"]
    lines = [
        f"# Your own adder net with QAT, W{args.bits}A{args.bits}, to a bit-exact C simulation",
        "",
        f"Command: `.venv/bin/python bench/qat_custom_net.py --bits {args.bits} --epochs {args.epochs} "
        f"--csim {args.csim}` (the network: `build()` in bench/qat_custom_net.py).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs.",
        "",
        f"- **Network:** int8 input, 8-bit conv 3x3x16, adder 3x3x32, adder 3x3x32 stride 2 (W{args.bits}A{args.bits}), "
        f"global pool, 8-bit classifier, int16 logits; {len(qnet.ops)} QNet ops.",
        f"- **QAT:** sklearn digits, {summary['train_n']} training / {summary['val_n']} validation images (split of the "
        f"training part), {len(h)} epochs x {summary['steps_per_epoch']} steps of 64, {summary['schedule']}, "
        f"{train_s:.0f} s ({summary['seconds_per_epoch']:.1f} s/epoch); best validation epoch {summary['best_epoch']} "
        f"({100 * summary['best_val_accuracy']:.2f}%; golden model of its export on the same images "
        f"{100 * summary['golden_val_accuracy']:.2f}%).",
        f"- **Test (the 359 held-out digits):** golden model {100 * golden_acc:.2f}%, Keras fake-quant forward "
        f"{100 * keras_acc:.2f}%.",
    ]
    if csim is not None:
        lines.append(f"- **HLS C simulation** (`adderflow hls --qnet`): {csim.get('images')} images, "
                     f"**{csim.get('mismatches')} mismatches** against the golden model, accuracy "
                     f"{_pct(csim.get('accuracy'))}; {csim['seconds']:.0f} s for writing, compiling and simulating.")
    lines += ["", "| epoch | loss | train acc | val acc | s |", "|---|---|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['loss']:.3f} | {100 * r['train_accuracy']:.1f} | {100 * r['val_accuracy']:.1f} | "
              f"{r['seconds']:.1f} |" for r in h]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n")


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"


if __name__ == "__main__":
    raise SystemExit(main())
