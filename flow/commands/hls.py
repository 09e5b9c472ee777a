"""`adderflow hls`: write the Vitis HLS project of a quantized network, run C simulation against the
golden model, write report.json (and .md/.png when flow.report is present).

Order of work: quantize (or load --qnet) -> write the hls4ml project (+ AXI wrapper, tb_data) ->
g++ compile + C simulation on --csim N images -> report -> vitis_hls (--synth/--cosim) last, so a
missing Vitis stops with exit 2 and every other output kept.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError, ToolMissingError

MODELS = ("resnet20", "resnet20_cnn")


def add_arguments(p):
    p.add_argument("--model", default="resnet20", choices=MODELS + ("random",),
                   help="resnet20 (adder, AdderVitis backend) or resnet20_cnn (stock hls4ml QKeras twin); "
                        "'random' builds a seeded random QNet with ResNet-20 shapes")
    p.add_argument("--weights", help="checkpoint to quantize (resnet20)")
    p.add_argument("--calib", help="calibration images .npz (or CIFAR folder) for quantization")
    p.add_argument("--calib-limit", type=int, default=512, help="first N calibration images (default 512, as the accuracy tables)")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--board", default="pynq-z2")
    p.add_argument("--clock-mhz", type=float, default=None, help="design clock (default: the board's)")
    p.add_argument("--out", required=True, help="output folder (OUT/hls_prj, OUT/qnet, OUT/report.json)")
    p.add_argument("--qnet", help="use an existing quantized network folder (QNet.save) instead of quantizing")
    p.add_argument("--csim", type=int, default=0, metavar="N", help="C-simulate N images of --data")
    p.add_argument("--data", help="test images (.npz or CIFAR folder) for --csim")
    p.add_argument("--synth", action="store_true", help="run vitis_hls csynth (needs vitis_hls on PATH)")
    p.add_argument("--cosim", action="store_true", help="run vitis_hls RTL co-simulation (needs vitis_hls)")
    p.add_argument("--reuse", type=int, default=None, help="reuse factor of every layer (default 1)")
    p.add_argument("--reuse-config", help="YAML {layer name: reuse factor}")
    p.add_argument("--target-fps", type=float,
                   help="choose per-layer reuse factors for this rate on --board (estimate); --reuse-config "
                        "entries override the choice")
    p.add_argument("--fit-board", action="store_true",
                   help="choose the fastest balanced reuse factors that fit --board (estimate); "
                        "ignored when --reuse or --target-fps is given")
    p.add_argument("--shift-add", action="store_true", help="constant multiplications as shift-add (zero DSP)")
    p.add_argument("--seed", type=int, default=0, help="seed for --model random / the CNN twin's weights")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


class Steps:
    """Step lines with timings (the long steps show their own tqdm bars)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.times = {}

    def run(self, name, fn, *a, **kw):
        print(f"[hls] {name} ...", flush=True)
        t = time.perf_counter()
        out = fn(*a, **kw)
        self.times[name] = dt = time.perf_counter() - t
        print(f"[hls] {name}: {dt:.1f} s", flush=True)
        return out


