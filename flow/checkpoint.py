"""Read PyTorch checkpoints without PyTorch, and without executing pickled code.

Both on-disk formats are supported: the legacy one (`torch.save(..., _use_new_zipfile_serialization=False)`,
a pickle stream followed by raw storages) and the zip one (`archive/data.pkl` + `archive/data/<key>`).
The unpickler admits only the handful of globals a state dict needs (tensor rebuild functions,
storage type markers, OrderedDict); anything else is refused with an error naming the global, so a
malicious or unrelated pickle never runs.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    """Marker standing in for torch.<Kind>Storage: only its element dtype matters."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
    data, dtype = storage
    if not size:
        return np.array(data[offset], dtype=dtype)
    itemsize = data.itemsize
    return np.lib.stride_tricks.as_strided(
        data[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(tensor, *unused):
    return tensor


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, storage_loader, source: Path):
        super().__init__(fileobj)
        self._load_storage, self._source = storage_loader, source

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise AdderFlowError(f"{self._source}: refusing to unpickle global {module}.{name} "
                             "(only tensors and state dicts are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise AdderFlowError(f"{self._source}: unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise AdderFlowError(f"{self._source}: unsupported storage type {storage_type!r}")
        return self._load_storage(key, storage_type.dtype, numel), storage_type.dtype


def _load_legacy(f, source: Path):
    storages: dict[str, np.ndarray] = {}

    def storage(key, dtype, numel):
        if key not in storages:
            storages[key] = np.zeros(numel, dtype=dtype)
        return storages[key]

    def plain_load():
        return _RestrictedUnpickler(f, storage, source).load()

    if plain_load() != _LEGACY_MAGIC:
        raise AdderFlowError(f"{source}: not a PyTorch checkpoint (bad magic number)")
    plain_load()  # protocol version
    plain_load()  # sys info
    # The raw storages follow the object pickle, but tensors are rebuilt (copied) while unpickling:
    # pass once to learn the storages, read them, then unpickle the object again over the filled ones.
    object_start = f.tell()
    plain_load()
    for key in plain_load():
        (numel,) = struct.unpack("<q", f.read(8))
        arr = storages[key]
        raw = f.read(numel * arr.itemsize)
        if numel != arr.size or len(raw) != numel * arr.itemsize:
            raise AdderFlowError(f"{source}: truncated checkpoint (storage {key} is short)")
        arr[:] = np.frombuffer(raw, dtype=arr.dtype)
    f.seek(object_start)
    return plain_load()


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise AdderFlowError(f"{path}: zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]

        def load_storage(key, dtype, numel):
            raw = zf.read(f"{prefix}data/{key}")
            return np.frombuffer(raw, dtype=dtype, count=numel).copy()

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkl)), load_storage, path).load()


def load_checkpoint(path) -> object:
    """The unpickled object of a PyTorch checkpoint, tensors as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise AdderFlowError(f"{path}: checkpoint file not found")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(f, path)
    except AdderFlowError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, IndexError,
            TypeError, AttributeError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise AdderFlowError(f"{path}: corrupt or unreadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


DATA_PARALLEL_PREFIX = "module."


def strip_module_prefix(state_dict: dict) -> dict:
    """The state dict without the `module.` that `torch.nn.DataParallel` puts before every key."""
    n = len(DATA_PARALLEL_PREFIX)
    return {k[n:] if k.startswith(DATA_PARALLEL_PREFIX) else k: v for k, v in state_dict.items()}


def load_state_dict(path) -> dict[str, np.ndarray]:
    """A flat {name: array} state dict; unwraps {'state_dict': ...} and strips DataParallel's `module.`."""
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise AdderFlowError(f"{path}: checkpoint holds {type(obj).__name__}, not a state dict")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            continue  # e.g. num_batches_tracked saved as python int in some versions
        out[k] = v
    out = strip_module_prefix(out)
    if not out:
        raise AdderFlowError(f"{path}: checkpoint holds no tensors")
    return out
