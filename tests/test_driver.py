"""The driver (flow.driver) through the emulated overlay: the C simulation of a stock hls4ml build
wrapped in the generated AXI top, checked bit for bit against the golden model, plus every error path."""

import subprocess
import sys
import types

import numpy as np
import pytest

from flow import golden
from flow.driver import (DmaError, DmaTimeoutError, InputError, OverlayFileError, locate_bitstream,
                         open_overlay)
from flow.driver.core import DEFAULT_REGISTERS
from flow.errors import AdderFlowError


@pytest.fixture(scope="session")
def stock_build_dir(tmp_path_factory):
    pytest.importorskip("hls4ml")
    from flow.board.stock import stock_build
    return stock_build(tmp_path_factory.getbasetemp() / "adderflow_stock")


@pytest.fixture
def overlay(stock_build_dir):
    ov = open_overlay(stock_build_dir, mode="emulation", batch_size=8, timeout_s=5)
    yield ov
    ov.close()


def _images(n, seed=0, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def test_emulated_overlay_equals_golden_bit_for_bit(overlay):
    x = _images(21)                                   # 21 = 2 full batches of 8 + a partial one
    logits_int = overlay.predict_int(x)
    np.testing.assert_array_equal(logits_int, golden.predict_int(overlay.qnet, x))
    np.testing.assert_array_equal(overlay.predict(x), golden.predict(overlay.qnet, x))
    np.testing.assert_array_equal(overlay.classify(x), np.argmax(logits_int, axis=1))
    assert overlay.predict_int(x[0]).shape == (1, 10)  # a single (H, W, C) image is a batch of one
    assert overlay.accel.calls == 3 + 3 + 3 + 1


def test_cifar_images_equal_golden(overlay, cifar_test1k):
    x = np.load(cifar_test1k)["x"][:40]
    np.testing.assert_array_equal(overlay.predict_int(x, batch_size=40), golden.predict_int(overlay.qnet, x))


def test_execute_takes_quantised_integers(overlay):
    x = _images(3)
    q = overlay.qnet.quantize_input(x)
    np.testing.assert_array_equal(overlay.execute(q), golden.run(overlay.qnet, q)["logits"])
    with pytest.raises(InputError, match="outside the 8-bit signed range"):
        overlay.execute(q * 4)


def test_buffers_are_reused_across_calls_and_freed_on_close(overlay):
    alloc = overlay.allocator
    overlay.predict_int(_images(8))
    overlay.predict_int(_images(5, seed=1))
    overlay.predict_int(_images(16, seed=2))          # two batches of 8: still the same two buffers
    assert alloc.allocated == 2 and len(alloc.live) == 2
    overlay.predict_int(_images(12, seed=3), batch_size=12)   # a larger batch re-allocates (old ones freed)
    assert alloc.allocated == 4 and len(alloc.live) == 2
    overlay.close()
    assert len(alloc.live) == 0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 32, 32, 3), np.float32), r"must be uint8 pixels 0\.\.255, got float32"),
    (np.zeros((2, 32, 32, 3), np.int64), "must be uint8 pixels 0..255, got int64"),
    (np.zeros((2, 3, 32, 32), np.uint8), r"shape \(N, 32, 32, 3\).*channels-first"),
    (np.zeros((2, 28, 28, 1), np.uint8), r"got \(2, 28, 28, 1\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), "empty batch"),
    ([], r"empty batch: no images \(got an empty list"),   # was "got float64" (numpy's dtype of [])
    (np.zeros((0,)), "empty batch"),
    (np.full((1, 32, 32, 3), np.nan), r"contain NaN \(3072 values"),
    ([[1, 2], [3]], "cannot be read as an array"),
])
def test_bad_input_is_one_clear_error_and_touches_no_buffer(overlay, bad, message):
    with pytest.raises(InputError, match=message) as info:
        overlay.predict(bad)
    assert isinstance(info.value, AdderFlowError) and "\n" not in str(info.value)
    assert overlay.allocator.allocated == 0 and overlay.accel.calls == 0


