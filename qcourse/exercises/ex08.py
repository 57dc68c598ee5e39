"""Exercises of notebook 08: a tail percentile from raw latencies, and how many users a measured
server holds (Little's law)."""
from __future__ import annotations

import random

from qcourse.deploy.latency import percentile, users_at_latency
from qcourse.exercises import Question


def _latency_lists() -> list[tuple]:
    rng = random.Random(8)
    heavy_tail = [rng.expovariate(10) for _ in range(200)] + [2.5, 3.0]
    return [([0.12, 0.10, 0.31, 0.11, 0.14, 0.09, 0.95],),       # unsorted, one slow request
            ([0.2, 0.4],),                                     # 95 % of the way from 0.2 to 0.4
            ([0.5],),
            ([round(rng.uniform(0.05, 0.5), 3) for _ in range(20)],),
            (heavy_tail,),
            ([0.1] * 10 + [1.0] * 10,)]


def _server_cases() -> list[tuple]:
    return [(16.9, 0.5, 0.0), (16.9, 0.5, 2.0), (2.5, 4.0, 0.0), (40.0, 0.25, 9.75),
            (7.0, 0.1, 0.0), (120.0, 1.5, 30.0)]


p95 = Question(
    name="08.1 p95",
    prompt="Write p95(latencies): the 95th percentile of a list of latencies (seconds), by "
           "linear interpolation between closest ranks: sort them, x_(0) <= ... <= x_(n-1), "
           "take the rank r = 0.95·(n − 1) and interpolate between x_(⌊r⌋) and x_(⌈r⌉).",
    reference=lambda latencies: percentile(latencies, 95),
    cases=_latency_lists,
    rtol=1e-9,
    atol=1e-12,
    hint_text="Sort first: the input is in arrival order. With n values the ranks run from 0 to "
              "n − 1, so the rank is 0.95·(n − 1), not 0.95·n. Then "
              "x_low + (r − ⌊r⌋)·(x_high − x_low). Check: p95 of [0.2, 0.4] is 0.39.",
    solution_text="import math\n\n"
                  "def p95(latencies):\n"
                  "    xs = sorted(latencies)\n"
                  "    r = 0.95 * (len(xs) - 1)\n"
                  "    lo, hi = math.floor(r), math.ceil(r)\n"
                  "    return xs[lo] + (r - lo) * (xs[hi] - xs[lo])",
)

users = Question(
    name="08.2 users",
    prompt="A server measured at saturation completes X requests per second. Each user sends "
           "a request, waits for the answer (latency R seconds), thinks Z seconds, and sends the "
           "next. Write users(X, R, Z): how many such users the server holds at latency R "
           "(an int: whole users). Little's law: N = X · (R + Z).",
    reference=users_at_latency,
    cases=_server_cases,
    hint_text="Every user is either waiting for a reply (R) or thinking (Z); in steady state "
              "the server finishes X requests per second, so N = X · (R + Z) users keep it busy. "
              "A fraction of a user does not fit: round down.",
    solution_text="import math\n\n"
                  "def users(X, R, Z):\n"
                  "    return math.floor(X * (R + Z) + 1e-9)",
)
