"""AdderVitis hls4ml backend: registration, generated project, legal reuse factors, shift-add tables,
stream depths, and C simulation (g++) bit-exact with the integer golden model.

The rules the generated C++ follows (hls_templates/README.md) have their own tests in test_hls_rules.py;
this file checks the project as a whole and the numbers flow.hls.schedule defines."""

import re
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow import golden
from flow.hls import schedule
from flow.hls.random_qnet import random_input, random_qnet, resnet20_shaped_qnet

hls4ml = pytest.importorskip("hls4ml")
from flow.hls import project  # noqa: E402


def test_backend_registered_through_entry_point():
    names = [ep.name for ep in entry_points().select(group="hls4ml.backends")]
    assert "AdderVitis" in names
    assert "addervitis" in hls4ml.backends.get_available_backends()
    from flow.hls.backend import AdderVitisBackend

    assert isinstance(hls4ml.backends.get_backend("AdderVitis"), AdderVitisBackend)


def write_project(tmp_path, net, **kw):
    hm = project.convert(net, tmp_path / "prj", **kw)
    hm.write()
    return hm, tmp_path / "prj"


def config_block(params: str, index: int) -> str:
    return re.search(rf"struct config{index} \{{.*?\n\}};", params, re.S).group(0)


def config_value(block: str, field: str) -> int:
    return int(re.search(rf"\b{field} = (-?\d+)", block).group(1))


def test_generated_project_structure(tmp_path):
    net = random_qnet(3)
    assert 9 in project.legal_reuse(net)["b0_adder1"]
    hm, d = write_project(tmp_path, net, reuse=4, reuse_config={"b0_adder1": 9})
    top = (d / "firmware" / "myproject.cpp").read_text()
    assert "void myproject(" in top and "hls::stream<input_t> &input_int" in top
    assert "#pragma HLS DATAFLOW" in top
    assert "nnet::adder_conv_2d_cl<" in top and "nnet::int_conv_2d_cl<" in top
    assert "nnet::adder_conv_2d_add_cl<" in top        # the residual requant fused into its window layer
    assert "nnet::requant_stream<" in top              # the logits requant after the dense layer is not fusable
    assert "nnet::adder_clone_stream<" in top and "nnet::clone_stream<" not in top  # block input feeds two
    assert (d / "firmware" / "nnet_utils" / "nnet_adder_stream.h").is_file()
    params = (d / "firmware" / "parameters.h").read_text()
    block = config_block(params, hm.graph["b0_adder1"].index)
    n_in = schedule.inputs_per_output(net.op("b0_adder1"))
    n_filt = net.op("b0_adder1").arrays["weight"].shape[-1]
    assert config_value(block, "reuse_factor") == 9 and config_value(block, "n_in") == n_in
    assert config_value(block, "lanes_per_filter") == n_in // 9
    assert config_value(block, "block_factor") == n_filt * (n_in // 9)
    # the model-wide reuse 4 is, per layer, the largest legal value <= 4
    for op in net.ops:
        if op.kind in project.TUNABLE and op.name != "b0_adder1":
            want = max(v for v in schedule.legal_reuse_factors(schedule.inputs_per_output(op)) if v <= 4)
            assert hm.graph[op.name].get_attr("reuse_factor") == want, op.name
    defines = (d / "firmware" / "defines.h").read_text()
    assert "ap_int<8>" in re.search(r"typedef [^;]* input_t;", defines).group(0)
    mults = project.layer_multipliers(hm)
    assert mults["b0_adder2"] > 0 or not net.op("b0_adder2").arrays["group_in_mult"].any()


def test_resolve_reuse_fits_the_default_and_checks_named_layers():
    net = random_qnet(3)
    rfs, adjusted = project.resolve_reuse(net, 5)
    for op in net.ops:
        if op.kind in project.TUNABLE:
            legal = schedule.legal_reuse_factors(schedule.inputs_per_output(op))
            assert rfs[op.name] == max(v for v in legal if v <= 5)
            assert (rfs[op.name] != 5) == any(a.startswith(f"{op.name}:") for a in adjusted)
        else:
            assert rfs[op.name] == 1
    with pytest.raises(schedule.ScheduleError, match=r"layer b0_adder1: reuse factor 5 .*nearest legal: 4 or 6"):
        project.resolve_reuse(net, 1, {"b0_adder1": 5})


def test_shift_add_removes_every_multiplier(tmp_path):
    """Read from the generated C++: const_mult multiplies (`x * value`) only where its term count T is 0, so
    in a shift-add build every config that multiplies must carry T > 0 for each constant it multiplies by:
    the first conv's weights, each fused or stand-alone requant, each adder layer with an active group
    rescale, the dense layer. The bookkeeping (layer_multipliers) must agree."""
    net = random_qnet(3)
    hm, d = write_project(tmp_path, net, shift_add=True)
    params = (d / "firmware" / "parameters.h").read_text()
    checked = 0
    for layer in hm.get_layers():
        if layer.class_name not in ("QIntConv2D", "QAdderConv2D", "QRequant", "QIntDense"):
            continue
        block = config_block(params, layer.index)
        if layer.class_name in ("QIntConv2D", "QIntDense"):
            assert config_value(block, "csd_terms") > 0, layer.name
        if layer.class_name == "QAdderConv2D" and np.any(layer.weights["group_mult"].data):
            assert config_value(block, "g_csd_terms") > 0, layer.name
        if layer.class_name == "QRequant" or "fused = true" in block:
            assert config_value(block, "rq_csd_terms") > 0, layer.name
        checked += 1
    assert checked >= 5
    assert sum(project.layer_multipliers(hm).values()) == 0


def test_csd_digits_are_exact():
    from flow.csd import csd_digits

    for v in list(range(-300, 300)) + [2**20 + 7, -(2**31) + 5]:
        assert sum(s * (1 << e) for e, s in csd_digits(v)) == v
    # term-major (T, N): row t holds term t of every constant; 0 has no term, 7 = 8 - 1, -5 = -4 - 1
    exps, signs, t = schedule.csd_tables([0, 7, -5])
    assert t == 2 and exps.shape == signs.shape == (2, 3)
    assert (signs[:, 0] == 0).all()
    for n, v in enumerate([0, 7, -5]):
        assert sum(int(s) * (1 << int(e)) for e, s in zip(exps[:, n], signs[:, n])) == v
    assert schedule.csd_terms([0, 7, -5]) == 2 and schedule.csd_terms([]) == 0


def csim_mismatches(tmp_path, net, x, **kw):
    hm, _ = write_project(tmp_path, net, **kw)
    project.compile_model(hm)
    y = project.csim_predict(hm, x)
    want = golden.run(net, x)[net.output]
    return int(np.sum(y != want.reshape(len(x), -1))), y


@pytest.mark.parametrize("seed,reuse,shift_add", [(3, 1, False), (4, 3, True), (5, 6, True), (6, 4, False)])
def test_csim_bit_exact_random_nets(tmp_path, seed, reuse, shift_add):
    """The model-wide reuse becomes per layer the largest legal RF <= reuse: RF > 1 schedules (lanes over
    reuse cycles, fused requants over rq_reuse cycles) are what csim runs."""
    net = random_qnet(seed, max_channels=12)
    x = random_input(net, 4, seed)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=reuse, shift_add=shift_add)
    assert bad == 0


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), reuse=st.sampled_from([1, 2, 5, 16]), shift_add=st.booleans(),
       fuse_requant=st.booleans())
