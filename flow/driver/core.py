"""The driver logic shared by the board overlay and its emulation.

A subclass supplies the hardware objects (`dma` with sendchannel/recvchannel, `accel` with
read/write of its AXI4-Lite registers, `allocate` for DMA buffers) and calls `_engine_init`;
everything a user calls (predict, classify, execute, throughput_test) lives here, so the emulation
tests exercise the code that runs on the board.

Preprocessing is the software model's: `QNet.quantize_input` (uint8 -> int8, float64 math) before
packing, `QNet.dequantize_output` after unpacking; the PL sees only packed integers.
"""

from __future__ import annotations

import time

import numpy as np

from flow.driver.errors import DmaError, DmaTimeoutError, InputError
from flow.driver.packing import input_layout, output_layout, pack, unpack

REG_CTRL = 0x00          # Vitis HLS ap_ctrl: bit 0 ap_start, 1 ap_done, 2 ap_idle
CTRL_AP_START, CTRL_AP_IDLE = 0x1, 0x4
STATUS_BITS = ((0x1, "input TLAST before the last word: the IP read the rest as zeros"),
               (0x2, "no TLAST on the last input word: the DMA sent more words than the images need"))
# The wrapper's s_axilite registers (flow.board.axi_top.describe_ip; tests/test_overlay_tcl.py checks they agree):
# status is the IP's output register (bit 0 TLAST early, bit 1 no TLAST on the last word).
DEFAULT_REGISTERS = {"ap_ctrl": REG_CTRL, "n_images": 0x10, "status": 0x18}
DEFAULT_TIMEOUT_S = 10.0
DMA_ERRORS = ((0x10, "internal error, e.g. more stream data than the buffer or no TLAST"),
              (0x20, "slave error, memory not accessible"), (0x40, "decode error, invalid address"))


