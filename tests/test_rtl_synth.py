"""yosys synthesis of the register-transfer design (flow/rtl/synth.py, `adderflow synth --yosys`).

The build here is a hand-written two-layer design in tmp_path with the generator's manifest layout
(BUILD/rtl/manifest.json, $readmemh relative to BUILD/rtl), so the tests do not depend on the generator."""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flow.outputs import MARKER
from flow.rtl import synth

ROOT = Path(__file__).resolve().parents[1]
YOSYS = shutil.which("yosys")
needs_yosys = pytest.mark.skipif(YOSYS is None, reason="yosys is not on PATH (Debian: apt-get install yosys)")

# `stat -json` of a synth_xilinx -family xcup run, cut down (yosys 0.23): every kind of primitive counted.
STAT_SNIPPET = """{
   "creator": "Yosys 0.23 (git sha1 7ce5011c24b)",
   "invocation": "stat -json ",
   "modules": {
      "\\\\layer_conv1": {
         "num_cells": 99,
         "num_cells_by_type": {"BUFG": 1, "CARRY8": 3, "DSP48E2": 2, "FDRE": 40, "FDSE": 2, "INV": 1,
                               "LUT2": 10, "LUT6": 20, "MUXF7": 4, "RAM32M": 2, "RAMB18E2": 1, "RAMB36E2": 3,
                               "SRLC32E": 5, "LDCE": 1}
      }
   }
}"""

ROM = ["3", "a", "f", "1"]
LAYER_V = """// test layer: a registered ROM lookup plus an accumulator (small, synthesises in about a second)
module layer_{name} #(parameter ROM_FILE = "{rom}") (
    input clk, input rst,
    input s_valid, output s_ready, input [3:0] s_data,
    output reg m_valid, input m_ready, output reg [7:0] m_data);
  reg [3:0] rom [0:3];
  initial $readmemh(ROM_FILE, rom);
  assign s_ready = m_ready || !m_valid;
  always @(posedge clk) begin
    if (rst) m_valid <= 1'b0;
    else if (s_ready) m_valid <= s_valid;
    if (s_valid && s_ready) m_data <= m_data + {{4'd0, rom[s_data[1:0]]}} * s_data;
  end
endmodule
"""
TOP_V = """module af_top (input clk, input rst, input s_valid, output s_ready, input [3:0] s_data,
               output m_valid, input m_ready, output [7:0] m_data);
  wire v; wire r; wire [7:0] d;
  layer_a u_a (.clk(clk), .rst(rst), .s_valid(s_valid), .s_ready(s_ready), .s_data(s_data),
               .m_valid(v), .m_ready(r), .m_data(d));
  layer_b u_b (.clk(clk), .rst(rst), .s_valid(v), .s_ready(r), .s_data(d[3:0]),
               .m_valid(m_valid), .m_ready(m_ready), .m_data(m_data));
endmodule
"""


def make_build(tmp_path: Path, board="pynq-z2", report=True) -> Path:
    build = tmp_path / "build"
    rtl = build / "rtl"
    (rtl / "rom").mkdir(parents=True)
    layers = []
    for name in ("a", "b"):
        (rtl / f"layer_{name}.v").write_text(LAYER_V.format(name=name, rom=f"rom/{name}.hex"))
        (rtl / "rom" / f"{name}.hex").write_text("\n".join(ROM) + "\n")
        layers.append({"name": name, "module": f"layer_{name}", "kind": "adder2d", "rf": 1,
                       "files": [f"layer_{name}.v"], "roms": [f"rom/{name}.hex"], "estimate_cycles": 10})
    (rtl / "af_top.v").write_text(TOP_V)
    from flow.boards import get_board

    man = {"top": "af_top", "word_bits": 64, "files": ["layer_a.v", "layer_b.v", "af_top.v"], "board": board,
           "part": get_board(board).part, "clock_mhz": 100.0, "layers": layers, "streams": []}
    (rtl / "manifest.json").write_text(json.dumps(man))
    if report:
        (build / "report.json").write_text(json.dumps({
            "schema_version": 1, "model": "test", "bits": 4, "board": board, "part": get_board(board).part,
            "clock_mhz": 100.0, "source": "estimate",
            "resources": {"source": "estimate", "LUT": 999, "FF": 888, "BRAM_18K": 7, "DSP": 0},
            "estimate": {"source": "estimate", "latency": {"cycles": 10, "interval_cycles": 10},
                         "resources": {"source": "estimate", "LUT": 999, "FF": 888, "BRAM_18K": 7, "DSP": 0}},
            "per_layer": [{"name": "a", "kind": "adder2d", "source": "estimate", "reuse_factor": 1, "lanes": 1,
                           "cycles": 10, "mult_impl": "none", "multipliers": 0, "weights_in": "-",
                           "LUT": 500, "FF": 400, "BRAM_18K": 0, "DSP": 0}]}))
    (build / MARKER).write_text("")
    return build


