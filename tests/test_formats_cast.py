"""qcourse.formats casting helpers: grids enumerated from bit patterns, casts round to nearest,
and the NF4 code book rebuilt from normal quantiles and compared with bitsandbytes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from qcourse import formats
from qcourse.formats import NF4_CODE, cast, representable_values


@pytest.mark.parametrize("name, exponent_bits, mantissa_bits, nan_patterns", [
    ("FP16", 5, 10, 2 * 2**10),     # IEEE: exponent all ones is inf or NaN
    ("BF16", 8, 7, 2 * 2**7),
    ("FP8 E5M2", 5, 2, 2 * 2**2),
    ("FP8 E4M3", 4, 3, 2),          # "fn": no infinities, only S.1111.111 is NaN
])
def test_float_grids_have_the_right_number_of_values(name, exponent_bits, mantissa_bits,
                                                     nan_patterns):
    values = representable_values(name)
    bits = 1 + exponent_bits + mantissa_bits
    assert len(values) == 2**bits - nan_patterns - 1  # +0 and -0 are one value
    assert torch.all(values[1:] > values[:-1])
    table = {f.name: f for f in formats.format_table()}
    assert values.max().item() == table[name].max_value == -values.min().item()
    bias = 2 ** (exponent_bits - 1) - 1
    smallest_subnormal = 2.0 ** (1 - bias - mantissa_bits)
    assert values[values > 0].min().item() == smallest_subnormal


def test_integer_and_nf4_grids():
    assert representable_values("INT4").tolist() == list(range(-8, 8))
    assert representable_values("int8").tolist() == list(range(-128, 128))
    assert torch.equal(representable_values("NF4"), NF4_CODE)
    with pytest.raises(ValueError, match="too many"):
        representable_values("FP32")


def test_nf4_code_is_built_from_normal_quantiles():
    """QLoRA's construction (bitsandbytes create_normal_map, offset 0.9677083): 8 positive
    quantiles of N(0, 1) between 0.5 and the offset, 7 negative ones, an exact 0, scaled to
    [-1, 1]."""
    offset = 0.9677083
    normal = torch.distributions.Normal(0.0, 1.0)
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    code = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    code = code / code.max()
    assert torch.allclose(NF4_CODE.double(), code, atol=1e-6)
    assert NF4_CODE.dtype == torch.float32 and len(NF4_CODE) == 16


def test_nf4_code_matches_bitsandbytes():
    functional = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(functional.get_4bit_type("nf4", device="cpu").float(), NF4_CODE)


def test_fp16_cast_matches_numpy():
    x = torch.tensor([1 / 3, 0.1, 65504.0, 70000.0, 1e-8, -2.5e-5])
    with np.errstate(over="ignore"):  # 70000 overflows to inf, as it should
        expected = np.array(x.tolist(), dtype=np.float32).astype(np.float16).astype(np.float32)
    assert np.array_equal(cast(x, "FP16").numpy(), expected)
    assert cast(torch.tensor([70000.0]), "fp16").item() == float("inf")


def test_int_casts_by_hand():
    # absmax 3.5 on INT4: scale 3.5 / 7 = 0.5
    x = torch.tensor([0.1, -0.5, 1.2, 3.5])
    assert cast(x, "INT4").tolist() == [0.0, -0.5, 1.0, 3.5]
    # absmax 127 on INT8: scale 1, so integers survive and fractions round
    assert cast(torch.tensor([127.0, -3.4, 0.6]), "INT8").tolist() == [127.0, -3.0, 1.0]


def test_nf4_cast_by_hand():
    x = torch.tensor([-2.0, 0.3, 1.0, 0.0])
    normalized = x / 2.0  # absmax 2
    nearest = NF4_CODE[(normalized[:, None] - NF4_CODE[None, :]).abs().argmin(dim=1)]
    assert torch.allclose(cast(x, "NF4"), nearest * 2.0)
    assert cast(x, "NF4")[0].item() == -2.0 and cast(x, "NF4")[3].item() == 0.0
    assert torch.equal(cast(torch.zeros(3), "NF4"), torch.zeros(3))


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["FP16", "BF16", "FP8 E4M3", "FP8 E5M2", "NF4"]),
       values=st.lists(st.floats(-400, 400, width=32), min_size=1, max_size=20))
def test_cast_lands_on_the_nearest_representable_value(name, values):
    x = torch.tensor(values)
    y = cast(x, name)
    grid = representable_values(name).double()
    scale = 1.0
    if name == "NF4":  # the NF4 grid is scaled by the tensor's absmax
        scale = x.abs().max().item() or 1.0
        grid = grid * scale
    distance = (x.double()[:, None] - grid[None, :]).abs()
    on_grid = (y.double()[:, None] - grid[None, :]).abs().min(dim=1).values
    assert (on_grid <= 1e-6 * scale).all()
    chosen = (x.double() - y.double()).abs()
    assert torch.allclose(chosen, distance.min(dim=1).values, rtol=1e-6, atol=1e-6 * scale)


def test_int8_cast_is_symmetric_per_tensor_quantization():
    from qcourse.quant import fake_quantize

    x = torch.randn(64)
    assert torch.equal(cast(x, "INT8"), fake_quantize(x, 8, symmetric=True, granularity="tensor"))
    assert cast(x, "FP32").dtype == torch.float32


def test_bad_names_and_inputs():
    with pytest.raises(ValueError, match="unknown format 'FP12'"):
        cast(torch.ones(2), "FP12")
    with pytest.raises(TypeError, match="floating"):
        cast(torch.ones(2, dtype=torch.int64), "FP16")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cast(torch.tensor([float("nan")]), "NF4")
    assert formats.canonical_name("fp8_e4m3") == "FP8 E4M3"
