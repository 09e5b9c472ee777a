"""report.md and report.png from a report dict (flow.report.build_report). Labels every figure's source."""

from __future__ import annotations

from flow.errors import AdderFlowError

from flow.boards import get_board

RES = ("LUT", "FF", "BRAM_18K", "DSP")


def _fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _us(v):
    return "-" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:.3g}")


def markdown(rep: dict) -> str:
    lat, res = rep.get("latency") or {}, rep.get("resources") or {}
    src_note = ("**All figures below are ESTIMATES** (analytical model, `flow/report/estimate.py`, calibrated "
                "with the yosys PE table); no vendor report was found." if rep.get("source") == "estimate" else
                f"Real figures from: **{rep.get('source')}**. Estimated figures are marked *(estimate)*.")
    if rep.get("source") == "none":
        src_note = f"No figures: {rep.get('note')}."
    out = [f"# {rep.get('model')} W{rep.get('bits')}A{rep.get('bits')} on {rep.get('board')} ({rep.get('part')}) "
           f"at {_fmt(rep.get('clock_mhz'))} MHz", "", src_note, ""]
    if rep.get("estimate_note"):
        out += [f"Note: {rep['estimate_note']}.", ""]
    csim = rep.get("csim")
    if csim:
        out += [f"C simulation: {csim.get('images')} images, {csim.get('mismatches')} mismatches vs golden, "
                f"accuracy {csim.get('accuracy')}", ""]
    out += ["## Latency", "", "| quantity | value | source |", "|---|---:|---|",
            f"| latency (cycles) | {_fmt(lat.get('cycles'))} | {lat.get('source')} |",
            f"| interval (cycles) | {_fmt(lat.get('interval_cycles'))} | {lat.get('source')} |",
            f"| latency (us) | {_us(lat.get('latency_us'))} | {lat.get('source')} |",
            f"| images/s | {_fmt(lat.get('images_per_s'), 0)} | {lat.get('source')} |"]
    if lat.get("bottleneck"):
        out.append(f"| slowest process | {lat['bottleneck']} | {lat.get('source')} |")
    out += [""]
    fit = rep.get("board_fit")
    if fit:
        out += [f"## Board fit ({rep.get('board')}, resources: {res.get('source')})", "",
                "| resource | used | available | utilisation | fits |", "|---|---:|---:|---:|---|"]
        for k in RES:
            r = fit["resources"][k]
            out.append(f"| {k} | {_fmt(r['used'])} | {_fmt(r['available'])} | {r['utilisation_pct']:.1f}% | "
                       f"{'yes' if r['fits'] else '**no**'} |")
        verdict = f"**Fits: {'yes' if fit['fits'] else 'no'}**"
        verdict += f" - {fit['advice']}" if fit.get("advice") else ""
        verdict += f" - {fit['tight_note']}" if fit.get("tight_note") else ""
        out += ["", verdict, ""]
        if res.get("breakdown"):
            out += ["Breakdown (estimate): " + "; ".join(
                f"{k}: " + ", ".join(f"{r} {_fmt(int(round(v.get(r, 0))))}" for r in RES)
                for k, v in res["breakdown"].items()), ""]
    est = rep.get("estimate")
    if est and rep.get("source") != "estimate":
        el, er = est["latency"], est["resources"]
        out += ["## Estimate beside the real figures", "", "| quantity | estimate | real | real source |",
                "|---|---:|---:|---|",
                f"| latency (cycles) | {_fmt(el['cycles'])} | {_fmt(lat.get('cycles'))} | {lat.get('source')} |",
                f"| interval (cycles) | {_fmt(el['interval_cycles'])} | {_fmt(lat.get('interval_cycles'))} | "
                f"{lat.get('source')} |"]
        out += [f"| {k} | {_fmt(er.get(k))} | {_fmt(res.get(k))} | {res.get('source')} |" for k in RES]
        out.append("")
    out += _yosys_markdown(rep)
    layers = rep.get("per_layer")
    if layers:
        out += ["## Per layer (estimate)", "",
                "| layer | kind | RF | lanes | cycles | multipliers | LUT | FF | BRAM18K | DSP | weights | variant |",
                "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|"]
        for L in layers:
            out.append(f"| {L['name']} | {L['kind']} | {L['reuse_factor']} | {L['lanes']} | {_fmt(L['cycles'])} | "
                       f"{L['mult_impl']} ({L['multipliers']}) | {_fmt(L['LUT'])} | {_fmt(L['FF'])} | "
                       f"{L['BRAM_18K']} | {L['DSP']} | {L['weights_in']} | {L.get('variant', '')} |")
        out.append("")
    real_layers = rep.get("per_layer_real")
    if real_layers:
        out += [f"## Per dataflow instance (real, {real_layers[0].get('source')})", "",
                "| instance | latency | interval | LUT | FF | BRAM18K | DSP |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in real_layers:
            out.append(f"| {r['instance']} | {_fmt(r.get('latency_max'))} | {_fmt(r.get('interval_max'))} | "
                       f"{_fmt(r.get('LUT'))} | {_fmt(r.get('FF'))} | {_fmt(r.get('BRAM_18K'))} | {_fmt(r.get('DSP'))} |")
        out.append("")
    oc = rep.get("op_counts")
    if oc:
        t = oc["total"]
        out += ["## Operation counts per image", "", "| convention | #Mul | #Add |", "|---|---:|---:|"]
        for v in ("paper", "hardware", "zero_dsp"):
            out.append(f"| {v} | {t[v]['mul'] / 1e6:.3f}M | {t[v]['add'] / 1e6:.3f}M |")
        pub = oc["published_resnet20"]
        out += [f"| published CNN (ResNet-20) | {pub['cnn']['mul'] / 1e6:.2f}M | {pub['cnn']['add'] / 1e6:.2f}M |",
                f"| published AdderNet (ResNet-20) | {pub['addernet']['mul'] / 1e6:.2f}M | "
                f"{pub['addernet']['add'] / 1e6:.2f}M |", "", f"Conventions: {oc['convention']}.", ""]
        for line in oc.get("vs_published", []):
            out.append(f"- {line}")
        out.append("")
    en = rep.get("energy")
    if en:
        out += [f"## Energy per image: {en['label']}", "",
                f"- hardware op counts at the network's widths: {en['hardware']['total_uj']:.3f} uJ "
                f"(all at 32 bit: {en['hardware']['total_uj_at_32bit']:.2f} uJ)",
                f"- zero-DSP (shift-add constants): {en['zero_dsp']['total_uj']:.3f} uJ", ""]
    fitr = rep.get("fit")
    if fitr:
        out += [f"## Reuse factors for {fitr['target_fps']:.0f} images/s (estimate)", "",
                f"meets target: {fitr['meets_target']}, fits: {fitr['fits']}, binding: {fitr['binding']}", ""]
        if fitr.get("max_fps_that_fits"):
            out += [f"fastest balanced design that fits: {fitr['max_fps_that_fits'].get('fps', 0):.0f} images/s", ""]
    cal = rep.get("calibration")
    if cal:
        out += ["## Calibration of the estimate", "",
                f"PE table `{cal.get('pe_table')}` ({cal.get('tool')}, family {cal.get('family')}); assumptions:", ""]
        for k, a in cal.get("assumptions", {}).items():
            out.append(f"- `{k}` = {a['value']}: {a['why']}")
        out.append("")
    return "\n".join(out)


def _yosys_markdown(rep: dict) -> list:
    """The yosys synthesis of BUILD/rtl (`adderflow synth --yosys`) in its own columns labelled `yosys`,
    beside the estimate (and Vivado, when the build has it); never merged into the estimate's rows."""
    ys = rep.get("yosys")
    if not ys:
        return []
    est = (rep.get("estimate") or {}).get("resources") or {}
    viv = next(((lbl, v) for k, lbl in (("vivado_impl", "vivado implementation"), ("vivado_synth", "vivado synthesis"))
                if (v := (rep.get("real") or {}).get(k))), None)
    t = ys.get("total") or {}
    head = "| resource | estimate | yosys |" + (f" {viv[0]} |" if viv else "")
    out = [f"## Synthesis: yosys ({ys.get('tool')}, {ys.get('family')}, {ys.get('part')})", "",
           f"yosys total: {t.get('what')}; {ys.get('note')}. The estimate includes the PYNQ platform "
           f"(DMA, interconnect), the RTL synthesis does not.", "", head,
           "|---|---:|---:|" + ("---:|" if viv else "")]
    for k in RES + ("CARRY",):
        e = est.get("CARRY4" if k == "CARRY" else k)
        out.append(f"| {k} | {_fmt(e)} | {_fmt(t.get(k))} |" + (f" {_fmt(viv[1].get(k))} |" if viv else ""))
    layers = ys.get("layers") or {}
    if layers:
        per = {L["name"]: L for L in rep.get("per_layer") or []}
        out += ["", "| layer | LUT estimate | LUT yosys | FF estimate | FF yosys | BRAM18K estimate | BRAM18K yosys "
                "| DSP estimate | DSP yosys | yosys s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, y in layers.items():
            e = per.get(name, {})
            out.append(f"| {name} | {_fmt(e.get('LUT'))} | {_fmt(y.get('LUT'))} | {_fmt(e.get('FF'))} | "
                       f"{_fmt(y.get('FF'))} | {_fmt(e.get('BRAM_18K'))} | {_fmt(y.get('BRAM_18K'))} | "
                       f"{_fmt(e.get('DSP'))} | {_fmt(y.get('DSP'))} | {_fmt(y.get('wall_s'), 1)} |")
    return out + [""]


def plot(rep: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = rep.get("per_layer") or []
    real_layers = rep.get("per_layer_real") or []
    try:
        cap = get_board(rep["board"]).capacity
    except AdderFlowError:   # a report of a board this version does not know: no capacity lines
        cap = {}
    fig, axes = plt.subplots(3, 1, figsize=(max(10, 0.32 * max(len(layers), len(real_layers), 10)), 12))
    if layers:
        names = [L["name"] for L in layers]
        x = range(len(names))
        ax = axes[0]
        ax.bar(x, [L["cycles"] for L in layers], color="tab:blue")
        ii = (rep.get("estimate") or {}).get("latency", {}).get("interval_cycles")
        if ii:
            ax.axhline(ii, color="tab:red", ls="--", lw=1, label=f"interval {ii:,} cycles")
            ax.legend(loc="upper right")
        ax.set_ylabel("cycles / image")
        ax.set_title(f"{rep.get('model')} W{rep.get('bits')} on {rep.get('board')} @ {rep.get('clock_mhz')} MHz: "
                     f"per-layer cycles (estimate)")
        ax.set_xticks(list(x), names, rotation=90, fontsize=7)
        ax = axes[1]
        w = 0.4
        ax.bar([i - w / 2 for i in x], [L["LUT"] for L in layers], w, label="LUT per layer")
        ax.bar([i + w / 2 for i in x], [L["FF"] for L in layers], w, label="FF per layer")
        ax.set_ylabel("per layer")
        ax2 = ax.twinx()
        cum, s = [], 0
        for L in layers:
            s += L["LUT"]
            cum.append(s)
        ax2.plot(list(x), cum, color="black", lw=1.5, label="cumulative LUT")
        if cap.get("LUT"):
            ax2.axhline(cap["LUT"], color="tab:red", ls="--", lw=1, label=f"board LUT {cap['LUT']:,}")
        ax2.set_ylabel("cumulative LUT")
        ax2.legend(loc="upper left")
        ax.legend(loc="center left")
        ax.set_title("per-layer resources (estimate) with the board LUT capacity")
        ax.set_xticks(list(x), names, rotation=90, fontsize=7)
    elif real_layers:
        ax = axes[0]
        ax.bar(range(len(real_layers)), [r.get("latency_max") or 0 for r in real_layers])
        ax.set_title("per-instance latency (vitis_hls csynth)")
        ax.set_xticks(range(len(real_layers)), [r["instance"][:30] for r in real_layers], rotation=30, fontsize=7)
        ax = axes[1]
        ax.bar(range(len(real_layers)), [r.get("LUT") or 0 for r in real_layers], label="LUT")
        ax.bar(range(len(real_layers)), [r.get("DSP") or 0 for r in real_layers], label="DSP")
        ax.legend()
        ax.set_title("per-instance resources (vitis_hls csynth)")
        ax.set_xticks(range(len(real_layers)), [r["instance"][:30] for r in real_layers], rotation=30, fontsize=7)
    ax = axes[2]
    fit = rep.get("board_fit")
    if fit:
        util = [fit["resources"][k]["utilisation_pct"] for k in RES]
        colors = ["tab:green" if fit["resources"][k]["fits"] else "tab:red" for k in RES]
        ax.bar(RES, util, color=colors)
        ax.axhline(100, color="black", ls="--", lw=1, label="board capacity (100%)")
        for i, k in enumerate(RES):
            r = fit["resources"][k]
            ax.text(i, util[i], f"{r['used']:,} / {r['available']:,}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("% of board")
        ax.legend()
        ax.set_title(f"utilisation of {rep.get('board')} ({fit.get('source')})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
