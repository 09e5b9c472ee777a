"""Who may import whom: the backend (flow/hls) never reads the estimator (flow/report), which reads the
backend's schedule; the runtime package never reads the repository's bench/ (a wheel has none)."""

import ast
from pathlib import Path

FLOW = Path(__file__).resolve().parents[1] / "flow"


def _imports(path: Path) -> set:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    return mods


def test_backend_does_not_import_the_estimator():
    bad = {str(p.relative_to(FLOW)): sorted(m for m in _imports(p) if m.startswith("flow.report"))
           for p in (FLOW / "hls").rglob("*.py") if p.name != "build.py"}
    # flow/hls/build.py is the library object over backend AND report (as hls4ml's ModelGraph has build + report)
    assert not {k: v for k, v in bad.items() if v}, bad


def test_estimator_reads_the_schedule():
    assert "flow.hls" in _imports(FLOW / "report" / "estimate.py") or any(
        m.startswith("flow.hls.schedule") for m in _imports(FLOW / "report" / "estimate.py"))
    src = (FLOW / "report" / "estimate.py").read_text()
    for fact in ("legal_reuse_factors", "lanes_per_filter", "window_steps", "sad_widths", "requant_sum_bits",
                 "join_fifo_depths", "fusable_requants"):
        assert f"schedule.{fact}" in src, f"the estimator restates {fact} instead of reading the schedule"


def test_runtime_never_reads_bench():
    hits = [str(p.relative_to(FLOW)) for p in FLOW.rglob("*.py") if '"bench"' in p.read_text()
            or "'bench'" in p.read_text() or "/bench/" in p.read_text()]
    assert not hits, hits
