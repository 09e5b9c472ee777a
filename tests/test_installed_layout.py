"""The package works without the checkout around it (a non-editable `pip install .`): it reads no bench/.

.ci/run also builds the real wheel, installs it into a fresh venv and runs `adderflow hls` with it; these
tests catch the same mistakes without a network or a second TF install.
"""

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")   # Python >= 3.11


def _package_data() -> dict:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return cfg["tool"]["setuptools"].get("package-data", {})


def _shipped(rel: Path, package_data: dict) -> bool:
    """Would setuptools put this file (relative to ROOT) into the wheel: a module of a package, or a
    package-data match."""
    if rel.suffix == ".py":
        return (ROOT / rel.parent / "__init__.py").is_file()
    for pkg, globs in package_data.items():
        base = Path(*pkg.split("."))
        if rel.is_relative_to(base) and any(fnmatch.fnmatch(str(rel.relative_to(base)), g) for g in globs):
            return True
    return False


def _package_files() -> list:
    out = subprocess.run(["git", "ls-files", "flow"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: cannot list the package's tracked files")
    return [Path(p) for p in out.stdout.split()]


def test_every_data_file_of_the_package_is_shipped():
    """A data file added under flow/ without a pyproject package-data entry would be missing from a wheel."""
    pd = _package_data()
    missing = [str(p) for p in _package_files() if p.name != "README.md" and not _shipped(p, pd)]
    assert missing == []


def test_installed_layout_finds_its_pe_table(tmp_path):
    """Only what the wheel ships (flow/ modules + package data), no bench/ beside it: the estimator's
    PE table still loads and the CLI imports."""
    pd = _package_data()
    site = tmp_path / "site"
    for rel in _package_files():
        if _shipped(rel, pd):
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, site / rel)
    code = ("import flow, flow.cli; from flow.report.calibration import PECost, PE_COST_CSV; "
            "assert flow.__file__.startswith(%r), flow.__file__; "
            "print(len(PECost('xc7').rows), len(PECost('xcup').rows), PECost('xc7').describe()['pe_table'])"
            % str(site))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    n7, nup, table = res.stdout.split()
    assert int(n7) > 0 and int(nup) > 0
    assert table == "flow/report/data/pe_cost.csv"


def test_bench_writes_the_table_the_package_reads():
    """bench/pe_cost/pe_cost.py regenerates exactly the file the estimator reads (one place)."""
    sys.path.insert(0, str(ROOT / "bench" / "pe_cost"))
    try:
        import pe_cost
    finally:
        sys.path.pop(0)
    from flow.report.calibration import PE_COST_CSV

    assert Path(pe_cost.CSV_PATH).resolve() == PE_COST_CSV.resolve()
    assert PE_COST_CSV.is_relative_to(Path(__import__("flow").__file__).resolve().parent)
