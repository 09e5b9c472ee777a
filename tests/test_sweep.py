"""`adderflow sweep` (issue 14) on adder_small + sklearn digits: the local executor end to end, cache reuse,
a failing configuration, per-task limits, resume after a killed run, a Ray cluster the test starts itself."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.cli import main

REPO = Path(__file__).resolve().parent.parent

TINY = """\
model: adder_small
calib: digits
calib_limit: 96
data: digits
images: 100
grid: {grid}
stages: [quantize, accuracy, estimate{more}]
limits: {{seconds: {seconds}, memory_gb: {memory}}}
"""


def _yaml(tmp_path, grid="{bits: [3, 4], board: [pynq-z2, kv260]}", more="", seconds=300, memory=8, name="s.yaml"):
    p = tmp_path / name
    p.write_text(TINY.format(grid=grid, more=more, seconds=seconds, memory=memory))
    return p


def _rows(out):
    with open(out / "sweep.csv") as fh:
        return list(csv.DictReader(fh))


def _entries(cache, stage):
    d = cache / stage
    return sorted(p for p in d.iterdir() if (p / "result.json").is_file()) if d.is_dir() else []


def test_local_end_to_end_and_rerun_from_cache(tmp_path, private_cache, capsys):
    y, out, cache = _yaml(tmp_path, more=", synth, cosim, yosys"), tmp_path / "out", tmp_path / "cache"
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(cache), "--workers", "2", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0
    rows = _rows(out)
    assert [(r["bits"], r["board"]) for r in rows] == [("3", "pynq-z2"), ("3", "kv260"), ("4", "pynq-z2"), ("4", "kv260")]
    for r in rows:
        assert r["status"] == "ok" and r["fits"] == "yes"
        assert 0 <= float(r["accuracy"]) <= 1 and r["accuracy_source"] == "golden model, 100 test images"
        assert float(r["images_per_s"]) > 0 and r["images_per_s_source"] == "estimate"
        assert int(r["LUT"]) > 0 and r["LUT_source"] == "estimate" and r["DSP"] == "0"    # zero-DSP by default
        # stages without their tool are recorded as such, never as done
        assert r["synth_status"] == "skipped: vitis_hls not on PATH"
        assert r["cosim_status"] == r["yosys_status"] == "not available in this version"
    # one quantization serves both boards; one accuracy per quantization; one estimate per configuration
    assert len(_entries(cache, "quantize")) == 2 and len(_entries(cache, "accuracy")) == 2
    assert len(_entries(cache, "estimate")) == 4
    assert "0 of 8 tasks reused, 8 computed, 0 failed" in text
    md = (out / "sweep.md").read_text()
    assert "| 3 | pynq-z2 |" in md and "images/s (estimate)" in md and "synth: skipped: vitis_hls not on PATH" in md
    assert (out / "pareto.png").stat().st_size > 10_000

    # the same sweep again: every task from the cache, the same figures; --out is not replaced without --force
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(cache), "--no-progress"])
    assert rc == 1 and "exists and is not empty; pass --force" in capsys.readouterr().err
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(cache), "--no-progress", "--force"])
    assert rc == 0 and "8 of 8 tasks reused, 0 computed" in capsys.readouterr().out
    again = _rows(out)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    assert [r["LUT"] for r in again] == [r["LUT"] for r in rows]
    assert all(r["quantize_status"] == r["estimate_status"] == "cached" for r in again)


def test_failing_configs_are_recorded_and_the_others_complete(tmp_path, private_cache, capsys):
    y = _yaml(tmp_path, grid="{bits: [4, 1], board: [pynq-z2, nosuchboard]}")
    out = tmp_path / "out"
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(tmp_path / "cache"), "--workers", "2", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("adderflow sweep: error: 3 of 4 configurations failed")
    rows = {(r["bits"], r["board"]): r for r in _rows(out)}
    assert rows[("4", "pynq-z2")]["status"] == "ok" and float(rows[("4", "pynq-z2")]["images_per_s"]) > 0
    bad = rows[("4", "nosuchboard")]
    assert bad["status"] == "failed" and bad["accuracy"] != ""      # the board only fails the estimate
    assert bad["error"].startswith("estimate: unknown board 'nosuchboard' (choose from pynq-z2,")
    for board in ("pynq-z2", "nosuchboard"):
        r = rows[("1", board)]
        assert r["status"] == "failed" and r["error"] == "quantize: bits must be an integer in 2..8, got 1"
        assert "\n" not in r["error"] and r["accuracy"] == "" and r["images_per_s"] == ""
    assert "failed: quantize: bits must be" in (out / "sweep.md").read_text()


@pytest.mark.parametrize("seconds, memory, text", [
    (0.5, 8, "timed out after 0.5 s (limits.seconds)"),
    (300, 0.25, "limits.memory_gb"),
])
def test_per_task_limits(tmp_path, private_cache, capsys, seconds, memory, text):
    y = _yaml(tmp_path, grid="{bits: [4]}", seconds=seconds, memory=memory)
    rc = main(["sweep", str(y), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 1
    (r,) = _rows(tmp_path / "out")
    assert r["status"] == "failed" and r["error"].startswith("quantize: ") and text in r["error"], r["error"]
    assert not _entries(tmp_path / "cache", "quantize")      # a failure is not cached: a re-run tries again
    capsys.readouterr()


@pytest.mark.parametrize("body, text", [
    ("model: adder_small\nbogus: 1\n", "unknown key 'bogus'"),
    ("model: adder_small\ncalib: digits\ndata: digits\nstages: [quantize, magic]\n", "unknown stage 'magic'"),
    ("model: adder_small\ncalib: digits\ndata: digits\ngrid: {bits: 4}\n", "grid: 'bits' must be a non-empty list"),
    ("model: adder_small\ncalib: digits\ndata: digits\nlimits: {seconds: -1}\n", "limits: 'seconds' must be a positive"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_bad_sweep_file_is_one_line_and_writes_nothing(tmp_path, capsys, body, text):
    y = tmp_path / "bad.yaml"
    y.write_text(body)
    rc = main(["sweep", str(y), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"adderflow sweep: error: {y}") and text in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_pareto_front():
    from flow.sweep.outputs import pareto_front

    pts = [(100, 0.9), (200, 0.8), (150, 0.85), (120, 0.7), (200, 0.6), (50, 0.95)]
    assert sorted(pareto_front(pts)) == [0, 1, 2, 5]


def test_resume_after_killed_run(tmp_path, private_cache):
    """Kill the sweep (and its task processes) once its first task is stored; the re-run reuses every stored
    task, recomputes none of them, and finishes the rest."""
    y = _yaml(tmp_path, grid="{bits: [3, 4, 5], board: [pynq-z2, kv260]}")
    cache, out = tmp_path / "cache", tmp_path / "out"
    cmd = [sys.executable, "-m", "flow", "sweep", str(y), "--out", str(out), "--cache", str(cache), "--workers", "1",
           "--no-progress"]
    env = {**os.environ, "ADDERFLOW_CACHE": os.environ["ADDERFLOW_CACHE"], "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/*/result.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)          # the sweep, its fork server and the running task
    proc.communicate(timeout=30)
    done = {p: p.stat().st_mtime_ns for p in cache.glob("*/*/result.json")}
    total = 3 + 3 + 6                            # quantize, accuracy per bits; estimate per configuration
    assert 1 <= len(done) < total, f"{len(done)} tasks stored before the kill"
    assert not out.exists()                      # a killed sweep leaves no half-written --out

    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"cache: {len(done)} of {total} tasks reused, {total - len(done)} computed, 0 failed" in r.stdout
    # what was finished before the kill was not written again
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert len(list(cache.glob("*/*/result.json"))) == total
    assert all(row["status"] == "ok" for row in _rows(out))


def test_ray_executor_on_a_local_cluster_gives_the_local_results(tmp_path, private_cache, capsys):
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'adderflow[cluster]')")
    from flow.sweep.executors import LocalRayCluster

    y = _yaml(tmp_path, grid="{bits: [3, 4], board: [pynq-z2, kv260], zero_dsp: [true, false]}")
    assert main(["sweep", str(y), "--out", str(tmp_path / "local"), "--cache", str(tmp_path / "c1"),
                 "--workers", "2", "--no-progress"]) == 0
    capsys.readouterr()
    # quantization itself is not bit-reproducible between runs (k-means, threads): give the Ray run the same
    # quantized networks, so that every other stage must give the local figures exactly
    import shutil

    shutil.copytree(tmp_path / "c1" / "quantize", tmp_path / "c2" / "quantize")
    with LocalRayCluster(cpus=2) as cluster:     # loopback only; stopped by its own process id
        # the driver as a user runs it: a process of its own with the cluster's environment (Ray reads
        # some of it at import), bounded by a timeout
        env = {**os.environ, **cluster.env, "PYTHONPATH": str(REPO)}
        r = subprocess.run([sys.executable, "-m", "flow", "sweep", str(y), "--out", str(tmp_path / "ray"),
                            "--cache", str(tmp_path / "c2"), "--ray", cluster.address, "--no-progress"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"Ray cluster at {cluster.address}, 2 CPUs" in r.stdout
    assert "2 of 12 tasks reused, 10 computed, 0 failed" in r.stdout
    assert len(_entries(tmp_path / "c2", "estimate")) == 8
    local, ray_rows = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    keys = ("label", "accuracy", "images_per_s", "LUT", "FF", "BRAM_18K", "DSP", "fits")
    assert [{k: r[k] for k in keys} for r in ray_rows] == [{k: r[k] for k in keys} for r in local]
    assert cluster.proc.poll() is not None and not Path(cluster.tmp).exists()   # the head process is gone


def test_vendor_synthesis_runs_when_its_tool_is_on_path(tmp_path, private_cache, capsys, monkeypatch):
    """With a `vitis_hls` on PATH the synth stage runs the default design through it (here a stand-in that
    runs and writes no report): the stage fails with one line saying so, never a result; the other stages
    of the configuration complete."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vitis_hls"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    y, out = _yaml(tmp_path, grid="{bits: [4], board: [kv260]}", more=", synth"), tmp_path / "out"
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"])
    capsys.readouterr()
    (row,) = _rows(out)
    assert rc == 1 and row["synth_status"] == "failed" and row["status"] == "failed"
    assert row["error"].startswith("synth: vitis_hls ran but wrote no csynth report"), row["error"]
    assert float(row["accuracy"]) >= 0 and row["images_per_s_source"] == "estimate"


def test_csim_stage_is_bit_exact_against_the_golden_model(tmp_path, private_cache, capsys):
    """The csim stage builds the default design and C-simulates csim_images test images through the IP top."""
    y = _yaml(tmp_path, grid="{bits: [4], board: [kv260]}", more=", csim")
    y.write_text(y.read_text() + "csim_images: 3\n")
    out = tmp_path / "out"
    rc = main(["sweep", str(y), "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    (row,) = _rows(out)
    assert row["csim_status"] == "done" and row["csim_mismatches"] == "0"
    assert row["csim_mismatches_source"] == "csim, 3 images" and float(row["csim_images_per_s"]) > 0
