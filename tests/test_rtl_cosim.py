"""The generated RTL (flow/rtl) through Verilator against the golden model: a small random adder ResNet and
the stock test net bit-exact with images back to back (random gaps and back-pressure); a too-shallow
residual FIFO caught as a deadlock naming that stream; bad inputs as one line and a non-zero exit.

Bounded for the default suite: small geometries, a few images, one Verilator build per net.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flow import golden
from flow.cli import main
from flow.driver.packing import input_layout, output_layout, pack, unpack
from flow.hls.random_qnet import QNetBuilder, random_input, random_qnet, random_requant_params
from flow.rtl import harness
from flow.rtl.generate import MANIFEST, plan, write_rtl

needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None,
                                     reason="verilator is not on PATH (the RTL co-simulation needs Verilator >= 5)")


def _sim(net, d, n, reuse=None, shift_add=False, **kw):
    """(got, want, stats) of n random images through the generated top."""
    d.mkdir(parents=True, exist_ok=True)
    write_rtl(net, d, reuse, shift_add)
    x = random_input(net, n, seed=1)
    words = pack(x, input_layout(net)).view("<u8").reshape(-1)
    out, stats, _ = harness.simulate(d, words, n, **kw)
    got = unpack(out.view(np.uint8), output_layout(net), n)
    return got, golden.run(net, x)[net.output].reshape(n, -1), stats


def residual_block_net(width: int = 5, channels: int = 2, bits: int = 3, seed: int = 0):
    """input -> conv 1x1 + requant -> [adder 3x3 + requant -> adder 3x3] + identity residual -> requant:
    the join's residual input must buffer about two rows of the fork while the 3x3 windows fill."""
    rng = np.random.default_rng(seed)
    qb = QNetBuilder((width, width, 1))
    hi = (1 << bits) - 1

    def rq(name, ins):
        m, b, s = random_requant_params(rng, [qb.bounds[t] for t in ins], channels, 0, hi,
                                        negate_first=qb.net.producer(ins[0]).kind == "adder2d")
        return qb.requant(name, ins, m, b, s, bits, False)

    x = rq("stem_rq", [qb.conv2d("stem", "input", rng.integers(-3, 4, size=(1, 1, 1, channels)), 1, (0, 0, 0, 0))])
    wt = lambda: rng.integers(-(1 << bits), 1 << bits, size=(3, 3, channels, channels))
    y = rq("a1_rq", [qb.adder2d("a1", x, wt(), 1, (1, 1, 1, 1), [0] * channels, [0], [0])])
    y = qb.adder2d("a2", y, wt(), 1, (1, 1, 1, 1), [0] * channels, [0], [0])
    rq("out", [y, x])
    return qb.build()


@needs_verilator
def test_random_qnet_bit_exact_back_to_back_with_gaps_and_backpressure(tmp_path):
    # seed 3: conv stem, an adder block with a 1x1 downsample residual, grouped rescale, pool, dense, logits
    net = random_qnet(3, height=6, width=6, max_channels=6)
    assert {o.kind for o in net.ops} == {"conv2d", "adder2d", "requant", "global_sum_pool", "dense"}
    reuse = {"conv1": 3, "b0_adder1": 3, "b0_adder2": 1, "b0_down": 2, "fc": 3}
    got, want, stats = _sim(net, tmp_path / "rtl", 4, reuse, shift_add=True, gap=0.3, backpressure=0.5, seed=7)
    assert got.shape == want.shape and np.array_equal(got, want), f"{int((got != want).sum())} values differ"
    assert stats["tlast_errors"] == 0 and stats["status"] == 0
    t = harness.timing(stats)
    assert all(v > 0 for v in t["latency_cycles_per_image"]) and len(t["interval_cycles_per_image"]) == 3
    man = json.loads((tmp_path / "rtl" / MANIFEST).read_text())
    assert {s["name"] for s in man["streams"]} == set(stats["high_water"])
    for s in man["streams"]:      # a FIFO never holds more than its depth
        assert 0 < stats["high_water"][s["name"]] <= s["depth"]


