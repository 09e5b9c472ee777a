"""`adderflow hls`: a thin command-line shell over flow.hls.build (the library object).

Order of work: check every argument -> quantize (or load --qnet) -> choose the design -> write the hls4ml
project (+ AXI top, test bench data) -> g++ + C simulation of --csim N images through the IP top -> report,
all in a temporary folder swapped in complete; vitis_hls (--synth/--cosim/--fifo-opt) last, on the
swapped-in build, so a missing Vitis stops with exit 2 and every other output kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.report.estimate import TIGHT_PCT

MODELS = ("resnet20", "resnet20_cnn")


def add_arguments(p):
    p.add_argument("--model", default="resnet20", choices=MODELS + ("random",),
                   help="resnet20 (adder, AdderVitis backend) or resnet20_cnn (stock hls4ml QKeras twin); "
                        "'random' builds a seeded random QNet with ResNet-20 shapes")
    p.add_argument("--weights", help="checkpoint to quantize (resnet20)")
    p.add_argument("--calib", help="calibration images .npz (or CIFAR folder) for quantization")
    p.add_argument("--calib-limit", type=int, default=512, help="first N calibration images (default 512, as the accuracy tables)")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--board", default="kv260", help="target board (default kv260, as `make hls`)")
    p.add_argument("--clock-mhz", type=float, default=None, help="design clock (default: the board's)")
    p.add_argument("--out", required=True, help="output folder (OUT/hls_prj, OUT/qnet, OUT/report.json)")
    p.add_argument("--qnet", help="use an existing quantized network folder (QNet.save) instead of quantizing")
    p.add_argument("--csim", type=int, default=0, metavar="N", help="C-simulate N images of --data")
    p.add_argument("--data", help="test images (.npz or CIFAR folder) for --csim")
    p.add_argument("--synth", action="store_true", help="run vitis_hls csynth (needs vitis_hls on PATH)")
    p.add_argument("--cosim", action="store_true", help="run vitis_hls RTL co-simulation (needs vitis_hls)")
    p.add_argument("--no-fifo-opt", dest="fifo_opt", action="store_false",
                   help="with --cosim, skip profiling the stream FIFO depths (by default --cosim first runs hls4ml's "
                        "fifo_depth_optimization over the test-bench images, builds with the measured depths and "
                        "writes them to report.json)")
    p.add_argument("--reuse", type=int, default=None,
                   help="reuse factor of every window/dense layer (per layer the largest legal value not above "
                        "it: it must divide the layer's inputs per output); default: the fastest design that fits "
                        "--board")
    p.add_argument("--reuse-config", help="YAML {layer name: reuse factor}")
    p.add_argument("--target-fps", type=float,
                   help="choose per-layer reuse factors for this rate on --board (estimate); --reuse-config "
                        "entries override the choice")
    p.add_argument("--fit-board", action="store_true",
                   help="the default: the fastest balanced design that fits --board with LUT <= --lut-limit "
                        "(estimate); kept for scripts that pass it")
    p.add_argument("--lut-limit", type=float, default=TIGHT_PCT,
                   help=f"LUT utilisation a fitted design may reach, in %% (default {TIGHT_PCT}: the routable margin)")
    dsp = p.add_mutually_exclusive_group()
    dsp.add_argument("--shift-add", action="store_true",
                     help="zero-DSP build: every constant multiplication as shift-add (the default for adder models "
                          "whenever it fits)")
    dsp.add_argument("--plain", action="store_true",
                     help="constant multiplications may use DSPs (the default only when no zero-DSP design fits)")
    p.add_argument("--seed", type=int, default=0, help="seed for --model random / the CNN twin's weights")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


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
    from flow.commands.quantize import load_calibration

    calib = load_calibration(args.calib, args.calib_limit)
    net = quantize(args.model, args.weights, calib, bits=args.bits, progress=True)
    return net, f"quantized from {args.weights or 'seeded random weights'}"


def _csim_data(args, qnet):
    from flow.data import load_dataset

    if args.csim <= 0:
        return None, None
    x, y = load_dataset(args.data, split="test", limit=args.csim)
    want = tuple(qnet.tensors[qnet.input].shape)
    if tuple(x.shape[1:]) != want:
        raise AdderFlowError(f"{args.data}: images of shape {tuple(x.shape[1:])}, the network takes {want}")
    return x, y


def run_cnn(args, out: Path, board, clock_mhz, steps) -> dict:
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


def _write_cnn_report(out: Path, res: dict, args, board, clock_mhz, steps) -> dict:
    from flow.hls.build import _json_default
    from flow.report import write_report

    rep = write_report(out, None, model=args.model, bits=args.bits, board=board.name, clock_mhz=clock_mhz,
                       reuse=res["reuse"], csim=res["csim"], hls_dir=res["hls_dir"])
    rep.setdefault("hls", {}).update({**res["extra"], "project": str(Path(args.out) / "hls_prj"),
                                      "backend": "Vitis (stock hls4ml)",
                                      "step_seconds": {k: round(v, 2) for k, v in steps.times.items()}})
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=_json_default))
    return rep


def _check_arguments(args) -> None:
    """Every argument check, before anything is read or written."""
    from flow.data import check_limit

    if not 2 <= args.bits <= 8:
        raise AdderFlowError(f"--bits must be 2..8, got {args.bits}")
    if args.reuse is not None and args.reuse < 1:
        raise AdderFlowError(f"--reuse must be >= 1, got {args.reuse}")
    if args.csim < 0:
        raise AdderFlowError(f"--csim must be >= 0, got {args.csim}")
    if args.target_fps is not None and args.target_fps <= 0:
        raise AdderFlowError(f"--target-fps must be positive, got {args.target_fps}")
    if not 0 < args.lut_limit <= 100:
        raise AdderFlowError(f"--lut-limit must be in (0, 100], got {args.lut_limit}")
    check_limit(args.calib_limit, "--calib-limit")
    if args.model == "resnet20_cnn" and (args.target_fps or args.shift_add or args.reuse_config):
        raise AdderFlowError("--target-fps/--shift-add/--reuse-config choose AdderVitis designs; they do not apply "
                             "to resnet20_cnn (stock hls4ml)")
    if args.csim > 0 and not args.data:
        raise AdderFlowError("--csim N needs --data D.npz (test images)")
    if args.reuse_config:
        from flow.hls import project

        project.load_reuse_config(args.reuse_config)


def run(args) -> int:
    """A thin shell over flow.hls.build (the library object): check every argument, then build."""
    from flow.boards import get_board
    from flow.hls.build import Steps, build
    from flow.hls import project
    from flow.outputs import check_output, staged_output

    _check_arguments(args)
    board = get_board(args.board)
    clock_mhz = float(args.clock_mhz or board.clock_mhz)
    out = Path(args.out)
    inputs = [args.qnet, args.weights, args.calib, args.data, args.reuse_config]
    check_output(out, args.force, inputs=inputs, kind="dir", what="--out")
    t0 = time.perf_counter()
    if args.model == "resnet20_cnn":
        steps = Steps()
        with staged_output(out, args.force, inputs=inputs, kind="dir", what="--out") as tmp:
            res = run_cnn(args, tmp, board, clock_mhz, steps)
            rep = steps.run("report", _write_cnn_report, tmp, res, args, board, clock_mhz, steps)
        csim = res["csim"]
    else:
        steps = Steps()
        qnet, source = steps.run("quantized network", _get_qnet, args)
        images, labels = _csim_data(args, qnet)
        b = build(qnet, out, board, clock_mhz=clock_mhz, reuse=args.reuse,
                  reuse_config=project.load_reuse_config(args.reuse_config) if args.reuse_config else None,
                  target_fps=args.target_fps, lut_limit=args.lut_limit,
                  dsp="zero" if args.shift_add else ("plain" if args.plain else None), images=images, labels=labels,
                  force=args.force, inputs=inputs, source=source, model=args.model, bits=args.bits)
        rep, csim = json.loads((out / "report.json").read_text()), b.csim_result
        # vendor tools last, on the swapped-in build: a missing Vitis stops with exit 2, every output kept
        if args.synth or args.cosim:
            # FIFO profiling needs images back to back: the test bench holds min(--csim, 10) of them
            profile = args.cosim and args.fifo_opt and args.csim >= 2
            if args.cosim and args.fifo_opt and not profile:
                print("[hls] --cosim without --csim N >= 2: the FIFO depths are not profiled (one test-bench image)",
                      flush=True)
            depths = b.steps.run("vitis_hls", b.synth, args.cosim, profile)
            rep = b.report()
            if depths:
                rep["hls"]["stream_depths_cosim"] = {"source": "vitis_hls", "depths": depths}
                (out / "report.json").write_text(json.dumps(rep, indent=1))
    print(f"[hls] wrote {out / 'report.json'} (source: {rep.get('source')}); total "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    if csim and csim.get("mismatches"):
        raise AdderFlowError(f"C simulation differs from the golden model in {csim['mismatches']} of "
                             f"{csim['outputs_compared']} output values (the build is kept in {out})")
    return 0
