"""`adderflow cosim BUILD --data D.npz --images N`: Verilator co-simulation of BUILD/rtl (written by
`adderflow rtl`) against the integer golden model (flow.rtl.harness.cosim).

Images go back to back through af_top as the driver packs them; every output value is compared. Prints
mismatches, latency, interval, images/s at the build's clock and at 100 MHz, and the Verilator build and run
times; writes BUILD/rtl/cosim.json, BUILD/rtl/fifo_depths.json (measured_depths: the FIFO high-water marks)
and the "verilator" section of BUILD/report.json. Exit 1 on any mismatch, 3 on a deadlock, 2 without
verilator, each with one line.
"""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(p):
    p.add_argument("build", help="build folder holding rtl/ (adderflow rtl BUILD)")
    p.add_argument("--data", required=True, help="test images (.npz with x, y or a CIFAR folder)")
    p.add_argument("--images", type=int, default=10, help="test images to simulate (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random gaps and back-pressure")
    p.add_argument("--backpressure", type=float, default=0.0, metavar="P",
                   help="probability that m_axis_tready is low in a cycle (default 0)")
    p.add_argument("--gaps", type=float, default=0.0, metavar="P",
                   help="probability that s_axis_tvalid is held low in a cycle (default 0: back to back)")
    p.add_argument("--timeout", type=int, default=None, metavar="CYCLES",
                   help="cycles without any handshake that count as a deadlock (default: from the reuse factors)")


def _check(args) -> None:
    if args.images < 1:
        raise AdderFlowError(f"--images must be >= 1, got {args.images}")
    for name, v in (("--backpressure", args.backpressure), ("--gaps", args.gaps)):
        if not 0.0 <= v < 1.0:
            raise AdderFlowError(f"{name} must be in [0, 1), got {v}")
    if args.timeout is not None and args.timeout < 1:
        raise AdderFlowError(f"--timeout must be >= 1, got {args.timeout}")
    if args.data != "digits" and not Path(args.data).exists():
        raise AdderFlowError(f"data file not found: {args.data}")


def run(args) -> int:
    from flow.rtl.harness import cosim

    _check(args)
    cosim(args.build, args.data, args.images, seed=args.seed, backpressure=args.backpressure, gap=args.gaps,
          timeout=args.timeout)
    return 0
