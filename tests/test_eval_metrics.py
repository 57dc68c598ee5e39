"""Evaluation beyond perplexity (qcourse.eval): KL divergence, top-1 agreement, greedy-continuation
match length, peak memory, on hand-computed cases and properties."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from qcourse import eval as qeval


def test_kl_of_a_hand_computed_pair():
    # p = softmax([0, ln 3]) = (1/4, 3/4), q = softmax([0, 0]) = (1/2, 1/2):
    # KL(p || q) = 1/4 ln(1/2) + 3/4 ln(3/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    kl = qeval.kl_per_token(torch.tensor([[0.0, 0.0]], dtype=torch.float64),
                            torch.tensor([[0.0, math.log(3)]], dtype=torch.float64))
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.130812, abs=1e-6)


def test_kl_is_not_symmetric_and_is_zero_for_equal_distributions():
    a = torch.tensor([0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, math.log(3)], dtype=torch.float64)
    assert qeval.kl_per_token(a, a).item() == 0.0
    # KL(q || p) = 1/2 ln(2) + 1/2 ln(2/3), not the same as KL(p || q)
    reverse = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert qeval.kl_per_token(b, a).item() == pytest.approx(reverse, rel=1e-12)
    assert reverse != pytest.approx(qeval.kl_per_token(a, b).item())


finite_logits = arrays("float64", st.tuples(st.integers(1, 4), st.integers(2, 9)),
                       elements=st.floats(-30, 30))


@settings(max_examples=60, deadline=None)
@given(finite_logits, finite_logits, st.floats(-50, 50))
def test_kl_is_non_negative_and_ignores_a_shift_of_the_logits(x, y, shift):
    if x.shape != y.shape:
        y = y.reshape(-1)[: x.size].reshape(x.shape) if y.size >= x.size else x[::-1].copy()
    q, p = torch.from_numpy(x), torch.from_numpy(y)
    kl = qeval.kl_per_token(q, p)
    assert (kl >= -1e-12).all()
    assert torch.allclose(qeval.kl_per_token(q + shift, p - shift), kl, atol=1e-9)


def test_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        qeval.kl_per_token(torch.zeros(2, 5), torch.zeros(2, 4))


def test_divergence_meter_on_a_hand_made_batch():
    # vocabulary of 2; the model is uniform (every token: -ln 1/2), the reference is sure of
    # token 1 at every position; the window [0, 1, 1] predicts tokens 1 and 1
    ids = torch.tensor([[0, 1, 1]])
    uniform = torch.zeros(1, 3, 2)
    sure = torch.tensor([[[0.0, 5.0]] * 3])
    meter = qeval.Divergence()
    meter.update(uniform, sure, ids)
    out = meter.result()
    assert out["tokens"] == 2
    assert out["perplexity"] == pytest.approx(2.0)
    p1 = 1 / (1 + math.exp(-5))                   # reference's probability of token 1
    kl = p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5)
    assert out["kl_divergence"] == pytest.approx(kl, rel=1e-9)
    assert out["top1_agreement"] == 0.0           # argmax of all-zero logits is token 0

    meter.update(sure, sure, ids)                  # a second batch: the reference itself
    assert meter.result()["tokens"] == 4
    assert meter.result()["top1_agreement"] == 0.5
    assert meter.result()["kl_divergence"] == pytest.approx(kl / 2, rel=1e-9)


def test_an_empty_meter_refuses_to_report():
    with pytest.raises(ValueError, match="no tokens"):
        qeval.Divergence().result()


@pytest.mark.parametrize("a, b, n", [([5, 7, 9], [5, 7, 2], 2), ([1, 2], [1, 2], 2),
                                     ([3], [4], 0), ([], [1], 0), ([1, 2, 3], [1, 2], 2)])
def test_match_length(a, b, n):
    assert qeval.match_length(a, b) == n


def counting_model(vocab: int, diverge_after: int | None = None):
    """ids -> logits predicting (last token + 1) mod vocab; from position ``diverge_after`` on
    (the length of the whole sequence), it predicts 0 instead."""
    def call(ids):
        b, t = ids.shape
        nxt = (ids + 1) % vocab
        if diverge_after is not None:
            positions = torch.arange(t).expand(b, t)
            nxt = torch.where(positions >= diverge_after, torch.zeros_like(nxt), nxt)
        return torch.nn.functional.one_hot(nxt, vocab).float() * 10
    return call


def test_greedy_tokens_with_any_logits_callable():
    assert qeval.greedy_tokens(counting_model(10), [3, 4], 5) == [5, 6, 7, 8, 9]
    assert qeval.greedy_tokens(counting_model(10), [8], 4) == [9, 0, 1, 2]


def test_greedy_match_length_counts_the_common_prefix():
    prompts = torch.tensor([[1, 2], [5, 6]])
    # the second model starts predicting 0 once the sequence is 4 tokens long: the third new
    # token (sequence length 4) differs; for prompt [5, 6] it continues 7, 8 then 0 vs 9
    same = qeval.greedy_match_length(counting_model(50), counting_model(50), prompts=prompts,
                                     new_tokens=6)
    assert same == 6
    early = qeval.greedy_match_length(counting_model(50, diverge_after=3), counting_model(50),
                                      prompts=prompts, new_tokens=6)
    assert early == 2
    precomputed = qeval.greedy_continuations(counting_model(50), prompts, 6)
    assert qeval.greedy_match_length(counting_model(50, diverge_after=3), precomputed,
                                     prompts=prompts, new_tokens=6) == 2
    with pytest.raises(ValueError, match="tokenizer"):
        qeval.greedy_match_length(counting_model(5), counting_model(5))


def test_logits_fn_accepts_models_and_callables_only():
    call = counting_model(3)
    assert qeval.logits_fn(call) is call
    with pytest.raises(TypeError, match="callable"):
        qeval.logits_fn(42)


@pytest.mark.slow
def test_a_model_against_itself(tiny):
    model, tokenizer = tiny
    out = qeval.divergence(model, model, tokenizer, seq_len=128, max_windows=2)
    assert out["kl_divergence"] == 0.0 and out["top1_agreement"] == 1.0
    assert out["tokens"] == 2 * 127
    ppl = qeval.perplexity(model, tokenizer, seq_len=128, max_windows=2)
    assert out["perplexity"] == pytest.approx(ppl, rel=1e-6)
    prompts = qeval.continuation_prompts(tokenizer, 2, 16)
    assert qeval.greedy_match_length(model, model, prompts=prompts, new_tokens=5) == 5


@pytest.mark.slow
def test_kv_cache_greedy_equals_rereading_the_sequence(tiny):
    model, tokenizer = tiny
    prompt = qeval.continuation_prompts(tokenizer, 1, 24)[0].tolist()
    assert qeval.greedy_tokens(model, prompt, 8) == qeval.greedy_tokens(qeval.logits_fn(model),
                                                                         prompt, 8)


def test_peak_rss_can_be_restarted():
    if not qeval.reset_peak_rss():
        pytest.skip("this system does not let a process reset its peak RSS")
    base = qeval.current_rss()
    block = torch.ones(64, 1024, 1024)            # 256 MiB
    del block
    assert qeval.peak_rss() - base > 200 * 2**20
    assert qeval.reset_peak_rss()
    assert qeval.peak_rss() - qeval.current_rss() < 50 * 2**20
