"""QNet + reuse factors + schedule -> BUILD/rtl/: one wrapper module per process of the generated design,
the top (`af_top`), ROM files, copies of the rtl/ library modules it uses and `manifest.json`.

The process graph is the HLS design's, from the same functions (flow/hls/schedule.py): a window layer
(conv2d/adder2d) with the requant `fusable_requants` fuses into it (and that requant's residual input) is
ONE process `layer_<window op>`; every other requant, the pool and the dense are processes of their own; a
tensor read by several processes goes through a clone process (`layer_<tensor>_clone`). Every stream between
processes is an af_fifo whose depth is the HLS design's: `join_fifo_depths` (which adds FIFO_SLACK) on the
inputs of a join, FIFO_MIN_DEPTH elsewhere. A layer wrapper is self-contained (it instantiates only library
modules, which the manifest lists per layer), so `yosys ... synth -top layer_<name>` works on one layer.

    design = plan(qnet, reuse, shift_add=True)          # the processes and streams, nothing written
    generate(build_dir, force=False)                   # BUILD/rtl/ from BUILD/qnet + BUILD/report.json

Paths in the Verilog ($readmemh) are relative to BUILD/rtl: every tool runs with that working directory.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.hls import schedule
from flow.qnet import QNet, bits_for

RTL_DIR = "rtl"                # BUILD/rtl
MANIFEST = "manifest.json"
TOP = "af_top"
WORD_BITS = 64                 # DMA word width of the AXI top (flow.driver.packing.DEFAULT_WORD_BITS)
HARNESS_CFG = "af_harness_cfg.h"
HARNESS_CPP = "af_harness.cpp"    # rtl/harness/, copied beside the design


def rtl_library_dir() -> Path:
    """The hand-written modules (rtl/; $ADDERFLOW_RTL overrides), found as hls_templates are."""
    from flow.paths import resource_dir

    return resource_dir("rtl", "README.md", "ADDERFLOW_RTL")


def vname(name: str) -> str:
    """A Verilog identifier for a QNet name (QNet names may hold '/', '.', '-')."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
    return s if re.match(r"[A-Za-z_]", s) else f"n_{s}"


# ---- the plan: processes and streams ----------------------------------------------------------------

@dataclass
class Stream:
    name: str           # Verilog-safe; the tensor name, or <tensor>_to_<consumer> after a clone
    tensor: str
    width: int          # bits of one beat
    depth: int
    producer: str       # process name, or "axis_in"
    consumer: str       # process name, or "axis_out"


@dataclass
class Process:
    name: str           # the module is layer_<name>
    kind: str           # window | requant | pool | dense | clone
    ops: list           # QNet op names realised here (window op + fused requant)
    inputs: list        # stream names, in port order (s, s1)
    outputs: list       # stream names, in port order (m, or m0.. for a clone)
    rf: int = 1
    estimate_cycles: int = 0
    library: list = field(default_factory=list)   # rtl/ files it instantiates
    roms: dict = field(default_factory=dict)      # file name -> list of hex words
    body: str = ""      # the Verilog module text

    @property
    def module(self) -> str:
        return f"layer_{self.name}"


@dataclass
class Design:
    net: QNet
    reuse: dict
    shift_add: bool
    processes: list
    streams: dict       # name -> Stream, in creation order
    input_stream: str
    output_stream: str


def _tensor_bits(net: QNet, t: str) -> tuple:
    s = net.tensors[t]
    return int(s.bits), bool(s.signed), int(s.shape[-1])


def _sbits(values) -> int:
    """Two's complement width holding every value (a ROM/parameter field read back with $signed)."""
    v = np.asarray(values, np.int64)
    return bits_for(min(int(v.min()) if v.size else 0, -1), max(int(v.max()) if v.size else 0, 0))[0]


def _beat_width(net: QNet, t: str) -> int:
    bits, _, c = _tensor_bits(net, t)
    return bits * c


