"""A sweep's outputs: sweep.csv (one row per configuration, every figure followed by its source), sweep.md
and pareto.png (accuracy vs images/s, LUT as colour, one panel per board, the Pareto front marked)."""

from __future__ import annotations

import csv
from pathlib import Path

from flow.sweep.stages import SOURCE_ESTIMATE

RES = ("LUT", "FF", "BRAM_18K", "DSP")
SETTINGS = ("model", "bits", "groups", "alpha", "method", "board", "design", "target_fps", "lut_limit", "images")


def _design(cfg: dict) -> str:
    return "zero-DSP" if cfg["zero_dsp"] else "plain"


def flat_row(row: dict) -> dict:
    """One configuration as a flat dict of settings, figures and their sources, stage statuses."""
    cfg, stg = row["config"], row["stages"]
    out = {"label": row["label"]}
    for k in SETTINGS:
        out[k] = _design(cfg) if k == "design" else cfg.get(k)
    errors = [f"{s}: {o['error']}" for s, o in stg.items() if o["status"] == "failed"]
    out["status"] = "failed" if errors else "ok"
    # the first failure names the cause (a failed quantize makes every later stage fail with it)
    out["error"] = errors[0] if errors else ""
    for s, o in stg.items():
        out[f"{s}_status"] = ("cached" if o.get("cached") else "done") if o["status"] == "done" else (
            o["status"] if o["status"] == "failed" else o["error"])

    def fig(name, value, source):
        out[name] = value
        out[f"{name}_source"] = source if value is not None and value != "" else ""

    acc = stg.get("accuracy", {}).get("result")
    fig("accuracy", round(acc["accuracy"], 4) if acc else None, acc and acc["source"])
    est = stg.get("estimate", {}).get("result")
    if est:
        out["fits"] = "yes" if est["fits"] else "does not fit"
        fig("images_per_s", round(est["fps"], 1) if est["fits"] else None, SOURCE_ESTIMATE)
        fig("interval_cycles", est.get("interval_cycles"), SOURCE_ESTIMATE)
        res = est.get("resources") or {}
        for k in RES:
            fig(k, res.get(k), SOURCE_ESTIMATE)
        fig("LUT_pct", (est.get("utilisation_pct") or {}).get("LUT"), SOURCE_ESTIMATE)
        small = est.get("smallest_design") or {}
        fig("smallest_design_LUT", small.get("LUT"), SOURCE_ESTIMATE)
        fig("smallest_design_LUT_pct", est.get("smallest_lut_pct"), SOURCE_ESTIMATE)
    sy = stg.get("synth", {}).get("result")
    if sy:
        for k, v in (sy.get("resources") or {}).items():
            fig(f"synth_{k}", v, sy.get("source"))
        fig("synth_images_per_s", (sy.get("latency") or {}).get("images_per_s"), (sy.get("latency") or {}).get("source"))
    cs = stg.get("csim", {}).get("result")
    if cs:
        fig("csim_mismatches", cs.get("mismatches"), f"csim, {cs.get('images')} images")
        fig("csim_images_per_s", cs.get("csim_images_per_s"), "csim")
    return out


def write_csv(rows: list, path) -> list:
    flat = [flat_row(r) for r in rows]
    cols = []
    for f in flat:
        cols += [k for k in f if k not in cols]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="")
        w.writeheader()
        for f in flat:
            w.writerow({k: ("" if v is None else v) for k, v in f.items()})
    return flat


def _n(v, nd=0):
    if v is None or v == "":
        return "-"
    return f"{v:,.{nd}f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))