def test_nan_among_valid_pixels_is_reported_with_its_index(overlay):
    x = _images(2).astype(np.float64)
    x[1, 4, 5, 2] = np.nan
    with pytest.raises(InputError, match=r"1 values, first at index \(1, 4, 5, 2\)"):
        overlay.classify(x)


def test_timeout_is_a_clear_error_frees_buffers_and_recovers(stock_build_dir):
    ov = open_overlay(stock_build_dir, mode="emulation", batch_size=4, timeout_s=0.2)
    ov.predict_int(_images(4))
    assert len(ov.allocator.live) == 2
    ov.accel.stall = True                              # the IP never finishes (fault injection)
    with pytest.raises(DmaTimeoutError, match=r"did not finish within 0\.2 s for 4 images") as info:
        ov.predict_int(_images(4))
    assert isinstance(info.value, AdderFlowError)
    assert len(ov.allocator.live) == 0                 # the buffers the hung DMA pointed at are released
    assert ov.dma.sendchannel.idle and ov.dma.recvchannel.idle
    ov.accel.stall = False
    np.testing.assert_array_equal(ov.predict_int(_images(4)), golden.predict_int(ov.qnet, _images(4)))
    ov.close()


def test_layout_mismatch_between_driver_and_bitstream_is_a_dma_error(stock_build_dir, monkeypatch):
    ov = open_overlay(stock_build_dir, mode="emulation", batch_size=4, timeout_s=0.5)
    from flow.driver.packing import Layout
    lay = ov.output_layout                             # a driver expecting fewer output words than the IP sends
    monkeypatch.setattr(ov, "output_layout", Layout(2, lay.value_bits, lay.signed, lay.word_bits))
    with pytest.raises(DmaError, match=r"DMASR 0x10: internal error"):
        ov.predict_int(_images(4))
    assert len(ov.allocator.live) == 0


def test_missing_hwh_is_named(tmp_path):
    (tmp_path / "adderflow.bit").write_bytes(b"\0")
    with pytest.raises(OverlayFileError, match=r"adderflow\.hwh is missing"):
        locate_bitstream(tmp_path)
    with pytest.raises(OverlayFileError, match="nothing: bitstream not found"):
        locate_bitstream(tmp_path / "nothing")
    (tmp_path / "adderflow.hwh").write_text("<xml/>")
    assert locate_bitstream(tmp_path) == (tmp_path / "adderflow.bit", tmp_path / "adderflow.hwh")


def test_emulation_needs_a_build_folder(tmp_path):
    with pytest.raises(OverlayFileError, match="no hls_prj/ to emulate"):
        open_overlay(tmp_path, mode="emulation")


