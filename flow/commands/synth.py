"""`adderflow synth BUILD --yosys [--jobs N] [--layers a,b] [--whole/--no-whole]`: yosys synth_xilinx of the
register-transfer design (BUILD/rtl, written by `adderflow rtl`) for the build's board, each layer and
the whole design, --jobs at a time. Logs in BUILD/rtl/yosys/, figures in report.json["yosys"] (labelled,
beside the estimate). Without yosys on PATH: one line, exit 2, nothing changed.

Vitis HLS synthesis of the HLS design stays `adderflow hls --synth` (it needs vitis_hls).
"""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(p):
    p.add_argument("build", help="build folder holding rtl/manifest.json (from `adderflow rtl BUILD`)")
    p.add_argument("--yosys", action="store_true", help="synthesise with yosys synth_xilinx (the tool this runs)")
    p.add_argument("--board", help="target board (default: the RTL manifest's, else report.json's)")
    p.add_argument("--jobs", type=int, default=2, help="yosys processes at a time (default 2)")
    p.add_argument("--layers", help="comma-separated layer names (default: every layer in the manifest)")
    p.add_argument("--whole", action="store_true", default=True,
                   help="also synthesise the whole design, top af_top (the default)")
    p.add_argument("--no-whole", dest="whole", action="store_false", help="layers only")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per yosys run (default 3600)")
    p.add_argument("--keep-going", action="store_true",
                   help="a run that fails or times out is recorded (report.json yosys.failed) and the others go on; "
                        "exit 1 at the end if any failed")
    p.add_argument("--add", action="store_true",
                   help="add these runs to the existing BUILD/rtl/yosys (same-named entries replaced, the others "
                        "kept), e.g. `--add --layers fc --whole` after a --no-whole run")
    dsp = p.add_mutually_exclusive_group()
    dsp.add_argument("--dsp", dest="dsp", action="store_const", const=True, default=None,
                     help="let yosys map multipliers to DSP48s (default: only when the build is not zero-DSP)")
    dsp.add_argument("--no-dsp", dest="dsp", action="store_const", const=False,
                     help="synth_xilinx -nodsp: every multiplier in LUTs (the default for a zero-DSP build)")
    p.add_argument("--force", action="store_true", help="replace BUILD/rtl/yosys and the report's yosys section")


def run(args) -> int:
    from flow.outputs import require_complete
    from flow.rtl import synth

    if not args.yosys:
        raise AdderFlowError("choose the synthesis tool: --yosys (Vitis HLS synthesis is `adderflow hls --synth`)")
    if args.jobs < 1:
        raise AdderFlowError(f"--jobs must be >= 1, got {args.jobs}")
    if args.timeout <= 0:
        raise AdderFlowError(f"--timeout must be > 0, got {args.timeout}")
    build = require_complete(Path(args.build))
    layers = None
    if args.layers is not None:
        layers = [n.strip() for n in args.layers.split(",") if n.strip()]
        if not layers:
            raise AdderFlowError(f"--layers {args.layers!r} names no layer")
    sec = synth.synth_build(build, board=args.board, layers=layers, whole=args.whole, jobs=args.jobs,
                            force=args.force, timeout_s=args.timeout, progress=synth.log, keep_going=args.keep_going,
                            add=args.add, dsp=args.dsp)
    t = sec["total"]
    print(f"adderflow synth: {sec['tool']} on {sec['part']} ({t['what']}): LUT {t['LUT']}, FF {t['FF']}, "
          f"BRAM_18K {t['BRAM_18K']}, DSP {t['DSP']}, CARRY {t['CARRY']}; {len(sec['layers'])} layer(s) in "
          f"{sec['wall_s']['layers']:.1f} s, whole design {sec['wall_s']['whole'] or '-'} s; "
          f"logs in {build / 'rtl' / 'yosys'}, figures in {build / 'report.json'} (\"yosys\")")
    if sec.get("failed"):
        name, err = next(iter(sec["failed"].items()))
        raise AdderFlowError(f"{len(sec['failed'])} yosys run(s) failed (report.json yosys.failed), first {name}: {err}")
    return 0
