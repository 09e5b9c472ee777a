"""The restricted checkpoint reader: both torch formats, no code execution, clear errors."""

import io
import os
import pickle
import types
import zipfile

import numpy as np
from fake_modules import modules_replaced
import pytest

from flow.checkpoint import load_state_dict
from flow.errors import AdderFlowError


def _fake_torch_modules():
    """Stand-ins so pickle can name torch globals while writing, without PyTorch installed."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*a):  # never called while writing
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    return torch, utils


class _Tensor:
    def __init__(self, key, arr):
        self.key, self.arr = key, arr


def _write_zip_checkpoint(path, tensors: dict):
    torch, utils = _fake_torch_modules()
    with modules_replaced({"torch": torch, "torch._utils": utils}):
        class Storage:
            def __init__(self, key, numel):
                self.key, self.numel = key, numel

        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, Storage):
                    return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
                return None

            def reducer_override(self, obj):
                if isinstance(obj, _Tensor):
                    a = obj.arr
                    strides = tuple(s // a.itemsize for s in a.strides)
                    return utils._rebuild_tensor_v2, (Storage(obj.key, a.size), 0, a.shape, strides, False, {})
                return NotImplemented

        buf = io.BytesIO()
        P(buf, protocol=2).dump({f"module.{k}": _Tensor(str(i), v) for i, (k, v) in enumerate(tensors.items())})
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", buf.getvalue())
            for i, v in enumerate(tensors.values()):
                zf.writestr(f"archive/data/{i}", np.ascontiguousarray(v, np.float32).tobytes())


def test_zip_format_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv1.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
               "bn1.bias": rng.normal(size=(4,)).astype(np.float32)}
    p = tmp_path / "m.pth"
    _write_zip_checkpoint(p, tensors)
    sd = load_state_dict(p)
    assert set(sd) == set(tensors)  # `module.` stripped
    for k, v in tensors.items():
        np.testing.assert_array_equal(sd[k], v)


def test_official_legacy_checkpoint(resnet20_ckpt):
    sd = load_state_dict(resnet20_ckpt)
    assert sd["conv1.weight"].shape == (16, 3, 3, 3)
    assert sd["layer3.2.conv2.adder"].shape == (64, 64, 3, 3)
    assert sd["fc.weight"].shape == (10, 64, 1, 1)
    assert all(np.isfinite(v).all() for v in sd.values() if v.dtype.kind == "f")
    # Running variances are positive in a trained net: garbage storages would not be.
    assert all((v > 0).all() for k, v in sd.items() if k.endswith("running_var"))


def test_refuses_code_execution(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(AdderFlowError, match="refusing to unpickle global"):
        load_state_dict(p)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", bytes(range(256)) * 4])
def test_corrupt_files(tmp_path, content):
    p = tmp_path / "bad.pth"
    p.write_bytes(content)
    with pytest.raises(AdderFlowError, match="bad.pth"):
        load_state_dict(p)


def test_truncated_official_checkpoint(tmp_path, resnet20_ckpt):
    p = tmp_path / "trunc.pth"
    p.write_bytes(resnet20_ckpt.read_bytes()[:-5000])
    with pytest.raises(AdderFlowError, match="trunc.pth"):
        load_state_dict(p)


def test_missing_file(tmp_path):
    with pytest.raises(AdderFlowError, match="not found"):
        load_state_dict(tmp_path / "nope.pth")
