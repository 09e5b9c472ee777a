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

CORE_MODULES = {"af_fifo": [{"W": 8, "DEPTH": 1}, {"W": 8, "DEPTH": 16}], "af_clone": [{"W": 8, "N": 2}]}


@pytest.mark.parametrize("module", sorted(CORE_MODULES))
def test_lint_and_yosys(module):
    for t in ("verilator", "yosys"):
        if shutil.which(t) is None:
            pytest.skip(f"{t} not on PATH (needed to lint / parse the RTL)")
    for params in CORE_MODULES[module]:
        rtl_sim.lint(module, params)
        rtl_sim.yosys_parse(module, params=params)
