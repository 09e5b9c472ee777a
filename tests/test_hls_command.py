"""`adderflow hls`: outputs, C simulation report, refusal to overwrite, missing vitis_hls (exit 2)."""

import json
import shutil

import numpy as np
import pytest

from flow.cli import main
from flow.hls.random_qnet import random_qnet


@pytest.fixture()
def tiny(tmp_path):
    net = random_qnet(5, height=6, width=6, in_channels=2, max_channels=6)
    net.save(tmp_path / "qnet_in")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", x=rng.integers(0, 256, (5, 6, 6, 2), dtype=np.uint8),
             y=rng.integers(0, net.output_spec.shape[0], 5))
    return tmp_path


def test_hls_command_csim_and_report(tiny, capsys):
    out = tiny / "build"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--bits", "4", "--board", "pynq-z2", "--out", str(out),
               "--csim", "5", "--data", str(tiny / "test.npz"), "--reuse", "2"])
    assert rc == 0, capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    for key in ("model", "bits", "board", "part", "clock_mhz", "source", "csim", "latency", "resources"):
        assert key in rep
    assert rep["part"] == "xc7z020clg400-1"
    cs = rep["csim"]
    assert cs["images"] == 5 and cs["mismatches"] == 0 and cs["accuracy"] == cs["golden_accuracy"]
    assert cs["compile_s"] > 0 and cs["csim_images_per_s"] > 0
    assert (out / "hls_prj" / "firmware" / "myproject.cpp").is_file()
    assert (out / "qnet" / "qnet.json").is_file()
    opts = (out / "hls_prj" / "build_opt.tcl").read_text()  # `vitis_hls -f build_prj.tcl` runs all of it
    for step in ("csim", "synth", "cosim", "export"):
        assert f"{step:<10} 1" in opts
    tb = (out / "hls_prj" / "tb_data" / "tb_output_predictions.dat").read_text().splitlines()
    assert len(tb) == 5
    # never overwritten without --force
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out)])
    assert rc == 1
    assert "--force" in capsys.readouterr().err


def test_synth_without_vitis_exits_2_keeping_outputs(tiny, capsys, monkeypatch):
    if shutil.which("vitis_hls"):
        pytest.skip("vitis_hls is installed here")
    out = tiny / "b2"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--synth"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "vitis_hls" in err[0]
    assert (out / "report.json").is_file() and (out / "hls_prj" / "build_prj.tcl").is_file()


def test_bad_input_is_one_line(tiny, capsys):
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "b3"), "--csim", "3"])
    assert rc == 1 and "--data" in capsys.readouterr().err
    rc = main(["hls", "--qnet", str(tiny / "nope"), "--out", str(tiny / "b4")])
    assert rc == 1


def test_target_fps_uses_the_fitted_reuse_factors(tiny, capsys):
    """--target-fps: fit_reuse's per-layer (legal) reuse factors go into the generated project, C simulation
    stays bit-exact, and the estimate's rate / fit / binding are printed."""
    from flow.boards import get_board
    from flow.hls import schedule
    from flow.qnet import load
    from flow.report import fit_reuse

    out = tiny / "fps"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--csim", "3",
               "--data", str(tiny / "test.npz"), "--target-fps", "20000", "--board", "pynq-z2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "images/s" in printed and "fits:" in printed and "binding:" in printed
    net = load(tiny / "qnet_in")
    fit = fit_reuse(net, get_board("pynq-z2"), 20000, get_board("pynq-z2").clock_mhz, weights_to_bram=True)
    rep = json.loads((out / "report.json").read_text())
    assert rep["csim"]["mismatches"] == 0
    assert rep["hls"]["fit"]["reuse"] == fit["reuse"]
    params = (out / "hls_prj" / "firmware" / "parameters.h").read_text()
    for op in net.ops:
        if op.kind in ("conv2d", "adder2d", "dense"):
            rf = fit["reuse"][op.name]
            assert rf in schedule.legal_reuse_factors(schedule.inputs_per_output(op))
            assert f"reuse_factor = {rf};" in params
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "fps0"), "--target-fps", "0"])
    assert rc == 1


