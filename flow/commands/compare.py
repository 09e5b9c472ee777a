"""`adderflow compare DIR_A DIR_B [--out FILE.md]`: two builds side by side (latency, images/s, LUT, FF,
BRAM, DSP, fits), each figure with its source (real or estimate); with --out also FILE.png."""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError

RES = ("LUT", "FF", "BRAM_18K", "DSP")


def add_arguments(parser):
    parser.add_argument("dir_a", help="first build folder (report.json)")
    parser.add_argument("dir_b", help="second build folder (report.json)")
    parser.add_argument("--out", help="write the table to this Markdown file and a bar chart next to it (.png)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")


def _label(rep: dict, d: Path) -> str:
    return f"{rep.get('model')} W{rep.get('bits')} ({d.name})"


def _num(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"


def compare_markdown(reps: list, dirs: list) -> str:
    a, b = reps
    la, lb = _label(a, dirs[0]), _label(b, dirs[1])
    rows = [f"# {la} vs {lb}", "",
            f"| quantity | {la} | {lb} |", "|---|---:|---:|"]

    def row(name, fa, fb):
        rows.append(f"| {name} | {fa} | {fb} |")

    row("board", f"{a.get('board')} @ {a.get('clock_mhz')} MHz", f"{b.get('board')} @ {b.get('clock_mhz')} MHz")
    row("source", a.get("source"), b.get("source"))
    la_, lb_ = a.get("latency") or {}, b.get("latency") or {}
    row("latency (cycles)", f"{_num(la_.get('cycles'))} ({la_.get('source')})",
        f"{_num(lb_.get('cycles'))} ({lb_.get('source')})")
    row("latency (us)", _us(la_.get("latency_us")), _us(lb_.get("latency_us")))
    row("interval (cycles)", _num(la_.get("interval_cycles")), _num(lb_.get("interval_cycles")))
    row("images/s", _num(la_.get("images_per_s"), 0), _num(lb_.get("images_per_s"), 0))
    ra, rb = a.get("resources") or {}, b.get("resources") or {}
    fa, fb = (a.get("board_fit") or {}).get("resources", {}), (b.get("board_fit") or {}).get("resources", {})
    for k in RES:
        pa = f" ({fa[k]['utilisation_pct']:.1f}%)" if k in fa else ""
        pb = f" ({fb[k]['utilisation_pct']:.1f}%)" if k in fb else ""
        row(k, f"{_num(ra.get(k))}{pa}", f"{_num(rb.get(k))}{pb}")
    row("resources source", ra.get("source"), rb.get("source"))
    row("fits the board", _fits(a), _fits(b))
    ea, eb = a.get("energy"), b.get("energy")
    if ea and eb:
        row("ASIC-energy estimate (uJ/image)", f"{ea['hardware']['total_uj']:.3f}", f"{eb['hardware']['total_uj']:.3f}")
    oa, ob = a.get("op_counts"), b.get("op_counts")
    if oa and ob:
        for v in ("paper", "hardware"):
            row(f"#Mul / #Add ({v})", f"{oa['total'][v]['mul'] / 1e6:.2f}M / {oa['total'][v]['add'] / 1e6:.2f}M",
                f"{ob['total'][v]['mul'] / 1e6:.2f}M / {ob['total'][v]['add'] / 1e6:.2f}M")
    rows += ["", "Figures marked `estimate` come from the analytical model (flow/report/estimate.py), not from a "
                 "vendor tool."]
    return "\n".join(rows) + "\n"


def _us(v):
    return "-" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:.3g}")


def _fits(rep: dict) -> str:
    f = rep.get("board_fit")
    if not f:
        return "-"
    if f["fits"]:
        return "yes"
    over = [k for k in RES if not f["resources"][k]["fits"]]
    return f"no ({', '.join(over)} over)"


def compare_png(reps: list, dirs: list, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    w = 0.38
    for i, (rep, d) in enumerate(zip(reps, dirs)):
        fit = (rep.get("board_fit") or {}).get("resources", {})
        util = [fit.get(k, {}).get("utilisation_pct", 0) for k in RES]
        ax1.bar([j + (i - 0.5) * w for j in range(len(RES))], util, w, label=_label(rep, d))
    ax1.axhline(100, color="black", ls="--", lw=1, label="board capacity")
    ax1.set_xticks(range(len(RES)), RES)
    ax1.set_ylabel("% of board")
    ax1.legend(fontsize=8)
    ax1.set_title("utilisation")
    ips = [((r.get("latency") or {}).get("images_per_s") or 0) for r in reps]
    ax2.bar(range(2), ips, color=["tab:blue", "tab:orange"])
    ax2.set_xticks(range(2), [_label(r, d) for r, d in zip(reps, dirs)], rotation=15, fontsize=7)
    ax2.set_title("images/s")
    srcs = " | ".join(f"{_label(r, d)}: {r.get('source')}" for r, d in zip(reps, dirs))
    fig.suptitle(f"sources - {srcs}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args) -> int:
    from flow.commands.report import load_report
    from flow.outputs import require_complete, staged_outputs

    dirs = [require_complete(Path(args.dir_a)), require_complete(Path(args.dir_b))]
    reps = [load_report(d) for d in dirs]
    outs = None
    if args.out:
        out = Path(args.out)
        if out.suffix == ".png":
            raise AdderFlowError(f"--out {out}: name the Markdown file (the chart is written beside it as .png)")
        outs = [out, out.with_suffix(".png")]
        # the builds compared are inputs: the table may not land on (or in) them
        staged = staged_outputs(outs, args.force, inputs=dirs, what="--out")  # checks both before any work
    md = compare_markdown(reps, dirs)
    print(md)
    if outs:
        with staged as (tmp_md, tmp_png):
            tmp_md.write_text(md)
            compare_png(reps, dirs, tmp_png)
        print(f"adderflow compare: wrote {outs[0]} and {outs[1]}")
    return 0