# ---- the board class, with pynq replaced by the emulated hardware -------------------------------
@pytest.fixture
def fake_pynq(stock_build_dir, monkeypatch):
    """A stand-in `pynq` module whose Overlay exposes the emulated DMA and IP under their block
    design names: AdderNetOverlay's own code runs unchanged."""
    from flow.driver.emulation import (CsimLibrary, EmulatedAccelerator, EmulatedAllocator, EmulatedDma,
                                       build_csim_library)
    mod = types.ModuleType("pynq")
    mod.allocate = EmulatedAllocator()
    lib = CsimLibrary(build_csim_library(stock_build_dir / "hls_prj"))

    class Overlay:
        def __init__(self, bitfile, download=True, **kw):
            self.bitfile_name = bitfile
            self.ip_dict = {"axi_dma": {"type": "xilinx.com:ip:axi_dma:7.1"},
                            "adderflow_top_0": {"type": "adderflow.org:hls:adderflow_top:1.0"}}
            self.axi_dma = EmulatedDma()
            self.adderflow_top_0 = EmulatedAccelerator(lib, self.axi_dma, DEFAULT_REGISTERS)

    class Sensor:
        def __init__(self, name):
            self.name = name

    class Rail:
        def __init__(self, name):
            self.power = Sensor(name + "_power")

    class DataRecorder:
        def __init__(self, *sensors):
            self.sensors = sensors

        def record(self, interval):
            import contextlib
            return contextlib.nullcontext()

        @property
        def frame(self):
            return Frame({s.name: np.array([2.0, 4.0]) for s in self.sensors})

    class Frame(dict):
        """The bit of pandas.DataFrame the driver uses (pandas is not installed here)."""

        columns = property(lambda self: list(self))

        def __len__(self):
            return len(next(iter(self.values())))

        def __getitem__(self, cols):
            return types.SimpleNamespace(mean=lambda: types.SimpleNamespace(
                sum=lambda: sum(float(dict.__getitem__(self, c).mean()) for c in cols)))

    mod.Overlay = Overlay
    mod.get_rails = lambda: {"12V": Rail("12V"), "VCCINT": Rail("VCCINT")}
    mod.pmbus = types.SimpleNamespace(DataRecorder=DataRecorder)
    monkeypatch.setitem(sys.modules, "pynq", mod)
    monkeypatch.delitem(sys.modules, "flow.driver.overlay", raising=False)
    return mod


def _package_dir(tmp_path, build, hwh=True):
    import shutil
    shutil.copytree(build / "qnet", tmp_path / "qnet")
    shutil.copy(build / "hls_prj" / "adderflow_ip.json", tmp_path)
    (tmp_path / "adderflow.bit").write_bytes(b"\0")
    if hwh:
        (tmp_path / "adderflow.hwh").write_text("<xml/>")
    return tmp_path


def test_board_overlay_class_runs_the_same_driver(fake_pynq, stock_build_dir, tmp_path):
    from flow.driver.overlay import AdderNetOverlay
    ov = AdderNetOverlay(_package_dir(tmp_path, stock_build_dir), batch_size=4)
    x = _images(6)
    np.testing.assert_array_equal(ov.predict_int(x), golden.predict_int(ov.qnet, x))
    res = ov.throughput_test(batch_size=4, repeats=2)
    assert res["power_w"] == pytest.approx(3.0)        # the 12 V input rail only, mean of its samples
    assert res["energy_mj_per_image"] == pytest.approx(1e3 * 3.0 * res["runtime_s"] / 4)
    ov.close()
    assert len(fake_pynq.allocate.live) == 0


def test_board_overlay_refuses_a_bitstream_without_hwh(fake_pynq, stock_build_dir, tmp_path):
    from flow.driver.overlay import AdderNetOverlay
    with pytest.raises(OverlayFileError, match=r"adderflow\.hwh is missing"):
        AdderNetOverlay(_package_dir(tmp_path, stock_build_dir, hwh=False) / "adderflow.bit")


def test_throughput_test_reports_rates(overlay):
    res = overlay.throughput_test(batch_size=8, repeats=2)
    assert res["batch_size"] == 8 and res["throughput_images_per_s"] > 0
    assert res["latency_ms_per_image"] == pytest.approx(1e3 / res["throughput_images_per_s"])
    assert "power_w" not in res and res["backend"].startswith("emulation")


