"""FP8, MX and NVFP4 from scratch: the element codecs against torch's casts, hand-computed cases,
properties of the block formats, packing, bad input; slow: bit-exactness against torchao 0.18
(MXTensor, NVFP4Tensor, Float8Tensor) and W8A8-FP8 on qcourse-tiny."""
import copy
import functools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from qcourse import formats, mx
from qcourse.mx import E2M1, E2M3, E3M2, E4M3, E5M2

TORCH_FP8 = {"E4M3": torch.float8_e4m3fn, "E5M2": torch.float8_e5m2}
MX_FORMATS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4"]


def all_patterns(dtype: torch.dtype) -> torch.Tensor:
    """Every 16-bit pattern of ``dtype`` (bfloat16 or float16) as float32: all signs, exponents,
    subnormals, infinities and NaNs."""
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype).float()


def torch_saturates_e4m3() -> bool:
    """Whether this torch's cast to float8_e4m3fn saturates overflow (since PyTorch PR #178817,
    April 2026) or returns NaN (earlier releases): the OCP spec allows both."""
    return not torch.tensor([1000.0]).to(torch.float8_e4m3fn).float().isnan().item()


def torch_mode(spec) -> dict:
    """The ``saturate`` argument that makes ``mx.encode`` convert as this torch does."""
    return {"saturate": torch_saturates_e4m3()} if spec is E4M3 else {}


def wide_range(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen) * torch.exp2(torch.randint(-40, 40, (n,), generator=gen).float())


# ---------------------------------------------------------------------------- element formats

def test_element_tables_are_the_spec_values():
    # OCP MX v1.0, tables of FP4 E2M1, FP6 E2M3 / E3M2 (positive half)
    assert E2M1.values()[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert E2M3.values()[:32].tolist()[-4:] == [6.0, 6.5, 7.0, 7.5]
    assert E2M3.values()[1].item() == 0.125                     # smallest subnormal 2^0 · 1/8
    assert E3M2.values()[1].item() == 0.0625 and E3M2.max == 28.0
    assert (E4M3.max, E5M2.max) == (448.0, 57344.0)
    assert E2M1.values()[8].item() == 0.0 and math.copysign(1, E2M1.values()[8].item()) == -1


@pytest.mark.parametrize("spec", [E4M3, E5M2], ids=lambda s: s.name)
def test_fp8_decode_table_equals_torch_dtype(spec):
    theirs = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(TORCH_FP8[spec.name]).float()
    ours = spec.values()
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours[~ours.isnan()], theirs[~theirs.isnan()])
    finite = torch.unique(ours[torch.isfinite(ours)])
    assert torch.equal(finite, formats.representable_values(f"FP8 {spec.name}"))


@pytest.mark.parametrize("spec", [E4M3, E5M2], ids=lambda s: s.name)
@pytest.mark.parametrize("source", ["bfloat16", "float16", "random"])
def test_fp8_encode_is_bit_exact_with_torch_cast(spec, source):
    """Every bf16 and fp16 bit pattern (subnormals, overflow, ±inf, NaN) and a million random
    float32 over 80 binades: our codes equal the bytes of torch's cast."""
    x = wide_range(1_000_000, 0) if source == "random" else all_patterns(getattr(torch, source))
    ours = mx.encode(x, spec, **torch_mode(spec))
    theirs = x.to(TORCH_FP8[spec.name]).view(torch.uint8)
    assert torch.equal(ours, theirs)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(width=32, allow_nan=True, allow_infinity=True),
       spec=st.sampled_from([E4M3, E5M2]))
def test_fp8_encode_matches_torch_on_any_float32(value, spec):
    x = torch.tensor([value], dtype=torch.float32)
    ours = mx.encode(x, spec, **torch_mode(spec)).item()
    assert ours == x.to(TORCH_FP8[spec.name]).view(torch.uint8).item()


def test_nan_and_inf_follow_each_format():
    x = torch.tensor([float("nan"), -float("nan"), float("inf"), -float("inf"), 1e9, 61440.0,
                      61439.0, -0.0])
    e4m3 = mx.encode(x, E4M3).tolist()
    e5m2 = mx.encode(x, E5M2).tolist()
    assert e4m3 == [0x7F, 0xFF, 0x7E, 0xFE, 0x7E, 0x7E, 0x7E, 0x80]   # saturate at ±448, no inf
    assert e5m2 == [0x7F, 0xFF, 0x7C, 0xFC, 0x7C, 0x7C, 0x7B, 0x80]   # IEEE: ±inf; 61440 ties up
    assert mx.encode(x[2:7], E5M2, saturate=True).tolist() == [0x7B, 0xFB, 0x7B, 0x7B, 0x7B]
    # the non-saturating conversion: E4M3 has no inf, so overflow is NaN (sign kept)
    assert mx.encode(x, E4M3, saturate=False).tolist() == [0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0x7F, 0x7F, 0x80]
    with pytest.raises(ValueError, match="no NaN"):
        mx.encode(x[:1], E2M1)


