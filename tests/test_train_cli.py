"""`adderflow train` and the training helpers: outputs, refusal to overwrite, augmentation, learning."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from flow.cli import main as cli  # noqa: E402
from flow.train import TrainConfig, augment_crop_flip, train  # noqa: E402


def test_augment_crop_flip_keeps_pixels_and_shape():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    out = augment_crop_flip(x, rng, pad=2)
    assert out.shape == x.shape and out.dtype == np.uint8
    zeros_per_image = (out == 0).all(axis=-1).sum(axis=(1, 2))
    assert zeros_per_image.max() > 0  # some crops show the zero padding
    # every image is a shifted/flipped window of its padded source: the centre 4x4 always survives
    for i in range(8):
        src = np.pad(x[i], ((2, 2), (2, 2), (0, 0)))
        found = False
        for img in (out[i], out[i][:, ::-1]):
            for dy in range(5):
                for dx in range(5):
                    if np.array_equal(src[dy:dy + 8, dx:dx + 8], img):
                        found = True
        assert found


def test_train_cli_writes_model_and_summary_then_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "small.keras"
    argv = ["train", "--model", "adder_small", "--data", "digits", "--epochs", "2", "--limit", "256",
            "--batch-size", "64", "--out", str(out), "--no-progress", "--seed", "3"]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "held-out accuracy" in text
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["config"]["adder_gradient"] == "addernet" and summary["val_n"] == 359
    assert len(summary["history"]) == 2 and summary["history"][1]["loss"] < summary["history"][0]["loss"]
    assert summary["config"]["augment"] is False  # no crop/flip for digits

    assert cli(argv) == 1
    assert "exists; pass --force" in capsys.readouterr().err

    res = tmp_path / "eval.json"
    assert cli(["eval", "--model", "adder_small", "--weights", str(out), "--data", "digits",
                "--json", str(res), "--no-progress"]) == 0
    result = json.loads(res.read_text())
    assert result["n"] == 359 and result["accuracy"] == pytest.approx(summary["val_accuracy"], abs=1e-9)


def test_train_bad_inputs(tmp_path, capsys):
    assert cli(["train", "--model", "vgg", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "m.keras")]) == 1
    assert "unknown model 'vgg'" in capsys.readouterr().err
    assert cli(["train", "--model", "adder_small", "--data", str(tmp_path / "none.npz"), "--epochs", "1",
                "--out", str(tmp_path / "m.keras")]) == 1
    assert "data file not found" in capsys.readouterr().err


def test_eval_rejects_mismatched_keras_model(tmp_path, capsys):
    cfg = TrainConfig(model="adder_small", data="digits", epochs=1, limit=64, batch_size=64)
    model, _ = train(cfg, progress=False)
    path = tmp_path / "small.keras"
    model.save(path)
    assert cli(["eval", "--model", "resnet20", "--weights", str(path), "--data", "digits", "--no-progress"]) == 1
    assert "holds model 'adder_small', not 'resnet20'" in capsys.readouterr().err


@pytest.mark.slow
def test_adder_small_reaches_95_percent_on_digits():
    model, result = train(TrainConfig(model="adder_small", data="digits", epochs=10, batch_size=64), progress=False)
    assert result.val_accuracy >= 0.95
