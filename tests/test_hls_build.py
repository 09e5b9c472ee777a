"""flow.hls.build.AdderBuild, the library object the `hls` and `make-hls` commands are shells over:
choose_design / write / compile / predict / csim / report / synth, on a tiny network."""

import json
import shutil

import numpy as np
import pytest

from flow import golden
from flow.errors import AdderFlowError, ToolMissingError
from flow.hls.build import AdderBuild, build
from flow.hls.random_qnet import random_input, random_qnet


@pytest.fixture(scope="module")
def net():
    return random_qnet(5, height=6, width=6, in_channels=2, max_channels=6)


def test_the_library_object_end_to_end(net, tmp_path):
    b = AdderBuild(net, tmp_path / "b", board="pynq-z2")
    d = b.choose_design(reuse=2)
    assert d["how"] == "--reuse 2" and set(d["reuse"]) >= {o.name for o in net.ops if o.kind == "dense"}
    b.write()
    assert (tmp_path / "b" / "hls_prj" / "firmware" / "adderflow_axi_top.cpp").is_file()
    assert b.compile() > 0
    x = random_input(net, 3, 1)
    assert np.array_equal(b.predict(x, workers=1), golden.run(net, x)[net.output].reshape(3, -1))
    rep = b.report()
    assert rep["source"] == "estimate" and rep["hls"]["design"] == "--reuse 2"
    assert json.loads((tmp_path / "b" / "report.json").read_text())["hls"]["backend"] == "AdderVitis"
    if shutil.which("vitis_hls") is None:
        with pytest.raises(ToolMissingError, match="vitis_hls is not on PATH"):
            b.synth(cosim=True)


def test_build_is_staged_and_never_overwrites(net, tmp_path):
    out = tmp_path / "staged"
    b = build(net, out, "pynq-z2", reuse=4)
    assert b.dir == out and (out / ".adderflow-complete").is_file() and (out / "report.json").is_file()
    assert not [p for p in tmp_path.iterdir() if "adderflow-tmp" in p.name]
    before = (out / "report.json").read_bytes()
    with pytest.raises(AdderFlowError, match="--force"):
        build(net, out, "pynq-z2", reuse=4)
    assert (out / "report.json").read_bytes() == before


def test_choose_design_refuses_what_it_cannot_build(net, tmp_path):
    b = AdderBuild(net, tmp_path / "c", board="pynq-z2")
    with pytest.raises(AdderFlowError, match="not legal.*nearest legal"):
        n_in = [o for o in net.ops if o.kind == "adder2d"][0]
        from flow.hls import schedule

        b.choose_design(reuse_config={n_in.name: schedule.inputs_per_output(n_in) + 1})
    with pytest.raises(AdderFlowError, match="dsp must be"):
        b.choose_design(dsp="some")
    assert not (tmp_path / "c").exists()
