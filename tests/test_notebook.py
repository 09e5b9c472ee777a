"""notebooks/resnet20_cifar10.ipynb executes end to end on the emulated overlay (bounded: 20 images).

The build is the stock test network (flow.board.stock); set ADDERFLOW_NOTEBOOK_OUT to keep the
executed notebook (CI uploads it)."""

import os
from pathlib import Path

import pytest

from flow.paths import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "resnet20_cifar10.ipynb"


@pytest.fixture(scope="session")
def stock_build_dir(tmp_path_factory):
    pytest.importorskip("hls4ml")
    from flow.board.stock import stock_build
    return stock_build(tmp_path_factory.getbasetemp() / "adderflow_stock")


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def test_notebook_runs_on_the_emulation(stock_build_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import numpy as np
    samples = tmp_path / "samples.npz"
    rng = np.random.default_rng(1)
    np.savez(samples, x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 40))
    monkeypatch.setenv("ADDERFLOW_BUILD", str(stock_build_dir))
    monkeypatch.setenv("ADDERFLOW_NOTEBOOK_IMAGES", "20")
    monkeypatch.setenv("ADDERFLOW_SAMPLES", str(samples))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = _text(nb)
    assert "emulation (C simulation of" in text
    assert "20 images from" in text and "accuracy:" in text
    assert "bit-exact with the integer golden model: True" in text
    assert "throughput_images_per_s" in text and "latency_ms_per_image" in text
    assert "board      pynq-z2" in text                       # the build's report
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2                                      # prediction grid + confusion matrix
    keep = os.environ.get("ADDERFLOW_NOTEBOOK_OUT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep)
