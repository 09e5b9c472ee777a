"""AdderVitis hls4ml backend: registration, generated project, SAD datapath without multipliers, and
C simulation (g++) bit-exact with the integer golden model."""

import re
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow import golden
from flow.hls.random_qnet import random_input, random_qnet, resnet20_shaped_qnet

hls4ml = pytest.importorskip("hls4ml")
from flow.hls import project  # noqa: E402
from flow.hls.writer import templates_dir  # noqa: E402

SAD_FUNCTIONS = ("sad_accumulate", "sad_step", "sad_pixel")


def cpp_function_body(source: str, name: str) -> str:
    """The brace-balanced body of the first definition of `name` (comments stripped)."""
    source = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", source, flags=re.S))
    m = re.search(r"\b" + name + r"\s*\([^;{]*\)\s*\{", source)
    assert m, f"{name} not found"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[m.start():i]


def test_backend_registered_through_entry_point():
    names = [ep.name for ep in entry_points().select(group="hls4ml.backends")]
    assert "AdderVitis" in names
    assert "addervitis" in hls4ml.backends.get_available_backends()
    from flow.hls.backend import AdderVitisBackend

    assert isinstance(hls4ml.backends.get_backend("AdderVitis"), AdderVitisBackend)


def test_sad_datapath_has_no_multiplication():
    """Grep-able check: the adder PE uses add, subtract, compare and negate only."""
    src = (templates_dir() / "nnet_adder_stream.h").read_text()
    for fn in SAD_FUNCTIONS:
        body = cpp_function_body(src, fn)
        assert "*" not in body, f"{fn} contains '*':\n{body}"
        assert "<<" not in body and "const_mult" not in body


def write_project(tmp_path, net, **kw):
    hm = project.convert(net, tmp_path / "prj", **kw)
    hm.write()
    return hm, tmp_path / "prj"


def test_scheduled_pe_flag_reaches_the_compiler(tmp_path):
    _, d = write_project(tmp_path, random_qnet(3, max_channels=4), scheduled_pe=True)
    assert "-DADDERFLOW_SCHEDULED_PE" in (d / "build_lib.sh").read_text()


def test_generated_project_structure(tmp_path):
    net = random_qnet(3)
    hm, d = write_project(tmp_path, net, reuse=4, reuse_config={"b0_adder1": 9})
    top = (d / "firmware" / "myproject.cpp").read_text()
    assert "void myproject(" in top and "hls::stream<input_t> &input_int" in top
    assert "#pragma HLS DATAFLOW" in top
    assert "nnet::adder_conv_2d_cl<" in top and "nnet::requant_add_stream<" in top
    assert "nnet::clone_stream<" in top  # the block input feeds two consumers
    assert (d / "firmware" / "nnet_utils" / "nnet_adder_stream.h").is_file()
    # the SAD code that is compiled is the checked one
    copied = (d / "firmware" / "nnet_utils" / "nnet_adder_stream.h").read_text()
    for fn in SAD_FUNCTIONS:
        assert "*" not in cpp_function_body(copied, fn)
    params = (d / "firmware" / "parameters.h").read_text()
    adder = hm.graph["b0_adder1"]
    assert f"struct config{adder.index} " in params
    block = re.search(rf"struct config{adder.index} .*?}};", params, re.S).group(0)
    n_terms = int(np.prod(net.op("b0_adder1").arrays["weight"].shape))
    assert "reuse_factor = 9;" in block and f"block_factor = {-(-n_terms // 9)};" in block
    assert "input_t" in (d / "firmware" / "defines.h").read_text()
    assert "ap_int<8>" in re.search(r"typedef [^;]* input_t;", (d / "firmware" / "defines.h").read_text()).group(0)
    mults = project.layer_multipliers(hm)
    assert mults["b0_adder2"] == 0 or net.op("b0_adder2").arrays["group_in_mult"].any()


def test_shift_add_removes_every_multiplier(tmp_path):
    net = random_qnet(3)
    hm, d = write_project(tmp_path, net, shift_add=True)
    assert sum(project.layer_multipliers(hm).values()) == 0
    params = (d / "firmware" / "parameters.h").read_text()
    assert "csd_terms = 0;" not in params.split("struct config2 ")[1].split("};")[0]


def test_csd_digits_are_exact():
    from flow.hls.passes.shift_add import csd_digits, csd_tables

    for v in list(range(-300, 300)) + [2**20 + 7, -(2**31) + 5]:
        assert sum(s * (1 << e) for e, s in csd_digits(v)) == v
    exps, signs, t = csd_tables([0, 7, -5])
    assert t == 2 and (signs[0] == 0).all()


