"""APoT levels (the authors' term sets), projection, integer forms and the Keras quantizer."""

import numpy as np
import pytest

from flow.errors import AdderFlowError
from flow.quant import apot


@pytest.mark.parametrize("B,count", [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 64)])
def test_level_counts(B, count):
    v = apot.apot_values(B)
    assert len(v) == count and v[0] == 0 and v[-1] == 1
    assert np.all(np.diff(v) > 0)


def test_level_values_match_authors():
    assert list(apot.apot_values(2)) == [0, 0.25, 0.5, 1.0]
    # B=4: {0, 1/2, 1/8, 1/32} + {0, 1/4, 1/16, 1/64}, normalised by 3/4
    a, b = [0, 1 / 2, 1 / 8, 1 / 32], [0, 1 / 4, 1 / 16, 1 / 64]
    expect = sorted({x + y for x in a for y in b})
    assert np.allclose(apot.apot_values(4), np.asarray(expect) / max(expect))


@pytest.mark.parametrize("B,terms", [(2, 1), (3, 2), (4, 2), (5, 3), (6, 3)])
def test_integer_levels_are_few_powers_of_two(B, terms):
    ints, d = apot.apot_sums(B)
    assert ints[0] == 0 and all(bin(int(v)).count("1") <= terms for v in ints)


def test_bad_bits():
    with pytest.raises(AdderFlowError):
        apot.apot_values(7)


def test_quantize_weights_nearest_level_and_clip():
    w = np.linspace(-3, 3, 101)
    q = apot.quantize_weights(w, 4, alpha=2.0)
    levels = np.concatenate([-apot.apot_values(3)[::-1], apot.apot_values(3)]) * 2.0
    assert np.all(np.isin(np.round(q, 12), np.round(levels, 12)))
    assert q.max() == 2.0 and q.min() == -2.0
    inside = np.abs(w) <= 2
    dist = np.abs(w[inside, None] - levels[None]).min(axis=1)
    assert np.allclose(np.abs(q[inside] - w[inside]), dist)


def test_quantize_activations_unsigned():
    q = apot.quantize_activations(np.array([-1.0, 0.3, 5.0]), 3, alpha=4.0)
    assert q[0] == 0 and q[2] == 4.0 and q[1] >= 0


def test_integer_weights_per_channel():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (3, 3, 4, 6)) * np.arange(1, 7)
    q, step = apot.integer_weights(w, 5)
    assert q.shape == w.shape and step.shape == (6,)
    assert np.mean((q * step - w) ** 2) < np.mean(w ** 2) * 0.05
    ints, _ = apot.apot_sums(4)
    assert np.all(np.isin(np.abs(q), ints))


def test_pow2_terms():
    for v in (1, 7, 1000, -37, 12345):
        t = apot.pow2_terms(v, 8)
        assert sum(s * (1 << e) for s, e in t) == v
    assert apot.round_to_pow2_terms(np.array([1000]), 2)[0] == 1008
    assert apot.count_pow2_terms(7) == 2 and apot.count_pow2_terms(0) == 0


def test_keras_quantizer_values_gradient_and_config():
    tf = pytest.importorskip("tensorflow")
    Q = apot.APoTQuantizer
    q = Q(bits=4, alpha=2.0, learnable_alpha=True)
    x = tf.constant(np.linspace(-3, 3, 41), tf.float32)
    with tf.GradientTape() as tape:
        y = q(x)
        loss = tf.reduce_sum(y)
    levels = np.concatenate([-apot.apot_values(3)[::-1], apot.apot_values(3)]) * 2.0
    assert np.abs(y.numpy().reshape(-1, 1) - levels[None]).min(axis=1).max() < 1e-5
    g = tape.gradient(loss, q.alpha)
    # RCF: d/dalpha = sum over clipped of sign(x) + sum inside of (P(x/a) - x/a)
    xv = x.numpy()
    d = xv / 2.0
    inside = np.abs(d) <= 1
    expect = np.sign(xv[~inside]).sum() + (apot.project(d[inside], apot.apot_values(3)) - d[inside]).sum()
    assert abs(float(g) - expect) < 1e-3
    q2 = Q.from_config(q.get_config())
    assert q2.bits == 4 and q2.max() == pytest.approx(2.0) and q2.min() == pytest.approx(-2.0)


def test_keras_quantizer_in_qkeras_layer():
    pytest.importorskip("qkeras")
    import tensorflow as tf
    from qkeras import QConv2D

    q = apot.APoTQuantizer(bits=5, alpha=1.0, use_weight_normalization=True)
    layer = QConv2D(4, 3, kernel_quantizer=q, use_bias=False)
    y = layer(tf.zeros((1, 6, 6, 2)))
    assert y.shape == (1, 4, 4, 4)
    kq = q(layer.kernel).numpy()
    levels = np.concatenate([-apot.apot_values(4)[::-1], apot.apot_values(4)])
    assert np.abs(kq.reshape(-1, 1) - levels[None]).min(axis=1).max() < 1e-5
