"""qcourse.quant: hand-checked examples, a cross-check with torch's observers, and properties."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from qcourse.quant import (QuantScheme, check_finite, check_float, dequantize, fake_quantize,
                           qrange, quantization_error, quantize)

BITS = st.integers(2, 8)
finite = st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
# Matrices of 1..6 rows, 8 or 16 columns (so group sizes 1, 2, 4, 8 divide them).
matrices = st.tuples(st.integers(1, 6), st.sampled_from([8, 16])).flatmap(
    lambda shape: arrays("float32", shape, elements=finite)).map(torch.from_numpy)
schemes = st.sampled_from([
    {"granularity": "tensor"},
    {"granularity": "channel"},
    {"granularity": "channel", "axis": 1},
    {"granularity": "channel", "axis": -1},
    {"granularity": "group", "group_size": 1},
    {"granularity": "group", "group_size": 4},
    {"granularity": "group", "group_size": 8},
])


def group_absmax(x, kw):
    """max |x| over the values that share one scale, shaped like the scale."""
    if kw["granularity"] == "tensor":
        return x.abs().amax()
    if kw["granularity"] == "group":
        return x.abs().reshape(*x.shape[:-1], -1, kw["group_size"]).amax(-1)
    axis = kw.get("axis", 0) % x.dim()
    return x.abs().amax(dim=[d for d in range(x.dim()) if d != axis], keepdim=True)


def expand(t, x, kw):
    """Per-element view of a scale or zero, whatever the granularity."""
    if kw["granularity"] == "group":
        t = t.repeat_interleave(kw["group_size"], dim=-1)
    return t.expand_as(x)


# --- Hand-checked examples -------------------------------------------------------------------

def test_qrange():
    assert qrange(8, symmetric=True) == (-128, 127)
    assert qrange(8, symmetric=False) == (0, 255)
    assert qrange(4, symmetric=True) == (-8, 7)
    assert qrange(2, symmetric=False) == (0, 3)


def test_asymmetric_example_by_hand():
    # range [-1, 2] on 2 bits: scale = 3 / 3 = 1, zero = round(1 / 1) = 1
    x = torch.tensor([-1.0, 0.0, 0.4, 2.0])
    q, scale, zero = quantize(x, 2, symmetric=False, granularity="tensor")
    assert q.dtype == torch.uint8 and q.tolist() == [0, 1, 1, 3]
    assert scale.item() == 1.0 and zero.item() == 1.0 and scale.shape == ()
    assert dequantize(q, scale, zero).tolist() == [-1.0, 0.0, 0.0, 2.0]


def test_symmetric_example_by_hand():
    # absmax 7 on 4 bits: scale = 7 / 7 = 1, zero = 0
    x = torch.tensor([-7.0, 3.2, 0.6, 1.6])
    q, scale, zero = quantize(x, 4, symmetric=True, granularity="tensor")
    assert q.dtype == torch.int8 and q.tolist() == [-7, 3, 1, 2]
    assert scale.item() == 1.0 and zero.item() == 0.0


def test_range_always_includes_zero():
    # all positive: min is taken as 0, so 0.0 would be exact: scale = 3 / 3, zero = 0
    q, scale, zero = quantize(torch.tensor([1.0, 2.0, 3.0]), 2, symmetric=False,
                              granularity="tensor")
    assert (scale.item(), zero.item(), q.tolist()) == (1.0, 0.0, [1, 2, 3])
    # all negative: max is taken as 0, zero point at the top of the grid
    q, scale, zero = quantize(torch.tensor([-3.0, -1.0]), 2, symmetric=False, granularity="tensor")
    assert (scale.item(), zero.item(), q.tolist()) == (1.0, 3.0, [0, 2])


def test_per_channel_and_per_group_shapes_and_values():
    w = torch.tensor([[1.0, -2.0, 0.5, 4.0],
                      [0.1, 0.2, -0.3, 0.0]])
    _, scale, zero = quantize(w, 8, symmetric=True, granularity="channel")
    assert scale.shape == zero.shape == (2, 1)
    assert torch.allclose(scale[:, 0], torch.tensor([4.0, 0.3]) / 127)
    _, scale, _ = quantize(w, 8, symmetric=True, granularity="channel", axis=1)
    assert scale.shape == (1, 4)
    assert torch.allclose(scale[0], torch.tensor([1.0, 2.0, 0.5, 4.0]) / 127)
    q, scale, zero = quantize(w, 8, symmetric=True, granularity="group", group_size=2)
    assert scale.shape == zero.shape == (2, 2) and q.shape == w.shape
    assert torch.allclose(scale, torch.tensor([[2.0, 4.0], [0.2, 0.3]]) / 127)


def test_per_channel_any_axis_of_a_3d_tensor():
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    _, scale, _ = quantize(x, 4, symmetric=True, granularity="channel", axis=1)
    assert scale.shape == (1, 5, 1)
    assert torch.allclose(scale.flatten(), x.abs().amax(dim=(0, 2)) / 7)


def test_clip_ratio_shrinks_the_range_and_clamps():
    x = torch.tensor([-1.0, 0.3, 1.0])
    q, scale, _ = quantize(x, 8, symmetric=True, granularity="tensor", clip_ratio=0.5)
    assert scale.item() == pytest.approx(0.5 / 127)
    assert q.tolist() == [-128, 76, 127]  # ±254 clamped to [-128, 127]; 0.3 · 254 = 76.2
    per_row = torch.tensor([[1.0], [0.5]])
    w = torch.ones(2, 4)
    _, scale, _ = quantize(w, 8, symmetric=True, granularity="channel", clip_ratio=per_row)
    assert torch.allclose(scale[:, 0], torch.tensor([1.0, 0.5]) / 127)


@pytest.mark.parametrize("bits", range(2, 9))
def test_matches_torch_minmax_observer(bits):
    """torch's own observers compute the same asymmetric scale and zero point."""
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    g = torch.Generator().manual_seed(bits)
    x = torch.randn(16, 64, generator=g) * torch.rand(16, 1, generator=g) + 0.3
    observer = MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=2**bits - 1)
    observer(x)
    ref_scale, ref_zero = observer.calculate_qparams()
    q, scale, zero = quantize(x, bits, symmetric=False, granularity="tensor")
    assert scale.item() == pytest.approx(ref_scale.item(), rel=1e-6)
    assert zero.item() == ref_zero.item()
    ref_q = torch.fake_quantize_per_tensor_affine(x, ref_scale.item(), int(ref_zero.item()),
                                                  0, 2**bits - 1)
    assert torch.allclose(dequantize(q, scale, zero), ref_q, atol=1e-6)

    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, quant_min=0,
                                        quant_max=2**bits - 1)
    observer(x)
    ref_scale, ref_zero = observer.calculate_qparams()
    _, scale, zero = quantize(x, bits, symmetric=False, granularity="channel")
    assert torch.allclose(scale[:, 0], ref_scale, rtol=1e-6)
    assert torch.equal(zero[:, 0], ref_zero.float())


