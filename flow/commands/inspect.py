"""`adderflow inspect`: per-layer weight and input-activation histograms of the adder layers with the
chosen scales marked (Nie et al. 2022, Figure 1), as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError


def add_arguments(p) -> None:
    from flow.models import MODELS

    p.add_argument("--model", required=True, choices=list(MODELS))
    p.add_argument("--weights", help="checkpoint (.pth) or Keras model; omitted: seeded random weights")
    p.add_argument("--calib", required=True, help="calibration images (.npz, CIFAR folder or 'digits')")
    p.add_argument("--calib-limit", type=int, default=512)
    p.add_argument("--qnet", help="quantized folder whose scales to mark (default: quantize with defaults)")
    p.add_argument("--bits", type=int, default=4, help="bits for the default quantization (without --qnet)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--force", action="store_true")


def run(args) -> int:
    from flow.commands.quantize import load_calibration, out_dir
    from flow.outputs import check_output
    from flow.qnet import QNetError, load
    from flow.quant.api import load_graph
    from flow.quant.calibrate import calibrate_cached, check_images
    from flow.quant.redistribution import QuantConfig, build_qnet

    out = Path(args.out)
    inputs = [args.weights, args.calib, args.qnet]
    check_output(out, args.force, inputs=inputs, kind="dir", what="--out")
    x = load_calibration(args.calib, args.calib_limit)
    graph = load_graph(args.model, args.weights)
    check_images(x, graph, str(args.calib))
    stats = calibrate_cached(graph, x, progress=True)
    if args.qnet:
        try:
            net = load(args.qnet)
        except QNetError as exc:
            raise AdderFlowError(str(exc)) from None
    else:
        net = build_qnet(graph, stats, QuantConfig(bits=args.bits, bias_correction=False))
    with out_dir(args, inputs, mark=False) as tmp:   # a folder of PNG files, not a build: no marker
        written = plot_layers(graph, stats, net, tmp)
    print(f"wrote {len(written)} PNG files to {out}")
    return 0


def plot_layers(graph, stats, net, out: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adders = [o for o in graph.ops if o.kind == "adder2d"]
    if not adders:
        raise AdderFlowError(f"model {graph.name} has no adder layers to inspect")
    written = []
    cols = 4
    rows = (len(adders) + cols - 1) // cols
    fig_all, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for i, fo in enumerate(adders):
        try:
            qop = net.op(fo.name)
        except KeyError:
            raise AdderFlowError(f"--qnet has no op {fo.name}: it was made from another model") from None
        w = fo.arrays["weight"].ravel()
        act = stats.samples.get(fo.inputs[0])
        A = float(qop.attrs.get("act_clamp", np.nan))
        scales = [float(s) for s in qop.attrs.get("group_scales", [])]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for a in (ax, axes[i // cols][i % cols]):
            _draw(a, fo.name, w, act, A, scales, net.meta.get("method", "?"))
        fig.tight_layout()
        p = out / f"{fo.name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    for j in range(len(adders), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig_all.suptitle(f"{graph.name}: weights vs input activations per adder layer "
                     f"({net.meta.get('method')}, W{net.meta.get('bits')}A{net.meta.get('bits')})")
    fig_all.tight_layout()
    p = out / "overview.png"
    fig_all.savefig(p, dpi=90)
    plt.close(fig_all)
    written.append(p)
    return written


def _draw(ax, name, w, act, A, scales, method):
    lo = min(float(w.min()), 0.0)
    hi = max(float(w.max()), float(act.max()) if act is not None else 0.0)
    bins = np.linspace(lo, hi, 120)
    ax.hist(w, bins=bins, alpha=0.6, color="tab:blue", label="weights", density=True)
    if act is not None:
        ax.hist(act[act > 0], bins=bins, alpha=0.6, color="tab:orange", label="activations (>0)", density=True)
    ax.set_yscale("log")
    if np.isfinite(A):
        ax.axvline(A, color="red", lw=1.2, label=f"A = {A:.3g}")
    for s in scales:
        ax.axvline(s, color="green", lw=0.8, ls="--")
        if method == "redistribution":
            ax.axvline(-s, color="green", lw=0.8, ls="--")
    ax.plot([], [], color="green", ls="--", label="group scales")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
