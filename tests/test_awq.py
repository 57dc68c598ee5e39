"""AWQ: scale folding, the α search, clipping, the model-level entry point and bad input."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qcourse import awq, blocks, calib, data, ptq
from qcourse import eval as ev
from qcourse.layers import QuantLinear
from qcourse.quant import QuantScheme, fake_quantize

GROUP = dict(symmetric=False, granularity="group")


@pytest.fixture(scope="module")
def samples(tiny):
    _, tok = tiny
    return data.calibration_samples(tok, 4, 128, seed=3)


def mha_model(kv_heads: int = 4) -> LlamaForCausalLM:
    """A random 2-block Llama; with kv_heads = heads, v_proj feeds o_proj one to one."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=kv_heads,
                         head_dim=32, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms, so folding into them is tested for real
        for block in model.model.layers:
            block.input_layernorm.weight.uniform_(0.5, 1.5)
            block.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return model


def random_scales(width: int, seed: int) -> torch.Tensor:
    return torch.rand(width, generator=torch.Generator().manual_seed(seed)) * 4 + 0.25


# --- folding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kv_heads", [4, 2])
def test_folding_every_group_keeps_the_float_function(kv_heads):
    model = mha_model(kv_heads)
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
    folded = 0
    for i, block in enumerate(model.model.layers):
        groups = awq.scale_groups(block, f"model.layers.{i}")
        assert ("self_attn.v_proj" in [g.prev for g in groups]) == (kv_heads == 4)
        for j, group in enumerate(groups):
            layers = [block.get_submodule(n) for n in group.layers]
            s = random_scales(layers[0].in_features, 10 * i + j)
            awq.fold_scales(block.get_submodule(group.prev), layers, s)
            folded += 1
    assert folded == 2 * (4 if kv_heads == 4 else 3)
    assert not torch.equal(model.model.layers[0].input_layernorm.weight,
                           mha_model(kv_heads).model.layers[0].input_layernorm.weight)
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_folding_the_searched_scales_of_the_tiny_model_keeps_its_outputs(tiny, samples):
    model, _ = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():
        before = model(samples[:2]).logits
    inputs = blocks.capture_block_inputs(model, samples[:2])
    block = model.model.layers[0]
    groups = awq.scale_groups(block)
    feats = awq.capture_linear_inputs(block, inputs, [g.layers[0] for g in groups])
    for group in groups:
        layers = [block.get_submodule(n) for n in group.layers]
        x = torch.cat(feats[group.layers[0]])
        x_mean = x.reshape(-1, x.shape[-1]).abs().mean(0)
        awq.fold_scales(block.get_submodule(group.prev), layers, awq.awq_scales(x_mean, 0.9))
    with torch.no_grad():
        after = model(samples[:2]).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_folding_into_a_layernorm_divides_its_bias_too():
    norm, linear = nn.LayerNorm(8), nn.Linear(8, 4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(5, 8)
    with torch.no_grad():
        before = linear(norm(x))
        awq.fold_scales(norm, [linear], random_scales(8, 0))
        torch.testing.assert_close(linear(norm(x)), before, rtol=1e-5, atol=1e-5)


# --- the scale formula ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(x=st.lists(st.floats(1e-3, 1e3), min_size=2, max_size=40),
       alpha=st.sampled_from(awq.ALPHAS.tolist()))
def test_scales_are_normalised_powers_of_the_activation_means(x, alpha):
    x_mean = torch.tensor(x)
    s = awq.awq_scales(x_mean, alpha)
    assert (s > 0).all()
    assert abs((s.max() * s.min()).item() - 1) < 1e-4
    # s ∝ x^α: every ratio between two channels is the ratio of their means to the power α
    expected = (x_mean / x_mean[0]) ** alpha
    torch.testing.assert_close(s / s[0], expected, rtol=1e-4, atol=1e-6)


def test_alpha_zero_is_round_to_nearest():
    assert torch.equal(awq.awq_scales(torch.tensor([0.1, 5.0, 30.0]), 0.0), torch.ones(3))


