"""Percentiles and Little's law: hand-computed cases, and numpy as the independent referee."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcourse.deploy.latency import percentile, summary, users_at_latency

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
    assert summary([]) == {}


def test_users_at_latency_is_littles_law():
    assert users_at_latency(16.0, 0.5) == 8                   # N = X · R
    assert users_at_latency(16.0, 0.5, think_time_s=2.0) == 40  # N = X · (R + Z)
    assert users_at_latency(10.0, 0.35) == 3                   # 3.5 users: 3 fit
    assert users_at_latency(2.5, 4.0) == 10                    # exactly 10, not 9 from rounding
    assert users_at_latency(0.0, 1.0) == 0
    for bad in ((-1.0, 1.0), (1.0, math.inf), (1.0, math.nan)):
        with pytest.raises(ValueError):
            users_at_latency(*bad)
