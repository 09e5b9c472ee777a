"""The DMA word layout: the ONE definition, used by the driver, the tests and (mirrored as constants
generated from it) the C++ AXI wrapper.

Per image, values are taken in the network's flat order (NHWC -> H, W, C) and placed in lanes of
`lane_bits` (the value width rounded up to a power of two, so no lane straddles a word) inside
`word_bits`-wide little-endian words: value k of an image sits in word k // lanes, bits
[(k % lanes) * lane_bits, (k % lanes + 1) * lane_bits). Signed values are stored two's complement
at lane width. Every image starts on a fresh word (the last word of an image is zero-padded), so a
batch is simply images * words_per_image words. In memory (ARM and x86 are little-endian) lane 0
is the lowest-addressed byte, which is the order the AXI DMA streams bytes onto TDATA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.driver.errors import InputError

DEFAULT_WORD_BITS = 64


def lane_bits_for(value_bits: int) -> int:
    """Smallest power of two >= value_bits (1, 2, 4, 8, 16, 32)."""
    if not 1 <= value_bits <= 32:
        raise InputError(f"value width {value_bits} bits cannot be packed (1..32 supported)")
    lane = 1
    while lane < value_bits:
        lane *= 2
    return lane


@dataclass(frozen=True)
class Layout:
    """How `values` integers of one image are packed into DMA words."""

    values: int          # integers per image
    value_bits: int      # meaningful width of each value
    signed: bool
    word_bits: int = DEFAULT_WORD_BITS

    def __post_init__(self):
        if self.word_bits not in (32, 64, 128, 256, 512):
            raise InputError(f"DMA word width {self.word_bits} is not one of 32, 64, 128, 256, 512 bits")
        if self.values < 1:
            raise InputError(f"a packed image needs at least one value, got {self.values}")

    @property
    def lane_bits(self) -> int:
        return lane_bits_for(self.value_bits)

    @property
    def lanes(self) -> int:
        return self.word_bits // self.lane_bits

    @property
    def words(self) -> int:
        """Words per image (the last one zero-padded)."""
        return -(-self.values // self.lanes)

    @property
    def u64_per_word(self) -> int:
        return self.word_bits // 64 if self.word_bits >= 64 else 1

    @property
    def bytes_per_image(self) -> int:
        return self.words * self.word_bits // 8

    @property
    def lo(self) -> int:
        return -(1 << (self.value_bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.value_bits - 1)) - 1 if self.signed else (1 << self.value_bits) - 1

    def as_dict(self) -> dict:
        return {"values": self.values, "value_bits": self.value_bits, "signed": self.signed,
                "word_bits": self.word_bits, "lane_bits": self.lane_bits, "lanes": self.lanes,
                "words": self.words}


def pack(values: np.ndarray, layout: Layout) -> np.ndarray:
    """(N, ...) integers -> (N, bytes_per_image) uint8, the exact bytes the DMA sends.

    View the result as uint64 (`.view(np.uint64)`) for 64-bit words; the byte form serves every word width."""
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer):
        raise InputError(f"packing needs integers, got {v.dtype}")
    if v.ndim < 1:
        raise InputError("packing needs a batch axis: (N, ...) integers")
    n, per_image = v.shape[0], int(np.prod(v.shape[1:]))
    if per_image != layout.values:
        raise InputError(f"each image must have {layout.values} values to pack, got {per_image}")
    v = v.reshape(n, layout.values).astype(np.int64)
    if v.size and (v.min() < layout.lo or v.max() > layout.hi):
        raise InputError(f"values outside the {layout.value_bits}-bit {'signed' if layout.signed else 'unsigned'} "
                         f"range [{layout.lo}, {layout.hi}]: found [{v.min()}, {v.max()}]")
    lb, total = layout.lane_bits, layout.words * layout.lanes
    lanes = np.zeros((n, total), np.uint64)
    lanes[:, :layout.values] = (v & ((1 << lb) - 1)).astype(np.uint64)   # two's complement at lane width
    if lb >= 8:
        out = lanes.astype({8: np.uint8, 16: "<u2", 32: "<u4"}[lb]).view(np.uint8)
        return np.ascontiguousarray(out.reshape(n, layout.bytes_per_image))
    per_byte = 8 // lb
    grouped = lanes.reshape(n, layout.bytes_per_image, per_byte)
    shifts = (np.arange(per_byte, dtype=np.uint64) * np.uint64(lb))
    return (grouped << shifts).sum(axis=2).astype(np.uint8).reshape(n, layout.bytes_per_image)


def unpack(data: np.ndarray, layout: Layout, n_images: int | None = None) -> np.ndarray:
    """Bytes/words received from the DMA -> (N, values) int64 (sign-extended when signed)."""
    raw = np.ascontiguousarray(np.asarray(data)).view(np.uint8).reshape(-1)
    if n_images is None:
        n_images = raw.size // layout.bytes_per_image
    need = n_images * layout.bytes_per_image
    if raw.size < need:
        raise InputError(f"{raw.size} bytes cannot hold {n_images} images of {layout.bytes_per_image} bytes")
    raw = raw[:need].reshape(n_images, layout.bytes_per_image)
    lb = layout.lane_bits
    if lb >= 8:
        lanes = raw.view({8: np.uint8, 16: "<u2", 32: "<u4"}[lb]).astype(np.int64)
    else:
        per_byte = 8 // lb
        shifts = np.arange(per_byte, dtype=np.uint8) * np.uint8(lb)
        lanes = ((raw[:, :, None] >> shifts) & np.uint8((1 << lb) - 1)).reshape(n_images, layout.words * layout.lanes).astype(np.int64)
    lanes = lanes[:, :layout.values]
    if layout.signed:
        lanes = np.where(lanes >= (1 << (lb - 1)), lanes - (1 << lb), lanes)
    return lanes


def input_layout(qnet, word_bits: int = DEFAULT_WORD_BITS) -> Layout:
    spec = qnet.tensors[qnet.input]
    return Layout(int(np.prod(spec.shape)), int(spec.bits), bool(spec.signed), word_bits)


def output_layout(qnet, word_bits: int = DEFAULT_WORD_BITS) -> Layout:
    """Logits lanes are at least 8 bits wide (byte-addressable for the board's CPU)."""
    spec = qnet.output_spec
    return Layout(int(np.prod(spec.shape)), max(8, int(spec.bits)), bool(spec.signed), word_bits)
