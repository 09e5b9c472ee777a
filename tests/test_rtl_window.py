"""The stream core of the register-transfer design (rtl/): FIFO, clone, sliding window, SAD and MAC lane
arrays, each simulated on its own against numpy (bit-exact), with random gaps on s_valid, random
back-pressure on m_ready and images back to back; every module lint-clean and parsed by yosys.

Simulation is iverilog (no C++ compile, so each case costs well under a second); the two window chains
(window + SAD lanes, window + MAC lanes) also run under Verilator, the simulator of `adderflow cosim`,
to hold both simulators to the same result (each Verilator build is ~10 s of C++ on a loaded core).
"""

import shutil

import numpy as np
import pytest

import rtl_sim
from rtl_sim import RTL_DIR, simulate, tool_missing


def need(sim):
    why = tool_missing(sim)
    if why:
        pytest.skip(why)


# ---- af_fifo / af_clone ----------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 5])
def test_fifo_order_and_count(tmp_path, depth):
    sim = "iverilog"
    need(sim)
    x = np.random.default_rng(depth).integers(0, 1 << 12, size=(200, 1))
    cw = int(depth).bit_length()
    r = simulate("af_fifo", {"W": 12, "DEPTH": depth}, {"s": x}, {"m": 1}, tmp_path, sim=sim, in_bits={"s": 12},
                 out_bits={"m": 12}, n_out={"m": len(x)}, p_gap=0.2, p_stall=0.6, seed=depth,
                 monitors=[("count", cw)])
    np.testing.assert_array_equal(r.outputs["m"], x)
    # count at the start of cycle c = beats pushed before c - beats popped before c
    c = np.arange(len(r.monitors))
    occupancy = (np.searchsorted(r.in_cycles["s"], c, side="left")
                 - np.searchsorted(r.out_cycles["m"], c, side="left"))
    np.testing.assert_array_equal(r.monitors[:, 0], occupancy)
    assert occupancy.max() == depth          # the back-pressure filled it: s_ready dropped exactly at DEPTH


def test_fifo_full_rate(tmp_path):
    """DEPTH 2, no gaps, no back-pressure: one beat per cycle (the schedule's FIFO_MIN_DEPTH chain)."""
    need("iverilog")
    x = np.arange(64).reshape(-1, 1)
    r = simulate("af_fifo", {"W": 8, "DEPTH": 2}, {"s": x}, {"m": 1}, tmp_path, in_bits={"s": 8}, out_bits={"m": 8},
                 n_out={"m": 64})
    np.testing.assert_array_equal(r.outputs["m"], x)
    assert np.all(np.diff(r.out_cycles["m"]) == 1)


def test_clone_each_output_gets_each_beat_once(tmp_path):
    sim = "iverilog"
    need(sim)
    n = 3
    x = np.random.default_rng(7).integers(0, 1 << 10, size=(150, 1))
    r = simulate("af_clone", {"W": 10, "N": n}, {"s": x}, {"m": 1}, tmp_path, sim=sim, in_bits={"s": 10},
                 out_bits={"m": 10}, n_out={f"m.{i}": len(x) for i in range(n)}, lanes={"m": n}, p_gap=0.3,
                 p_stall=0.5, seed=3)
    for i in range(n):
        np.testing.assert_array_equal(r.outputs[f"m.{i}"], x)
    # the input beat moves in the cycle the last output takes it, never earlier
    last_taken = np.max(np.stack([r.out_cycles[f"m.{i}"] for i in range(n)]), axis=0)
    np.testing.assert_array_equal(r.in_cycles["s"], last_taken)


# ---- lint and parse ----------------------------------------------------------------------------------------

