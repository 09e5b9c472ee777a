"""`adderflow` command line: one sub-command per module in `flow.commands`.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; they are imported only
when chosen, so `adderflow --help` and board-side commands do not pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from flow.errors import AdderFlowError

# name -> (module in flow.commands, one-line help)
COMMANDS = {
    "import": ("import_ckpt", "convert a PyTorch AdderNet checkpoint to a Keras model"),
    "eval": ("evaluate", "evaluate a float or quantized model on a data set"),
    "train": ("train", "train an AdderNet with the AdderNet recipe"),
    "quantize": ("quantize", "post-training quantization (redistribution or QSSF) to an integer network"),
    "inspect": ("inspect", "per-layer weight/activation histograms with the chosen scales (PNG)"),
    "hls": ("hls", "write the Vitis HLS project, run C simulation against the golden model"),
    "make-hls": ("make_hls", "the `make hls` front door: fetch/import, quantize, hls, report"),
    "report": ("report", "re-render report.json/.md/.png of a build"),
    "compare": ("compare", "put two builds side by side"),
    "rtl": ("rtl", "write BUILD/rtl: the Verilog realisation of the build's design (layers, top, ROMs, manifest)"),
    "cosim": ("cosim", "Verilator co-simulation of BUILD/rtl against the golden model (cycles, FIFO depths)"),
    "synth": ("synth", "synthesise the register-transfer design (BUILD/rtl) with yosys, per layer and whole"),
    "bitstream": ("bitstream", "export the HLS IP and build the Vivado bitstream for a board"),
    "package": ("package", "gather bitstream, .hwh, driver, notebook and samples for the board"),
    "sweep": ("sweep", "design-space sweep (bits x board x design ...), cached, local pool or Ray, Pareto plot"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adderflow", description="AdderFlow: quantized AdderNets from Keras/QKeras to Vitis HLS and PYNQ boards.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if only == name:
            _load(module).add_arguments(sp)
    return parser


def _load(module: str):
    return importlib.import_module(f"flow.commands.{module}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        parser = build_parser()
        if chosen is not None:
            parser.error(f"unknown command '{chosen}' (choose from {', '.join(COMMANDS)})")
        parser.print_help()
        return 0 if ("-h" in argv or "--help" in argv) else 2
    args = build_parser(only=chosen).parse_args(argv)
    try:
        return int(_load(COMMANDS[chosen][0]).run(args) or 0)
    except AdderFlowError as exc:
        print(f"adderflow {chosen}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"adderflow {chosen}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
