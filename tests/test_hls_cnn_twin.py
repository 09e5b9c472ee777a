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
    """The C simulation computes the QKeras model: compared with model.predict on the same 8 images.

    Not bit-exact: stock hls4ml truncates (AP_TRN) where QKeras rounds, and keeps BN/Add results in
    fixed<24,14>, so each layer can move a 4-bit activation by an LSB. Measured (seed 0, reuse 16): max
    |csim - QKeras| 9.5% of the logit range, correlation 0.993, and 0.80 on the input-dependent part (logits
    minus their mean over the images; a random-weight net's logits are mostly a per-class bias). A csim
    of other weights (seed 1) or of other images gives correlations about -0.07 on these measures."""
    model = cnn_twin.build_qkeras_resnet20_cnn(bits=4, seed=0)
    hm = cnn_twin.convert(model, tmp_path / "prj", reuse=16)
    assert cnn_twin.compile_model(hm) > 0
    x = np.random.default_rng(0).normal(0, 1, (8, 32, 32, 3)).astype(np.float32)
    y = cnn_twin.csim_predict(hm, x)
    ref = np.asarray(model.predict(x, verbose=0), np.float64)
    assert y.shape == ref.shape == (8, 10) and np.isfinite(y).all()
    assert np.abs(y - ref).max() <= 0.15 * np.ptp(ref)
    assert np.corrcoef(y.ravel(), ref.ravel())[0, 1] >= 0.98
    dy, dref = y - y.mean(axis=0), ref - ref.mean(axis=0)
    assert np.corrcoef(dy.ravel(), dref.ravel())[0, 1] >= 0.5
