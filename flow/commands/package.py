"""`adderflow package --board pynq-z2 BUILD [--out DIR|ZIP]`: one folder/zip to copy onto the board."""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("build", help="build folder (qnet/, hls_prj/, bitstream/, report.json)")
    parser.add_argument("--board", help="target board (default: the board in BUILD/report.json)")
    parser.add_argument("--out", help="output folder, or a .zip (default BUILD/package_<board>)")
    parser.add_argument("--samples", help="sample images .npz (x uint8 NHWC, y) (default ../shared CIFAR-10 test)")
    parser.add_argument("--n-samples", type=int, default=100, help="images to include (default 100)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out (only once the new package is complete)")


def run(args) -> int:
    from flow.board.package import make_package
    from flow.boards import get_board
    from flow.commands.bitstream import _board
    from flow.outputs import require_complete

    build = require_complete(Path(args.build))
    board = get_board(_board(build, args.board)).name
    res = make_package(build, board, args.out, args.samples, args.n_samples, args.force)
    print(f"package for {board}: {res['path']} ({len(res['files'])} files)")
    for name, why in res["missing"].items():
        print(f"  MISSING {name}: {why}", file=sys.stderr)
    return 0
