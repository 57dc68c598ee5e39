"""Properties of qcourse.gguf.quantize/dequantize that hold without llama.cpp at hand.

(Byte-for-byte equality with llama.cpp is in test_gguf_bitexact.py.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcourse.gguf import BLOCK_SIZE, QTYPES, TYPE_SIZE, dequantize, quantize
from qcourse.gguf.quants import IMPORTANCE_TYPES, bits_per_weight

# Block layouts as llama.cpp's ggml-common.h declares them: (weights per block, field sizes in
# bytes). Written out here independently of the package, field by field.
LAYOUTS = {
    "F32": (1, [4]),
    "F16": (1, [2]),
    "BF16": (1, [2]),
    "Q8_0": (32, [2, 32]),                 # d, qs[32]
    "Q4_0": (32, [2, 16]),                 # d, qs[16]
    "Q4_1": (32, [2, 2, 16]),              # d, m, qs[16]
    "Q5_0": (32, [2, 4, 16]),              # d, qh[4], qs[16]
    "Q5_1": (32, [2, 2, 4, 16]),           # d, m, qh[4], qs[16]
    "Q2_K": (256, [16, 64, 2, 2]),         # scales[16], qs[64], d, dmin
    "Q3_K": (256, [32, 64, 12, 2]),        # hmask[32], qs[64], scales[12], d
    "Q4_K": (256, [2, 2, 12, 128]),        # d, dmin, scales[12], qs[128]
    "Q5_K": (256, [2, 2, 12, 32, 128]),    # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": (256, [128, 64, 16, 2]),       # ql[128], qh[64], scales[16], d
}
# The bits per weight llama.cpp documents in ggml-common.h's comments ("Effectively 4.5 bits per
# weight") and in its quantize tool's type list.
DOCUMENTED_BPW = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q4_0": 4.5, "Q4_1": 5.0,
                  "Q5_0": 5.5, "Q5_1": 6.0, "Q2_K": 2.625, "Q3_K": 3.4375, "Q4_K": 4.5,
                  "Q5_K": 5.5, "Q6_K": 6.5625}
BITS = {"Q8_0": 8, "Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q2_K": 2, "Q3_K": 3, "Q4_K": 4,
        "Q5_K": 5, "Q6_K": 6}
QUANTIZED = tuple(BITS)

def _f32(v: float) -> float:
    """The float32 nearest to v (hypothesis wants float32-exact bounds)."""
    return float(np.float32(v))


FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rows(qtype: str, max_rows: int = 3, max_blocks: int = 2, elements=None):
    """Strategy: float32 arrays [rows, blocks · BLOCK_SIZE] (rows along the last axis)."""
    if elements is None:
        elements = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_blocks)).map(
        lambda s: (s[0], s[1] * max(BLOCK_SIZE[qtype], 32)))
    return shapes.flatmap(lambda shape: hnp.arrays(np.float32, shape, elements=elements))


# --- sizes and layouts --------------------------------------------------------------------------

def test_qtypes_are_llama_cpp_names():
    assert QTYPES == ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                      "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
    assert set(IMPORTANCE_TYPES) == {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
                                     "Q5_K", "Q6_K"}


@pytest.mark.parametrize("qtype", QTYPES)
def test_sizes_follow_the_block_layout(qtype):
    block, fields = LAYOUTS[qtype]
    assert BLOCK_SIZE[qtype] == block
    assert TYPE_SIZE[qtype] == sum(fields)
    assert bits_per_weight(qtype) == 8 * sum(fields) / block == DOCUMENTED_BPW[qtype]


def test_sizes_agree_with_gguf_py():
    gguf = pytest.importorskip("gguf")
    for qtype in QTYPES:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
        assert (BLOCK_SIZE[qtype], TYPE_SIZE[qtype]) == (block, size), qtype


@pytest.mark.parametrize("qtype", QTYPES)
@FAST
@given(data=st.data())
def test_output_shape_and_round_trip_shape(qtype, data):
    lead = data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=2), label="leading dims")
    nblocks = data.draw(st.integers(1, 3), label="blocks per row")
    n = nblocks * BLOCK_SIZE[qtype] * (32 if BLOCK_SIZE[qtype] == 1 else 1)
    a = np.random.default_rng(0).standard_normal((*lead, n)).astype(np.float32)
    b = quantize(a, qtype)
    assert b.dtype == np.uint8
    assert b.shape == (*lead, n // BLOCK_SIZE[qtype] * TYPE_SIZE[qtype])
    y = dequantize(b, qtype, a.shape)
    assert y.shape == a.shape and y.dtype == np.float32
    assert np.array_equal(dequantize(b.ravel(), qtype, a.shape), y)  # any layout of the bytes


# --- reading the bytes by hand, from the documented layout --------------------------------------

def test_q8_0_block_by_hand():
    x = np.linspace(-2.0, 1.0, 32, dtype=np.float32)
    block = quantize(x, "Q8_0")
    d = block[0:2].view("<f2")[0]
    q = block[2:34].view(np.int8)
    assert d == np.float16(2.0 / 127)            # d = max|x| / 127, stored as fp16
    assert q[0] == -127 and np.abs(q - x / (2.0 / 127)).max() <= 0.5 + 1e-4  # q = round(x / d)
    assert np.array_equal(dequantize(block, "Q8_0", (32,)), q.astype(np.float32) * np.float32(d))


def test_q4_0_block_by_hand():
    x = np.zeros(32, dtype=np.float32)
    x[0], x[1], x[17] = -8.0, 3.0, 7.0           # max (signed absmax) = -8 -> d = -8 / -8 = 1
    block = quantize(x, "Q4_0")
    assert block[0:2].view("<f2")[0] == 1.0
    nibbles = np.concatenate([block[2:] & 0xF, block[2:] >> 4])  # low: values 0-15, high: 16-31
    assert nibbles[0] == 0 and nibbles[1] == 11 and nibbles[17] == 15 and nibbles[5] == 8
    assert np.array_equal(dequantize(block, "Q4_0", (32,)), x)


def test_q4_k_header_by_hand():
    x = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    block = quantize(x, "Q4_K")
    d, dmin = block[0:2].view("<f2")[0], block[2:4].view("<f2")[0]
    head, tail = block[4:12].astype(int), block[12:16].astype(int)
    sc = np.concatenate([head[:4] & 63, (tail & 0xF) | ((head[:4] >> 6) << 4)])  # 8 6-bit scales
    m = np.concatenate([head[4:] & 63, (tail >> 4) | ((head[4:] >> 6) << 4)])    # 8 6-bit mins
    assert sc.max() == 63                         # the largest sub-block scale sets d = max / 63
    nibbles = np.stack([block[16 + 32 * c:48 + 32 * c] for c in range(4)])  # 4 groups of 32 bytes
    q = np.stack([nibbles & 0xF, nibbles >> 4], axis=1).reshape(8, 32)     # sub-blocks 0..7
    expected = (np.float32(d) * sc[:, None].astype(np.float32)) * q.astype(np.float32) \
        - (np.float32(dmin) * m[:, None].astype(np.float32))
    assert np.array_equal(dequantize(block, "Q4_K", (256,)), expected.reshape(256))


# --- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", QUANTIZED)
@FAST
@given(data=st.data())
def test_round_trip_error_bounded_by_block_scale(qtype, data):
    """Without importance: |x - x'| <= 1.01 · max|x| / 2^(bits-1) per block (the step of a
    symmetric grid over the block, + fp16 rounding of the scales; the absolute 2^-12 covers
    fp16's resolution for the scales of tiny blocks).

    With importance the search minimises Σ_j w_j (x_j - x'_j)², so a column with a small weight
    can be sacrificed: hypothesis found a Q4_K block of -818s with one 747 of weight 0.25 among
    weights of 20, where llama.cpp (and we, byte for byte) leave an error of 222.6, twice the
    step. What still holds: the reconstruction stays on a grid no wider than about 1.5·max|x|
    (the candidate scales divide max|x| by at least nmax - 0.9), so |x - x'| <= 2.5 · max|x|."""
    a = data.draw(_rows(qtype), label="a")
    imp = data.draw(st.none() | hnp.arrays(np.float32, a.shape[1],
                                           elements=st.floats(_f32(0.01), 100, width=32)),
                    label="importance")
    y = dequantize(quantize(a, qtype, imp), qtype, a.shape)
    blocks, errors = a.reshape(-1, BLOCK_SIZE[qtype]), np.abs(y - a).reshape(-1, BLOCK_SIZE[qtype])
    absmax = np.abs(blocks).max(axis=1)
    bound = 1.01 * absmax / 2 ** (BITS[qtype] - 1) if imp is None else 2.5 * absmax
    assert (errors.max(axis=1) <= bound + 2.0**-12).all()


def test_importance_can_sacrifice_a_column_as_llama_cpp_does():
    """The case hypothesis found: a low-importance outlier is left far from its value."""
    a = np.full((1, 256), -818, np.float32)
    a[0, 0], a[0, 16] = -877, 747
    importance = np.full(256, 20, np.float32)
    importance[16] = 0.25
    plain = np.abs(dequantize(quantize(a, "Q4_K"), "Q4_K", a.shape) - a)
    weighted = np.abs(dequantize(quantize(a, "Q4_K", importance), "Q4_K", a.shape) - a)
    assert weighted[0, 16] > 2 * 877 / 8 and weighted[0, 16] > plain[0, 16]
    assert (importance * weighted**2).sum() < (importance * plain**2).sum()


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16"])
@FAST
@given(data=st.data())
def test_float_types_match_torch_casts(qtype, data):
    a = data.draw(_rows(qtype, elements=st.floats(-6e4, 6e4, width=32)), label="a")
    y = dequantize(quantize(a, qtype), qtype, a.shape)
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[qtype]
    expected = torch.from_numpy(a).to(torch_dtype).float().numpy()   # round to nearest even
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("qtype", QUANTIZED)
def test_zeros_stay_zeros(qtype):
    a = np.zeros((2, 512), dtype=np.float32)
    for imp in (None, np.ones(512, dtype=np.float32)):
        assert not dequantize(quantize(a, qtype, imp), qtype, a.shape).any()


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0", "Q4_1", "Q5_1", "Q3_K", "BF16"])
@FAST
@given(data=st.data())
def test_power_of_two_scaling_commutes(qtype, data):
    """All arithmetic is relative to the block's own range, so scaling the input by 2^k scales the
    decoded output by exactly 2^k (while every fp16 scale stays a normal number)."""
    elements = st.sampled_from([0.0]) | st.floats(_f32(0.05), 100, width=32) \
        | st.floats(-100, _f32(-0.05), width=32)
    a = data.draw(_rows(qtype, elements=elements), label="a")
    blocks = a.reshape(-1, BLOCK_SIZE[qtype] if BLOCK_SIZE[qtype] > 1 else 32)
    blocks[:, 0] = np.where(np.abs(blocks[:, 0]) < 4, 4, blocks[:, 0])  # every block has range
    k = data.draw(st.integers(-2, 3), label="k")
    scale = np.float32(2.0**k)
    base = dequantize(quantize(a, qtype), qtype, a.shape)
    assert np.array_equal(dequantize(quantize(a * scale, qtype), qtype, a.shape), base * scale)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_K", "Q6_K"])
def test_rows_are_independent_and_chunking_is_invisible(qtype):
    """Each row is quantized on its own (importance is per column), so quantizing rows one at a
    time, or more rows than one internal chunk holds, gives the same bytes."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1100, 256)).astype(np.float32)  # 281,600 values: two chunks
    imp = rng.random(256).astype(np.float32)
    whole = quantize(a, qtype, imp)
    for i in (0, 1, 1023, 1024, 1099):
        assert np.array_equal(quantize(a[i], qtype, imp), whole[i])
    assert np.array_equal(quantize(a.reshape(2, 550, 256), qtype, imp).reshape(whole.shape), whole)


def test_importance_is_used_where_llama_cpp_uses_it():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 256)).astype(np.float32)
    imp = rng.random(256).astype(np.float32)
    for qtype in QTYPES:
        changed = not np.array_equal(quantize(a, qtype), quantize(a, qtype, imp))
        assert changed == (qtype in IMPORTANCE_TYPES), qtype


def test_importance_lowers_the_weighted_error():
    """The point of an imatrix: columns with large importance are reproduced more closely."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 256)).astype(np.float32)
    imp = np.where(np.arange(256) % 4 == 0, 100.0, 0.01).astype(np.float32)
    for qtype in ("Q4_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K"):
        def weighted_error(importance):
            y = dequantize(quantize(a, qtype, importance), qtype, a.shape)
            return float(((y - a) ** 2 * imp).sum())
        assert weighted_error(imp) < weighted_error(None), qtype


def test_float64_and_views_are_converted():
    a64 = np.random.default_rng(0).standard_normal((3, 64))
    assert np.array_equal(quantize(a64, "Q4_1"), quantize(a64.astype(np.float32), "Q4_1"))
    wide = np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32)
    assert np.array_equal(quantize(wide.T, "Q8_0"), quantize(np.ascontiguousarray(wide.T), "Q8_0"))


