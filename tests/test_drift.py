"""qcourse.evaluation.drift: perplexity, KL and top-1 against a reference kept as its final
hidden states, window by window. It must give the numbers of the one scoring path
(evaluation.score, evaluation.divergence) with a fraction of their memory."""
import copy
import math

import pytest
import torch

from qcourse import evaluation, ptq
from qcourse.evaluation import Protocol, Score, drift

pytestmark = pytest.mark.usefixtures("one_thread")
TWO = Protocol("two windows", 2)


@pytest.fixture(scope="module")
def tiny_reference(tiny):
    model, tokenizer = tiny
    return drift.reference(model, tokenizer, TWO)


def test_the_reference_scores_as_the_scoring_path_does(tiny, tiny_reference):
    model, tokenizer = tiny
    expected = evaluation.score(model, tokenizer, TWO)
    assert tiny_reference.score.protocol == TWO and tiny_reference.hidden.shape == (2, 512, 256)
    torch.testing.assert_close(tiny_reference.score.nll, expected.nll, rtol=1e-5, atol=1e-5)


def test_a_model_against_its_own_reference_has_no_drift(tiny, tiny_reference):
    found = drift.drift(tiny[0], tiny_reference)
    torch.testing.assert_close(found.kl, torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    assert found.top1.tolist() == [1.0, 1.0] and found.top1_mean == 1.0
    torch.testing.assert_close(found.score.nll, tiny_reference.score.nll)


def test_a_quantized_model_drifts_as_divergence_measures_it(tiny, tiny_reference):
    """KL, top-1 and NLL per window equal evaluation.divergence's (whole logits at once), and
    the slice size changes nothing."""
    model, tokenizer = tiny
    quantized = ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 64)
    expected = evaluation.divergence(quantized, model, tokenizer, max_windows=2, per_window=True)
    for step in (64, 100, 511, 1000):
        found = drift.drift(quantized, tiny_reference, step=step)
        torch.testing.assert_close(found.kl, torch.tensor(expected["kl_per_window"],
                                                         dtype=torch.float64), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(found.top1, torch.tensor(expected["top1_per_window"],
                                                            dtype=torch.float64))
        torch.testing.assert_close(found.score.nll, torch.tensor(expected["nll_per_window"]),
                                   rtol=1e-5, atol=1e-5)
    assert found.kl_mean > 0 and 0.5 < found.top1_mean < 1
    assert math.isclose(found.score.perplexity, expected["perplexity"], rel_tol=1e-5)
    difference = evaluation.paired_difference(tiny_reference.score, found.score)
    assert difference.windows == 2


def test_a_changed_reference_head_is_refused(tiny):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    ref = drift.reference(model, tokenizer, Protocol("one window", 1))
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="head changed"):
        drift.drift(model, ref)


def test_bad_arguments_are_refused(tiny, tiny_reference):
    model, tokenizer = tiny
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        drift.body_and_head(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Protocol"):
        drift.reference(model, tokenizer, 4)
    with pytest.raises(TypeError, match="Reference"):
        drift.drift(model, tiny_reference.score)
    hidden = tiny_reference.hidden[0]
    with pytest.raises(ValueError, match="step"):
        drift.window_drift(hidden, model.lm_head, tiny_reference.ids[0], step=0)
    with pytest.raises(ValueError, match="one window"):
        drift.window_drift(hidden[:10], model.lm_head, tiny_reference.ids[0])
    with pytest.raises(ValueError, match="same shape"):
        drift.window_drift(hidden, model.lm_head, tiny_reference.ids[0], hidden[:, :5],
                           model.lm_head)
    nll, kl, top1 = drift.window_drift(hidden, model.lm_head, tiny_reference.ids[0])
    assert nll > 0 and math.isnan(kl) and math.isnan(top1)


def test_paired_mean_difference_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.1, 3.9])
    d = drift.paired_mean_difference(a, b)
    diffs = [0.5, 0.1, 0.9]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    half = 4.302653 * sd / math.sqrt(3)                        # t_{2, 0.975}
    assert math.isclose(d.mean, mean, rel_tol=1e-9)
    assert math.isclose(d.high - d.mean, half, rel_tol=1e-5)
    assert d.windows == 3 and d.significant == (mean - half > 0)
    assert "paired interval over 3 windows" in str(d)
    same = drift.paired_mean_difference(a, a + 0.25)             # no spread: a zero-width interval
    assert same.low == same.high == pytest.approx(0.25) and same.significant
    noisy = drift.paired_mean_difference(a, torch.tensor([2.0, 1.0, 3.0]))
    assert not noisy.significant and "inside the noise" in str(noisy)
    with pytest.raises(ValueError, match="same windows"):
        drift.paired_mean_difference(a, a[:2])
    with pytest.raises(ValueError, match="at least 2"):
        drift.paired_mean_difference(a[:1], a[:1])
    with pytest.raises(ValueError, match="confidence"):
        drift.paired_mean_difference(a, b, confidence=1.5)


def test_smollm2_two_blocks_against_its_reference(smollm2_2layers):
    """The real model's widths and vocabulary (49,152: the reason for the slices), cut to two
    blocks: a 3-bit copy drifts, measured window by window against the float one; the reference
    keeps 4.7 MB of hidden states per 4 windows, not 400 MB of logits."""
    model, tokenizer = smollm2_2layers
    one = Protocol("one window", 1)
    ref = drift.reference(model, tokenizer, one)
    assert ref.hidden.shape == (1, 512, 576) and ref.hidden.dtype == torch.float32
    torch.testing.assert_close(ref.score.nll, evaluation.score(model, tokenizer, one).nll,
                               rtol=1e-5, atol=1e-5)
    found = drift.drift(ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 64), ref)
    assert found.kl.shape == (1,) and found.kl_mean > 0 and 0 < found.top1_mean < 1
    assert isinstance(found.score, Score) and found.score.protocol == one