CORE_MODULES = {"af_fifo": [{"W": 8, "DEPTH": 1}, {"W": 8, "DEPTH": 16}], "af_clone": [{"W": 8, "N": 2}],
                "af_window": [{}, {"K": 1, "STRIDE": 2, "PAD_T": 0, "PAD_B": 0, "PAD_L": 0, "PAD_R": 0},
                              {"H": 32, "W": 32, "C": 16, "B": 4, "STRIDE": 2},
                              {"PAD_T": 2, "PAD_B": 0, "PAD_L": 1, "PAD_R": 2, "STRIDE": 3}],
                "af_sad_array": [{}, {"RF": 9}, {"N_IN": 144, "COUT": 16, "RF": 16, "XB": 4, "WB": 5, "ACC_BITS": 12,
                                                  "lint_only": 1},
                                 {"RF": 3, "G": 2, "GMB": 9, "GSB": 4, "GROUP_OF": (0b0110, 4),
                                  "GMULT": (0x0FF00, 18), "GSHIFT": (0x80, 8)}],
                "af_mac_array": [{}, {"RF": 9}, {"RF": 3, "X_SIGNED": 0},
                                 {"N_IN": 27, "COUT": 16, "RF": 3, "ACC_BITS": 20}]}


@pytest.mark.parametrize("module", sorted(CORE_MODULES))
def test_lint_and_yosys(module):
    for t in ("verilator", "yosys"):
        if shutil.which(t) is None:
            pytest.skip(f"{t} not on PATH (needed to lint / parse the RTL)")
    for params in CORE_MODULES[module]:
        params = dict(params)
        lint_only = params.pop("lint_only", 0)   # a ResNet-20-sized array: yosys takes minutes on it
        rtl_sim.lint(module, params)
        if not lint_only:
            rtl_sim.yosys_parse(module, params=params)


# ---- af_window -------------------------------------------------------------------------------------------

def im2col(x, k, stride, pads):
    """(N, H, W, C) -> (N*Ho*Wo, K*K*C) windows, tap (u*K + v)*C + c: the contract's window beat."""
    from flow.kernels import out_size, pad_nhwc

    n, h, w, c = x.shape
    xp = pad_nhwc(x, pads)
    ho, wo = out_size(h, k, stride, pads[0], pads[1]), out_size(w, k, stride, pads[2], pads[3])
    cols = np.empty((n, ho, wo, k, k, c), np.int64)
    for u in range(k):
        for v in range(k):
            cols[:, :, :, u, v, :] = xp[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride, :]
    return cols.reshape(n * ho * wo, k * k * c)


def window_params(h, w, c, b, k, stride, pads):
    return {"H": h, "W": w, "C": c, "B": b, "K": k, "STRIDE": stride, "PAD_T": pads[0], "PAD_B": pads[1],
            "PAD_L": pads[2], "PAD_R": pads[3]}


def run_window(tmp_path, x, b, k, stride, pads, sim="iverilog", **kw):
    n, h, w, c = x.shape
    want = im2col(x, k, stride, pads)
    r = simulate("af_window", window_params(h, w, c, b, k, stride, pads), {"s": x.reshape(-1, c)}, {"m": k * k * c},
                 tmp_path, sim=sim, in_bits={"s": b}, out_bits={"m": b}, n_out={"m": len(want)}, **kw)
    return r, want


# (H, W, C, B, K, stride, pads): ResNet-20's 3x3 s1 and s2 (pads (1,1,1,1), resnet20_shaped_qnet) on
# 32x32x16, its 1x1 s2 downsample (pads 0), random_qnet's "same" with the extra row/column at the
# bottom/right, "valid", and a stride that does not divide the padded size
WINDOW_CASES = {
    "resnet20_3x3_s1": (32, 32, 16, 4, 3, 1, (1, 1, 1, 1)),
    "resnet20_3x3_s2": (32, 32, 16, 4, 3, 2, (1, 1, 1, 1)),
    "resnet20_1x1_s2": (32, 32, 16, 4, 1, 2, (0, 0, 0, 0)),
    "same_even_k2": (5, 6, 2, 3, 2, 1, (0, 1, 0, 1)),
    "valid_3x3_s2": (7, 8, 3, 5, 3, 2, (0, 0, 0, 0)),
    "k3_s3_asym": (8, 7, 1, 2, 3, 3, (2, 0, 1, 2)),
}


