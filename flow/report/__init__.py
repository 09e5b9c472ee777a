"""Latency/resource reports of a build: real Vitis/Vivado figures when present, a labelled estimate otherwise.

    write_report(out_dir, qnet, model=..., bits=..., board=..., clock_mhz=..., reuse=...,
                 csim=None, hls_dir=None) -> dict      # writes report.json, report.md, report.png
    fit_reuse(qnet, board, target_fps, clock_mhz) -> dict

report.json keys (schema in README "report.json"): model, bits, board, part, clock_mhz, source, csim,
latency, resources (each with its own "source"), per_layer, board_fit, op_counts, energy, calibration,
reuse, estimate (always: the analytical figures, labelled), real (vendor figures when found).
"""

from __future__ import annotations

import json
from pathlib import Path

from flow.boards import Board, get_board
from flow.qnet import QNet
from flow.report.fit import fit_reuse

REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"
SCHEMA_VERSION = 1

__all__ = ["write_report", "build_report", "fit_reuse", "render_files", "apply_measured", "REPORT_JSON", "REPORT_MD",
           "REPORT_PNG"]

# Sections measured on the register-transfer design by other commands (`adderflow synth --yosys`,
# `adderflow cosim`): kept when a report is rebuilt, each with its own "source", never mixed into the
# estimate. Vivado figures win over yosys where one resource figure is picked (apply_measured).
MEASURED_SECTIONS = ("yosys", "verilator")
VIVADO_SOURCES = ("vivado implementation", "vivado synthesis")


def _board(board) -> Board:
    return board if isinstance(board, Board) else get_board(str(board))


def _real_summary(real: dict, clock_mhz: float) -> tuple[dict | None, dict | None, str]:
    """(latency, resources, source) from vendor reports: cosim > csynth for latency,
    Vivado implementation > Vivado synthesis > csynth for resources."""
    latency = resources = None
    sources = []
    hz = clock_mhz * 1e6
    cs = real.get("csynth")
    co = real.get("cosim")
    tool = real.get("tool", "vitis_hls")
    if co and co.get("latency_cycles", {}).get("max") is not None and co.get("status") == "Pass":
        cyc, ii = co["latency_cycles"]["max"], co["interval_cycles"].get("max")
        latency = {"source": f"{tool} cosim", "cycles": cyc, "interval_cycles": ii}
    elif cs:
        cyc, ii = cs["latency_cycles"]["worst"], cs["interval_cycles"]["max"]
        latency = {"source": f"{tool} csynth", "cycles": cyc, "interval_cycles": ii}
    if latency:
        if cs and cs.get("target_clock_ns"):
            hz = 1e9 / cs["target_clock_ns"]
            latency["clock_mhz"] = round(hz / 1e6, 3)
            latency["estimated_clock_ns"] = cs.get("estimated_clock_ns")
        latency["latency_us"] = latency["cycles"] / hz * 1e6 if latency["cycles"] is not None else None
        latency["images_per_s"] = hz / latency["interval_cycles"] if latency.get("interval_cycles") else None
        sources.append(latency["source"])
    for key, label in (("vivado_impl", "vivado implementation"), ("vivado_synth", "vivado synthesis"),
                       ("csynth", f"{tool} csynth")):
        r = real.get(key)
        r = r.get("resources") if key == "csynth" and r else r
        if r:
            resources = {"source": label, **{k: r.get(k) for k in ("LUT", "FF", "BRAM_18K", "DSP", "URAM")}}
            sources.append(label)
            break
    return latency, resources, " + ".join(dict.fromkeys(sources))


def build_report(qnet: QNet | None, *, model: str, bits: int, board, clock_mhz: float, reuse=None, csim=None,
                 hls_dir=None, target_fps: float | None = None, **estimate_kw) -> dict:
    """The report dict (no files written). Needs `qnet` for the estimate, op counts and energy."""
    from flow.report.energy import energy_per_image
    from flow.report.estimate import board_fit, estimate
    from flow.report.opcount import count_ops, explain_resnet20_difference
    from flow.report.parse import parse_reports

    b = _board(board)
    rep = {"schema_version": SCHEMA_VERSION, "model": model, "bits": bits, "board": b.name, "part": b.part,
           "clock_mhz": float(clock_mhz), "source": "estimate", "csim": csim}
    est = None
    real = parse_reports(hls_dir) if hls_dir is not None else None
    if qnet is None and str(model).startswith("resnet20") and bits:
        # e.g. the stock-hls4ml CNN twin: no QNet is passed. Model its integer twin so the builds can
        # be compared, and say so: the stock hls4ml design is not what this models.
        from flow.report.example import resnet20_qnet

        qnet = resnet20_qnet(int(bits), adder=(model == "resnet20"), seed=0)
        rep["estimate_note"] = (f"no quantized network was given: the estimate models {model} as the integer "
                                f"QNet design (flow.report.example, seeded weights, same shapes and widths); "
                                f"a stock hls4ml build of it differs")
    if qnet is not None:
        est = estimate(qnet, b, clock_mhz, reuse, strict=False, **estimate_kw)
        rep["reuse"] = est["reuse"]
        if est["warnings"]:
            rep["warnings"] = est["warnings"]
        rep["estimate"] = {"source": "estimate", "latency": est["latency"], "resources": est["resources"],
                           "assumptions": est["assumptions"], "streams": est["streams"]}
        rep["latency"], rep["resources"] = est["latency"], est["resources"]
        rep["per_layer"] = [_layer_row(L) for L in est["per_layer"]]
        rep["calibration"] = est["calibration"]
        counts = count_ops(qnet)
        rep["op_counts"] = {k: counts[k] for k in ("total", "conv_adder_terms", "published_resnet20", "convention")}
        rep["op_counts"]["per_layer"] = [{"name": c["name"], "kind": c["kind"], **{v: c[v] for v in
                                          ("paper", "hardware", "zero_dsp")}} for c in counts["per_layer"]]
        if str(model).startswith("resnet20"):
            rep["op_counts"]["vs_published"] = explain_resnet20_difference(counts, adder=any(
                o.kind == "adder2d" for o in qnet.ops))
        rep["energy"] = {v: _energy_summary(energy_per_image(qnet, v)) for v in ("hardware", "zero_dsp")}
        rep["energy"]["label"] = rep["energy"]["hardware"]["label"]
    if real:
        rep["real"] = {k: v for k, v in real.items() if k != "hls4ml_raw"}
        lat, res, src = _real_summary(real, float(clock_mhz))
        if lat:
            rep["latency"] = lat
        if res:
            rep["resources"] = res
        rep["source"] = src or "estimate"
        per_inst = (real.get("csynth") or {}).get("per_instance")
        if per_inst:
            rep["per_layer_real"] = [{**r, "source": f"{real.get('tool')} csynth"} for r in per_inst]
    elif est is None:
        rep.update(source="none", latency={}, resources={},
                   note="no quantized network and no vendor report: nothing to estimate or read")
    if rep.get("resources"):
        rep["board_fit"] = board_fit(rep["resources"], b, rep.get("per_layer") if rep["resources"].get(
            "source") == "estimate" else None)
        rep["board_fit"]["source"] = rep["resources"].get("source")
    if target_fps and qnet is not None:
        rep["fit"] = fit_reuse(qnet, b, target_fps, clock_mhz, **estimate_kw)
    return rep


