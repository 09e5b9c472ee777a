"""`adderflow bitstream --board pynq-z2 BUILD`: export the HLS IP (vitis_hls), then the Vivado overlay.

Without vitis_hls/vivado on PATH it stops with one line and exit 2, keeping the generated Tcl
(BUILD/hls_prj/adderflow_export.tcl, BUILD/vivado/) after dry-running the overlay Tcl in tclsh."""

from __future__ import annotations

import json
from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("build", help="build folder written by `adderflow hls --out` (qnet/, hls_prj/)")
    parser.add_argument("--board", help="target board (default: the board in BUILD/report.json)")
    parser.add_argument("--jobs", type=int, default=2, help="Vivado implementation jobs (default 2)")
    parser.add_argument("--force", action="store_true", help="rebuild over an existing BUILD/bitstream/adderflow.bit")
    parser.add_argument("--impl", choices=("hls", "rtl"), default="hls",
                        help="hls: the Vitis HLS IP (default); rtl: the register-transfer design of `adderflow rtl` "
                             "(BUILD/rtl) packaged as IP, scripts in BUILD/vivado_rtl, outputs in BUILD/bitstream_rtl")
    parser.add_argument("--check-only", action="store_true",
                        help="generate the Tcl and dry-run it in tclsh; do not call vitis_hls/vivado")


def _board(build: Path, given: str | None) -> str:
    if given:
        return given
    rpt = build / "report.json"
    if rpt.is_file():
        from flow.commands.report import load_report

        board = load_report(build).get("board")
        if board:
            return board
    raise AdderFlowError(f"no --board given and {rpt} names none")


def run(args) -> int:
    from flow.board import bitstream
    from flow.boards import get_board
    from flow.outputs import require_complete

    if args.jobs < 1:
        raise AdderFlowError(f"--jobs must be >= 1, got {args.jobs}")
    build = require_complete(Path(args.build))
    board = get_board(_board(build, args.board)).name
    if args.check_only:
        res = bitstream.check_tcl(build, board, impl=args.impl)
        print(f"overlay Tcl for {board}: dry run in tclsh passed ({res['cells']} cells, {res['intf_nets']} "
              f"interface nets, {res['nets']} nets; every pin of {res['ip_vlnv']} exists and is connected); "
              f"scripts in {build / bitstream.dirs(args.impl)[0]}. Not checked without Vivado: IP parameters, "
              f"synthesis, timing.")
        return 0
    res = bitstream.build_bitstream(build, board, jobs=args.jobs, force=args.force, impl=args.impl)
    print(f"bitstream: {res['bit']}\nhwh:       {res['hwh']}\nWNS:       {res.get('wns_ns')} ns at "
          f"{res.get('clock_mhz')} MHz\nutilisation: {json.dumps(res['utilisation'])}")
    return 0
