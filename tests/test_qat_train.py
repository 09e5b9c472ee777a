"""QAT fine-tuning (flow.qat.train) and `adderflow train --qat`: resume, validation split, checkpoints, errors.

The loop is exercised on the small float adder net on digits (seconds); the command end to end on a tiny
custom QAT net when flow.qat (qat-core) is there."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from flow.cli import main as cli  # noqa: E402
from flow.qat.train import QATConfig, latest_checkpoint, split_train_val, train_qat  # noqa: E402

CKPT_ARGS = dict(epochs=3, batch_size=32, steps_per_epoch=4, lr=0.05, limit=400)


def _small_model():
    import tensorflow as tf

    from flow.models import build_model

    tf.keras.utils.set_random_seed(1)   # the same initial weights for every run of a test
    return build_model("adder_small", input_shape=(8, 8, 1))


def _digits_npz(tmp_path, n=400):
    from flow.data import load_dataset

    x, y = load_dataset("digits", split="train")
    path = tmp_path / "d_train.npz"
    np.savez(path, x=x[:n], y=y[:n])
    return path


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    cfg = QATConfig(data="digits", augment=True, **CKPT_ARGS)   # crop/flip: the RNG state matters too
    whole = _small_model()
    ref = train_qat(whole, cfg, tmp_path / "whole", progress=False, log=False)

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt   # what Ctrl-C after the first checkpoint does

    cut = _small_model()
    with pytest.raises(KeyboardInterrupt):
        train_qat(cut, cfg, tmp_path / "cut", progress=False, log=False, on_epoch_end=interrupt)
    assert latest_checkpoint(tmp_path / "cut").name == "epoch_001"
    assert not (tmp_path / "cut" / "summary.json").exists()

    resumed = _small_model()    # a fresh process would rebuild the model from --init like this
    again = train_qat(resumed, cfg, tmp_path / "cut", resume=True, progress=False, log=False)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(again["history"]) == strip(ref["history"])
    assert [r["lr_end"] for r in again["history"]] == [r["lr_end"] for r in ref["history"]]
    assert again["best_epoch"] == ref["best_epoch"]
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the weights moved: equal results are not two untouched models
    assert any(not np.array_equal(a, b) for a, b in zip(whole.get_weights(), _small_model().get_weights()))


def test_a_checkpoint_each_epoch_and_the_summary(tmp_path):
    out = tmp_path / "run"
    summary = train_qat(_small_model(), QATConfig(data="digits", **CKPT_ARGS), out, progress=False, log=False)
    names = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("epoch_"))
    assert names == ["epoch_001", "epoch_002", "epoch_003"]
    for n in names:
        state = json.loads((out / "checkpoints" / n / "state.json").read_text())
        assert state["epoch"] == int(n[-3:]) and len(state["history"]) == state["epoch"]
        with np.load(out / "checkpoints" / n / "arrays.npz") as f:
            assert int(f["n_slots"]) > 1   # iteration counter + momentum slots
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["history"] == summary["history"] and len(on_disk["history"]) == 3
    for rec in on_disk["history"]:
        assert {"loss", "train_accuracy", "val_accuracy", "seconds", "steps"} <= set(rec)
    assert on_disk["best_val_accuracy"] == max([on_disk["init_val_accuracy"]] + [r["val_accuracy"] for r in on_disk["history"]])
    assert (out / ".adderflow-complete").is_file()


def test_validation_split_is_training_data_only(tmp_path, monkeypatch):
    import flow.data

    train_file = _digits_npz(tmp_path)
    (tmp_path / "d_test.npz").write_bytes(b"not an npz: reading it would fail the run")
    calls = []
    real = flow.data.load_dataset

    def spy(path, split="test", limit=None):
        calls.append((str(path), split))
        return real(path, split=split, limit=limit)

    monkeypatch.setattr(flow.data, "load_dataset", spy)
    summary = train_qat(_small_model(), QATConfig(data=str(train_file), epochs=1, batch_size=32, steps_per_epoch=2),
                        tmp_path / "run", progress=False, log=False)
    assert calls == [(str(train_file), "train")]
    assert summary["val_n"] == 20 and summary["train_n"] == 380
    tr, va = split_train_val(400, 0.05)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 400
    tr2, va2 = split_train_val(400, 0.05)
    np.testing.assert_array_equal(va, va2)   # the same images on every run and every resume


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")) if root.exists() else None


@pytest.mark.parametrize("extra, message", [
    (["--init", "NOPE"], "--init NOPE: not found"),
    (["--init", "CKPT", "--bits", "9"], "--bits must be an integer in 2..8, got 9"),
    (["--init", "CKPT", "--bits-map", "layer9_0_conv1=3"], "--bits-map: no adder layer 'layer9_0_conv1' in the network"),
    (["--init", "CKPT", "--bits-map", "layer1_0_conv1=1"], "--bits-map layer1_0_conv1 must be an integer in 2..8"),
    (["--init", "CKPT", "--bits-map", "layer1_0_conv1"], "--bits-map: 'layer1_0_conv1' is not LAYER=BITS"),
    (["--init", "CKPT", "--bits-map", "fc=4"], "--bits-map: fc is a dense layer (it keeps 8 bits)"),
    (["--init", "CKPT", "--resume"], "--resume: no checkpoint in"),
    (["--init", "CKPT", "--val-split", "1.5"], "--val-split must be a fraction in (0, 1), got 1.5"),
    (["--init", "CKPT", "--model", "resnet20"], "--model: not used with --qat"),
    ([], "--qat needs --init"),
    (["--init", "CKPT", "--resume", "--force"], "--resume and --force contradict"),
])
def test_qat_argument_errors_are_one_line_and_touch_nothing(tmp_path, capsys, resnet20_ckpt, extra, message):
    data = _digits_npz(tmp_path)
    out = tmp_path / "out"
    extra = [str(resnet20_ckpt) if a == "CKPT" else (str(tmp_path / a) if a == "NOPE" else a) for a in extra]
    message = message.replace("NOPE", str(tmp_path / "NOPE"))
    before = _snapshot(tmp_path)
    assert cli(["train", "--qat", *extra, "--data", str(data), "--epochs", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert _snapshot(tmp_path) == before


def test_qat_refuses_an_existing_out_and_a_changed_resume(tmp_path, capsys, resnet20_ckpt):
    data = _digits_npz(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = ["train", "--qat", "--init", str(resnet20_ckpt), "--data", str(data), "--epochs", "1", "--out", str(out)]
    assert cli(base) == 1
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    # a run folder with a checkpoint: --resume must repeat the settings
    run = tmp_path / "run"
    _interrupted_run(run, data)
    before = _snapshot(run)
    assert cli(["train", "--qat", "--init", str(resnet20_ckpt), "--data", str(data), "--epochs", "2",
                "--batch-size", "32", "--steps-per-epoch", "1", "--lr", "0.5", "--out", str(run), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--resume:" in err and "lr=0.05" in err and len(err.splitlines()) == 1, err
    assert _snapshot(run) == before


def _interrupted_run(run, data):
    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_qat(_small_model(), QATConfig(data=str(data), epochs=2, batch_size=32, steps_per_epoch=1, lr=0.05),
                  run, progress=False, log=False, on_epoch_end=stop)


def test_float_training_flags_stay_float(tmp_path, capsys):
    assert cli(["train", "--model", "adder_small", "--data", "digits", "--epochs", "1", "--bits", "3",
                "--out", str(tmp_path / "m.keras")]) == 1
    assert "--bits: only with --qat" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_the_custom_net_example_runs_to_a_bit_exact_csim(tmp_path):
    """bench/qat_custom_net.py, bounded: QAT of the user's own QKeras adder net, export, HLS C simulation."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "qat_custom_net.py"
    spec = importlib.util.spec_from_file_location("qat_custom_net", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    md = tmp_path / "custom.md"
    assert mod.main(["--epochs", "2", "--steps-per-epoch", "4", "--csim", "12", "--work", str(tmp_path / "w"),
                     "--results", str(md)]) == 0
    text = md.read_text()
    assert "**0 mismatches** against the golden model" in text and "12 images" in text
    summary = json.loads((tmp_path / "w" / "run" / "summary.json").read_text())
    # the export computes what the Keras model computed (up to the 24-bit rounding of requant multipliers)
    assert len(summary["history"]) == 2
    assert summary["golden_val_accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=0.02)


def test_training_data_loads_the_same_from_npz_and_cifar_batches(tmp_path):
    """The official python batches and an .npz of the same images give the same train/validation split."""
    import pickle

    from flow.qat.train import load_split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=50)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(5):
        part = slice(10 * i, 10 * (i + 1))
        rows = x[part].transpose(0, 3, 1, 2).reshape(10, -1)   # CHW-flattened, as the official files
        with open(folder / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in y[part]]}, fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, fh)
    np.savez(tmp_path / "same.npz", x=x, y=y)
    a = load_split(QATConfig(data=str(folder), val_split=0.1))
    b = load_split(QATConfig(data=str(tmp_path / "same.npz"), val_split=0.1))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert len(a[2]) == 5 and len(a[0]) == 45