def csim_mismatches(tmp_path, net, x, **kw):
    hm, _ = write_project(tmp_path, net, **kw)
    project.compile_model(hm)
    y = project.csim_predict(hm, x)
    want = golden.run(net, x)[net.output]
    return int(np.sum(y != want.reshape(len(x), -1))), y


@pytest.mark.parametrize("seed,reuse,shift_add,scheduled_pe", [(3, 1, False, True), (4, 3, True, False),
                                                              (5, 6, True, True)])
def test_csim_bit_exact_random_nets(tmp_path, seed, reuse, shift_add, scheduled_pe):
    """scheduled_pe: C-simulate the reuse-factor PE schedule itself (what synthesis gets), not the
    filter-major C-simulation loop."""
    net = random_qnet(seed, max_channels=12)
    x = random_input(net, 4, seed)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=reuse, shift_add=shift_add, scheduled_pe=scheduled_pe)
    assert bad == 0


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), reuse=st.sampled_from([1, 2, 5, 16]), shift_add=st.booleans(),
       scheduled_pe=st.booleans())
def test_csim_bit_exact_hypothesis(tmp_path_factory, seed, reuse, shift_add, scheduled_pe):
    net = random_qnet(seed)
    x = random_input(net, 3, seed)
    bad, _ = csim_mismatches(tmp_path_factory.mktemp("h"), net, x, reuse=reuse, shift_add=shift_add,
                             scheduled_pe=scheduled_pe)
    assert bad == 0


@pytest.mark.slow
@pytest.mark.ci_slice
def test_csim_bit_exact_resnet20_shaped_w4(tmp_path):
    net = resnet20_shaped_qnet(bits=4, seed=2)
    x = random_input(net, 2, 2)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=16, scheduled_pe=True)
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
    net = random_qnet(3)
    net.op("b0_rq1").attrs["apot_terms"] = 3
    hm, _ = write_project(tmp_path, net)
    mults = project.layer_multipliers(hm)
    assert mults["b0_rq1"] == 0 and mults["conv1_rq"] > 0


def test_reuse_config_yaml(tmp_path):
    from flow.errors import AdderFlowError

    net = random_qnet(3)
    (tmp_path / "plain.yaml").write_text("b0_adder1: 8\nfc: 4\n")
    (tmp_path / "hls4ml.yaml").write_text("LayerName:\n  b0_adder1:\n    ReuseFactor: 8\n")
    assert project.load_reuse_config(tmp_path / "plain.yaml") == {"b0_adder1": 8, "fc": 4}
    assert project.load_reuse_config(tmp_path / "hls4ml.yaml") == {"b0_adder1": 8}
    cfg = project.hls_config(net, reuse=2, reuse_config={"b0_adder1": 8})
    assert cfg["LayerName"]["b0_adder1"]["ReuseFactor"] == 8 and cfg["LayerName"]["conv1"]["ReuseFactor"] == 2
    with pytest.raises(AdderFlowError, match="unknown layers"):
        project.hls_config(net, reuse_config={"nope": 2})


def _stream_depths(top: str) -> dict:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", top)}


def test_stream_depths_minimal_with_residual_joins_sized_to_the_branch_lag(tmp_path):
    """Depth 2 everywhere except the inputs of a residual join, which hold what the other branch
    (two window layers) holds back; 'hls4ml-default' keeps a whole tensor per stream."""
    from flow.report.estimate import window_reads_at_outputs

    net = resnet20_shaped_qnet(bits=4, seed=2)
    hm, d = write_project(tmp_path, net, reuse=16)
    depths = _stream_depths((d / "firmware" / "myproject.cpp").read_text())
    joins = {hm.graph[o.name].get_input_variable(i).name: o for o in net.ops if len(o.inputs) > 1
             for i in hm.graph[o.name].inputs}
    for name, depth in depths.items():
        if name not in joins:
            assert depth <= 2, name   # 1 for one-element streams (pooled vector)
    # identity skip of a 32x32 block: two 3x3 pad-1 windows each hold one row + one pixel back
    skip = hm.graph["layer1_0_bn2"].get_input_variable(hm.graph["layer1_0_bn2"].inputs[1]).name
    assert depths[skip] == 2 * (32 + 1) + 2
    # the stage-3 (8x8) identity skips need a quarter of that, the main-branch inputs nothing extra
    skip3 = hm.graph["layer3_1_bn2"].get_input_variable(hm.graph["layer3_1_bn2"].inputs[1]).name
    assert depths[skip3] == 2 * (8 + 1) + 2
    assert depths[hm.graph["layer1_0_bn2"].get_input_variable(hm.graph["layer1_0_bn2"].inputs[0]).name] == 2
    # the first output of a 3x3 pad-1 window over 4x4 is emitted after one row + 2 pixels were read
    reads = window_reads_at_outputs(dict(filt_height=3, filt_width=3, stride=1, in_height=4, in_width=4,
                                         pad_top=1, pad_bottom=1, pad_left=1, pad_right=1, out_height=4,
                                         out_width=4))
    assert reads[0] == 4 + 2 and reads[-1] == 16 and len(reads) == 16
    # the estimator prices exactly these FIFOs
    from flow.boards import get_board
    from flow.report.estimate import estimate

    est = estimate(net, get_board("pynq-z2"), 100, reuse=16)
    assert sorted(s["depth"] for s in est["streams"] if s["depth"] > 2) == sorted(v for v in depths.values() if v > 2)
    _, d2 = write_project(tmp_path / "default", net, reuse=16, stream_depths="hls4ml-default")
    assert _stream_depths((d2 / "firmware" / "myproject.cpp").read_text())[skip] == 32 * 32


