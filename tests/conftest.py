import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

from flow.paths import shared_dir


@pytest.fixture(scope="session")
def shared():
    """../shared (checkpoint, CIFAR-10 subsets); tests that need it skip with the reason."""
    d = shared_dir()
    if d is None:
        pytest.skip("../shared is absent (set ADDERFLOW_SHARED to its path): checkpoint and CIFAR-10 subsets unavailable")
    return d


@pytest.fixture(scope="session")
def resnet20_ckpt(shared):
    p = shared / "models" / "ResNet20-AdderNet.pth"
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def cifar_test1k(shared):
    p = shared / "data" / "cifar10_test1k.npz"
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def cifar_train2k(shared):
    p = shared / "data" / "cifar10_train2k.npz"
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def adder_net():
    """ResNet-20-shaped adder QNet, W4, requant multipliers of 2 power-of-two terms (no checkpoint needed)."""
    from flow.report.example import resnet20_qnet

    return resnet20_qnet(4, adder=True, apot_terms=2)


@pytest.fixture(scope="session")
def cnn_net():
    """Its regular-convolution twin (resnet20_cnn shapes), W4."""
    from flow.report.example import resnet20_qnet

    return resnet20_qnet(4, adder=False)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """96 sklearn digits as a calibration .npz (adder_small's input)."""
    import numpy as np

    from flow.data import load_dataset

    x, y = load_dataset("digits", "train", limit=96)
    p = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(p, x=x, y=y)
    return p


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    """A calibration cache of this test's own (no state shared between tests)."""
    monkeypatch.setenv("ADDERFLOW_CACHE", str(tmp_path / "cache"))