@pytest.mark.slow
def test_qat_command_end_to_end_and_resume(tmp_path, capsys, resnet20_ckpt, cifar_train2k):
    """`adderflow train --qat` on ResNet-20 W3, 2 epochs x 1 step on 200 images; an interrupted copy resumed
    gives the same QNet."""
    from flow.qnet import load

    base = ["train", "--qat", "--init", str(resnet20_ckpt), "--bits", "3", "--data", str(cifar_train2k),
            "--limit", "200", "--steps-per-epoch", "1", "--batch-size", "16", "--no-progress",
            "--freeze", "conv1,fc,*bn*,*downsample_1"]
    assert cli(base + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "best validation epoch" in out and "golden model of the exported QNet" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["golden_val_accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=0.1)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("epoch_*")) == ["epoch_001", "epoch_002"]
    # the same run cut after epoch 1 (its checkpoint, as a kill would leave it), then resumed
    import shutil

    cut = tmp_path / "b"
    cut.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoints", cut / "checkpoints")
    shutil.rmtree(cut / "checkpoints" / "epoch_002")
    assert cli(base + ["--epochs", "2", "--out", str(cut), "--resume"]) == 0
    again = json.loads((cut / "summary.json").read_text())
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(again["history"]) == strip(summary["history"])
    qa, qb = load(tmp_path / "a" / "qnet"), load(cut / "qnet")
    for oa, ob in zip(qa.ops, qb.ops):
        for k in oa.arrays:
            np.testing.assert_array_equal(oa.arrays[k], ob.arrays[k])
    assert cli(base + ["--epochs", "2", "--out", str(cut), "--resume"]) == 1
    assert "is complete already" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["frozen", "batch"])
def test_frozen_bn_keeps_its_statistics_and_trains_its_affine(tmp_path, mode):
    import tensorflow as tf

    from flow.data import load_dataset, preprocess
    from flow.qat.train import standardize_batchnorm

    model = _small_model()
    # statistics of real inputs and a unit affine (a fresh BN's inference form passes the adder outputs,
    # -sum|x - w| < 0, unchanged and the ReLUs would cut them all)
    assert standardize_batchnorm(model, preprocess(load_dataset("digits", split="train")[0][:256], "digits")) == 4
    bns = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    for l in bns:
        g, b, m, v = l.get_weights()
        l.set_weights([np.ones_like(g), np.zeros_like(b), m, v])
    before = {l.name: [w.copy() for w in l.get_weights()] for l in bns}
    after = {}   # at the end of the epoch (the run then restores the best epoch, which may be the start)
    train_qat(model, QATConfig(data="digits", epochs=1, batch_size=32, steps_per_epoch=3, lr=0.05, limit=200,
                               bn_stats=mode, bn_standardize=0), tmp_path / "run", progress=False, log=False,
              on_epoch_end=lambda e, r: after.update({l.name: l.get_weights() for l in bns}))
    for l in bns:
        gamma, _, mean, var = after[l.name]
        assert not np.array_equal(gamma, before[l.name][0])          # the affine trains in both modes
        same = np.array_equal(mean, before[l.name][2]) and np.array_equal(var, before[l.name][3])
        assert same == (mode == "frozen"), l.name
    # the model is left as it was given: a training call uses batch statistics again
    x = np.random.default_rng(0).integers(0, 256, size=(16, 8, 8, 1)).astype(np.float32) / 255
    assert not np.allclose(model(x, training=True), model(x, training=False))