def apply_measured(rep: dict, previous: dict | None = None) -> dict:
    """Carry the measured sections (MEASURED_SECTIONS) over from `previous` (the report being rebuilt) and
    pick the resource figure shown: Vivado (implementation > synthesis) > yosys whole design > csynth >
    estimate. yosys beats csynth because csynth's resources are the HLS tool's own estimate, while yosys
    maps the RTL realisation of the same schedule to the part's primitives. board_fit follows the pick."""
    for k in MEASURED_SECTIONS:
        if previous and k in previous and k not in rep:
            rep[k] = previous[k]
    ys = rep.get("yosys") or {}
    res = rep.get("resources") or {}
    if ys.get("total") and res.get("source") not in VIVADO_SOURCES and ys["total"].get("what") == "whole design":
        t = ys["total"]
        rep["resources"] = {"source": "yosys", "LUT": t["LUT"], "FF": t["FF"], "BRAM_18K": t["BRAM_18K"],
                            "DSP": t["DSP"], "URAM": 0, "CARRY4": t.get("CARRY"),
                            "note": f"{ys.get('tool')} synth_xilinx of BUILD/rtl ({t.get('top')}), "
                                    f"without the platform (DMA, interconnect)"}
        from flow.errors import AdderFlowError
        from flow.report.estimate import board_fit

        try:
            rep["board_fit"] = {**board_fit(rep["resources"], _board(rep["board"])), "source": "yosys"}
        except AdderFlowError:   # a board this version does not know: no fit, the figures stay
            rep.pop("board_fit", None)
        srcs = [s for s in str(rep.get("source", "")).split(" + ") if s and s not in ("estimate", "none")]
        rep["source"] = " + ".join(dict.fromkeys(srcs + ["yosys"]))
    return rep


def _layer_row(L: dict) -> dict:
    r = L["resources"]
    return {"name": L["name"], "kind": L["kind"], "source": "estimate", "reuse_factor": L["rf"], "lanes": L["lanes"],
            "cycles": int(L["cycles"]), "cycles_per_output": L["cycles_per_output"], "start": int(L["start"]),
            "end": int(L["end"]), "mult_impl": L["mult_impl"], "multipliers": int(L["multipliers"]),
            "weights_in": L["weights_in"], "variant": L.get("variant", "as generated"),
            "LUT": int(round(r["LUT"])), "FF": int(round(r["FF"])), "BRAM_18K": int(round(r["BRAM_18K"])),
            "DSP": int(round(r["DSP"])), "CARRY4": int(round(r["CARRY"])), "parts": L["parts"]}


def _energy_summary(e: dict) -> dict:
    return {"label": e["label"], "view": e["view"], "total_uj": e["total_uj"],
            "total_uj_at_32bit": e["total_uj_at_32bit"], "rule": e["rule"]}


def render_files(report: dict, out_dir) -> dict:
    """Write report.json, report.md, report.png for a report dict; returns their paths."""
    from flow.report.render import markdown, plot

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / REPORT_JSON, "md": d / REPORT_MD, "png": d / REPORT_PNG}
    paths["json"].write_text(json.dumps(report, indent=1, default=_json_default))
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths


def _json_default(v):
    import numpy as np

    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def write_report(out_dir, qnet, *, model, bits, board, clock_mhz, reuse, csim=None, hls_dir=None, **kw) -> dict:
    """Build the report (real vendor figures from hls_dir when present, the estimate otherwise, each
    labelled) and write out_dir/report.json, report.md, report.png. Returns the dict."""
    if qnet is not None and not isinstance(qnet, QNet):
        from flow.qnet import load

        qnet = load(qnet)
    rep = build_report(qnet, model=model, bits=bits, board=board, clock_mhz=clock_mhz, reuse=reuse, csim=csim,
                       hls_dir=hls_dir, **kw)
    render_files(rep, out_dir)
    return rep
