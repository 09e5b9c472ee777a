"""Operation counts per layer and in total, as the AdderNet papers count them, and as our hardware does.

Paper convention (Chen et al. CVPR 2020, Table 1): a convolution term x*w + acc is 1 Mul + 1 Add; an
adder term |x - w| + acc is 2 Add (subtract, accumulate), no Mul; only conv/adder/fc layers count.
Published ResNet-20 (CIFAR-10): CNN 41.17M Mul + 41.17M Add; AdderNet 0.45M Mul + 81.89M Add.

"hardware" adds what the integer network really executes per image: requant multiplies (one per
element per input, i.e. BN scale and residual rescale) and its bias add, residual adds, pool adds and the
adder layers' per-group input rescale. With zero-DSP options a constant multiply becomes shift-adds:
an op with `apot_terms` (requant multipliers, first conv / classifier weights, adder group rescale)
-> (non-zero CSD digits of the constant - 1) adds per product, counted from the actual constants,
exactly as the backend's shift-add pass expands them.
"""

from __future__ import annotations

import numpy as np

from flow.csd import csd_nonzero_digits
from flow.qnet import QNet

PUBLISHED_RESNET20 = {
    "source": "AdderNet (Chen et al., CVPR 2020), Table 1, ResNet-20 on CIFAR-10",
    "cnn": {"mul": 41.17e6, "add": 41.17e6},
    "addernet": {"mul": 0.45e6, "add": 81.89e6},
}


def _shift_add(attrs: dict) -> bool:
    """The op asks for its constant multiplications as shift-adds (quantizer APoT attrs)."""
    return bool(attrs.get("apot_terms") or attrs.get("shift_add"))


def _shift_add_adds(weight: np.ndarray, uses_per_weight: int) -> int:
    """Adds replacing the multiplications by these constant weights (shifts are free wiring)."""
    nz = csd_nonzero_digits(weight)
    return int(np.maximum(nz - 1, 0).sum()) * uses_per_weight


def layer_counts(net: QNet, op) -> dict:
    """{'terms', 'paper': {mul, add}, 'hardware': {mul, add}, 'zero_dsp': {mul, add}} for one op."""
    t_out = net.tensors[op.output]
    a = op.attrs
    if op.kind in ("conv2d", "adder2d"):
        ho, wo, cout = t_out.shape
        k, _, cin, _ = op.arrays["weight"].shape
        pixels = ho * wo
        terms = pixels * cout * k * k * cin
        if op.kind == "conv2d":
            paper = {"mul": terms, "add": terms}
            zero = ({"mul": 0, "add": terms + _shift_add_adds(op.arrays["weight"], pixels)} if _shift_add(a)
                    else dict(paper))
            hw = dict(paper)
        else:
            paper = {"mul": 0, "add": 2 * terms}
            h, w, _ = net.tensors[op.inputs[0]].shape
            rescaled = int(np.count_nonzero(op.arrays.get("group_in_mult", np.zeros(1))))
            # each rescaled group version of the input: one multiply (+ rounding add) per input element
            hw = {"mul": rescaled * h * w * cin, "add": 2 * terms + rescaled * h * w * cin}
            zero = dict(hw)
            if rescaled and _shift_add(a):
                zero = {"mul": 0, "add": hw["add"] + _shift_add_adds(op.arrays["group_in_mult"], h * w * cin)}
        return {"terms": terms, "paper": paper, "hardware": hw, "zero_dsp": zero}
    if op.kind == "dense":
        cin, cout = op.arrays["weight"].shape
        terms = cin * cout
        paper = {"mul": terms, "add": terms}
        zero = ({"mul": 0, "add": terms + _shift_add_adds(op.arrays["weight"], 1)} if _shift_add(a)
                else dict(paper))
        return {"terms": terms, "paper": paper, "hardware": dict(paper), "zero_dsp": zero}
    if op.kind == "global_sum_pool":
        h, w, c = net.tensors[op.inputs[0]].shape
        hw = {"mul": 0, "add": (h * w - 1) * c}
        return {"terms": h * w * c, "paper": {"mul": 0, "add": 0}, "hardware": hw, "zero_dsp": dict(hw)}
    if op.kind == "requant":
        elements = int(np.prod(t_out.shape))
        n_in = len(op.inputs)
        hw = {"mul": n_in * elements, "add": n_in * elements}     # products summed with the bias
        pixels = elements // max(1, t_out.shape[-1])
        zero = (dict(hw) if not _shift_add(a) else
                {"mul": 0, "add": hw["add"] + _shift_add_adds(op.arrays["mult"], pixels)})
        return {"terms": elements, "paper": {"mul": 0, "add": 0}, "hardware": hw, "zero_dsp": zero}
    raise ValueError(f"op {op.name}: unknown kind {op.kind}")