def test_csim_bit_exact_hypothesis(tmp_path_factory, seed, reuse, shift_add, fuse_requant):
    net = random_qnet(seed)
    x = random_input(net, 3, seed)
    bad, _ = csim_mismatches(tmp_path_factory.mktemp("h"), net, x, reuse=reuse, shift_add=shift_add,
                             fuse_requant=fuse_requant)
    assert bad == 0


@pytest.mark.slow
@pytest.mark.ci_slice
def test_csim_bit_exact_resnet20_shaped_w4(tmp_path):
    net = resnet20_shaped_qnet(bits=4, seed=2)
    x = random_input(net, 2, 2)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=16)
    assert bad == 0


def _quantize_resnet20(ckpt, train, bits):
    quant = pytest.importorskip("flow.quant")
    if not hasattr(quant, "quantize"):
        pytest.skip("flow.quant.quantize is not available yet")
    calib = np.load(train)["x"][:256]
    return quant.quantize("resnet20", ckpt, calib, bits=bits)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("bits", [4, 8])
def test_csim_bit_exact_resnet20_checkpoint(tmp_path, resnet20_ckpt, cifar_train2k, cifar_test1k, bits):
    net = _quantize_resnet20(resnet20_ckpt, cifar_train2k, bits)
    images = np.load(cifar_test1k)["x"][: 8 if bits == 8 else 16]
    x = net.quantize_input(images)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=16)
    assert bad == 0


@pytest.mark.slow
@pytest.mark.ci_slice
@pytest.mark.shared
def test_csim_bit_exact_resnet20_checkpoint_w4_slice(tmp_path, resnet20_ckpt, cifar_train2k, cifar_test1k):
    net = _quantize_resnet20(resnet20_ckpt, cifar_train2k, 4)
    x = net.quantize_input(np.load(cifar_test1k)["x"][:3])
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=16)
    assert bad == 0


