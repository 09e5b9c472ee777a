"""The estimator held against the register-transfer design: yosys LUT/FF/BRAM/DSP per layer and Verilator
cycles, a LUT recalibration fitted on the layers, and the CNN twin synthesised the same way.

    python bench/rtl_vs_estimate.py BUILD [--twin TWIN_BUILD] [--make-twin] [--recalibrate] [--jobs 2]

BUILD is an `adderflow hls` build with BUILD/rtl (`adderflow rtl BUILD`) synthesised by
`adderflow synth BUILD --yosys` (report.json "yosys"); BUILD/rtl/cosim.json (`adderflow cosim`) is used
when present. --make-twin writes TWIN_BUILD (default BUILD_cnn_twin): the same QNet with every adder2d
replaced by a conv2d of the same integer weights (accumulators re-sized by QNet.infer_widths; accuracy is
irrelevant, it only has to be the same design with products instead of |a - w|), then its RTL and yosys run.

Recalibration (--recalibrate): per estimator LUT term t ("<class>.<part>", calibration.lut_term: the parts each
per-op model prices, e.g. adder.lanes, adder.weights, requant.lanes) one scale s_t >= 0, fitted on ALL layers
of BUILD (and the twin, when given) at once to minimise sum_layers ((yosys - sum_t s_t * raw_t) / yosys)^2
+ RIDGE * sum_t (s_t - 1)^2 (relative error, as the 15 % target is; the ridge keeps terms a few layers barely
see near the model's own value). No layer is ever fitted by name. "streams.fifo" is set from the one whole-
design figure: (whole - sum of layers) / estimated FIFO LUTs. The scales go to
flow/report/data/lut_calibration.csv (one row per family and term, with the command that made them); the
table then shows every layer's residual with the new scales.

Writes bench/results/rtl_vs_estimate.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.boards import get_board  # noqa: E402
from flow.errors import AdderFlowError  # noqa: E402
from flow.report.calibration import (FAMILY_OF_BOARD, LUT_CALIBRATION_CSV, LUT_CALIBRATION_FIELDS,  # noqa: E402
                                     lut_term)

OUT_MD = ROOT / "bench" / "results" / "rtl_vs_estimate.md"
RIDGE = 0.02
# a term is fitted only when at least this many layers use it: a term of one layer (the stem conv, the
# dense, the pool, the last requant) fitted to it would be a per-layer correction under another name
MIN_LAYERS_PER_TERM = 3
TARGET_PCT = 15.0
RES = ("LUT", "FF", "BRAM_18K", "DSP")


# ---- inputs ---------------------------------------------------------------------------------------

def load_build(build: Path) -> dict:
    from flow import qnet as qnet_mod
    from flow.rtl.synth import load_manifest

    rep_p = build / "report.json"
    if not rep_p.is_file():
        raise AdderFlowError(f"{rep_p}: no report.json")
    rep = json.loads(rep_p.read_text())
    if "yosys" not in rep:
        raise AdderFlowError(f"{rep_p}: no yosys section (run `adderflow synth {build} --yosys` first)")
    man = load_manifest(build / "rtl")
    cos_p = build / "rtl" / "cosim.json"
    cosim = json.loads(cos_p.read_text()) if cos_p.is_file() else None
    return {"dir": build, "report": rep, "manifest": man, "cosim": cosim, "net": qnet_mod.load(build / "qnet")}


def estimator_for(b: dict, calibrated: bool):
    """The estimator of the build's design (its reuse factors and recorded options), raw or calibrated."""
    from flow.commands.report import _design_options
    from flow.report.estimate import Estimator

    rep = b["report"]
    board = get_board(rep["board"])
    est = Estimator(b["net"], board, rep.get("clock_mhz") or board.clock_mhz, rep.get("reuse"), strict=False,
                    lut_calibration=calibrated, **_design_options(rep))
    return est, est.run()


