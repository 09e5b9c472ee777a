"""Quantization-aware training core (flow.qat, issue 13): quantizers on the QNet grids, the trainable
adder layer and its gradients, init from a PTQ solution and the exact export back to a QNet."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from flow import golden  # noqa: E402
from flow.errors import AdderFlowError  # noqa: E402
from flow.qat import custom_objects, export_qnet, golden_accuracy, init_model  # noqa: E402
from flow.qat.layers import QATActivation, QATAdderConv2D, QATInput  # noqa: E402
from flow.qat.quantizers import (ActQuantizer, AdderKernelQuantizer, ChannelKernelQuantizer,  # noqa: E402
                                 SignedQuantizer)
from flow.quant.redistribution import QuantConfig, quantize_adder, quantize_linear_weights  # noqa: E402


# ---- quantizers: the grids of the integer contract ----------------------------------------------

@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_act_quantizer_is_the_requant_grid(bits):
    rng = np.random.default_rng(bits)
    A = 1.7
    q = ActQuantizer(bits, A)
    L = (1 << bits) - 1
    x = rng.normal(0.5, 1.0, 5000).astype(np.float64)
    x[:3] = [-1.0, 5.0, A]                          # below 0, above alpha, the edge
    got = q(tf.constant(x)).numpy() / q.scale
    want = np.clip(np.floor(x / (A / L) + 0.5), 0, L)   # requant: (v + 2^(sh-1)) >> sh, clipped
    assert np.allclose(got, want, atol=1e-9)
    assert q.max() == A and q.min() == 0.0 and q.bits == bits and not q.keep_negative


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_adder_kernel_quantizer_equals_quantize_adder_and_the_clamp_is_exact(bits):
    rng = np.random.default_rng(10 + bits)
    A = 1.3
    w = rng.normal(0.4, 1.0, (3, 3, 4, 6))
    kq = AdderKernelQuantizer(bits, A)
    ref = quantize_adder(w, A, bits, QuantConfig(bits=bits).resolved(), "layer")
    assert np.array_equal(kq.integers(w), ref["weight"])
    assert np.allclose(kq.excess(w), ref["offset"]) and ref["offset"].min() > 0   # some weights are clipped
    assert np.allclose(ref["lsb"], kq.step)
    # the fake-quant value gives sum|x - w| = step * SAD(integers) + excess for every x on the grid
    L = (1 << bits) - 1
    xq = rng.integers(0, L + 1, (50, 36))
    wv = tf.constant(w, tf.float64)
    fake = kq(wv).numpy().reshape(36, 6)
    lhs = np.abs((xq * kq.step)[:, :, None] - fake[None]).sum(axis=1)
    rhs = kq.step * np.abs(xq[:, :, None] - kq.integers(w).reshape(36, 6)[None]).sum(axis=1) + kq.excess(w)
    assert np.allclose(lhs, rhs, rtol=0, atol=1e-9)


def test_channel_kernel_quantizer_equals_quantize_linear_weights():
    w = np.random.default_rng(3).normal(0, 0.3, (3, 3, 3, 16))
    w[..., 5] = 0.0                                  # an all-zero channel keeps step 1
    q = ChannelKernelQuantizer(8)
    wq, step = quantize_linear_weights(w, 8, False)
    got = q(tf.constant(w)).numpy()
    assert np.allclose(got, wq * step, atol=1e-12)


def test_signed_quantizer_grid_and_saturation():
    q = SignedQuantizer(8, 0.1)
    x = tf.constant([-20.0, -0.05, 0.049, 0.05, 12.69, 30.0], tf.float64)
    assert np.allclose(q(x).numpy() / 0.1, [-128, 0, 0, 1, 127, 127])


def test_quantizer_arguments_are_checked():
    with pytest.raises(AdderFlowError, match="bits"):
        ActQuantizer(1, 1.0)
    with pytest.raises(AdderFlowError, match="alpha"):
        AdderKernelQuantizer(4, -1.0)
    with pytest.raises(AdderFlowError, match="kernel grid"):
        QATAdderConv2D(4, 3, kernel_quantizer=AdderKernelQuantizer(4, 1.0), input_quantizer=ActQuantizer(4, 2.0))


# ---- the trainable adder layer: STE + AdderNet gradients -----------------------------------------

def _tiny_adder(bits=3, alpha=1.5, eta=0.2):
    return QATAdderConv2D(3, 3, padding=1, kernel_quantizer=AdderKernelQuantizer(bits, alpha),
                          input_quantizer=ActQuantizer(bits, alpha), kernel_initializer=tf.keras.initializers.RandomNormal(0.5, 1.0, seed=1),
                          eta=eta)


def test_ste_gradients_are_the_addernet_gradients_at_the_quantized_point():
    from flow.layers.adder import AdderConv2D

    rng = np.random.default_rng(0)
    layer = _tiny_adder()
    x = tf.constant(rng.uniform(-0.3, 1.8, (2, 5, 5, 2)).astype(np.float32))   # some outside [0, alpha]
    layer.build(x.shape)
    kq, iq = layer.get_quantizers()
    ref = AdderConv2D(3, 3, padding=1, eta=0.2)
    ref.build(x.shape)
    ref.set_weights([kq(layer.kernel).numpy()])
    up = tf.constant(rng.normal(size=(2, 5, 5, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as t:
        t.watch(x)
        xq = iq(x)
        y = tf.cast(layer(x, training=True), tf.float32)   # the layer writes float64 (exact inference)
        yr = ref(xq)
        loss, loss_r = tf.reduce_sum(y * up), tf.reduce_sum(yr * up)
    assert np.allclose(y.numpy(), yr.numpy(), atol=1e-5)
    gk, gkr = t.gradient(loss, layer.kernel), t.gradient(loss_r, ref.kernel)
    assert gk.shape == layer.kernel.shape
    assert np.allclose(gk.numpy(), gkr.numpy(), rtol=1e-4, atol=1e-5)          # full precision W grad, eta-scaled
    # per-layer adaptive eta: ||grad|| = eta * sqrt(numel)
    assert np.isclose(np.linalg.norm(gk.numpy()), 0.2 * np.sqrt(gk.numpy().size), rtol=1e-4)
    gx, gxr = t.gradient(loss, x).numpy(), t.gradient(loss_r, xq).numpy()
    inside = (x.numpy() > 0) & (x.numpy() < 1.5)
    assert np.allclose(gx[inside], gxr[inside], atol=1e-5)                      # HardTanh X grad through the STE
    assert np.all(gx[~inside] == 0)                                             # clipped inputs: no gradient
    assert np.any(gx[inside] != 0)


def test_layer_and_quantizer_configs_round_trip():
    layer = _tiny_adder(bits=4, alpha=2.5, eta=0.1)
    cfg = layer.get_config()
    again = QATAdderConv2D.from_config(cfg)
    assert again.get_config() == cfg
    assert again.get_quantizers() == layer.get_quantizers()
    for q in (ActQuantizer(3, 0.7), SignedQuantizer(16, 1e-3), AdderKernelQuantizer(2, 4.0), ChannelKernelQuantizer(6)):
        assert type(q).from_config(q.get_config()) == q
    act = QATActivation(ActQuantizer(2, 1.0), name="a")
    assert QATActivation.from_config(act.get_config()).quantizer == act.quantizer


# ---- a tiny adder net: the user's way (build, train, export) -------------------------------------

def tiny_net(bits=4, seed=0):
    from qkeras import QConv2D

    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers

    def bn(name):
        return L.BatchNormalization(momentum=0.0, name=name)   # first training call sets the statistics

    inp = tf.keras.Input((8, 8, 1), name="input")
    x = QATInput([0.5], [0.25], SignedQuantizer(8, 2.0 / 127), name="input_quant")(inp)
    x = L.ZeroPadding2D(1, name="conv1_pad")(x)
    x = QConv2D(8, 3, use_bias=False, kernel_quantizer=ChannelKernelQuantizer(8), name="conv1")(x)
    x = QATActivation(ActQuantizer(bits, 2.0), name="relu1")(bn("bn1")(x))
    x = QATAdderConv2D(8, 3, padding=1, kernel_quantizer=AdderKernelQuantizer(bits, 2.0),
                       input_quantizer=ActQuantizer(bits, 2.0),
                       kernel_initializer=tf.keras.initializers.RandomNormal(0.5, 1.0), name="adder1")(x)
    x = QATActivation(ActQuantizer(bits, 2.5), name="relu2")(bn("bn2")(x))
    x = L.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
    x = QConv2D(3, 1, use_bias=False, kernel_quantizer=ChannelKernelQuantizer(8), name="fc")(x)
    x = L.Flatten(name="flatten")(bn("bn3")(x))
    out = QATActivation(SignedQuantizer(16, 8.0 / 32767), name="logits")(x)
    return tf.keras.Model(inp, out, name="tiny_qat")


def tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64) + (x[:, :, :4].mean(axis=(1, 2, 3)) > 127)
    return x, y


def test_tiny_net_trains_weights_change_and_loss_goes_down():
    model = tiny_net()
    x, y = tiny_data()
    xf = x.astype(np.float32)
    model(xf, training=True)
    before = model.get_layer("adder1").kernel.numpy().copy()
    lossf = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = tf.keras.optimizers.Adam(0.02)
    losses = []
    for _ in range(12):
        with tf.GradientTape() as t:
            loss = lossf(y, model(xf, training=True))
        grads = t.gradient(loss, model.trainable_weights)
        assert all(g is not None for g in grads)
        opt.apply_gradients(zip(grads, model.trainable_weights))
        losses.append(float(loss))
    assert np.abs(model.get_layer("adder1").kernel.numpy() - before).max() > 1e-3
    assert np.mean(losses[-3:]) < losses[0] * 0.9, losses


def _compare_fake_and_golden(model, net, images, pairs):
    env = golden.run(net, net.quantize_input(images), keep_all=True)
    sub = tf.keras.Model(model.input, [model.get_layer(k).output for k, _ in pairs])
    outs = sub(images.astype(np.float32), training=False)
    report = {}
    for (k, t), o in zip(pairs, outs):
        f = o.numpy() / net.tensors[t].scale
        report[t] = (float(np.mean(np.round(f) != env[t])), float(np.abs(f - np.round(f)).max()))
    return env, report


def test_tiny_net_export_golden_equals_fake_quant():
    model = tiny_net()
    x, y = tiny_data(96)
    model(x[:64].astype(np.float32), training=True)          # BN statistics
    net = export_qnet(model)
    net.validate()
    assert [o.kind for o in net.ops] == ["conv2d", "requant", "adder2d", "requant", "global_sum_pool", "dense", "requant"]
    adder = net.op("adder1")
    kq = model.get_layer("adder1").kernel_quantizer
    assert np.array_equal(adder.arrays["weight"], kq.integers(model.get_layer("adder1").kernel.numpy()))
    assert net.tensors["relu1" if "relu1" in net.tensors else "bn1_out"].bits == 4
    assert np.isclose(net.tensors["bn2_out"].scale, 2.5 / 15)
    env, rep = _compare_fake_and_golden(model, net, x[64:], [("input_quant", net.input), ("relu1", "bn1_out"),
                                                             ("relu2", "bn2_out"), ("logits", "logits")])
    for t in (net.input, "bn1_out", "bn2_out"):
        frac, off_grid = rep[t]
        assert off_grid < 1e-3, t                     # the fake-quant values are integers on the tensor's grid
        assert frac == 0, (t, frac)                   # and they are the golden integers
    fake = model.predict(x[64:].astype(np.float32), verbose=0) / net.output_spec.scale
    gold = env["logits"]
    assert np.abs(fake - gold).max() <= 1e-6 * np.abs(gold).max() + 1e-3
    assert np.array_equal(fake.argmax(1), gold.argmax(1))
    # the training forward (batch statistics aside: BN uses its moving ones here) is the same function
    train = model(x[64:].astype(np.float32), training=False).numpy()
    assert np.array_equal(train, model.predict(x[64:].astype(np.float32), verbose=0))
    assert 0.0 <= golden_accuracy(net, x[64:], y[64:]) <= 1.0


def test_tiny_net_export_runs_the_integer_keras_model_and_the_hls_build_unchanged(tmp_path):
    from flow.hls.build import AdderBuild
    from flow.qat import integer_keras_model
    from flow.qlayers import intermediate_model, qnet_to_keras

    model = tiny_net()
    x, _ = tiny_data(64)
    model(x.astype(np.float32), training=True)
    net = export_qnet(model)
    xq = net.quantize_input(x[:6])
    want = golden.run(net, xq, keep_all=True)
    got = intermediate_model(qnet_to_keras(net), net)(xq.astype(np.float32))
    for t, v in got.items():
        assert np.array_equal(v.numpy(), want[t]), t
    assert np.array_equal(integer_keras_model(model)(xq.astype(np.float32)).numpy(), want[net.output])
    b = AdderBuild(net, tmp_path / "b", board="pynq-z2")
    b.choose_design(reuse=2)
    b.write()
    assert b.compile() > 0
    assert np.array_equal(b.predict(xq, workers=1), want[net.output].reshape(6, -1))   # g++ csim == golden


def test_tiny_net_saves_loads_and_prints_qstats(tmp_path, capsys):
    from flow.qat import print_qstats

    model = tiny_net()
    x, _ = tiny_data(16)
    model(x.astype(np.float32), training=True)
    p = tmp_path / "m.keras"
    model.save(p)
    again = tf.keras.models.load_model(p, custom_objects=custom_objects(), compile=False)
    a = model.predict(x.astype(np.float32), verbose=0)
    b = again.predict(x.astype(np.float32), verbose=0)
    assert np.array_equal(a, b)
    assert again.get_layer("adder1").get_quantizers() == model.get_layer("adder1").get_quantizers()
    print_qstats(model)
    out = capsys.readouterr().out
    assert "conv1" in out and "fc" in out
    assert isinstance(model.get_layer("conv1").kernel_quantizer_internal, ChannelKernelQuantizer)   # restored


def test_export_rejects_a_model_that_is_not_quantization_aware():
    from flow.models import build_model

    with pytest.raises(AdderFlowError, match="no QATInput layer"):
        export_qnet(build_model("adder_small"))


def test_export_rejects_a_kernel_grid_off_its_input_grid():
    model = tiny_net()
    layer = model.get_layer("adder1")
    layer.kernel_quantizer = AdderKernelQuantizer(4, 3.0)     # a grid of its own, not the 2.0 of relu1
    layer.input_quantizer = ActQuantizer(4, 3.0)
    with pytest.raises(AdderFlowError, match="adder1"):
        export_qnet(model)


# ---- ResNet-20: init from a PTQ QNet, export gives it back -----------------------------------------

def _assert_same_integers(a, b):
    assert [o.kind for o in a.ops] == [o.kind for o in b.ops]
    for oa, ob in zip(a.ops, b.ops):
        assert sorted(oa.arrays) == sorted(ob.arrays), oa.name
        for k in oa.arrays:
            assert np.array_equal(oa.arrays[k], ob.arrays[k]), f"{oa.name}/{k} differs from {ob.name}/{k}"
        assert oa.attrs.get("shift") == ob.attrs.get("shift"), oa.name
    for ta, tb in zip(a.tensors.values(), b.tensors.values()):
        assert (ta.bits, ta.signed) == (tb.bits, tb.signed)
        assert np.isclose(ta.scale, tb.scale, rtol=1e-12)


@pytest.fixture(scope="module")
def random_ptq():
    """PTQ (quantize defaults) of the seeded random ResNet-20 on random images: no checkpoint needed."""
    from flow.quant import quantize

    x = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    return quantize("resnet20", None, x, bits=3, cache=False), x


def test_resnet20_init_from_random_ptq_exports_the_same_integers(random_ptq, tmp_path):
    net, x = random_ptq
    net.save(tmp_path / "q")
    model = init_model(str(tmp_path / "q"), None)
    assert model.input_shape == (None, 32, 32, 3)
    _assert_same_integers(net, export_qnet(model))
    stem, c1 = net.op("bn1").output, net.op("layer1_0_bn1").output
    env, rep = _compare_fake_and_golden(model, net, x[:4], [("relu", stem), ("layer1_0_relu1", c1), ("logits", "logits")])
    assert rep[stem][0] == 0 and rep[c1][0] == 0 and rep["logits"][0] == 0   # inference forward = golden integers


def test_resnet20_init_with_calibration_images_gives_bn_the_input_statistics(random_ptq):
    """Training-mode BN normalises with batch statistics: with the calibration images the BNs get the
    statistics of their inputs, so the training-mode forward starts where the PTQ solution is."""
    net, x = random_ptq
    plain, calibrated = init_model(net, None), init_model(net, None, x)
    bn = calibrated.get_layer("layer1_0_bn1")
    assert np.all(bn.moving_mean.numpy() < 0)            # y = -sum|x - w|: its statistics, not 0 / 1
    xf = x[:8].astype(np.float32)
    ref = plain(xf, training=False).numpy()
    assert np.allclose(calibrated(xf, training=False).numpy(), ref, atol=1e-6 + 1e-5 * np.abs(ref).max())
    _assert_same_integers(net, export_qnet(calibrated))
    train = calibrated(xf, training=True).numpy()
    assert np.abs(train - ref).max() < np.abs(plain(xf, training=True).numpy() - ref).max()


def test_resnet20_per_layer_bits(random_ptq):
    net, x = random_ptq
    model = init_model(net, {"*": 3, "layer3_2_conv2": 2, "layer1_0_conv1": 4, "layer1_0_conv2": 4})
    assert model.get_layer("layer3_2_conv2").kernel_quantizer.bits == 2
    assert model.get_layer("layer3_2_relu1").quantizer.bits == 2
    out = export_qnet(model)
    assert out.tensors[out.op("layer3_2_conv2").inputs[0]].bits == 2
    assert out.op("layer3_2_conv2").arrays["weight"].max() <= 3
    assert out.tensors[out.op("layer1_0_conv1").inputs[0]].bits == 4
    assert out.tensors[out.op("layer2_0_conv1").inputs[0]].bits == 3
    with pytest.raises(AdderFlowError, match="same activation"):
        init_model(net, {"layer2_0_conv1": 3, "layer2_0_downsample_0": 4})
    with pytest.raises(AdderFlowError, match="unknown adder layer 'nope'"):
        init_model(net, {"nope": 3})
    with pytest.raises(AdderFlowError, match="2..8"):
        init_model(net, 9)


def test_init_model_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(AdderFlowError, match="no such checkpoint or QNet folder"):
        init_model(tmp_path / "missing.pth", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdderFlowError, match="cannot read the QNet"):
        init_model(tmp_path / "empty", 4)
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(AdderFlowError, match="calibration images"):
        init_model(tmp_path / "w.pth", 4)


@pytest.mark.slow
def test_resnet20_official_checkpoint_init_export_round_trip(resnet20_ckpt, cifar_train2k, cifar_test1k):
    from flow.quant import quantize

    calib = np.load(cifar_train2k)["x"][:512]
    te = np.load(cifar_test1k)
    net = quantize("resnet20", resnet20_ckpt, calib, bits=4)
    model = init_model(resnet20_ckpt, 4, calib)
    _assert_same_integers(net, export_qnet(model))
    # latent weights are the checkpoint's (outside [0, alpha] too), so training starts from its gradients
    assert model.get_layer("layer3_2_conv2").kernel.numpy().min() < 0
    x, y = te["x"][:200], te["y"][:200]
    fake = model.predict(x.astype(np.float32), batch_size=100, verbose=0)
    gold = golden.predict_int(net, x)
    # every activation is the golden integer; the int16 logits go through float32 at the end (<= 1 LSB)
    assert np.abs(np.round(fake / net.output_spec.scale) - gold).max() <= 1
    assert np.array_equal(fake.argmax(1), gold.argmax(1))
    assert np.mean(fake.argmax(1) == y) == golden_accuracy(net, x, y)


def _grads_on_one_batch(model, x_uint8, y):
    """{variable name: mean |dL/dv|} of one training call with BatchNorm on its moving statistics (the
    default `train --qat` step: flow.qat.train's bn_stats='frozen')."""
    from flow.qat.train import _bn_inference

    restore = _bn_inference(model)
    try:
        with tf.GradientTape() as tape:
            logits = model(tf.constant(x_uint8.astype(np.float32)), training=True)
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
        grads = tape.gradient(loss, model.trainable_weights)
    finally:
        restore()
    return {v.name: float(np.abs(g.numpy()).mean()) for v, g in zip(model.trainable_weights, grads)}


def test_resnet20_qnet_folder_init_trains_with_the_gradients_of_the_checkpoint_init(
        resnet20_ckpt, cifar_train2k, tmp_path):
    """The same PTQ solution, initialised from the checkpoint (latent kernels = the float ones) and from
    its QNet folder (only integers): the same forward, and the gradients must be the same size too.

    Grid-valued latent kernels put every weight the checkpoint has outside [0, alpha] on the edge of
    the range, where the AdderNet X gradient HardTanh(w - x) is no longer the saturated +-1 of the
    float network; measured on this batch, that made the X gradient ~1.5-2x larger per adder layer,
    ~150x at the network input, and conv1's kernel gradient ~1500x that of the checkpoint init (the
    'conv1 |g| 210 vs 1.3' of bench/results/qat_resnet20_notes.md)."""
    from flow.quant import quantize

    data = np.load(cifar_train2k)
    calib, x, y = data["x"][:512], data["x"][1000:1016], data["y"][1000:1016]
    net = quantize("resnet20", resnet20_ckpt, calib, bits=4)
    net.save(tmp_path / "q")
    from_qnet = init_model(str(tmp_path / "q"), 4, calib)
    _assert_same_integers(net, export_qnet(from_qnet))            # still exactly the PTQ solution
    ref = _grads_on_one_batch(init_model(resnet20_ckpt, 4, calib), x, y)
    got = _grads_on_one_batch(from_qnet, x, y)
    for name in ("conv1/kernel:0", "bn1/gamma:0", "layer1_0_bn1/beta:0", "layer2_0_bn2/gamma:0", "fc/kernel:0"):
        assert 0.5 < got[name] / ref[name] < 2.0, f"{name}: |g| {got[name]:.3g} vs {ref[name]:.3g} from the checkpoint"
