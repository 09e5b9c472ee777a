"""Quantizer behaviour on small synthetic adder networks (numpy only, fast)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow import golden
from flow.errors import AdderFlowError
from flow.qnet import load
from flow.quant import QuantConfig, build_qnet
from flow.quant.calibrate import calibrate, mse_optimal_clamp, quantile_ranges
from flow.quant.graph import GraphBuilder, predict, run
from flow.quant.grouping import group_kernels
from flow.quant.redistribution import quantize_adder, requant_integers


def small_net(seed=0, cin=3, c=8, hw=8, weight_scale=1.0):
    """conv -> BN/ReLU -> adder -> BN/ReLU -> adder -> BN + identity residual, ReLU -> pool -> dense -> BN."""
    rng = np.random.default_rng(seed)
    gb = GraphBuilder("tiny", (hw, hw, cin), {"mean": [0.5] * cin, "std": [0.25] * cin})

    def bn(e, ch, scale=1.0):
        return gb.batchnorm(e, rng.uniform(0.5, 1.5, ch), rng.normal(0, 0.3, ch),
                            rng.normal(0, 1, ch) * scale, rng.uniform(0.5, 2, ch) * scale ** 2)

    h = gb.layer("conv2d", "conv1", "input", rng.normal(0, 0.3, (3, 3, cin, c)), 1, (1, 1, 1, 1))
    h = gb.requant("bn1", bn(gb.expr(h), c), relu=True, out="stem_out")
    w1 = rng.normal(0, weight_scale, (3, 3, c, c))
    y = gb.layer("adder2d", "b_conv1", h, w1, 1, (1, 1, 1, 1))
    # adder outputs are large negative sums: pick BN statistics from a float run below
    y = gb.requant("b_bn1", bn(gb.expr(y), c), relu=True, out="b_conv1_out")
    y = gb.layer("adder2d", "b_conv2", y, rng.normal(0, weight_scale, (3, 3, c, c)), 1, (1, 1, 1, 1))
    h = gb.requant("b_add", gb.add(bn(gb.expr(y), c), gb.expr(h)), relu=True, out="b_out")
    p = gb.pool("avgpool", h)
    f = gb.layer("dense", "fc", p, rng.normal(0, 0.5, (c, 5)))
    gb.requant("bn2", bn(gb.scale_expr(gb.expr(f), 1.0 / (hw * hw)), 5), relu=False, out="logits")
    g = gb.finish("logits")
    images = rng.integers(0, 256, (96, hw, hw, cin), dtype=np.uint8)
    from flow.quant.graph import recalibrate_bn

    recalibrate_bn(g, images)
    return g, images


@pytest.fixture(scope="module")
def tiny():
    g, images = small_net()
    return g, images, calibrate(g, images[:64], progress=False)


@pytest.mark.parametrize("method", ["redistribution+", "redistribution", "qssf"])
def test_qnet_validates_and_saves(tiny, tmp_path, method):
    g, images, stats = tiny
    net = build_qnet(g, stats, QuantConfig(bits=6, method=method, groups=2), calib_images=images[:64])
    net.validate()
    kinds = [o.kind for o in net.ops]
    assert kinds == ["conv2d", "requant", "adder2d", "requant", "adder2d", "requant", "global_sum_pool", "dense", "requant"]
    assert net.tensors["input"].bits == 8 and net.tensors["input"].signed
    assert net.output == "logits" and net.output_spec.signed
    net.save(tmp_path)
    again = load(tmp_path)
    xq = net.quantize_input(images[64:])
    assert np.array_equal(golden.run(net, xq)["logits"], golden.run(again, xq)["logits"])


def test_w8_tracks_float(tiny):
    g, images, stats = tiny
    net = build_qnet(g, stats, QuantConfig(bits=8, alpha=1.0), calib_images=images[:64])
    ref = predict(g, images[64:])
    got = golden.predict(net, images[64:])
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < 0.05
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9


def test_lower_bits_lower_fidelity(tiny):
    g, images, stats = tiny
    ref = predict(g, images[64:])
    errs = []
    for b in (8, 4, 2):
        net = build_qnet(g, stats, QuantConfig(bits=b, alpha=1.0, bias_correction=False), calib_images=images[:64])
        errs.append(np.mean((golden.predict(net, images[64:]) - ref) ** 2))
    assert errs[0] < errs[1] < errs[2]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 255), st.floats(-50, 50), st.floats(0.1, 5))
def test_one_sided_clamp_identity(aq, w, A):
    """quantize_adder's one-sided range clamp (redistribution+): for x on the activation grid of [0, A],
    |x - w| = lsb * |aq - wq| + offset with wq the clamped weight, exact up to rounding the clamped weight
    (half a step), for weights far outside [0, A] too (the offset carries max(-w, 0) + max(w - A, 0))."""
    bits = 8
    q = quantize_adder(np.full((1, 1, 1, 1), w), A, bits, QuantConfig(bits=bits, method="redistribution+",
                                                                         groups=1), "t")
    step = A / ((1 << bits) - 1)
    x = aq * step
    wq = int(q["weight"].reshape(-1)[0])
    got = q["lsb"][0] * abs(aq - wq) + q["offset"][0]
    assert 0 <= wq <= (1 << bits) - 1 and q["lsb"][0] == pytest.approx(step)
    assert abs(got - abs(x - w)) <= step / 2 + 1e-9 * max(1.0, abs(w))


@pytest.mark.parametrize("method", ["redistribution+", "redistribution"])
def test_adder_integer_identity(method):
    """lsb * SAD + offset equals sum |x - w| on the activation grid up to the weight rounding."""
    rng = np.random.default_rng(3)
    bits, A = 5, 2.0
    w = rng.normal(0, 3, (1, 1, 40, 6))
    q = quantize_adder(w, A, bits, QuantConfig(bits=bits, method=method, groups=1), "t")
    L = (1 << bits) - 1
    aq = rng.integers(0, L + 1, 40)
    x = aq * A / L
    real = np.abs(x[:, None] - w[0, 0]).sum(axis=0)
    sad = np.abs(aq[:, None] - q["weight"][0, 0]).sum(axis=0)
    approx = q["lsb"] * sad + q["offset"]
    # weight rounding: at most half a weight step per term
    wstep = A / L if method == "redistribution+" else 2 * A / L
    assert np.all(np.abs(approx - real) <= 40 * wstep / 2 + 1e-9)
    if method == "redistribution+":
        assert q["weight"].min() >= 0 and q["weight"].max() <= L


def test_paper_group_scales_follow_weights():
    rng = np.random.default_rng(1)
    w = np.concatenate([rng.normal(0, 0.1, (3, 3, 4, 4)), rng.normal(0, 20, (3, 3, 4, 4))], axis=-1)
    q = quantize_adder(w, 2.0, 4, QuantConfig(bits=4, method="redistribution", groups=2), "t")
    assert sorted(np.bincount(q["group_of_channel"])) == [4, 4]
    small, large = q["group_scale"]
    assert small < 2.0 and large == 2.0          # s_g = max|w_g| below A, else A
    assert np.all(q["offset"][q["group_of_channel"] == 0] == 0)
    assert np.all(q["offset"][q["group_of_channel"] == 1] > 0)


def test_grouping_deterministic_and_bounded():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (3, 3, 2, 16)) * rng.uniform(0.1, 10, 16)
    a, b = group_kernels(w, 4), group_kernels(w, 4)
    assert np.array_equal(a, b) and set(a) == {0, 1, 2, 3}
    m = np.abs(w.reshape(-1, 16)).max(axis=0)
    # group ids ordered by max|w|
    assert all(m[a == g].max() <= m[a == g + 1].min() for g in range(3))
    with pytest.raises(AdderFlowError, match="exceeds its 16 output channels"):
        group_kernels(w, 17, "layerX")


def test_requant_integers_match_float():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (2, 7))
    b = rng.normal(0, 1, 7)
    lsb = [rng.uniform(0.01, 0.1, 7), np.full(7, 0.05)]
    off = [rng.uniform(0, 5, 7), np.zeros(7)]
    mult, bias, sh, _ = requant_integers(a, b, lsb, off, 0.02)
    assert np.abs(mult).max() < 2 ** 23
    q = [rng.integers(0, 300, (50, 7)), rng.integers(0, 15, (50, 7))]
    out = golden.requantize(q, mult, bias, sh, -(1 << 15), (1 << 15) - 1)
    real = sum(a[k] * (lsb[k] * q[k] + off[k]) for k in range(2)) + b
    assert np.all(np.abs(out * 0.02 - real) <= 0.02 * 0.51 + 1e-9)


def test_apot_requant_terms(tiny):
    from flow.quant.apot import count_pow2_terms

    g, images, stats = tiny
    net = build_qnet(g, stats, QuantConfig(bits=8, apot_requant=3, apot_first=True, bits_first=6,
                                           apot_last=True, bits_last=6), calib_images=images[:64])
    for o in net.ops:
        if o.kind == "requant":
            assert o.attrs["apot_terms"] == 3
            assert max(count_pow2_terms(int(m)) for m in o.arrays["mult"].ravel()) <= 3
        if o.kind in ("conv2d", "dense"):
            assert max(count_pow2_terms(int(v)) for v in o.arrays["weight"].ravel()) <= 3
    ref = predict(g, images[64:])
    assert np.mean(golden.predict(net, images[64:]).argmax(1) == ref.argmax(1)) >= 0.8


def test_bias_correction_and_bn_reestimation_change_biases(tiny):
    g, images, stats = tiny
    base = build_qnet(g, stats, QuantConfig(bits=3, bias_correction=False), calib_images=images[:64])
    bc = build_qnet(g, stats, QuantConfig(bits=3, bias_correction=True), calib_images=images[:64])
    bn = build_qnet(g, stats, QuantConfig(bits=3, bias_correction=False, bn_reestimation=True), calib_images=images[:64])
    assert any(not np.array_equal(base.op(n).arrays["bias"], bc.op(n).arrays["bias"]) for n in ("b_bn1", "b_add"))
    assert "bias_correction" in bc.op("b_bn1").attrs
    assert not np.array_equal(base.op("b_bn1").arrays["mult"], bn.op("b_bn1").arrays["mult"])
    # bias correction makes the per-channel mean of the first adder's pre-activation match the float one
    env = golden.run(bc, bc.quantize_input(images[:64]), keep_all=True)
    o = bc.op("b_bn1")
    v = env["b_conv1_acc"] * o.arrays["mult"][0] + o.arrays["bias"]
    got = v.reshape(-1, v.shape[-1]).mean(axis=0) / 2 ** o.attrs["shift"] * bc.tensors["b_conv1_out"].scale
    assert np.allclose(got, stats.pre_mean["b_bn1"], atol=bc.tensors["b_conv1_out"].scale * 0.02)


def test_calibration_quantiles():
    x = np.arange(1001, dtype=np.float32)
    assert list(quantile_ranges(x, [1.0, 0.999, 0.5])) == [1000.0, 999.0, 500.0]
    s = np.random.default_rng(0).normal(0, 1, 50000).clip(0)
    A4, A8 = mse_optimal_clamp(s, 4), mse_optimal_clamp(s, 8)
    assert 0 < A4 < A8 <= s.max()


def test_config_errors(tiny):
    g, images, stats = tiny
    for bad, msg in ((dict(bits=9), "bits must be an integer in 2..8"), (dict(bits=1), "2..8"),
                     (dict(alpha=0.0), r"alpha must lie in \(0, 1\]"), (dict(alpha=1.5), "alpha"),
                     (dict(groups=9), "groups=9 exceeds its 8 output channels"),
                     (dict(method="magic"), "unknown method")):
        with pytest.raises(AdderFlowError, match=msg):
            build_qnet(g, stats, QuantConfig(**bad), calib_images=images[:64])


def test_float_graph_run_observes_every_op(tiny):
    g, images, _ = tiny
    seen = []
    run(g, g.normalize(images[:4]), lambda op, ins, out: seen.append(op.name))
    assert seen == [o.name for o in g.ops]


def test_group_scales_help_when_kernels_lie_below_the_activation_range():
    """Half the kernels of each adder layer get max|w| = 1.5, half 6; without the outlier clamp
    (alpha = 1, A ~ 5) one shared scale wastes the small kernels' grid, two groups give them s_g = 1.5."""
    from flow.quant.graph import recalibrate_bn

    g, images = small_net(seed=0, c=8)
    for o in g.ops:
        if o.kind == "adder2d":
            w = o.arrays["weight"]
            m = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
            o.arrays["weight"] = w / m * np.where(np.arange(w.shape[-1]) % 2 == 0, 1.5, 6.0)
    recalibrate_bn(g, images)
    stats = calibrate(g, images[:64], progress=False)
    ref = predict(g, images[64:])
    err = {}
    for groups in (1, 2):
        net = build_qnet(g, stats, QuantConfig(bits=4, method="redistribution", groups=groups, alpha=1.0,
                                               bias_correction=False), calib_images=images[:64])
        scales = net.op("b_conv1").attrs["group_scales"]
        assert len(scales) == groups and (groups == 1 or scales[0] == pytest.approx(1.5))
        err[groups] = np.mean((golden.predict(net, images[64:]) - ref) ** 2)
    assert err[2] < 0.6 * err[1]
