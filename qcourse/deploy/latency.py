"""Latency percentiles and Little's law: the arithmetic behind every load-test table.

**Percentile** (linear interpolation between closest ranks, numpy's default and Excel's
``PERCENTILE.INC``): sort the n values, ``x_(0) <= ... <= x_(n-1)``; the p-th percentile sits at
rank ``r = p/100 · (n - 1)``, between ``x_(floor r)`` and ``x_(ceil r)``:

    P_p = x_(⌊r⌋) + (r − ⌊r⌋) · (x_(⌈r⌉) − x_(⌊r⌋))

p50 is the median; p99 is the latency that 1 request in 100 exceeds, which is what users of a
busy service notice. **A percentile needs enough values**: from n values, P_p depends only on the
two sorted values at ranks ⌊r⌋ and ⌈r⌉ (:func:`percentile_ranks`). With n = 16, p99 sits at rank
14.85, 85 % of the way from the second largest value to the largest: it is the maximum in
disguise. A percentile p says something about the tail only when some values lie above it,
n · (1 − p/100) >= 1, i.e. n >= 100 for p99 (:func:`percentile_supported`); below that, report
the maximum and say so.

**Little's law** (Little, 1961): in a steady system, the mean number of requests inside,
``N``, equals the throughput ``X`` (requests/s) times the mean time each spends inside, ``R``:
``N = X · R``. A server that completes at most ``X`` requests/s therefore holds, at a latency of
``R`` seconds, at most ``N = X · R`` requests in flight; users who wait ``Z`` seconds ("think
time") between a reply and their next request add ``X · Z``:

    users = X · (R + Z)

(the *interactive response time law*, Little's law applied to the users and the server together).

**A closed loop** (:func:`closed_loop`): C clients, each sending its next request Z seconds after
the last reply, to a server that holds a lock for S seconds per request while the rest of a
request's time, D, passes outside the lock (HTTP, parsing, the client). The lock completes at
most 1/S requests per second, and C clients cannot send more than C / (S + D + Z):

    X(C) = min(C / (S + D + Z), 1 / S),     R(C) = C / X(C) − Z    (Little's law)

These are the asymptotic bounds of operational analysis (Denning & Buzen, 1978), reached when
every time is constant: latency stays S + D until the lock is busy all the time, then grows by S
per extra client.
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


def percentile_ranks(n: int, p: float) -> tuple[int, int, float]:
    """``(i, j, w)``: the p-th percentile of n values is ``(1 − w) · x_(i) + w · x_(j)`` with
    0-based sorted ranks i = ⌊r⌋, j = ⌈r⌉ and w = r − ⌊r⌋, r = p/100 · (n − 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(p, bool) or not 0 <= p <= 100:
        raise ValueError(f"p must be a number in [0, 100], got {p!r}")
    rank = p / 100 * (n - 1)
    return math.floor(rank), math.ceil(rank), rank - math.floor(rank)


def percentile_supported(n: int, p: float) -> bool:
    """Whether n values leave at least one value above the p-th percentile on average,
    n · (1 − p/100) >= 1: below that, P_p is an interpolation between the largest values."""
    return n * (1 - p / 100) >= 1 - 1e-9


def summary(values: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50", "p90", "p99", "mean", "min", "max", "n"}`` of ``values`` (empty dict if none).
    Read a percentile only where :func:`percentile_supported` says n is large enough."""
    if not values:
        return {}
    out = {f"p{p:g}": percentile(values, p) for p in points}
    out.update(mean=sum(values) / len(values), min=min(values), max=max(values), n=len(values))
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


def closed_loop(clients: int, service_s: float, outside_s: float = 0.0,
                think_s: float = 0.0) -> tuple[float, float]:
    """``(X, R)``: throughput (requests/s) and mean latency (s) of ``clients`` clients in a
    closed loop around a one-at-a-time server (module docstring): X = min(C / (S + D + Z), 1/S),
    R = C / X − Z. ValueError for clients < 1, service_s <= 0 or negative times."""
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be an int >= 1, got {clients!r}")
    if not math.isfinite(service_s) or service_s <= 0:
        raise ValueError(f"service_s must be a finite number > 0, got {service_s!r}")
    for name, value in (("outside_s", outside_s), ("think_s", think_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    throughput = min(clients / (service_s + outside_s + think_s), 1 / service_s)
    return throughput, clients / throughput - think_s