def test_driver_imports_with_numpy_alone():
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('tensorflow', 'keras', 'qkeras', 'hls4ml', 'pynq', 'numba', 'torch'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import flow.driver, flow.driver.emulation, flow.driver.packing, flow.qnet\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---- the AdderNet backend (flow.hls) behind the same wrapper -------------------------------------
def _adder_build(root, net):
    project = pytest.importorskip("flow.hls.project")
    net.save(root / "qnet")
    project.convert(net, root / "hls_prj").write()      # no AXI wrapper yet: the emulation adds it
    return root


def test_adder_backend_through_emulated_overlay_equals_golden(tmp_path):
    pytest.importorskip("hls4ml")
    from flow.hls.random_qnet import random_qnet
    net = random_qnet(5, max_channels=8)
    ov = open_overlay(_adder_build(tmp_path, net), mode="emulation", batch_size=3)
    x = _images(7, seed=5, shape=ov.input_shape)
    np.testing.assert_array_equal(ov.predict_int(x), golden.predict_int(net, x))
    assert ov.accel.calls == 3 and ov.accel.read(ov.registers["status"]) == 0   # batches 3+3+1, one call each
    res, logits = _run_ip(ov, _words(ov, x), 7)        # the image loop of the network: 7 images, one call
    assert res["status"] == 0 and res["out_words"] == 7 * ov.output_layout.words
    np.testing.assert_array_equal(logits, golden.predict_int(net, x))
    ov.close()


@pytest.mark.slow
def test_resnet20_shaped_w4_through_emulated_overlay_equals_golden(tmp_path):
    pytest.importorskip("hls4ml")
    from flow.hls.random_qnet import resnet20_shaped_qnet
    net = resnet20_shaped_qnet(bits=4, seed=2)
    ov = open_overlay(_adder_build(tmp_path, net), mode="emulation", batch_size=2)
    x = _images(3, seed=7, shape=ov.input_shape)
    np.testing.assert_array_equal(ov.predict_int(x), golden.predict_int(net, x))
    ov.close()


def test_a_refused_transfer_is_a_dma_error_and_frees_buffers(stock_build_dir):
    ov = open_overlay(stock_build_dir, mode="emulation", batch_size=4)
    ov.predict_int(_images(2))
    ov.dma.recvchannel.running = True                  # left busy by someone else: pynq raises RuntimeError
    with pytest.raises(DmaError, match="refused the transfer of 2 images"):
        ov.predict_int(_images(2))
    assert len(ov.allocator.live) == 0
    np.testing.assert_array_equal(ov.predict_int(_images(2)), golden.predict_int(ov.qnet, _images(2)))


# ---- sizes are checked, never replaced by defaults -------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda ov: ov.predict(_images(2), batch_size=0),
    lambda ov: ov.predict_int(_images(2), batch_size=-1),
    lambda ov: ov.classify(_images(2), batch_size=0),
    lambda ov: ov.execute(ov.qnet.quantize_input(_images(2)), batch_size=0),
    lambda ov: ov.throughput_test(batch_size=0),
    lambda ov: ov.predict(_images(2), batch_size=2.5),
])
def test_batch_size_zero_is_an_error_not_the_default(overlay, call):
    with pytest.raises(InputError, match=r"batch_size must be an integer >= 1, got (0|-1|2\.5)"):
        call(overlay)
    assert overlay.accel.calls == 0


@pytest.mark.parametrize("n", [0, -5])
def test_throughput_n_images_zero_is_an_error(overlay, n):
    with pytest.raises(InputError, match=f"n_images must be an integer >= 1, got {n}"):
        overlay.throughput_test(n_images=n)
    assert overlay.accel.calls == 0


def test_constructor_batch_size_zero_is_an_error(stock_build_dir):
    with pytest.raises(InputError, match="batch_size must be an integer >= 1, got 0"):
        open_overlay(stock_build_dir, mode="emulation", batch_size=0)


def test_throughput_n_images_and_batch_size_are_both_honoured(overlay):
    """12 images in batches of 4: three accelerator calls per timed run, all 12 counted."""
    before = overlay.accel.calls
    res = overlay.throughput_test(n_images=12, batch_size=4, repeats=2)
    assert res["n_images"] == 12 and res["batch_size"] == 4
    assert overlay.accel.calls - before == 3 * (1 + 2)          # warm-up + 2 repeats
    assert res["throughput_images_per_s"] == pytest.approx(12 / res["runtime_s"])
    with pytest.raises(InputError, match="n_images=12 but only 5 images were given"):
        overlay.throughput_test(n_images=12, images=_images(5))


