"""write_report: files, keys, labelling of estimated vs real figures."""

import json

import numpy as np
import pytest

from flow.qnet import Op, QNet, TensorSpec
from flow.report import write_report
from flow.report.example import resnet20_qnet

KEYS = ("model", "bits", "board", "part", "clock_mhz", "source", "csim", "latency", "resources",
        "per_layer", "board_fit", "op_counts", "energy", "calibration")


@pytest.fixture(scope="module")
def small_dense():
    """The fixture's model class: a 16 -> 5 dense layer on 16-bit values, then ReLU."""
    rng = np.random.default_rng(0)
    w = rng.integers(-2 ** 15, 2 ** 15, (16, 5))
    ts = {"x": TensorSpec("x", (16,), 16, True), "acc": TensorSpec("acc", (5,), 37, True, kind="acc"),
          "y": TensorSpec("y", (5,), 16, False)}
    ops = [Op("dense", "fc1", ["x"], "acc", {}, {"weight": w}),
           Op("requant", "relu1", ["acc"], "y", {"shift": 0}, {"mult": np.ones((1, 5), np.int64),
                                                             "bias": np.zeros(5, np.int64)})]
    return QNet(ts, ops, "x", "y").validate()


def test_estimate_report_files_and_keys(tmp_path):
    net = resnet20_qnet(4, adder=True, apot_terms=2)
    csim = {"images": 10, "mismatches": 0, "accuracy": 0.9}
    rep = write_report(tmp_path, net, model="resnet20", bits=4, board="pynq-z2", clock_mhz=100, reuse=64, csim=csim)
    for name in ("report.json", "report.md", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "report.json").read_text())
    for k in KEYS:
        assert k in rep and k in on_disk
    assert rep["csim"] == csim and rep["source"] == "estimate"
    assert rep["latency"]["source"] == rep["resources"]["source"] == "estimate"
    assert all(L["source"] == "estimate" for L in rep["per_layer"])
    assert rep["part"] == "xc7z020clg400-1" and rep["reuse"]["s1b0_conv1"] == 48   # the largest legal RF <= 64 (divides 144)
    md = (tmp_path / "report.md").read_text()
    assert "ESTIMATES" in md and "ASIC-energy estimate" in md and "Board fit" in md


def test_real_reports_take_precedence_and_are_labelled(shared, tmp_path, small_dense):
    fx = shared / "fixtures" / "vivado_hls_2020.1_report"
    if not fx.is_dir():
        pytest.skip(f"{fx} is absent")
    rep = write_report(tmp_path, small_dense, model="dense16x5", bits=16, board="pynq-z2", clock_mhz=200, reuse=1,
                       hls_dir=fx)
    assert rep["source"] == "vivado_hls csynth + vivado synthesis"
    assert rep["latency"]["cycles"] == 10 and rep["latency"]["source"] == "vivado_hls csynth"
    assert rep["resources"] == {"source": "vivado synthesis", "LUT": 1526, "FF": 2428, "BRAM_18K": 0, "DSP": 66,
                                "URAM": None}
    assert rep["real"]["csynth"]["resources"]["LUT"] == 2532 and rep["real"]["csynth"]["resources"]["DSP"] == 73
    assert rep["estimate"]["source"] == "estimate" and rep["estimate"]["latency"]["source"] == "estimate"
    assert rep["board_fit"]["source"] == "vivado synthesis" and rep["board_fit"]["fits"]
    md = (tmp_path / "report.md").read_text()
    assert "Estimate beside the real figures" in md


def test_without_network_or_reports(tmp_path):
    """The stock-hls4ml CNN twin passes no QNet: its integer twin is estimated, and the report says so."""
    rep = write_report(tmp_path / "cnn", None, model="resnet20_cnn", bits=4, board="pynq-z2", clock_mhz=100, reuse=64)
    assert rep["source"] == "estimate" and "stock hls4ml" in rep["estimate_note"]
    assert any(L["kind"] == "conv2d" and L["name"] == "s1b0_conv1" for L in rep["per_layer"])
    rep = write_report(tmp_path / "other", None, model="other", bits=4, board="pynq-z2", clock_mhz=100, reuse=1)
    assert rep["source"] == "none" and (tmp_path / "other" / "report.md").is_file()
