"""The `make hls` front door: where the checkpoint and the data come from, online or not."""

import numpy as np
import pytest

from flow.cli import main
from flow.commands import make_hls
from flow.errors import AdderFlowError


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(make_hls, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(make_hls, "shared_dir", lambda: None)
    monkeypatch.setattr(make_hls, "_download", lambda url, dest: False)
    return tmp_path


def test_explicit_weights_must_exist(tmp_path):
    with pytest.raises(AdderFlowError, match="weights file not found"):
        make_hls.resolve_weights("resnet20", str(tmp_path / "nope.pth"))


def test_offline_and_uncached_gives_no_checkpoint_and_no_data(offline):
    assert make_hls.resolve_weights("resnet20", None) is None
    assert make_hls.resolve_weights("resnet20_cnn", None) is None  # no official checkpoint exists
    assert make_hls.resolve_data(None) is None


def test_cached_checkpoint_is_used_only_when_its_hash_matches(offline, resnet20_ckpt):
    cached = offline / "cache" / "ResNet20-AdderNet.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    assert make_hls.resolve_weights("resnet20", None) is None
    cached.write_bytes(resnet20_ckpt.read_bytes())
    assert make_hls.resolve_weights("resnet20", None) == cached


def test_shared_data_folder_is_found(monkeypatch, shared):
    monkeypatch.setattr(make_hls, "shared_dir", lambda: shared)
    assert make_hls.resolve_data(None) == shared / "data"


def test_synthetic_data_is_loadable(tmp_path):
    from flow.data import find_split_files, load_dataset

    d = make_hls._synthetic_data(tmp_path / "out")
    calib, test = find_split_files(d)
    x, y = load_dataset(test)
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(x) == len(y)


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "build"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["make-hls", "--model", "resnet20", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