def plan(net: QNet, reuse: dict | None = None, shift_add: bool = False, depth_override: dict | None = None) -> Design:
    """The generated design's processes and streams. `reuse`: {op: RF} as the HLS build recorded it (missing
    window/dense ops get 1); `depth_override`: {stream name: depth}, to test what a shallower FIFO does."""
    from flow.hls import project

    full, _ = project.resolve_reuse(net, 1, {k: v for k, v in (reuse or {}).items()
                                             if k in {o.name for o in net.ops}})
    fused = schedule.fusable_requants(net)
    nodes, tokens = schedule.qnet_stream_graph(net, fused)
    joins = schedule.join_fifo_depths(nodes, tokens)
    consumers = {}
    for n in nodes:
        for t in n["inputs"]:
            consumers.setdefault(t, []).append(n["name"])
    consumers.setdefault(net.output, []).append("axis_out")

    streams: dict = {}
    processes: list = []
    in_stream = {}                  # (consumer process, tensor) -> stream name

    def add_stream(name, tensor, producer, consumer, depth):
        name = vname(name)
        if name in streams:
            raise AdderFlowError(f"stream name {name} is used twice (rename the QNet tensors)")
        streams[name] = Stream(name, tensor, _beat_width(net, tensor), int(depth), producer, consumer)
        in_stream[(consumer, tensor)] = name
        return name

    def fan_out(tensor, producer):
        """Streams from `producer` to every reader of `tensor` (through a clone when there are several)."""
        readers = consumers.get(tensor, [])
        if not readers:
            raise AdderFlowError(f"tensor {tensor} is produced by {producer} but never read")
        if len(readers) == 1:
            c = readers[0]
            return [add_stream(tensor, tensor, producer, c, _depth(joins, c, tensor))]
        clone = f"{vname(tensor)}_clone"
        s_in = add_stream(tensor, tensor, producer, clone, schedule.FIFO_MIN_DEPTH)
        outs = [add_stream(f"{tensor}_to_{c}", tensor, clone, c, _depth(joins, c, tensor)) for c in readers]
        px = tokens[tensor]
        processes.append(Process(clone, "clone", [], [s_in], outs, 1, px + schedule.PIPELINE_DEPTH["clone"]))
        return [s_in]

    first = fan_out(net.input, "axis_in")[0]
    for n in nodes:
        op = net.op(n["name"])
        ops = [op.name] + ([fused[op.name].name] if op.name in fused else [])
        kind = {"conv2d": "window", "adder2d": "window", "requant": "requant", "global_sum_pool": "pool",
                "dense": "dense"}[op.kind]
        p = Process(vname(n["name"]), kind, ops, [], [], int(full.get(op.name, 1)))
        processes.append(p)
        out_t = n["outputs"][0]
        p.outputs = fan_out(out_t, p.name)
        p.inputs = [in_stream[(p.name, t)] for t in n["inputs"]]
    # a clone sits before its readers in port order but was appended when its tensor was produced: fine,
    # the top declares every wire before instantiating anything
    for name, d in (depth_override or {}).items():
        if name not in streams:
            raise AdderFlowError(f"depth override names unknown stream '{name}' (streams: {', '.join(streams)})")
        if int(d) < 1:
            raise AdderFlowError(f"depth override of stream {name} must be >= 1, got {d}")
        streams[name].depth = int(d)
    design = Design(net, full, bool(shift_add), processes, streams, first, in_stream[("axis_out", net.output)])
    for p in processes:
        _realise(design, p, fused)
    return design


def _depth(joins: dict, consumer: str, tensor: str) -> int:
    return max(schedule.FIFO_MIN_DEPTH, int(joins.get((consumer, tensor), 0)))


# ---- per-process Verilog ----------------------------------------------------------------------------

