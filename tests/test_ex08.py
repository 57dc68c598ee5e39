import math

import numpy as np

from qcourse import exercises
from qcourse.exercises import ex08


def verdict(question, answer):
    return question.check(answer).status


def right_p95(latencies):
    xs = sorted(latencies)
    r = 0.95 * (len(xs) - 1)
    lo, hi = math.floor(r), math.ceil(r)
    return xs[lo] + (r - lo) * (xs[hi] - xs[lo])


def test_p95_verdicts():
    q = ex08.p95
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda xs: ...) == "not attempted"
    assert verdict(q, right_p95) == "correct"
    assert verdict(q, lambda xs: float(np.percentile(xs, 95))) == "correct"
    assert verdict(q, lambda xs: sorted(xs)[int(0.95 * len(xs))]) == "wrong"        # nearest rank
    assert verdict(q, lambda xs: sorted(xs)[min(len(xs) - 1, math.ceil(0.95 * len(xs)))]) == "wrong"
    assert verdict(q, lambda xs: xs[int(0.95 * (len(xs) - 1))]) == "wrong"          # not sorted

    def rank_n(xs):                                  # rank 0.95·n instead of 0.95·(n − 1)
        xs = sorted(xs)
        r = min(0.95 * len(xs), len(xs) - 1)
        lo, hi = math.floor(r), math.ceil(r)
        return xs[lo] + (r - lo) * (xs[hi] - xs[lo])

    assert verdict(q, rank_n) == "wrong"
    assert verdict(q, lambda xs: float(np.mean(xs) + 2 * np.std(xs))) == "wrong"   # not a percentile
    assert verdict(q, lambda xs: float(np.percentile(xs, 90))) == "wrong"
    assert verdict(q, lambda xs: sorted(xs)[-1]) == "wrong"                         # the maximum


def test_p99_of_16_verdicts():
    q = ex08.p99_of_16
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, (14, 15, 0.85)) == "correct"
    assert verdict(q, [14, 15, 0.85]) == "correct"
    assert verdict(q, (15, 16, 0.84)) == "wrong"          # rank 0.99 · 16 = 15.84
    assert verdict(q, (14, 15, 0.15)) == "wrong"          # the weight of the wrong neighbour
    assert verdict(q, (13, 14, 0.85)) == "wrong"
    assert verdict(q, (15, 15, 1.0)) == "wrong"           # "it is the maximum": close, not exact
    # the answer describes the percentile the notebook computes
    xs = sorted(np.random.default_rng(0).exponential(size=16))
    i, j, w = q.reference()
    assert math.isclose((1 - w) * xs[i] + w * xs[j], float(np.percentile(xs, 99)))


def test_latency_at_4_is_a_prediction_whose_first_answer_counts():
    q = ex08.latency_at_4
    assert q.prediction
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, "c") == "correct" and verdict(q, "C") == "correct"
    for wrong in ("a", "b", "d"):
        assert verdict(q, wrong) == "wrong"
    exercises.set_graded(True)
    try:
        exercises.FIRST_ANSWERS.pop(q.name, None)
        assert verdict(q, "b") == "wrong"
        assert verdict(q, "c") == "wrong"                 # the first answer counts
    finally:
        exercises.set_graded(False)
        exercises.FIRST_ANSWERS.pop(q.name, None)


def test_users_verdicts():
    q = ex08.users
    assert verdict(q, lambda X, R, Z: math.floor(X * (R + Z) + 1e-9)) == "correct"
    assert verdict(q, lambda X, R, Z: int(X * (R + Z) + 1e-9)) == "correct"
    assert verdict(q, lambda X, R, Z: round(X * (R + Z))) == "wrong"              # rounds up
    assert verdict(q, lambda X, R, Z: math.floor(X * R)) == "wrong"               # forgot Z
    assert verdict(q, lambda X, R, Z: math.floor(X / (R + Z))) == "wrong"
    assert verdict(q, lambda X, R, Z: math.ceil(X * (R + Z))) == "wrong"
    assert verdict(q, lambda X, R, Z: X * (R + Z)) == "wrong"                     # not whole users
    assert verdict(q, lambda X, R, Z: ...) == "not attempted"


def test_every_question_has_progressive_hints_that_do_not_state_the_answer():
    for q in (ex08.p95, ex08.p99_of_16, ex08.latency_at_4, ex08.users):
        assert len(q.hints) >= 2, q.name
        last = q.hints[-1]
        assert "0.85" not in last and "floor" not in last and "X · (R + Z)" not in last
        assert "0.95 · (n − 1)" not in q.prompt and "N = X" not in q.prompt