def test_gguf_py_dequantizes_our_bytes_identically():
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize as gguf_dequantize
    a = np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)
    for qtype in QTYPES:
        b = quantize(a, qtype)
        theirs = gguf_dequantize(b, gguf.GGMLQuantizationType[qtype]).reshape(a.shape)
        assert np.array_equal(dequantize(b, qtype, a.shape), theirs), qtype


def test_gguf_py_quantizers_give_the_same_bytes():
    """gguf-py has numpy quantizers for the legacy types (not for K-quants)."""
    gguf = pytest.importorskip("gguf")
    from gguf.quants import quantize as gguf_quantize
    a = np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)
    for qtype in ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        theirs = gguf_quantize(a, gguf.GGMLQuantizationType[qtype]).view(np.uint8)
        assert np.array_equal(quantize(a, qtype), theirs.reshape(4, -1)), qtype


# --- bad input ----------------------------------------------------------------------------------

def test_unknown_qtype_lists_the_supported_ones():
    a = np.zeros((1, 256), dtype=np.float32)
    with pytest.raises(ValueError, match="Q4_K, Q5_K, Q6_K"):
        quantize(a, "Q4_K_M")
    with pytest.raises(ValueError, match="Q4_K, Q5_K, Q6_K"):
        dequantize(np.zeros(144, np.uint8), "q4_k", (256,))


