"""Rotations: Hadamard matrices, folding (the float model unchanged, on a small random Llama and
on qcourse-tiny), what a rotation does to an outlier, and the W4A4 experiment (slow)."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qcourse import rotate, transforms
from qcourse.layers import QuantizedInput
from qcourse.quant import fake_quantize


def small_llama(tied: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """A random 2-layer Llama with GQA (4 heads, 2 kv heads, head_dim 16), MLP width 96 = 3·32
    (a block-diagonal Hadamard), and norms that are not 1."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         tie_word_embeddings=tied, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 2.0)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("n", [1, 2, 16, 256])
def test_hadamard_is_orthogonal_symmetric_and_flat(n):
    H = rotate.hadamard(n)
    torch.testing.assert_close(H @ H.t(), torch.eye(n, dtype=torch.float64))
    assert torch.equal(H, H.t())
    torch.testing.assert_close(H.abs(), torch.full((n, n), n**-0.5, dtype=torch.float64))


def test_hadamard_by_hand():
    assert (rotate.hadamard(2) * 2**0.5).round().tolist() == [[1, 1], [1, -1]]
    assert (rotate.hadamard(4) * 2).tolist()[3] == [1, -1, -1, 1]


@pytest.mark.parametrize("n", [0, 3, 6, 10, 2.0, True])
def test_hadamard_refuses_orders_it_cannot_build(n):
    with pytest.raises(ValueError, match="Hadamard"):
        rotate.hadamard(n)


@pytest.mark.parametrize("n", [4, 12, 20, 28, 36, 44, 72, 96, 576, 768, 1536])
def test_hadamard_of_orders_that_are_not_powers_of_two(n):
    """Paley's constructions (q + 1 and 2(q + 1)) times Sylvester's: SmolLM2's 576 = 36·16 and
    1536 = 12·128 are one matrix each, every entry ±1/√n."""
    H = rotate.hadamard(n)
    torch.testing.assert_close(H @ H.t(), torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(H.abs(), torch.full((n, n), n**-0.5, dtype=torch.float64))


def test_paley_by_hand():
    # q = 3 (≡ 3 mod 4): squares mod 3 are {1}, χ = [0, 1, -1]; J[i, j] = χ(j - i)
    assert rotate.paley(4).tolist() == [[1, 1, 1, 1], [-1, 1, 1, -1], [-1, -1, 1, 1], [-1, 1, -1, 1]]
    H = rotate.paley(36)                                  # q = 17 (≡ 1 mod 4): 2(q + 1)
    assert torch.equal(H @ H.t(), 36 * torch.eye(36, dtype=torch.float64))
    assert rotate.paley(16) is None                       # 15 and 7 are not primes of the right kind


def test_block_diagonal_hadamard_spreads_an_outlier_over_its_block_only():
    x = torch.zeros(1, 576, dtype=torch.float64)
    x[0, 100] = 48.0
    full = x @ rotate.random_hadamard(576, seed=1)
    blocks = x @ rotate.random_hadamard(576, seed=1, block=64)
    torch.testing.assert_close(full.abs(), torch.full_like(full, 2.0))          # 48 / √576
    assert (blocks != 0).sum() == 64 and blocks.abs().max().item() == pytest.approx(6.0)  # 48 / √64
    with pytest.raises(ValueError, match="does not divide"):
        rotate.random_hadamard(576, block=128)


def test_random_orthogonal_is_orthogonal_and_uneven():
    Q = rotate.random_orthogonal(256, seed=0)
    torch.testing.assert_close(Q @ Q.t(), torch.eye(256, dtype=torch.float64))
    assert Q.abs().max() > 3 / 16                        # Hadamard entries are all exactly 1/16
    with pytest.raises(ValueError, match="kind must be"):
        rotate.rotation(16, kind="spin")


@pytest.mark.parametrize("n", [64, 96, 768])
def test_random_hadamard_is_orthogonal_and_seeded(n):
    Q = rotate.random_hadamard(n, seed=3)
    torch.testing.assert_close(Q @ Q.t(), torch.eye(n, dtype=torch.float64))
    assert torch.equal(Q, rotate.random_hadamard(n, seed=3))
    assert not torch.equal(Q, rotate.random_hadamard(n, seed=4))


@settings(max_examples=30, deadline=None)
@given(channel=st.integers(0, 255), size=st.floats(1, 1e4), seed=st.integers(0, 100))
def test_an_outlier_spreads_evenly_over_every_channel(channel, size, seed):
    """x = M·e_j becomes ±M/√n in all n channels: peak-to-RMS falls from √n to exactly 1."""
    x = torch.zeros(1, 256, dtype=torch.float64)
    x[0, channel] = size
    rotated = x @ rotate.random_hadamard(256, seed)
    torch.testing.assert_close(rotated.abs(), torch.full_like(rotated, size / 16))
    assert rotate.peak_to_rms(x).item() == pytest.approx(16)
    assert rotate.peak_to_rms(rotated).item() == pytest.approx(1)


def test_rotation_shrinks_the_4bit_error_of_a_row_with_an_outlier():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 256, generator=gen)
    x[:, 7] = 60.0                                   # one outlier channel, every token
    Q = rotate.random_hadamard(256).float()
    plain = (fake_quantize(x, 4, symmetric=True, granularity="channel", axis=0) - x).pow(2).mean()
    xr = x @ Q
    back = fake_quantize(xr, 4, symmetric=True, granularity="channel", axis=0) @ Q.t()
    assert (back - x).pow(2).mean() < plain / 10


