"""HQQ from scratch: the shrinkage operator and the start by hand, properties of the solver, the
float-zero layer, bad input; slow: bit-exact with the hqq package on every qcourse-tiny weight,
and error/perplexity against RTN."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from qcourse import hqq
from qcourse.layers import FloatZeroLinear
from qcourse.quant import fake_quantize


def test_shrink_lp_by_hand():
    x = torch.tensor([1.0, -1.0, 0.1, 0.0, 2.0])
    # |x| - |x|^(p-1)/β with p = 0.7, β = 10: 1 -> 0.9; 0.1 -> 0.1 - 1.995/10 < 0 -> 0
    out = hqq.shrink_lp(x, 10.0, 0.7)
    torch.testing.assert_close(out[:4], torch.tensor([0.9, -0.9, 0.0, 0.0]))
    assert out[4].item() == pytest.approx(2 - 2**-0.3 / 10)
    # p = 1: plain soft-thresholding by 1/β
    torch.testing.assert_close(hqq.shrink_lp(x, 4.0, 1.0), torch.tensor([0.75, -0.75, 0, 0, 1.75]))


@settings(max_examples=50, deadline=None)
@given(value=st.floats(-0.169, 0.169))
def test_shrink_is_zero_below_the_threshold_of_beta_10(value):
    """|x|^(2-p) <= 1/β, i.e. |x| <= 0.17: every rounding error of an LLM weight is shrunk to 0."""
    assert hqq.shrink_lp(torch.tensor([value]), 10.0, 0.7).item() == 0.0


def test_initial_parameters_by_hand():
    groups = torch.tensor([[0.0, 0.5, 1.5], [-1.0, 0.0, 2.0], [3.0, 3.0, 3.0]])
    s, zero = hqq.initial_parameters(groups, 4, round_zero=False)
    torch.testing.assert_close(s.flatten(), torch.tensor([10.0, 5.0, 1.0]))   # flat group: s = 1
    torch.testing.assert_close(zero.flatten(), torch.tensor([0.0, 5.0, -3.0]))
    assert hqq.initial_parameters(torch.tensor([[-0.33, 1.0]]), 4, True)[1].item() == 4.0


def test_without_optimization_it_is_min_max_rtn_with_a_float_zero():
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    result = hqq.hqq_quantize(W, 4, 32, optimize=False, round_zero=False)
    assert result.errors == []
    assert ((result.weight - W).abs() <= result.scale.repeat_interleave(32, 1) / 2 + 1e-6).all()
    # the min and the max of each group are hit exactly (up to float rounding)
    lo = W.reshape(16, 2, 32).amin(-1)
    torch.testing.assert_close(result.weight.reshape(16, 2, 32).amin(-1), lo, rtol=1e-5, atol=1e-6)


def test_small_weights_get_the_least_squares_zero():
    """Rounding errors below 0.17 are all shrunk to 0, so the first update is
    z = mean(q - W·s) per group."""
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 0.02
    groups = W.reshape(-1, 64)
    s, z0 = hqq.initial_parameters(groups, 4, round_zero=True)
    z1, _ = hqq.optimize_zero(groups, s, z0, 4, hqq.HQQSettings(iters=1))
    q = torch.round(groups * s + z0).clamp(0, 15)
    torch.testing.assert_close(z1, (q - groups * s).mean(1, keepdim=True))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([2, 3, 4]), scale=st.sampled_from([0.02, 1.0, 5.0]))
def test_hqq_lowers_the_error_of_the_min_max_start(seed, bits, scale):
    W = torch.randn(32, 128, generator=torch.Generator().manual_seed(seed)) * scale
    start = hqq.hqq_quantize(W, bits, 64, optimize=False)
    tuned = hqq.hqq_quantize(W, bits, 64)
    assert tuned.errors[0] == pytest.approx((start.weight - W).abs().mean().item(), rel=1e-5)
    assert min(tuned.errors) <= tuned.errors[0]
    assert (tuned.weight - W).abs().mean() <= (start.weight - W).abs().mean() * 1.001
    assert tuned.q.max() < 2**bits and tuned.q.dtype == torch.uint8


def test_float_zero_layer_stores_the_result():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = hqq.hqq_layer(linear, 4, 32)
    result = hqq.hqq_quantize(linear.weight, 4, 32)
    torch.testing.assert_close(layer.weight(), result.weight, rtol=2e-3, atol=2e-3)   # fp16 meta
    assert layer.qweight.dtype == torch.int32 and layer.zeros.dtype == torch.float16
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer(x), x @ layer.weight().t() + linear.bias)
    nbytes = sum(t.numel() * t.element_size() for t in (layer.qweight, layer.scales, layer.zeros))
    assert nbytes * 8 / linear.weight.numel() == 4 + 32 / 32


def test_quantize_model_swaps_every_linear_but_the_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=1, num_attention_heads=4,
                                         num_key_value_heads=2, max_position_embeddings=32))
    hqq.quantize_model(model, 3, 32)
    kinds = {type(m).__name__ for n, m in model.named_modules() if "proj" in n}
    assert kinds == {"FloatZeroLinear"} and isinstance(model.lm_head, nn.Linear)


def test_bad_input_gets_clear_errors():
    W = torch.randn(8, 64)
    with pytest.raises(ValueError, match="does not divide"):
        hqq.hqq_quantize(W, 4, 48)
    with pytest.raises(ValueError, match="bits"):
        hqq.hqq_quantize(W, 9)
    with pytest.raises(ValueError, match="NaN or Inf"):
        hqq.hqq_quantize(torch.full((8, 64), float("nan")), 4)
    with pytest.raises(ValueError, match="2-D"):
        hqq.hqq_quantize(torch.randn(2, 8, 64), 4)
    with pytest.raises(TypeError, match="floating-point"):
        hqq.hqq_quantize(torch.ones(8, 64, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="bits must be one of"):
        hqq.quantize_model(nn.Sequential(nn.Linear(64, 8)), 5, 32)
    with pytest.raises(ValueError, match="finite"):
        FloatZeroLinear.from_quantized(torch.zeros(8, 64, dtype=torch.uint8), torch.ones(8, 2),
                                       torch.full((8, 2), float("inf")), 4, 32)


# ---------------------------------------------------------------------------- hqq (slow)

@pytest.mark.slow
@pytest.mark.parametrize("bits,group_size", [(4, 64), (4, 128), (3, 64), (2, 128)])
def test_bit_exact_with_the_hqq_package_on_every_qcourse_tiny_weight(tiny, bits, group_size):
    from qcourse.models import linear_layers
    from qcourse.references import hqq_lib

    model, _ = tiny
    for name, linear in linear_layers(model).items():
        ours = hqq.hqq_quantize(linear.weight, bits, group_size)
        theirs = hqq_lib.quantize_weight(linear.weight, bits, group_size)
        assert torch.equal(ours.q, theirs["q"]), name
        assert torch.equal(ours.scale, theirs["scale"]) and torch.equal(ours.zero, theirs["zero"]), name
        assert torch.equal(ours.weight, theirs["dequantized"]), name


@pytest.mark.slow
@pytest.mark.parametrize("kappa", [1.0, 1.01])
def test_bit_exact_with_hqq_where_the_l_p_shrinkage_acts(kappa):
    """Values of order 1 (errors above 0.17): the l_p part of the solver is active. hqq's default
    (legacy) solver keeps β fixed; our kappa=1.01 is its v2 solver's growth (not the default)."""
    from qcourse.references import hqq_lib

    W = torch.randn(80, 64, generator=torch.Generator().manual_seed(0)) * 3
    ours = hqq.hqq_quantize(W, 4, 64, round_zero=False, settings=hqq.HQQSettings(kappa=kappa))
    theirs = hqq_lib.quantize_weight(W, 4, 64, round_zero=False)
    assert torch.equal(ours.weight, theirs["dequantized"]) == (kappa == 1.0)