@pytest.mark.parametrize("case", sorted(WINDOW_CASES))
def test_window_matches_im2col_back_to_back(tmp_path, case):
    """Two images back to back, random input gaps and output back-pressure: every window beat is numpy's."""
    need("iverilog")
    h, w, c, b, k, s, pads = WINDOW_CASES[case]
    x = np.random.default_rng(len(case)).integers(0, 1 << b, size=(2, h, w, c))
    r, want = run_window(tmp_path, x, b, k, s, pads, p_gap=0.2, p_stall=0.3, seed=5)
    np.testing.assert_array_equal(r.outputs["m"], want)
    assert len(r.in_cycles["s"]) == x.size // c       # every pixel taken once, none lost between images


def test_window_one_padded_position_per_cycle(tmp_path):
    """Without gaps or back-pressure the walker spends exactly HP*WP cycles per image (schedule's
    walker steps): image 2's first window comes HP*WP cycles after image 1's."""
    need("iverilog")
    h, w, c, b, k, s, pads = WINDOW_CASES["resnet20_3x3_s2"]
    x = np.random.default_rng(0).integers(0, 1 << b, size=(3, h, w, c))
    r, want = run_window(tmp_path, x, b, k, s, pads)
    np.testing.assert_array_equal(r.outputs["m"], want)
    per_image = len(want) // 3
    starts = r.out_cycles["m"][::per_image]
    np.testing.assert_array_equal(np.diff(starts), (h + pads[0] + pads[1]) * (w + pads[2] + pads[3]))


# ---- window + lane array chains ------------------------------------------------------------------------

def weight_rom(path, w_hwio, rf, wb):
    """The lane arrays' ROM: word r, field f*M + m = W[m*RF + r, f] at wb bits (af_sad_array header)."""
    w2 = np.asarray(w_hwio).reshape(-1, w_hwio.shape[-1])         # (N_IN, COUT), tap order of af_window
    n_in, cout = w2.shape
    lanes = n_in // rf
    words = [[w2[m * rf + r, f] for f in range(cout) for m in range(lanes)] for r in range(rf)]
    digits = -(-cout * lanes * wb // 4)
    path.write_text("".join(f"{v:0{digits}x}\n" for v in rtl_sim.pack_beats(np.array(words, dtype=object), wb)))
    return path


def chain_source(path, window: dict, array: str, aparams: dict, acc_bits: int, cout: int):
    """A test top: af_window -> (array) with the stream ports of the pair."""
    def plist(p):
        return ", ".join(f".{k}({rtl_sim._gvalue(v)})" for k, v in p.items())
    k, c, b = window["K"], window["C"], window["B"]
    path.write_text(f"""module chain (input wire clk, input wire rst,
    input wire s_valid, output wire s_ready, input wire [{c * b - 1}:0] s_data,
    output wire m_valid, input wire m_ready, output wire [{cout * acc_bits - 1}:0] m_data);
    wire w_valid, w_ready;
    wire [{k * k * c * b - 1}:0] w_data;
    af_window #({plist(window)}) win (.clk(clk), .rst(rst), .s_valid(s_valid), .s_ready(s_ready), .s_data(s_data),
        .m_valid(w_valid), .m_ready(w_ready), .m_data(w_data));
    {array} #({plist(aparams)}) lanes (.clk(clk), .rst(rst), .s_valid(w_valid), .s_ready(w_ready), .s_data(w_data),
        .m_valid(m_valid), .m_ready(m_ready), .m_data(m_data));
endmodule
""")
    return [path, RTL_DIR / "af_window.v", RTL_DIR / f"{array}.v"]


def sad_layer(rng, cin, cout, k, xb, groups):
    """A random adder2d layer: HWIO weights of (xb+1)-bit range, groups with rescale (one identity)."""
    from flow.qnet import bits_for

    wb = xb + 2
    w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, k, cin, cout))
    goc = rng.integers(0, groups, size=cout)
    goc[:groups] = np.arange(groups)                  # every group used
    gshift = rng.integers(1, 9, size=groups)
    gmult = rng.integers(1, 3 << gshift)
    gmult[0] = 0                                      # group 0: the identity (QNet: mult == 0)
    return {"w": w, "wb": wb, "goc": goc, "gmult": gmult, "gshift": gshift,
            "gmb": max(bits_for(0, int(gmult.max()))[0] + 1, 2), "gsb": max(int(gshift.max()).bit_length(), 1)}