def test_fold_norm_keeps_the_output():
    torch.manual_seed(0)
    norm = nn.RMSNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(-2, 2)                  # any sign
    linears = [nn.Linear(8, 5, bias=False), nn.Linear(8, 3, bias=False)]
    x = torch.randn(4, 8)
    before = [lin(norm(x)) for lin in linears]
    transforms.fold_norm_weight(norm, linears)
    assert torch.equal(norm.weight.detach(), torch.ones(8))
    for b, lin in zip(before, linears):
        torch.testing.assert_close(lin(norm(x)), b)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("options", [{}, {"block": 32}, {"kind": "orthogonal"}], ids=str)
def test_rotated_llama_computes_the_same_logits(tied, options):
    model = small_llama(tied)
    ids = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(1))
    rotated = rotate.rotate_model(copy.deepcopy(model), seed=5, **options)
    torch.testing.assert_close(logits(rotated, ids), logits(model, ids), rtol=1e-4, atol=1e-4)
    assert rotated.get_output_embeddings().weight.data_ptr() != \
        rotated.get_input_embeddings().weight.data_ptr()
    assert isinstance(rotated.model.layers[0].mlp.down_proj, rotate.OnlineRotation)
    # the weights did change: the embedding rows were rotated
    assert not torch.allclose(rotated.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_folding_the_norms_alone_keeps_the_logits_and_sets_norms_to_one():
    model = small_llama()
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(2))
    folded = rotate.fold_norms(copy.deepcopy(model))
    torch.testing.assert_close(logits(folded, ids), logits(model, ids), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(p, torch.ones_like(p)) for n, p in folded.named_parameters() if "norm" in n)


def test_rotation_experiment_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="kinds must be among"):
        rotate.rotation_experiment(small_llama(), None, kinds=("plain", "spun"))


def test_prepare_quantizes_activations_alone_and_refuses_unknown_kinds():
    from qcourse.experiments import rotation

    model = rotation.prepare(small_llama(), "norms folded", None, 4)
    assert isinstance(model.model.layers[0].self_attn.q_proj, QuantizedInput)
    assert isinstance(model.model.layers[0].self_attn.q_proj.layer, nn.Linear)   # W16A4
    assert rotation.setting_name(None, 4) == "W16A4" and rotation.setting_name(4, None) == "W4A16"
    with pytest.raises(ValueError, match="kind must be"):
        rotation.prepare(small_llama(), "spun")


def test_rotated_model_takes_quantized_weights_and_inputs():
    model = rotate.rotate_model(small_llama(), seed=0)
    rotate.quantize_weights_activations(model, 4, 8)
    down = model.model.layers[0].mlp.down_proj
    assert isinstance(down, rotate.OnlineRotation) and isinstance(down.layer, QuantizedInput)
    ids = torch.randint(0, 64, (1, 10))
    assert torch.isfinite(logits(model, ids)).all()


def test_per_token_int_by_hand_and_quantize_inputs_skips_the_head():
    from qcourse.layers import per_token_int, quantize_inputs

    rows = torch.tensor([[7.0, -3.5, 1.0], [0.7, 0.35, -0.1]])
    # 4 bits: s = absmax / 7 per row: 1.0 and 0.1 -> -3.5 rounds to even -4, 0.35 to 0.4
    torch.testing.assert_close(per_token_int(rows, 4), torch.tensor([[7, -4, 1], [0.7, 0.4, -0.1]]))
    model = small_llama()
    quantize_inputs(model, lambda r: r)
    assert isinstance(model.model.layers[1].mlp.down_proj, QuantizedInput)
    assert isinstance(model.lm_head, nn.Linear)


# ---------------------------------------------------------------------------- qcourse-tiny

@pytest.mark.slow
def test_rotated_qcourse_tiny_is_the_same_model(tiny):
    from qcourse import data

    model, tok = tiny
    ids = data.calibration_samples(tok, 2, 128, seed=0)
    rotated = rotate.rotate_model(copy.deepcopy(model))
    torch.testing.assert_close(logits(rotated, ids), logits(model, ids), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_rotation_makes_qcourse_tiny_w4a4_better(tiny):
    model, tok = tiny
    results = rotate.rotation_experiment(model, tok, settings=((4, 4),), max_windows=4)
    plain, rotated = results["plain"], results["rotated"]
    assert rotated["float"] == pytest.approx(plain["float"], rel=1e-4)
    assert rotated["W4A4"] < plain["W4A4"]
    assert plain["W4A4"] > plain["float"]


@pytest.mark.slow
def test_rotation_removes_the_outliers_of_notebook_10s_model(tiny):
    """qcourse.models.with_outliers (4 residual channels 100x larger at every q/k/v and gate/up
    input) computes the same function, but its W4A4 collapses; rotating it undoes the damage:
    the channel peak-to-RMS of those inputs falls and W4A4 gets far better."""
    from qcourse import calib, data, models

    model, tok = tiny
    outliers = models.with_outliers(model)
    rotated = rotate.rotate_model(copy.deepcopy(outliers))
    ids = data.calibration_samples(tok, 2, 64, seed=0)
    torch.testing.assert_close(logits(rotated, ids), logits(model, ids), rtol=1e-3, atol=1e-3)

    def peak(m):
        stats = calib.collect_activation_stats(m, ids)
        return max((s.absmax.max() / s.mean_sq.mean().sqrt()).item()
                   for name, s in stats.items() if name.endswith(("q_proj", "gate_proj")))

    assert peak(rotated) < peak(outliers) / 5
    results = rotate.rotation_experiment(outliers, tok, settings=((4, 4),), max_windows=2)
    plain = rotate.rotation_experiment(model, tok, settings=((4, 4),), max_windows=2)["plain"]
    assert results["plain"]["W4A4"] > 2 * plain["W4A4"]          # the outliers ruin W4A4
    assert results["rotated"]["W4A4"] < results["plain"]["W4A4"] / 2
