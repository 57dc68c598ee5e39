"""qcourse.pack: exact round trips and the bit layout checked against plain Python integers."""
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st

from qcourse.pack import pack_bytes, pack_int32, unpack_bytes, unpack_int32

RUN_INT32 = {2: 16, 3: 32, 4: 8, 8: 4}   # values per whole number of int32 words
RUN_BYTES = {2: 4, 3: 8, 4: 2, 8: 1}


def reference_pack(values: list[int], bits: int, word_bits: int) -> list[int]:
    """The little-endian bit stream as one Python integer, cut into words: independent of
    qcourse.pack (no tensors, no shifts per word)."""
    stream = sum(v << (j * bits) for j, v in enumerate(values))
    n_words = len(values) * bits // word_bits
    words = [(stream >> (i * word_bits)) & (2**word_bits - 1) for i in range(n_words)]
    if word_bits == 32:  # stored as two's complement int32
        words = [w - 2**32 if w >= 2**31 else w for w in words]
    return words


def test_nibble_order_is_value_zero_in_the_lowest_nibble():
    values = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    # 8 nibbles written from the highest (value 7) to the lowest (value 0)
    assert pack_int32(values, 4).tolist() == [0x87654321 - 2**32]
    assert pack_bytes(values, 4).tolist() == [0x21, 0x43, 0x65, 0x87]
    assert pack_int32(torch.tensor([15, 0, 0, 0, 0, 0, 0, 0]), 4).item() == 15
    assert pack_int32(torch.tensor([0, 0, 0, 0, 0, 0, 0, 15]), 4).item() == -(2**28)


def test_three_bit_values_cross_word_boundaries_like_gptq():
    # value 10 occupies bits 30..32: its low 2 bits end word 0, its high bit starts word 1
    values = [0] * 32
    values[10] = 0b111
    assert pack_int32(torch.tensor(values), 3).tolist() == [-(2**31) + 2**30, 1, 0]
    assert reference_pack(values, 3, 32) == [-(2**31) + 2**30, 1, 0]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_layout_matches_python_integers(bits):
    g = torch.Generator().manual_seed(bits)
    values = torch.randint(0, 2**bits, (5, 4 * RUN_INT32[bits]), generator=g)
    words = pack_int32(values, bits)
    packed = pack_bytes(values, bits)
    for row, word_row, byte_row in zip(values.tolist(), words.tolist(), packed.tolist()):
        assert word_row == reference_pack(row, bits, 32)
        assert byte_row == reference_pack(row, bits, 8)


@pytest.mark.skipif(sys.byteorder != "little", reason="int32 -> bytes view is little-endian")
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_int32_words_and_bytes_are_the_same_stream(bits):
    values = torch.randint(0, 2**bits, (3, 2 * RUN_INT32[bits]))
    assert torch.equal(pack_int32(values, bits).view(torch.uint8), pack_bytes(values, bits))


@st.composite
def packable(draw, runs):
    bits = draw(st.sampled_from([2, 3, 4, 8]))
    ndim = draw(st.integers(1, 3))
    dim = draw(st.integers(-ndim, ndim - 1))
    shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
    shape[dim] = runs[bits] * draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    dtype = draw(st.sampled_from([torch.uint8, torch.int32, torch.int64]))
    values = torch.randint(0, 2**bits, shape, generator=torch.Generator().manual_seed(seed))
    return values.to(dtype), bits, dim


@settings(max_examples=200, deadline=None)
@given(case=packable(RUN_INT32))
def test_int32_round_trip_is_exact(case):
    values, bits, dim = case
    words = pack_int32(values, bits, dim=dim)
    assert words.dtype == torch.int32
    expected_shape = list(values.shape)
    expected_shape[dim] = expected_shape[dim] * bits // 32
    assert list(words.shape) == expected_shape
    out = unpack_int32(words, bits, dim=dim)
    assert out.dtype == torch.uint8 and torch.equal(out, values.to(torch.uint8))


@settings(max_examples=200, deadline=None)
@given(case=packable(RUN_BYTES))
def test_bytes_round_trip_is_exact(case):
    values, bits, dim = case
    packed = pack_bytes(values, bits, dim=dim)
    assert packed.dtype == torch.uint8
    assert packed.shape[dim] == values.shape[dim] * bits // 8
    assert torch.equal(unpack_bytes(packed, bits, dim=dim), values.to(torch.uint8))


def test_packing_along_dim_0_is_packing_the_transpose():
    values = torch.randint(0, 16, (16, 3))
    assert torch.equal(pack_int32(values, 4, dim=0), pack_int32(values.T, 4).T)


def test_extreme_values_survive():
    for bits in (2, 3, 4, 8):
        values = torch.full((RUN_INT32[bits],), 2**bits - 1, dtype=torch.uint8)
        assert pack_int32(values, bits).tolist() == [-1] * (bits * RUN_INT32[bits] // 32)
        assert torch.equal(unpack_int32(pack_int32(values, bits), bits), values.to(torch.uint8))


def test_bad_input():
    with pytest.raises(ValueError, match=r"bits must be one of \(2, 3, 4, 8\) to be stored packed, got 5"):
        pack_int32(torch.zeros(32, dtype=torch.long), 5)
    with pytest.raises(ValueError, match=r"\[0, 15\].*max 16"):
        pack_int32(torch.tensor([16, 0, 0, 0, 0, 0, 0, 0]), 4)
    with pytest.raises(ValueError, match="min -1.*shift signed values by 8"):
        pack_bytes(torch.tensor([-1, 0]), 4)
    with pytest.raises(ValueError, match="12, not a multiple of 8"):
        pack_int32(torch.zeros(12, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="not a multiple of 32"):
        pack_int32(torch.zeros(16, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="integer tensor"):
        pack_int32(torch.zeros(8), 4)
    with pytest.raises(TypeError, match="int32"):
        unpack_int32(torch.zeros(2, dtype=torch.int64), 4)
    with pytest.raises(TypeError, match="uint8"):
        unpack_bytes(torch.zeros(2, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        unpack_int32(torch.zeros(4, dtype=torch.int32), 3)