def test_requant_time_multiplexed_csim_bit_exact(tmp_path):
    """A requant named in the reuse config runs ceil(C/R) lanes over R cycles per pixel, same results."""
    net = random_qnet(4, max_channels=12)
    rq = {o.name: 5 for o in net.ops if o.kind == "requant"}
    x = random_input(net, 3, 4)
    bad, _ = csim_mismatches(tmp_path, net, x, reuse=3, reuse_config=rq)
    assert bad == 0
    hm, d = write_project(tmp_path / "p", net, reuse=3, reuse_config=rq)
    params = (d / "firmware" / "parameters.h").read_text()
    name = next(iter(rq))
    c = net.tensors[net.op(name).output].shape[-1]
    block = re.search(rf"struct config{hm.graph[name].index} .*?}};", params, re.S).group(0)
    assert f"reuse_factor = {min(5, c)};" in block and f"n_lanes = {-(-c // min(5, c))};" in block
    assert project.layer_multipliers(hm)[name] <= -(-c // min(5, c)) * len(net.op(name).inputs)
    # unnamed requants stay at one pixel per cycle whatever the global reuse factor
    assert project.hls_config(net, reuse=7)["LayerName"][name]["ReuseFactor"] == 1


def test_weight_storage_bram_binding(tmp_path):
    """LayerName.<name>.WeightStorage = 'bram' binds that layer's weight ROM to BRAM in the top."""
    from flow.errors import AdderFlowError

    net = random_qnet(3)
    hm, d = write_project(tmp_path, net, reuse=4, bram_weights=["b0_adder1"])
    top = (d / "firmware" / "myproject.cpp").read_text()
    w = hm.graph["b0_adder1"].weights["weight"].name
    binds = re.findall(r"#pragma HLS BIND_STORAGE variable=(\w+) type=rom_1p impl=bram", top)
    assert binds == [w]
    assert top.index("#pragma HLS DATAFLOW") < top.index("BIND_STORAGE")
    with pytest.raises(AdderFlowError, match="not a window/dense layer"):
        project.hls_config(net, bram_weights=["b0_rq1"])


def test_sad_partial_sum_bound():
    """psum_t bounds a filter's per-cycle SAD partial sum: terms per cycle from the SadReuse schedule."""
    from flow.report.estimate import sad_terms_per_cycle

    for n_terms, f, rf in [(144, 16, 1), (144, 16, 16), (144, 16, 15), (2304, 16, 16), (27, 3, 4), (10, 5, 100)]:
        idx = np.arange(n_terms)
        brute = max(int(np.sum((idx % rf == r) & (idx % f == g))) for r in range(rf) for g in range(f))
        assert sad_terms_per_cycle(n_terms, f, rf) == brute
    assert sad_terms_per_cycle(2304, 16, 16) == 144 and sad_terms_per_cycle(2304, 16, 15) == 10


def test_sad_slots_map_lanes_to_distinct_filters():
    """sad_step sums lane b into slot b % n_slots: every lane of a slot hits one filter, slots distinct ones."""
    from flow.hls.layers import block_factor
    from flow.report.estimate import sad_slots

    for n_terms, f, rf in [(144, 16, 1), (144, 16, 16), (144, 16, 22), (2304, 16, 15), (27, 3, 4), (4608, 32, 116)]:
        block = block_factor(n_terms, rf)
        d = sad_slots(f, rf, block)
        for r in range(rf):
            idx = r + rf * np.arange(block)
            valid = idx < n_terms
            filt, slot = idx % f, np.arange(block) % d
            for j in range(d):
                assert len(set(filt[valid & (slot == j)])) <= 1
            firsts = [int(filt[valid & (slot == j)][0]) for j in range(d) if np.any(valid & (slot == j))]
            assert len(set(firsts)) == len(firsts)
            assert all(fj == (r + j * rf) % f for j, fj in enumerate(firsts))