def test_tb_data_files(tmp_path):
    x = np.arange(12).reshape(2, 2, 3, 1) - 5
    y = np.array([[1, -2], [3, 4]])
    project.write_tb_data(tmp_path, x, y)
    lines = (Path(tmp_path) / "tb_data" / "tb_input_features.dat").read_text().splitlines()
    assert lines[0].split() == [str(v) for v in range(-5, 1)]
    assert (Path(tmp_path) / "tb_data" / "tb_output_predictions.dat").read_text() == "1 -2\n3 4\n"



def test_apot_terms_attr_selects_shift_add_per_layer(tmp_path):
    """An op's `apot_terms` makes that layer's constants shift-add, and only that layer's."""
    net = random_qnet(3)
    net.op("logits").attrs["apot_terms"] = 3
    net.op("fc").attrs["apot_terms"] = 3
    hm = project.convert(net, tmp_path / "prj")
    mults = project.layer_multipliers(hm)
    assert mults["logits"] == 0 and mults["fc"] == 0
    assert mults["conv1"] > 0 and int(hm.graph["conv1"].get_attr("csd_terms", 0) or 0) == 0


def test_apot_terms_of_a_fused_requant_reach_the_window_layer(tmp_path):
    net = random_qnet(3)
    assert "b0_adder1" in schedule.fusable_requants(net)
    net.op("b0_rq1").attrs["apot_terms"] = 3
    hm = project.convert(net, tmp_path / "prj")
    assert int(hm.graph["b0_adder1"].get_attr("rq_csd_terms", 0) or 0) > 0


def test_reuse_config_yaml(tmp_path):
    from flow.errors import AdderFlowError

    net = random_qnet(3)
    (tmp_path / "plain.yaml").write_text("b0_adder1: 12\nfc: 29\n")
    (tmp_path / "hls4ml.yaml").write_text("LayerName:\n  b0_adder1:\n    ReuseFactor: 12\n")
    (tmp_path / "float.yaml").write_text("b0_adder1: 1.5\n")
    assert project.load_reuse_config(tmp_path / "plain.yaml") == {"b0_adder1": 12, "fc": 29}
    assert project.load_reuse_config(tmp_path / "hls4ml.yaml") == {"b0_adder1": 12}
    with pytest.raises(AdderFlowError, match="integer reuse factor"):
        project.load_reuse_config(tmp_path / "float.yaml")
    with pytest.raises(AdderFlowError, match="does not exist"):
        project.load_reuse_config(tmp_path / "nope.yaml")
    cfg = project.hls_config(net, reuse=2, reuse_config=project.load_reuse_config(tmp_path / "plain.yaml"))
    assert cfg["LayerName"]["b0_adder1"]["ReuseFactor"] == 12 and cfg["LayerName"]["fc"]["ReuseFactor"] == 29
    assert cfg["LayerName"]["conv1"]["ReuseFactor"] == 1      # 2 does not divide conv1's 9 inputs per output
    with pytest.raises(AdderFlowError, match="unknown layers"):
        project.hls_config(net, reuse_config={"nope": 2})
    with pytest.raises(schedule.ScheduleError, match="layer fc: reuse factor 8 .*nearest legal: 1 or 29"):
        project.hls_config(net, reuse_config={"fc": 8})


def _stream_depths(top: str) -> dict:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", top)}


@pytest.fixture(scope="module")
def resnet20_shaped():
    return resnet20_shaped_qnet(bits=4, seed=2)


