"""The integer contract (flow.qnet) and the golden model against a naive pure-Python reading of it."""

import itertools

import numpy as np
import pytest

from flow import golden
from flow.qnet import Op, QNet, QNetError, TensorSpec, bits_for, load


def _tiny_net(rng, bits=4, stride=2, pads=(1, 1, 1, 1)):
    hi = (1 << bits) - 1
    ho, wo = (6 + pads[0] + pads[1] - 3) // stride + 1, (6 + pads[2] + pads[3] - 3) // stride + 1
    t = {
        "input": TensorSpec("input", (6, 6, 2), 8, True, 0.05),
        "c1": TensorSpec("c1", (6, 6, 3), 20, True, kind="acc"),
        "a1": TensorSpec("a1", (6, 6, 3), bits, False, 0.1),
        "s2": TensorSpec("s2", (ho, wo, 4), 16, False, kind="acc"),
        "a2": TensorSpec("a2", (ho, wo, 4), bits, False, 0.1),
        "p": TensorSpec("p", (4,), 16, False, kind="acc"),
        "d": TensorSpec("d", (2,), 24, True, kind="acc"),
        "logits": TensorSpec("logits", (2,), 16, True, 0.01),
    }
    ops = [
        Op("conv2d", "conv1", ["input"], "c1", {"stride": 1, "pads": [1, 1, 1, 1]},
           {"weight": rng.integers(-127, 128, (3, 3, 2, 3))}),
        Op("requant", "rq1", ["c1"], "a1", {"shift": 12}, {"mult": rng.integers(1, 9, (1, 3)),
                                                         "bias": rng.integers(-2000, 9000, 3)}),
        Op("adder2d", "add1", ["a1"], "s2", {"stride": stride, "pads": list(pads)},
           {"weight": rng.integers(0, hi + 1, (3, 3, 3, 4)), "group_of_channel": np.array([0, 1, 1, 0]),
            "group_in_mult": np.array([0, 3]), "group_in_shift": np.array([0, 2])}),
        Op("requant", "rq2", ["s2", "s2"], "a2", {"shift": 6},
           {"mult": np.stack([-rng.integers(1, 40, 4), rng.integers(-5, 5, 4)]), "bias": rng.integers(0, 9000, 4)}),
        Op("global_sum_pool", "gap", ["a2"], "p"),
        Op("dense", "fc", ["p"], "d", {}, {"weight": rng.integers(-127, 128, (4, 2))}),
        Op("requant", "rq3", ["d"], "logits", {"shift": 3}, {"mult": rng.integers(1, 5, (1, 2)),
                                                           "bias": rng.integers(-50, 50, 2)}),
    ]
    return QNet(t, ops, input_quant={"mean": [0.5, 0.4], "std": [0.25, 0.2], "scale": 0.05})