def test_fake_quantize_keeps_dtype_and_dequantize_is_float32():
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    assert fake_quantize(x, 4, symmetric=False, granularity="group", group_size=4).dtype == \
        torch.bfloat16
    q, scale, zero = quantize(x, 4, symmetric=False, granularity="group", group_size=4)
    assert dequantize(q, scale, zero, group_size=4).dtype == torch.float32
    assert scale.dtype == zero.dtype == torch.float32


def test_constant_tensors_do_not_divide_by_zero():
    for value in (0.0, 3.0, -2.5):
        for symmetric in (True, False):
            x = torch.full((2, 8), value)
            for kw in ({"granularity": "tensor"}, {"granularity": "channel"},
                       {"granularity": "group", "group_size": 4}):
                q, scale, zero = quantize(x, 4, symmetric=symmetric, **kw)
                assert torch.isfinite(scale).all() and (scale > 0).all()
                x_hat = fake_quantize(x, 4, symmetric=symmetric, **kw)
                assert torch.allclose(x_hat, x, atol=1e-6), (value, symmetric, kw)


def test_quantization_error_is_the_mse():
    assert quantization_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])) == 2.0
    with pytest.raises(ValueError, match="shapes"):
        quantization_error(torch.ones(2), torch.ones(3))


# --- Bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 9, 0, 4.0, True, "4"])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.ones(4), bits, symmetric=True, granularity="tensor")


