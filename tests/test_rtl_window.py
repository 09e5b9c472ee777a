"""The stream core of the register-transfer design (rtl/): FIFO, clone, sliding window, SAD and MAC lane
arrays, each simulated on its own against numpy (bit-exact), with random gaps on s_valid, random
back-pressure on m_ready and images back to back; every module lint-clean and parsed by yosys.

Simulation is iverilog (no C++ compile, so each case costs well under a second); one case per module
family also runs under Verilator, the simulator of `adderflow cosim`, to hold both to the same result.
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

@pytest.mark.parametrize("sim,depth", [("iverilog", 1), ("iverilog", 5), ("verilator", 4)])
def test_fifo_order_and_count(tmp_path, sim, depth):
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


@pytest.mark.parametrize("sim", ["iverilog", "verilator"])
def test_clone_each_output_gets_each_beat_once(tmp_path, sim):
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
                              {"PAD_T": 2, "PAD_B": 0, "PAD_L": 1, "PAD_R": 2, "STRIDE": 3}]}


@pytest.mark.parametrize("module", sorted(CORE_MODULES))
def test_lint_and_yosys(module):
    for t in ("verilator", "yosys"):
        if shutil.which(t) is None:
            pytest.skip(f"{t} not on PATH (needed to lint / parse the RTL)")
    for params in CORE_MODULES[module]:
        rtl_sim.lint(module, params)
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


def test_window_verilator_matches(tmp_path):
    need("verilator")
    x = np.random.default_rng(2).integers(-8, 8, size=(2, 6, 5, 3))   # signed taps are passed through as bits
    r, want = run_window(tmp_path, x, 4, 3, 1, (1, 1, 1, 1), sim="verilator", p_gap=0.3, p_stall=0.3)
    got = np.where(r.outputs["m"] >= 8, r.outputs["m"] - 16, r.outputs["m"])
    np.testing.assert_array_equal(got, want)