def sad_golden(x, layer, xb, stride, pads):
    from flow.golden import rescale_activation
    from flow.kernels import sad2d_grouped

    hi = (1 << xb) - 1
    versions = np.stack([rescale_activation(x, int(m), int(s), hi) for m, s in zip(layer["gmult"], layer["gshift"])])
    return sad2d_grouped(versions, layer["w"], layer["goc"], stride, pads)


def sad_params(layer, n_in, cout, rf, xb, acc_bits, rom):
    g = len(layer["gmult"])
    giw = max((g - 1).bit_length(), 1)
    return {"N_IN": n_in, "COUT": cout, "RF": rf, "XB": xb, "WB": layer["wb"], "ACC_BITS": acc_bits, "G": g,
            "GIW": giw, "GMB": layer["gmb"], "GSB": layer["gsb"], "GROUP_OF": rtl_sim.packed(layer["goc"], giw),
            "GMULT": rtl_sim.packed(layer["gmult"], layer["gmb"]), "GSHIFT": rtl_sim.packed(layer["gshift"], layer["gsb"]),
            "ROM_FILE": str(rom)}


def run_sad_chain(tmp_path, geom, cout, rf, groups, n_images=2, seed=0, sim="iverilog", **kw):
    """Random layer + images through af_window -> af_sad_array; returns (result, golden (beats, COUT), g)."""
    from flow.hls.schedule import WindowGeometry

    h, w, c, xb, k, s, pads = geom
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layer = sad_layer(rng, c, cout, k, xb, groups)
    x = rng.integers(0, 1 << xb, size=(n_images, h, w, c))
    want = sad_golden(x, layer, xb, s, pads)
    n_in = k * k * c
    acc_bits = int(want.max()).bit_length() + 1
    rom = weight_rom(tmp_path / "w.hex", layer["w"], rf, layer["wb"])
    srcs = chain_source(tmp_path / "chain.v", window_params(h, w, c, xb, k, s, pads), "af_sad_array",
                        sad_params(layer, n_in, cout, rf, xb, acc_bits, rom), acc_bits, cout)
    r = simulate("chain", {}, {"s": x.reshape(-1, c)}, {"m": cout}, tmp_path / "sim", sources=srcs, sim=sim,
                 in_bits={"s": xb}, out_bits={"m": acc_bits}, n_out={"m": want.size // cout}, **kw)
    ho, wo = want.shape[1:3]
    g = WindowGeometry(h, w, c, ho, wo, cout, k, k, s, *pads)
    return r, want.reshape(-1, cout), g


# (geometry, COUT, RF, groups): RF 1, a middle divisor and N_IN; groups 1 and 2 (one rescaled)
SAD_CASES = {
    "3x3_rf1_g2": ((6, 5, 3, 4, 3, 1, (1, 1, 1, 1)), 5, 1, 2),
    "3x3_rf9_g2": ((6, 5, 3, 4, 3, 1, (1, 1, 1, 1)), 5, 9, 2),
    "3x3_rf27_g1": ((6, 5, 3, 4, 3, 2, (1, 1, 1, 1)), 4, 27, 1),
    "1x1_s2_rf2_g2": ((6, 6, 4, 3, 1, 2, (0, 0, 0, 0)), 6, 2, 2),
    "2x2_same_rf4_g3": ((5, 4, 2, 5, 2, 1, (0, 1, 0, 1)), 3, 4, 3),
}


@pytest.mark.parametrize("case", sorted(SAD_CASES))
def test_sad_chain_bit_exact(tmp_path, case):
    """window + SAD lanes == flow.kernels.sad2d_grouped of the golden rescaled versions, two images back to
    back with random input gaps and output back-pressure."""
    need("iverilog")
    geom, cout, rf, groups = SAD_CASES[case]
    r, want, _ = run_sad_chain(tmp_path, geom, cout, rf, groups, p_gap=0.25, p_stall=0.4, seed=len(case))
    np.testing.assert_array_equal(r.outputs["m"], want)


def test_sad_chain_verilator(tmp_path):
    need("verilator")
    r, want, _ = run_sad_chain(tmp_path, SAD_CASES["3x3_rf9_g2"][0], 5, 3, 2, sim="verilator", p_gap=0.2, p_stall=0.3)
    np.testing.assert_array_equal(r.outputs["m"], want)


def run_mac_chain(tmp_path, geom, cout, rf, wb=4, n_images=2, seed=0, sim="iverilog", **kw):
    """Random signed images and weights through af_window -> af_mac_array; golden flow.kernels.conv2d."""
    from flow.kernels import conv2d

    h, w, c, xb, k, s, pads = geom
    rng = np.random.default_rng(seed)
    wt = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, k, c, cout))
    x = rng.integers(-(1 << (xb - 1)), 1 << (xb - 1), size=(n_images, h, w, c))
    want = conv2d(x.astype(np.int64), wt.astype(np.int64), s, pads).reshape(-1, cout)
    acc_bits = int(np.abs(want).max()).bit_length() + 1
    n_in = k * k * c
    rom = weight_rom(tmp_path / "w.hex", wt, rf, wb)
    params = {"N_IN": n_in, "COUT": cout, "RF": rf, "XB": xb, "WB": wb, "ACC_BITS": acc_bits, "X_SIGNED": 1,
              "ROM_FILE": str(rom)}
    srcs = chain_source(tmp_path / "chain.v", window_params(h, w, c, xb, k, s, pads), "af_mac_array", params,
                        acc_bits, cout)
    r = simulate("chain", {}, {"s": x.reshape(-1, c)}, {"m": cout}, tmp_path / "sim", sources=srcs, sim=sim,
                 in_bits={"s": xb}, out_bits={"m": acc_bits}, out_signed={"m": True}, n_out={"m": len(want)}, **kw)
    return r, want


