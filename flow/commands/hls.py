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
    p.add_argument("--board", default="pynq-z2")
    p.add_argument("--clock-mhz", type=float, default=None, help="design clock (default: the board's)")
    p.add_argument("--out", required=True, help="output folder (OUT/hls_prj, OUT/qnet, OUT/report.json)")
    p.add_argument("--qnet", help="use an existing quantized network folder (QNet.save) instead of quantizing")
    p.add_argument("--csim", type=int, default=0, metavar="N", help="C-simulate N images of --data")
    p.add_argument("--data", help="test images (.npz or CIFAR folder) for --csim")
    p.add_argument("--synth", action="store_true", help="run vitis_hls csynth (needs vitis_hls on PATH)")
    p.add_argument("--cosim", action="store_true", help="run vitis_hls RTL co-simulation (needs vitis_hls)")
    p.add_argument("--fifo-opt", action="store_true",
                   help="profile the stream FIFO depths in RTL co-simulation (hls4ml's fifo_depth_optimization), "
                        "build with them and write them to report.json (needs vitis_hls; implies --cosim)")
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


def choose_design(args, qnet, board, clock_mhz) -> dict:
    """Reuse factors and DSP use of the design to build (all from flow.hls.schedule's legal values):
    --reuse-config (strict) over --reuse R (per layer the largest legal value <= R) or --target-fps F
    (fit_reuse); otherwise the fastest balanced design that fits the board with LUT <= --lut-limit, zero-DSP
    first for adder models (plain when no zero-DSP design fits; --shift-add / --plain force one). No design
    that fits: one line saying what does not fit."""
    from flow.hls import project
    from flow.report.fit import fit_reuse, max_fps_that_fits

    reuse_cfg = project.load_reuse_config(args.reuse_config) if args.reuse_config else {}
    project.resolve_reuse(qnet, 1, reuse_cfg)        # every named layer exists and its RF is legal: now
    forced = "zero-DSP" if args.shift_add else ("plain" if args.plain else None)
    if args.reuse:
        rfs, adjusted = project.resolve_reuse(qnet, args.reuse, reuse_cfg)
        for line in adjusted:
            print(f"[hls] --reuse {args.reuse}: {line} (the nearest legal value below)", flush=True)
        return {"reuse": rfs, "shift_add": forced != "plain" if forced else False, "bram_weights": [],
                "how": f"--reuse {args.reuse}"}
    if args.target_fps:
        sa = forced == "zero-DSP"
        fit = fit_reuse(qnet, board, args.target_fps, clock_mhz, weights_to_bram=True, shift_add_all=sa)
        _print_fit(fit, board, clock_mhz, args.target_fps)
        return {"reuse": {**fit["reuse"], **reuse_cfg}, "shift_add": sa,
                "bram_weights": list(fit["design"].get("bram_weights") or []), "how": f"--target-fps {args.target_fps:g}",
                "fit": fit}
    tried = []
    for variant in ([forced] if forced else ["zero-DSP", "plain"]):
        sa = variant == "zero-DSP"
        best = max_fps_that_fits(qnet, board, clock_mhz, weights_to_bram=True, lut_limit_pct=args.lut_limit,
                                 shift_add_all=sa)
        if best.get("reuse"):
            u = best["utilisation_pct"]
            print(f"[hls] fastest {variant} design that fits {board.name} with LUT <= {args.lut_limit:g}% (estimate): "
                  f"{best['fps']:.0f} images/s, LUT {u['LUT']}% FF {u['FF']}% BRAM {u['BRAM_18K']}% "
                  f"DSP {u['DSP']}%", flush=True)
            return {"reuse": {**best["reuse"], **reuse_cfg}, "shift_add": sa, "bram_weights": best["bram_weights"],
                    "how": f"fastest {variant} design that fits {board.name} (LUT <= {args.lut_limit:g}%)",
                    "fit": best}
        tried.append((variant, _smallest_design(qnet, board, clock_mhz, sa)))
    what = "; ".join(f"{v}: the smallest legal design needs LUT {r['LUT']:,} ({p:.0f}% of {board.lut:,})"
                     for v, (r, p) in tried)
    raise AdderFlowError(f"no design of {args.model} W{args.bits} fits {board.name} with LUT <= {args.lut_limit:g}% "
                         f"(estimate; {what}): use a larger --board (kv260, zcu104), --lut-limit, or --reuse R to "
                         f"build it anyway")


def _smallest_design(qnet, board, clock_mhz, shift_add: bool) -> tuple:
    """Resources of the slowest legal design (every layer at its largest RF) and its LUT %."""
    from flow.report.estimate import estimate

    est = estimate(qnet, board, clock_mhz, 10**9, shift_add_all=shift_add)
    return est["resources"], 100.0 * est["resources"]["LUT"] / board.lut


