"""Exercises of notebook 08: a tail percentile from raw latencies, what a p99 of 16 requests is
made of, a prediction of the latency of 4 clients (then measured), and how many users a measured
server holds (Little's law)."""
from __future__ import annotations

import random

from qcourse.deploy.latency import percentile, percentile_ranks, users_at_latency
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
    prompt="Write p95(latencies): the 95th percentile of a list of request latencies (seconds), "
           "as numpy computes it by default (np.percentile, method 'linear'). Latencies arrive "
           "in the order the requests finished.",
    reference=lambda latencies: percentile(latencies, 95),
    cases=_latency_lists,
    rtol=1e-9,
    atol=1e-12,
    hints=("Sort first: the input is in arrival order. With n values, the smallest has rank 0 "
           "and the largest rank n − 1 (not n).",
           "The 95 % point of the ranks 0 .. n − 1 is rarely a whole rank: it falls between two "
           "neighbours. How far it lies past the lower one says how much of the gap between "
           "their two values to add."),
    solution_text="import math\n\n"
                  "def p95(latencies):\n"
                  "    xs = sorted(latencies)\n"
                  "    r = 0.95 * (len(xs) - 1)\n"
                  "    lo, hi = math.floor(r), math.ceil(r)\n"
                  "    return xs[lo] + (r - lo) * (xs[hi] - xs[lo])",
)

p99_of_16 = Question(
    name="08.2 p99_of_16",
    prompt="A load test of 16 requests reports a 'p99'. Which two of the sorted latencies "
           "x_(0) <= ... <= x_(15) is it computed from, and with what weight? Answer a tuple "
           "(i, j, w) such that p99 = (1 − w) · x_(i) + w · x_(j).",
    reference=lambda: percentile_ranks(16, 99),
    rtol=1e-6,
    hints=("Use the rank you found for exercise 08.1, with p = 99 and n = 16.",
           "That rank lies between two whole ranks: those are i and j, and w is how far past i "
           "it lies. Then look at which two latencies they are."),
    solution_text="p99_of_16 = (14, 15, 0.85)   # rank 0.99 · 15 = 14.85: 85 % of the way from "
                  "the 2nd largest to the largest, the maximum in disguise",
)

latency_at_4 = Question(
    name="08.3 latency_at_4",
    prompt="Predict before the next cells measure it: one client, sending each request as soon "
           "as the last reply arrived, measured a mean latency R1. Four such clients share the "
           "same server (one request at a time behind its lock). Their mean latency will be ...",
    choices={"a": "about R1: the server has spare capacity", "b": "about 2 · R1",
             "c": "about 4 · R1", "d": "about 16 · R1"},
    reference=lambda: "c",   # measured in the notebook (tests/test_deploy_server.py re-measures it)
    hints=("With 4 clients that send again at once, how many requests are inside the server at "
           "any moment, and how many of them can the model work on?",
           "Throughput cannot grow past one request per service time; Little's law ties the "
           "number in flight, the throughput and the latency together."),
    solution_text="latency_at_4 = 'c'   # N = 4 in flight, X stays about 1 / R1, so R = N / X "
                  "= 4 · R1 (a little less when part of each request's time is outside the lock)",
)

users = Question(
    name="08.4 users",
    prompt="A server measured at saturation completes X requests per second at a mean latency "
           "of R seconds. Each of its users sends a request, waits for the answer, reads it for "
           "Z seconds, and sends the next. Write users(X, R, Z): how many such users the server "
           "holds at that latency (whole users).",
    reference=users_at_latency,
    cases=_server_cases,
    hints=("Follow one user for a long time: how many requests per second does a user send, "
           "if each cycle is one wait plus one read?",
           "All users together must send exactly the X requests per second the server "
           "completes. How many users does that take? A fraction of a user is not a user."),
    solution_text="import math\n\n"
                  "def users(X, R, Z):\n"
                  "    return math.floor(X * (R + Z) + 1e-9)   # Little's law, N = X · (R + Z)",
)