# the first conv: int8 input, 3x3 pad 1 (ResNet-20 stem shape, smaller image), RF 1 / 3 / N_IN
MAC_CASES = {"stem_rf1": ((5, 6, 3, 8, 3, 1, (1, 1, 1, 1)), 4, 1),
             "stem_rf3": ((5, 6, 3, 8, 3, 1, (1, 1, 1, 1)), 4, 3),
             "stem_rf27": ((5, 6, 3, 8, 3, 2, (1, 1, 1, 1)), 3, 27)}


@pytest.mark.parametrize("case", sorted(MAC_CASES))
def test_mac_chain_bit_exact(tmp_path, case):
    need("iverilog")
    geom, cout, rf = MAC_CASES[case]
    r, want = run_mac_chain(tmp_path, geom, cout, rf, p_gap=0.25, p_stall=0.4, seed=len(case))
    np.testing.assert_array_equal(r.outputs["m"], want)


def test_mac_chain_verilator(tmp_path):
    need("verilator")
    r, want = run_mac_chain(tmp_path, MAC_CASES["stem_rf3"][0], 4, 9, sim="verilator", p_gap=0.2, p_stall=0.3)
    np.testing.assert_array_equal(r.outputs["m"], want)


# ---- cycles: what the schedule counts ----------------------------------------------------------------------

def test_sad_array_steady_state_is_rf_cycles(tmp_path):
    """Windows offered back to back, no back-pressure: one window taken and one result out every RF cycles
    (the next beat is accepted while the last result waits in the output register)."""
    need("iverilog")
    rf, n_in, cout, xb = 3, 9, 4, 4
    rng = np.random.default_rng(1)
    layer = sad_layer(rng, 1, cout, 3, xb, 2)
    x = rng.integers(0, 1 << xb, size=(1, 4, 4, 1))
    wins = im2col(x, 3, 1, (0, 0, 0, 0))
    want = sad_golden(x, layer, xb, 1, (0, 0, 0, 0)).reshape(-1, cout)
    acc_bits = int(want.max()).bit_length() + 1
    rom = weight_rom(tmp_path / "w.hex", layer["w"], rf, layer["wb"])
    r = simulate("af_sad_array", sad_params(layer, n_in, cout, rf, xb, acc_bits, rom), {"s": wins}, {"m": cout},
                 tmp_path / "sim", in_bits={"s": xb}, out_bits={"m": acc_bits}, n_out={"m": len(want)})
    np.testing.assert_array_equal(r.outputs["m"], want)
    assert np.all(np.diff(r.in_cycles["s"]) == rf)
    assert np.all(np.diff(r.out_cycles["m"]) == rf)
    # latency: taken at edge c, lane cycles r = 0..RF-1 end at edge c+RF, the result register is read at c+RF+1
    assert r.out_cycles["m"][0] - r.in_cycles["s"][0] == rf + 1