def cli(*args, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "flow", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_stat_snippet_counts_each_primitive_kind():
    got = synth.parse_stat_json(STAT_SNIPPET, "layer_conv1")
    # LUT: LUT2 + LUT6 + INV + RAM32M (4 sites each) + SRLC32E (1 site each); MUXF7 is no LUT
    assert got["LUT"] == 10 + 20 + 1 + 2 * 4 + 5
    assert got["LUT_as_memory"] == 2 * 4 + 5
    assert got["FF"] == 42 and got["latches"] == 1
    assert got["BRAM_18K"] == 1 + 2 * 3          # RAMB36 = two 18K halves
    assert got["DSP"] == 2 and got["CARRY"] == 3
    assert got["cells"]["BUFG"] == 1


def test_stat_parser_is_the_pe_cost_benchs():
    """One definition: the PE cost bench counts cells with the same function."""
    src = (ROOT / "bench" / "pe_cost" / "pe_cost.py").read_text()
    assert "cell_counts" in src and 'c.startswith("LUT")' not in src


def test_family_per_board():
    assert synth.family_of("pynq-z2") == "xc7"
    assert {synth.family_of(b) for b in ("zcu104", "ultra96v2", "kv260")} == {"xcup"}


def test_unknown_layer_refused_before_anything_runs(tmp_path):
    build = make_build(tmp_path)
    before = tree(build)
    r = cli("synth", str(build), "--yosys", "--layers", "a,nope")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no layer nope" in r.stderr and "Traceback" not in r.stderr
    assert tree(build) == before


def test_exit_2_without_yosys(tmp_path):
    build = make_build(tmp_path)
    before = tree(build)
    # PATH without yosys but with the python running the CLI
    r = cli("synth", str(build), "--yosys", path=str(tmp_path / "empty-bin"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "yosys is not on PATH" in r.stderr
    assert tree(build) == before


def test_manifest_missing_is_one_line(tmp_path):
    build = make_build(tmp_path)
    (build / "rtl" / "manifest.json").unlink()
    r = cli("synth", str(build), "--yosys")
    assert r.returncode == 1 and "no manifest.json (run `adderflow rtl" in r.stderr and "Traceback" not in r.stderr


@needs_yosys
def test_yosys_one_small_layer(tmp_path):
    """One layer, bounded: a real synth_xilinx run, its log, its counts and wall time."""
    build = make_build(tmp_path)
    man = synth.load_manifest(build / "rtl")
    runs = synth.synth_runs(man, ["a"], whole=False)
    res = synth.run_all(build / "rtl", runs, tmp_path / "logs", "xc7", jobs=1, timeout_s=60, progress=None)
    (r,) = res
    assert r["top"] == "layer_a" and r["wall_s"] < 60
    assert r["LUT"] > 0 and r["FF"] >= 9           # 8-bit accumulator + valid bit
    log = (tmp_path / "logs" / "layer_a.log").read_text()
    assert "synth_xilinx -family xc7" in log and "Number of cells" in log and len(log) < 100_000
    # the $readmemh ROM was read relative to BUILD/rtl (yosys fails on a missing file)
    assert "rom/a.hex" in log or r["LUT"] > 0


@needs_yosys
def test_synth_command_keeps_report_sections_apart(tmp_path):
    build = make_build(tmp_path)
    r = cli("synth", str(build), "--yosys", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "[synth] 3/3" in r.stderr                           # progress lines: 2 layers + whole design
    logs = sorted(p.name for p in (build / "rtl" / "yosys").glob("*.log"))
    assert logs == ["layer_a.log", "layer_b.log", "whole_af_top.log"]
    rep = json.loads((build / "report.json").read_text())
    ys = rep["yosys"]
    assert ys["source"] == "yosys" and ys["tool"] == "Yosys 0.23" and ys["part"] == "xc7z020clg400-1"
    assert set(ys["layers"]) == {"a", "b"} and ys["total"]["what"] == "whole design"
    assert ys["total"]["FF"] >= ys["layers"]["a"]["FF"]
    # the estimate is untouched; the shown figure is yosys's, labelled
    assert rep["estimate"]["resources"] == {"source": "estimate", "LUT": 999, "FF": 888, "BRAM_18K": 7, "DSP": 0}
    assert rep["per_layer"][0]["LUT"] == 500 and rep["per_layer"][0]["source"] == "estimate"
    assert rep["resources"]["source"] == "yosys" and rep["resources"]["LUT"] == ys["total"]["LUT"]
    md = (build / "report.md").read_text()
    assert "## Synthesis: yosys" in md and "| LUT | 999 |" in md and "LUT yosys" in md
    # a second run without --force changes nothing
    before = tree(build)
    r2 = cli("synth", str(build), "--yosys", "--no-whole")
    assert r2.returncode == 1 and "--force" in r2.stderr
    assert tree(build) == before
    # adderflow report re-renders with the yosys column
    r3 = cli("report", str(build))
    assert r3.returncode == 0, r3.stderr
    assert "## Synthesis: yosys" in (build / "report.md").read_text()


def test_vivado_wins_over_yosys():
    from flow.report import apply_measured

    rep = {"board": "pynq-z2", "source": "vivado implementation",
           "resources": {"source": "vivado implementation", "LUT": 1, "FF": 2, "BRAM_18K": 0, "DSP": 0},
           "yosys": {"source": "yosys", "total": {"what": "whole design", "LUT": 10, "FF": 20, "BRAM_18K": 0,
                                                  "DSP": 0, "CARRY": 1}}}
    apply_measured(rep)
    assert rep["resources"]["source"] == "vivado implementation" and rep["resources"]["LUT"] == 1
    # a rebuilt report (no yosys section of its own) gets the previous report's yosys section back
    fresh = {"board": "pynq-z2", "source": "estimate", "resources": {"source": "estimate", "LUT": 5}}
    apply_measured(fresh, previous=rep)
    assert fresh["yosys"] is rep["yosys"] and fresh["resources"]["source"] == "yosys"


# ---- make bitstream IMPL=rtl -------------------------------------------------------------------------

needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")


@needs_tclsh
@pytest.mark.parametrize("board", ["pynq-z2", "kv260"])
def test_rtl_overlay_tcl_packages_the_manifest_files(tmp_path, board):
    from flow.board import bitstream

    build = make_build(tmp_path, board=board)
    res = bitstream.check_tcl(build, board, impl="rtl")
    assert res["ip_vlnv"] == "adderflow.org:rtl:af_top:1.0" and res["rtl_top"] == "af_top"
    assert (res["rtl_files"], res["rtl_data_files"]) == (3, 2)
    params = (build / "vivado_rtl" / "params.tcl").read_text()
    assert "set af_rtl_top {af_top}" in params and "{layer_a.v} {layer_b.v} {af_top.v}" in params
    assert "{rom/a.hex} {rom/b.hex}" in params and "set af_ip_reset_active_low {0}" in params
    entry = (build / "vivado_rtl" / "build_bitstream.tcl").read_text()
    assert entry.index("package_rtl_ip.tcl") < entry.index("block_design.tcl")
    pkg = (build / "vivado_rtl" / "package_rtl_ip.tcl").read_text()
    assert "ipx::package_project" in pkg and "axis_rtl" in pkg
    assert not (build / "vivado").exists()       # the HLS path's scripts are not touched


@needs_tclsh
def test_rtl_overlay_refuses_a_manifest_file_that_is_missing(tmp_path):
    from flow.board import bitstream
    from flow.errors import AdderFlowError

    build = make_build(tmp_path)
    (build / "rtl" / "rom" / "b.hex").unlink()
    with pytest.raises(AdderFlowError, match="lists ROM rom/b.hex"):
        bitstream.check_tcl(build, "pynq-z2", impl="rtl")


@needs_tclsh
@pytest.mark.skipif(shutil.which("vivado") is not None, reason="vivado is installed: this checks the exit without it")
def test_make_bitstream_impl_rtl_exit_2_without_vivado(tmp_path):
    build = make_build(tmp_path)
    before = tree(build)
    # A stand-in VENV: its install stamp is newer than pyproject.toml, so `make` never runs pip (a real VENV
    # here would be reinstalled from this checkout), and its adderflow runs this checkout's CLI.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "adderflow").write_text(f'#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m flow "$@"\n')
    (venv / "bin" / "adderflow").chmod(0o755)
    stamp = venv / ".installed"
    stamp.write_text("")
    t = (ROOT / "pyproject.toml").stat().st_mtime + 3600
    os.utime(stamp, (t, t))
    r = subprocess.run(["make", "-s", "bitstream", "IMPL=rtl", "BOARD=pynq-z2", f"OUT={build}", f"VENV={venv}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "pip" not in r.stdout + r.stderr
    assert r.returncode != 0
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("adderflow bitstream")]
    assert len(err) == 1 and "vivado not on PATH" in err[0] and "dry-run in tclsh passed" in err[0], r.stderr
    # the CLI's exit 2, through make (make[1] when the suite itself runs under `make test`)
    assert re.search(r"make(\[\d+\])?: \*\*\* \[Makefile", r.stderr) and "Error 2" in r.stderr
    after = tree(build)
    assert {k: v for k, v in after.items() if k in before} == before       # everything produced before intact
    assert "vivado_rtl/build_bitstream.tcl" in after and not any(k.startswith("bitstream") for k in after)


# ---- recalibration (bench/rtl_vs_estimate.py) and the estimator reading it ---------------------------

def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    import rtl_vs_estimate

    return rtl_vs_estimate


def test_fit_recovers_term_scales_from_layers():
    """Layers whose yosys LUTs are 1.3 x lanes + 0.5 x weights: the fit finds those scales, not per layer."""
    b = _bench()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        terms = {"adder.lanes": float(rng.integers(500, 5000)), "adder.weights": float(rng.integers(50, 800))}
        lut = 1.3 * terms["adder.lanes"] + 0.5 * terms["adder.weights"]
        rows.append({"name": f"l{i}", "terms": terms, "yosys": {"LUT": lut}})
    s = b.fit_scales(rows, ridge=1e-6)
    assert s["adder.lanes"] == pytest.approx(1.3, rel=1e-3) and s["adder.weights"] == pytest.approx(0.5, rel=1e-2)
    assert all(abs(b.predicted_lut(r, s) / r["yosys"]["LUT"] - 1) < 0.01 for r in rows)


def test_estimator_applies_the_lut_scales(tmp_path, monkeypatch):
    from flow.boards import get_board
    from flow.hls.random_qnet import random_qnet
    from flow.report import calibration
    from flow.report.estimate import Estimator

    net = random_qnet(3)
    raw = Estimator(net, get_board("pynq-z2"), 100, lut_calibration=False).run()
    csv_p = tmp_path / "lut_calibration.csv"
    csv_p.write_text("family,term,scale,fitted_on_layers,tool,made_by\nxc7,adder.lanes,2.0,3,Yosys 0.23,test\n")
    monkeypatch.setattr(calibration, "LUT_CALIBRATION_CSV", csv_p)
    import flow.report.estimate as est_mod

    monkeypatch.setattr(est_mod, "lut_scales", lambda fam: calibration.lut_scales(fam, csv_p))
    cal = Estimator(net, get_board("pynq-z2"), 100).run()
    for r, c in zip(raw["per_layer"], cal["per_layer"]):
        lanes = r["parts"].get("lanes", {}).get("LUT", 0)
        want = r["resources"]["LUT"] + (lanes if r["kind"] == "adder2d" else 0)
        assert c["resources"]["LUT"] == pytest.approx(want, abs=0.2), r["name"]
    assert any(r["kind"] == "adder2d" for r in raw["per_layer"])


def test_cnn_twin_has_conv_layers_with_the_adder_weights():
    from flow.hls.random_qnet import random_qnet

    net = random_qnet(3)
    twin = _bench().cnn_twin_qnet(net)
    assert not any(o.kind == "adder2d" for o in twin.ops)
    for a, t in zip(net.ops, twin.ops):
        assert a.name == t.name
        if a.kind == "adder2d":
            assert t.kind == "conv2d" and np.array_equal(a.arrays["weight"], t.arrays["weight"])
    twin.validate()          # every accumulator re-sized for products


@needs_yosys
def test_keep_going_records_a_failing_layer_and_keeps_the_others(tmp_path):
    build = make_build(tmp_path)
    (build / "rtl" / "layer_b.v").write_text("module layer_b (input clk); this is not verilog\nendmodule\n")
    r = cli("synth", str(build), "--yosys", "--no-whole", "--keep-going")
    assert r.returncode == 1 and "1 yosys run(s) failed" in r.stderr.splitlines()[-1], r.stderr
    ys = json.loads((build / "report.json").read_text())["yosys"]
    assert set(ys["layers"]) == {"a"} and set(ys["failed"]) == {"b"} and "layer_b" in ys["failed"]["b"]
    # without --keep-going the first failure stops the command and nothing is written
    before = tree(build)
    r2 = cli("synth", str(build), "--yosys", "--no-whole", "--force")
    assert r2.returncode == 1 and "yosys failed on layer_b" in r2.stderr and tree(build) == before


def test_merge_sections_keeps_other_layers_and_refuses_another_tool():
    def sec(layers, whole=None, tool="Yosys 0.23", cmd="synth_xilinx -family xc7 -flatten -noiopad -top TOP; stat -json"):
        lay = {n: {"LUT": v, "FF": 1, "BRAM_18K": 0, "DSP": 0, "CARRY": 0, "wall_s": 1.0} for n, v in layers.items()}
        tot = {"LUT": whole, "FF": 1, "BRAM_18K": 0, "DSP": 0, "CARRY": 0, "what": "whole design"} if whole else \
            {"LUT": sum(layers.values()), "what": "sum of the synthesised layers (no --whole run)"}
        return {"tool": tool, "command": cmd, "layers": lay, "total": tot, "wall_s": {"layers": 1, "whole": 5 if whole else None}}

    m = synth.merge_sections(sec({"a": 10, "b": 20}), sec({"b": 25}, whole=100))
    assert {n: L["LUT"] for n, L in m["layers"].items()} == {"a": 10, "b": 25}
    assert m["layers_sum"]["LUT"] == 35 and m["total"] == {**m["total"], "LUT": 100, "what": "whole design"}
    m2 = synth.merge_sections(m, sec({"a": 11}))          # a later layers-only run keeps the whole total
    assert m2["total"]["LUT"] == 100 and m2["layers"]["a"]["LUT"] == 11
    with pytest.raises(synth.AdderFlowError, match="rerun everything with --force"):
        synth.merge_sections(sec({"a": 1}, cmd="synth_xilinx -family xc7 -noiopad -top TOP"), sec({"b": 2}))


@needs_yosys
def test_add_puts_a_whole_design_run_beside_the_layers(tmp_path):
    build = make_build(tmp_path)
    assert cli("synth", str(build), "--yosys", "--no-whole").returncode == 0
    a_before = json.loads((build / "report.json").read_text())["yosys"]["layers"]["a"]
    r = cli("synth", str(build), "--yosys", "--add", "--layers", "b", "--whole")
    assert r.returncode == 0, r.stderr
    ys = json.loads((build / "report.json").read_text())["yosys"]
    assert ys["layers"]["a"] == a_before and set(ys["layers"]) == {"a", "b"}
    assert ys["total"]["what"] == "whole design"
    assert sorted(p.name for p in (build / "rtl" / "yosys").glob("*.log")) == [
        "layer_a.log", "layer_b.log", "whole_af_top.log"]


@needs_yosys
def test_zero_dsp_build_maps_multipliers_to_luts(tmp_path):
    """A zero-DSP build's multipliers (the MAC lanes of the first conv) are LUT logic under -nodsp; without
    it yosys infers a DSP48 for the same 12x12 product."""
    (tmp_path / "mul.v").write_text(
        "module mul(input clk, input signed [11:0] a, input signed [11:0] b, output reg signed [23:0] p);\n"
        "  always @(posedge clk) p <= a * b;\nendmodule\n")
    run = {"name": "mul", "top": "mul", "files": ["mul.v"]}
    (tmp_path / "l1").mkdir()
    (tmp_path / "l2").mkdir()
    with_dsp = synth.synth_one(shutil.which("yosys"), tmp_path, run, "xc7", tmp_path / "l1", 60)
    no_dsp = synth.synth_one(shutil.which("yosys"), tmp_path, run, "xc7", tmp_path / "l2", 60, nodsp=True)
    assert with_dsp["DSP"] >= 1 and no_dsp["DSP"] == 0 and no_dsp["LUT"] > with_dsp["LUT"]
    assert "-nodsp" in (tmp_path / "l2" / f"{synth.log_name(run)}.log").read_text()
    assert synth.synth_command("xc7", "TOP", True).endswith("-nodsp -top TOP")
