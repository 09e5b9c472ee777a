"""`adderflow rtl BUILD`: write BUILD/rtl/, the register-transfer realisation of the design the HLS build
chose (flow.rtl.generate): layer wrappers, af_top, ROM files, the rtl/ library modules it uses, manifest.json.

Order of work: check the build folder and the output (BUILD/rtl must be absent or empty, or --force) ->
plan the design -> write it into a temporary folder beside BUILD/rtl and swap it in complete.
"""

from __future__ import annotations

from flow.errors import AdderFlowError


def add_arguments(p):
    p.add_argument("build", help="an `adderflow hls` build folder (BUILD/qnet, BUILD/report.json)")
    p.add_argument("--depth", action="append", default=[], metavar="STREAM=N",
                   help="override one stream FIFO's depth (repeatable), e.g. to see what a too-shallow residual "
                        "FIFO does in `adderflow cosim`")
    p.add_argument("--force", action="store_true", help="replace an existing BUILD/rtl")


def parse_depths(items) -> dict:
    out = {}
    for it in items:
        name, sep, val = str(it).partition("=")
        if not sep or not name or not val.strip().isdigit():
            raise AdderFlowError(f"--depth {it}: expected STREAM=N with N a positive integer")
        out[name] = int(val)
    return out


def run(args) -> int:
    from flow.rtl.generate import generate

    depths = parse_depths(args.depth)
    generate(args.build, force=args.force, depth_override=depths or None)
    return 0
