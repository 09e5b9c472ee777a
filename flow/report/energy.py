"""ASIC-energy estimate per image from operation counts (Horowitz, ISSCC 2014, 45 nm, 0.9 V).

Published points: 8-bit add 0.03 pJ, 32-bit add 0.1 pJ, 8-bit mult 0.2 pJ, 32-bit mult 3.1 pJ.
Between/below them: adds linear in width through the two points, mults quadratic (0.2 pJ x (b/8)^2
gives 3.2 pJ at 32 bits, within 3% of the published 3.1). This is an ASIC figure for the arithmetic
only (no memory, no FPGA routing): it ranks designs, it does not predict board power.
"""

from __future__ import annotations

from flow.qnet import QNet
from flow.report.opcount import layer_counts

LABEL = "ASIC-energy estimate (Horowitz 45 nm arithmetic only; not FPGA power)"
HOROWITZ_PJ = {"add8": 0.03, "add32": 0.1, "mul8": 0.2, "mul32": 3.1}


def add_pj(bits: int) -> float:
    return max(0.005, HOROWITZ_PJ["add8"] + (bits - 8) * (HOROWITZ_PJ["add32"] - HOROWITZ_PJ["add8"]) / 24)


def mul_pj(bits: int) -> float:
    return HOROWITZ_PJ["mul8"] * (bits / 8) ** 2


def _widths(net: QNet, op) -> tuple[int, int]:
    """(multiplier operand width, adder width) of one op's arithmetic."""
    acc = net.tensors[op.output].bits
    x = net.tensors[op.inputs[0]].bits
    if op.kind in ("conv2d", "dense"):
        return x, acc
    if op.kind == "requant":
        return max(net.tensors[t].bits for t in op.inputs), acc + int(op.attrs.get("shift", 0))
    return x, acc


def energy_per_image(net: QNet, view: str = "hardware") -> dict:
    """pJ per image, per layer and total, for op counts `view` ('paper'|'hardware'|'zero_dsp') at the
    network's own widths, plus the same counts priced at 32 bits (the AdderNet papers' setting)."""
    per_layer, total, total32 = [], 0.0, 0.0
    for op in net.ops:
        c = layer_counts(net, op)[view]
        mbits, abits = _widths(net, op)
        e = c["mul"] * mul_pj(mbits) + c["add"] * add_pj(abits)
        if op.kind == "adder2d":  # half the adds are the (x+1)-bit subtractions
            e -= (c["add"] / 2) * (add_pj(abits) - add_pj(mbits + 1))
        e32 = c["mul"] * HOROWITZ_PJ["mul32"] + c["add"] * HOROWITZ_PJ["add32"]
        per_layer.append({"name": op.name, "pj": e, "mul_bits": mbits, "add_bits": abits})
        total += e
        total32 += e32
    return {"label": LABEL, "view": view, "per_layer": per_layer, "total_uj": total / 1e6,
            "total_uj_at_32bit": total32 / 1e6, "pj_per_op": HOROWITZ_PJ,
            "rule": "add: linear in width through 8/32-bit points; mult: 0.2 pJ x (b/8)^2"}