def process_rows(b: dict, run: dict) -> list[dict]:
    """One row per RTL process (manifest layer): its yosys figures and the estimate summed over the QNet ops it
    realises, with the estimate's LUTs split into terms (raw model values, for the fit)."""
    per_op = {L["name"]: L for L in run["per_layer"]}
    kinds = {o.name: o.kind for o in b["net"].ops}
    ys = b["report"]["yosys"]["layers"]
    rows = []
    for L in b["manifest"]["layers"]:
        if L["name"] not in ys:
            continue
        ops = [o for o in L.get("ops", [L["name"]]) if o in per_op]
        est = {k: sum(per_op[o]["resources"][k] for o in ops) for k in RES}
        terms: dict = {}
        for o in ops:
            for part, p in per_op[o]["parts"].items():
                t = lut_term(kinds[o], part)
                terms[t] = terms.get(t, 0.0) + p.get("LUT", 0.0)
        rows.append({"name": L["name"], "kind": L.get("kind"), "rf": L.get("rf"), "ops": ops, "estimate": est,
                     "op_kinds": [kinds[o] for o in ops],
                     "terms": terms, "yosys": {k: ys[L["name"]][k] for k in RES + ("CARRY",)},
                     "yosys_s": ys[L["name"]].get("wall_s"), "estimate_cycles": L.get("estimate_cycles"),
                     "build": b["dir"].name})
    return rows


# ---- the fit --------------------------------------------------------------------------------------

def fit_scales(rows: list[dict], ridge: float = RIDGE) -> dict:
    """{term: scale}: bounded (>= 0) least squares on relative LUT errors with a ridge towards 1 (see the
    module docstring). Only rows with an estimate (clones and other processes the estimator does not model
    have no terms) and only terms some row uses take part."""
    from scipy.optimize import lsq_linear

    fit_rows = [r for r in rows if r["terms"] and r["yosys"]["LUT"] > 0]
    used = {t: sum(1 for r in fit_rows if r["terms"].get(t, 0) > 0) for r in fit_rows for t in r["terms"]}
    terms = sorted(t for t, n in used.items() if n >= MIN_LAYERS_PER_TERM)
    if not fit_rows or not terms:
        return {}
    # the terms not fitted stay at 1: their LUTs are moved to the right-hand side
    fixed = np.array([sum(v for t, v in r["terms"].items() if t not in terms) for r in fit_rows])
    A = np.array([[r["terms"].get(t, 0.0) / r["yosys"]["LUT"] for t in terms] for r in fit_rows])
    y = 1.0 - fixed / np.array([r["yosys"]["LUT"] for r in fit_rows])
    lam = np.sqrt(ridge)
    A_aug = np.vstack([A, lam * np.eye(len(terms))])
    y_aug = np.concatenate([y, lam * np.ones(len(terms))])
    sol = lsq_linear(A_aug, y_aug, bounds=(0.0, np.inf))
    return {t: round(float(s), 4) for t, s in zip(terms, sol.x)}


def fifo_scale(b: dict, raw_run: dict, layer_scales: dict) -> float | None:
    """streams.fifo from the whole design: what yosys finds outside the layers, over the FIFOs estimated."""
    ys = b["report"]["yosys"]
    if (ys.get("total") or {}).get("what") != "whole design":
        return None
    est_fifo = sum(s["resources"]["LUT"] for s in raw_run["streams"])
    outside = ys["total"]["LUT"] - sum(v["LUT"] for v in ys["layers"].values())
    return round(max(0.0, outside) / est_fifo, 4) if est_fifo > 0 else None


def write_calibration(family: str, scales: dict, tool: str, n_layers: dict, made_by: str) -> None:
    keep = []
    if LUT_CALIBRATION_CSV.is_file():
        with open(LUT_CALIBRATION_CSV) as f:
            keep = [r for r in csv.DictReader(f) if r["family"] != family]
    rows = keep + [{"family": family, "term": t, "scale": s, "fitted_on_layers": n_layers.get(t, 0), "tool": tool,
                    "made_by": made_by} for t, s in sorted(scales.items())]
    tmp = LUT_CALIBRATION_CSV.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LUT_CALIBRATION_FIELDS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(LUT_CALIBRATION_CSV)
    from flow.report import calibration

    calibration._load_lut_calibration.cache_clear()


