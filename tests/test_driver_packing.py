"""The DMA word layout (flow.driver.packing): round trips, byte order, range errors."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flow.driver.errors import InputError
from flow.driver.packing import Layout, lane_bits_for, pack, unpack
from flow.errors import AdderFlowError


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 32), signed=st.booleans(), word_bits=st.sampled_from([32, 64, 128]),
       values=st.integers(1, 40), n=st.integers(0, 4), seed=st.integers(0, 2**31))
def test_pack_unpack_round_trip(bits, signed, word_bits, values, n, seed):
    if signed and bits == 1:
        bits = 2
    layout = Layout(values, bits, signed, word_bits)
    rng = np.random.default_rng(seed)
    x = rng.integers(layout.lo, layout.hi, size=(n, values), endpoint=True)
    data = pack(x, layout)
    assert data.dtype == np.uint8 and data.shape == (n, layout.bytes_per_image)
    assert layout.bytes_per_image * 8 == layout.words * word_bits      # every image on whole words
    np.testing.assert_array_equal(unpack(data, layout, n), x)


def test_lane_order_is_little_endian_from_lane_zero():
    layout = Layout(values=10, value_bits=8, signed=True, word_bits=64)
    words = pack(np.arange(-5, 5).reshape(1, 10), layout).view("<u8")
    assert layout.words == 2 and words.shape == (1, 2)
    assert int(words[0, 0]) & 0xFF == (-5) & 0xFF                     # value 0 in the lowest byte of word 0
    assert (int(words[0, 0]) >> 56) & 0xFF == 2                     # value 7 in the top byte
    assert int(words[0, 1]) == (4 << 8) | 3                        # values 8, 9 then zero padding


def test_four_bit_lanes_pack_sixteen_per_word():
    layout = Layout(values=16, value_bits=4, signed=False, word_bits=64)
    assert (layout.lane_bits, layout.lanes, layout.words) == (4, 16, 1)
    w = int(pack(np.arange(16).reshape(1, 16), layout).view("<u8")[0, 0])
    assert [(w >> (4 * k)) & 0xF for k in range(16)] == list(range(16))


def test_out_of_range_and_non_integer_values_are_clear_errors():
    layout = Layout(4, 8, True)
    with pytest.raises(InputError, match=r"outside the 8-bit signed range \[-128, 127\]"):
        pack(np.array([[0, 1, 2, 128]]), layout)
    with pytest.raises(AdderFlowError, match="integers"):
        pack(np.zeros((1, 4), np.float32), layout)
    with pytest.raises(InputError, match="4 values"):
        pack(np.zeros((1, 5), np.int64), layout)
    with pytest.raises(InputError, match="1..32"):
        lane_bits_for(33)
