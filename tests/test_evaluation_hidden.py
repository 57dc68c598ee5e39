"""qcourse.evaluation.hidden: KL and perplexity against a float model kept as its final hidden
states give the numbers of evaluation.score and evaluation.divergence, a few positions at a time."""
import copy
import math

import pytest
import torch
from torch import nn

from qcourse import ptq
from qcourse.evaluation import Protocol, divergence, score
from qcourse.evaluation.hidden import (Compared, HiddenReference, body_and_head, compare,
                                       head_fingerprint, hidden_reference,
                                       paired_mean_difference)

pytestmark = pytest.mark.usefixtures("one_thread")
TWO = Protocol("two short windows", 2, seq_len=128)


@pytest.fixture(scope="module")
def reference(tiny):
    model, tokenizer = tiny
    return hidden_reference(model, tokenizer, TWO)


@pytest.fixture(scope="module")
def rtn3(tiny):
    return ptq.quantize_rtn(copy.deepcopy(tiny[0]), 3, "group", 64)


def test_the_reference_scores_as_score_does_and_keeps_the_hidden_states(tiny, reference):
    model, tokenizer = tiny
    assert isinstance(reference, HiddenReference) and reference.protocol == TWO
    torch.testing.assert_close(reference.score.nll, score(model, tokenizer, TWO).nll,
                               rtol=1e-5, atol=1e-6)
    assert reference.windows.shape == (2, 128)
    assert reference.hidden.shape == (2, 128, model.config.hidden_size)
    assert reference.head is model.lm_head


def test_the_float_model_against_itself_diverges_by_nothing(tiny, reference):
    found = compare(tiny[0], reference)
    assert isinstance(found, Compared)
    assert found.kl.abs().max().item() < 1e-9 and found.top1.tolist() == [1.0, 1.0]
    torch.testing.assert_close(found.score.nll, reference.score.nll)
    assert "KL 0.0000 nats per token" in str(found) and "top-1 agreement 100.0%" in str(found)


def test_kl_top1_and_perplexity_are_those_of_divergence(tiny, reference, rtn3):
    model, tokenizer = tiny
    found = compare(rtn3, reference)
    full = divergence(rtn3, model, tokenizer, seq_len=128, max_windows=2, per_window=True)
    torch.testing.assert_close(found.kl, torch.tensor(full["kl_per_window"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(found.top1, torch.tensor(full["top1_per_window"],
                                                        dtype=torch.float64))
    torch.testing.assert_close(found.score.nll, torch.tensor(full["nll_per_window"]),
                               rtol=1e-5, atol=1e-6)
    assert found.kl_divergence > 0 and found.top1_agreement < 1
    assert found.kl_divergence == pytest.approx(full["kl_divergence"], rel=1e-4)


def test_the_slice_size_changes_memory_not_results(tiny, reference, rtn3):
    coarse, fine = compare(rtn3, reference, step=1000), compare(rtn3, reference, step=7)
    torch.testing.assert_close(coarse.kl, fine.kl, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(coarse.score.nll, fine.score.nll, rtol=1e-6, atol=1e-6)


def test_bad_input_gets_clear_errors(tiny, reference, small_llama):
    model, tokenizer = tiny
    with pytest.raises(TypeError, match="Protocol"):
        hidden_reference(model, tokenizer, "quick")
    with pytest.raises(TypeError, match="HiddenReference"):
        compare(model, "reference")
    with pytest.raises(TypeError, match="Llama-family causal LM"):
        body_and_head(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="positive int"):
        compare(model, reference, step=0)
    with pytest.raises(ValueError, match="not the same architecture"):
        compare(small_llama(), reference)          # hidden size 64, not 256


def test_on_the_real_model_cut_to_two_blocks(smollm2_2layers):
    model, tokenizer = smollm2_2layers
    short = Protocol("one short window", 1, seq_len=64)
    reference = hidden_reference(model, tokenizer, short, step=16)
    quantized = ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 64)
    found = compare(quantized, reference, step=16)
    full = divergence(quantized, model, tokenizer, seq_len=64, max_windows=1, per_window=True)
    assert found.kl_divergence > 0
    assert found.kl_divergence == pytest.approx(full["kl_divergence"], rel=1e-4)
    assert found.top1_agreement == pytest.approx(full["top1_agreement"])
    assert found.score.perplexity == pytest.approx(full["perplexity"], rel=1e-5)


def test_a_changed_reference_head_is_refused(tiny):
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    kept = hidden_reference(model, tokenizer, Protocol("one window", 1, seq_len=128))
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0        # the head the reference keeps, changed in place
    with pytest.raises(ValueError, match="head changed"):
        compare(model, kept)


def test_paired_mean_difference_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.1, 3.9])
    d = paired_mean_difference(a, b)
    diffs = [0.5, 0.1, 0.9]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    half = 4.302653 * sd / math.sqrt(3)                        # t_{2, 0.975}, from a t table
    assert math.isclose(d.mean, mean, rel_tol=1e-9)
    assert math.isclose(d.high - d.mean, half, rel_tol=1e-5)
    assert d.windows == 3 and d.significant == (mean - half > 0)
    assert "paired interval over 3 windows" in str(d)
    same = paired_mean_difference(a, a + 0.25)             # no spread: a zero-width interval
    assert same.low == same.high == pytest.approx(0.25) and same.significant
    noisy = paired_mean_difference(a, torch.tensor([2.0, 1.0, 3.0]))
    assert not noisy.significant and "inside the noise" in str(noisy)
    with pytest.raises(ValueError, match="same windows"):
        paired_mean_difference(a, a[:2])
    with pytest.raises(ValueError, match="at least 2"):
        paired_mean_difference(a[:1], a[:1])
    with pytest.raises(ValueError, match="confidence"):
        paired_mean_difference(a, b, confidence=1.5)


def test_the_head_fingerprint_is_the_float64_sum_and_sum_of_squares_in_any_chunks():
    head = nn.Linear(5, 7, bias=True)
    values = torch.cat([p.detach().double().reshape(-1) for p in head.parameters()])
    expected = (values.sum().item(), values.square().sum().item())
    for chunk in (1, 3, 1 << 20):
        assert head_fingerprint(head, chunk) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        head.weight[2, 3] += 0.5
    assert head_fingerprint(head) != pytest.approx(expected, rel=1e-12)