@needs_verilator
def test_stock_net_through_the_cli_bit_exact(tmp_path, capsys):
    from flow.board.stock import make_qnet
    from flow.hls.build import build

    net = make_qnet()
    b = tmp_path / "build"
    build(net, b, "pynq-z2", reuse=8)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8), y=np.zeros(3, np.int64))
    assert main(["rtl", str(b)]) == 0
    assert main(["cosim", str(b), "--data", str(data), "--images", "3", "--backpressure", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatching output values of 30" in out
    res = json.loads((b / "rtl" / harness.COSIM_JSON).read_text())
    assert res["mismatches"] == 0 and res["outputs_compared"] == 30
    rep = json.loads((b / "report.json").read_text())
    assert rep["verilator"]["source"] == "verilator" and rep["verilator"]["interval_cycles"] > 0
    assert rep["estimate"] and rep["latency"]["source"] == "estimate"      # the estimate is kept as it was
    depths = json.loads((b / "rtl" / harness.FIFO_DEPTHS_JSON).read_text())
    assert set(depths["measured_depths"]) == set(depths["declared"])
    # a second run reuses the Verilator build
    assert main(["cosim", str(b), "--data", str(data), "--images", "2"]) == 0
    assert json.loads((b / "rtl" / harness.COSIM_JSON).read_text())["verilator_build_s"] == 0.0


def test_residual_join_depth_comes_from_the_schedule():
    net = residual_block_net()
    d = plan(net)
    res = d.streams["stem_rq_to_a2"]     # the clone's residual output into the join (a2 + fused out)
    assert res.consumer == "a2" and res.depth > 2 * 5    # more than two rows of the 5-wide fork


@needs_verilator
def test_too_shallow_residual_fifo_is_a_deadlock_naming_it(tmp_path, capsys):
    from flow.hls.build import build

    b = tmp_path / "build"
    build(residual_block_net(), b, "pynq-z2", reuse=1)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, size=(2, 5, 5, 1)).astype(np.uint8),
             y=np.zeros(2, np.int64))
    # at the schedule's depths the net runs bit-exact ...
    assert main(["rtl", str(b)]) == 0
    assert main(["cosim", str(b), "--data", str(data), "--images", "2"]) == 0
    capsys.readouterr()
    # ... with the residual FIFO of the join cut to 2 it deadlocks: exit 3, one line naming that stream
    assert main(["rtl", str(b), "--force", "--depth", "stem_rq_to_a2=2"]) == 0
    assert main(["cosim", str(b), "--data", str(data), "--images", "2", "--timeout", "2000"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deadlock" in err[0], err
    assert "stem_rq_to_a2 (FIFO full 2/2)" in err[0], err[0]
    assert "deadlock" in json.loads((b / "rtl" / harness.COSIM_JSON).read_text())


def test_bad_inputs_one_line(tmp_path, capsys, monkeypatch):
    from flow.outputs import write_marker

    # no build folder
    assert main(["rtl", str(tmp_path / "none")]) == 1
    assert "build folder not found" in capsys.readouterr().err
    # a complete build without rtl/: cosim says what to run
    b = tmp_path / "b"
    b.mkdir()
    random_qnet(3, height=6, width=6, max_channels=6).save(b / "qnet")
    write_marker(b, "test")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((1, 6, 6, 1), np.uint8), y=np.zeros(1, np.int64))
    assert main(["cosim", str(b), "--data", str(data), "--images", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"adderflow rtl {b}" in err[0]
    # an unknown stream in --depth, a bad --depth, a bad --images: nothing written
    assert main(["rtl", str(b), "--depth", "nope=3"]) == 1
    assert "unknown stream 'nope'" in capsys.readouterr().err
    assert main(["rtl", str(b), "--depth", "x"]) == 1
    assert main(["cosim", str(b), "--data", str(data), "--images", "0"]) == 1
    assert not (b / "rtl").exists()
    # rtl written; a second run without --force refuses and leaves it as it was
    assert main(["rtl", str(b)]) == 0
    before = (b / "rtl" / MANIFEST).read_text()
    assert main(["rtl", str(b)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert (b / "rtl" / MANIFEST).read_text() == before
    # no verilator on PATH: exit 2, one line
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["cosim", str(b), "--data", str(data), "--images", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verilator is not on PATH" in err[0]


@needs_verilator
def test_generated_top_and_layers_lint_clean(tmp_path):
    import subprocess

    net = random_qnet(3, height=6, width=6, max_channels=6)
    man = write_rtl(net, tmp_path, {"conv1": 3, "b0_adder1": 3, "b0_down": 2, "fc": 3}, shift_add=True)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", man["top"], *man["files"]], cwd=tmp_path,
                       capture_output=True, text=True)
    # the generated files only: the library modules have their own lint tests (tests/test_rtl_window.py,
    # tests/test_rtl_tail.py); a warning inside them is theirs to fix
    generated = [ln for ln in r.stderr.splitlines() if ln.startswith("%") and ("layer_" in ln or "af_top.v" in ln)]
    assert generated == [], "\n".join(generated)
