"""`adderflow package --board pynq-z2 BUILD [--out DIR|ZIP]`: one folder/zip to copy onto the board."""

from __future__ import annotations

import sys
from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("build", help="build folder (qnet/, hls_prj/, bitstream/, report.json)")
    parser.add_argument("--board", help="target board (default: the board in BUILD/report.json)")
    parser.add_argument("--out", help="output folder, or a .zip (default BUILD/package_<board>)")
    parser.add_argument("--samples", help="sample images .npz (x uint8 NHWC, y) (default ../shared CIFAR-10 test)")
    parser.add_argument("--n-samples", type=int, default=100, help="images to include (default 100)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args) -> int:
    from flow.board.package import make_package
    from flow.commands.bitstream import _board

    build = Path(args.build)
    if not build.is_dir():
        raise AdderFlowError(f"{build}: build folder not found")
    board = _board(build, args.board)
    res = make_package(build, board, args.out, args.samples, args.n_samples, args.force)
    print(f"package for {board}: {res['path']} ({len(res['files'])} files)")
    for name, why in res["missing"].items():
        print(f"  MISSING {name}: {why}", file=sys.stderr)
    return 0
