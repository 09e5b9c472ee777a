"""One test per rule of hls_templates/README.md (the rules the generated C++ follows), each reading the
C++ of small generated projects (random QNets with <= 8 channels) or the template source.

The test names are the ones the README's table lists; rule 10 (the AXI top) is tests/test_axi_top.py."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxx_grep import arithmetic_ops, function_bodies, strip_cxx
from flow import golden
from flow.hls import schedule
from flow.hls.random_qnet import random_input, random_qnet

hls4ml = pytest.importorskip("hls4ml")
from flow.hls import project  # noqa: E402
from flow.hls.layers import range_of  # noqa: E402
from flow.hls.stream_depths import stream_depths  # noqa: E402
from flow.hls.writer import templates_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# seed 6 with <= 8 channels and reuse 4: every window/dense layer at RF > 1, two residual joins (one a
# strided 1x1 downsample), requants fused into the stem, the blocks and the joins
SEED, REUSE = 6, 4


class Project:
    def __init__(self, root: Path, net, **kw):
        self.net = net
        self.dir = root / "prj"
        self.hm = project.convert(net, self.dir, reuse=REUSE, **kw)
        self.hm.write()
        fw = self.dir / "firmware"
        self.top = (fw / "myproject.cpp").read_text()
        self.header = (fw / "myproject.h").read_text()
        self.params = (fw / "parameters.h").read_text()
        self.layers = (fw / "nnet_utils" / "nnet_adder_stream.h").read_text()
        self.weights = {p.stem: p.read_text() for p in (fw / "weights").glob("*.h")}

    def config(self, layer: str) -> str:
        index = self.hm.graph[layer].index
        return re.search(rf"struct config{index} \{{.*?\n\}};", self.params, re.S).group(0)

    def window_layers(self):
        return [layer for layer in self.hm.get_layers() if layer.class_name in ("QAdderConv2D", "QIntConv2D")]

    def calls(self) -> list:
        """The nnet:: process calls of the network function."""
        return [c for c in re.findall(r"^\s*(nnet::\w+<[^;]*;)", self.top, re.M) if "load_weights" not in c]


def raw_body(source: str, name: str) -> str:
    """The one definition of `name` with its pragmas (function_bodies blanks preprocessor lines)."""
    (start, body), = function_bodies(source, name)
    return source[start:start + len(body)]


def value(block: str, field: str) -> int:
    return int(re.search(rf"\b{field} = (-?\d+)", block).group(1))


def type_bits(block: str, name: str) -> tuple:
    m = re.search(rf"typedef ap_(u?)int<(\d+)> {name};", block)
    assert m, f"{name} is not an ap_[u]int typedef in\n{block}"
    return int(m.group(2)), m.group(1) == ""


@pytest.fixture(scope="module")
def net():
    return random_qnet(SEED, max_channels=8)


@pytest.fixture(scope="module")
def prj(tmp_path_factory, net):
    return Project(tmp_path_factory.mktemp("plain"), net)


@pytest.fixture(scope="module")
def sa_prj(tmp_path_factory, net):
    return Project(tmp_path_factory.mktemp("shift_add"), net, shift_add=True, bram_weights=["conv1"])


@pytest.fixture(scope="module")
def template():
    return (templates_dir() / "nnet_adder_stream.h").read_text()


# ---- rule 1 ------------------------------------------------------------------------------------------

def test_window_uses_hls4ml_line_buffer(prj, template):
    assert prj.layers == template                       # the project compiles the checked source
    src = prj.layers
    assert re.search(r'#include\s+"nnet_conv_stream.h"', src)
    (_, step), = function_bodies(src, "window_step")
    assert "nnet::shift_line_buffer<" in step
    # padding positions shift in zeros without a stream read: the one read is behind `inside`
    assert step.count(".read()") == 1 and re.search(r"if \(inside\) \{\s*px = data\.read\(\);", step)
    assert re.search(r"typedef ap_shift_reg<typename CONFIG_T::act_t, line_buffer_config<CONFIG_T>::in_width> row_t",
                     src)
    (_, body), = function_bodies(src, "window_stream")
    assert not re.search(r"ARRAY_PARTITION\s+variable=lbuf\s+cyclic", src)
    assert re.search(r"ARRAY_PARTITION variable=lbuf complete dim=0", src)
    assert re.search(r"ARRAY_PARTITION variable=win complete dim=0", src)
    assert "lbuf[" not in re.sub(r"row_t lbuf\[", "", body).replace("lbuf, win", "")  # only passed on, never indexed
    assert "window_step<" in body


# ---- rule 2 ------------------------------------------------------------------------------------------

def test_sad_datapath_has_no_runtime_arithmetic(prj):
    src = prj.layers
    assert arithmetic_ops(src, "sad_cycle") == []
    # sad_tree<N, W, OFF>::sum, the generic node and the leaf specialisation
    assert len(function_bodies(src, "sum")) == 2 and arithmetic_ops(src, "sum") == []
    assert arithmetic_ops(src, "mac_cycle", "/%") == []
    for fn in ("window_stream", "window_step", "window_advance", "requant_cycle", "requant_add_stream",
               "int_dense_stream"):
        # compile-time checks (static_assert) aside
        assert [h for h in arithmetic_ops(src, fn, "/%") if not h[2].startswith("static_assert")] == [], fn
    # the lane wiring helpers hold the only products, of unrolled indices and constants
    assert re.search(r"return m \* CONFIG_T::reuse_factor \+ r;", src)
    assert "lane_tap<CONFIG_T>(m, r)" in function_bodies(src, "sad_cycle")[0][1]
    structs = re.findall(r"struct config\d+ \{.*?\n\};", prj.params, re.S)
    with_rf = [s for s in structs if "reuse_factor" in s]
    assert len(with_rf) == len(project.legal_reuse(prj.net))
    for s in with_rf:
        assert value(s, "n_in") % value(s, "reuse_factor") == 0, s
        assert value(s, "lanes_per_filter") == value(s, "n_in") // value(s, "reuse_factor")
    assert sum(value(s, "reuse_factor") > 1 for s in with_rf) == len(with_rf)   # the fixture has RF > 1 everywhere
    for layer in prj.window_layers():
        block = prj.config(layer.name)
        assert "static constexpr unsigned group_of(unsigned f)" in block
        if layer.class_name == "QAdderConv2D":
            goc = prj.net.op(layer.name).arrays["group_of_channel"]
            expr = re.search(r"group_of\(unsigned f\) \{ return (.*?); \}", block).group(1)
            if len(set(goc)) > 1:
                table = bytes(int(o, 8) for o in re.findall(r"\\(\d{3})", expr))
                assert list(table) == [int(g) for g in goc], layer.name
            else:
                assert expr == str(int(goc[0]))


def test_illegal_reuse_factor_is_one_clear_error(net, template, tmp_path):
    n_in = schedule.inputs_per_output(net.op("b0_adder1"))
    legal = schedule.legal_reuse_factors(n_in)
    bad = next(v for v in range(2, n_in) if v not in legal)
    below, above = schedule.nearest_legal(bad, legal)
    with pytest.raises(schedule.ScheduleError) as err:
        project.hls_config(net, reuse_config={"b0_adder1": bad})
    msg = str(err.value)
    assert "\n" not in msg and "layer b0_adder1" in msg and f"nearest legal: {below} or {above}" in msg
    # and in C++: a static_assert in every process with a reuse factor
    for fn in ("window_stream", "int_dense_stream"):
        (_, body), = function_bodies(template, fn)
        assert "static_assert(CONFIG_T::n_in % CONFIG_T::reuse_factor == 0" in body, fn
    # the CLI: one line, non-zero exit, nothing written
    (tmp_path / "bad.yaml").write_text("conv1: 5\n")       # the ResNet-20-shaped stem has 27 inputs per output
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "flow", "hls", "--model", "random", "--reuse", "4", "--reuse-config",
                        str(tmp_path / "bad.yaml"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    err_lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err_lines) == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert "layer conv1" in err_lines[0] and "nearest legal: 3 or 9" in err_lines[0]
    assert not out.exists()


# ---- rule 3 ------------------------------------------------------------------------------------------

def test_one_code_path(prj, template):
    for src in (template, prj.layers):
        assert "__SYNTHESIS__" not in src
        assert "ADDERFLOW_SCHEDULED_PE" not in src
    build = (prj.dir / "build_lib.sh").read_text()
    # the only -D of the C simulation build is hls4ml's WEIGHTS_DIR (where the weight files are)
    assert [m for m in re.findall(r"-D\s*(\w+)", build) if m != "WEIGHTS_DIR"] == []
    assert "SCHEDULED" not in build


# ---- rule 4 ------------------------------------------------------------------------------------------

def _enclosing_loops(code: str, pos: int) -> list:
    """Headers of the for/while/do statements whose braces enclose offset `pos` of stripped code."""
    stack = []
    for i, c in enumerate(code[:pos]):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            stack.pop()
    heads = []
    for i in stack:
        head = code[max(0, i - 300):i]
        head = head[max(head.rfind(";"), head.rfind("{"), head.rfind("}")) + 1:]
        if re.search(r"\b(for|while|do)\b", head):
            heads.append(head.strip())
    return heads


def test_every_process_loops_over_the_images(prj, template):
    calls = prj.calls()
    assert len(calls) >= len(prj.window_layers()) + 3
    for call in calls:
        assert re.search(r",\s*n_images\);", call), call
    assert re.search(r"unsigned n_images = 1\s*\)", prj.header)
    axi = strip_cxx((templates_dir() / "axi_top.cpp").read_text())
    hits = [m.start() for m in re.finditer(r"ADDERFLOW_NETWORK\(x, y, n_images\);", axi)]
    assert len(hits) == 1 and axi.count("ADDERFLOW_NETWORK(") == 1
    assert _enclosing_loops(axi, hits[0]) == []
    # every process template loops over the images, and its per-image loop is inside that loop
    for fn in ("window_stream", "requant_add_stream", "global_sum_pool_stream", "int_dense_stream",
               "adder_clone_stream"):
        (_, body), = function_bodies(template, fn)
        assert re.search(r"Images:\s*for \(unsigned img = 0; img < n_images; img\+\+\)", body), fn
    # the entry points pass the count on
    for fn in ("adder_conv_2d_cl", "adder_conv_2d_add_cl", "int_conv_2d_cl", "requant_stream"):
        (_, body), = function_bodies(template, fn)
        assert re.search(r"n_images\);\s*\}$", body), fn


# ---- rule 5 ------------------------------------------------------------------------------------------

def counted_steps(g: schedule.WindowGeometry, rf: int, r: int) -> int:
    """Walk the padded positions: one step each, RF kernel cycles per complete strided window, R drain."""
    steps = windows = 0
    for ip in range(g.hp):
        for jp in range(g.wp):
            steps += 1
            i, j = ip - (g.filt_height - 1), jp - (g.filt_width - 1)
            if i >= 0 and j >= 0 and i % g.stride == 0 and j % g.stride == 0:
                windows += 1
    assert windows == g.out_height * g.out_width, g
    return steps + windows * rf + r


def test_window_steps_match_the_schedule(prj, template):
    body = raw_body(template, "window_stream")
    assert re.search(r"const unsigned STEPS = HP \* WP \+ CONFIG_T::out_height \* CONFIG_T::out_width \* RF \+ "
                     r"\(CONFIG_T::fused \? R : 0\);", body)
    assert re.search(r"WindowSteps:\s*for \(unsigned t = 0; t < STEPS; t\+\+\) \{\s*#pragma HLS PIPELINE II=1", body)
    assert "HP = CONFIG_T::in_height + CONFIG_T::pad_top + CONFIG_T::pad_bottom" in body
    assert "WP = CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right" in body
    from flow.kernels import out_size

    for h, w, k, s, p in [(4, 4, 3, 1, 1), (7, 5, 3, 2, 1), (6, 6, 1, 2, 0), (5, 8, 3, 1, 0), (8, 8, 3, 2, 0)]:
        ho, wo = out_size(h, k, s, p, p), out_size(w, k, s, p, p)
        g = schedule.WindowGeometry(h, w, 3, ho, wo, 4, k, k, s, p, p, p, p)
        for rf, r in [(1, 0), (3, 0), (9, 3)]:
            assert schedule.window_steps(g, rf, r) == counted_steps(g, rf, r)
    # and for every window layer of the generated project, from its config
    for layer in prj.window_layers():
        block = prj.config(layer.name)
        g = schedule.WindowGeometry(**{k: value(block, k) for k in schedule.WINDOW_KEYS})
        fused = "fused = true" in block
        r = value(block, "rq_reuse") if fused else 0
        assert schedule.window_steps(g, value(block, "reuse_factor"), r) == counted_steps(
            g, value(block, "reuse_factor"), r)


# ---- rule 6 ------------------------------------------------------------------------------------------

def test_derived_types_come_from_the_schedule(prj, template):
    assert "typedef ap_uint<W + adder_clog2<N>::value> sum_t;" in template    # sad_tree levels by their bound
    fused = schedule.fusable_requants(prj.net)
    for layer in prj.window_layers():
        op = prj.net.op(layer.name)
        block = prj.config(layer.name)
        spec = prj.net.tensors[op.inputs[0]]
        alo, ahi = range_of(spec.bits, spec.signed)
        w = np.asarray(layer.weights["weight"].data)
        widths = schedule.sad_widths(alo, ahi, int(w.min()), int(w.max()), value(block, "lanes_per_filter"))
        assert type_bits(block, "diff_t") == (widths["diff_bits"], True), layer.name
        assert type_bits(block, "term_t") == (widths["term_bits"], False), layer.name
        assert type_bits(block, "psum_t") == (widths["psum_bits"], False), layer.name
        if op.kind == "adder2d":
            gprod = schedule.rescale_prod_bits(alo, ahi, op.arrays["group_in_mult"], op.arrays["group_in_shift"])
            assert type_bits(block, "gprod_t") == (gprod, True), layer.name
        if layer.name not in fused:
            assert "fused = false" in block, layer.name
            continue
        rq = fused[layer.name]
        ranges = [range_of(prj.net.tensors[t].bits, prj.net.tensors[t].signed) for t in rq.inputs]
        want = schedule.requant_sum_bits(rq.arrays["bias"], rq.arrays["mult"], ranges, rq.attrs["shift"])
        assert type_bits(block, "sum_t") == (want, True), layer.name
    logits = prj.net.op("logits")
    ranges = [range_of(prj.net.tensors[t].bits, prj.net.tensors[t].signed) for t in logits.inputs]
    assert type_bits(prj.config("logits"), "sum_t") == (
        schedule.requant_sum_bits(logits.arrays["bias"], logits.arrays["mult"], ranges, logits.attrs["shift"]), True)


# ---- rule 7 ------------------------------------------------------------------------------------------

def _requant_calls(p: Project) -> list:
    return [c for c in p.calls() if re.match(r"nnet::requant(_add)?_stream<", c)]


def _csim_exact(p: Project, x) -> bool:
    project.compile_model(p.hm)
    y = project.csim_predict(p.hm, x)
    return np.array_equal(y, golden.run(p.net, x)[p.net.output].reshape(len(x), -1))


def test_requant_is_fused(prj, net, template, tmp_path):
    requants = [op for op in net.ops if op.kind == "requant"]
    fusable = schedule.fusable_requants(net)
    assert len(fusable) >= 3 and any(len(op.inputs) == 2 for op in fusable.values())
    assert len(_requant_calls(prj)) == len(requants) - len(fusable)
    for win, rq in fusable.items():
        block = prj.config(win)
        assert "fused = true" in block and value(block, "n_inputs") == len(rq.inputs)
        r, c = value(block, "rq_reuse"), value(block, "rq_chan")
        assert r <= value(block, "reuse_factor") and c % r == 0 and value(block, "rq_lanes") == c // r
        assert r == schedule.requant_reuse(c, value(block, "reuse_factor"))
    assert re.search(r"return b \* RQ_T::rq_reuse \+ q;", template)      # lane b on channel b*R + q
    (_, body), = function_bodies(template, "window_stream")
    # the residual input is read as the pixel's requantisation starts (with the accumulator latch)
    assert re.search(r"done\[f\] = acc\[f\];\s*\}\s*if \(CONFIG_T::n_inputs > 1\) \{\s*x2 = shortcut\.read\(\);", body)
    unfused = Project(tmp_path, net, fuse_requant=False)
    assert len(_requant_calls(unfused)) == len(requants)
    assert "fused = true" not in unfused.params
    x = random_input(net, 2, SEED)
    assert _csim_exact(prj, x) and _csim_exact(unfused, x)


# ---- rule 8 ------------------------------------------------------------------------------------------

def _array_length(header: str, name: str) -> int:
    return int(re.search(rf"\b{name}\[(\d+)\]", header).group(1))


def test_coefficient_tables(sa_prj, template):
    defines = (sa_prj.dir / "firmware" / "defines.h").read_text()
    tables = 0
    for layer in sa_prj.hm.get_layers():
        for prefix, const in (("", "weight"), ("", "group_mult"), ("rq_", "rq_mult")):
            t = int(layer.get_attr(f"{prefix}csd_terms", 0) or 0)
            if const not in layer.weights or f"{prefix}csd_exps" not in layer.weights or not t:
                continue
            if layer.class_name == "QAdderConv2D" and prefix == "" and const == "weight":
                continue                          # the SAD has no constant multiplication; its group rescale has
            exps, signs = layer.weights[f"{prefix}csd_exps"], layer.weights[f"{prefix}csd_signs"]
            n = int(np.asarray(layer.weights[const].data).size)
            for var in (exps, signs):
                assert _array_length(sa_prj.weights[var.name], var.name) == t * n, (layer.name, var.name)
            assert re.search(rf"typedef ap_uint<8> {exps.type.name};", defines), exps.type.name
            assert re.search(rf"typedef ap_int<2> {signs.type.name};", defines), signs.type.name
            # term-major: row t holds term t of every constant (entry t*N + n)
            e = np.asarray(exps.data).reshape(t, n)
            s = np.asarray(signs.data).reshape(t, n)
            vals = np.asarray(layer.weights[const].data, np.int64)
            assert np.array_equal((s * (2.0 ** e)).sum(axis=0), vals), (layer.name, const)
            tables += 1
    assert tables >= 5
    body = raw_body(template, "window_stream")
    for var, factor in (("weights", "block_factor"), ("w_exps", "w_table_factor"), ("w_signs", "w_table_factor"),
                        ("rq_mult", "rq_mult_factor"), ("rq_exps", "rq_table_factor"),
                        ("rq_signs", "rq_table_factor")):
        assert f"#pragma HLS ARRAY_RESHAPE variable={var} block factor=CONFIG_T::{factor}" in body, var
    for var in ("gmult", "gshift", "g_exps", "g_signs"):
        assert f"#pragma HLS ARRAY_PARTITION variable={var} complete" in body, var
    # shift amounts are unsigned everywhere they are declared
    assert not re.search(r"ap_int<\d+>\s*(\*\s*)?\w*exps", template)
    for cfg_factor in ("w_table_factor", "rq_table_factor"):
        for layer in sa_prj.window_layers():
            block = sa_prj.config(layer.name)
            size = "w_table_size" if cfg_factor == "w_table_factor" else "rq_table_size"
            lanes = value(block, "block_factor") if cfg_factor == "w_table_factor" else value(block, "rq_lanes")
            terms = value(block, "csd_terms") if cfg_factor == "w_table_factor" else value(block, "rq_csd_terms")
            if terms:
                # one reshaped word per reuse cycle: the table size over its factor is the cycle count
                assert value(block, cfg_factor) % lanes == 0 or cfg_factor == "rq_table_factor"
                assert value(block, size) // value(block, cfg_factor) == (
                    value(block, "reuse_factor") if cfg_factor == "w_table_factor" else value(block, "rq_reuse"))
    conv = sa_prj.hm.graph["conv1"]
    assert conv.get_attr("reuse_factor") > 1 and int(conv.get_attr("csd_terms")) > 0
    binds = re.findall(r"#pragma HLS BIND_STORAGE variable=(\w+) type=rom_1p impl=bram", sa_prj.top)
    assert sorted(binds) == sorted([conv.weights["csd_exps"].name, conv.weights["csd_signs"].name])
    assert conv.weights["weight"].name not in binds


# ---- rule 9 ------------------------------------------------------------------------------------------

def test_join_fifo_depths_carry_the_slack(prj):
    depths = {m.group(1): int(m.group(2))
              for m in re.finditer(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", prj.top)}
    want = stream_depths(prj.hm)
    joins = [layer for layer in prj.hm.get_layers()
             if len(layer.inputs) > 1 and layer.class_name in ("QAdderConv2D", "QRequant")]
    assert len(joins) == 2
    for join in joins:
        for i in join.inputs:
            name = join.get_input_variable(i).name
            # the slack on top of the backlog, unless two whole images of the tensor are fewer tokens
            tokens = int(np.prod(join.get_input_variable(i).shape[:-1]))
            assert depths[name] == want[name] >= min(schedule.FIFO_SLACK, schedule.ANALYSED_IMAGES * tokens), name
    join_inputs = {j.get_input_variable(i).name for j in joins for i in j.inputs}
    assert all(d == schedule.FIFO_MIN_DEPTH for n, d in depths.items() if n not in join_inputs and n in want)
    assert schedule.FIFO_SLACK == max(schedule.PIPELINE_DEPTH.values()) + 2


def _window_process(g, images):
    reads = schedule.window_reads_at_outputs(g)
    n_in, n_out = g.in_height * g.in_width, g.out_height * g.out_width
    need = np.concatenate([reads + k * n_in for k in range(images)])
    return need, n_in * images, n_out * images


def simulate(chain, skip_map, depth_skip, depth_main, images=2) -> bool:
    """Token-level discrete-event run of fork -> chain of window layers -> join <- fork (-> skip_map, a
    window layer, or identity where None). The join is the last window of the chain with a fused residual:
    it takes one residual token as it emits an output. Every FIFO has depth 2 except the two join inputs
    (depth_main, depth_skip). Each process moves one token at a time, as the analysis assumes; a window
    process reads its input in raster order and emits output q once it has read need[q] pixels, and reads
    no further until then. True if every output leaves, False on a deadlock."""
    fifo = {}                                               # name -> [occupancy, capacity]
    procs = []                                              # (input fifo, output fifo or None, need, n_in, n_out, residual fifo)
    n_fork = chain[0].in_height * chain[0].in_width * images
    src = "fork_main"
    for k, g in enumerate(chain):
        fifo[src] = [0, depth_main if k == len(chain) - 1 else 2]
        need, n_in, n_out = _window_process(g, images)
        last = k == len(chain) - 1
        procs.append([src, None if last else f"w{k}", need, n_in, n_out, "skip" if last else None, 0, 0])
        src = f"w{k}"
    fifo["skip"] = [0, depth_skip]
    fork_skip = "skip"
    if skip_map is not None:
        fifo["fork_skip"] = [0, 2]
        need, n_in, n_out = _window_process(skip_map, images)
        procs.append(["fork_skip", "skip", need, n_in, n_out, None, 0, 0])
        fork_skip = "fork_skip"
    forked = 0
    while True:
        moved = False
        if forked < n_fork and all(fifo[f][0] < fifo[f][1] for f in ("fork_main", fork_skip)):
            forked += 1
            fifo["fork_main"][0] += 1
            fifo[fork_skip][0] += 1
            moved = True
        for pr in procs:
            inp, out, need, n_in, n_out, res, read, emitted = pr
            limit = need[emitted] if emitted < n_out else n_in
            if emitted < n_out and read >= need[emitted] and (out is None or fifo[out][0] < fifo[out][1]) \
                    and (res is None or fifo[res][0] > 0):
                pr[7] += 1
                if out is not None:
                    fifo[out][0] += 1
                if res is not None:
                    fifo[res][0] -= 1
                moved = True
            elif read < limit and fifo[inp][0] > 0:
                pr[6] += 1
                fifo[inp][0] -= 1
                moved = True
        if not moved:
            join = procs[len(chain) - 1]
            return join[7] == join[4]


def _join_depths(chain, skip_map):
    """join_fifo_depths of the same graph: {'main': depth, 'skip': depth}."""
    nodes, tokens = [], {"x": chain[0].in_height * chain[0].in_width}
    src = "x"
    for k, g in enumerate(chain[:-1]):
        nodes.append({"name": f"w{k}", "inputs": [src], "outputs": [f"y{k}"], "tokens": g.out_pixels, "maps": [g]})
        src = f"y{k}"
        tokens[src] = g.out_pixels
    sk = "x"
    if skip_map is not None:
        nodes.append({"name": "down", "inputs": ["x"], "outputs": ["s"], "tokens": skip_map.out_pixels,
                      "maps": [skip_map]})
        sk, tokens["s"] = "s", skip_map.out_pixels
    nodes.append({"name": "join", "inputs": [src, sk], "outputs": ["z"], "tokens": chain[-1].out_pixels,
                  "maps": [chain[-1], "elementwise"]})
    tokens["z"] = chain[-1].out_pixels
    d = schedule.join_fifo_depths(nodes, tokens)
    return d[("join", src)], d[("join", sk)]


def _geom(h, w, k, s, p, c=1):
    from flow.kernels import out_size

    return schedule.WindowGeometry(h, w, c, out_size(h, k, s, p, p), out_size(w, k, s, p, p), c, k, k, s, p, p, p, p)


@pytest.mark.parametrize("case", ["identity 6x6", "identity 5x7", "identity 3 windows", "downsample 8x8"])
def test_fifo_analysis_by_brute_force(case):
    """fork -> window chain -> join (a window layer with a fused residual) <- fork (identity, or a strided
    1x1 downsample window): with the computed depths two back-to-back images flow through; with the skip
    FIFO FIFO_SLACK + 1 shallower (one token less than the analysed backlog) the region deadlocks, i.e.
    the analysis is tight on the skip input in the token model it assumes."""
    if case == "identity 6x6":
        chain, skip_map = [_geom(6, 6, 3, 1, 1), _geom(6, 6, 3, 1, 1)], None
    elif case == "identity 5x7":
        chain, skip_map = [_geom(5, 7, 3, 1, 1), _geom(5, 7, 3, 1, 1)], None
    elif case == "identity 3 windows":
        chain, skip_map = [_geom(6, 6, 3, 1, 1), _geom(6, 6, 1, 1, 0), _geom(6, 6, 3, 1, 1)], None
    else:
        chain, skip_map = [_geom(8, 8, 3, 2, 1), _geom(4, 4, 3, 1, 1)], _geom(8, 8, 1, 2, 0)
    main, skip = _join_depths(chain, skip_map)
    assert skip > schedule.FIFO_SLACK
    assert simulate(chain, skip_map, skip, main)
    assert not simulate(chain, skip_map, skip - schedule.FIFO_SLACK - 1, main)
    # without the analysis (every edge depth 2) it deadlocks too: the sizing is what makes it run
    assert not simulate(chain, skip_map, 2, 2)