def test_stream_depths_minimal_with_residual_joins_sized_to_the_branch_lag(tmp_path, resnet20_shaped):
    """Depth 2 everywhere except the inputs of a residual join (a window layer with a fused residual
    requant): the skip holds what the two window layers of the other branch hold back, plus FIFO_SLACK;
    'hls4ml-default' keeps a whole tensor per stream."""
    from flow.hls.stream_depths import stream_depths

    net = resnet20_shaped
    hm, d = write_project(tmp_path, net, reuse=16)
    depths = _stream_depths((d / "firmware" / "myproject.cpp").read_text())
    assert depths == {k: v for k, v in stream_depths(hm).items() if k in depths}
    joins = [layer for layer in hm.get_layers() if len(layer.inputs) > 1 and layer.class_name != "Clone"]
    assert [j.name for j in joins] == [f"layer{s}_{b}_conv2" for s in (1, 2, 3) for b in range(3)]
    join_inputs = {j.get_input_variable(i).name for j in joins for i in j.inputs}
    for name, depth in depths.items():
        if name not in join_inputs:
            assert depth <= 2, name   # 1 for one-element streams (pooled vector)

    def skip(join):
        return depths[hm.graph[join].get_input_variable(hm.graph[join].inputs[1]).name]

    def main(join):
        return depths[hm.graph[join].get_input_variable(hm.graph[join].inputs[0]).name]

    # identity skip of a 32x32 block: two 3x3 pad-1 windows each hold one row + one pixel back
    assert skip("layer1_0_conv2") == 2 * (32 + 1) + schedule.FIFO_SLACK
    assert skip("layer2_1_conv2") == 2 * (16 + 1) + schedule.FIFO_SLACK
    assert skip("layer3_1_conv2") == 2 * (8 + 1) + schedule.FIFO_SLACK
    # the main branch is the slow one: only the slack
    assert main("layer1_0_conv2") == main("layer3_2_conv2") == schedule.FIFO_SLACK
    # a downsample block: the 1x1 stride-2 skip is ahead of the second 3x3 window by less than a row
    assert schedule.FIFO_SLACK < skip("layer2_0_conv2") < skip("layer2_1_conv2")
    _, d2 = write_project(tmp_path / "default", net, reuse=16, stream_depths="hls4ml-default")
    first_skip = hm.graph["layer1_0_conv2"].get_input_variable(hm.graph["layer1_0_conv2"].inputs[1]).name
    assert _stream_depths((d2 / "firmware" / "myproject.cpp").read_text())[first_skip] == 32 * 32


def test_estimator_prices_the_backend_fifos(resnet20_shaped):
    from flow.boards import get_board
    from flow.hls.stream_depths import stream_depths
    from flow.report.estimate import estimate

    net = resnet20_shaped
    hm = project.convert(net, "/nonexistent/never-written", reuse=16)
    backend = sorted(v for v in stream_depths(hm).values() if v > 2)
    est = estimate(net, get_board("pynq-z2"), 100, reuse=16)
    assert sorted(s["depth"] for s in est["streams"] if s["depth"] > 2) == backend


def test_requant_time_multiplexed_csim_bit_exact(tmp_path):
    """A fused requant runs C / R lanes over R = the largest divisor of C <= the window's RF cycles per
    pixel; a requant of its own (the logits) runs over the R its reuse config entry names, which must
    divide its channels. Same results as the golden model."""
    net = random_qnet(4, max_channels=12)
    n_cls = net.tensors[net.output].shape[-1]
    rq = {"logits": 5}
    assert n_cls % 5 == 0 and "logits" not in {o.name for o in schedule.fusable_requants(net).values()}
    x = random_input(net, 3, 4)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=6, reuse_config=rq)
    assert bad == 0
    hm = project.convert(net, tmp_path / "prj2", reuse=6, reuse_config=rq)
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    mults = project.layer_multipliers(hm)
    seen_r = set()
    for win, op in schedule.fusable_requants(net).items():
        block = config_block(params, hm.graph[win].index)
        c = net.tensors[op.output].shape[-1]
        r = schedule.requant_reuse(c, config_value(block, "reuse_factor"))
        assert config_value(block, "rq_reuse") == r and config_value(block, "rq_lanes") == c // r, win
        assert r <= config_value(block, "reuse_factor") and c % r == 0
        seen_r.add(r)
    assert max(seen_r) > 1      # the time-multiplexed path is what was simulated
    block = config_block(params, hm.graph["logits"].index)
    assert config_value(block, "rq_reuse") == 5 and config_value(block, "rq_lanes") == n_cls // 5
    assert mults["logits"] == n_cls // 5
    # unnamed requants of their own stay at one pixel per cycle whatever the global reuse factor
    assert project.hls_config(net, reuse=7)["LayerName"]["logits"]["ReuseFactor"] == 1
    with pytest.raises(schedule.ScheduleError, match="layer logits: requant reuse factor .*3"):
        project.hls_config(net, reuse_config={"logits": 3})


def test_weight_storage_bram_binding(tmp_path):
    """LayerName.<name>.WeightStorage = 'bram' binds the ROM that layer reads per reuse cycle to BRAM."""
    from flow.errors import AdderFlowError

    net = random_qnet(3)
    hm, d = write_project(tmp_path, net, reuse=4, bram_weights=["b0_adder1"])
    assert hm.graph["b0_adder1"].get_attr("reuse_factor") == 4
    top = (d / "firmware" / "myproject.cpp").read_text()
    w = hm.graph["b0_adder1"].weights["weight"].name
    binds = re.findall(r"#pragma HLS BIND_STORAGE variable=(\w+) type=rom_1p impl=bram", top)
    assert binds == [w]
    assert top.index("#pragma HLS DATAFLOW") < top.index("BIND_STORAGE")
    with pytest.raises(AdderFlowError, match="not a window/dense layer"):
        project.hls_config(net, bram_weights=["b0_rq1"])


