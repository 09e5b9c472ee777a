"""Simulate ONE rtl/ module with stimulus and response files: the shared test helper of the RTL tests.

A tiny generated testbench (Verilog, the same text for Verilator and iverilog) instantiates the module,
feeds every input stream from a `$readmemh` file of beats (random gaps on s_valid, which is held once
raised, as the stream contract requires), takes every output stream with random back-pressure on
m_ready, and writes each accepted beat with its cycle. Randomness is a xorshift in the testbench, so a
seed gives the same run on both simulators. `simulate` packs numpy arrays into beats, runs, and unpacks
the output beats into numpy arrays (plus the cycle of every accepted beat, input and output).

Streams are named by their port prefix: an input `s` means ports s_valid, s_ready, s_data; an output
with `lanes=N` means vector ports m_valid[N-1:0], m_ready[N-1:0] and data slices of m_data (af_clone).
Build directories live under the caller's folder (pytest's tmp_path).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RTL_DIR = Path(__file__).resolve().parents[1] / "rtl"
RESET_CYCLES = 4

SIMULATORS = ("verilator", "iverilog")


def tool_missing(sim: str) -> str | None:
    """The reason to skip a test that needs simulator `sim`, or None when it is installed."""
    need = {"verilator": ["verilator", "make", "g++"], "iverilog": ["iverilog", "vvp"]}[sim]
    missing = [t for t in need if shutil.which(t) is None]
    return f"{', '.join(missing)} not on PATH (needed to simulate with {sim})" if missing else None


# ---- beats <-> numpy ----------------------------------------------------------------------------------

def pack_beats(values: np.ndarray, bits: int) -> list:
    """(beats, fields) integers -> one int per beat, field k in bits [(k+1)*bits-1 : k*bits] (two's
    complement at `bits` for negative values): the contract's packing of pixel and accumulator beats."""
    v = np.asarray(values, dtype=object).reshape(len(values), -1)
    mask = (1 << bits) - 1
    out = []
    for row in v:
        word = 0
        for k, x in enumerate(row):
            word |= (int(x) & mask) << (k * bits)
        out.append(word)
    return out


def unpack_beats(words: list, fields: int, bits: int, signed: bool) -> np.ndarray:
    """The inverse of pack_beats: (beats, fields) int64."""
    mask = (1 << bits) - 1
    out = np.zeros((len(words), fields), np.int64)
    for i, w in enumerate(words):
        for k in range(fields):
            x = (w >> (k * bits)) & mask
            if signed and x >> (bits - 1):
                x -= 1 << bits
            out[i, k] = x
    return out


# ---- the testbench -------------------------------------------------------------------------------------

@dataclass
class Stream:
    name: str                 # port prefix: s, s1, m
    width: int                # data bits of one beat (per lane)
    lanes: int = 1            # > 1: vector valid/ready ports, data slices (outputs only)


@dataclass
class SimResult:
    outputs: dict             # output stream (or "m.0", "m.1" for lanes) -> list of int beats
    out_cycles: dict          # same keys -> np.ndarray of the cycle each beat moved
    in_cycles: dict           # input stream -> np.ndarray of the cycle each beat moved
    monitors: np.ndarray | None = None   # (cycles after reset, monitored signals) per-cycle samples
    cycles: int = 0           # cycles after reset until the last expected beat (in or out) moved
    meta: dict = field(default_factory=dict)


def _lane_keys(s: Stream) -> list:
    return [s.name] if s.lanes == 1 else [f"{s.name}.{i}" for i in range(s.lanes)]