def test_default_design_is_the_fastest_zero_dsp_that_fits(tiny, capsys):
    """No --reuse: the fastest balanced design with LUT <= 85% of the board (estimate), zero-DSP first."""
    from flow.boards import get_board
    from flow.qnet import load
    from flow.report.fit import max_fps_that_fits

    out = tiny / "fitboard"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--board", "pynq-z2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    board = get_board("pynq-z2")
    best = max_fps_that_fits(load(tiny / "qnet_in"), board, board.clock_mhz, weights_to_bram=True,
                             lut_limit_pct=85, shift_add_all=True)
    rep = json.loads((out / "report.json").read_text())
    assert rep["hls"]["zero_dsp"] and rep["resources"]["DSP"] == 0
    assert rep["hls"]["fit"]["images_per_s"] == pytest.approx(best["fps"], rel=1e-6)
    assert rep["board_fit"]["resources"]["LUT"]["utilisation_pct"] <= 85
    assert "fastest zero-DSP design that fits pynq-z2 with LUT <= 85%" in printed


def test_nothing_fits_is_one_line_and_writes_nothing(tiny, capsys):
    """A board too small for any legal design: one line naming what does not fit; no output folder."""
    out = tiny / "nofit"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--lut-limit", "0.5", "--board", "pynq-z2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "no design" in err[0] and "fits pynq-z2 with LUT <= 0.5%" in err[0] and "smallest legal design" in err[0]
    assert not out.exists()


def test_bad_arguments_touch_nothing(tiny, capsys):
    """Checked before any output: --calib-limit 0, an illegal per-layer reuse factor, --force on an existing
    build with a bad argument keeps that build."""
    from flow.hls import schedule
    from flow.qnet import load

    n_in = schedule.inputs_per_output(load(tiny / "qnet_in").op("b0_adder1"))
    (tiny / "bad.yaml").write_text(f"b0_adder1: {n_in + 1}\n")     # n_in + 1 never divides n_in
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "b5"), "--calib-limit", "0"])
    assert rc == 1 and "--calib-limit must be positive" in capsys.readouterr().err
    assert not (tiny / "b5").exists()
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "b6"), "--reuse-config",
               str(tiny / "bad.yaml")])
    err = capsys.readouterr().err
    assert rc == 1 and "b0_adder1" in err and "nearest legal" in err and not (tiny / "b6").exists()
    out = tiny / "keep"
    assert main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--reuse", "4"]) == 0
    before = (out / "report.json").read_bytes()
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--force", "--reuse", "0"])
    assert rc == 1 and (out / "report.json").read_bytes() == before


def test_hls4ml_config_keys_are_honoured_or_refused(tiny, capsys):
    """An hls4ml-style YAML: LayerName.<layer>.ReuseFactor is honoured; any other key is one line naming it."""
    (tiny / "strategy.yaml").write_text("LayerName:\n  fc:\n    ReuseFactor: 1\n    Strategy: Latency\n")
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "s1"), "--reuse-config",
               str(tiny / "strategy.yaml"), "--board", "pynq-z2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "layer fc: Strategy not honoured" in err[0]
    (tiny / "model.yaml").write_text("Model:\n  Precision: ap_fixed<8,2>\nLayerName: {}\n")
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "s2"), "--reuse-config",
               str(tiny / "model.yaml"), "--board", "pynq-z2"])
    assert rc == 1 and "keys Model are not honoured" in capsys.readouterr().err
    (tiny / "ok.yaml").write_text("LayerName:\n  fc:\n    ReuseFactor: 1\n")
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(tiny / "s3"), "--reuse-config",
               str(tiny / "ok.yaml"), "--board", "pynq-z2"])
    assert rc == 0, capsys.readouterr()
    assert json.loads((tiny / "s3" / "report.json").read_text())["reuse"]["fc"] == 1


def test_a_csim_mismatch_is_one_line_and_a_non_zero_exit(tiny, capsys, monkeypatch):
    """Break the golden model's answer: the command says how many values differ, exits 1, keeps the build."""
    import flow.golden

    real = flow.golden.run

    def off_by_one(net, x):
        out = real(net, x)
        out[net.output] = out[net.output] + 1
        return out

    monkeypatch.setattr(flow.golden, "run", off_by_one)
    out = tiny / "mm"
    rc = main(["hls", "--qnet", str(tiny / "qnet_in"), "--out", str(out), "--csim", "2", "--data",
               str(tiny / "test.npz"), "--reuse", "2", "--board", "pynq-z2"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]   # the rest: the progress bar
    assert rc == 1 and len(err) == 1 and "C simulation differs from the golden model in 4 of 4" in err[0]
    assert (out / "report.json").is_file()
