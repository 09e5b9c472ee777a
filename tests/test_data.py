"""Data loaders: .npz, CIFAR-10 python batches, sklearn digits, preprocessing, and their errors."""

import pickle

import numpy as np
import pytest

from flow import data
from flow.errors import AdderFlowError


def _write_cifar_batches(folder, n_per_batch=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, size=(n_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=n_per_batch))
        # official layout: rows are CHW-flattened
        rows = imgs.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in labels], b"batch_label": b"x"}, f)
        batches[name] = (imgs, np.array(labels))
    return batches


def test_npz_round_trip_and_limit(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    y = np.arange(5)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    gx, gy = data.load_dataset(p)
    assert gx.dtype == np.uint8 and gy.dtype == np.int64
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    lx, ly = data.load_dataset(p, limit=2)
    assert lx.shape == (2, 4, 4, 3) and list(ly) == [0, 1]


@pytest.mark.parametrize("arrays,fragment", [
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(2, int)), "missing array"),
    (dict(x=np.zeros((2, 16), np.uint8), y=np.zeros(2, int)), "4 dimensions"),
    (dict(x=np.zeros((2, 4, 4, 3), np.float32), y=np.zeros(2, int)), "uint8"),
    (dict(x=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(3, int)), "2 images but 3 labels"),
    (dict(x=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(2, np.float32)), "integer class labels"),
])
def test_npz_bad_contents_name_the_file(tmp_path, arrays, fragment):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(AdderFlowError, match=fragment) as err:
        data.load_dataset(p)
    assert str(p) in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(AdderFlowError, match="not found: .*nope.npz"):
        data.load_dataset(tmp_path / "nope.npz")
    p = tmp_path / "garbage.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(AdderFlowError, match="garbage.npz"):
        data.load_dataset(p)


def test_cifar_batches_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = _write_cifar_batches(folder)
    x, y = data.load_dataset(folder, split="test")
    np.testing.assert_array_equal(x, batches["test_batch"][0])
    np.testing.assert_array_equal(y, batches["test_batch"][1])
    xt, yt = data.load_dataset(tmp_path, split="train")  # the parent folder works too
    assert xt.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(xt[:4], batches["data_batch_1"][0])
    assert data.find_split_files(tmp_path) == (folder, folder)


def test_cifar_folder_missing_batch_and_foreign_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(AdderFlowError, match="data_batch_3"):
        data.load_dataset(folder, split="train")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": data.Path("x")}, f)
    with pytest.raises(AdderFlowError, match="refusing to load"):
        data.load_dataset(folder, split="test")


def test_digits_split_is_deterministic_and_disjoint():
    xtr, ytr = data.load_dataset("digits", split="train")
    xte, yte = data.load_dataset("digits", split="test")
    assert xtr.shape[1:] == (8, 8, 1) and xtr.dtype == np.uint8 and xtr.max() == 255
    assert len(xtr) + len(xte) == 1797 and len(xte) == 359
    again, _ = data.load_dataset("digits", split="test")
    np.testing.assert_array_equal(xte, again)
    train_rows = {r.tobytes() + bytes([c]) for r, c in zip(xtr, ytr)}
    overlap = sum(r.tobytes() + bytes([c]) in train_rows for r, c in zip(xte, yte))
    assert overlap < 5  # the digits set has a couple of exact duplicates, no more


def test_preprocess_cifar_and_digits():
    x = np.full((1, 2, 2, 3), 255, np.uint8)
    out = data.preprocess(x, "cifar10")
    expected = (1.0 - np.array(data.CIFAR_MEAN)) / np.array(data.CIFAR_STD)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(data.preprocess(np.array([[[[51]]]], np.uint8), "digits"), 0.2, rtol=1e-6)
    with pytest.raises(AdderFlowError):
        data.preprocess(np.zeros((1, 2, 2, 1), np.uint8), "cifar10")


def test_find_split_files(tmp_path):
    np.savez(tmp_path / "cifar10_train2k.npz", x=np.zeros((1, 2, 2, 3), np.uint8), y=[0])
    with pytest.raises(AdderFlowError, match="one \\*train\\*.npz and one \\*test\\*.npz"):
        data.find_split_files(tmp_path)
    np.savez(tmp_path / "cifar10_test1k.npz", x=np.zeros((1, 2, 2, 3), np.uint8), y=[0])
    calib, test = data.find_split_files(tmp_path)
    assert calib.name == "cifar10_train2k.npz" and test.name == "cifar10_test1k.npz"