def _prepare_out(out: Path, force: bool):
    if out.exists() and any(out.iterdir()):
        if not force:
            raise AdderFlowError(f"{out} exists and is not empty (use --force to replace it)")
        for name in ("hls_prj", "qnet", "report.json", "report.md", "report.png", "keras"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _get_qnet(args):
    from flow import qnet as qnet_mod

    if args.qnet:
        try:
            return qnet_mod.load(args.qnet), f"loaded from {args.qnet}"
        except qnet_mod.QNetError as exc:
            raise AdderFlowError(str(exc)) from None
    if args.model == "random":
        from flow.hls.random_qnet import resnet20_shaped_qnet

        print("[hls] WARNING: random QNet with ResNet-20 shapes: accuracy figures are meaningless", flush=True)
        return resnet20_shaped_qnet(bits=args.bits, seed=args.seed), "random (ResNet-20 shapes)"
    if not args.calib:
        raise AdderFlowError("--model resnet20 needs --calib D.npz (calibration images) or --qnet DIR")
    if not args.weights:
        print("[hls] WARNING: no --weights: seeded random weights, accuracy figures are MEANINGLESS", flush=True)
    try:
        from flow.quant import quantize
    except ImportError:
        raise AdderFlowError("flow.quant.quantize is not available in this checkout (use --qnet DIR)") from None
    from flow.data import load_dataset

    calib, _ = load_dataset(args.calib, split="train", limit=args.calib_limit)
    net = quantize(args.model, args.weights, calib, bits=args.bits, progress=True)
    return net, f"quantized from {args.weights or 'seeded random weights'}"


def _csim_data(args, qnet):
    from flow.data import load_dataset

    if args.csim <= 0:
        return None, None
    if not args.data:
        raise AdderFlowError("--csim N needs --data D.npz (test images)")
    x, y = load_dataset(args.data, split="test", limit=args.csim)
    want = tuple(qnet.tensors[qnet.input].shape)
    if tuple(x.shape[1:]) != want:
        raise AdderFlowError(f"{args.data}: images of shape {tuple(x.shape[1:])}, the network takes {want}")
    return x, y


def run_adder(args, out: Path, board, clock_mhz, steps: Steps) -> dict:
    from flow import golden
    from flow.hls import project

    reuse_cfg = project.load_reuse_config(args.reuse_config) if args.reuse_config else None
    reuse = args.reuse or 1
    qnet, source = steps.run("quantized network", _get_qnet, args)
    qnet.save(out / "qnet")
    fit, bram_weights = None, []
    target_fps = args.target_fps
    if getattr(args, "fit_board", False) and not target_fps and not args.reuse:
        target_fps = _fastest_that_fits(qnet, board, clock_mhz, args.shift_add)
    if target_fps:
        fit = _fit_reuse(qnet, board, target_fps, clock_mhz, args.shift_add)
        reuse_cfg = {**fit["reuse"], **(reuse_cfg or {})}
        bram_weights = list(fit["design"].get("bram_weights") or [])
    images, labels = _csim_data(args, qnet)
    hls_dir = out / "hls_prj"

    def write():
        hm = project.convert(qnet, hls_dir, part=board.part, clock_mhz=clock_mhz, reuse=reuse,
                             reuse_config=reuse_cfg, shift_add=args.shift_add, bram_weights=bram_weights)
        hm.write()
        return hm

    hls_model = steps.run("write HLS project", write)
    tb_x = qnet.quantize_input(images[:10]) if images is not None else \
        np.zeros((1,) + tuple(qnet.tensors[qnet.input].shape), np.int64)
    project.write_tb_data(hls_dir, tb_x, golden.run(qnet, tb_x)[qnet.output])
    _write_axi_top(hls_dir, qnet)
    csim = None
    if images is not None:
        compile_s = steps.run("g++ compile", project.compile_model, hls_model)
        x_int = qnet.quantize_input(images)
        want = steps.run("golden model", golden.run, qnet, x_int)[qnet.output].reshape(len(x_int), -1)
        t = time.perf_counter()
        got = _csim_batches(project, hls_model, x_int)
        sim_s = time.perf_counter() - t
        mism = int(np.sum(got != want))
        csim = {"images": int(len(x_int)), "mismatches": mism, "outputs_compared": int(want.size),
                "accuracy": float(np.mean(got.argmax(1) == labels)),
                "golden_accuracy": float(np.mean(want.argmax(1) == labels)),
                "compile_s": round(compile_s, 2), "csim_s": round(sim_s, 3),
                "csim_images_per_s": round(len(x_int) / sim_s, 2) if sim_s > 0 else None}
        print(f"[hls] C simulation: {mism} mismatching output values of {want.size} vs the golden model; "
              f"accuracy {csim['accuracy']:.2%} (golden {csim['golden_accuracy']:.2%}); "
              f"{csim['csim_images_per_s']} images/s", flush=True)
    mults = project.layer_multipliers(hls_model)
    extra = {"source_network": source, "multipliers_per_layer": mults,
             "layers_with_multipliers": sorted(k for k, v in mults.items() if v)}
    if fit is not None:
        extra["target_fps_fit"] = {k: fit[k] for k in ("source", "target_fps", "reuse", "fits", "binding",
                                                       "meets_target") if k in fit}
        extra["target_fps_fit"]["images_per_s"] = fit["latency"]["images_per_s"]
        extra["target_fps_fit"]["bram_weights"] = bram_weights
    return {"qnet": qnet, "hls_dir": hls_dir, "csim": csim,
            "reuse": {"default": reuse, **reuse_cfg} if reuse_cfg else reuse, "extra": extra,
            "estimate_kw": {"bram_weights": bram_weights} if bram_weights else {}}


def _fastest_that_fits(qnet, board, clock_mhz: float, shift_add: bool) -> float | None:
    """The frame rate of the fastest balanced design that fits the board (estimate), or None."""
    from flow.report.fit import max_fps_that_fits

    best = max_fps_that_fits(qnet, board, clock_mhz, hi_fps=100_000.0, weights_to_bram=True,
                             shift_add_all=bool(shift_add))
    if not best.get("fps"):
        print(f"[hls] --fit-board: no balanced design fits {board.name} (estimate); using --reuse 1", flush=True)
        return None
    print(f"[hls] --fit-board: fastest balanced design that fits {board.name} (estimate): "
          f"{best['fps']:.0f} images/s", flush=True)
    return best["fps"] * 0.999  # just under the found rate, so the fit lands on that design


def _fit_reuse(qnet, board, target_fps: float, clock_mhz: float, shift_add: bool) -> dict:
    """fit_reuse's per-layer reuse factors (window/dense lanes and time-multiplexed requants) for the rate."""
    from flow.report import fit_reuse

    # weight ROMs move to BRAM (largest LUT saving first) only while LUT is over the board
    fit = fit_reuse(qnet, board, target_fps, clock_mhz, weights_to_bram=True, shift_add_all=bool(shift_add))
    lat, res = fit["latency"], fit["resources"]
    print(f"[hls] --target-fps {target_fps:g} on {board.name} at {clock_mhz:g} MHz (estimate): "
          f"{lat['images_per_s']:.0f} images/s, LUT {res['LUT']} FF {res['FF']} BRAM18K {res['BRAM_18K']} "
          f"DSP {res['DSP']}; fits: {'yes' if fit['fits'] else 'no'}; binding: {fit['binding'] or 'none'}"
          + ("" if fit["meets_target"] else "; the target rate is NOT met"), flush=True)
    if fit["design"].get("bram_weights"):
        print(f"[hls] weight ROMs bound to BRAM: {', '.join(fit['design']['bram_weights'])}", flush=True)
    mf = fit.get("max_fps_that_fits")
    if mf is not None:
        print(f"[hls] highest rate that fits {board.name} (estimate): "
              + (f"{mf['fps']:.0f} images/s" if mf.get("fps") else "none at any rate"), flush=True)
    return fit


def _csim_batches(project, hls_model, x_int, batch: int = 10):
    from tqdm import tqdm

    outs = []
    for i in tqdm(range(0, len(x_int), batch), desc="C simulation", unit="batch", leave=False):
        outs.append(project.csim_predict(hls_model, x_int[i:i + batch]))
    return np.concatenate(outs)


def _write_axi_top(hls_dir: Path, qnet) -> None:
    try:
        from flow.board.axi_top import write_axi_top
    except ImportError:
        return
    write_axi_top(hls_dir, qnet)


def run_cnn(args, out: Path, board, clock_mhz, steps: Steps) -> dict:
    from flow.hls import cnn_twin

    print("[hls] WARNING: resnet20_cnn has no checkpoint: seeded random weights, its accuracy is meaningless",
          flush=True)
    images, labels = (None, None)
    if args.csim > 0:
        from flow.data import load_dataset

        if not args.data:
            raise AdderFlowError("--csim N needs --data D.npz (test images)")
        images, labels = load_dataset(args.data, split="test", limit=args.csim)
    calib = cnn_twin.preprocess(images[:64], bits=args.bits) if images is not None else None
    model = steps.run("QKeras twin", cnn_twin.build_qkeras_resnet20_cnn, bits=args.bits, seed=args.seed, calib=calib)
    hls_dir = out / "hls_prj"
    hls_model = steps.run("write HLS project (stock Vitis)", cnn_twin.convert, model, hls_dir, part=board.part,
                          clock_mhz=clock_mhz, reuse=args.reuse or 1)
    csim = None
    if images is not None:
        compile_s = steps.run("g++ compile", cnn_twin.compile_model, hls_model)
        x = cnn_twin.preprocess(images, bits=args.bits)
        t = time.perf_counter()
        got = cnn_twin.csim_predict(hls_model, x)
        sim_s = time.perf_counter() - t
        ref = model.predict(x, verbose=0)
        corr = float(np.corrcoef(got.reshape(-1), ref.reshape(-1))[0, 1]) if got.std() > 0 and ref.std() > 0 else None
        csim = {"images": int(len(x)), "mismatches": None, "accuracy": float(np.mean(got.argmax(1) == labels)),
                "qkeras_logit_correlation": corr, "qkeras_max_abs_diff": float(np.abs(got - ref).max()),
                "golden_accuracy": None, "qkeras_top1_agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
                "compile_s": round(compile_s, 2), "csim_s": round(sim_s, 3),
                "csim_images_per_s": round(len(x) / sim_s, 2) if sim_s > 0 else None,
                "note": "seeded random weights: accuracy is meaningless; no integer golden model for stock hls4ml"}
        print(f"[hls] C simulation (stock hls4ml): {csim['csim_images_per_s']} images/s; top-1 agreement with "
              f"QKeras {csim['qkeras_top1_agreement']:.2%}", flush=True)
    return {"qnet": None, "hls_dir": hls_dir, "csim": csim, "reuse": args.reuse or 1,
            "extra": {"source_network": "seeded random weights (no checkpoint exists)"}}


def _write_report(out: Path, res: dict, args, board, clock_mhz, steps: Steps) -> dict:
    base = {"model": args.model, "bits": args.bits, "board": board.name, "part": board.part,
            "clock_mhz": clock_mhz}
    try:
        from flow.report import write_report
    except ImportError:
        write_report = None
    rep = None
    if write_report is not None:
        try:
            rep = write_report(out, res["qnet"], model=args.model, bits=args.bits, board=board.name,
                               clock_mhz=clock_mhz, reuse=res["reuse"], csim=res["csim"], hls_dir=res["hls_dir"],
                               shift_add_all=bool(getattr(args, "shift_add", False)), **res.get("estimate_kw", {}))
        except AdderFlowError:
            raise
        except Exception as exc:  # the report is secondary to the HLS outputs: keep them and say why
            print(f"[hls] WARNING: flow.report failed ({type(exc).__name__}: {exc}); writing the minimal report",
                  flush=True)
    if rep is None:
        rep = {**base, "source": "none", "csim": res["csim"], "latency": {}, "resources": {}}
    rep.update({k: v for k, v in base.items() if k not in rep})
    rep.setdefault("hls", {}).update({**res["extra"], "project": str(res["hls_dir"]), "backend":
                                      "AdderVitis" if res["qnet"] is not None else "Vitis (stock hls4ml)",
                                      "step_seconds": {k: round(v, 2) for k, v in steps.times.items()}})
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=_json_default))
    return rep


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _run_vitis(hls_dir: Path, synth: bool, cosim: bool) -> None:
    from flow.hls import project

    if not project.vitis_hls_available():
        raise ToolMissingError("vitis_hls is not on PATH: --synth/--cosim skipped; the HLS project, C simulation "
                               "and report were written")
    project.set_build_options(hls_dir, csim=True, synth=True, cosim=cosim, export=True)
    log = hls_dir / "vitis_hls.log"
    with open(log, "w") as fh:
        rc = subprocess.run(["vitis_hls", "-f", "build_prj.tcl"], cwd=hls_dir, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise AdderFlowError(f"vitis_hls failed (exit {rc}); see {log}")


def run(args) -> int:
    from flow.boards import get_board

    if not 2 <= args.bits <= 8:
        raise AdderFlowError(f"--bits must be 2..8, got {args.bits}")
    if args.reuse is not None and args.reuse < 1:
        raise AdderFlowError(f"--reuse must be >= 1, got {args.reuse}")
    if args.csim < 0:
        raise AdderFlowError(f"--csim must be >= 0, got {args.csim}")
    if args.target_fps is not None and args.target_fps <= 0:
        raise AdderFlowError(f"--target-fps must be positive, got {args.target_fps}")
    if args.target_fps and args.model == "resnet20_cnn":
        raise AdderFlowError("--target-fps chooses AdderVitis reuse factors; it does not apply to resnet20_cnn")
    board = get_board(args.board)
    clock_mhz = float(args.clock_mhz or board.clock_mhz)
    out = Path(args.out)
    _prepare_out(out, args.force)
    steps = Steps()
    if args.model == "resnet20_cnn":
        res = run_cnn(args, out, board, clock_mhz, steps)
    else:
        res = run_adder(args, out, board, clock_mhz, steps)
    rep = steps.run("report", _write_report, out, res, args, board, clock_mhz, steps)
    if args.synth or args.cosim:
        steps.run("vitis_hls", _run_vitis, res["hls_dir"], args.synth, args.cosim)
        rep = _write_report(out, res, args, board, clock_mhz, steps)
    print(f"[hls] wrote {out / 'report.json'} (source: {rep.get('source')}); total "
          f"{time.perf_counter() - steps.t0:.1f} s", flush=True)
    csim = res["csim"]
    return 1 if (csim and csim.get("mismatches")) else 0