def test_throughput_test_has_finns_keys(overlay):
    res = overlay.throughput_test(batch_size=8, repeats=2)
    finn = ["runtime[ms]", "throughput[images/s]", "DRAM_in_bandwidth[MB/s]", "DRAM_out_bandwidth[MB/s]",
            "batch_size", "pack_input[ms]", "copy_input_data_to_device[ms]", "copy_output_data_from_device[ms]",
            "unpack_output[ms]"]
    assert all(k in res for k in finn), sorted(res)
    assert res["runtime[ms]"] == pytest.approx(1e3 * res["runtime_s"])
    assert res["throughput[images/s]"] == pytest.approx(res["throughput_images_per_s"])
    bytes_in = 8 * overlay.input_layout.bytes_per_image
    bytes_out = 8 * overlay.output_layout.bytes_per_image
    assert res["DRAM_in_bandwidth[MB/s]"] == pytest.approx(1e-6 * bytes_in / res["runtime_s"])
    assert res["DRAM_out_bandwidth[MB/s]"] == pytest.approx(1e-6 * bytes_out / res["runtime_s"])
    assert all(res[k] >= 0 for k in finn)
    assert "fclk[mhz]" not in res                               # no PL clock in the emulation
    # FINN's fold/unfold are reshapes this driver does not do: not reported rather than faked
    assert "fold_input[ms]" not in res and "unfold_output[ms]" not in res


def test_board_throughput_reports_the_pl_clock(fake_pynq, stock_build_dir, tmp_path):
    from flow.driver.overlay import AdderNetOverlay
    fake_pynq.Clocks = types.SimpleNamespace(fclk0_mhz=100.0)
    ov = AdderNetOverlay(_package_dir(tmp_path, stock_build_dir), batch_size=4)
    assert ov.throughput_test(repeats=1)["fclk[mhz]"] == 100.0
    ov.close()


def test_open_overlay_says_when_it_falls_back_to_the_emulation(stock_build_dir, capsys, monkeypatch):
    monkeypatch.delenv("ADDERFLOW_DRIVER", raising=False)
    ov = open_overlay(stock_build_dir, batch_size=4)            # auto: no PYNQ board on this machine
    err = capsys.readouterr().err.strip().splitlines()
    assert ov.is_emulation
    assert len(err) == 1 and "emulation" in err[0] and str(stock_build_dir) in err[0], err
    assert "no PYNQ board" in err[0]
    ov.close()
    open_overlay(stock_build_dir, mode="emulation", batch_size=4).close()   # asked for: nothing to say
    assert capsys.readouterr().err == ""


# ---- TLAST and the status register: one accelerator call per batch -------------------------------
def _words(ov, x):
    """The DMA words of a batch, as the driver packs them (uint8 bytes, IN_WORDS words per image)."""
    from flow.driver.packing import pack
    return pack(ov.qnet.quantize_input(x), ov.input_layout).reshape(-1)


def _run_ip(ov, in_bytes, n_images):
    """The C simulation of the IP on one DMA transfer: (result dict, logits (n_images, classes))."""
    out = np.zeros(max(n_images, 1) * ov.output_layout.bytes_per_image, np.uint8)
    res = ov.csim.run(in_bytes, out, n_images)
    from flow.driver.packing import unpack
    return res, unpack(out, ov.output_layout, n_images)


def test_a_batch_runs_in_one_call_with_tlast_on_its_last_beat(overlay):
    x = _images(6, seed=11)
    res, logits = _run_ip(overlay, _words(overlay, x), 6)
    out_words, in_words = overlay.output_layout.words, overlay.input_layout.words
    assert res == {"consumed_words": 6 * in_words, "out_words": 6 * out_words, "tlast_word": 6 * out_words - 1,
                   "status": 0}
    np.testing.assert_array_equal(logits, golden.predict_int(overlay.qnet, x))
    before = overlay.accel.calls                      # through the driver: one ap_start for the batch of 6
    np.testing.assert_array_equal(overlay.predict_int(x, batch_size=6), golden.predict_int(overlay.qnet, x))
    assert overlay.accel.calls - before == 1


