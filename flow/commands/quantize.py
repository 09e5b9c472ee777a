"""`adderflow quantize`: float model + calibration images -> integer QNet folder (qnet.json/.npz) plus
quant_summary.json/.md with every scale, group, clamp and bias."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(p) -> None:
    from flow.models import MODELS
    from flow.quant.redistribution import DEFAULT_METHOD, METHODS

    p.add_argument("--model", required=True, choices=list(MODELS), help="network architecture")
    p.add_argument("--weights", help="checkpoint (.pth/.pt, no torch needed) or Keras model (.keras/.h5); "
                                     "omitted: seeded random weights (accuracy meaningless)")
    p.add_argument("--calib", required=True, help="calibration images: .npz (x uint8 NHWC), CIFAR-10 batches folder, or 'digits'")
    p.add_argument("--calib-limit", type=int, default=512, help="first N calibration images (default 512)")
    p.add_argument("--bits", type=int, default=4, help="weight/activation bits of the adder layers, 2..8 (default 4)")
    p.add_argument("--groups", type=int, default=4, help="k-means weight groups per layer (redistribution; default 4)")
    p.add_argument("--alpha", default=None,
                   help="activation outlier clamp: quantile in (0, 1], or 'mse' (default: chosen per method/bits on a train split)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS),
                   help="redistribution+ (ours: one-sided lossless clamp on the activation grid + bias correction), "
                        "redistribution (Nie et al. 2022 as published), qssf (one shared scale)")
    p.add_argument("--no-range-clamp", dest="range_clamp", action="store_false", help="drop the lossless range-clamp bias")
    p.add_argument("--bias-correction", dest="bias_correction", action="store_true", default=None,
                   help="per-channel bias correction on calibration data (default on for redistribution+)")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false")
    p.add_argument("--bn-reestimation", action="store_true", help="re-estimate BatchNorm statistics on calibration data")
    p.add_argument("--affine-correction", action="store_true",
                   help="per-channel least-squares scale and offset against the float network (extends bias correction)")
    p.add_argument("--bits-first", type=int, default=8, help="weight bits of the first conv (default 8)")
    p.add_argument("--bits-last", type=int, default=8, help="weight bits of the classifier (default 8)")
    p.add_argument("--apot-first", action="store_true", help="APoT weights (shift-add) for the first conv")
    p.add_argument("--apot-last", action="store_true", help="APoT weights (shift-add) for the classifier")
    p.add_argument("--apot-requant", type=int, default=0, metavar="K",
                   help="requant multipliers as at most K signed powers of two (0 = off)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached calibration statistics")


def parse_alpha(text):
    if text is None:
        return None
    if str(text).lower() == "mse":
        return "mse"
    try:
        a = float(text)
    except ValueError:
        raise AdderFlowError(f"--alpha must be a number in (0, 1] or 'mse', got '{text}'") from None
    if not (0 < a <= 1) or math.isnan(a):
        raise AdderFlowError(f"--alpha must lie in (0, 1], got {text}")
    return a


def load_calibration(source, limit):
    """Calibration images (uint8); NaN/inf or empty data is named before the loader's own checks."""
    from flow.data import check_limit, load_dataset

    check_limit(limit, "--calib-limit")
    p = Path(str(source))
    if p.suffix == ".npz" and p.is_file():
        import numpy as np

        try:
            with np.load(p) as z:
                x = z["x"] if "x" in z.files else None
        except Exception as exc:
            raise AdderFlowError(f"{p}: cannot read calibration data ({type(exc).__name__})") from None
        if x is not None and x.size == 0:
            raise AdderFlowError(f"{p}: calibration data has no samples")
        if x is not None and x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise AdderFlowError(f"{p}: calibration data contains NaN or infinite values")
    x, _ = load_dataset(source, split="train", limit=limit)
    return x


def out_dir(args, inputs, mark: bool = True):
    """--out of quantize/inspect: checked now (flow.outputs), written beside it and swapped in when done."""
    from flow.outputs import staged_output

    return staged_output(Path(args.out), args.force, inputs=[i for i in inputs if i], kind="dir", what="--out",
                         mark=mark)