def count_ops(net: QNet) -> dict:
    """Per-layer and total counts; the `zero_dsp` view applies the ops' apot_terms/shift_add attrs."""
    per_layer, totals = [], {v: {"mul": 0, "add": 0} for v in ("paper", "hardware", "zero_dsp")}
    for op in net.ops:
        c = layer_counts(net, op)
        per_layer.append({"name": op.name, "kind": op.kind, **c})
        for v in totals:
            for k in ("mul", "add"):
                totals[v][k] += c[v][k]
    macs = sum(c["terms"] for c in per_layer if c["kind"] in ("conv2d", "adder2d"))
    return {"per_layer": per_layer, "total": totals, "conv_adder_terms": macs,
            "published_resnet20": PUBLISHED_RESNET20,
            "convention": "paper: conv/adder/fc only, MAC = 1 mul + 1 add, SAD term = 2 add; hardware: plus "
                          "requant, residual, pool, input rescale; zero_dsp: constant multiplies as shift-adds"}


def explain_resnet20_difference(counts: dict, adder: bool) -> list[str]:
    """Lines comparing our paper-style totals with the published ResNet-20 table."""
    pub = PUBLISHED_RESNET20["addernet" if adder else "cnn"]
    ours = counts["total"]["paper"]
    first_last = sum(c["paper"]["mul"] for c in counts["per_layer"] if c["kind"] in ("conv2d", "dense"))
    lines = [f"ours (paper convention): {ours['mul'] / 1e6:.2f}M mul + {ours['add'] / 1e6:.2f}M add; "
             f"published: {pub['mul'] / 1e6:.2f}M mul + {pub['add'] / 1e6:.2f}M add",
             f"conv/adder layers alone: {counts['conv_adder_terms'] / 1e6:.2f}M terms (MAC or SAD)"]
    if adder:
        lines.append(f"multiplications left: conv1 + fc = {first_last / 1e6:.3f}M (published 0.45M); the published "
                     f"adds equal 2 x 41.17M - 0.45M = 81.89M, i.e. the published CNN total with every multiply "
                     f"except the first/last layers' turned into an add")
    cnn_total = counts["conv_adder_terms"] + sum(c["terms"] for c in counts["per_layer"] if c["kind"] == "dense")
    bn, residual, pool = _elementwise(counts)
    lines.append(f"the published 41.17M exceeds our conv+adder+fc terms ({cnn_total / 1e6:.2f}M) by "
                 f"{(41.17e6 - cnn_total) / 1e6:.2f}M; the paper does not state its counting rule. Per-element work "
                 f"we do not count as MACs is of that size but does not match it exactly: BN scale "
                 f"{bn / 1e6:.2f}M, residual adds {residual / 1e6:.2f}M, pooling {pool / 1e6:.3f}M "
                 f"(sum {(bn + residual + pool) / 1e6:.2f}M)")
    return lines


def _elementwise(counts: dict) -> tuple[int, int, int]:
    """(BN-scale products, residual adds, pool adds) of the network."""
    bn = sum(c["terms"] for c in counts["per_layer"] if c["kind"] == "requant")
    residual = sum(c["terms"] for c in counts["per_layer"]
                   if c["kind"] == "requant" and c["hardware"]["mul"] == 2 * c["terms"])
    pool = sum(c["hardware"]["add"] for c in counts["per_layer"] if c["kind"] == "global_sum_pool")
    return bn, residual, pool
