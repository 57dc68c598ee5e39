import math

import numpy as np

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


def test_users_verdicts():
    q = ex08.users
    assert verdict(q, lambda X, R, Z: math.floor(X * (R + Z) + 1e-9)) == "correct"
    assert verdict(q, lambda X, R, Z: int(X * (R + Z) + 1e-9)) == "correct"
    assert verdict(q, lambda X, R, Z: round(X * (R + Z))) == "wrong"              # rounds up
    assert verdict(q, lambda X, R, Z: math.floor(X * R)) == "wrong"               # forgot Z
    assert verdict(q, lambda X, R, Z: math.floor(X / (R + Z))) == "wrong"
    assert verdict(q, lambda X, R, Z: math.ceil(X * (R + Z))) == "wrong"
    assert verdict(q, lambda X, R, Z: ...) == "not attempted"