def predicted_lut(row: dict, scales: dict) -> float:
    return sum(v * scales.get(t, 1.0) for t, v in row["terms"].items())


# ---- the CNN twin ---------------------------------------------------------------------------------

def cnn_twin_qnet(net):
    """The same QNet with every adder2d a conv2d of the same integer weights; accumulator widths re-derived by
    QNet.infer_widths (products need more bits than |a - w|). The adder-only group input rescale is dropped."""
    import copy

    from flow.qnet import bits_for

    twin = copy.deepcopy(net)
    for op in twin.ops:
        if op.kind == "adder2d":
            op.kind = "conv2d"
            for k in ("group_in_mult", "group_in_shift", "group_of_channel"):
                op.arrays.pop(k, None)
            op.attrs = {k: v for k, v in op.attrs.items() if k in ("stride", "pads")}
    for _ in range(len(twin.ops)):        # widths feed forward: repeat until nothing changes
        ranges = twin.infer_widths()
        changed = False
        for name, spec in twin.tensors.items():
            if spec.kind == "acc":
                bits, signed = bits_for(ranges[name].lo, ranges[name].hi)
                if (bits, signed) != (spec.bits, spec.signed):
                    spec.bits, spec.signed, changed = bits, signed, True
        if not changed:
            break
    twin.meta = {**dict(twin.meta or {}), "model": "cnn_twin", "note": "adder2d -> conv2d, same integer weights"}
    return twin.validate()


def make_twin(b: dict, out: Path, jobs: int, layers=None, timeout_s: float = 3600, dsp: bool | None = None) -> Path:
    """TWIN build: qnet/, report.json (estimate of the twin, same reuse factors), rtl/, yosys. dsp None:
    synthesised as the adder build is (a zero-DSP build: products in LUTs, -nodsp); True: DSP48s allowed."""
    from flow.outputs import MARKER, staged_output
    from flow.report import build_report, render_files
    from flow.rtl import generate as gen
    from flow.rtl.synth import log, synth_build

    rep = b["report"]
    twin = cnn_twin_qnet(b["net"])
    zero_dsp = bool((rep.get("hls") or {}).get("zero_dsp", False))
    with staged_output(out, force=True, kind="dir") as tmp:
        twin.save(tmp / "qnet")
        trep = build_report(twin, model="cnn_twin", bits=rep.get("bits"), board=rep["board"],
                            clock_mhz=rep.get("clock_mhz"), reuse=rep.get("reuse"), fifo_depth="minimal",
                            shift_add_all=False)
        trep["hls"] = {"zero_dsp": zero_dsp, "note": f"CNN twin of {b['dir']} (bench/rtl_vs_estimate.py)"}
        render_files(trep, tmp)
        (tmp / MARKER).write_text("")
    gen.generate(out, force=True)
    if dsp is None:   # as the adder build: a zero-DSP build's twin has its products in LUTs too
        dsp = not json.loads((b["dir"] / "rtl" / "manifest.json").read_text()).get("shift_add", False)
    synth_build(out, layers=layers, whole=layers is None, jobs=jobs, force=True, progress=log, keep_going=True,
                timeout_s=timeout_s, dsp=dsp)
    return out


# ---- the table ------------------------------------------------------------------------------------

def pct(a, b):
    return None if not b else 100.0 * (a - b) / b


def f(v, nd=0):
    return "-" if v is None else (f"{v:+.{nd}f}" if isinstance(v, float) and nd else f"{v:,.0f}" if isinstance(
        v, (int, float)) else str(v))


