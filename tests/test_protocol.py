"""Evaluation protocols, per-window scores and paired intervals (qcourse.evaluation.protocol)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qcourse import evaluation
from qcourse.evaluation.protocol import (QUICK, WHOLE, Protocol, Score, paired_difference,
                                         student_t_quantile)


@pytest.mark.parametrize("dof, expected", [(1, 12.706), (3, 3.182), (7, 2.365), (30, 2.042),
                                           (227, 1.970)])
def test_t_quantiles_match_the_printed_tables(dof, expected):
    # two-sided 95 % critical values, as printed in any statistics table
    assert student_t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_rejects_nonsense():
    with pytest.raises(ValueError, match="dof"):
        student_t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="p="):
        student_t_quantile(0.3, 5)


def test_labels_say_which_windows():
    assert QUICK.label() == "quick: test windows 1-8 of 512 tokens"
    assert QUICK.label(available=5) == "quick: test windows 1-5 of 512 tokens"
    assert WHOLE.label(228) == "whole test split: 228 windows of 512 tokens"
    with pytest.raises(ValueError, match="positive int"):
        Protocol("x", 0)


def score_of(values, protocol=QUICK):
    return Score(protocol, torch.tensor(values, dtype=torch.float64))


def test_identical_models_do_not_differ():
    a = score_of([3.0, 3.5, 2.9, 3.1])
    d = paired_difference(a, a)
    assert d.ratio == 1 and not d.significant
    assert "inside the noise" in str(d)


def test_a_constant_shift_is_the_perplexity_ratio_and_is_significant():
    a = score_of([3.0, 3.5, 2.9, 3.1])
    b = score_of([3.1, 3.6, 3.0, 3.2])
    d = paired_difference(a, b)
    assert d.ratio == pytest.approx(math.exp(0.1))
    assert d.ratio == pytest.approx(b.perplexity / a.perplexity)
    assert d.significant and "+10.52 %" in str(d)


def test_a_noisy_difference_is_not_ranked():
    a = score_of([3.0, 3.0, 3.0, 3.0])
    b = score_of([3.2, 2.8, 3.1, 2.95])
    assert not paired_difference(a, b).significant


def test_different_windows_cannot_be_paired():
    with pytest.raises(ValueError, match="same windows"):
        paired_difference(score_of([3.0, 3.1]), score_of([3.0, 3.1], WHOLE))
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(score_of([3.0]), score_of([3.1]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 6), st.floats(-0.5, 0.5)), min_size=2, max_size=30))
def test_interval_holds_the_ratio_and_swapping_inverts_it(pairs):
    a = score_of([x for x, _ in pairs])
    b = score_of([x + dx for x, dx in pairs])
    forward, backward = paired_difference(a, b), paired_difference(b, a)
    assert forward.low <= forward.ratio <= forward.high
    assert forward.ratio * backward.ratio == pytest.approx(1)
    assert forward.low * backward.high == pytest.approx(1)
    assert forward.significant == backward.significant


def test_score_is_the_course_perplexity(tiny):
    model, tokenizer = tiny
    protocol = Protocol("two", 2)
    s = evaluation.score(model, tokenizer, protocol)
    assert s.nll.shape == (2,)
    assert s.perplexity == pytest.approx(
        evaluation.perplexity(model, tokenizer, max_windows=2), rel=1e-6)
    assert str(s).endswith("(two: test windows 1-2 of 512 tokens)")
    with pytest.raises(TypeError, match="Protocol"):
        evaluation.score(model, tokenizer, 8)
