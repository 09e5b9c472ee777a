"""`adderflow eval` refuses data that does not fit the network with one line (file + problem), never a
traceback and never a silently wrong accuracy; nothing is written on refusal."""

import numpy as np
import pytest

from flow.cli import main


@pytest.fixture(scope="module")
def qnet_dir(tmp_path_factory):
    """A small random integer network taking (8, 8, 3) images, 10 classes (no checkpoint needed)."""
    from flow.hls.random_qnet import random_qnet

    d = tmp_path_factory.mktemp("qnet")
    random_qnet(0, height=8, width=8, in_channels=3, num_classes=10, max_channels=4).save(d)
    return d


def _npz(tmp_path, name, x_shape, y):
    p = tmp_path / name
    x = np.random.default_rng(0).integers(0, 256, x_shape, dtype=np.uint8)
    np.savez(p, x=x, y=np.asarray(y))
    return p


def _refused(capsys, tmp_path, argv, *fragments):
    out = tmp_path / "result.json"
    rc = main(["eval"] + argv + ["--json", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    assert not out.exists()
    return err


def test_valid_data_is_evaluated(qnet_dir, tmp_path, capsys):
    p = _npz(tmp_path, "ok.npz", (6, 8, 8, 3), [0, 1, 2, 3, 4, 9])
    assert main(["eval", "--qnet", str(qnet_dir), "--data", str(p), "--no-progress"]) == 0
    assert "(6 images)" in capsys.readouterr().out


@pytest.mark.parametrize("shape,fragment", [
    ((6, 3, 8, 8), "channels-first"),                          # NCHW: was a numpy broadcast traceback
    ((6, 8, 8, 1), "images have shape (8, 8, 1), the network takes (8, 8, 3)"),   # was broadcast to 3 channels
    ((6, 4, 4, 3), "images have shape (4, 4, 3), the network takes (8, 8, 3)"),   # was evaluated as is
])
def test_images_of_the_wrong_shape_are_refused(qnet_dir, tmp_path, capsys, shape, fragment):
    p = _npz(tmp_path, "bad.npz", shape, [0] * 6)
    _refused(capsys, tmp_path, ["--qnet", str(qnet_dir), "--data", str(p)], str(p), fragment)


def test_labels_outside_the_classes_are_refused(qnet_dir, tmp_path, capsys):
    p = _npz(tmp_path, "labels.npz", (6, 8, 8, 3), [0, 1, 2, 10, 11, 19])
    _refused(capsys, tmp_path, ["--qnet", str(qnet_dir), "--data", str(p)], str(p),
             "labels must be 0..9 (the network's 10 classes), got values in [0, 19]")


def test_limit_does_not_hide_a_length_mismatch(qnet_dir, tmp_path, capsys):
    p = _npz(tmp_path, "mismatch.npz", (6, 8, 8, 3), [0] * 5)
    _refused(capsys, tmp_path, ["--qnet", str(qnet_dir), "--data", str(p), "--limit", "3"], str(p),
             "6 images but 5 labels")


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--batch-size", "-4"), ("--limit", "0")])
def test_non_positive_sizes_are_refused(qnet_dir, tmp_path, capsys, option, value):
    p = _npz(tmp_path, "ok.npz", (6, 8, 8, 3), [0] * 6)
    _refused(capsys, tmp_path, ["--qnet", str(qnet_dir), "--data", str(p), option, value],
             f"{option} must be positive, got {value}")


def test_float_model_refuses_images_of_another_shape(tmp_path, capsys):
    """The float (Keras) path checks the same: adder_small takes (8, 8, 1) digits."""
    pytest.importorskip("tensorflow")
    from flow.models import build_model

    model_path = tmp_path / "small.keras"
    build_model("adder_small").save(model_path)
    p = _npz(tmp_path, "cifar_like.npz", (4, 32, 32, 3), [0] * 4)
    _refused(capsys, tmp_path, ["--model", str(model_path), "--data", str(p)], str(p),
             "images have shape (32, 32, 3), the network takes (8, 8, 1)")
    p = _npz(tmp_path, "digits_like.npz", (4, 8, 8, 1), [0, 1, 2, 10])
    _refused(capsys, tmp_path, ["--model", str(model_path), "--data", str(p)], str(p),
             "labels must be 0..9 (the network's 10 classes), got values in [0, 10]")


def test_model_means_a_network_name_everywhere(tmp_path, capsys):
    """`--model` is an architecture in every command; a quantized folder is `--qnet DIR` (one line if mixed up)."""
    (tmp_path / "q").mkdir()
    rc = main(["eval", "--model", str(tmp_path / "q"), "--data", "digits", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and f"--qnet {tmp_path / 'q'}" in err[0]
    rc = main(["eval", "--data", "digits", "--no-progress"])
    assert rc == 1 and "--model NAME (with --weights) or --qnet DIR" in capsys.readouterr().err