def test_duo_scaling_divides_by_the_normalised_weight_magnitude():
    w = torch.tensor([[1.0, -2.0, 4.0, 0.5], [2.0, 2.0, -1.0, 1.0]])
    # |W| / max over each group of 2 -> [[.5, 1, 1, .125], [1, 1, 1, 1]], mean over rows:
    w_mean = awq.weight_mean([w], group_size=2)
    torch.testing.assert_close(w_mean, torch.tensor([0.75, 1.0, 1.0, 0.5625]), rtol=1e-5, atol=1e-6)
    x_mean = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = awq.awq_scales(x_mean, 0.5, w_mean)
    raw = x_mean.sqrt() / (w_mean.sqrt() + 1e-4)
    torch.testing.assert_close(s, raw / (raw.max() * raw.min()).sqrt())


# --- the α search -----------------------------------------------------------------------------

def outlier_inputs(seed: int, tokens: int = 64, width: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, width, generator=g)
    x[:, :3] *= 25  # a few salient channels, as in a real model
    return x


def brute_force_errors(weight, x, bits, group_size):
    """Independent evaluation of every α of the grid on one linear layer."""
    x_mean = x.abs().mean(0)
    reference = x @ weight.t()
    errors = []
    for alpha in [i / 20 for i in range(20)]:
        s = x_mean ** alpha
        s = s / torch.sqrt(s.max() * s.min())
        w_hat = fake_quantize(weight * s, bits, group_size=group_size, **GROUP) / s
        errors.append(((x @ w_hat.t() - reference) ** 2).mean().item())
    return torch.tensor(errors, dtype=torch.float64)


@pytest.mark.parametrize("seed,bits", [(0, 4), (1, 3), (2, 2)])
def test_search_returns_the_best_alpha_of_the_grid(seed, bits):
    torch.manual_seed(seed)
    linear = nn.Linear(64, 32, bias=False)
    original = linear.weight.detach().clone()
    x = outlier_inputs(seed)
    found = awq.search_scale(linear, [linear], [x[None]], [{}], QuantScheme(bits, 16))
    expected = brute_force_errors(original, x, bits, 16)
    torch.testing.assert_close(found.errors, expected, rtol=1e-4, atol=1e-9)
    assert found.alpha == pytest.approx(int(expected.argmin()) / 20)
    assert found.alpha > 0  # outlier channels: scaling beats round-to-nearest
    assert torch.equal(linear.weight, original)  # the search leaves the layer as it was


def test_search_over_a_shared_input_measures_the_scope_output():
    torch.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(64, 48, bias=False), nn.SiLU(), nn.Linear(48, 64, bias=False))
    x = [outlier_inputs(5, tokens=32)[None], outlier_inputs(6, tokens=16)[None]]
    found = awq.search_scale(mlp, [mlp[0]], x, [{}, {}], QuantScheme(3, 32))
    assert found.errors.shape == (20,)
    assert found.errors[int(round(found.alpha * 20))] == found.errors.min()
    # α = 0 is round to nearest of the first layer only
    original = mlp[0].weight.detach().clone()
    with torch.no_grad():
        reference = [mlp(b) for b in x]
        mlp[0].weight.copy_(fake_quantize(original, 3, group_size=32, **GROUP))
        rtn = awq.output_error([mlp(b) for b in x], reference)
    assert found.errors[0].item() == pytest.approx(rtn, rel=1e-5)


# --- clipping ---------------------------------------------------------------------------------

