"""The AXI test bench and build_prj.tcl that Vitis HLS csim/cosim/export run on adderflow_top, checked
without Vitis: the bench is compiled with g++ against the generated wrapper and run on tb_data; the patched
build_prj.tcl is parsed and executed in tclsh against stubs of the vitis_hls commands. Also the parser of
the FIFO depths that cosim profiling writes (flow.hls.fifo_depths) on synthetic files in its format.

Not checked (needs Vitis HLS, absent here): that cosim of the RTL passes, the real profiling output."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flow import golden
from flow.board import axi_top
from flow.errors import AdderFlowError
from flow.hls import fifo_depths
from flow.hls.project import set_build_options, write_tb_data

TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed")
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


@pytest.fixture(scope="session")
def stock_build_dir(tmp_path_factory):
    pytest.importorskip("hls4ml")
    from flow.board.stock import stock_build
    return stock_build(tmp_path_factory.getbasetemp() / "adderflow_stock")


@pytest.fixture(scope="session")
def adder_prj(tmp_path_factory):
    """A tiny random QNet on the AdderVitis backend (its network function loops over n_images)."""
    pytest.importorskip("hls4ml")
    from flow.hls import project
    from flow.hls.random_qnet import random_qnet
    root = tmp_path_factory.mktemp("adder_axi")
    net = random_qnet(3, max_channels=4)
    project.convert(net, root / "hls_prj").write()
    axi_top.write_axi_top(root / "hls_prj", net)
    return root / "hls_prj", net


def _project(request, tmp_path, which):
    """A scratch copy of the hls project (tests write tb_data into it) and its QNet."""
    if which == "stock":
        from flow import qnet as qnet_mod
        build = request.getfixturevalue("stock_build_dir")
        src, net = build / "hls_prj", qnet_mod.load(build / "qnet")
    else:
        src, net = request.getfixturevalue("adder_prj")
    dst = tmp_path / "hls_prj"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*_prj", "tb_data"))
    return dst, net


def _write_tb(prj, net, n, seed=0):
    shape = tuple(net.tensors[net.input].shape)
    x = net.quantize_input(np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8))
    y = golden.run(net, x)[net.output]
    write_tb_data(prj, x, y)
    return x, np.asarray(y).reshape(n, -1)


def _compile_bench(prj, out, *defines):
    """g++ of the bench + network + wrapper, include dirs as flow/driver/emulation.py compiles them."""
    fw = prj / "firmware"
    name = axi_top.project_name(prj)
    cmd = [os.environ.get("CXX", "g++"), "-O1", "-std=c++14", "-w", f"-I{fw}", f"-I{fw / 'ap_types'}",
           f"-I{axi_top.CSIM_INCLUDE}", '-DWEIGHTS_DIR="firmware/weights"', *defines,
           axi_top.TESTBENCH, f"firmware/{name}.cpp", f"firmware/{axi_top.SOURCE}", "-o", str(out)]
    proc = subprocess.run(cmd, cwd=prj, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _run_bench(prj, exe):
    return subprocess.run([str(exe)], cwd=prj, capture_output=True, text=True, timeout=120)


@needs_gpp
@pytest.mark.parametrize("which", ["adder", "stock"])
def test_axi_bench_runs_all_images_in_one_call_and_matches_golden(request, tmp_path, which):
    prj, net = _project(request, tmp_path, which)
    header = (prj / "firmware" / axi_top.HEADER).read_text()
    # the AdderVitis network loops over n_images itself; a stock hls4ml one is called once per image
    assert ("#define ADDERFLOW_NETWORK myproject\n" in header) == (which == "adder")
    assert ("#define ADDERFLOW_NETWORK adderflow_network\n" in header) == (which == "stock")
    _, want = _write_tb(prj, net, 5)
    exe = _compile_bench(prj, tmp_path / "tb")
    res = _run_bench(prj, exe)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "0 mismatches (5 images" in res.stdout and "one call" in res.stdout
    log = (prj / "tb_data" / "csim_results.log").read_text()
    got = np.array([[int(v) for v in line.split()] for line in log.splitlines()])
    np.testing.assert_array_equal(got, want)          # one line per image, the golden logits
    # the cosim build of the same bench writes the other log, byte-identical: build_prj.tcl's compare passes
    rtl = _run_bench(prj, _compile_bench(prj, tmp_path / "tb_rtl", "-DRTL_SIM"))
    assert rtl.returncode == 0
    assert (prj / "tb_data" / "rtl_cosim_results.log").read_text() == log


@needs_gpp
def test_axi_bench_fails_on_a_wrong_golden_logit_and_on_bad_tb_data(request, tmp_path):
    prj, net = _project(request, tmp_path, "adder")
    _, want = _write_tb(prj, net, 3, seed=1)
    golden_file = prj / "tb_data" / "tb_output_predictions.dat"
    rows = golden_file.read_text().splitlines()
    vals = rows[1].split()
    vals[2] = str(int(vals[2]) + 1)
    rows[1] = " ".join(vals)
    golden_file.write_text("\n".join(rows) + "\n")
    exe = _compile_bench(prj, tmp_path / "tb")
    res = _run_bench(prj, exe)
    assert res.returncode == 1
    assert f"image 1 logit 2: got {want[1, 2]}, expected {want[1, 2] + 1}" in res.stdout
    assert "1 mismatches (3 images" in res.stdout
    golden_file.write_text("1 2 3\n")                 # not one row per input image with the network's width
    res = _run_bench(prj, exe)
    assert res.returncode == 2 and "3 values, the network has" in res.stdout
    (prj / "tb_data" / "tb_input_features.dat").unlink()
    res = _run_bench(prj, exe)
    assert res.returncode == 2 and "cannot open tb_data/tb_input_features.dat" in res.stdout


# ---- build_prj.tcl ---------------------------------------------------------------------------------
def test_build_prj_runs_adderflow_top_with_the_axi_bench(stock_build_dir):
    text = (stock_build_dir / "hls_prj" / axi_top.BUILD_PRJ).read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert "set_top adderflow_top" in lines and "set_top ${project_name}" not in lines
    assert 'add_files firmware/${project_name}.cpp -cflags "-std=c++0x"' in lines
    assert 'add_files firmware/adderflow_axi_top.cpp -cflags "-std=c++0x"' in lines
    assert 'add_files -tb adderflow_axi_tb.cpp -cflags "-std=c++0x"' in lines            # csim
    assert 'add_files -tb adderflow_axi_tb.cpp -cflags "-std=c++0x -DRTL_SIM"' in lines  # cosim
    assert "_test.cpp" not in text
    assert f"-vendor {axi_top.IP_VENDOR} -library {axi_top.IP_LIBRARY} -version {axi_top.IP_VERSION} " \
           "-ipname adderflow_top" in text
    assert (stock_build_dir / "hls_prj" / axi_top.TESTBENCH).read_text() == \
        (axi_top.TEMPLATES / "axi_tb.cpp").read_text()


def test_patching_twice_is_a_no_op_and_drift_is_named(stock_build_dir, tmp_path):
    prj = tmp_path / "hls_prj"
    shutil.copytree(stock_build_dir / "hls_prj", prj, ignore=shutil.ignore_patterns("*_prj", "tb_data"))
    tcl = prj / axi_top.BUILD_PRJ
    patched = tcl.read_text()
    axi_top.patch_build_prj(prj)
    assert tcl.read_text() == patched
    import hls4ml
    stock = Path(hls4ml.__file__).parent / "templates" / "vitis" / "build_prj.tcl"
    drifted = stock.read_text().replace('add_files -tb ${project_name}_test.cpp -cflags "-std=c++0x -DRTL_SIM"',
                                        'add_files -tb ${project_name}_test.cpp -cflags "-std=c++14 -DRTL_SIM"')
    tcl.write_text(drifted)
    with pytest.raises(AdderFlowError, match=r"expected 1 occurrence\(s\) of 'add_files -tb \$\{project_name\}"
                                             r"_test.cpp -cflags \"-std=c\+\+0x -DRTL_SIM\"', found 0.*version drift"):
        axi_top.patch_build_prj(prj)
    assert tcl.read_text() == drifted                 # nothing half-patched
    tcl.write_text(stock.read_text())
    axi_top.patch_build_prj(prj)
    assert tcl.read_text() == patched                 # hls4ml's template is exactly what is patched


# Stubs of the vitis_hls commands build_prj.tcl calls: each prints its call; cosim_design -setup leaves the
# files the script then opens (named after the top, as Vitis HLS names them).
VITIS_STUB = r"""
proc _log {args} { puts "CALL $args" }
foreach cmd {open_project add_files open_solution config_array_partition config_compile set_part
             config_schedule create_clock set_clock_uncertainty csim_design csynth_design export_design} {
    proc $cmd {args} "_log $cmd \{*\}\$args"
}
proc set_top {top} { _log set_top $top; set ::af_top $top }
proc cosim_design {args} {
    _log cosim_design {*}$args
    set d myproject_prj/solution1/sim
    file mkdir $d/verilog $d/report
    set f [open $d/verilog/$::af_top.tcl w]; puts $f "log_wave -r /"; puts $f "quit"; close $f
    set f [open $d/verilog/run_sim.tcl w]; close $f
    set f [open $d/report/${::af_top}_cosim.rpt w]; puts $f "cosim report of $::af_top"; close $f
    set f [open tb_data/csim_results.log w]; puts $f "1 2"; close $f
    set f [open tb_data/rtl_cosim_results.log w]; puts $f "1 2"; close $f
}
rename exit _exit
proc exit {args} { puts "EXIT $args"; _exit {*}$args }
"""


@needs_tclsh
@pytest.mark.parametrize("fifo_opt", [False, True])
def test_patched_build_prj_parses_and_runs_in_tclsh_against_vitis_stubs(stock_build_dir, tmp_path, fifo_opt):
    prj = tmp_path / "hls_prj"
    shutil.copytree(stock_build_dir / "hls_prj", prj, ignore=shutil.ignore_patterns("*_prj", "tb_data"))
    set_build_options(prj, csim=True, synth=True, cosim=True, export=True, fifo_opt=fifo_opt)
    script = VITIS_STUB + f"cd {{{prj}}}\nsource build_prj.tcl\n"
    res = subprocess.run([TCLSH], input=script, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = [ln[5:] for ln in res.stdout.splitlines() if ln.startswith("CALL ")]
    assert "set_top adderflow_top" in calls
    assert 'add_files firmware/adderflow_axi_top.cpp -cflags -std=c++0x' in calls
    assert 'add_files -tb adderflow_axi_tb.cpp -cflags -std=c++0x' in calls
    assert 'add_files -tb adderflow_axi_tb.cpp -cflags {-std=c++0x -DRTL_SIM}' in calls   # Tcl list form
    assert [c for c in calls if c.startswith("csim_design")] and [c for c in calls if c.startswith("cosim_design")]
    assert "cosim report of adderflow_top" in res.stdout      # the report cosim names after the top was read
    assert ("Test PASSED" in res.stdout) == (not fifo_opt)     # profiling skips the csim/cosim comparison
    assert ("FIFO optimization started" in res.stdout) == fifo_opt
    assert any(c.startswith("export_design") and "-ipname adderflow_top" in c for c in calls)


# ---- FIFO depths from cosim profiling ----------------------------------------------------------------
def _cosim_profile(prj, rows, members):
    db = prj / "myproject_prj" / "solution1" / ".autopilot" / "db"
    (db / "channel_depth_info").mkdir(parents=True)
    (db / "channel_info.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    with zipfile.ZipFile(db / "channel_depth_info" / "channel.zip", "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return db


def test_cosim_fifo_depths_are_read_from_channel_info_and_the_zip(tmp_path):
    # the layout hls4ml 1.3's vitis fifo_depth_optimization parses: field 1 the FIFO instance (stream + "_U"),
    # field 3 its chan_status file; the last line of that file is the max depth reached
    _cosim_profile(tmp_path, [("0", "layer2_out_U", "100000", "chan_status0.csv"),
                              ("1", "layer4_out_U", "100000", "chan_status1.csv"),
                              ("2", "layer5_out_U", "100000", "chan_status2.csv")],
                   {"chan_status0.csv": "layer2_out\n100000\n0\n37\n", "chan_status1.csv": "a\nb\nc\n5\n",
                    "chan_status2.csv": "a\nb\nc\n0\n"})
    assert fifo_depths.read_cosim_depths(tmp_path) == {"layer2_out": 37, "layer4_out": 5, "layer5_out": 1}


def test_cosim_fifo_depth_errors_name_the_file(tmp_path):
    with pytest.raises(AdderFlowError, match=r"channel_info\.csv: missing \(run cosim with fifo_opt"):
        fifo_depths.read_cosim_depths(tmp_path)
    _cosim_profile(tmp_path, [("0", "layer2_out_U", "16", "chan_status9.csv")], {"chan_status0.csv": "1\n"})
    with pytest.raises(AdderFlowError, match=r"line 1: chan_status9\.csv is not in .*channel\.zip"):
        fifo_depths.read_cosim_depths(tmp_path)


def test_hls4ml_depth_summaries_are_read(tmp_path):
    vitis = tmp_path / "fifo_depths.json"               # generate_depths_file (vitis)
    vitis.write_text(json.dumps({"layer2_out": {"initial": 100000, "optimized": 37},
                                 "layer4_out": {"initial": 100000, "optimized": 5}}, indent=4))
    assert fifo_depths.read_depths_json(vitis) == {"layer2_out": 37, "layer4_out": 5}
    vivado = tmp_path / "max_depth.json"                # generate_max_depth_file (vivado): depth = max + 1
    vivado.write_text(json.dumps([{"name": "layer2_out", "max": 36, "depth": 100000}], indent=4))
    assert fifo_depths.read_depths_json(vivado) == {"layer2_out": 37}
    bad = tmp_path / "other.json"
    bad.write_text('{"layer2_out": 3}')
    with pytest.raises(AdderFlowError, match="neither hls4ml's fifo_depths.json"):
        fifo_depths.read_depths_json(bad)


def test_profiled_depths_are_written_into_the_stream_pragmas(tmp_path):
    cpp = tmp_path / "myproject.cpp"
    cpp.write_text("    hls::stream<a_t> layer2_out(\"layer2_out\");\n    #pragma HLS STREAM variable=layer2_out depth=16\n"
                   "    #pragma HLS STREAM variable=layer4_out depth=2\n")
    assert fifo_depths.set_stream_depths(cpp, fifo_depths.PROFILING_DEPTH) == {
        "layer2_out": (16, 100000), "layer4_out": (2, 100000)}
    assert fifo_depths.set_stream_depths(cpp, {"layer2_out": 37, "adderflow_x": 2}) == {"layer2_out": (100000, 37)}
    assert "variable=layer2_out depth=37\n" in cpp.read_text() and "variable=layer4_out depth=100000\n" in cpp.read_text()
    with pytest.raises(AdderFlowError, match="none of the profiled FIFOs"):
        fifo_depths.set_stream_depths(cpp, {"elsewhere": 3})


def test_build_options_turn_fifo_profiling_on(tmp_path):
    set_build_options(tmp_path, fifo_opt=True)
    opts = dict(ln.split() for ln in (tmp_path / "build_opt.tcl").read_text().splitlines()[1:-1])
    assert opts["fifo_opt"] == "1" and opts["cosim"] == "1" and opts["validation"] == "0"
    set_build_options(tmp_path)
    opts = dict(ln.split() for ln in (tmp_path / "build_opt.tcl").read_text().splitlines()[1:-1])
    assert opts["fifo_opt"] == "0" and opts["validation"] == "1"
    with pytest.raises(AdderFlowError, match="fifo_opt profiles the FIFOs in RTL co-simulation"):
        set_build_options(tmp_path, cosim=False, fifo_opt=True)
