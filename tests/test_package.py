"""`adderflow package`: one folder/zip with the bitstream, .hwh, driver, notebook, network and samples."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from flow.cli import main


@pytest.fixture(scope="session")
def stock_build_dir(tmp_path_factory):
    pytest.importorskip("hls4ml")
    from flow.board.stock import stock_build
    return stock_build(tmp_path_factory.getbasetemp() / "adderflow_stock")


@pytest.fixture
def samples(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), y=np.arange(30) % 10)
    return p


def test_package_without_bitstream_says_what_is_missing(stock_build_dir, tmp_path, samples, capsys):
    out = tmp_path / "pkg"
    assert main(["package", "--board", "pynq-z2", str(stock_build_dir), "--out", str(out),
                 "--samples", str(samples), "--n-samples", "12"]) == 0
    err = capsys.readouterr().err
    assert "MISSING adderflow.bit" in err and "MISSING adderflow.hwh" in err and "adderflow bitstream" in err
    for f in ("flow/driver/__init__.py", "flow/driver/packing.py", "flow/driver/overlay.py", "flow/qnet.py",
              "flow/errors.py", "qnet/qnet.json", "qnet/qnet.npz", "adderflow_ip.json", "report.json",
              "resnet20_cifar10.ipynb", "MANIFEST.json", "README.txt"):
        assert (out / f).is_file(), f
    with np.load(out / "samples.npz") as z:
        assert z["x"].shape == (12, 32, 32, 3) and z["x"].dtype == np.uint8 and len(z["y"]) == 12
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["missing"]) == {"adderflow.bit", "adderflow.hwh"}
    assert "MISSING from this package" in (out / "README.txt").read_text()
    # the packaged driver runs with numpy alone, from the package folder (as on the board)
    code = ("import sys; sys.path.insert(0, '.'); import flow.driver, flow.qnet; "
            "n = flow.qnet.load('qnet'); print(flow.driver.input_layout(n).words)")
    res = subprocess.run([sys.executable, "-S", "-c", code], cwd=out, capture_output=True, text=True,
                         env={"PYTHONPATH": str(np.__path__[0]).rsplit("/numpy", 1)[0]})
    assert res.returncode == 0 and res.stdout.strip() == "384", res.stderr
    # on a PC a package (no hls_prj) cannot be emulated: a clear error, not a traceback
    from flow.driver import OverlayFileError, open_overlay
    with pytest.raises(OverlayFileError, match="no board here and no hls_prj"):
        open_overlay(out, mode="auto")


def test_package_zip_with_bitstream(stock_build_dir, tmp_path, samples):
    bitdir = stock_build_dir / "bitstream"
    bitdir.mkdir(exist_ok=True)
    (bitdir / "adderflow.bit").write_bytes(b"BIT")
    (bitdir / "adderflow.hwh").write_text("<hwh/>")
    try:
        zpath = tmp_path / "board.zip"
        assert main(["package", str(stock_build_dir), "--out", str(zpath), "--samples", str(samples)]) == 0
        with zipfile.ZipFile(zpath) as zf:
            names = set(zf.namelist())
            assert {"board/adderflow.bit", "board/adderflow.hwh", "board/samples.npz",
                    "board/flow/driver/core.py"} <= names
            assert json.loads(zf.read("board/MANIFEST.json"))["missing"] == {}
            assert not any("__pycache__" in n for n in names)
        from flow.driver import locate_bitstream
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp_path / "x")
        assert locate_bitstream(tmp_path / "x" / "board")[1].name == "adderflow.hwh"
    finally:
        for f in bitdir.iterdir():
            f.unlink()
        bitdir.rmdir()


def test_package_never_overwrites_and_checks_the_board(stock_build_dir, tmp_path, samples, capsys):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "mine.txt").write_text("not a package")   # an empty folder may be used; a non-empty one is kept
    assert main(["package", "--board", "pynq-z2", str(stock_build_dir), "--out", str(out)]) == 1
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["package", "--board", "pynq-z2", str(stock_build_dir), "--out", str(out), "--force",
                 "--samples", str(samples)]) == 0
    assert main(["package", "--board", "zcu104", str(stock_build_dir), "--out", str(tmp_path / "z")]) == 1
    assert "built for pynq-z2, not zcu104" in capsys.readouterr().err


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys, rc, text):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and text in err[0], err


def test_package_out_is_never_the_build_or_what_it_reads(stock_build_dir, tmp_path, samples, capsys):
    """`package --force --out BUILD` used to delete the build it was packaging."""
    before = _snapshot(stock_build_dir)
    for out, text in ((stock_build_dir, "is the input"), (stock_build_dir.parent, "contains the input"),
                      (stock_build_dir / "qnet", "is the input"), (stock_build_dir / "hls_prj" / "p", "is inside"),
                      (samples, "is the input")):
        _one_line(capsys, main(["package", str(stock_build_dir), "--out", str(out), "--force",
                                "--samples", str(samples)]), text)
    assert _snapshot(stock_build_dir) == before
    # a new name inside the build is fine (the default BUILD/package_<board> is one)
    try:
        assert main(["package", str(stock_build_dir), "--samples", str(samples)]) == 0
        assert (stock_build_dir / "package_pynq-z2" / ".adderflow-complete").is_file()
    finally:
        import shutil
        shutil.rmtree(stock_build_dir / "package_pynq-z2", ignore_errors=True)
    assert _snapshot(stock_build_dir) == before


@pytest.mark.parametrize("extra,text", [
    (["--n-samples", "0"], "--n-samples must be >= 1"),
    (["--samples", "nope.npz"], "--samples nope.npz: file not found"),
    (["--board", "zedboard"], "unknown board 'zedboard'"),
])
def test_package_bad_argument_writes_nothing(stock_build_dir, tmp_path, capsys, extra, text):
    out = tmp_path / "new" / "pkg"
    _one_line(capsys, main(["package", str(stock_build_dir), "--out", str(out)] + extra), text)
    assert not (tmp_path / "new").exists()


def test_package_zip_path_that_is_a_folder_is_one_line(stock_build_dir, tmp_path, samples, capsys):
    (tmp_path / "p.zip").mkdir()
    _one_line(capsys, main(["package", str(stock_build_dir), "--out", str(tmp_path / "p.zip"), "--force",
                            "--samples", str(samples)]), "is a folder, but a file name is needed")
    (tmp_path / "f").write_text("x")
    _one_line(capsys, main(["package", str(stock_build_dir), "--out", str(tmp_path / "f"), "--force",
                            "--samples", str(samples)]), "is a file, but a folder is needed")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("name", ["pkg", "pkg.zip"])
def test_package_interrupted_keeps_the_previous_package(stock_build_dir, tmp_path, samples, monkeypatch, name):
    """--force replaces the old package only once the new one is complete."""
    import flow.board.package as pkg

    out = tmp_path / name
    argv = ["package", str(stock_build_dir), "--out", str(out), "--samples", str(samples)]
    assert main(argv) == 0
    before = _snapshot(out) if out.is_dir() else out.read_bytes()

    def interrupted(board, missing):
        raise KeyboardInterrupt    # the last file of the package, after everything else was copied

    monkeypatch.setattr(pkg, "_readme", interrupted)
    assert main(argv + ["--force"]) == 130
    assert (_snapshot(out) if out.is_dir() else out.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "s.npz"])   # no temporary left


def test_package_refuses_an_incomplete_build(stock_build_dir, tmp_path, capsys):
    import shutil
    half = tmp_path / "half"
    shutil.copytree(stock_build_dir, half, ignore=shutil.ignore_patterns(".adderflow-complete"))
    _one_line(capsys, main(["package", str(half), "--out", str(tmp_path / "pkg")]),
              f"incomplete build at {half}")
    assert not (tmp_path / "pkg").exists()
