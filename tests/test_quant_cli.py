"""`adderflow quantize` / `adderflow inspect` through flow.cli.main: outputs and one-line errors."""

import json

import numpy as np
import pytest

from flow.cli import main
from flow.qnet import load


# digits_npz and private_cache (a per-test calibration cache) come from conftest.py
pytestmark = pytest.mark.usefixtures("private_cache")


def one_error_line(capsys, rc, text):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err and text in err[-1], err
    assert not any("Traceback" in line for line in err)


def test_quantize_writes_qnet_and_summary(tmp_path, digits_npz, capsys):
    out = tmp_path / "q"
    rc = main(["quantize", "--model", "adder_small", "--calib", str(digits_npz), "--calib-limit", "64",
               "--bits", "4", "--groups", "2", "--out", str(out)])
    assert rc == 0
    net = load(out).validate()
    assert [o.kind for o in net.ops][:3] == ["conv2d", "requant", "adder2d"]
    assert net.meta["bits"] == 4 and net.meta["method"] == "redistribution+"
    summary = json.loads((out / "quant_summary.json").read_text())
    adders = [d for d in summary["layers"] if d["kind"] == "adder2d"]
    assert len(adders) == 2 and all(d["A"] > 0 for d in adders)
    assert "| layer1_0_conv1 | adder2d |" in (out / "quant_summary.md").read_text()
    # never overwritten silently
    rc = main(["quantize", "--model", "adder_small", "--calib", str(digits_npz), "--out", str(out)])
    one_error_line(capsys, rc, "--force")


@pytest.mark.parametrize("args,text", [
    (["--bits", "9"], "bits must be an integer in 2..8"),
    (["--bits", "1"], "bits must be an integer in 2..8"),
    (["--alpha", "0"], "alpha must lie in (0, 1]"),
    (["--alpha", "1.5"], "alpha must lie in (0, 1]"),
    (["--alpha", "abc"], "--alpha must be a number"),
    (["--groups", "33"], "groups=33 exceeds its 32 output channels"),
])
def test_quantize_bad_options(tmp_path, digits_npz, capsys, args, text):
    rc = main(["quantize", "--model", "adder_small", "--calib", str(digits_npz), "--out", str(tmp_path / "q")] + args)
    one_error_line(capsys, rc, text)


@pytest.mark.parametrize("content,text", [
    ("nan", "NaN"),
    ("empty", "has no samples"),
])
def test_quantize_bad_calibration_data(tmp_path, capsys, content, text):
    p = tmp_path / "bad.npz"
    if content == "nan":
        x = np.full((4, 8, 8, 1), np.nan, np.float32)
        np.savez(p, x=x, y=np.zeros(4, np.int64))
    else:
        np.savez(p, x=np.zeros((0, 8, 8, 1), np.uint8), y=np.zeros(0, np.int64))
    rc = main(["quantize", "--model", "adder_small", "--calib", str(p), "--out", str(tmp_path / "q")])
    one_error_line(capsys, rc, text)


def test_inspect_writes_pngs(tmp_path, digits_npz):
    rc = main(["inspect", "--model", "adder_small", "--calib", str(digits_npz), "--calib-limit", "48",
               "--out", str(tmp_path / "png")])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert files == ["layer1_0_conv1.png", "layer1_0_conv2.png", "overview.png"]
    assert (tmp_path / "png" / "overview.png").read_bytes()[:4] == b"\x89PNG"


def test_python_api_resnet20_cnn_seeded(tmp_path):
    """The CNN twin with seeded weights (no checkpoint exists): conv2d ops everywhere, a valid QNet."""
    from flow import golden
    from flow.quant import quantize

    x = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    net = quantize("resnet20_cnn", None, x, bits=6, cache=False)
    kinds = {o.kind for o in net.ops}
    assert "adder2d" not in kinds and sum(o.kind == "conv2d" for o in net.ops) == 21
    assert net.op("layer2_0_downsample_0").kind == "conv2d"
    logits = golden.predict(net, x[:4])
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits)) and np.ptp(logits) > 0


@pytest.mark.parametrize("command", ["quantize", "inspect"])
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_calib_limit_is_named_and_nothing_is_written(tmp_path, digits_npz, capsys, command, limit):
    out = tmp_path / "out"
    rc = main([command, "--model", "adder_small", "--calib", str(digits_npz), "--calib-limit", limit, "--out", str(out)])
    one_error_line(capsys, rc, f"--calib-limit must be positive, got {limit}")
    assert not out.exists()