def markdown(flat: list, sweep, stats: dict, executor: str, title: str = "Sweep") -> str:
    keys = [k for k in sweep.varying if k not in ("zero_dsp",)] or ["model"]
    if "zero_dsp" in sweep.varying:
        keys.append("design")
    has_csim = any("csim_mismatches" in f for f in flat)
    head = keys + ["accuracy", "images/s (estimate)", "LUT (estimate)", "FF (estimate)", "BRAM_18K (estimate)",
                   "DSP (estimate)", "fits"] + (["csim mismatches"] if has_csim else []) + ["status"]
    lines = [f"# {title}", "",
             f"{len(flat)} configurations from `{sweep.source}`; stages: {', '.join(sweep.stages)}; executor: {executor}.",
             f"Tasks: {stats['tasks']} ({stats['cached']} from the cache, {stats['computed']} computed, "
             f"{stats['failed']} failed); wall time {stats['wall_s']:.1f} s.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---:" if h not in keys + ["fits", "status"] else "---"
                                                             for h in head) + "|"]
    for f in flat:
        lut = f.get("LUT")
        lut_txt = f"{_n(lut)} ({f['LUT_pct']:.0f}%)" if lut is not None and f.get("LUT_pct") is not None else (
            f"smallest design {_n(f.get('smallest_design_LUT'))} ({_n(f.get('smallest_design_LUT_pct'), 0)}%)"
            if f.get("smallest_design_LUT") is not None else "-")
        acc = f.get("accuracy")
        cells = [_n(f[k]) for k in keys] + [
            f"{100 * acc:.2f}%" if acc is not None else "-", _n(f.get("images_per_s"), 0), lut_txt,
            _n(f.get("FF")), _n(f.get("BRAM_18K")), _n(f.get("DSP")), f.get("fits", "-")]
        if has_csim:
            cells.append(_n(f.get("csim_mismatches")))
        cells.append("ok" if f["status"] == "ok" else f"failed: {f['error']}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    acc_src = next((f["accuracy_source"] for f in flat if f.get("accuracy_source")), None)
    lines += ["", "Sources: accuracy from the integer golden model"
              + (f" ({acc_src})" if acc_src else "") + "; images/s, LUT, FF, BRAM, DSP are `estimate` "
              "(flow/report/estimate.py, the fastest balanced design that fits the board), not a vendor tool."]
    notes = sorted({f"{s}: {f[f'{s}_status']}" for f in flat for s in ("cosim", "yosys", "synth")
                    if f.get(f"{s}_status")})
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def pareto_front(points: list) -> list:
    """Indices of the points no other point beats in both images/s and accuracy (both maximised)."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot(flat: list, path, title: str = "Sweep") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    boards = list(dict.fromkeys(f["board"] for f in flat))
    pts = [f for f in flat if f.get("accuracy") is not None and f.get("images_per_s")]
    luts = [f["LUT"] for f in pts] or [0, 1]
    norm = Normalize(min(luts), max(luts))
    ncol = min(len(boards), 2) or 1
    nrow = (len(boards) + ncol - 1) // ncol or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.0 * ncol, 4.2 * nrow), squeeze=False)
    sc = None
    for ax, board in zip(axes.flat, boards):
        mine = [f for f in pts if f["board"] == board]
        missing = sum(1 for f in flat if f["board"] == board) - len(mine)
        for design, marker in (("zero-DSP", "o"), ("plain", "s")):
            ds = [f for f in mine if f["design"] == design]
            if ds:
                sc = ax.scatter([f["images_per_s"] for f in ds], [100 * f["accuracy"] for f in ds],
                                c=[f["LUT"] for f in ds], cmap="viridis", norm=norm, marker=marker, s=55,
                                edgecolors="none", label=design, zorder=3)
        front = [mine[i] for i in pareto_front([(f["images_per_s"], f["accuracy"]) for f in mine])]
        if front:
            front.sort(key=lambda f: f["images_per_s"])
            ax.step([f["images_per_s"] for f in front], [100 * f["accuracy"] for f in front], where="post",
                    color="crimson", lw=1.2, zorder=2, label="Pareto front")
            ax.scatter([f["images_per_s"] for f in front], [100 * f["accuracy"] for f in front], s=130,
                       facecolors="none", edgecolors="crimson", lw=1.5, zorder=4)
        for f in mine:
            ax.annotate(f"W{f['bits']}", (f["images_per_s"], 100 * f["accuracy"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_title(board + (f"  ({missing} not shown: do not fit or failed)" if missing else ""), fontsize=10)
        ax.set_xlabel("images/s (estimate)")
        ax.set_ylabel("accuracy (%) (golden model)")
        ax.grid(True, which="both", alpha=0.3)
        if mine:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(boards):]:
        ax.axis("off")
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), label="LUT (estimate)")
    fig.suptitle(f"{title}: accuracy vs images/s, LUT as colour (o zero-DSP, s plain), Pareto front in red",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_outputs(rows: list, sweep, stats: dict, executor: str, folder, title: str = "Sweep") -> list:
    folder = Path(folder)
    flat = write_csv(rows, folder / "sweep.csv")
    (folder / "sweep.md").write_text(markdown(flat, sweep, stats, executor, title))
    plot(flat, folder / "pareto.png", title)
    return flat