def testbench(module: str, params: dict, inputs: list, outputs: list, n_in: dict, n_out: dict, files: dict,
              p_gap: float, p_stall: float, seed: int, max_cycles: int, monitors: list) -> str:
    """The Verilog of a testbench module `tb(input clk)` around `module`."""
    def prob(p):  # a probability as a 16-bit threshold on the random draw
        return int(round(min(max(p, 0.0), 1.0) * 65535))

    def q(path):
        return '"' + str(path).replace("\\", "/") + '"'

    L = ["`timescale 1ns/1ps", "module tb(input clk);",
         "    integer cycle = 0;",
         "    reg rst = 1'b1;",
         f"    reg [31:0] rnd = 32'd{(seed * 2654435761 + 1) & 0xFFFFFFFF or 1};",
         "    // xorshift32: the same sequence on every simulator",
         "    wire [31:0] rnd1 = rnd ^ (rnd << 13);",
         "    wire [31:0] rnd2 = rnd1 ^ (rnd1 >> 17);",
         "    wire [31:0] rnd_next = rnd2 ^ (rnd2 << 5);",
         "    integer f_done;"]
    ports = [".clk(clk)", ".rst(rst)"]
    body = []
    for k, s in enumerate(inputs):
        n, w = n_in[s.name], s.width
        L += [f"    reg {s.name}_valid = 1'b0;", f"    wire {s.name}_ready;", f"    reg [{w - 1}:0] {s.name}_data = 0;",
              f"    integer {s.name}_sent = 0;", f"    integer f_{s.name};",
              f"    reg [{w - 1}:0] {s.name}_mem [0:{max(n, 1) - 1}];"]
        ports += [f".{s.name}_valid({s.name}_valid)", f".{s.name}_ready({s.name}_ready)", f".{s.name}_data({s.name}_data)"]
        draw = f"rnd[{(4 * k) % 16 + 15}:{(4 * k) % 16}]"
        body += [f"        if ({s.name}_valid && {s.name}_ready) $fwrite(f_{s.name}, \"%0d\\n\", cycle - {RESET_CYCLES});",
                 f"        if (!{s.name}_valid || {s.name}_ready) begin",
                 f"            if ({s.name}_sent + ({s.name}_valid ? 1 : 0) < {n} && {draw} >= 16'd{prob(p_gap)}) begin",
                 f"                {s.name}_valid <= 1'b1;",
                 f"                {s.name}_data <= {s.name}_mem[{s.name}_sent + ({s.name}_valid ? 1 : 0)];",
                 "            end else begin",
                 f"                {s.name}_valid <= 1'b0;",
                 "            end",
                 f"            if ({s.name}_valid) {s.name}_sent <= {s.name}_sent + 1;",
                 "        end"]
    done_terms = []
    for k, s in enumerate(outputs):
        w, nl = s.width, s.lanes
        L += [f"    wire [{nl - 1}:0] {s.name}_valid;", f"    reg [{nl - 1}:0] {s.name}_ready = 0;",
              f"    wire [{nl * w - 1}:0] {s.name}_data;"]
        ports += [f".{s.name}_valid({s.name}_valid)", f".{s.name}_ready({s.name}_ready)", f".{s.name}_data({s.name}_data)"]
        for i, key in enumerate(_lane_keys(s)):
            tag = f"{s.name}_{i}"
            L += [f"    integer {tag}_got = 0;", f"    integer f_{tag};"]
            draw = f"rnd[{(4 * (k + i) + 8) % 16 + 15}:{(4 * (k + i) + 8) % 16}]"
            body += [f"        if ({s.name}_valid[{i}] && {s.name}_ready[{i}]) begin",
                     f"            $fwrite(f_{tag}, \"%0d %h\\n\", cycle - {RESET_CYCLES}, {s.name}_data[{(i + 1) * w - 1}:{i * w}]);",
                     f"            {tag}_got <= {tag}_got + 1;",
                     "        end",
                     f"        {s.name}_ready[{i}] <= ({draw} >= 16'd{prob(p_stall)});"]
            done_terms.append(f"({tag}_got >= {n_out[key]})")
    mon_decl = []
    if monitors:
        L += ["    integer f_mon;"]
        for name, width in monitors:
            mon_decl.append(f"    wire [{width - 1}:0] mon_{name};")
            ports.append(f".{name}(mon_{name})")
        body.append("        $fwrite(f_mon, \"" + " ".join(["%h"] * len(monitors)) + "\\n\", "
                    + ", ".join(f"mon_{n}" for n, _ in monitors) + ");")
    L += mon_decl
    pstr = ", ".join(f".{k}({_gvalue(v)})" for k, v in params.items())
    L.append(f"    {module} {'#(' + pstr + ') ' if params else ''}dut ({', '.join(ports)});")
    L.append("    initial begin")
    for s in inputs:
        if n_in[s.name]:
            L.append(f"        $readmemh({q(files['in_' + s.name])}, {s.name}_mem);")
        L.append(f"        f_{s.name} = $fopen({q(files['acc_' + s.name])}, \"w\");")
    for s in outputs:
        for i, key in enumerate(_lane_keys(s)):
            L.append(f"        f_{s.name}_{i} = $fopen({q(files['out_' + key])}, \"w\");")
    if monitors:
        L.append(f"        f_mon = $fopen({q(files['mon'])}, \"w\");")
    L.append("    end")
    # done once every expected output beat arrived AND every input beat was taken: a module that leaves
    # input behind would misalign the next image, so that ends in the timeout, not in a pass
    done_terms += [f"({s.name}_sent >= {n_in[s.name]})" for s in inputs]
    all_done = " && ".join(done_terms) or "1"
    L += ["    always @(posedge clk) begin",
          "        cycle <= cycle + 1;",
          "        rnd <= rnd_next;",
          f"        if (cycle == {RESET_CYCLES - 1}) rst <= 1'b0;",
          "        if (!rst) begin"]
    L += ["    " + b for b in body]
    L += [f"            if ({all_done}) begin",
          f"                f_done = $fopen({q(files['done'])}, \"w\");",
          f"                $fwrite(f_done, \"%0d\\n\", cycle - {RESET_CYCLES});",
          "                $fclose(f_done);",
          "                $finish;",
          "            end",
          f"            if (cycle > {max_cycles + RESET_CYCLES}) begin",
          f"                f_done = $fopen({q(files['done'])}, \"w\");",
          "                $fwrite(f_done, \"TIMEOUT\\n\");",
          "                $fclose(f_done);",
          "                $finish;",
          "            end",
          "        end",
          "    end",
          "endmodule", ""]
    return "\n".join(L)


