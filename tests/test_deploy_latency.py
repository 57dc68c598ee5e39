"""Percentiles and Little's law: hand-computed cases, and numpy as the independent referee."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcourse.deploy.latency import (closed_loop, percentile, percentile_ranks, percentile_supported, summary,
                                   users_at_latency)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def test_percentile_by_hand():
    xs = [4.0, 1.0, 3.0, 2.0]                  # sorted 1 2 3 4, ranks 0..3
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == 2.5           # rank 1.5: halfway between 2 and 3
    assert percentile(xs, 90) == pytest.approx(3.7)   # rank 2.7: 3 + 0.7 · (4 − 3)
    assert percentile([7.0], 99) == 7.0


@given(st.lists(finite, min_size=1, max_size=60), st.floats(0, 100))
def test_percentile_equals_numpy_linear(values, p):
    assert percentile(values, p) == pytest.approx(np.percentile(values, p), rel=1e-9, abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=40), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_in_p_and_inside_the_range(values, p, q):
    low, high = sorted((p, q))
    assert min(values) - 1e-9 <= percentile(values, low) <= percentile(values, high) + 1e-9
    assert percentile(values, high) <= max(values) + 1e-9


@pytest.mark.parametrize("values, p, message", [
    ([], 50, "no values"), ([1.0, math.nan], 50, "NaN"), ([1.0], 101, r"\[0, 100\]"),
    ([1.0], -1, r"\[0, 100\]"), ([1.0], True, r"\[0, 100\]"),
])
def test_percentile_rejects_bad_input(values, p, message):
    with pytest.raises(ValueError, match=message):
        percentile(values, p)


def test_summary():
    s = summary([1.0, 2.0, 3.0, 4.0])
    assert s["p50"] == 2.5 and s["mean"] == 2.5 and s["p99"] == pytest.approx(3.97)
    assert (s["min"], s["max"], s["n"]) == (1.0, 4.0, 4)
    assert summary([]) == {}


def test_percentile_ranks_name_the_two_values_a_percentile_reads():
    assert percentile_ranks(16, 99) == (14, 15, pytest.approx(0.85))    # the max in disguise
    assert percentile_ranks(5, 50) == (2, 2, 0.0)
    assert percentile_ranks(1, 99) == (0, 0, 0.0)
    for bad in ((0, 50), (3, 101), (2.5, 50), (True, 50)):
        with pytest.raises(ValueError):
            percentile_ranks(*bad)


@given(st.lists(finite, min_size=1, max_size=60), st.floats(0, 100))
def test_percentile_is_the_weighted_pair_of_its_ranks(values, p):
    i, j, w = percentile_ranks(len(values), p)
    xs = sorted(values)
    assert percentile(values, p) == pytest.approx((1 - w) * xs[i] + w * xs[j], rel=1e-9, abs=1e-6)


def test_a_p99_needs_a_hundred_values():
    assert not percentile_supported(16, 99) and not percentile_supported(99, 99)
    assert percentile_supported(100, 99) and percentile_supported(16, 90)
    assert not percentile_supported(9, 90) and percentile_supported(10, 90)


def test_users_at_latency_is_littles_law():
    assert users_at_latency(16.0, 0.5) == 8                   # N = X · R
    assert users_at_latency(16.0, 0.5, think_time_s=2.0) == 40  # N = X · (R + Z)
    assert users_at_latency(10.0, 0.35) == 3                   # 3.5 users: 3 fit
    assert users_at_latency(2.5, 4.0) == 10                    # exactly 10, not 9 from rounding
    assert users_at_latency(0.0, 1.0) == 0
    for bad in ((-1.0, 1.0), (1.0, math.inf), (1.0, math.nan)):
        with pytest.raises(ValueError):
            users_at_latency(*bad)


def test_closed_loop_by_hand():
    # S = 0.1 s in the lock, D = 0.05 s outside: one client cycles every 0.15 s
    assert closed_loop(1, 0.1, 0.05) == pytest.approx((1 / 0.15, 0.15))
    # two clients keep the lock busy (2 / 0.15 > 10/s): X = 10/s, R = 2 / 10
    assert closed_loop(2, 0.1, 0.05) == pytest.approx((10.0, 0.2))
    assert closed_loop(8, 0.1, 0.05) == pytest.approx((10.0, 0.8))
    # everything inside the lock: R = C · S from the first extra client on
    assert closed_loop(4, 0.1) == pytest.approx((10.0, 0.4))
    # users thinking 10 s: 8 of them do not saturate the lock
    x, r = closed_loop(8, 0.1, 0.05, think_s=10.0)
    assert x == pytest.approx(8 / 10.15) and r == pytest.approx(0.15)
    for bad in ((0, 0.1), (2, 0.0), (2, 0.1, -1.0), (2.0, 0.1), (2, 0.1, 0.0, math.inf)):
        with pytest.raises(ValueError):
            closed_loop(*bad)


@given(st.integers(1, 64), st.floats(1e-3, 1.0), st.floats(0, 1.0), st.floats(0, 5.0))
def test_closed_loop_obeys_littles_law_and_the_bounds(c, s, d, z):
    x, r = closed_loop(c, s, d, z)
    assert x <= 1 / s * (1 + 1e-9) and x * (r + z) == pytest.approx(c)     # N = X (R + Z)
    assert r >= s + d - 1e-9 and r >= c * s - z - 1e-9
