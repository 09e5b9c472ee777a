"""Data sets as uint8 NHWC images plus int64 labels, and the float preprocessing of each model family.

Sources: a `.npz` with arrays `x` (uint8 NHWC) and `y`, the official CIFAR-10 python batches folder
(`cifar-10-batches-py`), or the string "digits" (scikit-learn's 8x8 digits, scaled to 0..255).
Numpy only: the integer golden model and the board driver use these loaders too.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

DIGITS = "digits"
# Fixed so that `train` and `eval` see the same held-out 20% of digits on every machine.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

_CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST_BATCHES = ["test_batch"]
CIFAR_CLASSES = 10


def load_dataset(path, split: str | None = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,H,W,C) uint8 and labels (N,) int64 from a .npz, a CIFAR-10 batches folder or "digits".

    `split` picks train/test for the CIFAR folder and digits; a .npz is one split already and ignores
    it. `limit` keeps the first N samples.
    """
    if split not in (None, "train", "test"):
        raise AdderFlowError(f"unknown split '{split}' (choose train or test)")
    check_limit(limit, "--limit")
    if isinstance(path, str) and path == DIGITS:
        x, y = _load_digits(split or "test")
        source = DIGITS
    else:
        p = Path(path)
        if not p.exists():
            raise AdderFlowError(f"data file not found: {p}")
        if p.is_dir():
            x, y = _load_cifar_dir(p, split or "test")
        else:
            x, y = _load_npz(p)
        source = str(p)
    _check_arrays(x, y, source)  # before the limit: a broken file stays broken when only its head is read
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def check_limit(limit, option: str = "--limit") -> None:
    """A sample count given on the command line: None (all) or a positive integer; `option` names the flag."""
    if limit is not None and int(limit) <= 0:
        raise AdderFlowError(f"{option} must be positive, got {limit}")


def check_fits(x: np.ndarray, y: np.ndarray, input_shape, classes: int, source: str) -> None:
    """Images and labels a network of this input shape and class count can be scored on, or one line.

    Without it numpy broadcasting evaluates 1-channel images on a 3-channel network, and labels beyond
    the classes count as silent misses (accuracy 0%)."""
    want = tuple(None if s is None else int(s) for s in input_shape)  # None: a Keras model's free size
    got = tuple(x.shape[1:])
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        hint = ""
        if len(got) == 3 and got[1:] + got[:1] == want:
            hint = " (channels-first? the network takes NHWC: transpose with x.transpose(0, 2, 3, 1))"
        raise AdderFlowError(f"{source}: images have shape {got}, the network takes {want}{hint}")
    _check_label_range(y, classes, source, f" (the network's {classes} classes)")


def _check_label_range(y: np.ndarray, classes: int, source, why: str = "") -> None:
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise AdderFlowError(f"{source}: labels must be 0..{classes - 1}{why}, got values in [{y.min()}, {y.max()}]")


def preprocess(x_uint8: np.ndarray, dataset: str = "cifar10") -> np.ndarray:
    """Float32 network input: x/255, then per-channel mean/std for CIFAR-10 (the official recipe)."""
    x = np.asarray(x_uint8, dtype=np.float32) / 255.0
    if dataset == "cifar10":
        if x.shape[-1] != 3:
            raise AdderFlowError(f"cifar10 preprocessing needs 3 channels, got shape {x.shape}")
        x = (x - np.asarray(CIFAR_MEAN, np.float32)) / np.asarray(CIFAR_STD, np.float32)
    elif dataset != DIGITS:
        raise AdderFlowError(f"unknown preprocessing '{dataset}' (choose cifar10 or digits)")
    return x.astype(np.float32, copy=False)


def dataset_kind(x: np.ndarray) -> str:
    """Which preprocessing fits these images: 3-channel images are CIFAR-10, 1-channel are digits."""
    return "cifar10" if x.shape[-1] == 3 else DIGITS