def test_e4m3_rounds_before_it_overflows():
    """464 is the tie between 448 and 480 (the NaN pattern's value): it rounds to even, 448, and
    does not overflow; anything above 464 does (OFP8 v1.0: round first, then the overflow rule)."""
    x = torch.tensor([464.0, 464.0001, -465.0, 449.0])
    assert mx.encode(x, E4M3, saturate=False).tolist() == [0x7E, 0x7F, 0xFF, 0x7E]
    assert mx.encode(x, E4M3).tolist() == [0x7E, 0x7E, 0xFE, 0x7E]


@pytest.mark.parametrize("saturate", [True, False])
def test_e4m3_matches_torch_below_overflow_whatever_its_overflow_rule(saturate):
    """Finite values that do not overflow convert the same in both modes, and as torch does."""
    x = all_patterns(torch.bfloat16)
    x = x[x.abs() <= 464]
    assert torch.equal(mx.encode(x, E4M3, saturate=saturate), x.to(torch.float8_e4m3fn).view(torch.uint8))


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(MX_FORMATS + ["nvfp4", "fp8_e4m3", "fp8_e5m2"]),
       seed=st.integers(0, 10_000), shift=st.integers(-60, 60))
def test_fake_quantize_is_the_round_trip_through_the_codes(fmt, seed, shift):
    """``fake_quantize`` skips the codes; it must give exactly ``dequantize(quantize(x))``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 64, generator=gen) * 2.0**shift
    x[0, :5] = torch.tensor([0.0, -0.0, 7.9, -7.9, 1e-41])
    ours = mx.fake_quantize(x, fmt)
    assert torch.equal(ours, mx.dequantize(mx.quantize(x, fmt)))
    assert torch.equal(ours.signbit(), mx.dequantize(mx.quantize(x, fmt)).signbit())


FP8_CASES = given(fmt=st.sampled_from(["fp8_e4m3", "fp8_e5m2"]),
                  granularity=st.sampled_from(["tensor", "channel", "block"]), seed=st.integers(0, 10_000))


def fp8_case(fmt: str, granularity: str, seed: int):
    """A random [8, 16] tensor and its scaled FP8 codes (blocks of 4 x 8)."""
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(seed)) * 10
    return x, mx.quantize_fp8(x, fmt, granularity, block_shape=(4, 8))


@settings(max_examples=30, deadline=None)
@FP8_CASES
def test_fake_quantize_fp8_is_the_round_trip_through_the_codes(fmt, granularity, seed):
    x, q = fp8_case(fmt, granularity, seed)
    assert torch.equal(mx.fake_quantize_fp8(x, fmt, granularity, (4, 8)), mx.dequantize_fp8(q))


def test_sub_byte_rounding_hand_cases():
    # E2M1 grid 0, .5, 1, 1.5, 2, 3, 4, 6: ties go to the even mantissa
    x = torch.tensor([0.25, 0.75, 1.25, 2.5, 3.5, 5.0, 5.1, 7.0, -100.0, -0.2])
    assert mx.decode(mx.encode(x, E2M1), E2M1).tolist() == [0, 1, 1, 2, 4, 4, 6, 6, -6, -0.0]
    assert mx.encode(torch.tensor([-0.2]), E2M1).item() == 0b1000     # -0: the sign bit stays


@settings(max_examples=60, deadline=None)
@given(spec=st.sampled_from([E3M2, E2M3, E2M1, E4M3, E5M2]),
       values=st.lists(st.floats(-60000, 60000, width=32), min_size=1, max_size=32))
def test_encode_picks_the_nearest_value(spec, values):
    x = torch.tensor(values).clamp(-spec.max, spec.max)
    chosen = mx.decode(mx.encode(x, spec), spec)
    table = spec.values()
    table = table[torch.isfinite(table)]
    nearest = (x[:, None] - table[None, :]).abs().amin(1)
    assert torch.equal((x - chosen).abs(), nearest)


@pytest.mark.parametrize("spec", [E4M3, E5M2, E3M2, E2M3, E2M1], ids=lambda s: s.name)
def test_every_finite_code_round_trips(spec):
    codes = torch.arange(2**spec.bits)
    values = spec.values()
    keep = ~values.isnan()
    assert torch.equal(mx.encode(values[keep], spec).long(), codes[keep])


def test_e8m0_is_a_power_of_two_per_code():
    theirs = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e8m0fnu).float()
    ours = mx.e8m0_values()
    assert ours[127] == 1 and ours[128] == 2 and ours[0] == 2.0**-127 and ours[254] == 2.0**127
    assert ours[255].isnan()
    assert torch.equal(ours[:255], theirs[:255])


# ---------------------------------------------------------------------------- block formats

def test_mxfp4_block_by_hand():
    x = torch.zeros(2, 32)
    x[0, :4] = torch.tensor([7.9, 1.0, -0.3, 2.6])   # absmax 7.9: floor(log2) = 2, emax 2 -> X = 1
    x[1, :3] = torch.tensor([1.0, 0.3, -0.26])       # absmax 1: X = 2^-2; 0.3/X = 1.2, -0.26/X = -1.04
    q = mx.quantize(x, "mxfp4")
    assert q.scales.tolist() == [[127], [125]]
    assert mx.dequantize(q)[0, :4].tolist() == [6.0, 1.0, -0.5, 3.0]  # 7.9 saturates
    assert mx.dequantize(q)[1, :3].tolist() == [1.0, 0.25, -0.25]
    assert q.codes[0, :4].tolist() == [0b0111, 0b0010, 0b1001, 0b0101]


def test_nvfp4_block_by_hand():
    x = torch.zeros(1, 16)
    x[0, :3] = torch.tensor([5.0, 2.0, -1.0])
    q = mx.quantize_nvfp4(x, tensor_scale=False)
    # block scale 5/6 = 0.833.. -> E4M3 0.8125 (step 1/16 in [0.5, 1)); 5/0.8125 = 6.15 -> 6
    assert mx.decode(q.scales, E4M3).tolist() == [[0.8125]]
    assert mx.dequantize(q)[0, :3].tolist() == [6 * 0.8125, 2 * 0.8125, -1 * 0.8125]
    two_level = mx.quantize(x, "nvfp4")                     # t = 5 / 2688: s = 448 exactly
    assert two_level.tensor_scale.item() == pytest.approx(5 / 2688)
    assert mx.decode(two_level.scales, E4M3).tolist() == [[448.0]]
    # elements 5/(5/6) = 6, 2.4 -> 2, -1.2 -> -1, times t·448 = 5/6
    assert mx.dequantize(two_level)[0, :3].tolist() == pytest.approx([5.0, 5 / 3, -5 / 6], rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(MX_FORMATS), seed=st.integers(0, 10_000), shift=st.integers(-20, 20))
def test_mx_commutes_with_powers_of_two(fmt, seed, shift):
    """Scaling a block by 2^k only moves its E8M0 scale by k: same codes."""
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(seed))
    a, b = mx.quantize(x, fmt), mx.quantize(x * 2.0**shift, fmt)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(b.scales.long() - a.scales.long(), torch.full_like(a.scales.long(), shift))


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(MX_FORMATS + ["fp8_e4m3", "fp8_e5m2"]), seed=st.integers(0, 10_000),
       spread=st.floats(0.01, 100))
def test_fake_quantize_is_idempotent(fmt, seed, spread):
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(seed)) * spread
    once = mx.fake_quantize(x, fmt)
    assert torch.equal(mx.fake_quantize(once, fmt), once)


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(MX_FORMATS), seed=st.integers(0, 10_000))
def test_mx_elements_are_the_nearest_grid_values_below_saturation(fmt, seed):
    spec = mx.get_format(fmt)
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(seed))
    q = mx.quantize(x, fmt)
    X = mx.e8m0_values()[q.scales.long()]                       # [2, 1]
    scaled = x / X
    chosen = mx.decode(q.codes, spec.element)
    table = spec.element.values()
    table = table[torch.isfinite(table)]
    nearest = (scaled[..., None] - table).abs().amin(-1)
    inside = scaled.abs() <= spec.element.max
    assert torch.equal((scaled - chosen).abs()[inside], nearest[inside])
    assert torch.equal(chosen[~inside].abs(), torch.full_like(chosen[~inside], spec.element.max))


@settings(max_examples=30, deadline=None)
@FP8_CASES
def test_scaled_fp8_maps_each_absmax_to_the_format_max(fmt, granularity, seed):
    x, q = fp8_case(fmt, granularity, seed)
    spec = mx.get_format(fmt).element
    deq = mx.dequantize_fp8(q)
    rel = (deq - x).abs() / x.abs()
    assert rel.max() <= 2.0 ** -(spec.mbits + 1) * 1.0001 or granularity == "tensor"
    assert torch.isclose(deq.abs().max(), x.abs().max(), rtol=1e-6)
    assert mx.decode(q.codes, spec).abs().max().item() == spec.max


def test_scaled_fp8_block_scales_by_hand():
    x = torch.ones(4, 4)
    x[:2, 2:] = 448 * 4.0
    x[2:, :2] = 0.0
    q = mx.quantize_fp8(x, "fp8_e4m3", "block", (2, 2))
    torch.testing.assert_close(q.scale, torch.tensor([[1 / 448, 4.0], [1.0, 1 / 448]]))  # zero block: 1
    assert torch.equal(mx.dequantize_fp8(q), x)


def test_scaled_fp8_gives_more_range_than_the_plain_cast():
    x = torch.randn(16, 64) * 1e-4                               # below E4M3's normal range
    plain = (mx.fake_quantize(x, "fp8_e4m3") - x).pow(2).mean()
    scaled = (mx.fake_quantize_fp8(x, "fp8_e4m3", "channel") - x).pow(2).mean()
    assert scaled < plain / 100


# ---------------------------------------------------------------------------- packing

@pytest.mark.parametrize("fmt", list(mx.FORMATS))
def test_pack_round_trips_and_costs_the_advertised_bits(fmt):
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    q = mx.quantize(x, fmt)
    back = mx.unpack(mx.pack(q), fmt)
    assert torch.equal(back.codes, q.codes)
    assert torch.equal(mx.dequantize(back), mx.dequantize(q))
    tensor_scale_bytes = 4 if fmt == "nvfp4" else 0
    assert (q.nbytes - tensor_scale_bytes) * 8 / x.numel() == mx.get_format(fmt).bits_per_weight


def test_bits_per_weight_table():
    assert {k: f.bits_per_weight for k, f in mx.FORMATS.items()} == {
        "fp8_e4m3": 8, "fp8_e5m2": 8, "mxfp8_e4m3": 8.25, "mxfp8_e5m2": 8.25, "mxfp6_e3m2": 6.25,
        "mxfp6_e2m3": 6.25, "mxfp4": 4.25, "nvfp4": 4.5}


def test_fp6_planes_by_hand():
    codes = torch.tensor([[0b110101, 0b000001, 0b111111, 0b100000]], dtype=torch.uint8)
    packed = mx.pack_codes(codes, 6)
    # low nibbles 0101, 0001, 1111, 0000 two per byte; high bits 11, 00, 11, 10 four per byte
    assert packed.tolist() == [[0b00010101, 0b00001111, 0b10110011]]
    assert torch.equal(mx.unpack_codes(packed, 6), codes)


# ---------------------------------------------------------------------------- bad input

def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="unknown format 'fp4'.*mxfp4"):
        mx.quantize(torch.ones(32), "fp4")
    with pytest.raises(ValueError, match="multiple of its block size 32"):
        mx.quantize(torch.ones(4, 48), "mxfp4")
    with pytest.raises(ValueError, match="multiple of its block size 16"):
        mx.quantize(torch.ones(4, 24), "nvfp4")
    with pytest.raises(ValueError, match="multiple of its block size"):
        mx.quantize(torch.tensor(1.0), "mxfp8_e4m3")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or Inf"):
            mx.quantize(torch.full((32,), bad), "mxfp4")
        with pytest.raises(ValueError, match="NaN or Inf"):
            mx.quantize_fp8(torch.full((4, 4), bad))
    with pytest.raises(TypeError, match="floating-point"):
        mx.quantize(torch.ones(32, dtype=torch.int32), "mxfp4")
    with pytest.raises(ValueError, match="does not divide"):
        mx.quantize_fp8(torch.ones(100, 128), granularity="block")
    with pytest.raises(ValueError, match="2-D"):
        mx.quantize_fp8(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="granularity"):
        mx.quantize_fp8(torch.ones(4, 4), granularity="group")
    with pytest.raises(ValueError, match="block format"):
        mx.quantize_fp8(torch.ones(4, 4), "mxfp4")
    with pytest.raises(ValueError, match=r"codes lie in \[0, 15\]"):
        mx.decode(torch.tensor([16]), E2M1)
    with pytest.raises(ValueError, match="8, 6 or 4"):
        mx.pack_codes(torch.zeros(4, dtype=torch.uint8), 5)


def test_plain_fp8_keeps_nan_and_inf_as_the_format_defines():
    x = torch.tensor([float("nan"), float("inf"), 1000.0])
    assert mx.fake_quantize(x, "fp8_e4m3")[1:].tolist() == [448.0, 448.0]    # saturating default
    assert mx.fake_quantize(x, "fp8_e5m2")[1:].tolist() == [float("inf"), 1024.0]
    assert mx.fake_quantize(x, "fp8_e4m3")[0].isnan()


# ---------------------------------------------------------------------------- torchao (slow)

def torchao_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=gen) * torch.exp2(torch.randint(-12, 12, (64, 1), generator=gen).float())
    x[3, :32] = 0                 # an all-zero block
    x[4, 32:64] *= 1e-30          # float32 subnormals
    x[5, :16] = 1e-41
    x[6, :32] = 7.9               # saturating top
    return {"mixed": x, "bf16": torch.randn(32, 128, generator=gen).bfloat16(),
            "weights": torch.randn(768, 256, generator=gen) * 0.02}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", MX_FORMATS)
@pytest.mark.parametrize("case", ["mixed", "bf16", "weights"])
def test_mx_is_bit_exact_with_torchao(fmt, case):
    from qcourse.references.torchao import mx as ref

    x = torchao_inputs()[case]
    ours, theirs = mx.quantize(x, fmt), ref.mx_codes(x, fmt)
    packed = ours.codes if fmt.startswith("mxfp6") else mx.pack(ours)["codes"]  # torchao: FP6 unpacked
    assert torch.equal(packed, theirs["packed"])
    assert torch.equal(ours.scales, theirs["scales"])
    assert torch.equal(mx.dequantize(ours), theirs["dequantized"])


@pytest.mark.slow
@pytest.mark.parametrize("tensor_scale", [True, False], ids=["two-level", "single-level"])
@pytest.mark.parametrize("case", ["mixed", "bf16", "weights"])
def test_nvfp4_is_bit_exact_with_torchao(tensor_scale, case):
    from qcourse.references.torchao import mx as ref

    x = torchao_inputs()[case]
    ours, theirs = mx.quantize_nvfp4(x, tensor_scale=tensor_scale), ref.nvfp4_codes(x, tensor_scale)
    assert torch.equal(mx.pack(ours)["codes"], theirs["packed"])
    assert torch.equal(ours.scales, theirs["scales"])
    assert (ours.tensor_scale is None) == (theirs["tensor_scale"] is None)
    if tensor_scale:
        assert torch.equal(ours.tensor_scale, theirs["tensor_scale"])
    assert torch.equal(mx.dequantize(ours), theirs["dequantized"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "block"])
def test_scaled_fp8_is_bit_exact_with_torchao(fmt, granularity):
    from qcourse.references.torchao import mx as ref

    x = torchao_inputs()["weights"][:, :256] * 50
    ours, theirs = mx.quantize_fp8(x, fmt, granularity), ref.fp8_codes(x, fmt, granularity)
    assert torch.equal(ours.codes, theirs["codes"])
    assert torch.equal(ours.scale, theirs["scale"])
    assert torch.equal(mx.dequantize_fp8(ours), theirs["dequantized"])


@pytest.mark.slow
def test_torchao_stores_nan_for_an_all_zero_fp8_block_where_we_store_zeros():
    from qcourse.references.torchao import mx as ref

    x = torch.randn(256, 256)
    x[:128, :128] = 0
    assert ref.fp8_codes(x, granularity="block")["dequantized"][:128, :128].isnan().all()
    assert (mx.fake_quantize_fp8(x, granularity="block")[:128, :128] == 0).all()


@pytest.mark.slow
def test_mx_matches_torchao_on_every_qcourse_tiny_weight(tiny):
    from qcourse.models import linear_layers
    from qcourse.references.torchao import mx as ref

    model, _ = tiny
    for name, linear in linear_layers(model).items():
        w = linear.weight.detach()
        for fmt in ("mxfp4", "mxfp6_e2m3"):
            assert torch.equal(mx.fake_quantize(w, fmt), ref.mx_codes(w, fmt)["dequantized"]), name
        assert torch.equal(mx.fake_quantize(w, "nvfp4"), ref.nvfp4_codes(w)["dequantized"]), name


@pytest.mark.slow
def test_w8a8_fp8_keeps_qcourse_tiny_close(tiny):
    from qcourse import eval as qeval
    from qcourse.layers import fake_quantize_weights, quantize_inputs

    model, tok = tiny
    per_channel = functools.partial(mx.fake_quantize_fp8, fmt="fp8_e4m3", granularity="channel")
    fp8 = quantize_inputs(fake_quantize_weights(copy.deepcopy(model), per_channel), per_channel)
    base = qeval.perplexity(model, tok, max_windows=4)
    assert base < qeval.perplexity(fp8, tok, max_windows=4) < base * 1.01
