import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qcourse.eval import model_size_bytes
from qcourse.layers import QuantLinear
from qcourse.quant import dequantize, quantize


def make_linear(n=64, k=256, bias=True, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    linear.weight.data = torch.randn(n, k) * 0.05
    return linear


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 32, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_weight_is_the_rtn_weight_with_fp16_scales(bits, group_size, symmetric):
    linear = make_linear()
    layer = QuantLinear.from_float(linear, bits, group_size, symmetric=symmetric)
    g = group_size or 256
    q, scale, zero = quantize(linear.weight.detach(), bits, symmetric=symmetric,
                              granularity="group", group_size=g)
    # the layer stores scales in fp16; with the same integers the result is exact
    expected = dequantize(q, scale.half().float(), zero, group_size=g)
    assert torch.equal(layer.weight(), expected)
    # and within fp16 rounding of the fp32 round trip
    fp32 = dequantize(q, scale, zero, group_size=g)
    assert torch.allclose(layer.weight(), fp32, rtol=1e-3, atol=1e-7)


def test_buffers_follow_the_gptq_layout():
    linear = make_linear(n=64, k=256)
    layer = QuantLinear.from_float(linear, 4, 128)
    assert layer.qweight.dtype == torch.int32 and layer.qweight.shape == (256 * 4 // 32, 64)
    assert layer.qzeros.dtype == torch.int32 and layer.qzeros.shape == (2, 64 * 4 // 32)
    assert layer.scales.dtype == torch.float16 and layer.scales.shape == (2, 64)
    assert layer.g_idx.dtype == torch.int32 and torch.equal(layer.g_idx.long(),
                                                            torch.arange(256) // 128)
    q, scale, zero = quantize(linear.weight.detach(), 4, symmetric=False, granularity="group",
                              group_size=128)
    # word 0 of column n holds inputs 0..7 of output n, input 0 in the lowest nibble
    words = layer.qweight[0].long() & 0xFFFFFFFF
    for j in range(8):
        assert torch.equal((words >> (4 * j)) & 0xF, q[:, j].long())
    # zero points packed along the output dimension: word 0 of group 0 holds outputs 0..7
    zwords = layer.qzeros[0, 0].long() & 0xFFFFFFFF
    assert [(zwords.item() >> (4 * j)) & 0xF for j in range(8)] == zero[:8, 0].long().tolist()


def test_symmetric_is_stored_unsigned_with_midpoint_zero():
    layer = QuantLinear.from_float(make_linear(), 4, 64, symmetric=True)
    q, zero = layer.integers()
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert torch.all(zero == 8)


@pytest.mark.parametrize("bits,group_size,bias", [(4, 128, True), (3, None, False),
                                                  (2, 32, True), (8, 64, False)])
def test_size_in_bytes_matches_the_formula(bits, group_size, bias):
    n, k = 128, 256
    layer = QuantLinear.from_float(make_linear(n, k, bias=bias), bits, group_size)
    g = group_size or k
    expected = (bits * n * k // 8            # packed weights
                + bits * n * (k // g) // 8    # packed zero points
                + 2 * n * (k // g)            # fp16 scales
                + 4 * k                       # int32 g_idx
                + (4 * n if bias else 0))     # fp32 bias
    assert model_size_bytes(layer) == expected


def test_forward_is_a_linear_with_the_dequantized_weight():
    linear = make_linear()
    layer = QuantLinear.from_float(linear, 4, 64)
    x = torch.randn(2, 5, 256)
    assert torch.allclose(layer(x), F.linear(x, layer.weight(), linear.bias), atol=1e-6)
    assert layer(x.double()).dtype == torch.float64
    # 8-bit is close to the float layer, 2-bit is not
    y = linear(x).detach()
    error = {bits: ((QuantLinear.from_float(linear, bits, 64)(x) - y).norm() / y.norm()).item()
             for bits in (2, 8)}
    assert error[8] < 0.01 < 0.2 < error[2]


def test_from_quantized_with_act_order_g_idx():
    torch.manual_seed(0)
    n, k, g = 32, 64, 16
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    scale = torch.rand(n, k // g) + 0.5
    zero = torch.randint(0, 16, (n, k // g)).float()
    g_idx = torch.randperm(k) // g  # columns visited in a permuted order
    layer = QuantLinear.from_quantized(q, scale, zero, 4, g, g_idx=g_idx)
    expected = (q.float() - zero[:, g_idx]) * scale.half().float()[:, g_idx]
    assert torch.equal(layer.weight(), expected)


@settings(max_examples=25, deadline=None)
@given(bits=st.sampled_from([2, 3, 4, 8]), groups=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**16))
def test_integers_round_trip(bits, groups, seed):
    generator = torch.Generator().manual_seed(seed)
    n, k = 32, 128
    q = torch.randint(0, 2**bits, (n, k), generator=generator, dtype=torch.uint8)
    zero = torch.randint(0, 2**bits, (n, groups), generator=generator).float()
    layer = QuantLinear.from_quantized(q, torch.ones(n, groups), zero, bits, k // groups)
    got_q, got_zero = layer.integers()
    assert torch.equal(got_q, q) and torch.equal(got_zero.float(), zero)


def test_repr_shows_bits_and_group():
    text = repr(QuantLinear.from_float(make_linear(), 3, 128))
    assert "bits=3" in text and "group_size=128" in text
    assert "per-channel" in repr(QuantLinear.from_float(make_linear(), 4, None))


def test_bad_inputs():
    linear = make_linear()
    with pytest.raises(ValueError, match="bits"):
        QuantLinear.from_float(linear, 5, 128)
    with pytest.raises(ValueError, match="does not divide"):
        QuantLinear.from_float(linear, 4, 100)
    with pytest.raises(ValueError, match="multiple of 32"):
        QuantLinear.from_float(make_linear(n=48), 3, 128)  # 48 outputs: not packable at 3 bits
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantLinear.from_float(torch.randn(4, 4), 4, None)
    q = torch.zeros(64, 256, dtype=torch.uint8)
    with pytest.raises(ValueError, match="shape"):
        QuantLinear.from_quantized(q, torch.ones(64, 3), torch.zeros(64, 3), 4, 128)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        QuantLinear.from_quantized(q + 16, torch.ones(64, 2), torch.zeros(64, 2), 4, 128)
    with pytest.raises(TypeError, match="integers"):
        QuantLinear.from_quantized(q.float(), torch.ones(64, 2), torch.zeros(64, 2), 4, 128)
    with pytest.raises(ValueError, match="NaN"):
        QuantLinear.from_quantized(q, torch.full((64, 2), float("nan")), torch.zeros(64, 2), 4, 128)
    nan_linear = make_linear()
    nan_linear.weight.data[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        QuantLinear.from_float(nan_linear, 4, 128)