def _print_fit(fit, board, clock_mhz, target_fps) -> None:
    lat, res = fit["latency"], fit["resources"]
    print(f"[hls] --target-fps {target_fps:g} on {board.name} at {clock_mhz:g} MHz (estimate): "
          f"{lat['images_per_s']:.0f} images/s, LUT {res['LUT']} FF {res['FF']} BRAM18K {res['BRAM_18K']} "
          f"DSP {res['DSP']}; fits: {'yes' if fit['fits'] else 'no'}; binding: {fit['binding'] or 'none'}"
          + ("" if fit["meets_target"] else "; the target rate is NOT met"), flush=True)
    if fit["design"].get("bram_weights"):
        print(f"[hls] weight ROMs bound to BRAM: {', '.join(fit['design']['bram_weights'])}", flush=True)


def run_adder(args, out: Path, board, clock_mhz, steps: Steps, qnet, source, images, labels) -> dict:
    from flow import golden
    from flow.board.axi_top import write_axi_top
    from flow.hls import project

    qnet.save(out / "qnet")
    design = steps.run("choose the design", choose_design, args, qnet, board, clock_mhz)
    hls_dir = out / "hls_prj"

    def write():
        hm = project.convert(qnet, hls_dir, part=board.part, clock_mhz=clock_mhz, reuse=1,
                             reuse_config=design["reuse"], shift_add=design["shift_add"],
                             bram_weights=design["bram_weights"])
        hm.write()
        return hm

    hls_model = steps.run("write HLS project", write)
    tb_x = qnet.quantize_input(images[:10]) if images is not None else \
        np.zeros((1,) + tuple(qnet.tensors[qnet.input].shape), np.int64)
    project.write_tb_data(hls_dir, tb_x, golden.run(qnet, tb_x)[qnet.output])
    write_axi_top(hls_dir, qnet)
    csim = None
    if images is not None:
        from flow.driver.emulation import build_csim_library

        compile_s = steps.run("g++ compile (AXI top + network)", lambda: _timed(build_csim_library, hls_dir,
                                                                                 opt="-O3"))
        x_int = qnet.quantize_input(images)
        want = steps.run("golden model", golden.run, qnet, x_int)[qnet.output].reshape(len(x_int), -1)
        t = time.perf_counter()
        got = project.csim_axi(hls_dir, qnet, x_int)
        sim_s = time.perf_counter() - t
        mism = int(np.sum(got != want))
        csim = {"images": int(len(x_int)), "mismatches": mism, "outputs_compared": int(want.size),
                "path": "adderflow_top (AXI unpack -> network, n_images per call -> AXI pack), g++ -O3",
                "accuracy": float(np.mean(got.argmax(1) == labels)),
                "golden_accuracy": float(np.mean(want.argmax(1) == labels)),
                "compile_s": round(compile_s, 2), "csim_s": round(sim_s, 3),
                "csim_images_per_s": round(len(x_int) / sim_s, 2) if sim_s > 0 else None}
        print(f"[hls] C simulation: {mism} mismatching output values of {want.size} vs the golden model; "
              f"accuracy {csim['accuracy']:.2%} (golden {csim['golden_accuracy']:.2%}); "
              f"{csim['csim_images_per_s']} images/s", flush=True)
    mults = project.layer_multipliers(hls_model)
    extra = {"source_network": source, "multipliers_per_layer": mults, "design": design["how"],
             "zero_dsp": bool(design["shift_add"]), "bram_weights": design["bram_weights"],
             "layers_with_multipliers": sorted(k for k, v in mults.items() if v),
             "fit": _fit_summary(design.get("fit")),
             "stream_depths": (hls_model.config.config.get("AdderFlow") or {}).get("stream_depths", {})}
    return {"qnet": qnet, "hls_dir": hls_dir, "csim": csim, "reuse": design["reuse"], "extra": extra,
            "shift_add": design["shift_add"],
            "estimate_kw": {"bram_weights": design["bram_weights"]} if design["bram_weights"] else {}}


def _fit_summary(fit) -> dict | None:
    """What the design choice rested on (estimate): rate, reuse factors, fit, binding resource."""
    if not fit:
        return None
    if "latency" in fit:       # fit_reuse (--target-fps)
        return {"source": "estimate", "target_fps": fit["target_fps"], "images_per_s": fit["latency"]["images_per_s"],
                "fits": fit["fits"], "binding": fit["binding"], "meets_target": fit["meets_target"],
                "reuse": fit["reuse"]}
    return {"source": "estimate", "images_per_s": fit["fps"], "fits": True, "reuse": fit["reuse"],
            "utilisation_pct": fit["utilisation_pct"], "bram_weights": fit["bram_weights"]}


def _timed(fn, *a, **kw) -> float:
    t = time.perf_counter()
    fn(*a, **kw)
    return time.perf_counter() - t


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


