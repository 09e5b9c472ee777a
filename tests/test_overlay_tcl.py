"""The generated Vivado/Vitis Tcl, checked as far as a machine without Vivado allows.

Checked here: every Tcl file parses (tclsh `info complete`); the overlay script runs end to end in
tclsh for every board against overlays/common/vivado_stub.tcl, which fails on unknown commands,
on any pin/interface of our IP that the exported IP description (parsed from the wrapper's C++
pragmas) lacks, on Xilinx IP pins not in their product guides, on master-master/slave-slave
connections and on unconnected IP ports; the IP export Tcl produces the VLNV the block design uses.
Not checked (needs Vivado/Vitis HLS, absent here): IP parameter values, the address map Vivado
assigns, synthesis, place and route, timing closure, the bitstream itself.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flow.board import axi_top, bitstream
from flow.boards import BOARDS
from flow.cli import main
from flow.driver.core import DEFAULT_REGISTERS
from flow.errors import AdderFlowError
from flow.paths import REPO_ROOT

TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed")


@pytest.fixture(scope="session")
def stock_build_dir(tmp_path_factory):
    pytest.importorskip("hls4ml")
    from flow.board.stock import stock_build
    return stock_build(tmp_path_factory.getbasetemp() / "adderflow_stock")


def _tcl_complete(path: Path) -> bool:
    script = f"set f [open {{{path}}}]; set s [read $f]; close $f; puts [info complete $s]"
    return subprocess.run([TCLSH], input=script, capture_output=True, text=True).stdout.strip() == "1"


@needs_tclsh
def test_every_tcl_file_parses(stock_build_dir):
    bitstream.write_vivado_scripts(stock_build_dir, "pynq-z2")
    files = sorted((REPO_ROOT / "overlays").rglob("*.tcl")) + sorted((stock_build_dir / "vivado").glob("*.tcl")) \
        + [stock_build_dir / "hls_prj" / axi_top.EXPORT_TCL, stock_build_dir / "hls_prj" / axi_top.BUILD_PRJ]
    assert len(files) >= 12
    bad = [str(f) for f in files if not _tcl_complete(f)]
    assert not bad


def test_ip_description_is_parsed_from_the_wrapper_pragmas(stock_build_dir):
    ip = json.loads((stock_build_dir / "hls_prj" / axi_top.IP_JSON).read_text())
    assert ip["vlnv"] == axi_top.IP_VLNV
    assert {n: i["role"] for n, i in ip["interfaces"].items()} == {
        "in_stream": "slave", "out_stream": "master", "s_axi_control": "slave"}
    assert ip["ports"] == ["ap_clk", "ap_rst_n", "interrupt"]
    # the driver writes the registers the wrapper declares
    assert ip["interfaces"]["s_axi_control"]["registers"] == {"ap_ctrl": 0, "n_images": 0x10, "status": 0x18} \
        == DEFAULT_REGISTERS
    src = (stock_build_dir / "hls_prj" / "firmware" / axi_top.SOURCE).read_text()
    no_return = src.replace("#pragma HLS INTERFACE s_axilite port=return bundle=control", "")
    assert "interrupt" not in axi_top.describe_ip(no_return)["ports"]
    with pytest.raises(AdderFlowError, match="not a parameter"):
        axi_top.describe_ip(src.replace("port=n_images", "port=n_imgs"))


@needs_tclsh
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_overlay_tcl_dry_run_for_every_board(stock_build_dir, board):
    res = bitstream.check_tcl(stock_build_dir, board)
    assert res == {"cells": 7, "intf_nets": 8, "nets": 8, "ip_vlnv": axi_top.IP_VLNV}
    params = (stock_build_dir / "vivado" / "params.tcl").read_text()
    b = BOARDS[board]
    assert f"set af_part {{{b.part}}}" in params and f"set af_family {{{b.family}}}" in params
    assert f"set af_clock_mhz {{{b.clock_mhz:g}}}" in params and "set af_dma_width {64}" in params
    assert (stock_build_dir / "vivado" / "dryrun" / "bitstream" / "adderflow.hwh").is_file()


@pytest.fixture
def overlays_copy(tmp_path, monkeypatch):
    """A scratch copy of overlays/ the checks read instead of the real one (for broken variants)."""
    dst = tmp_path / "overlays"
    shutil.copytree(REPO_ROOT / "overlays", dst)
    monkeypatch.setattr(bitstream, "OVERLAYS", dst)
    return dst


@needs_tclsh
@pytest.mark.parametrize("old, new, message", [
    ("adderflow_top_0/$af_ip_in]", "adderflow_top_0/in_r]", "exported HLS IP has only: in_stream, out_stream"),
    ("[af_pins axi_dma axi_resetn]", "[af_pins axi_dma aresetn]", "axi_dma .axi_dma., which has no such pin"),
    ("connect_bd_net [get_bd_pins adderflow_top_0/$af_ip_irq] [get_bd_pins irq_concat/In2]", "",
     "adderflow_top_0/interrupt is left unconnected"),
    ("connect_bd_net [get_bd_pins axi_dma/mm2s_introut]", "conect_bd_net [get_bd_pins axi_dma/mm2s_introut]",
     "unknown command 'conect_bd_net'"),
    ("[get_bd_intf_pins axi_dma/M_AXIS_MM2S]", "[get_bd_intf_pins axi_dma/M_AXI_S2MM]", "connected twice"),
    ("[get_bd_intf_pins ctrl_interconnect/M01_AXI]", "[get_bd_intf_pins ctrl_interconnect/S00_AXI]",
     "does not join a master to a slave"),
])
def test_dry_run_catches_broken_block_designs(stock_build_dir, overlays_copy, old, new, message):
    bd = overlays_copy / "common" / "block_design.tcl"
    text = bd.read_text()
    assert old in text
    bd.write_text(text.replace(old, new, 1))
    with pytest.raises(AdderFlowError, match=message):
        bitstream.check_tcl(stock_build_dir, "pynq-z2")


@needs_tclsh
def test_dry_run_catches_an_ip_export_with_another_name(stock_build_dir):
    export = stock_build_dir / "hls_prj" / axi_top.EXPORT_TCL
    good = export.read_text()
    try:
        export.write_text(good.replace("-ipname adderflow_top", "-ipname adderflow_accel"))
        with pytest.raises(AdderFlowError, match="does not produce the IP"):
            bitstream.check_tcl(stock_build_dir, "pynq-z2")
    finally:
        export.write_text(good)


def test_bitstream_without_vivado_stops_with_one_line_and_exit_2(stock_build_dir, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("vitis_hls") or shutil.which("vivado"):
        pytest.skip("Vitis/Vivado installed here: the real flow would run")
    shutil.rmtree(stock_build_dir / "vivado", ignore_errors=True)
    rc = main(["bitstream", "--board", "pynq-z2", str(stock_build_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "vitis_hls not on PATH" in err and "vivado -mode batch -source build_bitstream.tcl" in err
    for kept in ("vivado/build_bitstream.tcl", "vivado/params.tcl", "vivado/block_design.tcl",
                 "vivado/settings.tcl", "hls_prj/adderflow_export.tcl", "hls_prj/adderflow_ip.json"):
        assert (stock_build_dir / kept).is_file(), kept
    if TCLSH:
        assert "dry-run in tclsh passed" in err


def test_bitstream_refuses_to_overwrite_and_rejects_unknown_boards(stock_build_dir, capsys):
    assert main(["bitstream", "--board", "zedboard", str(stock_build_dir)]) == 1
    assert "unknown board 'zedboard'" in capsys.readouterr().err
    out = stock_build_dir / "bitstream"
    out.mkdir(exist_ok=True)
    (out / "adderflow.bit").write_bytes(b"\0")
    try:
        assert main(["bitstream", "--board", "pynq-z2", str(stock_build_dir)]) == 1
        assert "exists (use --force" in capsys.readouterr().err
    finally:
        shutil.rmtree(out)