def test_lane_wiring_covers_every_tap_once_and_psum_bounds_a_cycle():
    """Lane m of a filter takes tap m*RF + r in cycle r (lane_tap): over the RF cycles of a legal RF every
    tap of the filter is read exactly once, M = n_in / RF per cycle, and psum_t (sad_widths) holds the sum
    of M terms of term_max."""
    for n_in in (1, 7, 9, 27, 144, 252, 576):
        for rf in schedule.legal_reuse_factors(n_in):
            m = schedule.lanes_per_filter(n_in, rf)
            taps = np.array([[lane * rf + r for lane in range(m)] for r in range(rf)])
            assert sorted(taps.reshape(-1)) == list(range(n_in)), (n_in, rf)
            w = schedule.sad_widths(0, 15, -16, 15, m)
            assert m * w["term_max"] < (1 << w["psum_bits"])
        assert all(n_in % rf == 0 for rf in schedule.legal_reuse_factors(n_in))
        assert schedule.legal_reuse_factors(n_in) == [d for d in range(1, n_in + 1) if n_in % d == 0]


# ---- the FIFO analysis (flow.hls.schedule) -----------------------------------------------------------

def geometry(h, w, c=1, k=3, stride=1, pad=1, f=1):
    from flow.kernels import out_size

    ho, wo = out_size(h, k, stride, pad, pad), out_size(w, k, stride, pad, pad)
    return schedule.WindowGeometry(h, w, c, ho, wo, f, k, k, stride, pad, pad, pad, pad)


def brute_window_reads(g: schedule.WindowGeometry) -> list:
    """Walk the padded positions in raster order: input pixels read when each strided window completes."""
    reads, out = 0, []
    for ip in range(g.hp):
        for jp in range(g.wp):
            if g.pad_top <= ip < g.pad_top + g.in_height and g.pad_left <= jp < g.pad_left + g.in_width:
                reads += 1
            i, j = ip - (g.filt_height - 1), jp - (g.filt_width - 1)
            if i >= 0 and j >= 0 and i % g.stride == 0 and j % g.stride == 0 and i // g.stride < g.out_height \
                    and j // g.stride < g.out_width:
                out.append(reads)
    return out


def test_window_reads_at_outputs():
    # the first output of a 3x3 pad-1 window over 4x4 is emitted after one row + 2 pixels were read
    reads = schedule.window_reads_at_outputs(geometry(4, 4))
    assert reads[0] == 4 + 2 and reads[-1] == 16 and len(reads) == 16
    for g in (geometry(4, 4), geometry(5, 7, k=3, stride=2), geometry(6, 6, k=1, pad=0, stride=2),
              geometry(3, 8, k=3, pad=0), geometry(8, 8, k=3, stride=2, pad=1)):
        assert list(schedule.window_reads_at_outputs(g)) == brute_window_reads(g), g


def test_join_fifo_depths_of_a_skip_around_two_windows():
    """fork -> window a -> window b with a fused residual (the join) <- fork: the skip input holds two rows + two pixels of
    backlog (plus the slack); the window branch only the slack; a join without a common ancestor gets a whole
    tensor (two images) per input."""
    g = geometry(6, 6)
    nodes = [{"name": "a", "inputs": ["x"], "outputs": ["y1"], "tokens": 36, "maps": [g]},
             {"name": "b", "inputs": ["y1", "x"], "outputs": ["z"], "tokens": 36, "maps": [g, "elementwise"]}]
    tokens = {"x": 36, "y1": 36, "z": 36}
    depths = schedule.join_fifo_depths(nodes, tokens)
    assert depths[("b", "x")] == 2 * (6 + 1) + schedule.FIFO_SLACK
    assert depths[("b", "y1")] == schedule.FIFO_SLACK
    apart = [{"name": "b", "inputs": ["p", "q"], "outputs": ["z"], "tokens": 36, "maps": ["elementwise"] * 2}]
    assert schedule.join_fifo_depths(apart, {"p": 36, "q": 36, "z": 36}) == {("b", "p"): 72, ("b", "q"): 72}
    assert schedule.FIFO_SLACK == max(schedule.PIPELINE_DEPTH.values()) + 2