@pytest.mark.slow
def test_hqq_model_matches_hqqlinear_and_beats_rtn_on_weight_error(tiny):
    from qcourse import eval as qeval
    from qcourse.models import linear_layers
    from qcourse.references import hqq_lib

    model, tok = tiny
    ours = hqq.quantize_model(copy.deepcopy(model), 3, 64)
    theirs = hqq_lib.quantize_model(copy.deepcopy(model), 3, 64)
    for name, layer in linear_layers(theirs).items():
        torch.testing.assert_close(ours.get_submodule(name).weight(), layer.weight,
                                   rtol=0, atol=2e-3 * layer.weight.abs().max().item())
    rtn = copy.deepcopy(model)
    for linear in linear_layers(rtn).values():
        linear.weight.data = fake_quantize(linear.weight.data, 3, symmetric=False,
                                           granularity="group", group_size=64)
    ppl = {name: qeval.perplexity(m, tok, max_windows=4) for name, m in
           (("ours", ours), ("hqq", theirs), ("rtn", rtn))}
    assert ppl["ours"] == pytest.approx(ppl["hqq"], rel=2e-3)
    # HQQ beats RTN on the weight error; in perplexity it does not here (3-bit g64 on 4
    # windows: 73.83 against RTN's 73.59), so only a loose bound on that
    error = {name: sum((m.get_submodule(n).weight() if name == "ours" else m.get_submodule(n).weight)
                       .sub(linear.weight).pow(2).sum().item()
                       for n, linear in linear_layers(model).items())
             for name, m in (("ours", ours), ("rtn", rtn))}
    assert error["ours"] < error["rtn"]
    assert ppl["ours"] < ppl["rtn"] * 1.01
