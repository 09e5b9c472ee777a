"""AdderConv2D: forward against a loop-by-loop numpy adder, gradients against hand computations."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import flow.layers.adder as adder_mod  # noqa: E402
from flow.errors import AdderFlowError  # noqa: E402
from flow.layers.adder import AdderConv2D, explicit_padding  # noqa: E402


def numpy_adder(x, w, stride, pads):
    """y[n,i,j,o] = -sum |x_pad[n, i*s+a, j*s+b, c] - w[a,b,c,o]| with explicit loops."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, _, co = w.shape
    sh, sw = stride
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, co))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            y[:, i, j, :] = -np.abs(patch[..., None] - w[None]).sum(axis=(1, 2, 3))
    return y


def numpy_adder_grads(x, w, g, stride, pads, rule):
    """(dL/dx, dL/dw) for upstream gradient g: 'addernet' (x-w, HardTanh(w-x)) or 'sign' (exact)."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    kh, kw, _, _ = w.shape
    sh, sw = stride
    for n in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                for o in range(g.shape[3]):
                    patch = xp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
                    d = patch - w[..., o]  # x - w
                    if rule == "addernet":
                        gw[..., o] += d * g[n, i, j, o]
                        gxp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, :] += np.clip(-d, -1, 1) * g[n, i, j, o]
                    else:
                        gw[..., o] += np.sign(d) * g[n, i, j, o]
                        gxp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, :] += -np.sign(d) * g[n, i, j, o]
    gx = gxp[:, pt:xp.shape[1] - pb, pl:xp.shape[2] - pr, :]
    return gx, gw


@pytest.fixture(params=["numba", "tf"])
def backend(request, monkeypatch):
    """Run a test with each adder backend (fused numba loops, pure TF blocks)."""
    monkeypatch.setenv(adder_mod.BACKEND_ENV, request.param)
    assert adder_mod.backend() == request.param
    return request.param


CASES = [
    # kernel, stride, padding
    (3, 1, 1),
    (3, 2, 1),  # PyTorch-style symmetric pad for a stride-2 3x3 (differs from TF 'same')
    (1, 2, "valid"),  # ResNet downsampling shortcut
    (3, 2, "same"),
    (3, 1, "valid"),
    ((3, 1), (1, 2), ((1, 0), (0, 2))),
]


@pytest.mark.parametrize("kernel,stride,padding", CASES)
def test_forward_matches_numpy(kernel, stride, padding, backend):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    layer = AdderConv2D(4, kernel, strides=stride, padding=padding)
    y = layer(x).numpy()
    pads = explicit_padding(layer.padding, (7, 6), layer.kernel_size, layer.strides)
    ref = numpy_adder(x, layer.kernel.numpy(), layer.strides, pads)
    assert y.shape == ref.shape == tuple(layer.compute_output_shape(x.shape).as_list())
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)


def test_same_and_explicit_padding_differ_for_stride_2():
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 2)).astype(np.float32)
    a = AdderConv2D(3, 3, strides=2, padding="same")
    b = AdderConv2D(3, 3, strides=2, padding=1)
    a.build(x.shape)
    b.build(x.shape)
    b.kernel.assign(a.kernel)
    assert a(x).shape == b(x).shape == (1, 4, 4, 3)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    assert explicit_padding("same", (8, 8), (3, 3), (2, 2)) == ((0, 1), (0, 1))


def test_zero_padding_contributes_abs_weight():
    x = np.zeros((1, 1, 1, 1), np.float32)
    layer = AdderConv2D(1, 3, padding=1)
    layer.build(x.shape)
    layer.kernel.assign(np.arange(-4, 5, dtype=np.float32).reshape(3, 3, 1, 1))
    assert layer(x).numpy().item() == pytest.approx(-20.0)  # -sum |0 - w|


def test_bias_is_added():
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 2)).astype(np.float32)
    layer = AdderConv2D(2, 1, use_bias=True, bias_initializer=tf.keras.initializers.Constant(1.5))
    y = layer(x).numpy()
    ref = numpy_adder(x, layer.kernel.numpy(), (1, 1), ((0, 0), (0, 0))) + 1.5
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_blocked_rows_match_single_block(monkeypatch):
    monkeypatch.setenv(adder_mod.BACKEND_ENV, "tf")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
    layer = AdderConv2D(5, 3, strides=1, padding=1)
    g = rng.normal(size=(3, 6, 6, 5)).astype(np.float32)

    def run():
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(y * g)
        gx, gw = tape.gradient(loss, [xt, layer.kernel])
        return y.numpy(), gx.numpy(), gw.numpy()

    full = run()
    monkeypatch.setattr(adder_mod, "BLOCK_ELEMENTS", 4 * 36 * 5 + 1)  # ~4 rows of 108 per block
    # dynamic batch: the graph path (map_fn over row blocks) is the one used inside Keras models
    graph = tf.function(lambda t: layer(t), input_signature=[tf.TensorSpec([None, 6, 6, 4])])
    np.testing.assert_allclose(graph(x).numpy(), full[0], rtol=1e-6)
    blocked = run()
    for a, b in zip(full, blocked):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _grads(layer, x, g):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt) * g)
    gx, gw = tape.gradient(loss, [xt, layer.kernel])
    return gx.numpy(), gw.numpy()


def test_addernet_gradient_by_hand_1x1(backend):
    """One pixel, one input and two output channels: every number can be checked by hand."""
    layer = AdderConv2D(2, 1, adder_gradient="addernet", eta=0.2)
    x = np.array([[[[0.5]]]], np.float32)
    layer.build(x.shape)
    layer.kernel.assign(np.array([[[[2.0, 0.25]]]], np.float32))  # w0 = 2.0, w1 = 0.25
    g = np.array([[[[1.0, -2.0]]]], np.float32)
    gx, gw = _grads(layer, x, g)
    # dL/dW before scaling: (x - w) * g = (0.5-2)*1 = -1.5 ; (0.5-0.25)*(-2) = -0.5
    raw = np.array([-1.5, -0.5])
    scaled = 0.2 * np.sqrt(2) / np.linalg.norm(raw) * raw
    np.testing.assert_allclose(gw.reshape(-1), scaled, rtol=1e-6)
    # dL/dX: HardTanh(w - x) * g = clip(1.5)*1 + clip(-0.25)*(-2) = 1 + 0.5
    assert gx.item() == pytest.approx(1.5)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, "valid")])
def test_addernet_gradient_matches_numpy(kernel, stride, padding, backend):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 5, 2)).astype(np.float32)
    layer = AdderConv2D(3, kernel, strides=stride, padding=padding, adder_gradient="addernet", eta=0.2)
    y = layer(x)
    g = rng.normal(size=y.shape).astype(np.float32)
    gx, gw = _grads(layer, x, g)
    pads = explicit_padding(layer.padding, (5, 5), layer.kernel_size, layer.strides)
    ref_gx, ref_gw = numpy_adder_grads(x, layer.kernel.numpy(), g, layer.strides, pads, "addernet")
    ref_gw = 0.2 * np.sqrt(ref_gw.size) / np.linalg.norm(ref_gw) * ref_gw
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, ref_gw, rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(gw) == pytest.approx(0.2 * np.sqrt(gw.size), rel=1e-5)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (1, 2, "valid")])
def test_sign_gradient_is_exact_gradient(kernel, stride, padding, backend):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 5, 5, 2)).astype(np.float32)
    layer = AdderConv2D(3, kernel, strides=stride, padding=padding, adder_gradient="sign")
    y = layer(x)
    g = rng.normal(size=y.shape).astype(np.float32)
    gx, gw = _grads(layer, x, g)
    pads = explicit_padding(layer.padding, (5, 5), layer.kernel_size, layer.strides)
    ref_gx, ref_gw = numpy_adder_grads(x, layer.kernel.numpy(), g, layer.strides, pads, "sign")
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, ref_gw, rtol=1e-4, atol=1e-5)
    # and equals TF's own autodiff of the plain formula
    xt = tf.constant(x)
    w = layer.kernel
    with tf.GradientTape() as tape:
        tape.watch(xt)
        patches = tf.image.extract_patches(tf.pad(xt, [[0, 0], *pads, [0, 0]]), [1, kernel, kernel, 1],
                                           [1, stride, stride, 1], [1, 1, 1, 1], "VALID")
        yy = -tf.reduce_sum(tf.abs(patches[..., None] - tf.reshape(w, [-1, 3])), axis=-2)
        loss = tf.reduce_sum(yy * g)
    auto_gx, auto_gw = tape.gradient(loss, [xt, w])
    np.testing.assert_allclose(gx, auto_gx.numpy(), atol=1e-5)
    np.testing.assert_allclose(gw, auto_gw.numpy(), atol=1e-5)


def test_backends_agree_inside_a_compiled_training_step(monkeypatch):
    """The same Keras model, traced under each backend, gives the same loss and gradients."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 6, 6, 3)).astype(np.float32)
    inp = tf.keras.Input((6, 6, 3))
    mid = AdderConv2D(4, 3, strides=2, padding=1, name="a")(inp)
    out = AdderConv2D(2, 1, adder_gradient="sign", name="b")(tf.keras.layers.ReLU()(mid))
    model = tf.keras.Model(inp, out)
    results = {}
    for name in ("numba", "tf"):
        monkeypatch.setenv(adder_mod.BACKEND_ENV, name)

        @tf.function
        def step(xb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(xb)))
            return loss, tape.gradient(loss, model.trainable_variables)

        results[name] = step(tf.constant(x))
    np.testing.assert_allclose(results["numba"][0].numpy(), results["tf"][0].numpy(), rtol=1e-5)
    for a, b in zip(results["numba"][1], results["tf"][1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv(adder_mod.BACKEND_ENV, "cuda")
    with pytest.raises(AdderFlowError, match="ADDERFLOW_ADDER_BACKEND=cuda"):
        adder_mod.backend()


def test_config_round_trip_and_model_save_load(tmp_path):
    layer = AdderConv2D(4, 3, strides=2, padding=((1, 1), (1, 1)), use_bias=True,
                        adder_gradient="sign", eta=0.1, name="adder")
    cfg = layer.get_config()
    clone = AdderConv2D.from_config(cfg)
    assert clone.get_config() == cfg
    assert cfg["padding"] == [[1, 1], [1, 1]] and cfg["adder_gradient"] == "sign" and cfg["eta"] == 0.1

    inp = tf.keras.Input((6, 6, 2))
    model = tf.keras.Model(inp, layer(inp))
    x = np.random.default_rng(7).normal(size=(2, 6, 6, 2)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path)  # registered as adderflow>AdderConv2D: no custom_objects
    assert isinstance(loaded.layers[-1], AdderConv2D)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(padding="full"), dict(padding=-1), dict(adder_gradient="magic"),
                                    dict(kernel_size=0)])
def test_bad_arguments_raise_clear_errors(kwargs):
    args = dict(filters=2, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(AdderFlowError):
        AdderConv2D(**args)