def check_count(value, name: str) -> int:
    """A batch size or image count given by the caller: an integer >= 1 (0 is an error, not 'the default')."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class InferenceEngine:
    is_emulation = False
    description = "board"

    def _engine_init(self, qnet, dma, accel, allocate, registers=None, word_bits=64, batch_size=64,
                     timeout_s=DEFAULT_TIMEOUT_S):
        batch_size = check_count(batch_size, "batch_size")
        self.qnet = qnet
        self.dma, self.accel, self._allocate = dma, accel, allocate
        self.registers = dict(registers or DEFAULT_REGISTERS)
        self.input_layout = input_layout(qnet, word_bits)
        self.output_layout = output_layout(qnet, word_bits)
        self.input_shape = tuple(qnet.tensors[qnet.input].shape)
        self.n_classes = int(np.prod(qnet.output_spec.shape))
        self.batch_size = int(batch_size)
        self.timeout_s = float(timeout_s)
        self._in_buf = self._out_buf = None
        self._buf_images = 0
        self.last_timing = {}

    # ---- public API ----------------------------------------------------------------------------
    def predict(self, images_uint8, batch_size: int | None = None) -> np.ndarray:
        """uint8 images (N, H, W, C) or one (H, W, C) -> float logits (N, classes)."""
        return self.qnet.dequantize_output(self.predict_int(images_uint8, batch_size))

    def predict_int(self, images_uint8, batch_size: int | None = None) -> np.ndarray:
        """Integer logits exactly as the accelerator computes them (int64, (N, classes))."""
        batch = self._batch(batch_size)
        images = self.check_images(images_uint8)
        return self._run(images, batch, quantize=True)

    def classify(self, images_uint8, batch_size: int | None = None) -> np.ndarray:
        """Predicted class index per image."""
        return np.argmax(self.predict_int(images_uint8, batch_size), axis=1)

    def execute(self, x_int, batch_size: int | None = None) -> np.ndarray:
        """Already-quantised network input (N, H, W, C) integers -> integer logits (the raw accelerator call)."""
        batch = self._batch(batch_size)
        x = np.asarray(x_int)
        if x.size == 0 and x.ndim <= 1:
            raise InputError(f"empty batch: no quantised input (got {_empty_what(x_int)})")
        if not np.issubdtype(x.dtype, np.integer):
            raise InputError(f"execute() takes the quantised integer input, got {x.dtype} (use predict() for images)")
        x = self._check_shape(x, what="quantised input")
        return self._run(x, batch, quantize=False)

    def throughput_test(self, n_images: int | None = None, batch_size: int | None = None, repeats: int = 3,
                        images=None, seed: int = 0) -> dict:
        """Time `n_images` images in accelerator calls of `batch_size`, `repeats` times (after one warm-up).

        n_images defaults to batch_size, else len(images), else the overlay's batch size; batch_size
        defaults to n_images (one call, as FINN's throughput_test). `throughput_images_per_s` and
        `latency_ms_per_image` count the DMA + accelerator time (FINN's runtime); `end_to_end_images_per_s`
        adds quantisation, packing and the buffer copies. FINN's key names are returned as well
        ("runtime[ms]", "throughput[images/s]", "DRAM_in_bandwidth[MB/s]", ...; "fclk[mhz]" on the board;
        no fold/unfold: this driver packs NHWC directly, there is no folded shape)."""
        if n_images is not None:
            n = check_count(n_images, "n_images")
        elif batch_size is not None:
            n = check_count(batch_size, "batch_size")
        elif images is not None:
            n = max(1, len(np.asarray(images)))   # an empty array is refused by check_images below
        else:
            n = self.batch_size
        batch = check_count(n if batch_size is None else batch_size, "batch_size")
        repeats = check_count(repeats, "repeats")
        if images is None:
            images = np.random.default_rng(seed).integers(0, 256, (n,) + self.input_shape, dtype=np.uint8)
        images = self.check_images(images)
        if len(images) < n:
            raise InputError(f"n_images={n} but only {len(images)} images were given")
        images = images[:n]
        self.predict_int(images, batch)                       # warm-up: buffers allocated, caches hot

        def timed():
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.predict_int(images, batch)
                runs.append(dict(self.last_timing, total_s=time.perf_counter() - t0))
            return runs

        runs, power_w = self._measure_power(timed)
        # the median run by accelerator time, so every per-stage figure comes from the same run
        run = sorted(runs, key=lambda r: r["accelerator_s"])[(len(runs) - 1) // 2]
        runtime = run["accelerator_s"]
        res = {"backend": self.description, "n_images": n, "batch_size": batch, "repeats": repeats,
               "runtime_s": runtime, "throughput_images_per_s": n / runtime,
               "latency_ms_per_image": 1e3 * runtime / n,
               "end_to_end_images_per_s": n / float(np.median([r["total_s"] for r in runs])),
               "pack_ms": 1e3 * run["pack_s"], "unpack_ms": 1e3 * run["unpack_s"],
               # FINN's names (finn/qnn-data/templates/driver/driver_base.py), same meaning
               "runtime[ms]": 1e3 * runtime, "throughput[images/s]": n / runtime,
               "DRAM_in_bandwidth[MB/s]": 1e-6 * n * self.input_layout.bytes_per_image / runtime,
               "DRAM_out_bandwidth[MB/s]": 1e-6 * n * self.output_layout.bytes_per_image / runtime,
               "pack_input[ms]": 1e3 * run["pack_s"],
               "copy_input_data_to_device[ms]": 1e3 * run["copy_in_s"],
               "copy_output_data_from_device[ms]": 1e3 * run["copy_out_s"],
               "unpack_output[ms]": 1e3 * run["unpack_s"]}
        fclk = self._fclk_mhz()
        if fclk is not None:
            res["fclk[mhz]"] = fclk
        if power_w is not None:
            res["power_w"] = power_w
            res["energy_mj_per_image"] = 1e3 * power_w * runtime / n
        return res

    def free_buffers(self) -> None:
        """Release the DMA buffers (they are reused across calls until then)."""
        for buf in (self._in_buf, self._out_buf):
            if buf is not None and hasattr(buf, "freebuffer"):
                buf.freebuffer()
        self._in_buf = self._out_buf = None
        self._buf_images = 0

    def close(self) -> None:
        self.free_buffers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- input checks --------------------------------------------------------------------------
    def check_images(self, images) -> np.ndarray:
        """uint8 (N, H, W, C) or (H, W, C) -> (N, H, W, C) uint8, or a one-line InputError."""
        try:
            x = np.asarray(images)
        except Exception as exc:  # ragged lists and the like
            raise InputError(f"images cannot be read as an array: {exc}") from None
        if x.size == 0 and x.ndim <= 1:   # [] becomes float64 in numpy: say "empty", not "got float64"
            raise InputError(f"empty batch: no images (got {_empty_what(images)}), nothing to run")
        if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating):
            nan = np.isnan(x)
            if nan.any():
                raise InputError(f"images contain NaN ({int(nan.sum())} values, first at index "
                                 f"{tuple(int(i) for i in np.argwhere(nan)[0])}); the driver takes uint8 pixels 0..255")
            raise InputError(f"images must be uint8 pixels 0..255, got {x.dtype}: pass the raw images, the driver "
                             "applies the network's normalisation and quantisation itself")
        if x.dtype != np.uint8:
            raise InputError(f"images must be uint8 pixels 0..255, got {x.dtype} "
                             "(np.clip(x, 0, 255).astype(np.uint8) if the values are pixels)")
        return self._check_shape(x, what="images")

    def _check_shape(self, x: np.ndarray, what: str) -> np.ndarray:
        shape = self.input_shape
        if x.shape == shape:
            x = x[None]
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            hint = ""
            if x.ndim == len(shape) + 1 and sorted(x.shape[1:]) == sorted(shape):
                hint = " (channels-first? the network takes NHWC: transpose with x.transpose(0, 2, 3, 1))"
            raise InputError(f"{what} must have shape (N, {', '.join(map(str, shape))}) or "
                             f"({', '.join(map(str, shape))}), got {x.shape}{hint}")
        if len(x) == 0:
            raise InputError(f"empty batch: {what} has shape {x.shape}, nothing to run")
        return x

    # ---- the accelerator call ------------------------------------------------------------------
    def _batch(self, batch_size) -> int:
        """The per-call batch: the overlay's when None; 0 or a negative size is an error, not the default."""
        return self.batch_size if batch_size is None else check_count(batch_size, "batch_size")

    def _run(self, x: np.ndarray, batch: int, quantize: bool) -> np.ndarray:
        outs = []
        # last_timing covers the whole call (all chunks): {pack, copy_in, accelerator (DMA + IP), copy_out, unpack}
        timing = dict.fromkeys(("pack_s", "copy_in_s", "accelerator_s", "copy_out_s", "unpack_s"), 0.0)
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch]
            t0 = time.perf_counter()
            q = self.qnet.quantize_input(chunk) if quantize else chunk
            packed = pack(q, self.input_layout)
            timing["pack_s"] += time.perf_counter() - t0
            raw = self._transfer(packed, len(chunk), batch, timing)
            t2 = time.perf_counter()
            outs.append(unpack(raw, self.output_layout, len(chunk)))
            timing["unpack_s"] += time.perf_counter() - t2
        self.last_timing = timing
        return np.concatenate(outs)

    def _ensure_buffers(self, n_images: int) -> None:
        """Buffers sized for `n_images` are allocated once and reused; a larger batch re-allocates."""
        if self._in_buf is not None and self._buf_images >= n_images:
            return
        self.free_buffers()
        self._in_buf = self._allocate(shape=(n_images * self.input_layout.bytes_per_image,), dtype=np.uint8)
        self._out_buf = self._allocate(shape=(n_images * self.output_layout.bytes_per_image,), dtype=np.uint8)
        self._buf_images = n_images

    def _transfer(self, packed: np.ndarray, n: int, capacity: int, timing: dict | None = None) -> np.ndarray:
        timing = {} if timing is None else timing
        t0 = time.perf_counter()
        self._ensure_buffers(max(capacity, n))
        nin, nout = n * self.input_layout.bytes_per_image, n * self.output_layout.bytes_per_image
        self._in_buf[:nin] = packed.reshape(-1)
        self._in_buf.flush()
        t1 = time.perf_counter()
        timing["copy_in_s"] = timing.get("copy_in_s", 0.0) + t1 - t0
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        try:
            self.accel.write(self.registers["n_images"], n)
            recv.transfer(self._out_buf, 0, nout)
            send.transfer(self._in_buf, 0, nin)
            self.accel.write(self.registers["ap_ctrl"], CTRL_AP_START)
            deadline = time.monotonic() + self.timeout_s
            self._wait(send, "MM2S (input)", deadline, n)
            self._wait(recv, "S2MM (output)", deadline, n)
        except DmaTimeoutError:
            # an IP that finished while MM2S still holds words read fewer than were sent: its status
            # register says so (bit 1), which names the cause better than a stall
            status = self._finished_status()
            self._recover()
            if status:
                raise DmaError(_status_message(n, status) + "; the DMA was left holding words (DMA reset, "
                               "buffers freed)") from None
            raise
        except DmaError:
            self._recover()
            raise
        except RuntimeError as exc:  # pynq refuses a transfer on a channel left busy or stopped
            self._recover()
            raise DmaError(f"DMA refused the transfer of {n} images: {exc} (channels reset, buffers freed)") from None
        t2 = time.perf_counter()
        timing["accelerator_s"] = timing.get("accelerator_s", 0.0) + t2 - t1
        status = self.accel.read(self.registers["status"]) if "status" in self.registers else 0
        if status:
            raise DmaError(_status_message(n, status))
        self._out_buf.invalidate()
        out = np.array(self._out_buf[:nout], copy=True)
        timing["copy_out_s"] = timing.get("copy_out_s", 0.0) + time.perf_counter() - t2
        return out

    def _finished_status(self) -> int:
        """The IP's status register when the IP is idle (its call finished, so the value is this call's), else 0."""
        if "status" not in self.registers or not self.accel.read(self.registers["ap_ctrl"]) & CTRL_AP_IDLE:
            return 0
        return self.accel.read(self.registers["status"])

    def _wait(self, channel, what: str, deadline: float, n: int) -> None:
        while not channel.idle:
            self._check_error(channel, what)
            if time.monotonic() > deadline:
                raise DmaTimeoutError(
                    f"DMA {what} did not finish within {self.timeout_s:g} s for {n} images: the accelerator "
                    "stalled or the bitstream does not match this network (DMA reset, buffers freed; "
                    "if it happens again, reload the overlay)")
            time.sleep(0.0005)
        self._check_error(channel, what)

    @staticmethod
    def _check_error(channel, what: str) -> None:
        """pynq's channel.error is a bool; the cause is in the DMA status register (DMASR, PG021)."""
        if not getattr(channel, "error", False):
            return
        status = getattr(channel, "status", None)
        if status is None and hasattr(channel, "_mmio"):
            try:
                status = channel._mmio.read(channel._offset + 4)
            except Exception:  # the register read is only for the message
                status = None
        causes = [text for bit, text in DMA_ERRORS if status is not None and status & bit]
        detail = f" (DMASR {status:#x}: {'; '.join(causes) or 'error bits set'})" if status is not None else ""
        raise DmaError(f"DMA {what} stopped with an error{detail}: the bitstream does not match this "
                       "network's word layout, or the buffer is not DMA memory")

    def _recover(self) -> None:
        """After a failed transfer: stop/reset both DMA channels and drop the buffers they pointed at."""
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            for step in ("stop", "start"):
                fn = getattr(ch, step, None)
                if fn is not None:
                    try:
                        fn()
                    except Exception:  # best effort: the channel is already in a failed state
                        pass
        self.free_buffers()

    def _measure_power(self, fn):
        """(fn(), mean power in W or None); the board overlay overrides this where PMBus exists."""
        return fn(), None

    def _fclk_mhz(self):
        """The PL clock in MHz, or None (the emulation has none); the board overlay reads pynq's Clocks."""
        return None


def _status_message(n: int, status: int) -> str:
    """The accelerator's status register (hls_templates/axi_top.cpp STATUS_*) as one line."""
    causes = "; ".join(text for bit, text in STATUS_BITS if status & bit) or "unknown bits"
    return (f"the accelerator flagged the input stream of {n} images (status {status:#x}: {causes}); "
            "the driver's word layout does not match the bitstream")


def _empty_what(obj) -> str:
    """How an empty input is described: 'an empty list' for [], else its array shape."""
    if isinstance(obj, (list, tuple)):
        return f"an empty {type(obj).__name__}"
    return f"an array of shape {np.shape(obj)}"