def find_split_files(data_dir) -> tuple[Path, Path]:
    """(calibration/train source, test source) inside a folder.

    Accepts a folder with one `*train*.npz` and one `*test*.npz`, or a CIFAR-10 batches folder (itself
    or a `cifar-10-batches-py` inside it), returned twice: load it with split="train"/"test".
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise AdderFlowError(f"data folder not found: {d}")
    for cand in (d, d / "cifar-10-batches-py"):
        if cand.is_dir() and (cand / "test_batch").exists():
            return cand, cand
    # a lossy JPEG-decoded set (e.g. cifar10_train50k_jpeg.npz) is for training only, never calibration
    train = sorted(p for p in d.glob("*train*.npz") if "jpeg" not in p.name.lower())
    test = sorted(p for p in d.glob("*test*.npz") if "jpeg" not in p.name.lower())
    if len(train) != 1 or len(test) != 1:
        raise AdderFlowError(
            f"{d}: expected one *train*.npz and one *test*.npz (found {len(train)} and {len(test)}) "
            "or a cifar-10-batches-py folder"
        )
    return train[0], test[0]


def _load_npz(p: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise AdderFlowError(f"{p}: missing array(s) {missing} (found {sorted(f.files)}); need x (uint8 NHWC) and y")
            x, y = f["x"], f["y"]
    except AdderFlowError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise AdderFlowError(f"{p}: not a readable .npz ({exc})") from None
    if x.ndim != 4:
        raise AdderFlowError(f"{p}: x must be NHWC with 4 dimensions, got shape {x.shape}")
    return _pixels(x, p, "x"), _labels(y, p)


def _pixels(x: np.ndarray, source, what: str) -> np.ndarray:
    """Integer pixels 0..255 as uint8; any other dtype or range is refused (astype would wrap 300 to 44)."""
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.integer):
        raise AdderFlowError(f"{source}: {what} must be uint8 pixels, got {x.dtype}")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise AdderFlowError(f"{source}: {what} must be uint8 pixels 0..255, got {x.dtype} in [{x.min()}, {x.max()}]")
    return x.astype(np.uint8)


def _labels(y, source) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise AdderFlowError(f"{source}: y must be integer class labels of shape (N,), got {y.dtype} {y.shape}")
    if y.size and y.min() < 0:
        raise AdderFlowError(f"{source}: labels must be class indices >= 0, got {y.min()}")
    return y.astype(np.int64)


def _load_cifar_dir(d: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if not (d / "test_batch").exists() and (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    names = _CIFAR_TRAIN_BATCHES if split == "train" else _CIFAR_TEST_BATCHES
    xs, ys = [], []
    for name in names:
        f = d / name
        if not f.exists():
            raise AdderFlowError(f"CIFAR-10 batch not found: {f} (expected the cifar-10-batches-py layout)")
        try:
            with open(f, "rb") as fh:
                batch = _CifarUnpickler(fh, encoding="bytes").load()
        except _RefusedGlobal as exc:
            raise AdderFlowError(f"{f}: {exc}") from None
        except Exception as exc:  # a truncated or foreign pickle: say which file
            raise AdderFlowError(f"{f}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise AdderFlowError(f"{f}: not a CIFAR-10 python batch (needs keys b'data' and b'labels')")
        data = np.asarray(batch[b"data"])
        if data.ndim != 2 or data.shape[1] != 3072:
            raise AdderFlowError(f"{f}: b'data' must be (N, 3072), got {data.shape}")
        # rows are CHW-flattened 32x32x3 images
        xs.append(_pixels(data, f, "b'data'").reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels = _labels(batch[b"labels"], f)
        _check_label_range(labels, CIFAR_CLASSES, f)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


class _RefusedGlobal(pickle.UnpicklingError):
    """A CIFAR batch names a global outside the allow-list (e.g. os.system): the caller adds the file."""


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR batches hold only dicts, lists, bytes and numpy arrays: refuse every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refusing to load {module}.{name} (not a CIFAR-10 python batch: it asks to "
                             "import code, nothing was executed)")


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # pixel values are 0..16 in sklearn's digits
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
    idx = order[:n_test] if split == "test" else order[n_test:]
    idx = np.sort(idx)
    return x[idx], y[idx]


def _check_arrays(x: np.ndarray, y: np.ndarray, source: str) -> None:
    if len(x) != len(y):
        raise AdderFlowError(f"{source}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise AdderFlowError(f"{source}: no samples")