@pytest.mark.parametrize("qtype,n", [("Q8_0", 48), ("Q4_K", 128), ("Q6_K", 300), ("Q4_0", 0)])
def test_row_length_must_be_a_multiple_of_the_block(qtype, n):
    with pytest.raises(ValueError, match=f"multiple of {BLOCK_SIZE[qtype]}"):
        quantize(np.ones((2, n), dtype=np.float32), qtype)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(bad):
    a = np.ones((2, 256), dtype=np.float32)
    a[1, 7] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize(a, "Q4_K")
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize(np.full(32, 1e39), "Q8_0")  # finite float64, Inf once in float32


@pytest.mark.parametrize("a", [np.ones((2, 32), dtype=np.int32), np.ones((2, 32), dtype=bool),
                               [[1, 2] * 16]])
def test_non_float_input_is_a_type_error(a):
    with pytest.raises(TypeError, match="floating-point"):
        quantize(a, "Q8_0")


def test_scalar_input_is_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        quantize(np.float32(1.0), "F32")


@pytest.mark.parametrize("imp,error,match", [
    (np.ones(128, dtype=np.float32), ValueError, r"shape \(256,\)"),
    (np.ones((1, 256), dtype=np.float32), ValueError, r"shape \(256,\)"),
    (-np.ones(256, dtype=np.float32), ValueError, "non-negative"),
    (np.full(256, np.nan, dtype=np.float32), ValueError, "NaN"),
    (np.ones(256, dtype=np.int64), TypeError, "floating-point"),
])
def test_bad_importance_is_rejected(imp, error, match):
    with pytest.raises(error, match=match):
        quantize(np.ones((2, 256), dtype=np.float32), "Q4_K", imp)


