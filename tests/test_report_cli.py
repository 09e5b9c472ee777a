"""`adderflow report DIR` and `adderflow compare DIR_A DIR_B`."""

import json

import pytest

from flow.cli import main
from flow.outputs import write_marker
from flow.report import write_report
from flow.report.example import resnet20_qnet


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    a, b = root / "adder", root / "cnn"
    na = resnet20_qnet(4, adder=True, apot_terms=2)
    write_report(a, na, model="resnet20", bits=4, board="pynq-z2", clock_mhz=100, reuse=128)
    na.save(a / "qnet")
    write_report(b, resnet20_qnet(4, adder=False), model="resnet20_cnn", bits=4, board="pynq-z2", clock_mhz=100,
                 reuse=128)
    for d in (a, b):
        write_marker(d, "tests/test_report_cli.py")   # complete builds, as `adderflow hls` leaves them
    return a, b


def test_compare_writes_table_and_png(builds, tmp_path, capsys):
    out = tmp_path / "cmp.md"
    assert main(["compare", str(builds[0]), str(builds[1]), "--out", str(out)]) == 0
    md = out.read_text()
    for word in ("latency (cycles)", "images/s", "LUT", "FF", "BRAM_18K", "DSP", "fits the board", "estimate"):
        assert word in md
    assert "resnet20_cnn" in md and out.with_suffix(".png").stat().st_size > 0
    # never overwrite silently
    assert main(["compare", str(builds[0]), str(builds[1]), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["compare", str(builds[0]), str(builds[1]), "--out", str(out), "--force"]) == 0


def test_compare_missing_report_is_one_line_error(builds, tmp_path, capsys):
    assert main(["compare", str(builds[0]), str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope: build folder not found" in err[0]


def test_report_rerenders_and_rebuilds(builds, capsys):
    a, b = builds
    (b / "report.md").unlink()
    assert main(["report", str(b)]) == 0                   # no qnet/: re-render only
    assert (b / "report.md").is_file() and "re-rendered" in capsys.readouterr().out
    assert main(["report", str(a), "--board", "zcu104", "--target-fps", "2000"]) == 0   # qnet/: rebuilt
    rep = json.loads((a / "report.json").read_text())
    assert rep["board"] == "zcu104" and rep["reuse"]["s1b0_conv1"] in (72, 144)
    assert rep["fit"]["target_fps"] == 2000 and rep["fit"]["latency"]["images_per_s"] >= 2000 * 0.999
    assert main(["report", str(b), "--board", "zcu104"]) == 1   # no qnet/: cannot re-estimate
