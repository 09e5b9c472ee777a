"""One definition of each fact: one bound propagation (QNet.infer_widths), one ResNet-20 topology."""

import numpy as np
import pytest

from flow.hls.random_qnet import random_qnet, resnet20_shaped_qnet
from flow.models import resnet20_blocks
from flow.qnet import QNetError, bits_for
from flow.report.example import resnet20_qnet


@pytest.mark.parametrize("net", [random_qnet(3), resnet20_shaped_qnet(4, seed=2), resnet20_qnet(4)],
                         ids=["random", "shaped", "example"])
def test_builders_size_every_accumulator_from_infer_widths(net):
    ranges = net.infer_widths()
    assert set(ranges) == set(net.tensors)
    for name, spec in net.tensors.items():
        r = ranges[name]
        assert spec.lo <= r.lo <= r.hi <= spec.hi
        if spec.kind == "acc":
            assert (spec.bits, spec.signed) == (r.bits, r.signed) == bits_for(r.lo, r.hi)


def test_validate_rejects_an_accumulator_one_bit_too_narrow():
    net = random_qnet(3)
    acc = next(t for t in net.tensors.values() if t.kind == "acc")
    acc.bits -= 1
    with pytest.raises(QNetError, match=f"does not fit {acc.bits}-bit .* tensor '{acc.name}'"):
        net.validate()


def test_resnet20_topology_is_the_one_in_models():
    blocks = resnet20_blocks()
    assert [(b.planes, b.stride, b.downsample) for b in blocks[::3]] == [(16, 1, False), (32, 2, True), (64, 2, True)]
    assert sum(b.downsample for b in blocks) == 2 and len(blocks) == 9
    shaped = resnet20_shaped_qnet(4, seed=0)
    downs = [o.name for o in shaped.ops if o.name.endswith("_downsample_0")]
    assert downs == [f"{b.name}_downsample_0" for b in blocks if b.downsample]


def test_state_dict_graph_follows_the_keras_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from flow.models import build_model
    from flow.quant.graph import from_resnet20_state_dict

    tf.keras.utils.set_random_seed(0)
    model = build_model("resnet20")
    sd = {}
    for layer in model.layers:   # the Keras weights as a PyTorch state dict (OIHW)
        for v in layer.weights:
            key = layer.name.replace("_", ".") + "." + {"kernel": "adder" if "conv" in layer.name and layer.name != "conv1"
                                                        else "weight", "gamma": "weight", "beta": "bias",
                                                        "moving_mean": "running_mean",
                                                        "moving_variance": "running_var"}[v.name.split("/")[-1].split(":")[0]]
            a = v.numpy()
            sd["module." + key] = np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a
    g = from_resnet20_state_dict(sd)
    convs = [o.name for o in g.ops if o.kind in ("conv2d", "adder2d", "dense")]
    keras_convs = [l.name for l in model.layers if l.weights and "bn" not in l.name and "downsample_1" not in l.name]
    assert [n.replace("_downsample", "_downsample_0") if n.endswith("_downsample") else n for n in convs] == keras_convs