def group_output_errors(weight, q_weight, x, group_size):
    """Σ_t (x_t,G · (w - q)_n,G)², computed from the tokens, [N, K/g]."""
    n, k = weight.shape
    delta = (weight - q_weight).reshape(n, k // group_size, group_size)
    xg = x.reshape(-1, k // group_size, group_size)
    partial = torch.einsum("tgi,ngi->tng", xg.double(), delta.double())
    return partial.pow(2).sum(0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([2, 3, 4, 8]),
       group_size=st.sampled_from([8, 16, 32]), heavy=st.booleans())
def test_clipping_never_increases_the_output_error(seed, bits, group_size, heavy):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(8, 32, generator=g)
    if heavy:  # a heavy-tailed row, where clipping pays off
        weight[0] = torch.distributions.StudentT(2.0).sample((32,))
    x = torch.randn(48, 32, generator=g) * (torch.rand(32, generator=g) * 3)
    ratio = awq.search_clip(weight, x, QuantScheme(bits, group_size))
    assert ratio.shape == (8, 32 // group_size)
    assert set(ratio.unique().tolist()) <= set(awq.CLIP_RATIOS.tolist())
    clipped = fake_quantize(weight, bits, group_size=group_size, clip_ratio=ratio, **GROUP)
    plain = fake_quantize(weight, bits, group_size=group_size, **GROUP)
    err_clip = group_output_errors(weight, clipped, x, group_size)
    err_plain = group_output_errors(weight, plain, x, group_size)
    assert (err_clip <= err_plain * (1 + 1e-5) + 1e-9).all()
    # and it is the best ratio of the grid, group by group
    for r in awq.CLIP_RATIOS.tolist():
        other = fake_quantize(weight, bits, group_size=group_size, clip_ratio=r, **GROUP)
        assert (err_clip <= group_output_errors(weight, other, x, group_size) * (1 + 1e-5)
                + 1e-9).all()


def test_clipping_lowers_the_output_error_of_real_layers(tiny, samples):
    model, _ = tiny
    inputs = blocks.capture_block_inputs(model, samples)
    block = model.model.layers[2]
    names = ["self_attn.o_proj", "mlp.down_proj", "mlp.up_proj"]
    feats = awq.capture_linear_inputs(block, inputs, names)
    for name in names:
        w = block.get_submodule(name).weight.detach()
        x = torch.cat(feats[name]).reshape(-1, w.shape[1])
        ratio = awq.search_clip(w, x, QuantScheme(3, 128))
        assert (ratio < 1).any()
        clipped = fake_quantize(w, 3, group_size=128, clip_ratio=ratio, **GROUP)
        plain = fake_quantize(w, 3, group_size=128, **GROUP)
        assert ((x @ (w - clipped).t()) ** 2).sum() < ((x @ (w - plain).t()) ** 2).sum()


# --- the whole model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def awq_4bit(tiny, samples):
    model, _ = tiny
    report = {}
    quantized = awq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False,
                                   report=report)
    return quantized, report


@pytest.mark.slow
def test_quantize_model_replaces_every_block_linear(tiny, awq_4bit):
    model, _ = tiny
    quantized, report = awq_4bit
    names = [n for n, m in quantized.named_modules() if isinstance(m, QuantLinear)]
    assert len(names) == 6 * 7
    assert all(m.bits == 4 and m.group_size == 128 for m in quantized.modules()
               if isinstance(m, QuantLinear))
    assert isinstance(quantized.lm_head, nn.Linear)
    # GQA (2 kv heads, 4 heads): v -> o is skipped, three groups per block
    assert len(report) == 6 * 3
    assert "model.layers.0.self_attn.o_proj" not in report
    assert all(r.alpha in awq.ALPHAS.tolist() for r in report.values())
    assert ev.model_size_bytes(quantized) < ev.model_size_bytes(model)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [4, 3])
def test_awq_beats_round_to_nearest(tiny, bits):
    model, tok = tiny
    samples = data.calibration_samples(tok, 4, 256, seed=0)
    ppl = lambda m: ev.perplexity(m, tok, max_windows=16)  # noqa: E731
    rtn = ppl(ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128))
    assert ppl(awq.quantize_model(copy.deepcopy(model), samples, bits, 128, progress=False)) < rtn


def test_quantize_model_per_channel(tiny, samples):
    model, _ = tiny
    quantized = awq.quantize_model(copy.deepcopy(model), samples[:1, :64], 8, None,
                                   progress=False)
    layer = quantized.model.layers[0].mlp.down_proj
    assert isinstance(layer, QuantLinear) and layer.scales.shape == (1, 256)
    with torch.no_grad():
        torch.testing.assert_close(quantized(samples[:1]).logits, model(samples[:1]).logits,
                                   rtol=0.05, atol=0.05)


# --- the salient-weight experiment -----------------------------------------------------------

