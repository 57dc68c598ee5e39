"""Latency percentiles and Little's law: the arithmetic behind every load-test table.

**Percentile** (linear interpolation between closest ranks, numpy's default and Excel's
``PERCENTILE.INC``): sort the n values, ``x_(0) <= ... <= x_(n-1)``; the p-th percentile sits at
rank ``r = p/100 · (n - 1)``, between ``x_(floor r)`` and ``x_(ceil r)``:

    P_p = x_(⌊r⌋) + (r − ⌊r⌋) · (x_(⌈r⌉) − x_(⌊r⌋))

p50 is the median; p99 is the latency that 1 request in 100 exceeds, which is what users of a
busy service notice.

**Little's law** (Little, 1961): in a steady system, the mean number of requests inside,
``N``, equals the throughput ``X`` (requests/s) times the mean time each spends inside, ``R``:
``N = X · R``. A server that completes at most ``X`` requests/s therefore holds, at a latency of
``R`` seconds, at most ``N = X · R`` requests in flight; users who wait ``Z`` seconds ("think
time") between a reply and their next request add ``X · Z``:

    users = X · (R + Z)
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0 <= p <= 100) of ``values`` by linear interpolation between
    closest ranks (see the module docstring). ValueError for no values, NaN, or p out of range."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of no values: measure at least one request")
    if any(math.isnan(x) for x in xs):
        raise ValueError("values contain NaN")
    if isinstance(p, bool) or not 0 <= p <= 100:
        raise ValueError(f"p must be a number in [0, 100], got {p!r}")
    rank = p / 100 * (len(xs) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return xs[low] + (rank - low) * (xs[high] - xs[low])


def summary(values: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ..., "mean": ...}`` of ``values`` (empty dict if none)."""
    if not values:
        return {}
    out = {f"p{p:g}": percentile(values, p) for p in points}
    out["mean"] = sum(values) / len(values)
    return out


def users_at_latency(throughput_rps: float, latency_s: float, think_time_s: float = 0.0) -> int:
    """How many concurrent users a server with saturated throughput ``throughput_rps`` holds
    when each request may take ``latency_s`` and users wait ``think_time_s`` between requests:
    ``floor(X · (R + Z))`` by Little's law. ValueError for negative or non-finite inputs."""
    for name, value in (("throughput_rps", throughput_rps), ("latency_s", latency_s),
                        ("think_time_s", think_time_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return math.floor(throughput_rps * (latency_s + think_time_s) + 1e-9)
