"""The official ResNet-20 through the quantizer (needs ../shared; skips without it)."""

import numpy as np
import pytest

from flow import golden
from flow.quant import QuantConfig, build_qnet
from flow.quant.calibrate import calibrate


@pytest.fixture(scope="module")
def resnet(resnet20_ckpt, cifar_train2k, cifar_test1k):
    from flow.checkpoint import load_state_dict
    from flow.quant.graph import from_resnet20_state_dict

    sd = load_state_dict(resnet20_ckpt)
    tr, te = np.load(cifar_train2k), np.load(cifar_test1k)
    return sd, from_resnet20_state_dict(sd), tr["x"], te["x"], te["y"]


def test_resnet20_qnet_structure_and_w8_fidelity(resnet):
    from flow.quant.graph import predict

    _, graph, xtr, xte, _ = resnet
    stats = calibrate(graph, xtr[:128], progress=False)
    net = build_qnet(graph, stats, QuantConfig(bits=8), calib_images=xtr[:128])
    names = [o.name for o in net.ops]
    assert names[:4] == ["conv1", "bn1", "layer1_0_conv1", "layer1_0_bn1"]
    assert names[-3:] == ["avgpool", "fc", "bn2"] and net.output == "logits"
    add = net.op("layer2_0_add")
    assert add.inputs == ["layer2_0_conv2_acc", "layer2_0_downsample_acc"] and add.arrays["mult"].shape == (2, 32)
    assert net.op("layer1_1_add").inputs == ["layer1_1_conv2_acc", "layer1_0_out"]
    assert net.op("conv1").attrs["bits"] == 8 and net.op("fc").attrs["bits"] == 8
    assert net.tensors["layer1_0_out"].bits == 8 and not net.tensors["layer1_0_out"].signed
    adder = net.op("layer1_0_conv1")
    assert adder.arrays["weight"].min() >= 0 and adder.arrays["weight"].max() <= 255   # unsigned grid of A
    ref = predict(graph, xte[:100]).argmax(1)
    got = golden.predict_int(net, xte[:100]).argmax(1)
    assert np.mean(got == ref) >= 0.97


def test_keras_model_gives_the_same_graph(resnet):
    pytest.importorskip("tensorflow")
    from flow.importer import keras_from_state_dict
    from flow.quant.graph import predict
    from flow.quant.keras_graph import from_keras

    sd, graph, _, xte, _ = resnet
    kg = from_keras(keras_from_state_dict(sd, "resnet20"))
    assert [o.kind for o in kg.ops] == [o.kind for o in graph.ops]
    a, b = predict(graph, xte[:8]), predict(kg, xte[:8])
    assert np.allclose(a, b, rtol=1e-4, atol=1e-3 * np.abs(a).max())


@pytest.mark.slow
@pytest.mark.parametrize("bits,floor", [(8, 91.4), (4, 90.6), (3, 88.6)])
def test_resnet20_accuracy_goals(resnet, bits, floor):
    """Goals of issue 4 (drop vs FP 91.60): W8 <= 0.2, W4 <= 1.0, W3 <= 3.0, calibration on 512 train images."""
    from flow.quant.calibrate import calibrate_cached

    _, graph, xtr, xte, yte = resnet
    stats = calibrate_cached(graph, xtr[:512], progress=False)
    net = build_qnet(graph, stats, QuantConfig(bits=bits), calib_images=xtr[:512])
    acc = 100 * np.mean(golden.predict_int(net, xte).argmax(1) == yte)
    assert acc >= floor
