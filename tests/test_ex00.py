"""Exercises of notebook 00: each check accepts a right answer, rejects typical mistakes and an
answer that calls the package's own function; the predictions match what the notebook measures."""
import math

import pytest
import torch

from qcourse import evaluation as qeval, formats, models, quant
from qcourse.exercises import Question, ex00

QUESTIONS = [q for q in vars(ex00).values() if isinstance(q, Question)]


def verdict(question, answer):
    return question.check(answer).status


def test_weight_bytes_rejects_the_package_function_however_it_is_called():
    q = ex00.weight_bytes
    assert verdict(q, lambda n, b: math.ceil(n * b / 8)) == "correct"
    for cheat in (lambda n, b: formats.memory_bytes(n, b),
                  lambda n, b: math.ceil(n * formats.bits_per_weight(b) / 8)):
        result = q.judge(cheat)
        assert result.status == "wrong" and "qcourse.formats." in result.message


def test_perplexity_from_nll_typical_mistakes():
    q = ex00.perplexity_from_nll
    assert verdict(q, lambda nll: math.exp(nll.mean().item())) == "correct"
    assert verdict(q, lambda nll: math.exp(nll.median().item())) == "wrong"
    assert verdict(q, lambda nll: -nll.mean().item()) == "wrong"          # no exponential
    assert verdict(q, lambda nll: math.exp(-nll.mean().item())) == "wrong"  # sign flipped


def test_two_bit_levels():
    q = ex00.two_bit_levels
    assert verdict(q, 3) == "correct"
    assert verdict(q, 4) == "wrong"           # 2^2 codes, but symmetric rounding uses 3
    assert verdict(q, 2) == verdict(q, "3") == "wrong"
    assert verdict(q, ...) == "not attempted"


def test_two_bit_perplexity_choices():
    q = ex00.two_bit_perplexity
    assert verdict(q, "d") == verdict(q, "D") == "correct"
    assert all(verdict(q, letter) == "wrong" for letter in "abc")
    assert verdict(q, "e") == "wrong" and verdict(q, ...) == "not attempted"


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.name)
def test_hints_are_progressive_and_the_solution_passes(q, capsys):
    assert len(q.hints) >= 2
    assert all(line not in hint for hint in q.hints
               for line in q.solution_text.splitlines()[1:] if line.strip())
    namespace = {"math": math, "torch": torch}
    exec(q.solution_text, namespace)
    answer = namespace[q.answer_name]
    assert verdict(q, answer) == "correct"


@pytest.mark.slow
def test_the_prediction_matches_the_notebooks_measurement():
    """Notebook 00's rounding experiment: symmetric 2-bit per channel, the quick protocol's
    windows, compared pairwise with fp32 as the notebook does."""
    model, tok = models.load()
    fp32 = qeval.score(model, tok, qeval.QUICK)
    with torch.no_grad():
        for layer in models.linear_layers(model).values():
            layer.weight.copy_(quant.fake_quantize(layer.weight, 2, symmetric=True,
                                                   granularity="channel"))
    change = qeval.paired_difference(fp32, qeval.score(model, tok, qeval.QUICK))
    assert change.low >= 2                                    # answer d: two times or more


def test_perplexity_from_nll_rejects_the_mean_of_inverse_probabilities():
    """The geometric mean of 1/p is not their arithmetic mean (prompt of 00.2)."""
    q = ex00.perplexity_from_nll
    assert verdict(q, lambda nll: torch.exp(nll).mean().item()) == "wrong"