def _hex(v: int, bits: int) -> str:
    return format(int(v) & ((1 << bits) - 1), "0{}x".format(max(1, -(-bits // 4))))


def _pack(values, bits: int) -> int:
    """Values (two's complement at `bits`) into one integer, value i at bits [(i+1)*bits-1 : i*bits]."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def _vparam(values, bits: int) -> str:
    """A packed Verilog parameter literal (value i at bits [(i+1)*bits-1 : i*bits])."""
    n = max(1, len(values)) * bits
    return f"{n}'h{_hex(_pack(values, bits), n)}"


def _ports(p: Process, design: Design) -> list:
    lines = ["input wire clk", "input wire rst"]
    for i, s in enumerate(p.inputs):
        pre = "s" if i == 0 else f"s{i}"
        w = design.streams[s].width
        lines += [f"input wire {pre}_valid", f"output wire {pre}_ready", f"input wire [{w - 1}:0] {pre}_data"]
    for i, s in enumerate(p.outputs):
        pre = "m" if len(p.outputs) == 1 else f"m{i}"
        w = design.streams[s].width
        lines += [f"output wire {pre}_valid", f"input wire {pre}_ready", f"output wire [{w - 1}:0] {pre}_data"]
    return lines


def _module(p: Process, design: Design, why: str, body: list) -> str:
    ports = ",\n    ".join(_ports(p, design))
    return (f"// {p.module}: {why}\n// Generated by flow/rtl/generate.py from the QNet; do not edit.\n"
            f"module {p.module} (\n    {ports}\n);\n" + "\n".join(body) + "\nendmodule\n")


def _inst(module: str, params: dict, name: str, conns: dict) -> list:
    ps = ",\n".join(f"        .{k}({v})" for k, v in params.items())
    cs = ",\n".join(f"        .{k}({v})" for k, v in conns.items())
    return [f"    {module} #(\n{ps}\n    ) {name} (\n{cs}\n    );"]


def _stream_conns(prefix: str, valid: str, ready: str, data: str) -> dict:
    return {f"{prefix}_valid": valid, f"{prefix}_ready": ready, f"{prefix}_data": data}


def _realise(design: Design, p: Process, fused: dict) -> None:
    net = design.net
    if p.kind == "clone":
        _clone(design, p)
    elif p.kind == "window":
        _window(design, p, net.op(p.ops[0]), fused.get(p.ops[0]))
    elif p.kind == "requant":
        op = net.op(p.ops[0])
        c = net.tensors[op.output].shape[-1]
        px = int(np.prod(net.tensors[op.output].shape[:-1]))
        r = int(design.reuse.get(op.name, 1))
        p.rf = r
        p.estimate_cycles = schedule.requant_steps(px, r) + schedule.PIPELINE_DEPTH["requant"]
        body = ["    // per channel: clip((sum_k in_k*mult[k,c] + bias[c] + 2^(shift-1)) >>> shift, lo, hi)"]
        body += _requant_inst(design, p, op, "s", [f"s{'' if i == 0 else i}" for i in range(len(op.inputs))], "m", r)
        p.library += ["af_requant.v"]
        p.body = _module(p, design, f"requant {op.name} ({c} channels, {len(op.inputs)} input(s))", body)
    elif p.kind == "pool":
        op = net.op(p.ops[0])
        h, w, c = net.tensors[op.inputs[0]].shape
        b, _, _ = _tensor_bits(net, op.inputs[0])
        acc = net.tensors[op.output].bits
        p.estimate_cycles = h * w + schedule.PIPELINE_DEPTH["pool"]
        sg = net.tensors[op.inputs[0]].signed
        body = _inst("af_sum_pool", {"H": h, "W": w, "C": c, "B": b, "ACC_BITS": acc, "SIGNED": int(sg)}, "u_pool",
                     {"clk": "clk", "rst": "rst", **_stream_conns("s", "s_valid", "s_ready", "s_data"),
                      **_stream_conns("m", "m_valid", "m_ready", "m_data")})
        p.library += ["af_sum_pool.v"]
        p.body = _module(p, design, f"global sum pool {op.name} over {h}x{w} pixels", body)
    elif p.kind == "dense":
        op = net.op(p.ops[0])
        wt = np.asarray(op.arrays["weight"], np.int64)
        n_in, cout = wt.shape
        xb, xs, _ = _tensor_bits(net, op.inputs[0])
        wb = _sbits(wt)
        acc = net.tensors[op.output].bits
        rom = f"{p.name}_w.hex"
        p.roms[rom] = _lane_rom(wt, p.rf, wb)
        p.estimate_cycles = p.rf + schedule.PIPELINE_DEPTH["dense"]
        body = _inst("af_dense", {"N_IN": n_in, "COUT": cout, "RF": p.rf, "XB": xb, "X_SIGNED": int(xs), "WB": wb,
                                  "ACC_BITS": acc, "ROM_FILE": f'"{rom}"'}, "u_dense",
                     {"clk": "clk", "rst": "rst", **_stream_conns("s", "s_valid", "s_ready", "s_data"),
                      **_stream_conns("m", "m_valid", "m_ready", "m_data")})
        p.library += ["af_dense.v"]
        p.body = _module(p, design, f"dense {op.name} {n_in}x{cout}, RF {p.rf}", body)
    p.library = sorted(set(p.library))


def _lane_rom(wt2d: np.ndarray, rf: int, wb: int) -> list:
    """Weight ROM of a lane array: RF words; word r holds, for filter f and lane m (field f*M + m, M =
    n_in/RF lanes per filter), the weight W[m*RF + r, f] at WB bits, two's complement (the HLS lane rule,
    schedule.lanes_per_filter / nnet_adder_stream.h lane_tap)."""
    n_in, cout = wt2d.shape
    m_lanes = schedule.lanes_per_filter(n_in, rf)
    words = []
    for r in range(rf):
        vals = [wt2d[m * rf + r, f] for f in range(cout) for m in range(m_lanes)]
        words.append(_hex(_pack(vals, wb), wb * cout * m_lanes))
    return words


def _clone(design: Design, p: Process) -> None:
    n, w = len(p.outputs), design.streams[p.inputs[0]].width
    valid = "{" + ", ".join(f"m{i}_valid" for i in reversed(range(n))) + "}"
    ready = "{" + ", ".join(f"m{i}_ready" for i in reversed(range(n))) + "}"
    body = [f"    wire [{n * w - 1}:0] data_all;"]
    body += _inst("af_clone", {"W": w, "N": n}, "u_clone",
                  {"clk": "clk", "rst": "rst", **_stream_conns("s", "s_valid", "s_ready", "s_data"),
                   "m_valid": valid, "m_ready": ready, "m_data": "data_all"})
    body += [f"    assign m{i}_data = data_all[{(i + 1) * w - 1}:{i * w}];" for i in range(n)]
    p.library += ["af_clone.v"]
    p.body = _module(p, design, f"fan-out of one stream to {n} readers (a beat moves when all are ready)", body)


def _requant_rom(op, csd: bool) -> tuple:
    """(words, params) of af_requant's ROM (its header): word c holds bias[c] (BIAS_BITS) at bit 0, then per
    input k either mult[k, c] (MULT_BITS, csd False) or the CSD_TERMS terms of mult[k, c] from
    schedule.csd_tables, each (exponent EXP_BITS, sign 2 bits: 01 = +1, 11 = -1, 00 = unused)."""
    mult = np.asarray(op.arrays["mult"], np.int64)
    bias = np.asarray(op.arrays["bias"], np.int64)
    n, c = mult.shape
    bb = _sbits(bias)
    params = {"BIAS_BITS": bb}
    if csd:
        exps, signs, t = schedule.csd_tables(mult)       # entry [t, k*C + c]
        eb = max(1, int(exps.max()).bit_length())
        tb = eb + 2
        fields = []
        for ch in range(c):
            word = int(bias[ch]) & ((1 << bb) - 1)
            for k in range(n):
                for j in range(t):
                    e, sg = int(exps[j, k * c + ch]), int(signs[j, k * c + ch])
                    code = {1: 0b01, -1: 0b11, 0: 0b00}[sg]
                    word |= (e | (code << eb)) << (bb + (k * t + j) * tb)
            fields.append(_hex(word, bb + n * t * tb))
        params.update({"MULT_BITS": _sbits(mult), "CSD_TERMS": t, "EXP_BITS": eb})
        return fields, params
    mb = _sbits(mult)
    words = [_hex((int(bias[ch]) & ((1 << bb) - 1)) | (_pack(list(mult[:, ch]), mb) << bb), bb + n * mb)
             for ch in range(c)]
    params["MULT_BITS"] = mb
    return words, params


def _requant_inst(design: Design, p: Process, op, inst_prefix: str, in_ports: list, out_port: str,
                  reuse: int, first_in: tuple | None = None) -> list:
    """af_requant for QNet requant `op`. in_ports: the wrapper's port prefixes (or wires) for its inputs;
    first_in: (valid, ready, data, bits, signed) of an internal first input (a fused window layer's
    accumulators)."""
    net = design.net
    rq_in = list(op.inputs)
    bits = [_tensor_bits(net, t) for t in rq_in]
    if first_in is not None:
        bits[0] = (first_in[3], first_in[4], bits[0][2])
    out = net.tensors[op.output]
    c = int(out.shape[-1])
    rom = f"{p.name}_rq.hex"
    words, extra = _requant_rom(op, design.shift_add)
    p.roms[rom] = words
    # the requant's inputs are QNet tensors (a fused layer's accumulators too): their declared ranges
    sum_bits = schedule.requant_sum_bits(op.arrays["bias"], op.arrays["mult"],
                                         [(net.tensors[t].lo, net.tensors[t].hi) for t in rq_in], int(op.attrs["shift"]))
    params = {"C": c, "N_INPUTS": len(rq_in), "IN_BITS": bits[0][0], "IN_SIGNED": int(bits[0][1]),
              "IN1_BITS": bits[1][0] if len(bits) > 1 else 1, "IN1_SIGNED": int(bits[1][1]) if len(bits) > 1 else 0,
              "OUT_BITS": int(out.bits), "OUT_SIGNED": int(out.signed), "SHIFT": int(op.attrs["shift"]),
              "LO": int(out.lo), "HI": int(out.hi), **extra, "SUM_BITS": sum_bits, "CSD": int(design.shift_add),
              "REUSE": int(reuse), "ROM_FILE": f'"{rom}"'}
    conns = {"clk": "clk", "rst": "rst"}
    lines = []
    if first_in is not None:
        conns.update({"s_valid": first_in[0], "s_ready": first_in[1], "s_data": first_in[2]})
    else:
        conns.update(_stream_conns("s", f"{in_ports[0]}_valid", f"{in_ports[0]}_ready", f"{in_ports[0]}_data"))
    if len(rq_in) > 1:
        conns.update(_stream_conns("s1", f"{in_ports[1]}_valid", f"{in_ports[1]}_ready", f"{in_ports[1]}_data"))
    else:
        # one input: the residual port is tied to 0 (af_requant's header) and its ready left unread
        lines += ["    wire s1_unused_ready;"]
        conns.update({"s1_valid": "1'b0", "s1_ready": "s1_unused_ready", "s1_data": f"{c}'b0"})
    conns.update(_stream_conns("m", f"{out_port}_valid", f"{out_port}_ready", f"{out_port}_data"))
    return lines + _inst("af_requant", params, f"u_{inst_prefix}_rq", conns)


def _window(design: Design, p: Process, op, rq) -> None:
    net = design.net
    g = schedule.WindowGeometry.from_qnet_op(net, op)
    if g.filt_height != g.filt_width:
        raise AdderFlowError(f"layer {op.name}: {g.filt_height}x{g.filt_width} kernel; the RTL window (af_window) "
                             f"takes square kernels only")
    wt = np.asarray(op.arrays["weight"], np.int64)
    w2 = wt.reshape(g.n_in, g.n_filt)           # tap t = (u*K + v)*C + c, the weight's row-major flattening
    xb, xs, _ = _tensor_bits(net, op.inputs[0])
    wb = _sbits(wt)
    acc = net.tensors[op.output]
    rf = schedule.check_reuse(op.name, g.n_in, p.rf)
    rq_r = schedule.requant_reuse(g.n_filt, rf) if rq is not None else 0
    p.estimate_cycles = schedule.window_steps(g, rf, rq_r) + schedule.PIPELINE_DEPTH["window"]
    win_w = g.n_in * xb
    body = ["    wire win_valid, win_ready;", f"    wire [{win_w - 1}:0] win_data;",
            "    wire acc_valid, acc_ready;", f"    wire [{g.n_filt * acc.bits - 1}:0] acc_data;"]
    body += _inst("af_window", {"H": g.in_height, "W": g.in_width, "C": g.n_chan, "B": xb, "K": g.filt_height,
                                "STRIDE": g.stride, "PAD_T": g.pad_top, "PAD_B": g.pad_bottom, "PAD_L": g.pad_left,
                                "PAD_R": g.pad_right}, "u_window",
                  {"clk": "clk", "rst": "rst", **_stream_conns("s", "s_valid", "s_ready", "s_data"),
                   **_stream_conns("m", "win_valid", "win_ready", "win_data")})
    rom = f"{p.name}_w.hex"
    p.roms[rom] = _lane_rom(w2, rf, wb)
    lane_params = {"N_IN": g.n_in, "COUT": g.n_filt, "RF": rf, "XB": xb, "WB": wb, "ACC_BITS": acc.bits}
    lanes_conns = {"clk": "clk", "rst": "rst", **_stream_conns("s", "win_valid", "win_ready", "win_data")}
    out_acc = _stream_conns("m", "acc_valid", "acc_ready", "acc_data") if rq is not None else \
        _stream_conns("m", "m_valid", "m_ready", "m_data")
    if op.kind == "adder2d":
        goc = np.asarray(op.arrays["group_of_channel"], np.int64)
        gm = np.asarray(op.arrays["group_in_mult"], np.int64)
        gs = np.asarray(op.arrays["group_in_shift"], np.int64)
        n_g = len(gm)
        giw = max(1, int(n_g - 1).bit_length())
        gmb = _sbits(gm)
        gsb = max(1, int(gs.max()).bit_length())
        lane_params.update({"G": n_g, "GIW": giw, "GMB": gmb, "GSB": gsb, "GROUP_OF": _vparam(goc, giw),
                            "GMULT": _vparam(gm, gmb), "GSHIFT": _vparam(gs, gsb), "ROM_FILE": f'"{rom}"'})
        body += _inst("af_sad_array", lane_params, "u_lanes", {**lanes_conns, **out_acc})
        p.library += ["af_sad_array.v"]
        what = f"adder layer {op.name}: |a - w| lanes"
    else:
        lane_params.update({"X_SIGNED": int(xs), "ROM_FILE": f'"{rom}"'})
        body += _inst("af_mac_array", lane_params, "u_lanes", {**lanes_conns, **out_acc})
        p.library += ["af_mac_array.v"]
        what = f"conv layer {op.name}: product lanes"
    if rq is not None:
        in_ports = ["acc"] + (["s1"] if len(rq.inputs) > 1 else [])
        # the HLS fused requant's lanes: R = requant_reuse(n_filt, RF) cycles per pixel, within the kernel's RF
        body += _requant_inst(design, p, rq, "fused", in_ports, "m", rq_r,
                              first_in=("acc_valid", "acc_ready", "acc_data", int(acc.bits), bool(acc.signed)))
        p.library += ["af_requant.v"]
        what += f", requant {rq.name} fused" + (" with the residual input" if len(rq.inputs) > 1 else "")
    else:
        body.insert(0, "    // no fused requant: the accumulators are the output stream")
        body = [b for b in body if "acc_" not in b or "wire" not in b]
    p.library += ["af_window.v"]
    p.body = _module(p, design, f"{what}; {g.in_height}x{g.in_width}x{g.n_chan} -> {g.out_height}x{g.out_width}x"
                                f"{g.n_filt}, {g.filt_height}x{g.filt_width} stride {g.stride}, RF {rf}", body)


# ---- the top ------------------------------------------------------------------------------------------

def _top(design: Design) -> str:
    net = design.net
    s_list = list(design.streams.values())
    cnt_w = [_count_bits(s.depth) for s in s_list]
    cnt_total = sum(cnt_w)
    n = len(s_list)
    from flow.driver.packing import input_layout, output_layout

    lin, lout = input_layout(net, WORD_BITS), output_layout(net, WORD_BITS)
    L = [f"// {TOP}: the generated design's AXI-stream top ({WORD_BITS}-bit DMA words, flow/driver/packing.py",
         "// layouts). Generated by flow/rtl/generate.py; do not edit.",
         "// fifo_count: every stream FIFO's `count`, stream i at the offset manifest.json gives; in_valid/in_ready",
         "// (producer side) and out_valid/out_ready (consumer side) of every stream, bit i = stream i: the harness",
         "// reads them for high-water marks and to name the stalled streams of a deadlock.",
         f"module {TOP} (",
         "    input wire clk,", "    input wire rst,",
         f"    input wire [{WORD_BITS - 1}:0] s_axis_tdata,", "    input wire s_axis_tvalid,",
         "    output wire s_axis_tready,", "    input wire s_axis_tlast,",
         f"    output wire [{WORD_BITS - 1}:0] m_axis_tdata,", "    output wire m_axis_tvalid,",
         "    input wire m_axis_tready,", "    output wire m_axis_tlast,",
         "    output wire [1:0] status,",
         f"    output wire [{cnt_total - 1}:0] fifo_count,",
         f"    output wire [{n - 1}:0] in_valid,", f"    output wire [{n - 1}:0] in_ready,",
         f"    output wire [{n - 1}:0] out_valid,", f"    output wire [{n - 1}:0] out_ready", ");"]
    for s in s_list:
        L += [f"    // stream {s.name}: {s.producer} -> {s.consumer}, {s.width} bits, depth {s.depth}",
              f"    wire {s.name}_in_valid, {s.name}_in_ready, {s.name}_out_valid, {s.name}_out_ready;",
              f"    wire [{s.width - 1}:0] {s.name}_in_data, {s.name}_out_data;",
              f"    wire [{_count_bits(s.depth) - 1}:0] {s.name}_count;"]
    off = 0
    for i, (s, w) in enumerate(zip(s_list, cnt_w)):
        L += [f"    assign fifo_count[{off + w - 1}:{off}] = {s.name}_count;",
              f"    assign in_valid[{i}] = {s.name}_in_valid;", f"    assign in_ready[{i}] = {s.name}_in_ready;",
              f"    assign out_valid[{i}] = {s.name}_out_valid;", f"    assign out_ready[{i}] = {s.name}_out_ready;"]
        off += w
    for s in s_list:
        L += _inst("af_fifo", {"W": s.width, "DEPTH": s.depth}, f"u_fifo_{s.name}",
                   {"clk": "clk", "rst": "rst",
                    **_stream_conns("s", f"{s.name}_in_valid", f"{s.name}_in_ready", f"{s.name}_in_data"),
                    **_stream_conns("m", f"{s.name}_out_valid", f"{s.name}_out_ready", f"{s.name}_out_data"),
                    "count": f"{s.name}_count"})
    ib, isg, ic = _tensor_bits(net, net.input)
    L += _inst("af_axis_in", {"VALUES": lin.values, "VALUE_BITS": lin.value_bits, "SIGNED": int(lin.signed),
                              "WORD_BITS": WORD_BITS, "C": ic}, "u_axis_in",
               {"clk": "clk", "rst": "rst", "s_axis_tdata": "s_axis_tdata", "s_axis_tvalid": "s_axis_tvalid",
                "s_axis_tready": "s_axis_tready", "s_axis_tlast": "s_axis_tlast",
                **_stream_conns("m", f"{design.input_stream}_in_valid", f"{design.input_stream}_in_ready",
                                f"{design.input_stream}_in_data"), "status": "status"})
    ob, osg, oc = _tensor_bits(net, net.output)
    so = design.output_stream
    L += _inst("af_axis_out", {"VALUES": lout.values, "VALUE_BITS": ob,
                               "SIGNED": int(osg), "WORD_BITS": WORD_BITS, "C": oc}, "u_axis_out",
               {"clk": "clk", "rst": "rst", **_stream_conns("s", f"{so}_out_valid", f"{so}_out_ready", f"{so}_out_data"),
                "m_axis_tdata": "m_axis_tdata", "m_axis_tvalid": "m_axis_tvalid", "m_axis_tready": "m_axis_tready",
                "m_axis_tlast": "m_axis_tlast"})
    for p in design.processes:
        conns = {"clk": "clk", "rst": "rst"}
        for i, s in enumerate(p.inputs):
            conns.update(_stream_conns("s" if i == 0 else f"s{i}", f"{s}_out_valid", f"{s}_out_ready", f"{s}_out_data"))
        for i, s in enumerate(p.outputs):
            pre = "m" if len(p.outputs) == 1 else f"m{i}"
            conns.update(_stream_conns(pre, f"{s}_in_valid", f"{s}_in_ready", f"{s}_in_data"))
        ps = ",\n".join(f"        .{k}({v})" for k, v in conns.items())
        L += [f"    {p.module} u_{p.name} (\n{ps}\n    );"]
    L += ["endmodule", ""]
    return "\n".join(L)


def _count_bits(depth: int) -> int:
    """Width of af_fifo's `count` ([$clog2(DEPTH+1)-1:0], rtl/README.md)."""
    return max(1, int(depth).bit_length())


def stream_table(design: Design) -> list:
    """Manifest rows of the streams, with the bit offset of each FIFO count in `fifo_count`."""
    rows, off = [], 0
    for i, s in enumerate(design.streams.values()):
        w = _count_bits(s.depth)
        rows.append({"name": s.name, "tensor": s.tensor, "width": s.width, "depth": s.depth, "producer": s.producer,
                     "consumer": s.consumer, "index": i, "count_offset": off, "count_bits": w})
        off += w
    return rows


# ---- writing BUILD/rtl ----------------------------------------------------------------------------------

def write_design(design: Design, out: Path, board=None, clock_mhz: float | None = None) -> dict:
    """Every file of the design into the (new, empty) folder `out`; returns the manifest."""
    from flow.boards import get_board

    out = Path(out)
    lib = rtl_library_dir()
    used = sorted({"af_fifo.v", "af_axis_in.v", "af_axis_out.v"} | {f for p in design.processes for f in p.library})
    missing = [f for f in used if not (lib / f).is_file()]
    if missing:
        raise AdderFlowError(f"RTL library {lib} lacks {', '.join(missing)} (the rtl/ modules this design uses)")
    for f in used:
        shutil.copyfile(lib / f, out / f)
    harness = lib / "harness" / HARNESS_CPP
    if not harness.is_file():
        raise AdderFlowError(f"RTL library {lib} lacks harness/{HARNESS_CPP} (the Verilator harness)")
    shutil.copyfile(harness, out / HARNESS_CPP)
    layers = []
    for p in design.processes:
        (out / f"{p.module}.v").write_text(p.body)
        for rom, words in p.roms.items():
            (out / rom).write_text("\n".join(words) + "\n")
        layers.append({"name": p.name, "module": p.module, "kind": p.kind, "ops": p.ops, "rf": p.rf,
                       "files": [f"{p.module}.v"] + p.library, "roms": sorted(p.roms),
                       "estimate_cycles": int(p.estimate_cycles), "inputs": p.inputs, "outputs": p.outputs})
    (out / f"{TOP}.v").write_text(_top(design))
    b = get_board(board) if isinstance(board, str) else board
    streams = stream_table(design)
    manifest = {"top": TOP, "files": used + [f"{p.module}.v" for p in design.processes] + [f"{TOP}.v"],
                "board": b.name if b else None, "part": b.part if b else None,
                "clock_mhz": float(clock_mhz or (b.clock_mhz if b else 100.0)), "word_bits": WORD_BITS,
                "shift_add": design.shift_add, "layers": layers, "streams": streams,
                "input_stream": design.input_stream, "output_stream": design.output_stream,
                "estimate_interval_cycles": max(p.estimate_cycles for p in design.processes)}
    _write_harness_cfg(design, streams, out / HARNESS_CFG)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _write_harness_cfg(design: Design, streams: list, path: Path) -> None:
    """The C++ constants the Verilator harness needs about this top (one definition: the manifest rows)."""
    from flow.driver.packing import input_layout, output_layout

    lin, lout = input_layout(design.net, WORD_BITS), output_layout(design.net, WORD_BITS)
    names = ", ".join(f'"{s["name"]}"' for s in streams)
    L = ["// Generated by flow/rtl/generate.py: what the harness knows about af_top.", "#pragma once",
         f"static const int AF_N_STREAMS = {len(streams)};",
         f"static const char *const AF_STREAM_NAMES[] = {{{names}}};",
         f"static const int AF_STREAM_DEPTH[] = {{{', '.join(str(s['depth']) for s in streams)}}};",
         f"static const int AF_COUNT_OFFSET[] = {{{', '.join(str(s['count_offset']) for s in streams)}}};",
         f"static const int AF_COUNT_BITS[] = {{{', '.join(str(s['count_bits']) for s in streams)}}};",
         f"static const int AF_WORDS_IN = {lin.words};", f"static const int AF_WORDS_OUT = {lout.words};", ""]
    path.write_text("\n".join(L))


def write_rtl(net: QNet, out, reuse: dict | None = None, shift_add: bool = False, board="pynq-z2",
              clock_mhz: float | None = None, depth_override: dict | None = None) -> dict:
    """plan + write_design into the existing empty folder `out` (the library entry point; `generate` stages
    it into BUILD/rtl). Returns the manifest."""
    return write_design(plan(net, reuse, shift_add, depth_override), Path(out), board, clock_mhz)


def read_build_design(build: Path) -> tuple:
    """(qnet, reuse, shift_add, board, clock_mhz) of an `adderflow hls` build folder (its qnet/ and the design
    its report.json records)."""
    from flow import qnet as qnet_mod
    from flow.outputs import require_complete

    build = require_complete(Path(build))
    try:
        net = qnet_mod.load(build / "qnet")
    except qnet_mod.QNetError as exc:
        raise AdderFlowError(str(exc)) from None
    rp = build / "report.json"
    rep = {}
    if rp.is_file():
        try:
            rep = json.loads(rp.read_text())
        except json.JSONDecodeError as exc:
            raise AdderFlowError(f"{rp}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    reuse = rep.get("reuse") or {}
    if not isinstance(reuse, dict):
        raise AdderFlowError(f"{rp}: 'reuse' must be a mapping of layer -> reuse factor")
    shift_add = bool((rep.get("hls") or {}).get("zero_dsp", False))
    return net, reuse, shift_add, rep.get("board") or "pynq-z2", rep.get("clock_mhz")


def generate(build, force: bool = False, depth_override: dict | None = None, quiet: bool = False) -> Path:
    """BUILD/rtl/ from BUILD/qnet and the design BUILD/report.json records, staged and swapped in."""
    from flow.outputs import check_output, staged_output

    build = Path(build)
    target = build / RTL_DIR
    check_output(target, force, kind="dir", what="rtl output")
    net, reuse, shift_add, board, clock = read_build_design(build)
    with staged_output(target, force, kind="dir", what="rtl output") as tmp:
        man = write_rtl(net, tmp, reuse, shift_add, board, clock, depth_override)
    if not quiet:
        print(f"[rtl] wrote {target}: {len(man['layers'])} layer modules, {len(man['streams'])} stream FIFOs, "
              f"top {TOP}", flush=True)
    return target
