"""The analytical estimate: schedule arithmetic, resource monotonicity, labelling, fitting."""

import math

import pytest

from flow.boards import get_board
from flow.report.calibration import PE_COST_CSV, PECost, bram18_for
from flow.report.estimate import Estimator, board_fit, estimate
from flow.report.fit import balanced_reuse, fit_reuse

PYNQ = get_board("pynq-z2")


def test_pe_table_is_committed_and_complete():
    assert PE_COST_CSV.is_file()
    for fam in ("xc7", "xcup"):
        pe = PECost(fam)
        for b in range(2, 9):
            assert pe.sad_lane(b, 16)["DSP"] == 0
            assert pe.mac_lane(b, b, 16, dsp=False)["LUT"] > pe.sad_lane(b, 16)["LUT"]   # multiplier > SAD


def test_bram_aspect_ratios():
    assert bram18_for(512, 36) == 1 and bram18_for(513, 36) == 2 and bram18_for(1024, 18) == 1
    assert bram18_for(64, 288) == 8 and bram18_for(0, 10) == 0


def test_window_layer_schedule(adder_net):
    est = Estimator(adder_net, PYNQ, 100, reuse=8)
    op = adder_net.op("s1b0_conv1")
    m = est.op_model(op)
    n = 3 * 3 * 16 * 16
    assert m["lanes"] == math.ceil(n / 8)
    assert m["pixels_in"] == 34 * 34 and m["pixels_out"] == 32 * 32
    # the flattened window loop: one step per padded position, RF steps per output, its depth once
    assert m["cycles_per_output"] == 8
    assert 34 * 34 + 32 * 32 * 8 < m["cycles"] <= 34 * 34 + 32 * 32 * 8 + 32
    assert m["mult_impl"] == "none (SAD)" and m["resources"]["DSP"] == 0


def test_more_reuse_fewer_lanes_more_cycles(adder_net):
    a = estimate(adder_net, PYNQ, 100, reuse=4)
    b = estimate(adder_net, PYNQ, 100, reuse=64)
    la = {L["name"]: L for L in a["per_layer"]}
    lb = {L["name"]: L for L in b["per_layer"]}
    assert lb["s3b1_conv1"]["lanes"] < la["s3b1_conv1"]["lanes"]
    assert lb["s3b1_conv1"]["cycles"] > la["s3b1_conv1"]["cycles"]
    assert b["resources"]["LUT"] < a["resources"]["LUT"]
    assert b["latency"]["interval_cycles"] > a["latency"]["interval_cycles"]


def test_interval_is_slowest_layer_and_labels(adder_net):
    e = estimate(adder_net, PYNQ, 100, reuse={"s1b0_conv1": 72})     # 72 divides 3*3*16: legal
    assert e["latency"]["interval_cycles"] == max(L["cycles"] for L in e["per_layer"])
    assert e["latency"]["bottleneck"] == "s1b0_conv1"
    assert e["latency"]["images_per_s"] == pytest.approx(100e6 / e["latency"]["interval_cycles"])
    assert e["latency"]["cycles"] >= e["latency"]["interval_cycles"]
    assert e["source"] == e["latency"]["source"] == e["resources"]["source"] == "estimate"
    assert "pe_table" in e["calibration"] and e["calibration"]["assumptions"]


def test_zero_dsp_adder_vs_cnn_dsp(adder_net, cnn_net):
    ea = estimate(adder_net, PYNQ, 100, reuse=32)
    ec = estimate(cnn_net, PYNQ, 100, reuse=32)
    assert ea["resources"]["DSP"] == 0                    # SAD + APoT requant + shift-add conv1/fc
    assert ec["resources"]["DSP"] > 0                     # 24-bit requant multipliers remain
    sad = sum(L["parts"]["lanes"]["LUT"] for L in ea["per_layer"] if L["kind"] == "adder2d")
    mac = sum(L["parts"]["lanes"]["LUT"] for L in ec["per_layer"] if L["kind"] == "conv2d" and L["name"] != "conv1")
    assert mac > 2 * sad                                  # 4-bit LUT multipliers cost > 2x the SAD lanes


def test_unknown_reuse_layer_is_an_error(adder_net):
    from flow.errors import AdderFlowError
    with pytest.raises(AdderFlowError, match="nosuchlayer"):
        estimate(adder_net, PYNQ, 100, reuse={"nosuchlayer": 4})


def test_board_fit_names_layers_to_retune(adder_net):
    e = estimate(adder_net, PYNQ, 100, reuse=1)          # fully parallel: far over the board
    fit = board_fit(e["resources"], PYNQ, e["per_layer"])
    assert not fit["fits"] and not fit["resources"]["LUT"]["fits"]
    assert fit["resources"]["LUT"]["available"] == 53_200
    assert fit["retune"][0]["layers"] and "raise the reuse factor" in fit["advice"]


def test_balanced_reuse_is_maximal(adder_net):
    """Every tunable layer gets the LARGEST legal reuse factor whose cycles fit the target: the next legal
    value up would be too slow. Fused requants follow their window layer (no entry of their own)."""
    from flow.hls import schedule

    target = 100e6 / 3000
    reuse, too_slow = balanced_reuse(adder_net, PYNQ, target, 100)
    assert not [t for t in too_slow if t["kind"] in ("conv2d", "adder2d", "dense")]
    est = Estimator(adder_net, PYNQ, 100, reuse)
    for name, rf in reuse.items():
        op = adder_net.op(name)
        assert est.op_model(op)["cycles"] <= target
        if op.kind == "requant":
            assert name not in est.fused_into
            continue
        legal = schedule.legal_reuse_factors(schedule.inputs_per_output(op))
        assert rf in legal
        bigger = [v for v in legal if v > rf]
        if bigger:
            est2 = Estimator(adder_net, PYNQ, 100, {**reuse, name: bigger[0]})
            assert est2.op_model(op)["cycles"] > target
    assert est.fused_into       # the stock-shaped net has conv -> requant pairs: fused


