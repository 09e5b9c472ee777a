"""Vivado flow for a build: HLS IP export (vitis_hls) then the overlay block design and bitstream (vivado).

BUILD/hls_prj/adderflow_export.tcl     written by flow.board.axi_top (csynth + export_design, top adderflow_top)
BUILD/vivado/params.tcl                generated here: board (flow/boards.py), IP (adderflow_ip.json), paths
BUILD/vivado/settings.tcl              copy of overlays/<board>/settings.tcl
BUILD/vivado/block_design.tcl          copy of overlays/common/block_design.tcl (one template, every board)
BUILD/vivado/build_bitstream.tcl       entry point: vivado -mode batch -source build_bitstream.tcl
BUILD/bitstream/adderflow.{bit,hwh}    + utilisation/timing reports, timing.json (written by Vivado)

Without Vivado, `check_tcl` runs the generated script in tclsh against overlays/common/vivado_stub.tcl.

impl="rtl" (`make bitstream IMPL=rtl`): the same block design around the register-transfer design instead
(BUILD/rtl from `adderflow rtl`), packaged as IP by overlays/common/package_rtl_ip.tcl in the same Vivado
session; scripts in BUILD/vivado_rtl/, outputs in BUILD/bitstream_rtl/, so the HLS ones are never touched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from flow.board import axi_top
from flow.boards import get_board
from flow.errors import AdderFlowError, ToolMissingError
from flow.paths import overlays_dir

OVERLAYS = overlays_dir()
BD_NAME = "adderflow"
BIT_NAME = "adderflow"
IMPLS = ("hls", "rtl")
# the packaged register-transfer IP: adderflow.org:rtl:af_top:1.0 (top from BUILD/rtl/manifest.json)
RTL_IP_VENDOR, RTL_IP_LIBRARY, RTL_IP_VERSION = "adderflow.org", "rtl", "1.0"
RTL_IP_REPO = "ip_repo"           # BUILD/vivado_rtl/ip_repo, written by Vivado (ipx::package_project)


def dirs(impl: str) -> tuple[str, str]:
    """(scripts folder, outputs folder) under BUILD for an implementation."""
    if impl not in IMPLS:
        raise AdderFlowError(f"--impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    return ("vivado", "bitstream") if impl == "hls" else ("vivado_rtl", "bitstream_rtl")


def rtl_ip(build: Path) -> dict:
    """The IP description of BUILD/rtl as the overlay sees it (same shape as the HLS adderflow_ip.json):
    AXI4-Stream s_axis (slave) and m_axis (master), clock clk, active-high reset rst; no AXI4-Lite."""
    from flow.rtl.synth import load_manifest

    man = load_manifest(build / "rtl")
    top = man["top"]
    roms = sorted({r for L in man["layers"] for r in L.get("roms", [])})
    missing = [r for r in roms if not (build / "rtl" / r).is_file()]
    if missing:
        raise AdderFlowError(f"{build / 'rtl' / 'manifest.json'}: lists ROM {missing[0]}, which is not in {build / 'rtl'}")
    return {"vlnv": f"{RTL_IP_VENDOR}:{RTL_IP_LIBRARY}:{top}:{RTL_IP_VERSION}", "top": top,
            "interfaces": {"s_axis": {"mode": "axis", "role": "slave"}, "m_axis": {"mode": "axis", "role": "master"}},
            "ports": ["clk", "rst"], "files": list(man["files"]), "data_files": roms,
            "word_bits": int(man.get("word_bits", 64)), "part": man.get("part")}


def _tcl_str(s) -> str:
    return "{" + str(s) + "}"


def ensure_wrapper(build: Path) -> dict:
    """The AXI wrapper and IP description in BUILD/hls_prj (generated when the HLS step did not)."""
    hls = build / "hls_prj"
    if not hls.is_dir():
        raise AdderFlowError(f"{build}: no hls_prj/ (run `adderflow hls --out {build}` first)")
    ip_json = hls / axi_top.IP_JSON
    if not ip_json.is_file():
        from flow import qnet as qnet_mod
        axi_top.write_axi_top(hls, qnet_mod.load(build / "qnet"))
    return json.loads(ip_json.read_text())


def write_vivado_scripts(build, board: str, jobs: int = 2, impl: str = "hls") -> Path:
    """Generate BUILD/vivado/*.tcl (BUILD/vivado_rtl/*.tcl for impl="rtl") for `board`; returns the entry script."""
    build = Path(build).resolve()
    b = get_board(board)
    settings = OVERLAYS / b.name / "settings.tcl"
    if not settings.is_file():
        raise AdderFlowError(f"{settings}: no overlay settings for board {b.name}")
    if impl == "rtl":
        return _write_rtl_scripts(build, b, jobs, settings)
    dirs(impl)
    ip = ensure_wrapper(build)
    roles = {n: i["role"] for n, i in ip["interfaces"].items()}
    ip_in = next(n for n, i in ip["interfaces"].items() if i["mode"] == "axis" and i["role"] == "slave")
    ip_out = next(n for n, i in ip["interfaces"].items() if i["mode"] == "axis" and i["role"] == "master")
    ip_ctrl = next(n for n, i in ip["interfaces"].items() if i["mode"] == "s_axilite")
    vdir = build / "vivado"
    vdir.mkdir(parents=True, exist_ok=True)
    params = {
        "af_board": b.name, "af_part": b.part, "af_family": b.family, "af_clock_mhz": f"{b.clock_mhz:g}",
        "af_ip_vlnv": ip["vlnv"], "af_ip_in": ip_in, "af_ip_out": ip_out, "af_ip_ctrl": ip_ctrl,
        "af_dma_width": ip["layout"]["input"]["word_bits"], "af_bd_name": BD_NAME, "af_bit_name": BIT_NAME,
        "af_jobs": int(jobs),
    }
    paths = [f"set af_ip_repo [file join $af_here .. hls_prj {ip['ip_repo']}]",
             "set af_project_dir [file join $af_here project]",
             "set af_out_dir [file join $af_here .. bitstream]",
             f"# IP interfaces (role): {json.dumps(roles)}; ports: {' '.join(ip['ports'])}"]
    return _write_overlay(vdir, b, "", params, paths, settings, [],
                          f"# AdderFlow overlay for {b.name}: vivado -mode batch -source build_bitstream.tcl\n"
                          "# (after `vitis_hls -f ../hls_prj/adderflow_export.tcl` exported the HLS IP)\n")


def _write_overlay(vdir: Path, b, impl_note: str, params: dict, paths: list, settings: Path, before_settings: list,
                   entry_comment: str) -> Path:
    """The one layout of a Vivado overlay folder (both IMPLs): params.tcl (the `set`s, then the paths),
    settings.tcl and block_design.tcl copied from the overlay templates (plus `before_settings` templates
    from overlays/common, sourced first), and build_bitstream.tcl sourcing them in order."""
    lines = [f"# Generated by flow.board.bitstream for {b.name} ({b.part}, {b.clock_mhz:g} MHz){impl_note}; do not edit.",
             "set af_here [file dirname [file normalize [info script]]]"]
    lines += [f"set {k} {_tcl_str(v)}" for k, v in params.items()]
    (vdir / "params.tcl").write_text("\n".join(lines + paths) + "\n")
    shutil.copyfile(settings, vdir / "settings.tcl")
    for name in before_settings:
        shutil.copyfile(OVERLAYS / "common" / name, vdir / name)
    shutil.copyfile(OVERLAYS / "common" / "block_design.tcl", vdir / "block_design.tcl")
    entry = vdir / "build_bitstream.tcl"
    sources = ["params.tcl", *before_settings, "settings.tcl", "block_design.tcl"]
    entry.write_text(entry_comment + "set af_script_dir [file dirname [file normalize [info script]]]\n"
                     + "".join(f"source [file join $af_script_dir {n}]\n" for n in sources))
    return entry


def _write_rtl_scripts(build: Path, b, jobs: int, settings: Path) -> Path:
    """BUILD/vivado_rtl/: params.tcl (board, the RTL IP from BUILD/rtl/manifest.json, paths), settings.tcl,
    package_rtl_ip.tcl and block_design.tcl (copies of the overlay templates), build_bitstream.tcl."""
    ip = rtl_ip(build)
    if ip["part"] and ip["part"] != b.part:
        raise AdderFlowError(f"{build / 'rtl'} was generated for part {ip['part']}, not {b.name} ({b.part}): "
                             f"regenerate it with `adderflow rtl` for {b.name}")
    vdir = build / dirs("rtl")[0]
    vdir.mkdir(parents=True, exist_ok=True)
    params = {
        "af_board": b.name, "af_part": b.part, "af_family": b.family, "af_clock_mhz": f"{b.clock_mhz:g}",
        "af_ip_vlnv": ip["vlnv"], "af_ip_in": "s_axis", "af_ip_out": "m_axis", "af_ip_ctrl": "",
        "af_ip_clk": "clk", "af_ip_reset": "rst", "af_ip_reset_active_low": 0, "af_ip_irq": "",
        "af_dma_width": ip["word_bits"], "af_bd_name": BD_NAME, "af_bit_name": BIT_NAME, "af_jobs": int(jobs),
        "af_rtl_top": ip["top"], "af_ip_vendor": RTL_IP_VENDOR, "af_ip_library": RTL_IP_LIBRARY,
        "af_ip_version": RTL_IP_VERSION,
    }
    paths = ["set af_rtl_dir [file join $af_here .. rtl]",
             "set af_rtl_files [list " + " ".join(_tcl_str(f) for f in ip["files"]) + "]",
             "set af_rtl_data_files [list " + " ".join(_tcl_str(f) for f in ip["data_files"]) + "]",
             f"set af_ip_repo [file join $af_here {RTL_IP_REPO}]",
             "set af_rtl_project_dir [file join $af_here rtl_ip_project]",
             "set af_project_dir [file join $af_here project]",
             f"set af_out_dir [file join $af_here .. {dirs('rtl')[1]}]"]
    return _write_overlay(vdir, b, ", IMPL=rtl", params, paths, settings, ["package_rtl_ip.tcl"],
                          f"# AdderFlow overlay for {b.name}, register-transfer IP: vivado -mode batch -source "
                          "build_bitstream.tcl\n")


def check_tcl(build, board: str, impl: str = "hls") -> dict:
    """Dry-run the generated overlay Tcl in tclsh with Vivado stubbed (see vivado_stub.tcl).

    Returns {"cells", "intf_nets", "nets", "ip_vlnv"} (+ "rtl_files" for impl="rtl"); raises AdderFlowError
    naming the first problem."""
    build = Path(build).resolve()
    vname, bname = dirs(impl)
    entry = write_vivado_scripts(build, board, impl=impl)
    ip = json.loads((build / "hls_prj" / axi_top.IP_JSON).read_text()) if impl == "hls" else rtl_ip(build)
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        raise ToolMissingError("tclsh not on PATH: cannot dry-run the overlay Tcl")
    if impl == "hls":
        _check_export_tcl(build / "hls_prj" / axi_top.EXPORT_TCL, ip["vlnv"])
    scratch = build / vname / "dryrun"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    intf = " ".join(f"{n} {i['role']}" for n, i in ip["interfaces"].items())
    driver = scratch / "dryrun.tcl"
    driver.write_text(
        f"set stub_ip_vlnv {_tcl_str(ip['vlnv'])}\n"
        f"set stub_ip_intf [dict create {intf}]\n"
        f"set stub_ip_ports {_tcl_str(' '.join(ip['ports']))}\n"
        f"source {_tcl_str(OVERLAYS / 'common' / 'vivado_stub.tcl')}\n"
        f"set af_script_dir {_tcl_str(entry.parent)}\n"
        f"source [file join $af_script_dir params.tcl]\n"
        f"set af_project_dir {_tcl_str(scratch / 'project')}\n"
        f"set af_out_dir {_tcl_str(scratch / 'bitstream')}\n"
        + (f"set af_rtl_project_dir {_tcl_str(scratch / 'rtl_ip_project')}\n"
           f"set af_ip_repo {_tcl_str(scratch / RTL_IP_REPO)}\n"
           "set stub_added_files {}\n"
           "source [file join $af_script_dir package_rtl_ip.tcl]\n"
           "puts \"DRYRUN_PKG [list $stub_pkg_vl $stub_pkg_root] $stub_added_files\"\n" if impl == "rtl" else "")
        + "source [file join $af_script_dir settings.tcl]\n"
        "source [file join $af_script_dir block_design.tcl]\n"
        "puts \"DRYRUN $stub_counts\"\n")
    proc = subprocess.run([tclsh, str(driver)], capture_output=True, text=True, cwd=scratch)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["tclsh failed"])[0]
        raise AdderFlowError(f"overlay Tcl for {board} fails its dry run: {msg}")
    m = re.search(r"DRYRUN (.*)", proc.stdout)
    counts = dict(zip(*[iter(m.group(1).split())] * 2)) if m else {}
    for name in (f"{BIT_NAME}.bit", f"{BIT_NAME}.hwh", "timing.json"):
        if not (scratch / "bitstream" / name).is_file():
            raise AdderFlowError(f"overlay Tcl dry run for {board} did not deliver {name}")
    out = {k: int(v) for k, v in counts.items()} | {"ip_vlnv": ip["vlnv"]}
    if impl == "rtl":
        out.update(_check_rtl_package(re.search(r"DRYRUN_PKG (.*)", proc.stdout), ip, build, scratch, board))
    return out


def _check_rtl_package(m, ip: dict, build: Path, scratch: Path, board: str) -> dict:
    """The packaging Tcl added exactly the manifest's Verilog and ROM files and packaged the top the block
    design instantiates (vendor:library of its VLNV, under ip_repo/<top>)."""
    import shlex

    if not m:
        raise AdderFlowError(f"IP packaging Tcl for {board} did not run to its end in the dry run")
    words = shlex.split(m.group(1).replace("{", "'").replace("}", "'"))
    vl, root, added = words[0], words[1], words[2:]
    vendor, library, top, _ = ip["vlnv"].split(":")
    if vl != f"{vendor}:{library}" or Path(root).name != top:
        raise AdderFlowError(f"IP packaging Tcl packages {vl} at {root}, the block design instantiates {ip['vlnv']}")
    want = [str((build / "rtl" / f).resolve()) for f in ip["files"] + ip["data_files"]]
    got = [str(Path(f).resolve()) for f in added]
    if got != want:
        raise AdderFlowError(f"IP packaging Tcl adds {len(got)} files, the RTL manifest lists {len(want)}")
    return {"rtl_files": len(ip["files"]), "rtl_data_files": len(ip["data_files"]), "rtl_top": top}


def _check_export_tcl(path: Path, vlnv: str) -> None:
    text = path.read_text()
    m = re.search(r"export_design .*-vendor (\S+) -library (\S+) -version (\S+) -ipname (\S+)", text)
    if not m or f"{m.group(1)}:{m.group(2)}:{m.group(4)}:{m.group(3)}" != vlnv:
        raise AdderFlowError(f"{path}: export_design does not produce the IP {vlnv} the overlay instantiates")
    if f"set_top {axi_top.TOP_NAME}" not in text:
        raise AdderFlowError(f"{path}: the exported top is not {axi_top.TOP_NAME}")


def _check_part(build: Path, board: str) -> None:
    """The HLS IP is synthesised for one part: the overlay must target the same one."""
    tcl = build / "hls_prj" / "project.tcl"
    m = re.search(r'set\s+part\s+"?([\w-]+)"?', tcl.read_text()) if tcl.is_file() else None
    want = get_board(board).part
    if m and m.group(1) != want:
        raise AdderFlowError(f"{build} was synthesised for part {m.group(1)}, not {board} ({want}): "
                             f"rebuild with `adderflow hls --board {board}`")


def _run_tool(cmd: list, cwd: Path, log: Path, what: str) -> None:
    """Run a vendor tool, streaming its output to `log` and a heartbeat to stderr."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(30)
            print(f"  {what}: running {time.time() - t0:.0f} s (log: {log})", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if "ERROR" in ln][:1]
        raise AdderFlowError(f"{what} failed (exit {proc.returncode}): {tail[0] if tail else 'see ' + str(log)}")


def build_bitstream(build, board: str, jobs: int = 2, force: bool = False, impl: str = "hls") -> dict:
    """HLS IP export (impl="hls"), then Vivado. Stops with ToolMissingError (exit 2) where a tool is missing,
    after the scripts are generated and dry-run checked."""
    build = Path(build).resolve()
    out = build / dirs(impl)[1]
    if (out / f"{BIT_NAME}.bit").exists() and not force:
        raise AdderFlowError(f"{out / (BIT_NAME + '.bit')} exists (use --force to rebuild)")
    if impl == "rtl":
        return _build_rtl_bitstream(build, board, jobs)
    _check_part(build, board)
    entry = write_vivado_scripts(build, board, jobs)
    checked = check_tcl(build, board) if shutil.which("tclsh") else None
    hls = build / "hls_prj"
    export = hls / axi_top.EXPORT_TCL
    ip_repo = hls / json.loads((hls / axi_top.IP_JSON).read_text())["ip_repo"]
    steps = (f"cd {hls} && vitis_hls -f {export.name}; "
             f"cd {entry.parent} && vivado -mode batch -source {entry.name}")
    note = ""
    if checked:
        links = checked["intf_nets"] + checked["nets"]
        note = f" (Tcl dry-run in tclsh passed: {checked['cells']} cells, {links} connections)"
    if not (ip_repo / "component.xml").is_file():
        if shutil.which("vitis_hls") is None:
            raise ToolMissingError(f"vitis_hls not on PATH: generated {export} and {entry}{note}; "
                                   f"on a machine with Vitis/Vivado run: {steps}")
        print(f"exporting the HLS IP (vitis_hls -f {export.name}) ...", file=sys.stderr, flush=True)
        _run_tool(["vitis_hls", "-f", export.name], hls, build / "logs" / "vitis_hls_export.log", "vitis_hls")
    if shutil.which("vivado") is None:
        raise ToolMissingError(f"vivado not on PATH: HLS IP is in {ip_repo}, overlay script {entry}{note}; "
                               f"run: cd {entry.parent} && vivado -mode batch -source {entry.name}")
    print(f"building the {board} overlay with Vivado ...", file=sys.stderr, flush=True)
    _run_tool(["vivado", "-mode", "batch", "-nojournal", "-source", entry.name], entry.parent,
              build / "logs" / "vivado_bitstream.log", "vivado")
    return summarise(build, board)


def _build_rtl_bitstream(build: Path, board: str, jobs: int) -> dict:
    """IMPL=rtl: package BUILD/rtl as IP and build the block design in one Vivado run."""
    entry = write_vivado_scripts(build, board, jobs, impl="rtl")
    checked = check_tcl(build, board, impl="rtl") if shutil.which("tclsh") else None
    note = ""
    if checked:
        note = (f" (Tcl dry-run in tclsh passed: {checked['rtl_files']} RTL files + {checked['rtl_data_files']} ROMs "
                f"packaged as {checked['ip_vlnv']}, {checked['cells']} cells, "
                f"{checked['intf_nets'] + checked['nets']} connections)")
    if shutil.which("vivado") is None:
        raise ToolMissingError(f"vivado not on PATH: overlay script {entry}{note}; "
                               f"run: cd {entry.parent} && vivado -mode batch -source {entry.name}")
    print(f"packaging the RTL IP and building the {board} overlay with Vivado ...", file=sys.stderr, flush=True)
    _run_tool(["vivado", "-mode", "batch", "-nojournal", "-source", entry.name], entry.parent,
              build / "logs" / "vivado_bitstream_rtl.log", "vivado")
    return summarise(build, board, impl="rtl")


def summarise(build: Path, board: str, impl: str = "hls") -> dict:
    """Bitstream outputs + utilisation/timing into report.json["bitstream"] ("bitstream_rtl" for impl="rtl")."""
    out = build / dirs(impl)[1]
    res = {"board": board, "bit": str(out / f"{BIT_NAME}.bit"), "hwh": str(out / f"{BIT_NAME}.hwh")}
    if (out / "timing.json").is_file():
        res.update(json.loads((out / "timing.json").read_text()))
    res["utilisation"] = parse_utilisation(out / "utilization.rpt")
    rpt = build / "report.json"
    report = json.loads(rpt.read_text()) if rpt.is_file() else {}
    report[dirs(impl)[1]] = res
    rpt.write_text(json.dumps(report, indent=1))
    return res


def parse_utilisation(path: Path) -> dict:
    """Used/available of the main resources from Vivado's report_utilization table."""
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text(errors="replace").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in ("Slice LUTs", "CLB LUTs", "Slice Registers", "CLB Registers",
                                            "Block RAM Tile", "DSPs", "URAM"):
            try:
                rows.setdefault(cells[0], {"used": float(cells[1]), "available": float(cells[-2])})
            except ValueError:
                continue
    return rows
