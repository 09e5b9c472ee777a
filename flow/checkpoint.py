"""Read PyTorch checkpoints without PyTorch, and without executing pickled code.

Both on-disk formats are supported: the legacy one (`torch.save(..., _use_new_zipfile_serialization=False)`,
a pickle stream followed by raw storages) and the zip one (`archive/data.pkl` + `archive/data/<key>`).
The unpickler admits only the handful of globals a state dict needs (tensor rebuild functions,
storage type markers, OrderedDict); anything else is refused with an error naming the global, so a
malicious or unrelated pickle never runs.

Nothing the file declares is trusted before it is checked against what the file holds: unpickling only
records each tensor's view (storage, offset, size, stride); storages are read once their declared
length is known to fit in the file; then every view is checked to lie inside its storage and to fit the
memory budget (see `_MAX_EXPANSION`) before a single element is copied.
"""

from __future__ import annotations

import collections
import io
import math
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
_ZIP_SIGNATURE = b"PK\x03\x04"
# Bytes of arrays (storages read plus tensors built) a checkpoint may unpack to, per byte of file.
# An honest state dict unpacks to about 2x (each storage once, each tensor a copy of it); 16x leaves
# room for deflated zips and shared views, and stops zip bombs and stride-0 repeats (2^30 copies of
# one stored float) long before they exhaust memory. The floor keeps tiny hand-made files readable.
_MAX_EXPANSION = 16
_BUDGET_FLOOR = 1 << 20
# The official checkpoint's largest |value| is ~3.2e3 (running means of the deepest adder BatchNorms).
# 1e6 is 300x that, yet small enough that squares and 576-term adder sums stay far from float32's
# 3.4e38; a larger value is a corrupt or hostile file, and would swamp the per-tensor quantization scale.
MAX_ABS_WEIGHT = 1e6


class _StorageType:
    """Marker standing in for torch.<Kind>Storage: only its element dtype matters."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class _StorageRef:
    """A storage as the pickle names it; its bytes are read later, once the declared length is checked."""

    def __init__(self, key: str, dtype: np.dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorView:
    """What `_rebuild_tensor_v2` was asked to build; checked against its storage before it is built."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _TensorView(storage, offset, size, stride)


def _rebuild_parameter(tensor, *unused):
    return tensor


class _Budget:
    """Bytes of arrays this checkpoint may still unpack to (see `_MAX_EXPANSION`)."""

    def __init__(self, source: Path, file_size: int):
        self.source, self.file_size = source, file_size
        self.left = _MAX_EXPANSION * file_size + _BUDGET_FLOOR

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise AdderFlowError(
                f"{self.source}: {what} would unpack to {nbytes} bytes, beyond {_MAX_EXPANSION}x the file's "
                f"{self.file_size} bytes (a zip bomb, a stride-0 repeat or a lying size)")
        self.left -= nbytes


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, source: Path, max_storage_bytes: int):
        super().__init__(fileobj)
        self._source, self._max_storage_bytes = source, max_storage_bytes
        self.storages: dict[str, _StorageRef] = {}

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
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise AdderFlowError(f"{self._source}: unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise AdderFlowError(f"{self._source}: unsupported storage type {storage_type!r}")
        # Every stored byte is in the file, so a longer declaration is a lie: refuse it before any allocation.
        if not _is_count(numel) or numel * storage_type.dtype.itemsize > self._max_storage_bytes:
            raise AdderFlowError(f"{self._source}: storage {key} declares {numel!r} elements, more than "
                                 f"the file can hold ({self._max_storage_bytes} bytes at most)")
        ref = self.storages.setdefault(key, _StorageRef(key, storage_type.dtype, numel))
        if (ref.dtype, ref.numel) != (storage_type.dtype, numel):
            raise AdderFlowError(f"{self._source}: storage {key} is declared twice with different types or lengths")
        return ref


def _materialise(obj, storages: dict[str, np.ndarray], budget: _Budget):
    """`obj` with every `_TensorView` replaced by its numpy array, each checked first (see `_build`)."""
    done: dict[int, object] = {}  # by id: a view or container shared in the pickle is built once

    def walk(x, name):
        if id(x) in done:
            return done[id(x)]
        if isinstance(x, _TensorView):
            done[id(x)] = out = _build(x, name, storages, budget)
            return out
        if isinstance(x, dict):
            done[id(x)] = x  # in place, so that a cycle through it ends here
            for k in list(x):
                x[k] = walk(x[k], f"{name}/{k}" if name else str(k))
            return x
        if isinstance(x, list):
            done[id(x)] = x
            x[:] = [walk(v, f"{name}[{i}]") for i, v in enumerate(x)]
            return x
        if isinstance(x, tuple):
            done[id(x)] = out = tuple(walk(v, f"{name}[{i}]") for i, v in enumerate(x))
            return out
        return x

    return walk(obj, "")


def _build(view: _TensorView, name: str, storages: dict[str, np.ndarray], budget: _Budget) -> np.ndarray:
    """The tensor `name` as a fresh array, refused unless every element it reads is inside its storage."""
    source = budget.source
    ref, offset, size, stride = view.storage, view.offset, view.size, view.stride
    if not isinstance(ref, _StorageRef) or ref.key not in storages:
        raise AdderFlowError(f"{source}: tensor '{name}' has no stored data")
    data = storages[ref.key]
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
            and all(map(_is_count, size)) and all(map(_is_count, stride)) and _is_count(offset)):
        raise AdderFlowError(f"{source}: tensor '{name}' has an invalid view (size {size!r}, stride {stride!r}, "
                             f"offset {offset!r}); sizes, strides and the offset must be counts")
    n = math.prod(size)
    # The last element read is offset + sum((size-1)*stride); an empty tensor reads nothing.
    last = offset + sum((s - 1) * st for s, st in zip(size, stride)) if n else offset - 1
    if offset > data.size or last >= data.size:
        raise AdderFlowError(f"{source}: tensor '{name}' reads outside its storage (size {tuple(size)}, stride "
                             f"{tuple(stride)}, offset {offset}; storage {ref.key} holds {data.size} elements)")
    budget.take(n * data.itemsize, f"tensor '{name}' ({n} elements)")
    if n == 0:
        return np.empty(tuple(size), dtype=data.dtype)
    return np.lib.stride_tricks.as_strided(
        data[offset:], shape=tuple(size), strides=tuple(st * data.itemsize for st in stride)).copy()


