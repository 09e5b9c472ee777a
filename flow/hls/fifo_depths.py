"""FIFO depths measured by Vitis HLS RTL co-simulation (hls4ml's fifo_depth_optimization, without hls4ml).

The flow, as hls4ml 1.3's vitis backend does it (backends/vitis/passes/fifo_depth_optimization.py):
  1. every stream between layers gets a depth far above any need (`set_stream_depths(cpp, PROFILING_DEPTH)`),
  2. build_prj.tcl runs csynth + cosim with opt(fifo_opt) = 1 (flow.hls.project.set_build_options(fifo_opt=True));
     cosim (-trace_level all) records each channel's largest occupancy,
  3. `read_cosim_depths(hls_dir)` reads those maxima, `set_stream_depths(cpp, depths)` writes them back,
     and the real build runs. The test bench must run at least two images (it runs all of tb_data in one
     call of adderflow_top), or the steady-state occupancy is not seen.

What cosim leaves (the layout hls4ml's parser reads):
  <project>_prj/solution1/.autopilot/db/channel_info.csv            one line per FIFO: field 1 its instance
                                                                   name (stream name + "_U"), field 3 the
                                                                   name of its chan_status file
  <project>_prj/solution1/.autopilot/db/channel_depth_info/channel.zip   the chan_status*.csv files; the
                                                                   last line of each is the max depth reached
`read_depths_json` also reads the summaries hls4ml itself writes: fifo_depths.json (vitis:
{fifo: {"initial": d0, "optimized": d}}) and max_depth.json (vivado, from the VCD: [{"name", "max", "depth"}],
where hls4ml sets depth = max + 1). numpy/stdlib only: runs wherever the cosim results are copied.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from flow.errors import AdderFlowError

PROFILING_DEPTH = 100_000   # hls4ml's profiling_fifo_depth: deep enough that no FIFO ever fills during cosim
DB = "solution1/.autopilot/db"
CHANNEL_INFO, CHANNEL_ZIP = "channel_info.csv", "channel_depth_info/channel.zip"
STREAM_PRAGMA = re.compile(r"(#pragma\s+HLS\s+STREAM\s+variable=)(\w+)(\s+depth=)(\d+)")


def _depth(value, where: str) -> int:
    try:
        d = int(str(value).strip())
    except ValueError:
        raise AdderFlowError(f"{where}: FIFO depth {str(value).strip()!r} is not an integer") from None
    if d < 0:
        raise AdderFlowError(f"{where}: negative FIFO depth {d}")
    return max(d, 1)   # a FIFO that never held data still needs one slot to exist


def read_cosim_depths(hls_dir, project: str | None = None) -> dict:
    """{stream name: max depth reached in cosim} from the channel files Vitis HLS cosim writes."""
    from flow.board.axi_top import project_name

    hls_dir = Path(hls_dir)
    db = hls_dir / f"{project or project_name(hls_dir)}_prj" / DB
    info, archive = db / CHANNEL_INFO, db / CHANNEL_ZIP
    for p in (info, archive):
        if not p.is_file():
            raise AdderFlowError(f"{p}: missing (run cosim with fifo_opt first: flow.hls.project.set_build_options)")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise AdderFlowError(f"{archive}: not a zip archive") from None
    depths = {}
    with zf:
        members = set(zf.namelist())
        for no, line in enumerate(info.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) < 4:
                raise AdderFlowError(f"{info} line {no}: expected at least 4 comma-separated fields, got {line!r}")
            fifo, status_file = fields[1], fields[3]
            if status_file not in members:
                raise AdderFlowError(f"{info} line {no}: {status_file} is not in {archive}")
            lines = [ln for ln in zf.read(status_file).decode().splitlines() if ln.strip()]
            if not lines:
                raise AdderFlowError(f"{archive}:{status_file}: empty (no depth recorded for {fifo})")
            name = fifo[:-2] if fifo.endswith("_U") else fifo
            depths[name] = _depth(lines[-1], f"{archive}:{status_file}")
    return depths


def read_depths_json(path) -> dict:
    """{stream name: depth} from hls4ml's fifo_depths.json (vitis) or max_depth.json (vivado)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdderFlowError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise AdderFlowError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(doc, dict) and all(isinstance(v, dict) and "optimized" in v for v in doc.values()):
        return {name: _depth(v["optimized"], f"{path} {name}") for name, v in doc.items()}
    if isinstance(doc, list) and all(isinstance(v, dict) and {"name", "max"} <= set(v) for v in doc):
        return {v["name"]: _depth(int(v["max"]) + 1, f"{path} {v['name']}") for v in doc}
    raise AdderFlowError(f"{path}: neither hls4ml's fifo_depths.json ({{fifo: {{initial, optimized}}}}) nor "
                         "max_depth.json ([{name, max, depth}])")


def set_stream_depths(cpp, depths) -> dict:
    """Rewrite `#pragma HLS STREAM variable=S depth=N` in the network source: `depths` is {stream: depth}
    (streams it does not name keep theirs) or one int for every stream. Returns {stream: (old, new)}."""
    cpp = Path(cpp)
    text = cpp.read_text()
    changed = {}

    def sub(m):
        name, old = m.group(2), int(m.group(4))
        new = depths if isinstance(depths, int) else depths.get(name)
        if new is None:
            return m.group(0)
        changed[name] = (old, int(new))
        return f"{m.group(1)}{name}{m.group(3)}{int(new)}"

    text = STREAM_PRAGMA.sub(sub, text)
    if not isinstance(depths, int):
        unknown = sorted(set(depths) - set(changed))
        if unknown and not changed:
            raise AdderFlowError(f"{cpp}: none of the profiled FIFOs ({', '.join(unknown[:3])}...) is a stream "
                                 "declared there")
    tmp = cpp.with_name(cpp.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(cpp)
    return changed
