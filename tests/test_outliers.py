"""qcourse.models.with_outliers: the same float function, outlier channels of the requested size."""
import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qcourse import calib, data
from qcourse.models import with_outliers
from qcourse.models.outliers import default_channels


def small_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():   # random norm weights, so the test does not rely on them being 1
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
    return model


IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


@settings(max_examples=25, deadline=None)
@given(channels=st.lists(st.integers(0, 31), min_size=1, max_size=6, unique=True),
       factor=st.floats(0.01, 1000.0))
def test_the_float_function_is_unchanged(channels, factor):
    model = small_llama()
    out = with_outliers(model, channels, factor)
    with torch.no_grad():
        before, after = model(IDS).logits, out(IDS).logits
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)


def test_qcourse_tiny_logits_equal_to_float_tolerance(tiny):
    model, tokenizer = tiny
    out = with_outliers(model)
    ids = data.calibration_samples(tokenizer, 2, 64, seed=3)
    with torch.no_grad():
        before, after = model(ids).logits, out(ids).logits
    # fp32 rounding of a 6-layer model: differences of ~1e-5 on logits of magnitude ~10
    assert (after - before).abs().max() < 1e-3 * before.abs().max()
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() > 0.999


def test_the_argument_is_not_modified():
    model = small_llama()
    state = copy.deepcopy(model.state_dict())
    out = with_outliers(model, [3, 7], 50.0)
    assert out is not model
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert out.outlier_channels == (3, 7) and out.outlier_factor == 50.0


def test_weights_move_by_exactly_the_factor():
    model = small_llama()
    out = with_outliers(model, [5], 10.0)
    block, new = model.model.layers[1], out.model.layers[1]
    assert torch.allclose(new.input_layernorm.weight[5], 10 * block.input_layernorm.weight[5])
    assert torch.equal(new.input_layernorm.weight[:5], block.input_layernorm.weight[:5])
    for name in ("q_proj", "k_proj", "v_proj"):
        w, w_new = getattr(block.self_attn, name).weight, getattr(new.self_attn, name).weight
        assert torch.allclose(w_new[:, 5], w[:, 5] / 10)
        assert torch.equal(w_new[:, 6:], w[:, 6:])
    assert torch.allclose(new.mlp.up_proj.weight[:, 5], block.mlp.up_proj.weight[:, 5] / 10)
    # what the norm does not feed is untouched
    assert torch.equal(new.mlp.down_proj.weight, block.mlp.down_proj.weight)
    assert torch.equal(new.self_attn.o_proj.weight, block.self_attn.o_proj.weight)


def test_chosen_input_channels_grow_by_the_factor_and_no_other(tiny):
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 128, seed=0)
    out = with_outliers(model, [10, 200], 100.0)
    before = calib.collect_activation_stats(model, samples)
    after = calib.collect_activation_stats(out, samples)
    others = [j for j in range(256) if j not in (10, 200)]
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.4.mlp.gate_proj"):
        a, b = before[name].absmax, after[name].absmax
        assert torch.allclose(b[[10, 200]], 100 * a[[10, 200]], rtol=1e-4)
        assert torch.allclose(b[others], a[others], rtol=1e-4, atol=1e-5)


def test_default_outliers_have_the_magnitude_of_large_models(tiny):
    # SmoothQuant §3: ~100x most activation values; LLM.int8(): up to 20x the other dimensions
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 128, seed=0)
    stats = calib.collect_activation_stats(with_outliers(model), samples)
    for name, s in stats.items():
        if name.endswith(("q_proj", "gate_proj")):
            ratio = (s.absmax.max() / s.absmax.median()).item()
            assert 30 < ratio < 1000, (name, ratio)
            top = set(s.absmax.topk(4).indices.tolist())
            assert top == set(default_channels(256)), name


def test_default_channels_are_seeded_and_distinct():
    assert default_channels(256) == default_channels(256)
    assert default_channels(256, 4, seed=1) != default_channels(256, 4, seed=0)
    chosen = default_channels(64, 10, seed=2)
    assert len(set(chosen)) == 10 and all(0 <= c < 64 for c in chosen) and chosen == sorted(chosen)


@pytest.mark.parametrize("channels", [[32], [-1], [0, 40]])
def test_channels_out_of_range_are_refused(channels):
    with pytest.raises(ValueError, match="out of range.*32 channels"):
        with_outliers(small_llama(), channels)


@pytest.mark.parametrize("channels, error", [([], TypeError), ([1, 1], ValueError),
                                             ([1.5], TypeError), ("3", TypeError),
                                             ([True], TypeError)])
def test_malformed_channels_are_refused(channels, error):
    with pytest.raises(error, match="channel"):
        with_outliers(small_llama(), channels)


@pytest.mark.parametrize("factor", [0, -3.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_factors_are_refused(factor):
    with pytest.raises(ValueError, match="factor must be positive"):
        with_outliers(small_llama(), [1], factor)


def test_a_factor_that_is_not_a_number_is_refused():
    with pytest.raises(TypeError, match="factor must be a number"):
        with_outliers(small_llama(), [1], "100")


def test_a_model_without_llama_blocks_is_refused():
    with pytest.raises(ValueError, match="Llama"):
        with_outliers(nn.Sequential(nn.Linear(4, 4)))