VERILATOR_MAIN = r"""
#include "Vtb.h"
#include "verilated.h"
// The testbench does everything on clk's rising edge and ends with $finish; this only toggles clk.
int main(int argc, char **argv) {
    VerilatedContext *ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    Vtb *top = new Vtb{ctx};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""

IVERILOG_TOP = """`timescale 1ns/1ps
module tb_iverilog;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    tb t (.clk(clk));
endmodule
"""


def _run(cmd, cwd, what):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-4000:]}")
    return p.stdout


def simulate(module: str, params: dict, inputs: dict, outputs: dict, workdir, *, sources=None, sim: str = "iverilog",
             in_bits: dict | None = None, out_bits: dict | None = None, out_signed: dict | None = None,
             n_out: dict | None = None, lanes: dict | None = None, p_gap: float = 0.0, p_stall: float = 0.0,
             seed: int = 1, max_cycles: int = 200000, monitors: list | None = None) -> SimResult:
    """Run `module` (from rtl/<module>.v unless `sources`) with `params` (ints, strings, or (value, bits)
    tuples for wide packed parameters).

    inputs: {stream: (beats, fields) int array}; in_bits: {stream: bits per field} (beat = fields*bits).
    outputs: {stream: fields per beat}; out_bits/out_signed: per stream; n_out: {stream or "m.i": beats
    expected}; lanes: {output stream: N} for vector outputs. monitors: [(port, width)] sampled every
    cycle after reset. Returns a SimResult whose outputs are unpacked into (beats, fields) int64 arrays.
    Raises RuntimeError on a build failure or when the expected beats do not arrive in max_cycles."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    in_bits, out_bits, out_signed = in_bits or {}, out_bits or {}, out_signed or {}
    lanes = lanes or {}
    ins = [Stream(k, int(np.asarray(v).reshape(len(v), -1).shape[1]) * in_bits[k]) for k, v in inputs.items()]
    outs = [Stream(k, f * out_bits[k], lanes.get(k, 1)) for k, f in outputs.items()]
    files = {"done": work / "done.txt", "mon": work / "monitor.txt"}
    n_in = {}
    for s in ins:
        beats = pack_beats(inputs[s.name], in_bits[s.name])
        n_in[s.name] = len(beats)
        digits = max(1, -(-s.width // 4))
        files["in_" + s.name] = work / f"in_{s.name}.hex"
        files["in_" + s.name].write_text("".join(f"{b:0{digits}x}\n" for b in beats))
        files["acc_" + s.name] = work / f"accepted_{s.name}.txt"
    for s in outs:
        for key in _lane_keys(s):
            files["out_" + key] = work / f"out_{key}.txt"
    tb = testbench(module, params, ins, outs, n_in, n_out, files, p_gap, p_stall, seed, max_cycles, monitors or [])
    (work / "tb.v").write_text(tb)
    srcs = [Path(p) for p in (sources or [RTL_DIR / f"{module}.v"])]
    files["done"].unlink(missing_ok=True)
    if sim == "verilator":
        (work / "main.cpp").write_text(VERILATOR_MAIN)
        obj = work / "obj"
        # -O0 C++: these runs are short, the C++ compile is what costs (keep each build well under 20 s)
        _run(["verilator", "--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "tb",
              "--Mdir", str(obj), "-j", "2", "-CFLAGS", "-O0", "-o", "Vtb", "tb.v", *map(str, srcs), "main.cpp"],
             work, "verilator build")
        _run([str(obj / "Vtb")], work, "verilator run")
    elif sim == "iverilog":
        (work / "top.v").write_text(IVERILOG_TOP)
        _run(["iverilog", "-g2012", "-o", "sim.vvp", "-s", "tb_iverilog", "top.v", "tb.v", *map(str, srcs)], work,
             "iverilog build")
        _run(["vvp", "-n", "sim.vvp"], work, "vvp run")
    else:
        raise ValueError(f"simulator {sim!r} is not one of {SIMULATORS}")
    done = files["done"].read_text().strip() if files["done"].exists() else "NO RESULT"
    if not done.isdigit():
        got = {k[4:]: len(p.read_text().splitlines()) for k, p in files.items() if k.startswith("out_") and p.exists()}
        raise RuntimeError(f"{module}: {done} after {max_cycles} cycles: output beats received {got}, expected {n_out}")
    res = SimResult({}, {}, {}, cycles=int(done))
    for s in ins:
        res.in_cycles[s.name] = np.array([int(x) for x in files["acc_" + s.name].read_text().split()], np.int64)
    for s in outs:
        fields = outputs[s.name]
        for key in _lane_keys(s):
            rows = [ln.split() for ln in files["out_" + key].read_text().splitlines() if ln.strip()]
            res.out_cycles[key] = np.array([int(c) for c, _ in rows], np.int64)
            res.outputs[key] = unpack_beats([int(h, 16) for _, h in rows], fields, out_bits[s.name],
                                            out_signed.get(s.name, False))
    if monitors:
        res.monitors = np.array([[int(h, 16) for h in ln.split()] for ln in files["mon"].read_text().splitlines()
                                 if ln.strip()], np.int64).reshape(-1, len(monitors))
    return res


def packed(fields, bits: int) -> tuple:
    """A packed parameter (value, width): field k in bits [(k+1)*bits-1 : k*bits], two's complement."""
    return pack_beats(np.asarray([list(fields)]), bits)[0], bits * len(fields)


def _gvalue(v) -> str:
    """A parameter value as Verilog: (value, bits) a sized hex literal (packed parameters > 32 bits)."""
    if isinstance(v, tuple):
        return f"{int(v[1])}'h{int(v[0]) & ((1 << int(v[1])) - 1):x}"
    return f'"{v}"' if isinstance(v, (str, Path)) else str(int(v))


def lint(module: str, params: dict | None = None, sources=None) -> str:
    """verilator --lint-only -Wall of one module (with parameter overrides); raises on any warning."""
    srcs = [str(p) for p in (sources or [RTL_DIR / f"{module}.v"])]
    gs = [f"-G{k}={_gvalue(v)}" for k, v in (params or {}).items()]
    return _run(["verilator", "--lint-only", "-Wall", "--top-module", module, *gs, *srcs], RTL_DIR, "verilator lint")


def yosys_parse(module: str, sources=None, params: dict | None = None) -> str:
    """yosys 0.23: read_verilog -sv and a generic synth of `module` (the contract's parse check)."""
    srcs = " ".join(str(p) for p in (sources or [RTL_DIR / f"{module}.v"]))
    chp = "".join(f"chparam -set {k} {_gvalue(v)} {module}; " for k, v in (params or {}).items())
    return _run(["yosys", "-q", "-p", f"read_verilog -sv {srcs}; {chp}synth -top {module}"], RTL_DIR, "yosys")