def test_a_transfer_shorter_than_n_images_sets_status_bit_0_and_still_ends_with_tlast(overlay):
    x = _images(3, seed=12)
    words = overlay.input_layout.words
    wb = overlay.input_layout.word_bits // 8
    short = _words(overlay, x)[:(2 * words + 5) * wb]  # image 3 cut after 5 words: TLAST comes early
    res, logits = _run_ip(overlay, short, 3)
    out_words = overlay.output_layout.words
    assert res["status"] == 1 and res["consumed_words"] == 2 * words + 5
    assert res["out_words"] == 3 * out_words and res["tlast_word"] == 3 * out_words - 1   # no hang, TLAST last
    # the missing words are read as zeros: image 3 is its first 5 words followed by zero pixels
    q = overlay.qnet.quantize_input(x)
    flat = q.reshape(3, -1).copy()
    flat[2, 5 * overlay.input_layout.lanes:] = 0
    np.testing.assert_array_equal(logits, golden.run(overlay.qnet, flat.reshape(q.shape))["logits"])


def test_a_transfer_longer_than_n_images_sets_status_bit_1(overlay):
    x = _images(4, seed=13)
    res, logits = _run_ip(overlay, _words(overlay, x), 3)  # 4 images sent, 3 asked for
    words, out_words = overlay.input_layout.words, overlay.output_layout.words
    assert res == {"consumed_words": 3 * words, "out_words": 3 * out_words, "tlast_word": 3 * out_words - 1,
                   "status": 2}
    np.testing.assert_array_equal(logits, golden.predict_int(overlay.qnet, x[:3]))


def test_zero_images_run_nothing_and_send_no_beat(overlay):
    one_image = _words(overlay, _images(1))
    for in_bytes in (one_image[:0], one_image):
        res, _ = _run_ip(overlay, in_bytes, 0)
        assert res == {"consumed_words": 0, "out_words": 0, "tlast_word": -1, "status": 0}


def test_the_driver_turns_a_short_transfer_into_a_dma_error(overlay, monkeypatch):
    run = overlay.csim.run
    wb = overlay.input_layout.word_bits // 8
    monkeypatch.setattr(overlay.csim, "run", lambda i, o, n: run(i[:len(i) - wb], o, n))   # DMA drops a word
    with pytest.raises(DmaError, match=r"input stream of 2 images \(status 0x1: input TLAST before the last word"):
        overlay.predict_int(_images(2))
    assert len(overlay.allocator.live) == 0
    monkeypatch.setattr(overlay.csim, "run", run)
    np.testing.assert_array_equal(overlay.predict_int(_images(2)), golden.predict_int(overlay.qnet, _images(2)))


def test_the_driver_names_extra_words_instead_of_timing_out(stock_build_dir, monkeypatch):
    ov = open_overlay(stock_build_dir, mode="emulation", batch_size=4, timeout_s=0.3)
    send = ov.dma.sendchannel
    transfer = send.transfer
    extra = ov.input_layout.bytes_per_image           # MM2S sends one image more than n_images need
    monkeypatch.setattr(send, "transfer", lambda a, start=0, nbytes=0: transfer(a, start, nbytes + extra))
    with pytest.raises(DmaError, match=r"status 0x2: no TLAST on the last input word.*left holding words"):
        ov.predict_int(_images(2))
    assert len(ov.allocator.live) == 0 and send.idle
    ov.accel.stall = True                              # a stalled IP (not idle) is still a timeout
    monkeypatch.setattr(send, "transfer", transfer)
    with pytest.raises(DmaTimeoutError):
        ov.predict_int(_images(2))
    ov.close()
