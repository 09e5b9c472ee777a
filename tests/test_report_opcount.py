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
    """Energy per image from the op counts with Horowitz's 45 nm figures: the totals are the per-layer sums
    and, priced at 32 bits, exactly mul * 3.1 pJ + add * 0.1 pJ of count_ops; on the paper's counts that is
    within 2% of the energy of the published ResNet-20 counts (AdderNet Table 1: CNN 41.17M Mul + 41.17M
    Add, AdderNet 0.45M Mul + 81.89M Add), and the adder network costs less than its CNN twin."""
    assert mul_pj(8) == pytest.approx(0.2) and add_pj(8) == pytest.approx(0.03) and add_pj(32) == pytest.approx(0.1)
    assert mul_pj(32) == pytest.approx(3.1, rel=0.035) and add_pj(20) == pytest.approx(0.065)   # 3.2 pJ: quadratic
    published = {id(adder_net): (0.45e6 * 3.1 + 81.89e6 * 0.1) / 1e6, id(cnn_net): 41.17e6 * (3.1 + 0.1) / 1e6}
    for net in (adder_net, cnn_net):
        counts = count_ops(net)["total"]
        for view in ("paper", "hardware", "zero_dsp"):
            e = energy_per_image(net, view)
            assert "ASIC-energy estimate" in e["label"] and e["view"] == view
            assert e["total_uj"] == pytest.approx(sum(L["pj"] for L in e["per_layer"]) / 1e6)
            c = counts[view]
            assert e["total_uj_at_32bit"] == pytest.approx((c["mul"] * 3.1 + c["add"] * 0.1) / 1e6)
            # at the network's own (4-bit weights, narrow accumulators) widths it is far below 32-bit pricing
            assert 0 < e["total_uj"] < e["total_uj_at_32bit"]
        assert energy_per_image(net, "paper")["total_uj_at_32bit"] == pytest.approx(published[id(net)], rel=0.02)
    ea, ec = energy_per_image(adder_net), energy_per_image(cnn_net)
    assert ea["total_uj_at_32bit"] < ec["total_uj_at_32bit"] / 10     # 32-bit multiplies dominate the CNN
    assert ea["total_uj"] < ec["total_uj"]