# (geometry, COUT, RF): walker-bound (RF 1), kernel-bound (RF = N_IN), in between; stride 2
PAIR_CASES = {"s1_rf1": ((8, 8, 2, 4, 3, 1, (1, 1, 1, 1)), 3, 1),
              "s1_rf6": ((8, 8, 2, 4, 3, 1, (1, 1, 1, 1)), 3, 6),
              "s1_rf18": ((8, 8, 2, 4, 3, 1, (1, 1, 1, 1)), 3, 18),
              "s2_rf9": ((8, 8, 2, 4, 3, 2, (1, 1, 1, 1)), 3, 9)}


@pytest.mark.parametrize("case", sorted(PAIR_CASES))
def test_pair_interval_within_window_steps(tmp_path, case):
    """af_window + af_sad_array, three images back to back, no gaps or back-pressure: the per-image
    interval is at least what either side needs alone (HP*WP walker steps, Ho*Wo*RF lane cycles) and at
    most schedule.window_steps (their sum: the HLS walker waits while its kernel runs; here the two
    overlap, so the pair is faster by up to the smaller of the two)."""
    from flow.hls.schedule import window_steps

    need("iverilog")
    geom, cout, rf = PAIR_CASES[case]
    r, want, g = run_sad_chain(tmp_path, geom, cout, rf, 2, n_images=3)
    np.testing.assert_array_equal(r.outputs["m"], want)
    per_image = g.out_pixels
    intervals = np.diff(r.out_cycles["m"][::per_image])
    assert np.all(intervals == intervals[0])                   # steady state from the second image on
    assert max(g.hp * g.wp, g.out_pixels * rf) <= intervals[0] <= window_steps(g, rf)


def test_yosys_netlist_of_sad_chain_is_bit_exact(tmp_path):
    """yosys reads the modules as the simulators do: the synthesized (flattened, generic) netlist of
    window + SAD lanes with a rescaled group, RF 3, is again bit-exact against sad2d_grouped."""
    import subprocess

    need("iverilog")
    if shutil.which("yosys") is None:
        pytest.skip("yosys not on PATH")
    geom, cout, _, groups = SAD_CASES["3x3_rf9_g2"]
    r, want, _ = run_sad_chain(tmp_path / "rtl", geom, cout, 3, groups)
    np.testing.assert_array_equal(r.outputs["m"], want)
    net = tmp_path / "net.v"
    srcs = [tmp_path / "rtl" / "chain.v", RTL_DIR / "af_window.v", RTL_DIR / "af_sad_array.v"]
    subprocess.run(["yosys", "-q", "-p", f"read_verilog -sv {' '.join(map(str, srcs))}; synth -flatten -top chain; "
                    f"write_verilog -noattr {net}"], check=True)
    h, w, c, xb, k, s, pads = geom
    rng = np.random.default_rng(0)                      # run_sad_chain's draws: the layer, then the images
    sad_layer(rng, c, cout, k, xb, groups)
    x = rng.integers(0, 1 << xb, size=(2, h, w, c))
    acc_bits = int(want.max()).bit_length() + 1
    r2 = simulate("chain", {}, {"s": x.reshape(-1, c)}, {"m": cout}, tmp_path / "net", sources=[net],
                  in_bits={"s": xb}, out_bits={"m": acc_bits}, n_out={"m": len(want)}, p_gap=0.2, p_stall=0.3)
    np.testing.assert_array_equal(r2.outputs["m"], want)


@pytest.mark.parametrize("module", ["af_sad_array", "af_mac_array"])
def test_illegal_rf_stops_elaboration_naming_it(module):
    """RF = 4 does not divide N_IN = 9: no fixed lane wiring, so elaboration stops with the reason."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not on PATH (needed to lint the RTL)")
    with pytest.raises(RuntimeError, match="RF_must_divide_N_IN"):
        rtl_sim.lint(module, {"N_IN": 9, "RF": 4})
    rtl_sim.lint(module, {"N_IN": 9, "RF": 3})
