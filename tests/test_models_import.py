"""Model zoo and the import of the official PyTorch ResNet-20 (no PyTorch): numbers, names, errors."""

import json
import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from flow import data  # noqa: E402
from flow.cli import main as cli  # noqa: E402
from flow.errors import AdderFlowError  # noqa: E402
from flow.importer import assign_state_dict, keras_from_state_dict, load_weights_any, torch_name  # noqa: E402
from flow.layers.adder import AdderConv2D  # noqa: E402
from flow.models import MODELS, build_model, predict_logits  # noqa: E402


@pytest.fixture(scope="module")
def state_dict(resnet20_ckpt):
    from flow.checkpoint import load_state_dict

    return load_state_dict(resnet20_ckpt)


@pytest.fixture(scope="module")
def imported(state_dict):
    return keras_from_state_dict(state_dict, "resnet20")


def _fake_state_dict(model):
    """A state dict in PyTorch layout for a Keras model (the importer's inverse, written independently)."""
    sd = {}
    rng = np.random.default_rng(0)
    for layer in model.layers:
        base = layer.name.replace("_", ".")
        if isinstance(layer, AdderConv2D):
            kh, kw, ci, co = layer.kernel.shape
            sd[f"{base}.adder"] = rng.normal(size=(co, ci, kh, kw)).astype(np.float32)
        elif isinstance(layer, tf.keras.layers.Conv2D):
            kh, kw, ci, co = layer.kernel.shape
            sd[f"{base}.weight"] = rng.normal(size=(co, ci, kh, kw)).astype(np.float32)
        elif isinstance(layer, tf.keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            sd[f"{base}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            sd[f"{base}.bias"] = rng.normal(size=c).astype(np.float32)
            sd[f"{base}.running_mean"] = rng.normal(size=c).astype(np.float32)
            sd[f"{base}.running_var"] = rng.uniform(0.5, 2, c).astype(np.float32)
            sd[f"{base}.num_batches_tracked"] = np.array(10)
    return sd


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(AdderFlowError, match="unknown model 'resnet56'.*resnet20, resnet20_cnn, adder_small"):
        build_model("resnet56")


def test_resnet20_structure():
    model = build_model("resnet20")
    adders = [l for l in model.layers if isinstance(l, AdderConv2D)]
    convs = [l for l in model.layers if type(l) is tf.keras.layers.Conv2D]
    assert len(adders) == 18 + 2 and [l.name for l in convs] == ["conv1", "fc"]
    by_name = {l.name: l for l in model.layers}
    assert by_name["layer2_0_conv1"].strides == (2, 2) and by_name["layer2_0_conv1"].padding == ((1, 1), (1, 1))
    assert by_name["layer3_0_downsample_0"].kernel_size == (1, 1) and by_name["layer3_0_downsample_0"].padding == "valid"
    assert by_name["bn2"].epsilon == 1e-5
    assert model.output_shape == (None, 10)
    assert torch_name("layer2_0_downsample_1") == "layer2.0.downsample.1"
    # about 0.27 M parameters like the official network
    assert 260_000 < sum(int(np.prod(w.shape)) for w in model.trainable_weights) < 280_000


def test_cnn_twin_and_small_net_run():
    cnn = build_model("resnet20_cnn")
    assert not any(isinstance(l, AdderConv2D) for l in cnn.layers)
    assert [l.name for l in cnn.layers if isinstance(l, tf.keras.layers.Conv2D)] == \
           [l.name for l in build_model("resnet20").layers if isinstance(l, (tf.keras.layers.Conv2D, AdderConv2D))]
    small = build_model("adder_small", adder_gradient="sign")
    assert small.input_shape == (None, 8, 8, 1)
    assert all(l.adder_gradient == "sign" for l in small.layers if isinstance(l, AdderConv2D))
    assert small(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)


def test_importer_round_trips_a_state_dict_by_name():
    model = build_model("adder_small")
    sd = _fake_state_dict(model)
    rebuilt = keras_from_state_dict(sd, "adder_small")
    by_name = {l.name: l for l in rebuilt.layers}
    np.testing.assert_array_equal(by_name["layer1_0_conv2"].kernel.numpy(),
                                  sd["layer1_0_conv2".replace("_", ".") + ".adder"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(by_name["bn2"].moving_variance.numpy(), sd["bn2.running_var"])


def test_importer_errors_name_the_problem():
    model = build_model("adder_small")
    sd = _fake_state_dict(model)

    missing = {k: v for k, v in sd.items() if k != "layer1.0.bn1.running_var"}
    with pytest.raises(AdderFlowError, match="missing 1 tensor.*layer1.0.bn1.running_var \\(layer layer1_0_bn1\\)"):
        assign_state_dict(model, missing)

    extra = dict(sd, **{"head.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(AdderFlowError, match="do not belong.*head.weight"):
        assign_state_dict(model, extra)

    wrong = dict(sd, **{"layer1.0.conv1.adder": np.zeros((32, 8, 3, 3), np.float32)})
    with pytest.raises(AdderFlowError, match="shape mismatch for layer layer1_0_conv1: .*\\(32, 8, 3, 3\\).*"
                                             "model expects \\(3, 3, 16, 32\\)"):
        assign_state_dict(model, wrong)

    for value in (np.nan, np.inf, 1e30):
        poisoned = dict(sd, **{"layer1.0.bn1.running_var": np.full(16, value, np.float32)})
        with pytest.raises(AdderFlowError, match=re.escape(f"mem: tensor 'layer1.0.bn1.running_var' holds {value:g}")):
            assign_state_dict(model, poisoned, source="mem")

    cnn_only = {k.replace(".adder", ".weight"): v for k, v in sd.items()}
    with pytest.raises(AdderFlowError, match="not an AdderNet checkpoint"):
        assign_state_dict(model, cnn_only, source="cnn.pth")


def test_import_matches_numpy_reference(imported, state_dict, cifar_test1k):
    from flow.reference import resnet20_forward

    x, _ = data.load_dataset(cifar_test1k, limit=64)
    xf = data.preprocess(x)
    keras_logits = predict_logits(imported, xf, batch_size=64)
    ref_logits = resnet20_forward(state_dict, xf)
    rel = np.abs(keras_logits - ref_logits).max() / np.abs(ref_logits).max()
    assert rel < 1e-3
    assert (keras_logits.argmax(1) == ref_logits.argmax(1)).mean() >= 63 / 64


def test_import_cli_writes_loadable_model_and_refuses_overwrite(tmp_path, resnet20_ckpt, imported, capsys):
    out = tmp_path / "resnet20.keras"
    assert cli(["import", "--pytorch", str(resnet20_ckpt), "--model", "resnet20", "--out", str(out)]) == 0
    loaded = load_weights_any("resnet20", out)
    x = data.preprocess(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    np.testing.assert_allclose(loaded(x, training=False).numpy(), imported(x, training=False).numpy(), rtol=1e-5, atol=1e-4)
    capsys.readouterr()
    assert cli(["import", "--pytorch", str(resnet20_ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists; pass --force" in err


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_checkpoint_is_one_clear_line(tmp_path, resnet20_ckpt, damage, capsys):
    bad = tmp_path / f"{damage}.pth"
    raw = resnet20_ckpt.read_bytes()
    bad.write_bytes(np.random.default_rng(0).bytes(4096) if damage == "random" else raw[: len(raw) // 2])
    rc = cli(["eval", "--model", "resnet20", "--weights", str(bad), "--limit", "4", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and str(bad) in err
    assert "Traceback" not in err


def test_cli_bad_inputs_exit_non_zero_with_one_line(tmp_path, capsys):
    cases = [
        (["eval", "--model", "resnet56", "--weights", "x.pth", "--data", "digits"], "unknown model 'resnet56'"),
        (["eval", "--model", "adder_small", "--weights", "x.pth", "--data", str(tmp_path / "missing.npz")],
         "data file not found"),
        (["import", "--pytorch", str(tmp_path / "none.pth"), "--out", str(tmp_path / "m.keras")], "not found"),
        (["eval", "--qnet", str(tmp_path), "--data", "digits"], "has no qnet.json"),
    ]
    for argv, fragment in cases:
        assert cli(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert fragment in err and err.count("\n") == 0, err


def test_non_adder_pytorch_checkpoint_via_cli(tmp_path, capsys, monkeypatch):
    """A zip-format PyTorch file holding a plain CNN state dict, written without torch."""
    import collections
    import io
    import pickle
    import sys
    import types
    import zipfile

    # stand-ins so that pickle writes the globals torch.FloatStorage and torch._utils._rebuild_tensor_v2
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    w = np.ones((16, 3, 3, 3), np.float32)

    class _Storage:
        pass

    class _Tensor:
        def __reduce__(self):
            return _rebuild_tensor_v2, (_Storage(), 0, (16, 3, 3, 3), (27, 9, 3, 1), False, collections.OrderedDict())

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", w.size) if isinstance(obj, _Storage) else None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(collections.OrderedDict([("conv1.weight", _Tensor())]))
    path = tmp_path / "cnn.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", w.tobytes())
    monkeypatch.undo()
    from flow.checkpoint import load_state_dict

    assert load_state_dict(path)["conv1.weight"].shape == (16, 3, 3, 3)  # a valid checkpoint ...
    rc = cli(["import", "--pytorch", str(path), "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "not an AdderNet checkpoint" in err and err.count("\n") == 0  # ... of no AdderNet


def test_eval_cli_json(tmp_path, resnet20_ckpt, cifar_test1k, capsys):
    out = tmp_path / "r.json"
    rc = cli(["eval", "--model", "resnet20", "--weights", str(resnet20_ckpt), "--data", str(cifar_test1k),
              "--limit", "50", "--batch-size", "50", "--json", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["n"] == 50 and 0.8 <= result["accuracy"] <= 1.0
    assert "accuracy" in capsys.readouterr().out


def test_imported_resnet20_accuracy_on_test1k(imported, cifar_test1k):
    """The must-show number: 91.6% +- 0.1 on all 1000 images (about 10 s with the numba backend)."""
    x, y = data.load_dataset(cifar_test1k)
    logits = predict_logits(imported, data.preprocess(x), batch_size=100)
    assert abs((logits.argmax(1) == y).mean() - 0.916) <= 0.001


def test_models_listed():
    assert set(MODELS) == {"resnet20", "resnet20_cnn", "adder_small"}