def test_fit_reports_binding_resource(adder_net):
    """Over capacity: the binding resource is the most over-used one, and the fastest rate that fits is
    given (and fits); within capacity there is no binding resource."""
    f = fit_reuse(adder_net, "kv260", 45_000, 100)       # LUT and FF of the K26 both over
    assert f["source"] == "estimate"
    assert f["latency"]["images_per_s"] >= 45_000 * 0.999 and f["meets_target"] and not f["rate_limited_by"]
    assert not f["fits"] and not f["board_fit"]["fits"]
    res = f["board_fit"]["resources"]
    over = {k: r["used"] / r["available"] for k, r in res.items() if not r["fits"]}
    assert len(over) >= 2 and f["binding"] == max(over, key=over.get)   # two candidates: the choice is tested
    best = f["max_fps_that_fits"]
    assert 0 < best["fps"] < 45_000
    assert all(best["resources"][k] <= r["available"] for k, r in res.items())
    big = fit_reuse(adder_net, "zcu104", 1000, 100, tune_requant=True, fuse_requant=True, fifo_depth="minimal")
    assert big["fits"] and big["binding"] is None


def test_unreachable_rate_names_the_stream(adder_net):
    f = fit_reuse(adder_net, "zcu104", 200_000, 100)
    assert not f["meets_target"] and f["binding"].startswith("stream rate")


def test_fixture_class_dsp_rule(shared):
    """The real Vivado HLS 2020.1 csynth report in ../shared/fixtures (hls4ml dense 16 -> 5 on
    ap_fixed<16,6>, RF=1, xc7z020 = pynq-z2's part): one DSP per product whose constant weight is not
    0 / +-2^k, so the estimate of that model class has the fixture's DSP (73 of 80 products; its weights are
    not in the fixture, so the 80 - 73 trivial ones are given) and its BRAM, on its clock."""
    import sys
    from pathlib import Path

    from flow.report.parse import parse_reports

    fx = shared / "fixtures" / "vivado_hls_2020.1_report"
    if not fx.is_dir():
        pytest.skip(f"{fx} is absent")
    real = parse_reports(fx)
    cs = real["csynth"]
    dense = next(r for r in cs["per_instance"] if r["module"].startswith("dense_"))
    # the model class the QNet below reproduces: 16 input streams of ap_fixed<16,6>, 5 outputs
    assert "ap_fixed_16_6_5_3_0_5u" in dense["module"] and real["part"].replace("-", "") == PYNQ.part.replace("-", "")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from estimator_vs_fixture import fixture_class_qnet
    finally:
        sys.path.pop(0)

    real_dsp = cs["resources"]["DSP"]
    trivial = 16 * 5 - real_dsp
    assert 0 < trivial < 16 * 5          # the fixture does drop some multipliers: the rule is exercised
    clock_mhz = 1e3 / cs["target_clock_ns"]
    e = estimate(fixture_class_qnet(trivial), PYNQ, clock_mhz, reuse=1, include_platform=False)
    assert e["resources"]["DSP"] == real_dsp == dense["DSP"]
    assert e["resources"]["BRAM_18K"] == cs["resources"]["BRAM_18K"]
    # and the rule itself: every non-trivial product is one DSP, whatever the trivial count
    for t in (0, 7, 20):
        assert estimate(fixture_class_qnet(t), PYNQ, clock_mhz, reuse=1, include_platform=False
                        )["resources"]["DSP"] == 80 - t


def test_reuse_dict_default_key(adder_net):
    e = estimate(adder_net, PYNQ, 100, reuse={"default": 16, "s1b0_conv1": 72})
    assert e["reuse"]["s1b0_conv1"] == 72 and e["reuse"]["s2b1_conv1"] == 16   # 16 divides 3*3*32


def test_illegal_reuse_is_an_error_naming_the_nearest_legal_values(adder_net):
    from flow.hls.schedule import ScheduleError
    with pytest.raises(ScheduleError, match=r"s1b0_conv1: reuse factor 64 is not legal.*nearest legal: 48 or 72"):
        estimate(adder_net, PYNQ, 100, reuse={"s1b0_conv1": 64})


def test_weights_to_bram_trades_lut_for_bram(adder_net):
    kw = dict(fifo_depth="minimal", tune_requant=True)   # as generated: LUT is over at 3,000 images/s
    base = fit_reuse(adder_net, "pynq-z2", 3000, 100, **kw)
    moved = fit_reuse(adder_net, "pynq-z2", 3000, 100, weights_to_bram=True, **kw)
    assert not base["board_fit"]["resources"]["LUT"]["fits"]
    assert moved["design"]["bram_weights"]
    assert moved["resources"]["LUT"] < base["resources"]["LUT"]
    assert moved["resources"]["BRAM_18K"] > base["resources"]["BRAM_18K"]
    assert moved["board_fit"]["resources"]["BRAM_18K"]["fits"]


def test_tight_fit_is_flagged():
    fit = board_fit({"LUT": 50_000, "FF": 10, "BRAM_18K": 0, "DSP": 0}, PYNQ)
    assert fit["fits"] and fit["tight"] == ["LUT"] and "timing" in fit["tight_note"]
