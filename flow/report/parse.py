"""Real vendor reports: Vivado/Vitis HLS csynth and cosim, Vivado utilisation and timing.

Built on hls4ml's `hls4ml.report.parse_vivado_report` (it knows the project layout, the csynth XML and
the cosim/transaction logs). We extend it where it falls short for us:
  * flat report folders (a copied `*_csynth.xml` + `vivado_synth.rpt`, as CI fixtures are) are
    presented to it through a temporary hls4ml-shaped project of symlinks;
  * Vivado "Block RAM Tile" counts 36K tiles: we report BRAM_18K = 2 x RAMB36 + RAMB18 from the same table;
  * per-layer (per dataflow instance) latency/interval/resources from the csynth .rpt detail table;
  * `util.rpt` is read even without a cosim report, and any `*timing_summary*.rpt` found is read.
Everything returned here is a measured/tool figure; the caller labels it `"source"` accordingly.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

RESOURCE_KEYS = ("LUT", "FF", "BRAM_18K", "DSP", "URAM")


def find_csynth_xml(hls_dir) -> Path | None:
    """The top function's `<top>_csynth.xml` under hls_dir (top from project.tcl or *.app), else None."""
    d = Path(hls_dir)
    if not d.is_dir():
        return None
    xmls = sorted(d.rglob("*_csynth.xml"))
    if not xmls:
        return None
    top = _top_name(d)
    if top:
        for x in xmls:
            if x.name == f"{top}_csynth.xml":
                return x
    # the top report is the one whose own TopModelName matches its file name and is the shortest path
    tops = [x for x in xmls if _xml_text(x, "./UserAssignments/TopModelName") == x.name[:-len("_csynth.xml")]]
    return min(tops or xmls, key=lambda p: (len(p.parts), len(p.name)))


def _top_name(d: Path) -> str | None:
    tcl = d / "project.tcl"
    if tcl.is_file():
        m = re.search(r'set\s+project_name\s+"([^"]+)"', tcl.read_text(errors="replace"))
        if m:
            return m.group(1)
    for app in list(d.glob("*.app")) + list(d.glob("*/*.app")):
        m = re.search(r'\btop="([^"]+)"', app.read_text(errors="replace"))
        if m:
            return m.group(1)
    return None


def _xml_text(path: Path, xpath: str) -> str | None:
    try:
        node = ET.parse(path).getroot().find(xpath)
    except ET.ParseError:
        return None
    return None if node is None else node.text


def _hls4ml_view(hls_dir: Path, csynth_xml: Path, stack: contextlib.ExitStack) -> Path:
    """A directory laid out as hls4ml's parser expects, pointing at the real files (symlinks)."""
    top = _xml_text(csynth_xml, "./UserAssignments/TopModelName") or csynth_xml.name[:-len("_csynth.xml")]
    if (hls_dir / "project.tcl").is_file() and (hls_dir / f"{top}_prj").is_dir():
        return hls_dir
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="adderflow-report-")))
    (tmp / "project.tcl").write_text(f'set project_name "{top}"\nset backend "vivado"\n')
    sln = tmp / f"{top}_prj" / "solution1"
    (sln / "syn" / "report").mkdir(parents=True)
    (tmp / f"{top}_prj" / "vivado_hls.app").write_text(
        '<AutoPilot:project xmlns:AutoPilot="com.autoesl.autopilot.project" name="p" top="%s">'
        '<solutions><solution name="solution1" status=""/></solutions></AutoPilot:project>' % top)
    (sln / "syn" / "report" / f"{top}_csynth.xml").symlink_to(csynth_xml.resolve())
    cosim = next(iter(sorted(hls_dir.rglob(f"{top}_cosim.rpt"))), None)
    if cosim is not None:
        (sln / "sim" / "report").mkdir(parents=True)
        (sln / "sim" / "report" / f"{top}_cosim.rpt").symlink_to(cosim.resolve())
    for name in ("vivado_synth.rpt", "util.rpt"):
        found = next(iter(sorted(hls_dir.rglob(name))), None)
        if found is not None:
            (tmp / name).symlink_to(found.resolve())
    return tmp