def test_dequantize_checks_the_byte_count_and_dtype():
    b = quantize(np.ones((2, 256), dtype=np.float32), "Q4_K")
    with pytest.raises(ValueError, match="288 bytes"):
        dequantize(b[:, :-1], "Q4_K", (2, 256))
    with pytest.raises(ValueError, match="bytes"):
        dequantize(b, "Q4_K", (3, 256))
    with pytest.raises(ValueError, match="multiple of 256"):
        dequantize(b, "Q4_K", (4, 128))
    with pytest.raises(TypeError, match="uint8"):
        dequantize(b.astype(np.int16), "Q4_K", (2, 256))


def test_importance_weights_carry_llama_cpps_sqrt_factor():
    """w = imatrix · sqrt(σ² + x²), σ² = factor · mean x² over the super-block (ggml-quants.c's
    quantize_row_q*_K_impl); a value twice as large in a column of equal importance weighs more."""
    from qcourse.gguf.kquants import importance_weights

    x = np.zeros((1, 256), dtype=np.float32)
    x[0, :4] = [1.0, 2.0, -2.0, 0.0]
    imp = np.ones(256, dtype=np.float32)
    imp[3] = 4.0
    sigma2 = 2 * (1 + 4 + 4) / 256
    w = importance_weights(x, imp, sigma2_factor=2)
    np.testing.assert_allclose(w[0, :4], [np.sqrt(sigma2 + 1), np.sqrt(sigma2 + 4),
                                          np.sqrt(sigma2 + 4), 4 * np.sqrt(sigma2)], rtol=1e-6)
    assert w[0, 1] > w[0, 0]                                    # |x| counts, not only imatrix
    two_rows = importance_weights(np.tile(x, (2, 1)), imp, sigma2_factor=1)
    np.testing.assert_allclose(two_rows[1, 0], np.sqrt(sigma2 / 2 + 1), rtol=1e-6)
    with pytest.raises(ValueError, match="sigma2_factor"):
        importance_weights(x, imp, sigma2_factor=3)
    with pytest.raises(ValueError, match="super-blocks"):
        importance_weights(x.reshape(2, 128), imp, sigma2_factor=2)