def test_a_scheme_resolves_its_group_size_and_checks_what_packed_layers_store():
    scheme = QuantScheme(4, None, True)
    assert scheme.resolved(256) == QuantScheme(4, 256, True)        # per channel: all inputs
    grouped = QuantScheme(3, 64)
    assert grouped.resolved(256) is grouped and grouped.packable() is grouped
    with pytest.raises(ValueError, match="group_size 64 does not divide the 96 inputs of q_proj"):
        grouped.resolved(96, "q_proj")
    for bits in (5, 6, 7):
        with pytest.raises(ValueError, match=r"one of \(2, 3, 4, 8\)"):
            QuantScheme(bits, 32).packable()


def test_one_check_for_the_tensors_a_method_quantizes():
    check_finite(torch.ones(3), "W")
    with pytest.raises(TypeError, match="W must be a torch.Tensor"):
        check_finite([1.0], "W")
    with pytest.raises(ValueError, match=r"H contains NaN or Inf; GPTQ needs finite values "
                                         r"\(it overflowed\)"):
        check_finite(torch.tensor([float("nan")]), "H", "GPTQ", "it overflowed")
    check_float(torch.tensor([float("inf")]))           # a float, of any value
    with pytest.raises(TypeError, match="floating-point"):
        check_float(torch.ones(2, dtype=torch.int8))


def test_bad_inputs():
    kw = {"symmetric": True, "granularity": "tensor"}
    with pytest.raises(TypeError, match="floating"):
        quantize(torch.ones(4, dtype=torch.int32), 4, **kw)
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize(torch.tensor([1.0, float("nan")]), 4, **kw)
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize(torch.tensor([1.0, float("inf")]), 4, **kw)
    with pytest.raises(ValueError, match="empty"):
        quantize(torch.ones(0), 4, **kw)
    with pytest.raises(ValueError, match="granularity"):
        quantize(torch.ones(4), 4, symmetric=True, granularity="row")
    with pytest.raises(ValueError, match="group_size 3 does not divide the 8 inputs"):
        quantize(torch.ones(2, 8), 4, symmetric=True, granularity="group", group_size=3)
    with pytest.raises(ValueError, match="group_size"):
        quantize(torch.ones(2, 8), 4, symmetric=True, granularity="group")
    with pytest.raises(ValueError, match="group_size"):
        quantize(torch.ones(2, 8), 4, symmetric=True, granularity="channel", group_size=4)
    with pytest.raises(ValueError, match="axis"):
        quantize(torch.ones(2, 8), 4, symmetric=True, granularity="channel", axis=2)
    with pytest.raises(ValueError, match="clip_ratio"):
        quantize(torch.ones(4), 4, **kw, clip_ratio=0.0)
    with pytest.raises(ValueError, match="clip_ratio"):
        quantize(torch.ones(4), 4, **kw, clip_ratio=1.5)
    q, scale, zero = quantize(torch.ones(2, 8), 4, symmetric=True, granularity="group",
                              group_size=4)
    with pytest.raises(ValueError, match="group_size"):
        dequantize(q, scale, zero)          # forgot group_size: shapes do not broadcast
    with pytest.raises(ValueError, match="does not cover"):
        dequantize(q, scale, zero, group_size=2)


# --- Properties ------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(x=matrices, bits=BITS, symmetric=st.booleans(), kw=schemes)
def test_round_trip_error_is_at_most_half_a_step(x, bits, symmetric, kw):
    """Every value inside its group's range comes back within scale/2."""
    q, scale, zero = quantize(x, bits, symmetric=symmetric, **kw)
    x_hat = dequantize(q, scale, zero, group_size=kw.get("group_size"))
    step = expand(scale, x, kw).double()
    err = (x.double() - x_hat.double()).abs()
    assert (err <= step / 2 * (1 + 1e-5) + x.double().abs() * 1e-6).all()