def run(args) -> int:
    from flow.quant.redistribution import QuantConfig

    from flow.data import check_limit

    check_limit(args.calib_limit, "--calib-limit")
    out = Path(args.out)
    from flow.outputs import check_output

    inputs = [args.weights, args.calib]
    check_output(out, args.force, inputs=inputs, kind="dir", what="--out")   # before the (long) quantization
    cfg = QuantConfig(bits=args.bits, groups=args.groups, alpha=parse_alpha(args.alpha), method=args.method,
                      range_clamp=args.range_clamp, bias_correction=args.bias_correction,
                      bn_reestimation=args.bn_reestimation, affine_correction=args.affine_correction, bits_first=args.bits_first, bits_last=args.bits_last,
                      apot_first=args.apot_first, apot_last=args.apot_last, apot_requant=args.apot_requant)
    cfg.check()
    x = load_calibration(args.calib, args.calib_limit)
    from flow.quant.api import load_graph, quantize_graph
    from flow.quant.calibrate import check_images

    if args.weights is None:
        print(f"adderflow quantize: WARNING: no --weights: seeded random {args.model} weights, accuracy is meaningless",
              file=sys.stderr)
    graph = load_graph(args.model, args.weights)
    check_images(x, graph, str(args.calib))
    if args.weights is None:
        from flow.quant.graph import recalibrate_bn

        recalibrate_bn(graph, x[:256])
    net = quantize_graph(graph, x, cfg, progress=True, cache=not args.no_cache)
    net.meta["calibration"].update(source=str(args.calib), weights=str(args.weights))
    summary = summarize(net)
    with out_dir(args, inputs) as tmp:
        net.save(tmp)
        (tmp / "quant_summary.json").write_text(json.dumps(summary, indent=1))
        (tmp / "quant_summary.md").write_text(summary_markdown(summary))
    print(f"quantized {args.model} ({net.meta['method']}, W{args.bits}A{args.bits}) -> {out}")
    print(summary_markdown(summary))
    return 0


def summarize(net) -> dict:
    from flow.qnet import _jsonable

    layers = []
    for o in net.ops:
        d = {"op": o.name, "kind": o.kind, "inputs": list(o.inputs), "output": o.output,
             "output_bits": net.tensors[o.output].bits, "output_signed": net.tensors[o.output].signed,
             "output_scale": net.tensors[o.output].scale}
        doc = net.meta.get("layers", {}).get(o.name, {})
        d.update(doc)
        if o.kind == "adder2d":
            d["group_of_channel"] = o.arrays["group_of_channel"].tolist()
            d["range_clamp_bias"] = o.attrs.get("range_clamp_bias")
        if o.kind == "requant":
            d["mult"] = o.arrays["mult"].tolist()
            d["bias"] = o.arrays["bias"].tolist()
            d["bias_correction"] = o.attrs.get("bias_correction")
        layers.append(d)
    return _jsonable({"model": net.meta.get("model"), "bits": net.meta.get("bits"), "method": net.meta.get("method"),
                      "groups": net.meta.get("groups"), "alpha": net.meta.get("alpha"),
                      "options": net.meta.get("options"), "calibration": net.meta.get("calibration"),
                      "input_scale": net.input_quant.get("scale"), "output_scale": net.output_spec.scale,
                      "layers": layers})


def summary_markdown(s: dict) -> str:
    lines = [f"# Quantized {s['model']}: {s['method']}, W{s['bits']}A{s['bits']}", "",
             f"alpha: {s['alpha']}, groups: {s['groups']}, calibration images: {s['calibration'].get('images')}, "
             f"input scale {s['input_scale']:.5g}, output scale {s['output_scale']:.5g}", "",
             "| op | kind | out bits | A (clamp) | groups: scales | bias / shift |", "|---|---|---|---|---|---|"]
    for d in s["layers"]:
        bits = f"{d['output_bits']}{'s' if d['output_signed'] else 'u'}"
        A = f"{d['A']:.4g}" if d.get("A") is not None else ""
        if d["kind"] == "adder2d":
            grp = f"{d['groups']}: " + ", ".join(f"{v:.4g}" for v in d["group_scales"])
            extra = f"range-clamp bias mean {d['range_clamp_bias_mean']:.4g}"
        elif d["kind"] == "requant":
            grp, extra = "", f"shift {d['shift']}, alpha {d.get('alpha')}"
        elif d["kind"] in ("conv2d", "dense"):
            grp, extra = "", f"W{d.get('weight_bits')}{' APoT' if d.get('apot') else ''}"
        else:
            grp, extra = "", ""
        lines.append(f"| {d['op']} | {d['kind']} | {bits} | {A} | {grp} | {extra} |")
    return "\n".join(lines) + "\n"
