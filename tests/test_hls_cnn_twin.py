"""resnet20_cnn through stock hls4ml (Vitis, QKeras, io_stream): builds, compiles, C-simulates."""

import numpy as np
import pytest

pytest.importorskip("hls4ml")
from flow.hls import cnn_twin  # noqa: E402


def test_qkeras_twin_architecture():
    model = cnn_twin.build_qkeras_resnet20_cnn(bits=4, seed=0, calib=np.zeros((2, 32, 32, 3), np.float32))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("QConv2D") == 21 and kinds.count("Add") == 9 and "QDense" in kinds
    assert model.output_shape == (None, 10)


@pytest.mark.slow
def test_stock_hls4ml_csim_runs(tmp_path):
    model = cnn_twin.build_qkeras_resnet20_cnn(bits=4, seed=0)
    hm = cnn_twin.convert(model, tmp_path / "prj", reuse=16)
    assert cnn_twin.compile_model(hm) > 0
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype(np.float32)
    y = cnn_twin.csim_predict(hm, x)
    assert y.shape == (2, 10) and np.isfinite(y).all()
