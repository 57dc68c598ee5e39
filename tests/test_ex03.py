import math

import pytest
import torch

from qcourse.exercises import ex03


pytestmark = pytest.mark.usefixtures("one_thread")


def verdict(question, answer):
    return question.check(answer).status


def right_ste(x, scale, zero, qmin, qmax):
    u = x / scale + zero
    y = (torch.clamp(torch.round(u), qmin, qmax) - zero) * scale
    inside = ((u >= qmin) & (u <= qmax)).to(x.dtype)
    return x * inside + (y - x * inside).detach()


def test_ste_verdicts():
    q = ex03.ste_fake_quantize
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda x, s, z, lo, hi: ...) == "not attempted"
    assert verdict(q, right_ste) == "correct"

    class Function(torch.autograd.Function):              # the autograd.Function way
        @staticmethod
        def forward(ctx, x, s, z, lo, hi):
            u = x / s + z
            ctx.save_for_backward((u >= lo) & (u <= hi))
            return (torch.clamp(torch.round(u), lo, hi) - z) * s

        @staticmethod
        def backward(ctx, g):
            (inside,) = ctx.saved_tensors
            return g * inside, None, None, None, None

    assert verdict(q, Function.apply) == "correct"

    def no_ste(x, s, z, lo, hi):                           # round's gradient is zero
        return (torch.clamp(torch.round(x / s + z), lo, hi) - z) * s

    def unclipped(x, s, z, lo, hi):                        # plain STE: gradient 1 everywhere
        y = (torch.clamp(torch.round(x / s + z), lo, hi) - z) * s
        return x + (y - x).detach()

    def no_clamp(x, s, z, lo, hi):                         # forward forgets the grid's ends
        u = x / s + z
        y = (torch.round(u) - z) * s
        inside = ((u >= lo) & (u <= hi)).to(x.dtype)
        return x * inside + (y - x * inside).detach()

    def strict_edges(x, s, z, lo, hi):                     # blocks the gradient at the edges
        u = x / s + z
        y = (torch.clamp(torch.round(u), lo, hi) - z) * s
        inside = ((u > lo) & (u < hi)).to(x.dtype)
        return x * inside + (y - x * inside).detach()

    def mask_by_rounding(x, s, z, lo, hi):                 # "not clamped" is not "inside"
        u = x / s + z
        y = (torch.clamp(torch.round(u), lo, hi) - z) * s
        inside = ((torch.round(u) >= lo) & (torch.round(u) <= hi)).to(x.dtype)
        return x * inside + (y - x * inside).detach()

    def forgets_zero(x, s, z, lo, hi):                     # dequantizes without the zero point
        u = x / s + z
        y = torch.clamp(torch.round(u), lo, hi) * s
        inside = ((u >= lo) & (u <= hi)).to(x.dtype)
        return x * inside + (y - x * inside).detach()

    for wrong in (no_ste, unclipped, no_clamp, strict_edges, mask_by_rounding, forgets_zero):
        assert verdict(q, wrong) == "wrong", wrong.__name__


def test_which_weights_move_verdicts():
    q = ex03.which_weights_move
    assert q.prediction and set(q.choices) == {"a", "b", "c"}     # graded: the first answer counts
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, "b") == "correct"
    assert verdict(q, "a") == "wrong"
    assert verdict(q, "c") == "wrong"


@pytest.mark.parametrize("q", [ex03.ste_fake_quantize, ex03.lsq_grad_scale,
                               ex03.which_weights_move], ids=lambda q: q.name)
def test_progressive_hints_that_stop_short(q):
    """At least two hints, and none of them (nor the prompt) writes out the answer."""
    assert len(q.hints) >= 2
    for text in (q.prompt, *q.hints):
        assert "x * inside" not in text and "(y - x" not in text
        assert "sqrt(n" not in text and "1/sqrt" not in text and "1/√(N" not in text
        assert "clamp(round(x/scale" not in text


def test_the_measurement_behind_question_2():
    rates = ex03.code_changes_by_distance()
    assert rates.shape == (4,)
    assert rates[3] > 5 * rates[0]                 # near a boundary: flips far more often
    assert (rates[1:] >= rates[:-1]).all()          # and more, the nearer to the boundary


def test_lsq_grad_scale_verdicts():
    q = ex03.lsq_grad_scale
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda n, b: 1 / math.sqrt(n * (2 ** (b - 1) - 1))) == "correct"
    assert verdict(q, lambda n, b: 1 / (n * (2 ** (b - 1) - 1))) == "wrong"         # no sqrt
    assert verdict(q, lambda n, b: 1 / math.sqrt(n * (2 ** b - 1))) == "wrong"      # all levels
    assert verdict(q, lambda n, b: 1 / math.sqrt(n * 2 ** (b - 1))) == "wrong"      # Q_N, not Q_P
    assert verdict(q, lambda n, b: 1 / math.sqrt(n)) == "wrong"                     # forgot Q_P
