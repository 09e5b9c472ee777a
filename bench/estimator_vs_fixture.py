"""The estimator against the one real Vivado HLS report we have (../shared/fixtures/vivado_hls_2020.1_report).

What the fixture is (read from its csynth report): a stock hls4ml io_stream design, `myproject`, on the
xc7z020 (pynq-z2 part) at a 5 ns target clock: a 16 -> 5 dense layer on ap_fixed<16,6> values
(`dense_array_array_ap_fixed_16_6_5_3_0_5u_config2`, 16 input streams) followed by a ReLU (`relu_..._5u`).
Its weights are not in the fixture.

What we compare: the same model class expressed as a QNet (dense 16 -> 5 on 16-bit integers with
16-bit weights, accumulating at hls4ml's default 16-bit accum_t, reuse factor 1, then a requant with
multiplier 1 / shift 0 / clip at 0 = ReLU), estimated for the same part and clock without the PYNQ
platform (the fixture has none). Writes bench/results/estimator_vs_fixture.md.

    python bench/estimator_vs_fixture.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.boards import get_board  # noqa: E402
from flow.paths import shared_dir  # noqa: E402
from flow.qnet import Op, QNet, TensorSpec  # noqa: E402
from flow.report.estimate import estimate  # noqa: E402
from flow.report.parse import parse_reports  # noqa: E402

OUT_MD = ROOT / "bench" / "results" / "estimator_vs_fixture.md"


def fixture_class_qnet(trivial_weights: int = 0, seed: int = 0) -> QNet:
    """Dense 16 -> 5 + ReLU on 16-bit values; `trivial_weights` of the 80 are 0 or powers of two."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-2 ** 15, 2 ** 15, (16, 5))
    w[np.abs(w) < 3] = 3
    flat = w.reshape(-1)
    flat[:trivial_weights] = [(1 << (i % 12)) * (-1) ** i for i in range(trivial_weights)]
    ts = {"x": TensorSpec("x", (16,), 16, True), "acc": TensorSpec("acc", (5,), 37, True, kind="acc"),
          "y": TensorSpec("y", (5,), 16, False)}
    ops = [Op("dense", "dense", ["x"], "acc", {}, {"weight": w}),
           Op("requant", "relu", ["acc"], "y", {"shift": 0}, {"mult": np.ones((1, 5), np.int64),
                                                            "bias": np.zeros(5, np.int64)})]
    net = QNet(ts, ops, "x", "y").validate()
    net.tensors["acc"].bits = 16      # hls4ml's default accum_t is ap_fixed<16,6>: 16-bit adders (wrapping)
    return net


def pct(est, real):
    return "-" if not real else f"{100.0 * (est - real) / real:+.0f}%"


