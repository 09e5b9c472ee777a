"""The yosys PE cost table: committed, complete, and reproducible where yosys is installed."""

import csv
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "pe_cost"))
import pe_cost  # noqa: E402


def test_committed_table_covers_every_job():
    with open(pe_cost.CSV_PATH) as f:
        rows = list(csv.DictReader(f))
    have = {(r["family"], r["element"], int(r["bits"]), int(r["dsp_inference"])) for r in rows}
    want = {(f, e, b, int(d)) for f, e, b, d in pe_cost.jobs()}
    assert want == have
    for r in rows:
        if r["element"] == "sad_acc":
            assert int(r["DSP"]) == 0            # the SAD PE never needs a DSP
        if int(r["dsp_inference"]) == 0:
            assert int(r["DSP"]) == 0            # -nodsp honoured


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed (apt-get install yosys)")
def test_yosys_reproduces_a_table_row():
    with open(pe_cost.CSV_PATH) as f:
        row = next(r for r in csv.DictReader(f) if r["family"] == "xc7" and r["element"] == "sad_acc"
                   and r["bits"] == "4")
    src, _ = pe_cost.verilog("sad_acc", 4)
    with tempfile.TemporaryDirectory() as tmp:
        got = pe_cost.synthesise(shutil.which("yosys"), "xc7", src, True, Path(tmp))
    assert {k: str(v) for k, v in got.items()} == {k: row[k] for k in ("LUT", "CARRY", "FF", "DSP")}
