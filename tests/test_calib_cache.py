"""The on-disk calibration cache: concurrent writers, a damaged file and an unwritable folder are each
a cache miss (with one warning line), never a crash."""

import multiprocessing as mp

import numpy as np

from flow.quant import calibrate as cal
from flow.quant.graph import GraphBuilder


def tiny_graph():
    """conv -> ReLU requant -> pool -> dense -> logits: enough for every statistic the cache stores."""
    rng = np.random.default_rng(0)
    gb = GraphBuilder("cachenet", (6, 6, 3), {"mean": [0.5] * 3, "std": [0.25] * 3})
    h = gb.layer("conv2d", "conv1", "input", rng.normal(0, 0.3, (3, 3, 3, 4)), 1, (1, 1, 1, 1))
    h = gb.requant("rq1", gb.expr(h), relu=True, out="rq1_out")
    p = gb.pool("pool", h)
    f = gb.layer("dense", "fc", p, rng.normal(0, 0.5, (4, 5)))
    gb.requant("logits_rq", gb.expr(f), relu=False, out="logits")
    images = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    return gb.finish("logits"), images


def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir())


def _same(a, b):
    assert a.alphas == b.alphas and a.n_images == b.n_images
    for t in a.ranges:
        np.testing.assert_array_equal(a.ranges[t], b.ranges[t])


def _writer(folder, barrier, rounds, errors):
    """Each round: process 0 clears the cache, then all processes miss and write the same key at once."""
    g, images = tiny_graph()
    try:
        for r in range(rounds):
            if barrier.wait(30) == 0:
                for p in folder.glob("*.npz"):
                    p.unlink()
            barrier.wait(30)
            cal.calibrate_cached(g, images, cache=folder, progress=False)
    except Exception as exc:  # reported to the parent: the test names the failure
        errors.put(f"{type(exc).__name__}: {exc}")
        barrier.abort()


def test_concurrent_writers_of_the_same_key(tmp_path):
    ctx = mp.get_context("spawn")          # no fork of a process that may hold TensorFlow threads
    n, rounds = 3, 8
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(tmp_path, barrier, rounds, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.terminate()
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not alive, "writers hung"
    assert not found, found
    assert all(p.exitcode == 0 for p in procs)
    files = _cache_files(tmp_path)
    assert len(files) == 1 and files[0].startswith("cachenet_") and files[0].endswith(".npz"), files
    g, images = tiny_graph()
    _same(cal.calibrate_cached(g, images, cache=tmp_path, progress=False), cal.calibrate(g, images, progress=False))


def test_truncated_cache_file_is_a_warning_and_a_miss(tmp_path, capsys):
    g, images = tiny_graph()
    first = cal.calibrate_cached(g, images, cache=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    again = cal.calibrate_cached(g, images, cache=tmp_path, progress=False)
    _same(first, again)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WARNING" in err[0] and str(path) in err[0] and "recalibrat" in err[0], err
    # the damaged file was replaced by a good one: the next run is a silent hit
    assert path.read_bytes() != raw[: len(raw) // 2]
    _same(first, cal.calibrate_cached(g, images, cache=tmp_path, progress=False))
    assert capsys.readouterr().err == ""


def test_cache_file_with_missing_arrays_is_a_miss(tmp_path, capsys):
    g, images = tiny_graph()
    first = cal.calibrate_cached(g, images, cache=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    np.savez(path, alphas=np.asarray(first.alphas))   # a valid zip, but not our stats
    _same(first, cal.calibrate_cached(g, images, cache=tmp_path, progress=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0], err


def test_unwritable_cache_folder_is_a_warning(tmp_path, capsys):
    """Tests run as root (chmod does not stop root): a file where the cache folder should be."""
    g, images = tiny_graph()
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    stats = cal.calibrate_cached(g, images, cache=blocker / "calibration", progress=False)
    _same(stats, cal.calibrate(g, images, progress=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WARNING" in err[0] and "not cached" in err[0] and str(blocker) in err[0], err
    assert blocker.read_text() == "not a folder"


def test_failed_write_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    """A write that fails half-way (disk full, read-only mount) leaves neither a temp nor a partial cache."""
    g, images = tiny_graph()

    def full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cal.np, "savez", full_disk)
    cal.calibrate_cached(g, images, cache=tmp_path, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0], err
    assert _cache_files(tmp_path) == []
