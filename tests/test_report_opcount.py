"""Operation counts of ResNet-20 as the AdderNet papers count them, and the zero-DSP view."""

import numpy as np
import pytest

from flow.quant.apot import count_pow2_terms
from flow.report.energy import add_pj, energy_per_image, mul_pj
from flow.report.opcount import count_ops, csd_nonzero_digits, explain_resnet20_difference


def test_csd_digits_match_quantizer_count():
    vals = np.arange(-300, 301)
    assert csd_nonzero_digits(vals).tolist() == [count_pow2_terms(int(v)) for v in vals]


def test_resnet20_conv_adder_terms(adder_net, cnn_net):
    for net in (adder_net, cnn_net):
        c = count_ops(net)
        assert c["conv_adder_terms"] == 40_812_544          # "40.81M MAC"
        assert len([o for o in net.ops if o.kind in ("conv2d", "adder2d")]) == 21   # conv1 + 18 + 2 downsample


def test_adder_paper_counts(adder_net):
    t = count_ops(adder_net)["total"]["paper"]
    assert t["mul"] == 442_368 + 640                         # conv1 + fc multiply; published 0.45M
    assert t["add"] == 2 * (40_812_544 - 442_368) + 442_368 + 640
    assert abs(t["add"] - 81.89e6) / 81.89e6 < 0.01         # published AdderNet adds within 1%


def test_cnn_paper_counts(cnn_net):
    t = count_ops(cnn_net)["total"]["paper"]
    assert t["mul"] == t["add"] == 40_812_544 + 640
    assert abs(t["mul"] - 41.17e6) / 41.17e6 < 0.01
    lines = explain_resnet20_difference(count_ops(cnn_net), adder=False)
    assert any("0.36M" in line for line in lines)


def test_zero_dsp_view_has_no_multiplications(adder_net, cnn_net):
    c = count_ops(adder_net)
    assert c["total"]["hardware"]["mul"] > 0
    assert c["total"]["zero_dsp"]["mul"] == 0
    assert c["total"]["zero_dsp"]["add"] > c["total"]["hardware"]["add"]
    # the CNN twin without APoT keeps its multiplications
    assert count_ops(cnn_net)["total"]["zero_dsp"]["mul"] == count_ops(cnn_net)["total"]["hardware"]["mul"]


def test_energy_is_labelled_and_ordered(adder_net, cnn_net):
    assert mul_pj(8) == pytest.approx(0.2) and add_pj(8) == pytest.approx(0.03) and add_pj(32) == pytest.approx(0.1)
    ea, ec = energy_per_image(adder_net), energy_per_image(cnn_net)
    assert "ASIC-energy estimate" in ea["label"]
    assert ea["total_uj_at_32bit"] < ec["total_uj_at_32bit"]       # adds are cheaper than 32-bit multiplies
    assert ea["total_uj"] > 0 and ec["total_uj"] > 0