def _write_report(out: Path, res: dict, args, board, clock_mhz, steps: Steps, final: Path | None = None) -> dict:
    """report.json/.md/.png in `out`; paths in it name `final` (where the build lands after the swap)."""
    from flow.report import write_report

    final = final or out
    rep = write_report(out, res["qnet"], model=args.model, bits=args.bits, board=board.name, clock_mhz=clock_mhz,
                       reuse=res["reuse"], csim=res["csim"], hls_dir=res["hls_dir"],
                       shift_add_all=bool(res.get("shift_add")), **res.get("estimate_kw", {}))
    for k, v in {"model": args.model, "bits": args.bits, "board": board.name, "part": board.part,
                 "clock_mhz": clock_mhz}.items():
        rep.setdefault(k, v)
    rep.setdefault("hls", {}).update({**res["extra"], "project": str(final / "hls_prj"), "backend":
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


def _vitis(hls_dir: Path, log_name: str) -> None:
    log = hls_dir / log_name
    with open(log, "w") as fh:
        rc = subprocess.run(["vitis_hls", "-f", "build_prj.tcl"], cwd=hls_dir, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise AdderFlowError(f"vitis_hls failed (exit {rc}); see {log}")


def _run_vitis(hls_dir: Path, synth: bool, cosim: bool, fifo_opt: bool = False) -> dict | None:
    """csynth/cosim/export with build_prj.tcl; with fifo_opt first a profiling cosim at deep FIFOs, then the
    build at the depths it measured (written to hls_prj/fifo_depths.json). Returns those depths."""
    from flow.board.axi_top import project_name
    from flow.hls import fifo_depths, project

    if not project.vitis_hls_available():
        raise ToolMissingError("vitis_hls is not on PATH: --synth/--cosim skipped; the HLS project, C simulation "
                               "and report were written")
    depths = None
    if fifo_opt:
        cpp = hls_dir / "firmware" / f"{project_name(hls_dir)}.cpp"
        initial = fifo_depths.set_stream_depths(cpp, fifo_depths.PROFILING_DEPTH)
        project.set_build_options(hls_dir, csim=False, synth=True, cosim=True, export=False, fifo_opt=True)
        _vitis(hls_dir, "vitis_hls_fifo_opt.log")
        depths = fifo_depths.read_cosim_depths(hls_dir)
        changed = fifo_depths.set_stream_depths(cpp, depths)
        (hls_dir / "fifo_depths.json").write_text(json.dumps(
            {n: {"initial": initial[n][0], "optimized": new} for n, (_, new) in changed.items()}, indent=1))
    project.set_build_options(hls_dir, csim=True, synth=True, cosim=cosim or fifo_opt, export=True)
    _vitis(hls_dir, "vitis_hls.log")
    return depths


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
    if args.fifo_opt and args.csim < 2:
        raise AdderFlowError("--fifo-opt profiles the FIFOs over back-to-back images: give --csim N (N >= 2) and --data")
    if args.csim > 0 and not args.data:
        raise AdderFlowError("--csim N needs --data D.npz (test images)")
    if args.reuse_config:
        from flow.hls import project

        project.load_reuse_config(args.reuse_config)


def run(args) -> int:
    from flow.boards import get_board
    from flow.outputs import check_output, staged_output

    _check_arguments(args)
    board = get_board(args.board)
    clock_mhz = float(args.clock_mhz or board.clock_mhz)
    out = Path(args.out)
    inputs = [args.qnet, args.weights, args.calib, args.data, args.reuse_config]
    check_output(out, args.force, inputs=inputs, kind="dir", what="--out")
    steps = Steps()
    with staged_output(out, args.force, inputs=inputs, kind="dir", what="--out") as tmp:
        if args.model == "resnet20_cnn":
            res = run_cnn(args, tmp, board, clock_mhz, steps)
        else:
            qnet, source = steps.run("quantized network", _get_qnet, args)
            images, labels = _csim_data(args, qnet)
            res = run_adder(args, tmp, board, clock_mhz, steps, qnet, source, images, labels)
        rep = steps.run("report", _write_report, tmp, res, args, board, clock_mhz, steps, out)
    # vendor tools last, on the swapped-in build: a missing Vitis stops with exit 2, every output kept
    res["hls_dir"] = out / "hls_prj"
    if args.synth or args.cosim or args.fifo_opt:
        depths = steps.run("vitis_hls", _run_vitis, res["hls_dir"], args.synth, args.cosim, args.fifo_opt)
        if depths:
            res["extra"]["stream_depths_cosim"] = {"source": "vitis_hls", "depths": depths}
        rep = _write_report(out, res, args, board, clock_mhz, steps)
    print(f"[hls] wrote {out / 'report.json'} (source: {rep.get('source')}); total "
          f"{time.perf_counter() - steps.t0:.1f} s", flush=True)
    csim = res["csim"]
    if csim and csim.get("mismatches"):
        raise AdderFlowError(f"C simulation differs from the golden model in {csim['mismatches']} of "
                             f"{csim['outputs_compared']} output values (the build is kept in {out})")
    return 0