def _load_legacy(f, source: Path, budget: _Budget):
    def unpickler():
        return _RestrictedUnpickler(f, source, budget.file_size - f.tell())

    if unpickler().load() != _LEGACY_MAGIC:
        raise AdderFlowError(f"{source}: not a PyTorch checkpoint (bad magic number)")
    unpickler().load()  # protocol version
    unpickler().load()  # sys info
    objects = unpickler()
    obj = objects.load()
    keys = unpickler().load()
    if not isinstance(keys, list):
        raise AdderFlowError(f"{source}: corrupt checkpoint (no storage list after the objects)")
    storages: dict[str, np.ndarray] = {}
    for key in map(str, keys):
        ref = objects.storages.get(key)
        if ref is None or key in storages:
            raise AdderFlowError(f"{source}: corrupt checkpoint (storage {key} is not the one the objects name)")
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = ref.numel * ref.dtype.itemsize
        if numel != ref.numel or nbytes > budget.file_size - f.tell():
            raise AdderFlowError(f"{source}: truncated checkpoint (storage {key} is short)")
        budget.take(nbytes, f"storage {key}")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise AdderFlowError(f"{source}: truncated checkpoint (storage {key} is short)")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)
    return _materialise(obj, storages, budget)


def _load_zip(path: Path, budget: _Budget):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise AdderFlowError(f"{path}: truncated or corrupt zip checkpoint") from None
    with zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise AdderFlowError(f"{path}: zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]

        def member(name: str, what: str) -> bytes:
            # The declared size bounds what zipfile decompresses (a lie fails its CRC), so check it first.
            size = zf.getinfo(name).file_size
            budget.take(size, what)
            return zf.read(name)

        unpickler = _RestrictedUnpickler(io.BytesIO(member(pkl, pkl)), path,
                                         _MAX_EXPANSION * budget.file_size + _BUDGET_FLOOR)
        obj = unpickler.load()
        storages = {}
        for key, ref in unpickler.storages.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise AdderFlowError(f"{path}: storage {key} is missing from the zip ({name})")
            raw = member(name, f"storage {key}")
            if len(raw) < ref.numel * ref.dtype.itemsize:
                raise AdderFlowError(f"{path}: storage {key} is short ({len(raw)} bytes for {ref.numel} elements)")
            storages[key] = np.frombuffer(raw, dtype=ref.dtype, count=ref.numel)
        return _materialise(obj, storages, budget)


def load_checkpoint(path) -> object:
    """The unpickled object of a PyTorch checkpoint, tensors as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise AdderFlowError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as f:
            budget = _Budget(path, path.stat().st_size)
            # By its signature, not by zipfile.is_zipfile alone: a truncated zip has lost its central
            # directory, and read as a legacy pickle it fails with a baffling "persistent IDs" message.
            if f.read(4) == _ZIP_SIGNATURE or zipfile.is_zipfile(path):
                return _load_zip(path, budget)
            f.seek(0)
            return _load_legacy(f, path, budget)
    except AdderFlowError:
        raise
    except zipfile.BadZipFile:  # e.g. a member's CRC: the zip opened but its bytes are damaged
        raise AdderFlowError(f"{path}: truncated or corrupt zip checkpoint") from None
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise AdderFlowError(f"{path}: checkpoint too large or too deeply nested to read ({type(exc).__name__})") from None
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise AdderFlowError(f"{path}: corrupt or unreadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def check_weight_values(state_dict: dict, source: str) -> None:
    """Refuse a NaN, an infinity or a float beyond `MAX_ABS_WEIGHT`, naming the first tensor holding one."""
    for key, v in state_dict.items():
        arr = np.asarray(v)
        if arr.dtype.kind != "f" or arr.size == 0:
            continue  # integer counters (num_batches_tracked) are no weights
        bad = ~np.isfinite(arr) | (np.abs(arr) >= MAX_ABS_WEIGHT)
        if bad.any():
            at = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim else ()
            raise AdderFlowError(f"{source}: tensor '{key}' holds {float(arr[at]):g} at index {tuple(map(int, at))} "
                                 f"({int(bad.sum())} value(s) non-finite or |w| >= {MAX_ABS_WEIGHT:g})")


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
    check_weight_values(out, str(path))
    return out
