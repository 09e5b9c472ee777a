"""yosys `synth_xilinx` of the register-transfer design in BUILD/rtl: per layer and for the whole design.

    runs = synth_runs(manifest, board, layers=None, whole=True)   # what to synthesise (checked, nothing run)
    results = run_all(rtl_dir, runs, log_dir, jobs=2)             # yosys, --jobs at a time; logs in log_dir
    section = yosys_section(results, board, version, jobs)        # report.json["yosys"]

Counts come from yosys `stat -json` (cells by type after synth_xilinx): `cell_counts` is the one place
that says which Xilinx primitives are LUTs, flip-flops, BRAM18K halves, DSPs and carry chains; the PE
cost bench (bench/pe_cost/pe_cost.py) uses it as well. yosys counts are of its own mapping, not Vivado's:
they are labelled "source": "yosys" wherever they go and never mixed into the estimate.

Tools run with cwd BUILD/rtl, since the generator's `$readmemh` paths are relative to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flow.boards import Board, get_board
from flow.errors import AdderFlowError, ToolMissingError
from flow.report.calibration import FAMILY_OF_BOARD
from flow.rtl.generate import MANIFEST

SOURCE = "yosys"
RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP", "CARRY")
WHOLE = "(whole design)"   # the key of the whole-design run among the per-layer ones
DEFAULT_TIMEOUT_S = 3600

# LUT sites a distributed-RAM / shift-register primitive occupies: Vivado's "Slice LUTs" count LUTs used
# as memory as well, so these go into LUT (and, separately, into LUT_as_memory).
_LUTRAM_SITES = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X16DR8": 8,
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}


def cell_counts(cells: dict) -> dict:
    """{Xilinx primitive: count} (stat's num_cells_by_type) -> LUT, FF, BRAM_18K, DSP, CARRY (+ details).

    LUT = LUT1..LUT6 + INV (yosys keeps inverters as cells; Vivado folds them into LUTs) + LUTs used as
    distributed RAM / SRL; FF = FD* flip-flops; BRAM_18K = RAMB18 + 2 x RAMB36 (18K halves, as the board
    capacities in flow/boards.py); DSP = DSP48E1/E2; CARRY = CARRY4 / CARRY8 chain cells."""
    out = {k: 0 for k in RESOURCES}
    out["LUT_as_memory"] = 0
    out["latches"] = 0
    for cell, n in cells.items():
        name = str(cell).lstrip("\\$")
        n = int(n)
        if name.startswith("LUT") or name == "INV":
            out["LUT"] += n
        elif name in _LUTRAM_SITES:
            out["LUT"] += n * _LUTRAM_SITES[name]
            out["LUT_as_memory"] += n * _LUTRAM_SITES[name]
        elif name.startswith("FD"):
            out["FF"] += n
        elif name.startswith("LD"):
            out["latches"] += n          # a latch is a design bug in this flow: counted, never hidden
        elif name.startswith("RAMB18"):
            out["BRAM_18K"] += n
        elif name.startswith("RAMB36"):
            out["BRAM_18K"] += 2 * n
        elif name.startswith("DSP48"):
            out["DSP"] += n
        elif name.startswith("CARRY"):
            out["CARRY"] += n
    return out


def parse_stat_json(data, top: str | None = None) -> dict:
    """yosys `stat -json` output (text or parsed) -> cell_counts of the design (its hierarchy total when
    yosys gives one, else the top module's cells)."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise AdderFlowError(f"yosys stat output is not JSON ({exc.msg} at line {exc.lineno})") from None
    mods = data.get("modules") or {}
    if "design" in data:
        cells = data["design"].get("num_cells_by_type", {})
    elif top is not None and ("\\" + top in mods or top in mods):
        cells = (mods.get("\\" + top) or mods[top]).get("num_cells_by_type", {})
    elif len(mods) == 1:
        cells = next(iter(mods.values())).get("num_cells_by_type", {})
    else:
        raise AdderFlowError(f"yosys stat output has no design total and no module {top!r}")
    return {**cell_counts(cells), "cells": dict(sorted((k.lstrip("\\"), int(v)) for k, v in cells.items()))}


def family_of(board) -> str:
    """synth_xilinx -family for a board: xc7 (Zynq-7000, pynq-z2) or xcup (Zynq UltraScale+)."""
    b = board if isinstance(board, Board) else get_board(str(board))
    try:
        return FAMILY_OF_BOARD[b.family]
    except KeyError:
        raise AdderFlowError(f"board {b.name}: no yosys synth_xilinx family for PS family '{b.family}'") from None


def yosys_version(yosys: str) -> str:
    out = subprocess.run([yosys, "-V"], capture_output=True, text=True, timeout=60).stdout
    return out.split("(")[0].strip() or "yosys (unknown version)"


def find_yosys() -> str:
    y = shutil.which("yosys")
    if y is None:
        raise ToolMissingError("yosys is not on PATH (Debian: apt-get install yosys); nothing was synthesised")
    return y


# ---- what to run ----------------------------------------------------------------------------------

def load_manifest(rtl_dir) -> dict:
    """BUILD/rtl/manifest.json (read by the harness's one reader), checked for what synthesis reads: the
    keys, and every Verilog file it lists present in BUILD/rtl."""
    from flow.rtl.harness import load_manifest as read_manifest

    p = Path(rtl_dir) / MANIFEST
    man = read_manifest(rtl_dir)
    for key in ("top", "files", "layers"):
        if key not in man:
            raise AdderFlowError(f"{p}: no '{key}' entry")
    for f in man["files"] + [f for L in man["layers"] for f in L.get("files", [])]:
        if not (Path(rtl_dir) / f).is_file():
            raise AdderFlowError(f"{p}: lists {f}, which is not in {rtl_dir}")
    return man


def synth_runs(manifest: dict, layers=None, whole: bool = True) -> list[dict]:
    """[{name, top, files}] for the chosen layers (all by default) and, with `whole`, the whole design.
    Unknown layer names are refused (one line naming them) before anything runs."""
    by_name = {L["name"]: L for L in manifest["layers"]}
    if layers is not None:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise AdderFlowError(f"--layers: no layer {', '.join(unknown)} in the RTL manifest "
                                 f"(layers: {', '.join(by_name) or 'none'})")
    chosen = [by_name[n] for n in layers] if layers is not None else list(manifest["layers"])
    runs = [{"name": L["name"], "top": L["module"], "files": list(L.get("files") or manifest["files"])}
            for L in chosen]
    if whole:   # first: the longest run starts at once and the layers share the other slots around it
        runs.insert(0, {"name": WHOLE, "top": manifest["top"], "files": list(manifest["files"])})
    if not runs:
        raise AdderFlowError("nothing to synthesise: no layers chosen and --no-whole")
    return runs


# ---- running --------------------------------------------------------------------------------------

def log_name(run: dict) -> str:
    return ("whole_" if run["name"] == WHOLE else "layer_") + "".join(
        c if c.isalnum() or c in "-_" else "_" for c in (run["top"] if run["name"] == WHOLE else run["name"]))


def synth_command(family: str, top: str, nodsp: bool = False) -> str:
    """The synth_xilinx call of every run (and, with top TOP, the report's record of it). -nodsp for a
    zero-DSP build: the HLS design realises its constant multiplications as shift-add, and the RTL's
    remaining multipliers (first conv's MAC lanes, the classifier) must then be LUT logic too, as the
    build promised, instead of the DSP48s yosys would otherwise infer."""
    return f"synth_xilinx -family {family} -flatten -noiopad{' -nodsp' if nodsp else ''} -top {top}"


def synth_one(yosys: str, rtl_dir, run: dict, family: str, log_dir, timeout_s: float = DEFAULT_TIMEOUT_S,
              nodsp: bool = False) -> dict:
    """One yosys run: read the files, synth_xilinx -family F -top T, stat. Log in log_dir/<name>.log.

    -noiopad: a layer, and the whole design too, is an IP inside the block design, not a chip top, so no
    I/O buffers are inserted (they would add one IBUF/OBUF per port bit that Vivado would not have).
    -flatten: one module, as Vivado's default synthesis sees it (optimised across the wrapper/library
    boundaries); yosys 0.23's `stat -json` of a two-level hierarchy (af_top -> layer -> library module) is
    not valid JSON (the hierarchy summary is printed as text inside it)."""
    rtl_dir, log_dir = Path(rtl_dir).resolve(), Path(log_dir).resolve()
    base = log_name(run)
    log, stat, stat_txt = log_dir / f"{base}.log", log_dir / f"{base}.stat.json", log_dir / f".{base}.stat.txt"
    files = " ".join(run["files"])
    script = (f"read_verilog -sv {files}; {synth_command(family, run['top'], nodsp)}; "
              f"tee -q -o {stat_txt} stat; tee -q -o {stat} stat -json")
    # The log is the command, yosys's warnings and errors (-q) and the text stat: yosys's full log (-l) of
    # one ResNet-20 layer reaches a gigabyte (every optimisation step of every cell) and slows the run.
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([yosys, "-q", "-p", script], cwd=rtl_dir, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _write_log(log, yosys, script, rtl_dir, exc.stdout, exc.stderr, None, f"timed out after {timeout_s:.0f} s")
        raise AdderFlowError(f"yosys on {run['top']} ran past {timeout_s:.0f} s (log: {log})") from None
    wall = time.perf_counter() - t0
    _write_log(log, yosys, script, rtl_dir, proc.stdout, proc.stderr, stat_txt, f"exit {proc.returncode}, {wall:.1f} s")
    if proc.returncode != 0 or not stat.is_file():
        err = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if "ERROR" in ln]
        raise AdderFlowError(f"yosys failed on {run['top']} (exit {proc.returncode}): "
                             f"{err[0] if err else 'see ' + str(log)}")
    counts = parse_stat_json(stat.read_text(), run["top"])
    return {"name": run["name"], "top": run["top"], **counts, "wall_s": round(wall, 2),
            "log": str(log.relative_to(rtl_dir)) if log.is_relative_to(rtl_dir) else str(log)}


def _write_log(log: Path, yosys: str, script: str, cwd: Path, out, err, stat_txt: Path | None, how: str) -> None:
    def text(v):
        return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")

    parts = [f"# {yosys} -q -p '{script}'", f"# cwd {cwd}", f"# {how}", "", text(out), text(err)]
    if stat_txt is not None and stat_txt.is_file():
        parts.append(stat_txt.read_text())
        stat_txt.unlink()
    log.write_text("\n".join(parts))


def run_all(rtl_dir, runs: list[dict], log_dir, family: str, jobs: int = 2, yosys: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, progress=print, keep_going: bool = False,
            nodsp: bool = False) -> list[dict]:
    """Every run, `jobs` yosys processes at a time (the work is in the child processes, so a thread per
    slot waiting on its yosys is the pool), a progress line per finished run. Results in `runs` order.
    A failing run stops the rest (those not yet started) and raises its one-line error; with keep_going
    it becomes {"name", "top", "error"} and the others go on (a slow layer does not cost the others)."""
    if jobs < 1:
        raise AdderFlowError(f"--jobs must be >= 1, got {jobs}")
    yosys = yosys or find_yosys()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    done, t0 = 0, time.perf_counter()
    results: dict[int, dict] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(synth_one, yosys, rtl_dir, r, family, log_dir, timeout_s, nodsp): i for i, r in enumerate(runs)}
        try:
            for fut in _as_completed(futs):
                try:
                    res = fut.result()
                except AdderFlowError as exc:
                    if not keep_going:
                        raise
                    r = runs[futs[fut]]
                    res = {"name": r["name"], "top": r["top"], "error": str(exc)}
                results[futs[fut]] = res
                done += 1
                if progress and "error" in res:
                    progress(f"[synth] {done}/{len(runs)} {res['name']} ({res['top']}): FAILED: {res['error']}")
                elif progress:
                    progress(f"[synth] {done}/{len(runs)} {res['name']} ({res['top']}): LUT {res['LUT']}, "
                             f"FF {res['FF']}, BRAM_18K {res['BRAM_18K']}, DSP {res['DSP']}, CARRY {res['CARRY']} "
                             f"in {res['wall_s']:.1f} s (total {time.perf_counter() - t0:.0f} s)")
        except BaseException:
            for f in futs:
                f.cancel()
            raise
    return [results[i] for i in range(len(runs))]


def _as_completed(futs):
    from concurrent.futures import as_completed

    return as_completed(futs)


def yosys_section(results: list[dict], board, version: str, jobs: int, nodsp: bool = False) -> dict:
    """report.json["yosys"]: {"source", "tool", "part", "family", "total", "layers", ...}. `total` is the
    whole-design run when there is one (the sum of layers lacks the stream FIFOs, clones and AXI ends);
    `layers_sum` is the per-layer sum, always."""
    b = board if isinstance(board, Board) else get_board(str(board))
    keep = RESOURCES + ("LUT_as_memory", "latches", "wall_s", "top", "log")
    failed = {r["name"]: r["error"] for r in results if "error" in r}
    results = [r for r in results if "error" not in r]
    layers = {r["name"]: {k: r[k] for k in keep} for r in results if r["name"] != WHOLE}
    whole = next((r for r in results if r["name"] == WHOLE), None)
    lsum = {k: sum(L[k] for L in layers.values()) for k in RESOURCES}
    sec = {"source": SOURCE, "tool": version, "part": b.part, "board": b.name, "family": family_of(b),
           "command": f"{synth_command(family_of(b), 'TOP', nodsp)}; stat -json", "nodsp": bool(nodsp),
           "jobs": int(jobs), "total": ({k: whole[k] for k in keep} | {"what": "whole design"} if whole else
                                        {**lsum, "what": "sum of the synthesised layers (" + (
                                            "the whole-design run failed)" if WHOLE in failed else "no --whole run)")}),
           "layers": layers, "layers_sum": lsum,
           "wall_s": {"layers": round(sum(L["wall_s"] for L in layers.values()), 2),
                      "whole": whole["wall_s"] if whole else None},
           "note": "yosys synth_xilinx mapping, not Vivado: LUT counts include INV cells and LUTs as memory"}
    if failed:
        sec["failed"] = failed
    return sec


def synth_build(build, board=None, layers=None, whole: bool = True, jobs: int = 2, force: bool = False,
                timeout_s: float = DEFAULT_TIMEOUT_S, progress=print, keep_going: bool = False,
                add: bool = False, dsp: bool | None = None) -> dict:
    """`adderflow synth BUILD --yosys`: runs into a temporary log folder, swapped in as BUILD/rtl/yosys
    when every run passed; report.json["yosys"] merged (report.md re-rendered). Returns the section.
    add: the runs join an existing BUILD/rtl/yosys (same-named entries replaced, the others kept), so a
    whole-design run or a re-run layer does not cost every layer again."""
    build = Path(build)
    rtl_dir = build / "rtl"
    man = load_manifest(rtl_dir)
    b = get_board(board or man.get("board") or _report_board(build))
    if man.get("part") and man["part"] != b.part:
        raise AdderFlowError(f"{rtl_dir / MANIFEST}: generated for part {man['part']}, not {b.name} ({b.part})")
    runs = synth_runs(man, layers, whole)
    # dsp None: as the build was made (a zero-DSP build may not use DSPs); True/False forces it
    nodsp = bool(man.get("shift_add")) if dsp is None else not dsp
    if jobs < 1:
        raise AdderFlowError(f"--jobs must be >= 1, got {jobs}")
    final = rtl_dir / "yosys"
    old = None
    if add:
        if not (final / "yosys.json").is_file():
            raise AdderFlowError(f"--add: {final / 'yosys.json'} does not exist (run without --add first)")
        try:
            old = json.loads((final / "yosys.json").read_text())
        except json.JSONDecodeError as exc:
            raise AdderFlowError(f"{final / 'yosys.json'}: not valid JSON ({exc.msg})") from None
        if old.get("part") != b.part:
            raise AdderFlowError(f"--add: {final} holds figures for {old.get('part')}, not {b.part}")
    elif final.exists() and not force:
        raise AdderFlowError(f"{final} exists (pass --force to replace it and the report's yosys section, "
                             f"or --add to add runs to it)")
    yosys = find_yosys()
    version = yosys_version(yosys)
    fam = family_of(b)
    if progress:
        progress(f"[synth] {version}: {synth_command(fam, 'TOP', nodsp)} for {b.name} ({b.part}), {len(runs)} run(s), "
                 f"{jobs} at a time; logs in {final}")
    tmp = rtl_dir / f".yosys.adderflow-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    if old is not None:
        shutil.copytree(final, tmp)          # the kept runs' logs travel with the new ones
    try:
        results = run_all(rtl_dir, runs, tmp, fam, jobs, yosys, timeout_s, progress, keep_going, nodsp)
        if all("error" in r for r in results):
            raise AdderFlowError(f"every yosys run failed, first: {results[0]['error']}")
        for r in results:   # logs are named for where they will live
            if "log" in r:
                r["log"] = str(Path("yosys") / Path(r["log"]).name)
        section = yosys_section(results, b, version, jobs, nodsp)
        if old is not None:
            section = merge_sections(old, section)
        (tmp / "yosys.json").write_text(json.dumps(section, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    merge_into_report(build, section)
    return section


def merge_sections(old: dict, new: dict) -> dict:
    """`new` runs over `old` ones of the same name; totals recomputed; the whole-design total is the newer
    one that exists. The tool must be the same yosys (figures of two versions are not summed)."""
    if old.get("tool") != new["tool"] or old.get("command") != new["command"]:
        raise AdderFlowError(f"--add: the existing figures are from {old.get('tool')} ({old.get('command')}), "
                             f"these from {new['tool']} ({new['command']}): rerun everything with --force")
    out = dict(new)
    out["layers"] = {**old.get("layers", {}), **new["layers"]}
    out["layers_sum"] = {k: sum(L[k] for L in out["layers"].values()) for k in RESOURCES}
    new_whole = new["total"].get("what") == "whole design"
    old_whole = (old.get("total") or {}).get("what") == "whole design"
    if not new_whole:
        out["total"] = old["total"] if old_whole else {**out["layers_sum"],
                                                       "what": new["total"]["what"]}
    failed = {k: v for k, v in (old.get("failed") or {}).items() if k not in out["layers"] and not (
        k == WHOLE and new_whole)}
    failed.update(new.get("failed") or {})
    out.pop("failed", None)
    if failed:
        out["failed"] = failed
    out["wall_s"] = {"layers": round(sum(L["wall_s"] for L in out["layers"].values()), 2),
                     "whole": new["wall_s"]["whole"] if new_whole else (old.get("wall_s") or {}).get("whole")}
    return out


def _report_board(build: Path) -> str:
    p = build / "report.json"
    if p.is_file():
        try:
            board = json.loads(p.read_text()).get("board")
        except json.JSONDecodeError:
            board = None
        if board:
            return board
    raise AdderFlowError(f"{build}: the RTL manifest names no board and there is no report.json naming one "
                         f"(pass --board)")


def merge_into_report(build, section: dict) -> dict:
    """report.json["yosys"] = section, the rest of the report as it was; report.md/.png re-rendered.
    Written beside and renamed over, so an interrupted write leaves the old report whole."""
    from flow.report import apply_measured, render_files

    build = Path(build)
    p = build / "report.json"
    rep = {}
    if p.is_file():
        try:
            rep = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise AdderFlowError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); yosys figures kept in "
                                 f"{build / 'rtl' / 'yosys' / 'yosys.json'}") from None
    rep.setdefault("board", section["board"])
    rep.setdefault("part", section["part"])
    rep["yosys"] = section
    apply_measured(rep)
    from flow.commands.report import _render_in_place

    _render_in_place(rep, build, render_files)
    return rep


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