def _naive(net, xq):
    """Straight from the qnet docstring, one value at a time (slow, obviously right)."""
    env = {net.input: xq.tolist()}
    for o in net.ops:
        spec = net.tensors[o.output]
        if o.kind in ("conv2d", "adder2d"):
            x = np.array(env[o.inputs[0]])
            if o.kind == "adder2d":
                hi = net.tensors[o.inputs[0]].hi
                vers = []
                for m, s in zip(o.arrays["group_in_mult"], o.arrays["group_in_shift"]):
                    vers.append(x if m == 0 else np.clip((x * int(m) + (1 << (int(s) - 1))) // (1 << int(s)), 0, hi))
            w = o.arrays["weight"]
            kh, kw, cin, cout = w.shape
            t, b, l, r = o.attrs["pads"]
            s = o.attrs["stride"]
            n, h, wd, _ = x.shape
            ho, wo = (h + t + b - kh) // s + 1, (wd + l + r - kw) // s + 1
            out = np.zeros((n, ho, wo, cout), dtype=object)
            for bi, i, j, c in itertools.product(range(n), range(ho), range(wo), range(cout)):
                src = vers[o.arrays["group_of_channel"][c]] if o.kind == "adder2d" else x
                acc = 0
                for u, v, ci in itertools.product(range(kh), range(kw), range(cin)):
                    yy, xx = i * s + u - t, j * s + v - l
                    val = int(src[bi, yy, xx, ci]) if (0 <= yy < h and 0 <= xx < wd) else 0
                    acc += abs(val - int(w[u, v, ci, c])) if o.kind == "adder2d" else val * int(w[u, v, ci, c])
                out[bi, i, j, c] = acc
        elif o.kind == "requant":
            ins = [np.array(env[t], dtype=object) for t in o.inputs]
            v = sum(ins[k] * o.arrays["mult"][k].astype(object) for k in range(len(ins))) + o.arrays["bias"].astype(object)
            sh = o.attrs["shift"]
            out = np.vectorize(lambda z: min(max((z + (1 << (sh - 1))) // (1 << sh), spec.lo), spec.hi))(v)
        elif o.kind == "global_sum_pool":
            out = np.array(env[o.inputs[0]], dtype=object).sum(axis=(1, 2))
        elif o.kind == "dense":
            out = np.array(env[o.inputs[0]], dtype=object).dot(o.arrays["weight"].astype(object))
        env[o.output] = out
    return env


@pytest.mark.parametrize("stride,pads", [(1, (1, 1, 1, 1)), (2, (1, 1, 1, 1)), (2, (0, 1, 0, 1)), (1, (0, 0, 0, 0))])
def test_golden_equals_naive_reading_of_the_contract(stride, pads):
    rng = np.random.default_rng(stride * 10 + sum(pads))
    net = _tiny_net(rng, stride=stride, pads=pads)
    net.validate()
    x = rng.integers(0, 256, (2, 6, 6, 2)).astype(np.uint8)
    xq = net.quantize_input(x)
    got = golden.run(net, xq, keep_all=True)
    want = _naive(net, xq)
    for name in want:
        np.testing.assert_array_equal(got[name], np.array(want[name]).astype(np.int64), err_msg=name)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    net = _tiny_net(rng, stride=2).validate()
    net.meta = {"model": "tiny", "bits": 4}
    net.save(tmp_path / "q")
    back = load(tmp_path / "q").validate()
    x = rng.integers(0, 256, (3, 6, 6, 2)).astype(np.uint8)
    np.testing.assert_array_equal(golden.predict_int(net, x), golden.predict_int(back, x))
    assert back.meta["model"] == "tiny" and back.tensors["a1"].bits == 4


def test_validate_catches_overflow_and_order():
    rng = np.random.default_rng(4)
    net = _tiny_net(rng, stride=2)
    net.tensors["s2"].bits = 4  # a 3x3x3 SAD of 4-bit values does not fit 4 bits
    with pytest.raises(QNetError, match="add1"):
        net.validate()
    net = _tiny_net(rng, stride=2)
    net.ops[0], net.ops[1] = net.ops[1], net.ops[0]
    with pytest.raises(QNetError, match="not produced before"):
        net.validate()
    net = _tiny_net(rng, stride=2)
    net.tensors["a2"].shape = (4, 4, 4)
    with pytest.raises(QNetError, match="rq2.*different shapes|shape"):
        net.validate()


def test_input_quantisation_rounds_half_up_and_saturates():
    spec = TensorSpec("input", (1, 1, 1), 8, True, 1.0)
    iq = {"mean": 0.0, "std": 1.0 / 255.0, "scale": 2.0}  # q = x / 2
    from flow.qnet import quantize_input
    x = np.array([0, 1, 3, 5, 255], np.uint8).reshape(5, 1, 1, 1)
    np.testing.assert_array_equal(quantize_input(x, iq, spec).ravel(), [0, 1, 2, 3, 127])
    with pytest.raises(QNetError, match="uint8"):
        quantize_input(x.astype(np.float32), iq, spec)


def test_bits_for():
    assert bits_for(0, 15) == (4, False)
    assert bits_for(-8, 7) == (4, True)
    assert bits_for(-9, 7) == (5, True)
    assert bits_for(0, 0) == (1, False)