@settings(max_examples=300, deadline=None)
@given(x=matrices, bits=BITS, symmetric=st.booleans(), kw=schemes,
       clip=st.floats(0.05, 1.0))
def test_outputs_lie_in_the_grid(x, bits, symmetric, kw, clip):
    qmin, qmax = qrange(bits, symmetric)
    q, scale, zero = quantize(x, bits, symmetric=symmetric, clip_ratio=clip, **kw)
    assert q.dtype == (torch.int8 if symmetric else torch.uint8)
    assert q.shape == x.shape
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    assert torch.equal(zero, zero.round()) and (zero >= qmin).all() and (zero <= qmax).all()
    if symmetric:
        assert (zero == 0).all()
    # zero is representable exactly: the integer `zero` dequantizes to 0.0
    assert (dequantize(zero, scale, zero) == 0).all()


@settings(max_examples=300, deadline=None)
@given(x=matrices, bits=BITS, symmetric=st.booleans(), kw=schemes)
def test_quantize_is_idempotent_on_dequantized_values(x, bits, symmetric, kw):
    q, scale, zero = quantize(x, bits, symmetric=symmetric, **kw)
    x_hat = dequantize(q, scale, zero, group_size=kw.get("group_size"))
    q2, scale2, zero2 = quantize(x_hat, bits, symmetric=symmetric, **kw)
    assert torch.equal(q2, q)
    assert torch.equal(zero2, zero)
    assert torch.allclose(scale2, scale, rtol=1e-5)


@settings(max_examples=200, deadline=None)
@given(x=matrices, kw=schemes, symmetric=st.booleans())
def test_more_bits_shrink_the_step_and_the_worst_case_error(x, kw, symmetric):
    """With min/max scaling the grids at b and b+1 bits are not nested, so one value can land
    farther from the grid at b+1 bits (e.g. 1/3 is on the 3-bit symmetric grid of absmax 1 but
    not on the 4-bit one). What is true: the step shrinks strictly, and the worst-case error
    bound scale/2 with it."""
    steps = [quantize(x, b, symmetric=symmetric, **kw)[1] for b in range(2, 9)]
    ranges_nonzero = group_absmax(x, kw) > 0  # all-zero groups keep scale 1 at every width
    for coarse, fine in zip(steps, steps[1:]):
        assert (fine[ranges_nonzero] < coarse[ranges_nonzero]).all()
    for bits, step in zip(range(2, 9), steps):
        x_hat = fake_quantize(x, bits, symmetric=symmetric, **kw)
        err = (x.double() - x_hat.double()).abs()
        assert err.max() <= (step.max().double() / 2) * (1 + 1e-5) + x.abs().max() * 1e-6


@settings(max_examples=300, deadline=None)
@given(x=matrices, kw=schemes, pair=st.sampled_from([(2, 3), (2, 5), (2, 8), (3, 5), (3, 7),
                                                      (4, 7)]))
def test_more_bits_never_increase_the_error_when_grids_are_nested(x, kw, pair):
    """The symmetric grid at b bits is {k · absmax / (2^(b-1) - 1)}. It is a subset of the grid
    at b' bits exactly when (2^(b-1) - 1) divides (2^(b'-1) - 1), i.e. when (b-1) divides (b'-1).
    Rounding picks the nearest grid point, so then no value can get worse, element by element."""
    coarse_bits, fine_bits = pair
    kw = dict(kw, symmetric=True)
    err_coarse = (x.double() - fake_quantize(x, coarse_bits, **kw).double()).abs()
    err_fine = (x.double() - fake_quantize(x, fine_bits, **kw).double()).abs()
    assert (err_fine <= err_coarse + x.double().abs() * 1e-6 + 1e-30).all()


def test_nested_grids_counterexample_is_real():
    """The statement above needs nesting: 1/3 is exact at 3 bits, not at 4 bits."""
    x = torch.tensor([1.0, 1 / 3])
    err3 = (x - fake_quantize(x, 3, symmetric=True, granularity="tensor")).abs()[1]
    err4 = (x - fake_quantize(x, 4, symmetric=True, granularity="tensor")).abs()[1]
    assert err3 < 1e-7 < err4