def test_shared_cifar_subsets(cifar_test1k, cifar_train2k):
    x, y = data.load_dataset(cifar_test1k)
    assert x.shape == (1000, 32, 32, 3) and y.shape == (1000,) and 0 <= y.min() and y.max() == 9
    assert data.load_dataset(cifar_train2k)[0].shape == (2000, 32, 32, 3)


def test_limit_does_not_hide_a_length_mismatch(tmp_path):
    """6 images but 5 labels is a broken file even when --limit 3 would only look at the first 3."""
    p = tmp_path / "mismatch.npz"
    np.savez(p, x=np.zeros((6, 4, 4, 3), np.uint8), y=np.zeros(5, int))
    with pytest.raises(AdderFlowError, match="6 images but 5 labels") as err:
        data.load_dataset(p, limit=3)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("limit", [0, -2])
def test_bad_limit_is_refused_before_reading(tmp_path, limit):
    with pytest.raises(AdderFlowError, match=f"--limit must be positive, got {limit}"):
        data.load_dataset(tmp_path / "not-even-there.npz", limit=limit)
    with pytest.raises(AdderFlowError, match=f"--calib-limit must be positive, got {limit}"):
        data.check_limit(limit, "--calib-limit")


def _write_batch(path, rows, labels):
    with open(path, "wb") as f:
        pickle.dump({b"data": rows, b"labels": labels, b"batch_label": b"x"}, f)


def test_cifar_batch_with_pixels_above_255_is_refused_not_wrapped(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    rows = np.zeros((2, 3072), np.int32)
    rows[1, 7] = 300                                   # astype(uint8) would silently make this 44
    _write_batch(folder / "test_batch", rows, [0, 1])
    with pytest.raises(AdderFlowError, match=r"pixels 0\.\.255, got int32 in \[0, 300\]") as err:
        data.load_dataset(folder, split="test")
    assert str(folder / "test_batch") in str(err.value)
    _write_batch(folder / "test_batch", rows.astype(np.float32), [0, 1])
    with pytest.raises(AdderFlowError, match="test_batch: .*uint8 pixels, got float32"):
        data.load_dataset(folder, split="test")


def test_cifar_batch_with_int32_pixels_in_range_still_loads(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    rows = np.arange(2 * 3072, dtype=np.int32).reshape(2, 3072) % 256
    _write_batch(folder / "test_batch", rows, [3, 4])
    x, y = data.load_dataset(folder, split="test")
    assert x.dtype == np.uint8 and int(x.max()) == 255 and list(y) == [3, 4]


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_RAN",))


def test_malicious_cifar_pickle_is_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"evil": _Evil()}, f)
    with pytest.raises(AdderFlowError) as err:
        data.load_dataset(folder, split="test")
    msg = str(err.value)
    assert str(folder / "test_batch") in msg and "refusing to load" in msg and "system" in msg, msg
    assert not (tmp_path / "EVIL_RAN").exists()


def test_cifar_labels_outside_0_to_9_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder)
    _write_batch(folder / "test_batch", np.zeros((2, 3072), np.uint8), [0, 10])
    with pytest.raises(AdderFlowError, match=r"test_batch: labels must be 0\.\.9, got values in \[0, 10\]"):
        data.load_dataset(folder, split="test")


def test_negative_labels_are_refused(tmp_path):
    p = tmp_path / "neg.npz"
    np.savez(p, x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, -1]))
    with pytest.raises(AdderFlowError, match=r"neg.npz: labels must be class indices >= 0, got -1"):
        data.load_dataset(p)


@pytest.mark.parametrize("shape,fragment", [
    ((2, 8, 8, 1), r"images have shape \(8, 8, 1\), the network takes \(8, 8, 3\)"),
    ((2, 16, 16, 3), r"images have shape \(16, 16, 3\), the network takes \(8, 8, 3\)"),
    ((2, 3, 8, 8), r"channels-first\?"),
])
def test_check_fits_names_source_and_shapes(shape, fragment):
    with pytest.raises(AdderFlowError, match=fragment) as err:
        data.check_fits(np.zeros(shape, np.uint8), np.zeros(shape[0], np.int64), (8, 8, 3), 10, "d.npz")
    assert str(err.value).startswith("d.npz: ")
    with pytest.raises(AdderFlowError, match=r"d.npz: labels must be 0\.\.9 .*10 classes.*got values in \[0, 12\]"):
        data.check_fits(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 12]), (8, 8, 3), 10, "d.npz")
    data.check_fits(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 9]), (8, 8, 3), 10, "d.npz")
