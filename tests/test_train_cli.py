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
    # a saved model names its own network
    assert cli(["eval", "--model", str(out), "--data", "digits", "--json", str(res), "--no-progress", "--force"]) == 0
    assert json.loads(res.read_text())["accuracy"] == result["accuracy"]


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


def test_adder_small_reaches_95_percent_on_digits():
    model, result = train(TrainConfig(model="adder_small", data="digits", epochs=10, batch_size=64), progress=False)
    assert result.val_accuracy >= 0.95


def test_eval_of_a_quantized_network_uses_the_golden_model(tmp_path, capsys):
    """A hand-made integer network (bright image -> class 0, dark -> class 1) through `eval --model DIR`."""
    from flow.qnet import Op, QNet, TensorSpec

    tensors = {
        "input": TensorSpec("input", (4, 4, 1), 8, True, 1 / 64),
        "p": TensorSpec("p", (1,), 13, True, kind="acc"),
        "d": TensorSpec("d", (2,), 13, True, kind="acc"),
        "logits": TensorSpec("logits", (2,), 16, True, 0.5),
    }
    ops = [
        Op("global_sum_pool", "gap", ["input"], "p"),
        Op("dense", "fc", ["p"], "d", {}, {"weight": np.array([[1, -1]])}),
        Op("requant", "rq", ["d"], "logits", {"shift": 1}, {"mult": np.ones((1, 2), np.int64), "bias": np.zeros(2, np.int64)}),
    ]
    net_dir = QNet(tensors, ops, input_quant={"mean": [0.5], "std": [0.5], "scale": 1 / 64}).validate().save(tmp_path / "q")
    x = np.concatenate([np.full((3, 4, 4, 1), 250, np.uint8), np.full((5, 4, 4, 1), 5, np.uint8)])
    y = np.array([0, 0, 1, 1, 1, 1, 1, 0])  # two deliberate label errors -> 6/8
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    out = tmp_path / "q.json"
    assert cli(["eval", "--qnet", str(net_dir), "--data", str(tmp_path / "tiny.npz"), "--json", str(out),
                "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 8 and result["accuracy"] == pytest.approx(0.75) and result["kind"].startswith("integer")
    (net_dir / "qnet.npz").unlink()
    capsys.readouterr()
    assert cli(["eval", "--qnet", str(net_dir), "--data", str(tmp_path / "tiny.npz"), "--no-progress"]) == 1
    assert "needs qnet.json and qnet.npz" in capsys.readouterr().err


def test_train_npz_uses_the_test_file_beside_it(tmp_path, capsys):
    from flow.data import load_dataset

    x, y = load_dataset("digits", split="train")
    np.savez(tmp_path / "d_train.npz", x=x[:128], y=y[:128])
    xt, yt = load_dataset("digits", split="test")
    np.savez(tmp_path / "d_test.npz", x=xt[:50], y=yt[:50])
    out = tmp_path / "m.keras"
    assert cli(["train", "--model", "adder_small", "--data", str(tmp_path / "d_train.npz"), "--epochs", "1",
                "--batch-size", "64", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["val_n"] == 50 and summary["config"]["val_data"].endswith("d_test.npz")
    assert summary["train_n"] == 128 and "epoch 1/1" in capsys.readouterr().out


@pytest.mark.slow
def test_fine_tuning_the_official_resnet20_keeps_its_accuracy(tmp_path, resnet20_ckpt, cifar_train2k, cifar_test1k):
    """One AdderNet-gradient epoch at a small learning rate (crop/flip on) must not wreck the network."""
    cfg = TrainConfig(model="resnet20", data=str(cifar_train2k), val_data=str(cifar_test1k), epochs=1,
                      batch_size=64, lr=0.002, limit=256, init_weights=str(resnet20_ckpt))
    _, result = train(cfg, progress=False)
    assert result.config["augment"] is True
    assert result.val_accuracy >= 0.89
