"""Real vendor reports: the Vivado HLS 2020.1 fixture must parse to exactly its numbers."""

import shutil

import pytest

from flow.report.parse import (parse_csynth_instances, parse_reports, parse_timing_summary,
                               parse_vivado_utilization)


@pytest.fixture(scope="module")
def fixture_dir(shared):
    d = shared / "fixtures" / "vivado_hls_2020.1_report"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


def test_fixture_csynth_and_vivado_numbers(fixture_dir):
    r = parse_reports(fixture_dir)
    cs = r["csynth"]
    assert cs["latency_cycles"] == {"best": 10, "worst": 10}
    assert cs["interval_cycles"] == {"min": 8, "max": 8}
    assert cs["resources"]["LUT"] == 2532
    assert cs["resources"]["DSP"] == 73
    assert cs["resources"]["FF"] == 7969
    assert cs["resources"]["BRAM_18K"] == 0
    assert cs["available"]["LUT"] == 53200 and cs["available"]["DSP"] == 220
    assert cs["target_clock_ns"] == 5.0 and cs["estimated_clock_ns"] == pytest.approx(4.049)
    assert r["vivado_synth"]["LUT"] == 1526
    assert r["vivado_synth"]["DSP"] == 66
    assert r["vivado_synth"]["FF"] == 2428
    assert r["vivado_synth"]["BRAM_18K"] == 0
    assert r["tool"] == "vivado_hls" and r["tool_version"] == "2020.1"
    # hls4ml's own parser did the csynth part (we extend it, not replace it)
    assert r["hls4ml_raw"]["CSynthesisReport"]["LUT"] == "2532"


def test_fixture_per_instance_table(fixture_dir):
    rows = {r["module"].split("_array")[0]: r for r in parse_csynth_instances(fixture_dir / "myproject_csynth.rpt")}
    assert rows["dense"]["latency_max"] == 7 and rows["dense"]["DSP"] == 73 and rows["dense"]["LUT"] == 2134
    assert rows["relu"]["interval_max"] == 1 and rows["relu"]["LUT"] == 256


def test_hls4ml_project_layout(fixture_dir, tmp_path):
    """A real hls4ml project tree (project.tcl + myproject_prj/solution1/syn/report) parses the same."""
    (tmp_path / "project.tcl").write_text('set project_name "myproject"\nset backend "vitis"\n')
    rep = tmp_path / "myproject_prj" / "solution1" / "syn" / "report"
    rep.mkdir(parents=True)
    shutil.copy(fixture_dir / "myproject_csynth.xml", rep)
    shutil.copy(fixture_dir / "vivado_hls.app", tmp_path / "myproject_prj" / "vivado_hls.app")
    shutil.copy(fixture_dir / "vivado_synth.rpt", tmp_path)
    r = parse_reports(tmp_path)
    assert r["csynth"]["latency_cycles"]["worst"] == 10 and r["vivado_synth"]["DSP"] == 66


def test_no_report_gives_none(tmp_path):
    assert parse_reports(tmp_path) is None
    assert parse_reports(tmp_path / "missing") is None


def test_bram_tiles_are_converted_to_18k(tmp_path):
    """Vivado's 'Block RAM Tile' counts 36K tiles; we report 2 x RAMB36 + RAMB18."""
    rpt = tmp_path / "util.rpt"
    rpt.write_text("""1. Slice Logic
--------------
| Slice LUTs*                | 1000 |     0 |     53200 |  1.88 |
| Slice Registers            | 2000 |     0 |    106400 |  1.88 |
2. Memory
---------
| Block RAM Tile |  5.5 |     0 |       140 |  3.93 |
|   RAMB36/FIFO* |    4 |     0 |       140 |  2.86 |
|   RAMB18       |    3 |     0 |       280 |  1.07 |
3. DSP
------
| DSPs           |    7 |     0 |       220 |  3.18 |
""")
    assert parse_vivado_utilization(rpt) == {"LUT": 1000, "FF": 2000, "BRAM_18K": 11, "DSP": 7}


def test_timing_summary(tmp_path):
    rpt = tmp_path / "design_timing_summary_routed.rpt"
    rpt.write_text("""Design Timing Summary
| ---------------------
    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing
    -------      -------  ---------------------  -------------------      -------      -------  -----------
      1.234        0.000                      0                 1000        0.050        0.000            0
""")
    assert parse_timing_summary(rpt) == {"WNS_ns": 1.234, "TNS_ns": 0.0, "WHS_ns": 0.05, "THS_ns": 0.0}