def parse_reports(hls_dir) -> dict | None:
    """Normalised real figures found under hls_dir, or None when there is no csynth report."""
    d = Path(hls_dir)
    xml = find_csynth_xml(d)
    if xml is None:
        return None
    from hls4ml.report import parse_vivado_report

    with contextlib.ExitStack() as stack:
        view = _hls4ml_view(d, xml, stack)
        with contextlib.redirect_stdout(io.StringIO()):   # it prints "... not found." for each absent file
            raw = parse_vivado_report(str(view)) or {}
    version = _xml_text(xml, "./ReportVersion/Version") or ""
    tool = "vivado_hls" if version[:4].isdigit() and version < "2020.2" else "vitis_hls"  # renamed in 2020.2
    out = {"csynth_xml": str(xml), "tool": tool, "tool_version": version,
           "part": _xml_text(xml, "./UserAssignments/Part"), "hls4ml_raw": raw}
    cs = raw.get("CSynthesisReport")
    if cs:
        out["csynth"] = {
            "latency_cycles": {"best": _int(cs.get("BestLatency")), "worst": _int(cs.get("WorstLatency"))},
            "interval_cycles": {"min": _int(cs.get("IntervalMin")), "max": _int(cs.get("IntervalMax"))},
            "target_clock_ns": _float(cs.get("TargetClockPeriod")),
            "estimated_clock_ns": _float(cs.get("EstimatedClockPeriod")),
            "resources": {k: _int(cs.get(k)) for k in RESOURCE_KEYS if cs.get(k) is not None},
            "available": {k: _int(cs.get("Available" + k)) for k in RESOURCE_KEYS if cs.get("Available" + k)},
        }
        rpt = xml.with_suffix(".rpt")
        if rpt.is_file():
            out["csynth"]["per_instance"] = parse_csynth_instances(rpt)
    synth_rpt = next(iter(sorted(d.rglob("vivado_synth.rpt"))), None)
    if synth_rpt is not None:
        out["vivado_synth"] = parse_vivado_utilization(synth_rpt)
    util = next(iter(sorted(d.rglob("util.rpt"))), None)
    if util is not None:
        out["vivado_impl"] = parse_vivado_utilization(util)
    if raw.get("CosimReport"):
        c = raw["CosimReport"]
        out["cosim"] = {"status": c.get("Status"), "rtl": c.get("RTL"),
                        "latency_cycles": {"min": _int(c.get("LatencyMin")), "max": _int(c.get("LatencyMax"))},
                        "interval_cycles": {"min": _int(c.get("IntervalMin")), "max": _int(c.get("IntervalMax"))}}
    timing = next(iter(sorted(d.rglob("*timing_summary*.rpt"))), None)
    if timing is not None:
        t = parse_timing_summary(timing)
        if t:
            out["timing"] = t
    return out


def parse_vivado_utilization(path) -> dict:
    """LUT/FF/BRAM_18K/DSP/URAM 'Used' from a Vivado report_utilization file (synth or impl)."""
    res, section, ramb36, ramb18 = {}, 0, None, None
    for line in Path(path).read_text(errors="replace").splitlines():
        m = re.match(r"^(\d)\.", line)
        if m:
            section = int(m.group(1))
        if "|" not in line:
            continue
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 3:
            continue
        name, used = cells[1], cells[2]
        if section == 1 and re.match(r"(CLB|Slice) LUTs", name):
            res["LUT"] = _int(used)
        elif section == 1 and re.match(r"(CLB|Slice) Registers", name):
            res["FF"] = _int(used)
        elif section == 2 and name.startswith("RAMB36"):
            ramb36 = _float(used)
        elif section == 2 and name.startswith("RAMB18"):
            ramb18 = _float(used)
        elif section == 2 and name.startswith("URAM"):
            res["URAM"] = _int(used)
        elif section == 3 and name.startswith("DSPs"):
            res["DSP"] = _int(used)
    if ramb36 is not None or ramb18 is not None:
        res["BRAM_18K"] = int(round(2 * (ramb36 or 0) + (ramb18 or 0)))
    return res


def parse_csynth_instances(rpt) -> list[dict]:
    """Per dataflow instance (one per layer in hls4ml designs): latency, interval and resources."""
    text = Path(rpt).read_text(errors="replace")
    rows: dict = {}
    lat = re.search(r"\+ Latency:.*?\* Instance:\s*\n(.*?)\n\s*\n", text, re.S)
    if lat:
        for line in lat.group(1).splitlines():
            c = [x.strip() for x in line.strip().strip("|").split("|")]
            if len(c) >= 8 and c[2].isdigit():
                rows[c[0]] = {"instance": c[0], "module": c[1], "latency_min": int(c[2]), "latency_max": int(c[3]),
                              "interval_min": _int(c[6]), "interval_max": _int(c[7])}
    util = re.search(r"== Utilization Estimates.*?\* Instance:\s*\n(.*?)\n\s*\n", text, re.S)
    if util:
        header = None
        for line in util.group(1).splitlines():
            c = [x.strip() for x in line.strip().strip("|").split("|")]
            if "Instance" in c and "Module" in c:
                header = c
                continue
            if header and len(c) == len(header) and c[0] and c[0] != "Total" and not set(c[0]) <= {"-", "+"}:
                r = rows.setdefault(c[0], {"instance": c[0], "module": c[1]})
                for key, val in zip(header[2:], c[2:]):
                    key = "DSP" if key.startswith("DSP") else key
                    r[key] = _int(val)
    return list(rows.values())


def parse_timing_summary(path) -> dict:
    """WNS/TNS/WHS/THS (ns) from a Vivado report_timing_summary file."""
    lines = Path(path).read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if re.search(r"\bWNS\(ns\)", line):
            for row in lines[i + 1:i + 4]:
                vals = row.split()
                if len(vals) >= 6 and _float(vals[0]) is not None:
                    return {"WNS_ns": float(vals[0]), "TNS_ns": float(vals[1]), "WHS_ns": float(vals[4]),
                            "THS_ns": float(vals[5])}
    return {}


def _int(v):
    try:
        return int(float(str(v).strip()))
    except (TypeError, ValueError):
        return None


def _float(v):
    try:
        return float(str(v).strip().split()[0])
    except (TypeError, ValueError, IndexError):
        return None