def main() -> int:
    sd = shared_dir()
    fx = sd / "fixtures" / "vivado_hls_2020.1_report" if sd else None
    if fx is None or not fx.is_dir():
        print("estimator_vs_fixture: ../shared/fixtures/vivado_hls_2020.1_report is absent", file=sys.stderr)
        return 2
    real = parse_reports(fx)
    cs, vs = real["csynth"], real["vivado_synth"]
    clock_mhz = 1e3 / cs["target_clock_ns"]
    board = get_board("pynq-z2")
    # 80 products, 73 DSPs in csynth: 7 products evidently needed no multiplier (0 / power-of-two weights)
    trivial = 80 - cs["resources"]["DSP"]
    e = estimate(fixture_class_qnet(trivial), board, clock_mhz, reuse=1, include_platform=False)
    el, er = e["latency"], e["resources"]
    e0 = estimate(fixture_class_qnet(0), board, clock_mhz, reuse=1, include_platform=False)
    by = {L["name"]: L for L in e["per_layer"]}
    inst = {r["module"].split("_array")[0]: r for r in cs.get("per_instance", [])}
    rows = [("latency (cycles)", el["cycles"], cs["latency_cycles"]["worst"], None),
            ("interval (cycles)", el["interval_cycles"], cs["interval_cycles"]["max"], None),
            ("dense latency (cycles)", by["dense"]["cycles"], inst.get("dense", {}).get("latency_max"), None),
            ("LUT", er["LUT"], cs["resources"]["LUT"], vs.get("LUT")),
            ("FF", er["FF"], cs["resources"]["FF"], vs.get("FF")),
            ("DSP (7 trivial weights given, matched by construction)", er["DSP"], cs["resources"]["DSP"],
             vs.get("DSP")),
            ("DSP (weights unknown: every product a multiplier)", e0["resources"]["DSP"], cs["resources"]["DSP"],
             vs.get("DSP")),
            ("BRAM_18K", er["BRAM_18K"], cs["resources"]["BRAM_18K"], vs.get("BRAM_18K")),
            ("dense LUT", by["dense"]["resources"]["LUT"], inst.get("dense", {}).get("LUT"), None),
            ("dense FF", by["dense"]["resources"]["FF"], inst.get("dense", {}).get("FF"), None),
            ("ReLU/requant LUT", by["relu"]["resources"]["LUT"], inst.get("relu", {}).get("LUT"), None)]
    lines = ["# Estimator vs the real Vivado HLS 2020.1 fixture", "",
             f"Fixture: `{fx}` - stock hls4ml io_stream `myproject` on {real['part']} at "
             f"{cs['target_clock_ns']} ns ({clock_mhz:.0f} MHz): dense 16 -> 5 on ap_fixed<16,6>, then ReLU. "
             "Made by `python bench/estimator_vs_fixture.py`.", "",
             "| quantity | estimate | csynth (real) | error vs csynth | Vivado synth (real) | error vs Vivado |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, est, c, v in rows:
        est = int(round(est))
        lines.append(f"| {name} | {est:,} | {'-' if c is None else f'{c:,}'} | {pct(est, c)} | "
                     f"{'-' if v is None else f'{v:,}'} | {pct(est, v)} |")
    lines += ["", "## What can be compared, and what cannot", "",
              "- Same model class and schedule: a fully unrolled (RF = 1) dense layer in an io_stream DATAFLOW, "
              "one multiplier per 16 x 16-bit product, an adder tree at the 16-bit accumulator width, then a "
              "one-cycle activation. That is what our `int_dense_stream` + `requant_stream` generate too, so the "
              "cycle counts and the DSP count are comparable.",
              f"- DSP: 80 products. csynth binds 73 DSPs, so evidently 7 products got no DSP (HLS does that "
              f"for zero or power-of-two constant weights, which become shifts); the fixture does not "
              f"contain the weights, so the estimate above is given 7 such weights to match the class. With none the estimate is "
              f"{e0['resources']['DSP']} DSP. Vivado synthesis then removes 7 more (66): an effect after HLS that "
              f"the model does not represent.",
              "- LUT/FF: the estimate models our templates (calibrated on yosys elements), not hls4ml's stock "
              "`dense_latency`; csynth's LUT/FF are pre-synthesis HLS estimates that Vivado cuts substantially "
              f"(LUT {cs['resources']['LUT']:,} -> {vs.get('LUT'):,}, FF {cs['resources']['FF']:,} -> "
              f"{vs.get('FF'):,}: HLS pipeline registers and unused bits are trimmed). The error against the "
              "Vivado figure is the one that matters for fitting a board.",
              "- Latency: the estimate charges our dense template's per-call overhead (call, clear, emit) and an "
              "adder-tree depth; hls4ml's stock dense is a 7-cycle pipeline. One data point of a 2-layer "
              "design cannot calibrate a ResNet-20 estimate: it checks the order of magnitude and the DSP rule. "
              "The ResNet-20 figures need a csynth/Vivado run of our own backend (`adderflow hls --synth`), "
              "which `adderflow report` then reads in place of the estimate.",
              "- Not comparable: the per-layer line buffers, SAD lanes, weight memories and stream FIFOs that "
              "dominate ResNet-20 do not exist in this design, so their calibration is untested by it."]
    OUT_MD.parent.mkdir(parents=True, exist_ok=True)
    OUT_MD.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
