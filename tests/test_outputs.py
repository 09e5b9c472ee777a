"""flow.outputs and every command that writes through it: checks before work, no overwrite without
--force, outputs never on inputs, interrupted runs leave the previous output whole, incomplete builds named.
(package has its own in tests/test_package.py.)"""

import json
import shutil

import numpy as np
import pytest

from flow.cli import main
from flow.errors import AdderFlowError
from flow.outputs import MARKER, check_output, require_complete, staged_output, write_marker


def one_line(capsys, rc, text, code=1):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code, err
    assert len(err) == 1 and text in err[0], err
    return err[0]


def snapshot(folder):
    """{relative path: bytes} of everything under folder (hidden files too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temp_left(folder):
    left = [p.name for p in folder.iterdir() if ".adderflow-tmp-" in p.name or p.name.startswith(".report-")]
    assert not left, left


# --- the helper ---------------------------------------------------------------------------------------

def test_staged_dir_replaces_only_with_force_and_marks_it_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(AdderFlowError, match="exists and is not empty; pass --force"):
        with staged_output(out, force=False):
            raise AssertionError("not reached: the check comes first")
    assert snapshot(out) == {"old.txt": b"old"}
    with staged_output(out, force=True, command="test") as tmp:
        assert tmp.parent == out.parent and tmp != out and tmp.is_dir()
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").is_file()          # the old output stays until the new one is complete
    assert sorted(snapshot(out)) == [MARKER, "new.txt"]
    assert json.loads((out / MARKER).read_text())["command"] == "test"
    no_temp_left(tmp_path)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_dir_keeps_the_previous_output_and_no_temp(tmp_path, exc):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(exc):
        with staged_output(out, force=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc()
    assert snapshot(out) == {"old.txt": b"old"}
    no_temp_left(tmp_path)


def test_interrupted_output_removes_the_folders_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_output(tmp_path / "a" / "b" / "out.json", kind="file") as tmp:
            tmp.write_text("{}")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_staged_file_keeps_suffix_and_replaces_atomically(tmp_path):
    out = tmp_path / "m.keras"
    out.write_bytes(b"old")
    with pytest.raises(AdderFlowError, match="exists; pass --force"):
        check_output(out, kind="file")
    with staged_output(out, force=True, kind="file") as tmp:
        assert tmp.suffix == ".keras" and not tmp.exists()
        tmp.write_bytes(b"new")
        assert out.read_bytes() == b"old"
    assert out.read_bytes() == b"new"
    no_temp_left(tmp_path)


@pytest.mark.parametrize("case,text", [
    ("file_for_dir", "is a file, but a folder is needed"),
    ("dir_for_file", "is a folder, but a file name is needed"),
    ("parent_is_file", "is a file, not a folder"),
    ("is_input", "is the input"),
    ("contains_input", "contains the input"),
    ("inside_input", "is inside the input"),
])
def test_bad_output_paths_are_one_line_errors(tmp_path, case, text):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.npz").write_bytes(b"data")
    target, kind, inputs = {
        "file_for_dir": (tmp_path / "f", "dir", ()),
        "dir_for_file": (tmp_path / "d", "file", ()),
        "parent_is_file": (tmp_path / "f" / "out", "dir", ()),
        "is_input": (tmp_path / "d" / "data.npz", "file", [tmp_path / "d" / "data.npz"]),
        "contains_input": (tmp_path / "d", "dir", [tmp_path / "d" / "data.npz"]),
        "inside_input": (tmp_path / "d" / "data.npz" / "x", "dir", [tmp_path / "d" / "data.npz"]),
    }[case]
    before = snapshot(tmp_path)
    with pytest.raises(AdderFlowError, match=text):
        check_output(target, force=True, inputs=inputs, kind=kind)
    assert snapshot(tmp_path) == before


def test_unwritable_output_folder_is_one_line(tmp_path, monkeypatch):
    import flow.outputs

    # running as root, chmod does not stop writes: stand in for a read-only folder
    monkeypatch.setattr(flow.outputs.os, "access", lambda p, mode: False)
    with pytest.raises(AdderFlowError, match="cannot write into .* \\(permission denied\\)"):
        check_output(tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()


def test_a_failing_temp_folder_is_one_line(tmp_path, monkeypatch):
    import flow.outputs

    def refuse(**kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(flow.outputs.tempfile, "mkdtemp", refuse)
    with pytest.raises(AdderFlowError, match="cannot write there \\(Permission denied\\)"):
        with staged_output(tmp_path / "x" / "out"):
            pass
    assert not (tmp_path / "x").exists()


def test_holder_may_hold_the_output_but_not_be_it(tmp_path):
    build = tmp_path / "build"
    (build / "qnet").mkdir(parents=True)
    check_output(build / "package_x", holders=[build], inputs=[build / "qnet"])
    for bad, how in ((build, f"{build} is the input"), (tmp_path, "contains the input"),
                     (build / "qnet", "is the input")):
        with pytest.raises(AdderFlowError, match=how):
            check_output(bad, force=True, holders=[build], inputs=[build / "qnet"])


def test_require_complete_names_an_incomplete_build(tmp_path):
    b = tmp_path / "b"
    b.mkdir()
    with pytest.raises(AdderFlowError, match="empty folder"):
        require_complete(b)
    (b / "report.json").write_text("{}")
    with pytest.raises(AdderFlowError, match=f"incomplete build at {b} .*rerun it with --force"):
        require_complete(b)
    write_marker(b)
    assert require_complete(b) == b
    with pytest.raises(AdderFlowError, match="build folder not found"):
        require_complete(tmp_path / "nope")


# --- eval --json ----------------------------------------------------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    """A hand-made integer network (as tests/test_train_cli.py) and 8 images: eval takes milliseconds."""
    from flow.qnet import Op, QNet, TensorSpec

    tensors = {"input": TensorSpec("input", (4, 4, 1), 8, True, 1 / 64),
               "p": TensorSpec("p", (1,), 13, True, kind="acc"), "d": TensorSpec("d", (2,), 13, True, kind="acc"),
               "logits": TensorSpec("logits", (2,), 16, True, 0.5)}
    ops = [Op("global_sum_pool", "gap", ["input"], "p"),
           Op("dense", "fc", ["p"], "d", {}, {"weight": np.array([[1, -1]])}),
           Op("requant", "rq", ["d"], "logits", {"shift": 1},
              {"mult": np.ones((1, 2), np.int64), "bias": np.zeros(2, np.int64)})]
    net = QNet(tensors, ops, input_quant={"mean": [0.5], "std": [0.5], "scale": 1 / 64}).validate().save(tmp_path / "q")
    data = tmp_path / "tiny.npz"
    np.savez(data, x=np.full((8, 4, 4, 1), 250, np.uint8), y=np.zeros(8, np.int64))
    return net, data


def _eval(net, data, out, *extra):
    return main(["eval", "--qnet", str(net), "--data", str(data), "--json", str(out), "--no-progress", *extra])


def test_eval_json_never_overwrites_without_force(tiny, tmp_path, capsys):
    net, data = tiny
    out = tmp_path / "r.json"
    out.write_text("mine")
    one_line(capsys, _eval(net, data, out), "exists; pass --force")
    assert out.read_text() == "mine"
    assert _eval(net, data, out, "--force") == 0
    assert json.loads(out.read_text())["n"] == 8
    no_temp_left(tmp_path)


def test_eval_json_refuses_its_own_input(tiny, capsys):
    net, data = tiny
    before = data.read_bytes()
    one_line(capsys, _eval(net, data, data, "--force"), "is the input")        # the data set
    assert data.read_bytes() == before
    one_line(capsys, _eval(net, data, net / "qnet.json", "--force"), "is inside the input")   # the network
    assert json.loads((net / "qnet.json").read_text())["ops"]


def test_eval_json_dir_and_bad_parent_are_one_line(tiny, tmp_path, capsys):
    net, data = tiny
    (tmp_path / "adir").mkdir()
    one_line(capsys, _eval(net, data, tmp_path / "adir"), "is a folder, but a file name is needed")
    (tmp_path / "f.txt").write_text("x")
    one_line(capsys, _eval(net, data, tmp_path / "f.txt" / "r.json"), "is a file, not a folder")
    assert list((tmp_path / "adir").iterdir()) == []


def test_eval_interrupted_while_writing_keeps_the_old_json(tiny, tmp_path, monkeypatch):
    import flow.commands.evaluate as ev

    net, data = tiny
    out = tmp_path / "r.json"
    out.write_text("old")

    def broken(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ev.json, "dumps", broken)
    with pytest.raises(RuntimeError):
        _eval(net, data, out, "--force")
    assert out.read_text() == "old"
    no_temp_left(tmp_path)


# --- import ---------------------------------------------------------------------------------------------

class _FakeModel:
    """Stands in for the Keras model: writes half a file, then fails (an interrupted save)."""
    layers, weights = [], []

    def save(self, path):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt


def test_import_checks_out_before_reading_and_keeps_it_when_interrupted(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"not read")
    out = tmp_path / "m.keras"
    out.write_bytes(b"old model")
    argv = ["import", "--pytorch", str(ckpt), "--out", str(out)]
    one_line(capsys, main(argv), "exists; pass --force")           # before the checkpoint is read (it is junk)
    (tmp_path / "d.keras").mkdir()
    one_line(capsys, main(["import", "--pytorch", str(ckpt), "--out", str(tmp_path / "d.keras"), "--force"]),
             "is a folder, but a file name is needed")
    import flow.checkpoint
    import flow.importer

    monkeypatch.setattr(flow.checkpoint, "load_state_dict", lambda p: {})
    monkeypatch.setattr(flow.importer, "keras_from_state_dict", lambda *a, **kw: _FakeModel())
    assert main(argv + ["--force"]) == 130
    assert out.read_bytes() == b"old model"
    no_temp_left(tmp_path)


# --- train ----------------------------------------------------------------------------------------------

def test_train_refuses_its_own_weights_and_keeps_outputs_when_interrupted(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.keras"
    out.write_bytes(b"old model")
    out.with_suffix(".json").write_text("old summary")
    base = ["train", "--model", "adder_small", "--data", "digits", "--epochs", "1", "--no-progress"]
    one_line(capsys, main(base + ["--out", str(out), "--weights", str(out), "--force"]), "is the input")
    # a bad argument: nothing written, not even the folder
    one_line(capsys, main(base[:4] + ["nope.npz", "--epochs", "1", "--out", str(tmp_path / "new" / "m.keras")]),
             "not found")
    assert not (tmp_path / "new").exists()
    import flow.train

    def interrupted(cfg, out=None, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow.train, "train", interrupted)
    assert main(base + ["--out", str(out), "--force"]) == 130
    assert out.read_bytes() == b"old model" and out.with_suffix(".json").read_text() == "old summary"
    no_temp_left(tmp_path)


# --- quantize / inspect (digits_npz from conftest.py; each test with its own calibration cache) ----------



@pytest.mark.usefixtures("private_cache")
def test_quantize_out_never_on_its_calibration_data(tmp_path, capsys):
    data = tmp_path / "d"
    data.mkdir()
    calib = data / "digits.npz"
    (data / "notes.txt").write_text("unrelated")
    x = np.zeros((4, 8, 8, 1), np.uint8)
    np.savez(calib, x=x, y=np.zeros(4, np.int64))
    before = snapshot(data)
    one_line(capsys, main(["quantize", "--model", "adder_small", "--calib", str(calib), "--out", str(data),
                           "--force"]), "contains the input")
    assert snapshot(data) == before


@pytest.mark.usefixtures("private_cache")
def test_quantize_bad_argument_creates_nothing(tmp_path, digits_npz, capsys):
    out = tmp_path / "new" / "q"
    one_line(capsys, main(["quantize", "--model", "adder_small", "--calib", str(digits_npz), "--bits", "9",
                           "--out", str(out)]), "bits must be an integer in 2..8")
    assert not (tmp_path / "new").exists()


@pytest.mark.usefixtures("private_cache")
def test_quantize_interrupted_keeps_the_previous_qnet(tmp_path, digits_npz, monkeypatch):
    import flow.commands.quantize as q

    out = tmp_path / "q"
    argv = ["quantize", "--model", "adder_small", "--calib", str(digits_npz), "--calib-limit", "32",
            "--groups", "2", "--out", str(out)]
    assert main(argv) == 0
    assert (out / MARKER).is_file() and (out / "qnet.json").is_file()
    before = snapshot(out)

    def broken(summary):
        raise KeyboardInterrupt    # after qnet.json/.npz were written to the temporary folder

    monkeypatch.setattr(q, "summary_markdown", broken)
    assert main(argv + ["--force"]) == 130
    assert snapshot(out) == before
    no_temp_left(tmp_path)


@pytest.mark.usefixtures("private_cache")
def test_inspect_out_never_on_its_qnet(tmp_path, digits_npz, capsys):
    qdir = tmp_path / "q"
    qdir.mkdir()
    (qdir / "qnet.json").write_text("{}")
    one_line(capsys, main(["inspect", "--model", "adder_small", "--calib", str(digits_npz), "--qnet", str(qdir),
                           "--out", str(qdir), "--force"]), "is the input")
    assert snapshot(qdir) == {"qnet.json": b"{}"}


# --- report / compare / bitstream: consumers of a build ---------------------------------------------------

@pytest.fixture(scope="module")
def build_src(tmp_path_factory):
    from flow.report import write_report
    from flow.report.example import resnet20_qnet

    d = tmp_path_factory.mktemp("src") / "b"
    write_report(d, resnet20_qnet(4, adder=True, apot_terms=2), model="resnet20", bits=4, board="pynq-z2",
                 clock_mhz=100, reuse=128)
    write_marker(d, "test")
    return d


@pytest.fixture
def builds(build_src, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(build_src, a)
    shutil.copytree(build_src, b)
    return a, b


def test_consumers_refuse_an_incomplete_build(builds, tmp_path, capsys):
    a, b = builds
    (b / MARKER).unlink()
    before = snapshot(b)
    for argv in (["report", str(b)], ["compare", str(a), str(b)], ["bitstream", "--board", "pynq-z2", str(b)],
                 ["package", "--board", "pynq-z2", str(b), "--out", str(tmp_path / "pkg")]):
        one_line(capsys, main(argv), f"incomplete build at {b}")
        assert snapshot(b) == before, argv
    assert not (tmp_path / "pkg").exists()


def test_report_interrupted_while_rendering_keeps_the_old_files(builds, monkeypatch):
    import flow.report.render

    a, _ = builds
    rep = a / "report.json"
    rep.write_text(json.dumps(json.loads(rep.read_text())))   # one line: a re-render would change its bytes
    before = snapshot(a)

    def broken(rep, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow.report.render, "plot", broken)
    assert main(["report", str(a)]) == 130
    assert snapshot(a) == before
    no_temp_left(a)


def test_compare_out_checks(builds, tmp_path, capsys):
    a, b = builds
    before = snapshot(a)
    one_line(capsys, main(["compare", str(a), str(b), "--out", str(a / "cmp.md")]), "is inside the input")
    (tmp_path / "cmp.md").mkdir()
    one_line(capsys, main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp.md")]),
             "is a folder, but a file name is needed")
    png = tmp_path / "c.png"
    png.write_bytes(b"old chart")
    one_line(capsys, main(["compare", str(a), str(b), "--out", str(tmp_path / "c.md")]), f"{png} exists")
    assert not (tmp_path / "c.md").exists() and png.read_bytes() == b"old chart"   # neither file written
    assert snapshot(a) == before


def test_compare_interrupted_writes_neither_file(builds, tmp_path, monkeypatch):
    import flow.commands.compare as cmp

    a, b = builds
    out = tmp_path / "c.md"
    out.write_text("old table")

    def broken(reps, dirs, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmp, "compare_png", broken)
    assert main(["compare", str(a), str(b), "--out", str(out), "--force"]) == 130
    assert out.read_text() == "old table" and not out.with_suffix(".png").exists()
    no_temp_left(tmp_path)


def test_bitstream_bad_argument_writes_nothing(builds, capsys):
    a, _ = builds
    before = snapshot(a)
    one_line(capsys, main(["bitstream", "--board", "zedboard", str(a)]), "unknown board 'zedboard'")
    one_line(capsys, main(["bitstream", "--board", "pynq-z2", "--jobs", "0", str(a)]), "--jobs must be >= 1")
    assert snapshot(a) == before
