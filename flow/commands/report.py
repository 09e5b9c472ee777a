"""`adderflow report DIR`: re-render DIR/report.json, report.md, report.png.

With DIR/qnet (a saved QNet) the report is rebuilt: the estimate is recomputed with the reuse factors
recorded in report.json and any vendor reports that appeared under DIR since (csynth, cosim, Vivado)
are picked up. Without it, report.md and report.png are re-rendered from report.json alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("dir", help="build folder holding report.json (and optionally qnet/)")
    parser.add_argument("--board", help="re-target the estimate to another board (needs DIR/qnet)")
    parser.add_argument("--clock-mhz", type=float, help="re-target the estimate to another clock (needs DIR/qnet)")
    parser.add_argument("--target-fps", type=float, help="also choose reuse factors for this frame rate (needs DIR/qnet)")


def load_report(directory) -> dict:
    p = Path(directory) / "report.json"
    if not p.is_file():
        raise AdderFlowError(f"{p}: no report.json (run `adderflow hls ... --out {directory}` first)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise AdderFlowError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def run(args) -> int:
    from flow.outputs import require_complete
    from flow.report import apply_measured, build_report, render_files

    d = require_complete(Path(args.dir))
    rep = load_report(d)
    qdir = d / "qnet"
    retarget = args.board or args.clock_mhz or args.target_fps
    if (qdir / "qnet.json").is_file():
        from flow.qnet import load

        net = load(qdir)
        rep = build_report(net, model=rep.get("model"), bits=rep.get("bits"), board=args.board or rep["board"],
                           clock_mhz=args.clock_mhz or rep.get("clock_mhz"), reuse=rep.get("reuse"),
                           csim=rep.get("csim"), hls_dir=d, target_fps=args.target_fps,
                           **_design_options(rep))
        apply_measured(rep, previous=load_report(d))   # yosys/verilator sections of the RTL design stay
        how = "rebuilt from qnet/ and the vendor reports found"
    elif retarget:
        raise AdderFlowError(f"{qdir}: no saved network, so --board/--clock-mhz/--target-fps cannot re-estimate")
    else:
        how = "re-rendered from report.json"
    paths = _render_in_place(rep, d, render_files)
    print(f"adderflow report: {how}; wrote {', '.join(str(paths[k]) for k in ('json', 'md', 'png'))}")
    lat, res = rep.get("latency", {}), rep.get("resources", {})
    print(f"  source: {rep.get('source')}; latency {lat.get('cycles')} cycles, {lat.get('images_per_s') or 0:,.0f} "
          f"images/s ({lat.get('source')}); LUT {res.get('LUT')}, FF {res.get('FF')}, BRAM_18K {res.get('BRAM_18K')}, "
          f"DSP {res.get('DSP')} ({res.get('source')}); fits {rep.get('board_fit', {}).get('fits')}")
    return 0


def _render_in_place(rep: dict, d: Path, render_files) -> dict:
    """Render into a scratch folder inside the build, then move each file over the old one (os.replace is
    atomic), so a failure while rendering (e.g. in the plot) leaves the previous report files whole."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".report-", dir=d) as tmp:
        paths = render_files(rep, tmp)
        for k, p in paths.items():
            os.replace(p, d / Path(p).name)
            paths[k] = d / Path(p).name
    return paths


def _design_options(rep: dict) -> dict:
    """The estimator design options recorded in a report (so a rebuild models the same design)."""
    a = (rep.get("estimate") or {}).get("assumptions") or {}
    keys = ("fifo_depth", "shift_add_all", "fuse_requant", "include_platform")
    return {k: a[k] for k in keys if k in a}
