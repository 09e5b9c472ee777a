"""Hostile checkpoints: out-of-bounds views, memory bombs, non-finite weights, truncated zips.

Every checkpoint here is built by hand (no PyTorch) so that its size, stride, offset and storage
length can lie; each must be refused with one line naming the file and the tensor, never read.
"""

import io
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
from fake_modules import modules_replaced
import pytest

from flow.checkpoint import load_state_dict
from flow.errors import AdderFlowError

REPO = Path(__file__).resolve().parents[1]


def _fake_torch():
    """Stand-ins so pickle can name torch.FloatStorage and torch._utils._rebuild_tensor_v2 while writing."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*a):  # never called while writing
        raise AssertionError

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    return torch, utils


class _Ref:
    """A storage reference; `numel` is what the pickle declares, whatever the bytes hold."""

    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _View:
    def __init__(self, ref, offset, size, stride):
        self.args = (ref, offset, tuple(size), tuple(stride), False, {})


def write_checkpoint(path, views: dict, storages: dict, fmt="zip", declared=None, compress=False):
    """views: {name: (storage key, offset, size, stride)}; storages: {key: bytes}; declared: {key: numel}."""
    declared = dict({k: len(b) // 4 for k, b in storages.items()}, **(declared or {}))
    torch, utils = _fake_torch()
    with modules_replaced({"torch": torch, "torch._utils": utils}):
        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _Ref):
                    pid = ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
                    return pid if fmt == "zip" else pid + (None,)
                return None

            def reducer_override(self, obj):
                if isinstance(obj, _View):
                    return utils._rebuild_tensor_v2, obj.args
                return NotImplemented

        def dumps(obj):
            buf = io.BytesIO()
            P(buf, protocol=2).dump(obj)
            return buf.getvalue()

        refs = {k: _Ref(k, declared[k]) for k in storages}
        obj = {name: _View(refs[key], off, size, stride) for name, (key, off, size, stride) in views.items()}
        if fmt == "zip":
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
                zf.writestr("archive/data.pkl", dumps(obj))
                for key, raw in storages.items():
                    zf.writestr(f"archive/data/{key}", raw)
        else:
            out = bytearray()
            for head in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                out += pickle.dumps(head, protocol=2)
            out += dumps(obj) + pickle.dumps(list(storages), protocol=2)
            for key, raw in storages.items():
                out += struct.pack("<q", declared[key]) + raw
            Path(path).write_bytes(bytes(out))
    return Path(path)


def _floats(n, start=0.0):
    return (np.arange(n, dtype=np.float32) + start).tobytes()


FORMATS = ["zip", "legacy"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_honest_views_still_read(tmp_path, fmt):
    """Offsets, transposed strides, scalars, empty tensors and shared storages are all legal."""
    views = {
        "a": ("0", 2, (2, 3), (3, 1)),
        "t": ("0", 0, (3, 2), (1, 3)),
        "s": ("0", 7, (), ()),
        "e": ("0", 8, (0, 5), (5, 1)),  # zero-size: reads nothing, the stride may point anywhere
        "b": ("1", 0, (4,), (1,)),
    }
    p = write_checkpoint(tmp_path / "ok.pth", views, {"0": _floats(8), "1": _floats(4, 100)}, fmt)
    sd = load_state_dict(p)
    np.testing.assert_array_equal(sd["a"], np.arange(2, 8, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(sd["t"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert sd["s"].shape == () and sd["s"] == 7
    assert sd["e"].shape == (0, 5)
    np.testing.assert_array_equal(sd["b"], [100, 101, 102, 103])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("offset, size, stride", [
    (0, (16, 3, 3, 3), (27, 9, 3, 1)),  # the case: 432 elements over a 1-element storage
    (1, (1,), (1,)),                    # one past the end
    (-1, (1,), (1,)),                   # before the start
    (0, (2,), (-1,)),                   # negative stride walks backwards out of the storage
    (0, (2, 2), (1, 0)),                # in bounds? no: (2-1)*1 = 1 >= 1 element
    (3, (), ()),                        # a scalar past the end
    (5, (0,), (1,)),                    # an empty tensor still may not start past the storage
    (0, (2, 3), (1,)),                  # size and stride disagree in rank
])
def test_out_of_bounds_view_is_refused(tmp_path, fmt, offset, size, stride):
    p = write_checkpoint(tmp_path / "oob.pth", {"conv1.weight": ("0", offset, size, stride)},
                         {"0": _floats(1)}, fmt)
    with pytest.raises(AdderFlowError, match=r"oob\.pth: tensor 'conv1\.weight'") as info:
        load_state_dict(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_stride_does_not_crash(tmp_path, fmt):
    """A stride of 10^9 used to segfault the process: run the load in a child so a crash fails the test."""
    p = write_checkpoint(tmp_path / "stride.pth", {"conv1.weight": ("0", 0, (2, 2), (10**9, 1))},
                         {"0": _floats(4)}, fmt)
    code = ("import sys\nfrom flow.checkpoint import load_state_dict\nfrom flow.errors import AdderFlowError\n"
            "try:\n    load_state_dict(sys.argv[1])\nexcept AdderFlowError as e:\n    print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 3, (r.returncode, r.stderr[-500:])
    assert "tensor 'conv1.weight'" in r.stdout and "outside its storage" in r.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_stride_zero_expansion_is_refused(tmp_path, fmt):
    """2^30 elements repeated from one stored float: in bounds, but 4 GiB out of a few hundred bytes."""
    p = write_checkpoint(tmp_path / "bomb.pth", {"fc.weight": ("0", 0, (2**15, 2**15), (0, 0))},
                         {"0": _floats(1)}, fmt)
    with pytest.raises(AdderFlowError, match=r"bomb\.pth: tensor 'fc\.weight'.*bytes"):
        load_state_dict(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_views_of_one_storage_are_bounded_in_total(tmp_path, fmt):
    """Each view alone is honest, but 2000 copies of a 16 KiB storage would be 32 MB from a small file."""
    views = {f"t{i}": ("0", 0, (4096,), (1,)) for i in range(2000)}
    p = write_checkpoint(tmp_path / "many.pth", views, {"0": _floats(4096)}, fmt)
    assert p.stat().st_size < 200_000
    with pytest.raises(AdderFlowError, match=r"many\.pth: tensor 't\d+'.*bytes"):
        load_state_dict(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_declared_storage_larger_than_file_is_refused(tmp_path, fmt):
    """A storage declaring 2^40 elements must not be allocated before its bytes are seen."""
    p = write_checkpoint(tmp_path / "big.pth", {"w": ("0", 0, (1,), (1,))}, {"0": _floats(1)}, fmt,
                         declared={"0": 2**40})
    with pytest.raises(AdderFlowError, match=r"big\.pth: .*storage 0") as info:
        load_state_dict(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("declared", [None, 1])
def test_zip_bomb_member_is_refused(tmp_path, declared):
    """A deflated member of 64 MiB zeros is a small file; its size is checked before it is decompressed,
    whether the pickle declares all of it or (declared=1) only one element."""
    n = 16 * 2**20
    p = write_checkpoint(tmp_path / "zbomb.pth", {"w": ("0", 0, (1,), (1,))}, {"0": bytes(4 * n)}, "zip",
                         compress=True, declared=None if declared is None else {"0": declared})
    assert p.stat().st_size < 1_000_000
    with pytest.raises(AdderFlowError, match=r"zbomb\.pth: storage 0 .*bytes"):
        load_state_dict(p)


def test_compressed_honest_zip_still_reads(tmp_path):
    """Deflate itself is fine: random weights barely compress."""
    raw = np.random.default_rng(0).normal(size=1000).astype(np.float32).tobytes()
    p = write_checkpoint(tmp_path / "defl.pth", {"w": ("0", 0, (1000,), (1,))}, {"0": raw}, "zip", compress=True)
    np.testing.assert_array_equal(load_state_dict(p)["w"], np.frombuffer(raw, np.float32))


def test_short_zip_storage_is_refused(tmp_path):
    p = write_checkpoint(tmp_path / "short.pth", {"w": ("0", 0, (4,), (1,))}, {"0": _floats(2)}, "zip",
                         declared={"0": 4})
    with pytest.raises(AdderFlowError, match=r"short\.pth: storage 0 .*short"):
        load_state_dict(p)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_zip_says_so(tmp_path, cut):
    good = write_checkpoint(tmp_path / "good.pth", {"w": ("0", 0, (1000,), (1,))}, {"0": _floats(1000)}, "zip")
    raw = good.read_bytes()
    p = tmp_path / "cut.pth"
    p.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(AdderFlowError) as info:
        load_state_dict(p)
    assert str(info.value) == f"{p}: truncated or corrupt zip checkpoint"


def test_corrupt_zip_member_says_so(tmp_path):
    """A flipped byte inside a stored member: the zip opens, the CRC check fails."""
    good = write_checkpoint(tmp_path / "good.pth", {"w": ("0", 0, (1000,), (1,))}, {"0": _floats(1000)}, "zip")
    raw = bytearray(good.read_bytes())
    at = raw.index(_floats(1000)[2000:2016])
    raw[at] ^= 0xFF
    p = tmp_path / "flip.pth"
    p.write_bytes(bytes(raw))
    with pytest.raises(AdderFlowError, match=r"flip\.pth: truncated or corrupt zip checkpoint"):
        load_state_dict(p)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e30, -2e6])
def test_non_finite_or_huge_weight_is_refused(tmp_path, value):
    w = np.ones(27, np.float32)
    w[5] = value
    p = write_checkpoint(tmp_path / "nan.pth", {"conv1.weight": ("0", 0, (3, 3, 3), (9, 3, 1))},
                         {"0": w.tobytes()}, "zip")
    with pytest.raises(AdderFlowError, match=r"nan\.pth: tensor 'conv1\.weight' holds .* at index \(0, 1, 2\)"):
        load_state_dict(p)


def test_largest_honest_magnitude_passes(tmp_path):
    w = np.full(4, 999_999.0, np.float32)
    p = write_checkpoint(tmp_path / "big.pth", {"bn.running_var": ("0", 0, (4,), (1,))}, {"0": w.tobytes()}, "zip")
    np.testing.assert_array_equal(load_state_dict(p)["bn.running_var"], w)


def test_memory_error_while_building_is_one_line(tmp_path, monkeypatch):
    p = write_checkpoint(tmp_path / "oom.pth", {"w": ("0", 0, (4,), (1,))}, {"0": _floats(4)}, "zip")

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(np.lib.stride_tricks, "as_strided", no_memory)
    with pytest.raises(AdderFlowError, match=r"oom\.pth: checkpoint too large .*\(MemoryError\)$"):
        load_state_dict(p)


def test_torch_is_never_loaded_without_weights_only():
    """PyTorch is not needed; if the code ever calls torch.load, it must refuse pickled code."""
    import re

    for src in (REPO / "flow").rglob("*.py"):
        for call in re.findall(r"torch\.load\(([^)]*)\)", src.read_text()):
            assert "weights_only=True" in call, f"{src}: torch.load({call})"


# --- through the CLI: one line on stderr, non-zero exit, no output file -------------------------------

def _cli(*argv):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "flow", *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def _bad_checkpoints(tmp_path):
    """(file, words its error must contain) for each kind of hostile checkpoint, legacy and zip."""
    cases = [
        (write_checkpoint(tmp_path / "oob.pth", {"conv1.weight": ("0", 0, (16, 3, 3, 3), (27, 9, 3, 1))},
                          {"0": _floats(1)}, "legacy"), "tensor 'conv1.weight' reads outside its storage"),
        (write_checkpoint(tmp_path / "segv.pth", {"conv1.weight": ("0", 0, (2, 2), (10**9, 1))},
                          {"0": _floats(4)}, "zip"), "tensor 'conv1.weight' reads outside its storage"),
        (write_checkpoint(tmp_path / "bomb.pth", {"fc.weight": ("0", 0, (2**15, 2**15), (0, 0))},
                          {"0": _floats(1)}, "zip"), "tensor 'fc.weight'"),
        (write_checkpoint(tmp_path / "zbomb.pth", {"w": ("0", 0, (1,), (1,))}, {"0": bytes(2**26)}, "zip",
                          compress=True, declared={"0": 1}), "storage 0 would unpack to 67108864 bytes"),
        (write_checkpoint(tmp_path / "inf.pth", {"conv1.weight": ("0", 0, (2,), (1,))},
                          {"0": np.array([0, np.inf], np.float32).tobytes()}, "legacy"),
         "tensor 'conv1.weight' holds inf"),
    ]
    good = write_checkpoint(tmp_path / "good.pth", {"w": ("0", 0, (1000,), (1,))}, {"0": _floats(1000)}, "zip")
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[:3000])
    cases.append((trunc, "truncated or corrupt zip checkpoint"))
    return cases


def test_cli_import_refuses_hostile_checkpoints(tmp_path):
    for bad, words in _bad_checkpoints(tmp_path):
        out = tmp_path / f"{bad.stem}.keras"
        r = _cli("import", "--pytorch", str(bad), "--model", "resnet20", "--out", str(out))
        err = r.stderr.strip()
        assert r.returncode == 1, (bad, r.returncode, err[-800:])
        assert err.count("\n") == 0 and str(bad) in err and words in err, err[-800:]
        assert not out.exists()


def _rewrite_official(path, sd, fmt, conv1_view=None, poison=None):
    """The official state dict re-saved tensor by tensor; conv1.weight's view or one value may be made to lie."""
    views, storages, declared = {}, {}, {}
    for i, (name, arr) in enumerate(sd.items()):
        if arr.dtype != np.float32:
            continue  # num_batches_tracked counters: ignored by the importer, and the writer has FloatStorage only
        arr = np.ascontiguousarray(arr).copy()
        if name == poison:
            arr.flat[0] = np.nan
        key = str(i)
        if name == "conv1.weight" and conv1_view is not None:
            storages[key], views[name] = _floats(1), (key,) + conv1_view
            continue
        storages[key] = arr.tobytes()
        views[name] = (key, 0, arr.shape, tuple(s // 4 for s in arr.strides))
    return write_checkpoint(path, views, storages, fmt, declared)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_import_of_a_full_resnet20_with_one_bad_tensor(tmp_path, resnet20_ckpt, fmt):
    """The issue's case: a complete ResNet-20 whose conv1.weight is (16,3,3,3) over one stored float used
    to import with exit 0, heap bytes in the .keras; a NaN in one tensor imported as well."""
    sd = load_state_dict(resnet20_ckpt)
    honest = _rewrite_official(tmp_path / "honest.pth", sd, fmt)
    again = load_state_dict(honest)  # the rewrite itself is a faithful checkpoint ...
    assert all(np.array_equal(again[k], sd[k]) for k in again) and len(again) == 110
    cases = [
        (_rewrite_official(tmp_path / "oob.pth", sd, fmt, conv1_view=(0, (16, 3, 3, 3), (27, 9, 3, 1))),
         "tensor 'conv1.weight' reads outside its storage"),
        (_rewrite_official(tmp_path / "nan.pth", sd, fmt, poison="layer2.1.conv1.adder"),
         "tensor 'layer2.1.conv1.adder' holds nan"),
    ]
    for bad, words in cases:  # ... so only the one lie makes these fail
        out = tmp_path / f"{bad.stem}.keras"
        r = _cli("import", "--pytorch", str(bad), "--model", "resnet20", "--out", str(out))
        err = r.stderr.strip()
        assert r.returncode == 1 and err.count("\n") == 0 and words in err, (r.returncode, err[-800:])
        assert not out.exists()
