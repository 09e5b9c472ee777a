"""The tail modules of the register-transfer design (rtl/af_requant.v, af_sum_pool.v, af_dense.v,
af_axis_in.v, af_axis_out.v), simulated with iverilog (and two of them with Verilator) bit for bit
against flow.golden and flow.driver.packing on random data, with random input gaps and output
back-pressure, images back to back; every module linted with `verilator --lint-only -Wall` and
parsed by yosys, and the CSD requant synthesized (synth_xilinx) to show it needs no DSP.

The testbench is this file's own (a generic one is being written as tests/rtl_sim.py in parallel):
stimulus beats go in through $readmemh, output beats come back as hex lines with their cycle, and the
testbench itself flags any output that changes or drops valid while it is stalled (AXI-stream rule).
iverilog compiles in well under a second, so the many parameter sets stay cheap on 2 cores.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flow import golden
from flow.driver import packing
from flow.hls import schedule
from flow.qnet import bits_for

RTL = Path(__file__).resolve().parent.parent / "rtl"
IVERILOG = shutil.which("iverilog") and shutil.which("vvp")
needs_iverilog = pytest.mark.skipif(not IVERILOG, reason="iverilog/vvp not on PATH: RTL simulation unavailable")


# ---- a minimal stream testbench ------------------------------------------------------------------

def hexw(bits: int) -> int:
    return max(1, -(-bits // 4))


def to_word(values, bits: int) -> int:
    """Values (two's complement at `bits`) packed little end first into one integer beat."""
    w = 0
    for i, v in enumerate(values):
        w |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return w


def from_word(word: int, n: int, bits: int, signed: bool) -> list:
    out = []
    for i in range(n):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


class Stream:
    """One valid/ready stream port group of the DUT: port names, data width, optional last."""

    def __init__(self, valid, ready, data, width, last=None):
        self.valid, self.ready, self.data, self.width, self.last = valid, ready, data, width, last


def simulate(tmp_path: Path, module: str, params: dict, ins: list, out: Stream, n_out: int, *,
             seed: int = 1, gap: int = 0, backpressure: int = 0, max_cycles: int = 200000,
             extra_out: dict | None = None, unused_in: list | None = None, sim: str = "iverilog") -> dict:
    """Run `module` with `params` under iverilog. ins: [(Stream, beats [, lasts])]; collects n_out beats
    of `out`. gap / backpressure: percent of cycles an input withholds valid / the output drops ready.
    sim: "iverilog" (default: compiles in well under a second) or "verilator" (the simulator of the
    generated design; its $random differs, so gaps and stalls fall elsewhere, the beats do not).
    Returns {"beats", "lasts", "cycles" (cycle of each output beat), "extra" {name: final value}}."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    decl, conn, drive, init = [], [], [], []
    for i, item in enumerate(ins):
        s, beats = item[0], item[1]
        lasts = item[2] if len(item) > 2 else None
        n = max(1, len(beats))
        (tmp_path / f"in{i}.hex").write_text("".join(f"{b:0{hexw(s.width)}x}\n" for b in beats) or "0\n")
        decl += [f"reg [{s.width - 1}:0] mem{i} [0:{n - 1}];", f"reg v{i}; wire r{i}; reg [{s.width - 1}:0] d{i};",
                 f"integer k{i};"]
        conn += [f".{s.valid}(v{i})", f".{s.ready}(r{i})", f".{s.data}(d{i})"]
        init += [f'$readmemh("{tmp_path}/in{i}.hex", mem{i});', f"v{i} = 0; k{i} = 0; d{i} = 0;"]
        ld = ""
        if s.last:
            (tmp_path / f"last{i}.hex").write_text("".join(f"{int(b)}\n" for b in lasts) or "0\n")
            decl += [f"reg l{i}; reg lm{i} [0:{n - 1}];"]
            conn += [f".{s.last}(l{i})"]
            init += [f'$readmemh("{tmp_path}/last{i}.hex", lm{i});', f"l{i} = 0;"]
            ld = f" l{i} <= lm{i}[k{i}];"
        drive.append(f"""
        if (v{i} && r{i}) k{i} = k{i} + 1;
        if (!v{i} || r{i}) begin
            if (k{i} < {len(beats)} && ({{$random(seed)}} % 100) >= {gap}) begin
                v{i} <= 1; d{i} <= mem{i}[k{i}];{ld}
            end else v{i} <= 0;
        end""")
    for p in unused_in or []:
        conn.append(f".{p}(1'b0)" if not isinstance(p, tuple) else f".{p[0]}({p[1]}'d0)")
    conn += [f".{out.valid}(ov)", f".{out.ready}(ordy)", f".{out.data}(od)"]
    if out.last:
        conn.append(f".{out.last}(ol)")
    extra_out = extra_out or {}
    for name, w in extra_out.items():
        decl.append(f"wire [{w - 1}:0] x_{name};")
        conn.append(f".{name}(x_{name})")
    ps = ", ".join(f".{k}({v})" for k, v in params.items())
    last_fmt, last_arg = (" %b", ", ol") if out.last else ("", "")
    extra_disp = "".join(f'$fdisplay(fd, "X {n} %0d", x_{n}); ' for n in extra_out)
    tb = f"""`timescale 1ns/1ps
module tb;
reg clk = 0; always #5 clk = ~clk;
reg rst = 1;
integer seed = {seed}; integer cyc = 0; integer nout = 0; integer fd;
{chr(10).join(decl)}
wire ov; reg ordy; wire [{out.width - 1}:0] od; {"wire ol;" if out.last else ""}
reg stalled; reg [{out.width - 1}:0] held; {"reg heldl;" if out.last else ""}
{module} #({ps}) dut (.clk(clk), .rst(rst), {", ".join(conn)});
initial begin
    {chr(10).join(init)}
    ordy = 0; stalled = 0;
    fd = $fopen("{tmp_path}/out.txt", "w");
    repeat (3) @(posedge clk);
    rst <= 0;
end
always @(posedge clk) if (!rst) begin
    cyc = cyc + 1;
    {"".join(drive)}
    if (stalled && (!ov || od !== held{" || ol !== heldl" if out.last else ""})) begin
        $fdisplay(fd, "PROTOCOL output changed while stalled at cycle %0d", cyc);
    end
    stalled <= ov && !ordy; held <= od; {"heldl <= ol;" if out.last else ""}
    if (ov && ordy) begin
        $fdisplay(fd, "B %0d %h{last_fmt}", cyc, od{last_arg});
        nout = nout + 1;
    end
    ordy <= ({{$random(seed)}} % 100) >= {backpressure};
    if (nout == {n_out} || cyc > {max_cycles}) begin
        repeat (4) @(posedge clk);
        {extra_disp}
        if (nout != {n_out}) $fdisplay(fd, "TIMEOUT after %0d cycles, %0d beats", cyc, nout);
        $fclose(fd); $finish;
    end
end
endmodule
"""
    (tmp_path / "tb.v").write_text(tb)
    src = [str(RTL / f"{module}.v")]
    if sim == "verilator":
        # the testbench itself is not held to lint (its $random idioms warn); the modules are, below
        build = ["verilator", "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "tb",
                 "-Mdir", str(tmp_path / "obj"), "-j", "2", str(tmp_path / "tb.v"), *src]
        run = [str(tmp_path / "obj" / "Vtb")]
    else:
        build = ["iverilog", "-g2012", "-o", str(tmp_path / "sim"), str(tmp_path / "tb.v"), *src]
        run = ["vvp", "-n", str(tmp_path / "sim")]
    r = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = (tmp_path / "out.txt").read_text().splitlines()
    bad = [ln for ln in lines if ln.startswith(("PROTOCOL", "TIMEOUT"))]
    assert not bad, bad[:3]
    res = {"beats": [], "lasts": [], "cycles": [], "extra": {}}
    for ln in lines:
        f = ln.split()
        if f[0] == "B":
            res["cycles"].append(int(f[1]))
            res["beats"].append(int(f[2], 16))
            if out.last:
                res["lasts"].append(int(f[3]))
        elif f[0] == "X":
            res["extra"][f[1]] = int(f[2])
    assert len(res["beats"]) == n_out
    return res


# ---- af_requant ----------------------------------------------------------------------------------

REQUANT_EXP_BITS = 6


def requant_rom(mult: np.ndarray, bias: np.ndarray, mult_bits: int, bias_bits: int, csd: bool) -> tuple:
    """(lines of the ROM_FILE, CSD_TERMS) in the word layout of rtl/af_requant.v's header."""
    k_in, c = mult.shape
    exps, signs, t = schedule.csd_tables(mult)          # term-major: [t, k*C + ch]
    words = []
    for ch in range(c):
        w, pos = int(bias[ch]) & ((1 << bias_bits) - 1), bias_bits
        for k in range(k_in):
            if csd:
                for j in range(t):
                    e, s = int(exps[j, k * c + ch]), int(signs[j, k * c + ch])
                    w |= (e | ((s & 3) << REQUANT_EXP_BITS)) << pos
                    pos += REQUANT_EXP_BITS + 2
            else:
                w |= (int(mult[k, ch]) & ((1 << mult_bits) - 1)) << pos
                pos += mult_bits
        words.append(w)
    return words, t


def run_requant(tmp_path, rng, *, c, n_inputs, in_bits, in_signed, out_bits, out_signed, shift, csd,
                n_pixels, in1_bits=4, in1_signed=False, mult_range=(-300, 300), bias_range=(-5000, 5000),
                gap=20, backpressure=30, extreme=False, reuse=1, sim="iverilog"):
    in_lo = -(1 << (in_bits - 1)) if in_signed else 0
    in_hi = (1 << (in_bits - 1)) - 1 if in_signed else (1 << in_bits) - 1
    in1_lo = -(1 << (in1_bits - 1)) if in1_signed else 0
    in1_hi = (1 << (in1_bits - 1)) - 1 if in1_signed else (1 << in1_bits) - 1
    mult = rng.integers(mult_range[0], mult_range[1] + 1, size=(n_inputs, c))
    bias = rng.integers(bias_range[0], bias_range[1] + 1, size=c)
    x0 = rng.integers(in_lo, in_hi + 1, size=(n_pixels, c))
    x1 = rng.integers(in1_lo, in1_hi + 1, size=(n_pixels, c))
    if extreme:   # the corners of the input ranges: saturation on both sides
        x0[: n_pixels // 2] = rng.choice([in_lo, in_hi], size=(n_pixels // 2, c))
    ins = [x0] + ([x1] if n_inputs > 1 else [])
    lo = -(1 << (out_bits - 1)) if out_signed else 0
    hi = (1 << (out_bits - 1)) - 1 if out_signed else (1 << out_bits) - 1
    want = golden.requantize(ins, mult, bias, shift, lo, hi)
    v = sum(t.astype(np.int64) * mult[k] for k, t in enumerate(ins)) + bias   # the sum before rounding
    ranges = [(in_lo, in_hi)] + ([(in1_lo, in1_hi)] if n_inputs > 1 else [])
    sum_bits = schedule.requant_sum_bits(bias, mult, ranges, shift)
    mult_bits = bits_for(min(int(mult.min()), 0), max(int(mult.max()), 0))[0] + 1
    bias_bits = bits_for(min(int(bias.min()), 0), max(int(bias.max()), 0))[0] + 1
    words, t = requant_rom(mult, bias, mult_bits, bias_bits, csd)
    rom_bits = bias_bits + n_inputs * (t * (REQUANT_EXP_BITS + 2) if csd else mult_bits)
    rom = tmp_path / "rq.hex"
    tmp_path.mkdir(parents=True, exist_ok=True)
    rom.write_text("".join(f"{w:0{hexw(rom_bits)}x}\n" for w in words))
    params = {"C": c, "N_INPUTS": n_inputs, "IN_BITS": in_bits, "IN_SIGNED": int(in_signed), "IN1_BITS": in1_bits,
              "IN1_SIGNED": int(in1_signed), "OUT_BITS": out_bits, "OUT_SIGNED": int(out_signed), "SHIFT": shift,
              "LO": lo, "HI": hi, "SUM_BITS": sum_bits, "MULT_BITS": mult_bits, "BIAS_BITS": bias_bits,
              "REUSE": reuse, "CSD": int(csd), "CSD_TERMS": t, "EXP_BITS": REQUANT_EXP_BITS, "ROM_FILE": f'"{rom}"'}
    sin = [(Stream("s_valid", "s_ready", "s_data", c * in_bits), [to_word(p, in_bits) for p in x0])]
    unused = []
    if n_inputs > 1:
        sin.append((Stream("s1_valid", "s1_ready", "s1_data", c * in1_bits), [to_word(p, in1_bits) for p in x1]))
    else:
        unused = ["s1_valid", ("s1_data", c * in1_bits)]
    res = simulate(tmp_path, "af_requant", params, sin, Stream("m_valid", "m_ready", "m_data", c * out_bits),
                   n_pixels, seed=int(rng.integers(1, 1 << 30)), gap=gap, backpressure=backpressure,
                   unused_in=unused, sim=sim)
    got = np.array([from_word(b, c, out_bits, out_signed) for b in res["beats"]])
    res["v"] = v
    return got, want, res


@needs_iverilog
@pytest.mark.parametrize("csd", [False, True])
def test_requant_one_input_bit_exact(tmp_path, csd):
    """Unsigned accumulators (an adder layer) to unsigned 4-bit (ReLU): rounding, saturation at 0 and 15."""
    rng = np.random.default_rng(11 + csd)
    got, want, _ = run_requant(tmp_path, rng, c=5, n_inputs=1, in_bits=10, in_signed=False, out_bits=4,
                               out_signed=False, shift=9, csd=csd, n_pixels=60, extreme=True)
    assert (got == want).all(), np.argwhere(got != want)[:5]
    assert (want == 0).any() and (want == 15).any() and ((want > 0) & (want < 15)).any()   # both clips hit


@needs_iverilog
@pytest.mark.parametrize("csd", [False, True])
def test_requant_residual_bit_exact(tmp_path, csd):
    """Two inputs (residual add, signed conv accumulators + unsigned activation) to a signed output."""
    rng = np.random.default_rng(21 + csd)
    got, want, _ = run_requant(tmp_path, rng, c=4, n_inputs=2, in_bits=12, in_signed=True, in1_bits=4,
                               in1_signed=False, out_bits=6, out_signed=True, shift=7, csd=csd, n_pixels=60,
                               extreme=True)
    assert (got == want).all(), np.argwhere(got != want)[:5]
    assert (want == -32).any() and (want == 31).any()


@needs_iverilog
def test_requant_shift_zero_and_half_up(tmp_path):
    """shift 0 (no rounding constant) and a shift of 1, where half-up vs other roundings differ on odd v."""
    rng = np.random.default_rng(5)
    got, want, _ = run_requant(tmp_path / "s0", rng, c=3, n_inputs=1, in_bits=5, in_signed=True, out_bits=8,
                               out_signed=True, shift=0, csd=True, n_pixels=40, mult_range=(-3, 3),
                               bias_range=(-20, 20))
    assert (got == want).all()
    got, want, res = run_requant(tmp_path / "s1", rng, c=3, n_inputs=1, in_bits=5, in_signed=True, out_bits=8,
                                 out_signed=True, shift=1, csd=False, n_pixels=40, mult_range=(-3, 3),
                                 bias_range=(-20, 20))
    assert (got == want).all()
    # halves of both signs were present: 5/2 -> 3 and -5/2 -> -2 (half up; away from zero would give -3)
    assert ((res["v"] < 0) & (res["v"] % 2 == 1)).any() and ((res["v"] > 0) & (res["v"] % 2 == 1)).any()


@needs_iverilog
def test_requant_throughput_one_beat_per_cycle(tmp_path):
    """Without gaps or back-pressure a beat moves every cycle (fully parallel over the channels)."""
    rng = np.random.default_rng(3)
    got, want, res = run_requant(tmp_path, rng, c=2, n_inputs=2, in_bits=8, in_signed=False, out_bits=4,
                                 out_signed=False, shift=4, csd=True, n_pixels=50, gap=0, backpressure=0)
    assert (got == want).all()
    assert np.all(np.diff(res["cycles"]) == 1)



@needs_iverilog
@pytest.mark.parametrize("csd,reuse", [(False, 3), (True, 3), (True, 6)])
def test_requant_time_multiplexed_bit_exact(tmp_path, csd, reuse):
    """REUSE = R (schedule.requant_reuse): C/R lanes, lane b on channel b*R + q; residual input, both
    clips, random gaps and heavy back-pressure (a result that waits must not be overwritten)."""
    rng = np.random.default_rng(31 + reuse + csd)
    got, want, _ = run_requant(tmp_path, rng, c=6, n_inputs=2, in_bits=11, in_signed=False, in1_bits=4,
                               out_bits=4, out_signed=False, shift=8, csd=csd, n_pixels=40, extreme=True,
                               reuse=reuse, backpressure=70)
    assert (got == want).all(), np.argwhere(got != want)[:5]
    assert (want == 0).any() and (want == 15).any()


@needs_iverilog
def test_requant_time_multiplexed_interval(tmp_path):
    """No gaps or back-pressure: one beat every R cycles (schedule.requant_steps = pixels * R)."""
    rng = np.random.default_rng(8)
    got, want, res = run_requant(tmp_path, rng, c=4, n_inputs=1, in_bits=8, in_signed=True, out_bits=6,
                                 out_signed=True, shift=3, csd=False, n_pixels=30, gap=0, backpressure=0, reuse=2)
    assert (got == want).all()
    assert np.all(np.diff(res["cycles"]) == 2)
    assert res["cycles"][-1] - res["cycles"][0] == schedule.requant_steps(30 - 1, 2)


# ---- af_sum_pool ---------------------------------------------------------------------------------

def pool_golden(x: np.ndarray) -> np.ndarray:
    """flow.golden's global_sum_pool op on (N, H, W, C) integers."""
    from flow.qnet import Op, QNet, TensorSpec
    n, h, w, c = x.shape
    net = QNet(tensors={"x": TensorSpec("x", (h, w, c), 8, True), "y": TensorSpec("y", (c,), 32, True, kind="acc")},
               ops=[Op("global_sum_pool", "pool", ["x"], "y")], input="x", output="y")
    return golden.run(net, x)["y"]


@needs_iverilog
@pytest.mark.parametrize("h,w,c,b,signed,bp", [(4, 3, 5, 4, False, 30), (2, 2, 3, 6, True, 60), (1, 1, 2, 3, True, 0),
                                                 (2, 1, 2, 3, True, 90)])
def test_sum_pool_bit_exact_back_to_back(tmp_path, h, w, c, b, signed, bp):
    """Several images back to back, random gaps and back-pressure; the sum at the pool tensor's exact width."""
    rng = np.random.default_rng(h * 100 + c)
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if signed else (0, (1 << b) - 1)
    n = 5
    x = rng.integers(lo, hi + 1, size=(n, h, w, c))
    x[0] = hi                       # the extremes of the sum: the accumulator width is exactly enough
    if signed:
        x[1] = lo
    acc_bits, acc_signed = bits_for(lo * h * w, hi * h * w)
    beats = [to_word(p, b) for p in x.reshape(-1, c)]
    res = simulate(tmp_path, "af_sum_pool", {"H": h, "W": w, "C": c, "B": b, "ACC_BITS": acc_bits,
                                              "SIGNED": int(signed)},
                   [(Stream("s_valid", "s_ready", "s_data", c * b), beats)],
                   Stream("m_valid", "m_ready", "m_data", c * acc_bits), n, gap=20, backpressure=bp)
    got = np.array([from_word(v, c, acc_bits, acc_signed) for v in res["beats"]])
    assert (got == pool_golden(x)).all()


@needs_iverilog
def test_sum_pool_one_pixel_per_cycle(tmp_path):
    """No gaps, no back-pressure: one vector every H*W cycles (the next image sums while one waits)."""
    rng = np.random.default_rng(9)
    x = rng.integers(0, 16, size=(4, 3, 3, 2))
    res = simulate(tmp_path, "af_sum_pool", {"H": 3, "W": 3, "C": 2, "B": 4, "ACC_BITS": 8},
                   [(Stream("s_valid", "s_ready", "s_data", 8), [to_word(p, 4) for p in x.reshape(-1, 2)])],
                   Stream("m_valid", "m_ready", "m_data", 16), 4)
    assert np.all(np.diff(res["cycles"]) == 9)
    assert (np.array([from_word(v, 2, 8, False) for v in res["beats"]]) == pool_golden(x)).all()


# ---- af_dense ------------------------------------------------------------------------------------

def dense_rom(weight: np.ndarray, rf: int, wb: int) -> list:
    """ROM words of rtl/af_dense.v (and af_sad_array.v): word r, field f*M + m = W[m*RF + r, f]."""
    n_in, cout = weight.shape
    m_lanes = n_in // rf
    words = []
    for r in range(rf):
        w = 0
        for f in range(cout):
            for m in range(m_lanes):
                w |= (int(weight[m * rf + r, f]) & ((1 << wb) - 1)) << ((f * m_lanes + m) * wb)
        words.append(w)
    return words


def dense_golden(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    from flow.qnet import Op, QNet, TensorSpec
    n_in, cout = weight.shape
    net = QNet(tensors={"x": TensorSpec("x", (n_in,), 16, True, kind="acc"),
                        "y": TensorSpec("y", (cout,), 32, True, kind="acc")},
               ops=[Op("dense", "fc", ["x"], "y", arrays={"weight": weight})], input="x", output="y")
    return golden.run(net, x)["y"]


def run_dense(tmp_path, rng, *, n_in, cout, rf, xb, x_signed, wb, n_img, gap=20, backpressure=30):
    xlo, xhi = (-(1 << (xb - 1)), (1 << (xb - 1)) - 1) if x_signed else (0, (1 << xb) - 1)
    weight = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(n_in, cout))
    x = rng.integers(xlo, xhi + 1, size=(n_img, n_in))
    x[0] = xhi                                   # the extremes: the exact accumulator width is just enough
    x[1] = xlo
    want = dense_golden(x, weight)
    pos, neg = np.where(weight > 0, weight, 0), np.where(weight < 0, weight, 0)
    acc_bits, acc_signed = bits_for(int((pos * xlo + neg * xhi).sum(0).min()), int((pos * xhi + neg * xlo).sum(0).max()))
    rom = tmp_path / "w.hex"
    tmp_path.mkdir(parents=True, exist_ok=True)
    rom.write_text("".join(f"{w:0{hexw(cout * (n_in // rf) * wb)}x}\n" for w in dense_rom(weight, rf, wb)))
    params = {"N_IN": n_in, "COUT": cout, "RF": rf, "XB": xb, "X_SIGNED": int(x_signed), "WB": wb,
              "ACC_BITS": acc_bits, "ROM_FILE": f'"{rom}"'}
    res = simulate(tmp_path, "af_dense", params, [(Stream("s_valid", "s_ready", "s_data", n_in * xb),
                                                   [to_word(v, xb) for v in x])],
                   Stream("m_valid", "m_ready", "m_data", cout * acc_bits), n_img, gap=gap,
                   backpressure=backpressure, seed=int(rng.integers(1, 1 << 30)))
    got = np.array([from_word(b, cout, acc_bits, acc_signed) for b in res["beats"]])
    return got, want, res


@needs_iverilog
@pytest.mark.parametrize("rf", [1, 3, 12])
def test_dense_bit_exact_every_rf(tmp_path, rf):
    """RF = 1, a middle divisor and N_IN: the lane-to-input wiring of each is checked against x @ W."""
    rng = np.random.default_rng(rf)
    got, want, _ = run_dense(tmp_path, rng, n_in=12, cout=5, rf=rf, xb=9, x_signed=True, wb=4, n_img=8)
    assert (got == want).all(), (got, want)


@needs_iverilog
def test_dense_unsigned_input_heavy_backpressure(tmp_path):
    """An unsigned pool sum as input (its top bit is magnitude, not sign) under 80% back-pressure."""
    rng = np.random.default_rng(77)
    got, want, _ = run_dense(tmp_path, rng, n_in=8, cout=3, rf=2, xb=10, x_signed=False, wb=5, n_img=10,
                             backpressure=80)
    assert (got == want).all()


@needs_iverilog
def test_dense_interval_is_rf(tmp_path):
    """Back to back without gaps or back-pressure: one result every RF cycles (the schedule's dense cycles)."""
    rng = np.random.default_rng(4)
    got, want, res = run_dense(tmp_path, rng, n_in=16, cout=2, rf=4, xb=6, x_signed=True, wb=4, n_img=6,
                               gap=0, backpressure=0)
    assert (got == want).all()
    assert np.all(np.diff(res["cycles"]) == 4)


# ---- af_axis_in / af_axis_out --------------------------------------------------------------------

def words_of(packed: np.ndarray, word_bits: int) -> list:
    """packing.pack's bytes (N, bytes_per_image) -> the DMA words, little endian, in stream order."""
    raw = np.ascontiguousarray(packed).reshape(-1).tobytes()
    step = word_bits // 8
    return [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]


def run_axis_in(tmp_path, rng, *, shape, value_bits, signed, word_bits, n_img, gap=20, backpressure=30,
                lasts="call", words=None, sim="iverilog"):
    h, w, c = shape
    lay = packing.Layout(h * w * c, value_bits, signed, word_bits)
    x = rng.integers(lay.lo, lay.hi + 1, size=(n_img, h, w, c))
    if words is None:
        words = words_of(packing.pack(x, lay), word_bits)
    if lasts == "call":       # one DMA transfer: TLAST on the final word only
        tl = [0] * (len(words) - 1) + [1]
    else:                     # TLAST at every image's last word
        tl = [int((i + 1) % lay.words == 0) for i in range(len(words))]
    params = {"VALUES": lay.values, "VALUE_BITS": value_bits, "SIGNED": int(signed), "WORD_BITS": word_bits, "C": c}
    res = simulate(tmp_path, "af_axis_in", params,
                   [(Stream("s_axis_tvalid", "s_axis_tready", "s_axis_tdata", word_bits, last="s_axis_tlast"),
                     words, tl)],
                   Stream("m_valid", "m_ready", "m_data", c * value_bits), n_img * h * w, gap=gap,
                   backpressure=backpressure, seed=int(rng.integers(1, 1 << 30)), extra_out={"status": 2}, sim=sim)
    got = np.array([from_word(b, c, value_bits, signed) for b in res["beats"]]).reshape(x.shape)
    return got, x, res, lay


@needs_iverilog
@pytest.mark.parametrize("shape,value_bits,signed,word_bits,lasts", [
    ((3, 3, 3), 8, True, 64, "call"),        # CIFAR-like: 3 values per pixel, 8 per word, padded last word
    ((3, 3, 2), 3, False, 32, "image"),      # 4-bit lanes, 8 per word; TLAST on every image
    ((2, 3, 3), 16, True, 64, "call"),       # 4 lanes of 16 bits: 3-value pixels straddle words
    ((2, 2, 5), 32, True, 64, "image"),      # 2 lanes per word, 5 values per pixel
])
def test_axis_in_unpacks_packing_exactly(tmp_path, shape, value_bits, signed, word_bits, lasts):
    """Words from flow.driver.packing.pack come out as the same integers, pixel by pixel, images back to
    back, with no status flag (TLAST at the call's end or at every image's end are both legal)."""
    rng = np.random.default_rng(value_bits * 7 + word_bits)
    got, x, res, _ = run_axis_in(tmp_path, rng, shape=shape, value_bits=value_bits, signed=signed,
                                 word_bits=word_bits, n_img=4, lasts=lasts)
    assert (got == x).all()
    assert res["extra"]["status"] == 0


@needs_iverilog
def test_axis_in_one_pixel_per_cycle(tmp_path):
    """CIFAR packing (8 lanes of 8 bits, 3 channels): no gaps, no back-pressure -> one pixel every cycle
    within an image (the first layer's one-pixel-per-cycle input rate)."""
    rng = np.random.default_rng(1)
    got, x, res, _ = run_axis_in(tmp_path, rng, shape=(4, 8, 3), value_bits=8, signed=True, word_bits=64,
                                 n_img=3, gap=0, backpressure=0)
    assert (got == x).all()
    d = np.diff(res["cycles"]).reshape(-1)
    assert np.all(d == 1), d


@needs_iverilog
def test_axis_in_early_tlast_flags_and_zero_fills(tmp_path):
    """TLAST on the 2nd word of a 5-word image: status bit 0 (axi_top.cpp STATUS_EARLY_TLAST = 1) is set,
    the rest of that image is zeros, and the next word starts a fresh image (no hang, no shift)."""
    rng = np.random.default_rng(2)
    lay = packing.Layout(4 * 4 * 3, 8, True, 64)                     # 48 values, 6 words
    x = rng.integers(-128, 128, size=(3, 4, 4, 3))
    words = words_of(packing.pack(x, lay), 64)
    cut = words[:2] + words[lay.words:]                              # image 0 ends after 2 words
    tl = [0, 1] + [0] * (2 * lay.words - 1) + [1]
    res = simulate(tmp_path, "af_axis_in", {"VALUES": 48, "VALUE_BITS": 8, "SIGNED": 1, "WORD_BITS": 64, "C": 3},
                   [(Stream("s_axis_tvalid", "s_axis_tready", "s_axis_tdata", 64, last="s_axis_tlast"), cut, tl)],
                   Stream("m_valid", "m_ready", "m_data", 24), 3 * 16, gap=10, backpressure=20,
                   extra_out={"status": 2})
    got = np.array([from_word(b, 3, 8, True) for b in res["beats"]]).reshape(3, 48)
    want = x.reshape(3, 48).copy()
    want[0, 16:] = 0
    assert (got == want).all()
    assert res["extra"]["status"] == 1


@needs_iverilog
def test_axis_in_tlast_at_image_end_is_not_flagged(tmp_path):
    """The control for the test above: the same stream with TLAST only where images end leaves status 0."""
    rng = np.random.default_rng(2)
    got, x, res, _ = run_axis_in(tmp_path, rng, shape=(4, 4, 3), value_bits=8, signed=True, word_bits=64,
                                 n_img=3, lasts="image")
    assert (got == x).all() and res["extra"]["status"] == 0


def run_axis_out(tmp_path, rng, *, shape, bits, signed, word_bits, n_img, gap=20, backpressure=30):
    """Output beats (C = shape[-1] values of `bits`) through af_axis_out; returns (words, lasts, want words,
    layout, res) with the wanted words from packing.pack on packing.output_layout of such an output."""
    from flow.qnet import QNet, TensorSpec
    net = QNet(tensors={"y": TensorSpec("y", tuple(shape), bits, signed)}, ops=[], input="y", output="y")
    lay = packing.output_layout(net, word_bits)
    c = shape[-1]
    y = rng.integers(net.output_spec.lo, net.output_spec.hi + 1, size=(n_img, *shape))
    y[0] = net.output_spec.lo          # the sign bit and the extension to the lane width
    want = words_of(packing.pack(y, lay), word_bits)
    params = {"VALUES": lay.values, "VALUE_BITS": bits, "SIGNED": int(signed), "WORD_BITS": word_bits, "C": c}
    res = simulate(tmp_path, "af_axis_out", params,
                   [(Stream("s_valid", "s_ready", "s_data", c * bits), [to_word(v, bits) for v in y.reshape(-1, c)])],
                   Stream("m_axis_tvalid", "m_axis_tready", "m_axis_tdata", word_bits, last="m_axis_tlast"),
                   len(want), gap=gap, backpressure=backpressure, seed=int(rng.integers(1, 1 << 30)))
    return res["beats"], res["lasts"], want, lay, res


@needs_iverilog
@pytest.mark.parametrize("shape,bits,signed,word_bits", [
    ((10,), 12, True, 64),        # logits: 16-bit lanes, 4 per word, 3 words (last padded)
    ((10,), 5, True, 64),         # narrow logits still get byte lanes (packing.output_layout)
    ((3, 3, 2), 4, False, 32),    # a pixel tensor: 2 values per beat, 4 per word
    ((6,), 20, True, 64),         # 32-bit lanes
])
def test_axis_out_packs_like_packing(tmp_path, shape, bits, signed, word_bits):
    """Every word equals packing.pack of the same values, TLAST exactly on each image's last word."""
    rng = np.random.default_rng(bits * 3 + word_bits)
    got, lasts, want, lay, _ = run_axis_out(tmp_path, rng, shape=shape, bits=bits, signed=signed,
                                            word_bits=word_bits, n_img=4)
    assert got == want
    assert lasts == [int((i + 1) % lay.words == 0) for i in range(len(want))]


@needs_iverilog
def test_axis_out_words_per_image_back_to_back(tmp_path):
    """No gaps, no back-pressure: an image's words leave one per cycle (10 logits, 8 lanes: 2 words)."""
    rng = np.random.default_rng(6)
    got, _, want, lay, res = run_axis_out(tmp_path, rng, shape=(10,), bits=8, signed=True, word_bits=64, n_img=5,
                                          gap=0, backpressure=0)
    assert got == want and lay.words == 2
    assert np.all(np.diff(res["cycles"]) == 1)



# ---- the same under Verilator (the generated design's simulator) -----------------------------------
needs_verilator = pytest.mark.skipif(not shutil.which("verilator"), reason="verilator not on PATH")


@needs_iverilog
@needs_verilator
def test_verilator_agrees_requant_time_multiplexed(tmp_path):
    """Verilator's semantics of the most involved datapath (CSD, residual, REUSE) against flow.golden; the
    build objects stay under tmp_path."""
    rng = np.random.default_rng(41)
    got, want, _ = run_requant(tmp_path, rng, c=6, n_inputs=2, in_bits=11, in_signed=False, in1_bits=4,
                               out_bits=4, out_signed=False, shift=8, csd=True, n_pixels=40, extreme=True,
                               reuse=3, backpressure=50, sim="verilator")
    assert (got == want).all()


@needs_iverilog
@needs_verilator
def test_verilator_agrees_axis_in(tmp_path):
    rng = np.random.default_rng(42)
    got, x, res, _ = run_axis_in(tmp_path, rng, shape=(3, 3, 3), value_bits=8, signed=True, word_bits=64, n_img=3,
                                 sim="verilator")
    assert (got == x).all() and res["extra"]["status"] == 0


# ---- lint and parse ------------------------------------------------------------------------------
# (module, parameter sets beyond the defaults): the non-default sets switch on the branches the defaults
# leave out (CSD, the residual input, signed data, time multiplexing, partial words)
LINT_SETS = {
    "af_requant": [{}, {"C": 4, "N_INPUTS": 2, "CSD": 1, "CSD_TERMS": 3, "SHIFT": 5, "SUM_BITS": 20, "IN_SIGNED": 1,
                        "OUT_SIGNED": 1, "IN1_SIGNED": 1},
                   {"C": 6, "REUSE": 3, "N_INPUTS": 2}, {"C": 4, "REUSE": 4, "CSD": 1},
                   # a word narrower than the default MULT_BITS (CSD, 1-bit exponents) and a sum narrower than the output
                   {"C": 2, "CSD": 1, "CSD_TERMS": 1, "EXP_BITS": 1, "SUM_BITS": 3, "OUT_SIGNED": 1, "REUSE": 2}],
    "af_sum_pool": [{}, {"H": 1, "W": 1, "C": 3, "SIGNED": 1}, {"H": 4, "W": 3, "C": 5, "B": 4, "ACC_BITS": 8}],
    "af_dense": [{}, {"N_IN": 6, "COUT": 3, "RF": 3, "X_SIGNED": 0}, {"N_IN": 4, "RF": 4, "ACC_BITS": 10, "XB": 4, "WB": 5}],
    "af_axis_in": [{}, {"VALUES": 3072, "VALUE_BITS": 8, "C": 3}, {"VALUES": 20, "VALUE_BITS": 3, "C": 4, "WORD_BITS": 32},
                   {"VALUES": 6, "VALUE_BITS": 32, "C": 3}],
    "af_axis_out": [{}, {"VALUES": 10, "VALUE_BITS": 5, "C": 10}, {"VALUES": 20, "VALUE_BITS": 3, "C": 4, "WORD_BITS": 32,
                                                                    "SIGNED": 0}, {"VALUES": 6, "VALUE_BITS": 32, "C": 3}],
}


@pytest.mark.skipif(not shutil.which("verilator"), reason="verilator not on PATH: lint unavailable")
@pytest.mark.parametrize("module,params", [(m, p) for m, sets in LINT_SETS.items() for p in sets],
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_lint_verilator_wall(module, params):
    r = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", module, str(RTL / f"{module}.v"),
                        *[f"-G{k}={v}" for k, v in params.items()]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "%Warning" not in r.stderr, r.stderr


@pytest.mark.skipif(not shutil.which("yosys"), reason="yosys not on PATH: parse/synth check unavailable")
@pytest.mark.parametrize("module", list(LINT_SETS))
def test_yosys_parses_and_synthesizes(module):
    r = subprocess.run(["yosys", "-q", "-p", f"read_verilog -sv {RTL / f'{module}.v'}; synth -top {module}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("yosys"), reason="yosys not on PATH: synthesis unavailable")
def test_requant_csd_needs_no_dsp(tmp_path):
    """CSD = 1 folds the ROM's digits into wiring: synth_xilinx infers no DSP; the plain product does."""
    mult, bias = np.array([[37, -91, 113]]), np.array([5, -7, 9])
    dsp = {}
    for csd in (0, 1):
        words, t = requant_rom(mult, bias, 9, 6, bool(csd))
        rom = tmp_path / f"rq{csd}.hex"
        rom.write_text("".join(f"{w:x}\n" for w in words))
        ps = {"C": 3, "IN_BITS": 12, "IN_SIGNED": 1, "OUT_BITS": 8, "OUT_SIGNED": 1, "SHIFT": 6, "SUM_BITS": 24,
              "MULT_BITS": 9, "BIAS_BITS": 6, "CSD": csd, "CSD_TERMS": t, "EXP_BITS": REQUANT_EXP_BITS}
        chp = " ".join(f"-set {k} {v}" for k, v in ps.items()) + f' -set ROM_FILE "{rom}"'
        r = subprocess.run(["yosys", "-p", f"read_verilog -sv {RTL / 'af_requant.v'}; chparam {chp} af_requant; "
                            "synth_xilinx -family xc7 -top af_requant; stat"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        stat = r.stdout[r.stdout.rindex("Printing statistics"):]
        dsp[csd] = sum(int(ln.split()[-1]) for ln in stat.splitlines() if "DSP48" in ln)
    assert dsp[1] == 0 and dsp[0] > 0, dsp