def markdown(builds, rows, raw_runs, cal_runs, scales_before, scales_after, fit_rows, twin_rows, cmd,
             refitted: bool = True) -> str:
    out = ["# The estimator against the register-transfer design (yosys synth_xilinx, Verilator)", "",
           f"Made by `{cmd}`. yosys figures: `adderflow synth BUILD --yosys` ({builds[0]['report']['yosys']['tool']}, "
           f"family {builds[0]['report']['yosys']['family']}, part {builds[0]['report']['yosys']['part']}); the "
           f"estimate: `flow/report/estimate.py` on the same QNet, reuse factors and options. *raw* = the model "
           f"without LUT calibration, *cal* = with the scales below. Δ% = (estimate - yosys) / yosys.", ""]
    for b, raw, cal in zip(builds, raw_runs, cal_runs):
        name = b["dir"].name
        rs = [r for r in rows if r["build"] == name]
        ys = b["report"]["yosys"]
        out += [f"## {name}: {b['report'].get('model')} W{b['report'].get('bits')} on {b['report']['board']}", "",
                "| layer | kind | RF | LUT yosys | LUT est raw | Δ% raw | LUT est cal | Δ% cal | FF yosys | FF est "
                "| BRAM18K yosys | BRAM18K est | DSP yosys | DSP est | yosys s |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rs:
            y, e = r["yosys"], r["estimate"]
            cal_l = predicted_lut(r, scales_after) if r["terms"] else None
            out.append(f"| {r['name']} | {r['kind']} | {r['rf']} | {f(y['LUT'])} | "
                       f"{f(e['LUT']) if r['terms'] else 'not modelled'} | "
                       f"{f(pct(e['LUT'], y['LUT']), 1) if r['terms'] else '-'} | {f(cal_l)} | "
                       f"{f(pct(cal_l, y['LUT']), 1) if cal_l is not None else '-'} | {f(y['FF'])} | {f(e['FF'])} | "
                       f"{f(y['BRAM_18K'])} | {f(e['BRAM_18K'])} | {f(y['DSP'])} | {f(e['DSP'])} | "
                       f"{r['yosys_s']:.1f} |")
        t = ys["total"]
        er, ec = raw["resources"]["breakdown"], cal["resources"]["breakdown"]
        est_raw = er["layers"]["LUT"] + er["stream_fifos"]["LUT"]
        est_cal = ec["layers"]["LUT"] + ec["stream_fifos"]["LUT"]
        if t.get("what") != "whole design":     # a sum of layers: against the same layers' estimate
            est_raw = sum(r["estimate"]["LUT"] for r in rs)
            est_cal = sum(predicted_lut(r, scales_after) for r in rs if r["terms"])
        out += ["", f"Whole design ({t['what']}, top {t.get('top', '-')}, yosys {ys['wall_s']['whole'] or '-'} s; "
                    f"layers {ys['wall_s']['layers']:.0f} s summed over runs, {ys.get('jobs')} at a time): "
                    f"LUT yosys {f(t['LUT'])}, estimate without the platform raw {f(est_raw)} "
                    f"({f(pct(est_raw, t['LUT']), 1)} %), calibrated {f(est_cal)} ({f(pct(est_cal, t['LUT']), 1)} %); "
                    f"FF {f(t['FF'])} vs {f(er['layers']['FF'] + er['stream_fifos']['FF'])}; BRAM18K {f(t['BRAM_18K'])} vs "
                    f"{f(er['layers']['BRAM_18K'] + er['stream_fifos']['BRAM_18K'])}; DSP {f(t['DSP'])} vs "
                    f"{f(er['layers']['DSP'])}.", ""]
        c = b["cosim"]
        lat = raw["latency"]
        if c:
            out += ["| cycles | estimate | Verilator | Δ% |", "|---|---:|---:|---:|",
                    f"| latency per image | {f(lat['cycles'])} | {f(c.get('latency_cycles'))} | "
                    f"{f(pct(lat['cycles'], c.get('latency_cycles')), 1)} |",
                    f"| interval | {f(lat['interval_cycles'])} | {f(c.get('interval_cycles'))} | "
                    f"{f(pct(lat['interval_cycles'], c.get('interval_cycles')), 1)} |", "",
                    f"Verilator: {c.get('images')} images, {c.get('mismatches')} mismatching values; "
                    f"{c.get('images_per_s_100mhz')} images/s at 100 MHz.", ""]
        else:
            out += [f"No `{name}/rtl/cosim.json` (run `adderflow cosim`): cycles not compared.", ""]
    # the terms
    ok = [r for r in fit_rows if r["terms"]]
    within = [r for r in ok if abs(pct(predicted_lut(r, scales_after), r["yosys"]["LUT"])) <= TARGET_PCT]
    out += ["## LUT terms recalibrated" if refitted else "## LUT terms in use (not refitted by this run)", "",
            (f"Fitted on {len(ok)} layers at once (no layer by name), relative least squares with ridge {RIDGE} "
             f"towards 1; `streams.fifo` from the whole design (when there is a whole-design run). Stored in "
             f"`flow/report/data/lut_calibration.csv`." if refitted else
             "Scales read from `flow/report/data/lut_calibration.csv`; run with --recalibrate to refit."), "",
            "| term | scale before | scale after | moved | layers using it |", "|---|---:|---:|---:|---:|"]
    uses = {t: sum(1 for r in ok if r["terms"].get(t, 0) > 0) for t in scales_after}
    for t in sorted(set(scales_after) | set(scales_before)):
        a, b0 = scales_after.get(t, 1.0), scales_before.get(t, 1.0)
        out.append(f"| {t} | {b0:.3f} | {a:.3f} | {100 * (a - b0) / b0 if b0 else 0:+.1f} % | {uses.get(t, 0)} |")
    mx = max((abs(pct(predicted_lut(r, scales_after), r["yosys"]["LUT"])) for r in ok), default=0)
    out += ["", f"After recalibration: {len(within)} of {len(ok)} layers within {TARGET_PCT:.0f} % of yosys LUT "
                f"(worst {mx:.1f} %)." + ("" if len(within) == len(ok) else
                                           " The layers outside are listed as they are: no per-layer term was added "
                                           "to hide them."), ""]
    if twin_rows is not None:
        lut_only = bool((builds[1]["report"].get("yosys") or {}).get("nodsp"))
        out += _twin_table([r for r in rows if r["build"] == builds[0]["dir"].name], twin_rows,
                           "; the twin's products in LUTs (synth_xilinx -nodsp), as the zero-DSP adder build" if lut_only
                           else "")
    return "\n".join(out)


def _twin_table(rows, twin_rows, how: str = "") -> list:
    """Adder layers (processes realising an adder2d) beside the same processes of the CNN twin."""
    twin = {r["name"]: r for r in twin_rows}
    out = [f"## Adder layers vs their CNN twin (yosys, same schedule and reuse factors{how})", "",
           "| layer | LUT adder | DSP adder | LUT CNN | DSP CNN | LUT saving | DSP saved | CARRY adder | CARRY CNN |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    tot = dict.fromkeys(("la", "da", "lc", "dc"), 0)
    for a in rows:
        t = twin.get(a["name"])
        if t is None or "adder2d" not in a["op_kinds"]:
            continue
        la, da, lc, dc = a["yosys"]["LUT"], a["yosys"]["DSP"], t["yosys"]["LUT"], t["yosys"]["DSP"]
        tot = {"la": tot["la"] + la, "da": tot["da"] + da, "lc": tot["lc"] + lc, "dc": tot["dc"] + dc}
        out.append(f"| {a['name']} | {la:,} | {da} | {lc:,} | {dc} | {100 * (1 - la / lc):.1f} % | {dc - da} | "
                   f"{a['yosys']['CARRY']:,} | {t['yosys']['CARRY']:,} |")
    if tot["lc"]:
        out.append(f"| **all adder layers** | {tot['la']:,} | {tot['da']} | {tot['lc']:,} | {tot['dc']} | "
                   f"{100 * (1 - tot['la'] / tot['lc']):.1f} % | {tot['dc'] - tot['da']} | | |")
    out += ["", "LUT and DSP savings are given apart (no LUT-per-DSP exchange rate is assumed). Reference: "
                "AdderNet-FPGA reports 65 % less LUT for one 8-bit layer.", ""]
    return out


# ---- main -----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("--twin", type=Path, help="CNN twin build (default BUILD_cnn_twin with --make-twin)")
    ap.add_argument("--make-twin", action="store_true", help="write, generate and synthesise the CNN twin first")
    ap.add_argument("--twin-dsp", action="store_true",
                    help="also a twin synthesised with DSP48 multipliers allowed (BUILD_cnn_twin_dsp): the CNN as "
                         "an FPGA would usually build it, beside the LUT-only twin of a zero-DSP build")
    ap.add_argument("--twin-layers", help="with --make-twin: synthesise only these twin layers (comma-separated)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per yosys run of the twin")
    ap.add_argument("--recalibrate", action="store_true", help="fit the LUT terms and write lut_calibration.csv")
    ap.add_argument("--fit-twin", action="store_true", help="fit on the twin's layers too")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_MD)
    ap.add_argument("--how", help="a paragraph saying how BUILD (and the twin) were made, for the table's header")
    args = ap.parse_args(argv)
    given = list(argv or sys.argv[1:])
    if "--how" in given:          # the note is not part of the command that made the figures
        i = given.index("--how")
        del given[i:i + 2]
    cmd = "python bench/rtl_vs_estimate.py " + " ".join(shlex.quote(a) for a in given)
    try:
        t0 = time.perf_counter()
        b = load_build(args.build)
        twin_dir = args.twin or args.build.with_name(args.build.name + "_cnn_twin")
        if args.make_twin:
            make_twin(b, twin_dir, args.jobs, args.twin_layers.split(",") if args.twin_layers else None,
                      args.timeout)
        dsp_dir = args.build.with_name(args.build.name + "_cnn_twin_dsp")
        if args.make_twin and args.twin_dsp:
            make_twin(b, dsp_dir, args.jobs, args.twin_layers.split(",") if args.twin_layers else None,
                      args.timeout, dsp=True)
        builds = [b] + ([load_build(twin_dir)] if (args.twin or args.make_twin) else [])
        family = FAMILY_OF_BOARD[get_board(b["report"]["board"]).family]
        from flow.report.calibration import lut_scales

        before = lut_scales(family)
        raw = [estimator_for(x, calibrated=False)[1] for x in builds]
        rows = [r for x, run in zip(builds, raw) for r in process_rows(x, run)]
        fit_on = rows if args.fit_twin else [r for r in rows if r["build"] == b["dir"].name]
        after = dict(before)
        if args.recalibrate:
            after = fit_scales(fit_on)
            fs = fifo_scale(b, raw[0], after)
            if fs is not None:
                after["streams.fifo"] = fs
            n_layers = {t: sum(1 for r in fit_on if r["terms"].get(t, 0) > 0) for t in after}
            write_calibration(family, after, b["report"]["yosys"]["tool"], n_layers, cmd)
        cal = [estimator_for(x, calibrated=True)[1] for x in builds]
        twin_rows = [r for r in rows if r["build"] == builds[1]["dir"].name] if len(builds) > 1 else None
        md = markdown(builds, rows, raw, cal, before, after, fit_on, twin_rows, cmd, refitted=args.recalibrate)
        if args.twin_dsp:
            tb = load_build(dsp_dir)
            trows = process_rows(tb, estimator_for(tb, calibrated=False)[1])
            md += "\n" + "\n".join(_twin_table([r for r in rows if r["build"] == b["dir"].name], trows,
                                                 "; the twin's products in DSP48s")) + "\n"
        if args.how:
            md = md.replace("\n\n## ", f"\n\n{args.how}\n\n## ", 1)
        md += f"\nBench wall time {time.perf_counter() - t0:.0f} s.\n"
    except AdderFlowError as exc:
        print(f"rtl_vs_estimate: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
