"""The Keras realisation of a QNet (flow.qlayers) equals the integer golden model on every tensor."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow import golden
from flow.hls.random_qnet import random_input, random_qnet, resnet20_shaped_qnet

tf = pytest.importorskip("tensorflow")
from flow import qlayers  # noqa: E402


def assert_all_intermediates_equal(net, x):
    want = golden.run(net, x, keep_all=True)
    model = qlayers.qnet_to_keras(net)
    got = qlayers.intermediate_model(model, net)(x.astype(np.float32))
    assert set(got) == {op.output for op in net.ops}
    for name, value in got.items():
        v = value.numpy()
        assert v.shape == want[name].shape, name
        bad = int(np.sum(v != want[name]))
        assert bad == 0, f"tensor {name}: {bad} of {v.size} values differ from the golden model"
    return model


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_random_qnets_bit_exact_every_tensor(seed):
    net = random_qnet(seed)
    assert_all_intermediates_equal(net, random_input(net, 3, seed))


@pytest.mark.parametrize("bits", [2, 8])
def test_extreme_bit_widths(bits):
    net = random_qnet(100 + bits, bits=bits, max_channels=8)
    assert_all_intermediates_equal(net, random_input(net, 2, bits))


def test_resnet20_shaped_bit_exact():
    net = resnet20_shaped_qnet(bits=4, seed=1)
    model = assert_all_intermediates_equal(net, random_input(net, 2, 1))
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"QIntConv2D", "QAdderConv2D", "QRequant", "QGlobalSumPool", "QIntDense"} <= kinds


def test_group_rescale_selects_versions_per_channel():
    """Channels of different groups see differently rescaled inputs (a real per-group effect)."""
    from flow.hls.random_qnet import QNetBuilder

    qb = QNetBuilder((3, 3, 1), input_bits=4, input_signed=False)
    w = np.zeros((1, 1, 1, 2), np.int64)
    qb.adder2d("add", "input", w, 1, (0, 0, 0, 0), [0, 1], [0, 1], [0, 1])  # group 1: x/2 rounded half up
    net = qb.build()
    x = np.arange(9).reshape(1, 3, 3, 1)
    y = qlayers.qnet_to_keras(net)(x.astype(np.float32)).numpy()
    np.testing.assert_array_equal(y[..., 0], x[..., 0])
    np.testing.assert_array_equal(y[..., 1], (x[..., 0] + 1) >> 1)
    np.testing.assert_array_equal(y, golden.run(net, x)[net.output])


def test_quantizer_is_qkeras_style_and_clips():
    from qkeras.quantizers import BaseQuantizer

    q = qlayers.IntQuantizer(4, signed=False)
    assert isinstance(q, BaseQuantizer)
    np.testing.assert_array_equal(q(tf.constant([-3.0, 2.4, 2.5, 99.0])).numpy(), [0, 2, 3, 15])
    assert (q.min(), q.max()) == (0, 15)
    assert qlayers.IntQuantizer.from_config(q.get_config()).get_config() == q.get_config()


def test_get_config_round_trip_and_save_load(tmp_path):
    net = random_qnet(7, max_channels=6)
    model = qlayers.qnet_to_keras(net)
    for layer in model.layers[1:]:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    x = random_input(net, 2, 7).astype(np.float32)
    path = tmp_path / "qnet.keras"
    model.save(path)
    loaded = qlayers.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    adder = next(layer for layer in loaded.layers if isinstance(layer, qlayers.QAdderConv2D))
    assert isinstance(adder.kernel_quantizer, qlayers.IntQuantizer)
    assert isinstance(adder.input_quantizer, qlayers.IntQuantizer)