def test_keep_salient_keeps_the_chosen_columns_in_float(tiny, samples):
    model, _ = tiny
    stats = calib.collect_activation_stats(model, samples)
    kept = awq.keep_salient(copy.deepcopy(model), stats, fraction=0.01, by="activation", bits=3)
    name = "model.layers.1.mlp.down_proj"
    before = model.get_submodule(name).weight
    after = kept.get_submodule(name).weight
    top = stats[name].mean_abs.topk(8).indices  # 1 % of 768 inputs
    assert torch.equal(after[:, top], before[:, top])
    rest = torch.ones(768, dtype=torch.bool)
    rest[top] = False
    rtn = fake_quantize(before.detach(), 3, group_size=128, **GROUP)
    assert torch.equal(after[:, rest], rtn[:, rest])
    plain = awq.keep_salient(copy.deepcopy(model), stats, fraction=0.0, bits=3)
    assert torch.equal(plain.get_submodule(name).weight, rtn)


def test_salient_channel_criteria():
    w = torch.tensor([[0.1, 3.0, 0.2, 0.0], [0.1, -3.0, 0.1, 0.5]])
    stats = calib.ActivationStats(absmax=torch.ones(4), mean_abs=torch.tensor([1.0, 0.1, 9.0, 2.0]),
                                  mean_sq=torch.ones(4), tokens=1)
    assert awq.salient_channels(w, stats, 2, "activation").tolist() == [2, 3]
    assert awq.salient_channels(w, stats, 1, "weight").tolist() == [1]
    picks = awq.salient_channels(w, None, 3, "random", torch.Generator().manual_seed(0))
    assert len(set(picks.tolist())) == 3
    with pytest.raises(ValueError, match="by must be one of"):
        awq.salient_channels(w, stats, 1, "gradient")
    with pytest.raises(ValueError, match="statistics"):
        awq.salient_channels(w, None, 1, "activation")


# --- bad input --------------------------------------------------------------------------------

def test_bad_samples_are_refused(tiny, samples):
    model, _ = tiny
    with pytest.raises(TypeError, match="integer token ids"):
        awq.quantize_model(model, samples.float(), progress=False)
    with pytest.raises(ValueError, match=r"shape \[n, seq_len\]"):
        awq.quantize_model(model, samples[None], progress=False)
    with pytest.raises(ValueError, match="empty"):
        awq.quantize_model(model, samples[:0], progress=False)
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        awq.quantize_model(model, samples + 4096, progress=False)


def test_invalid_bits_and_group_size_are_refused(tiny, samples):
    model, _ = tiny
    for bits in (5, 1, 4.0, True):
        with pytest.raises(ValueError, match="bits must be"):
            awq.quantize_model(model, samples, bits, progress=False)
    with pytest.raises(ValueError, match=r"group_size 96 does not divide the 256 inputs of "
                                         r"model\.layers\.0\.self_attn\.q_proj"):
        awq.quantize_model(model, samples, 4, 96, progress=False)
    for group_size in (0, -128, 12.5):
        with pytest.raises(ValueError, match="group_size must be a positive integer"):
            awq.quantize_model(model, samples, 4, group_size, progress=False)


def test_a_block_without_the_llama_layout_is_named():
    model = mha_model()
    model.model.layers[1].mlp.fc_in = model.model.layers[1].mlp.up_proj
    del model.model.layers[1].mlp.up_proj
    with pytest.raises(ValueError, match=r"model\.layers\.1 has no 'mlp\.up_proj'"):
        awq.quantize_model(model, torch.zeros(1, 8, dtype=torch.long), progress=False)
    model = mha_model()
    model.model.layers[0].post_attention_layernorm = nn.Identity()
    with pytest.raises(ValueError, match=r"model\.layers\.0\.post_attention_layernorm "
                                         r"\(Identity\) has no weight"):
        awq.quantize_model(model, torch.zeros(1, 8, dtype=torch.long), progress=False)
    model = mha_model()
    model.model.layers[0].self_attn.k_proj = nn.Conv1d(128, 128, 1)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.k_proj is a Conv1d, "
                                         r"not an nn\.Linear"):
        awq.quantize_model(model, torch.zeros(1, 8, dtype=torch.long), progress=False)


def test_a_model_without_decoder_blocks_is_refused():
    with pytest.raises(ValueError, match="Sequential has no model.layers"):
        awq.quantize_model(nn.Sequential(nn.Linear(4, 4)), torch.zeros(1, 4, dtype=torch.long),
                           progress=False)
