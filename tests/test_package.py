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
