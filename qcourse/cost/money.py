"""Money: what generated tokens cost on a rented machine, against a per-token API.

    USD per 1M tokens  = usd_per_hour / (tokens_per_second · 3600) · 10^6
    cost per month     = usd_per_hour · 730 hours      (730 = 365 · 24 / 12)
    break-even tokens  = one-time cost / (USD per token before − USD per token after)
    break-even load    = cost per month / API price per token, if the machine's own cost per
                         token is below the API's (else the API is cheaper at every load)
"""
from __future__ import annotations

import math

from .quotes import positive

HOURS_PER_MONTH = 365 * 24 / 12          # 730: a definition, not a measurement
MILLION = 1_000_000


def cost_per_million_tokens(usd_per_hour, tokens_per_second) -> float:
    """USD per million generated tokens of a machine rented at ``usd_per_hour`` that produces
    ``tokens_per_second`` (all its concurrent requests together), busy all the time:
    ``usd_per_hour / (tokens_per_second · 3600) · 10^6``."""
    price = positive(usd_per_hour, "usd_per_hour")
    speed = positive(tokens_per_second, "tokens_per_second")
    return price / (speed * 3600) * MILLION


def monthly_cost(usd_per_hour, hours: float = HOURS_PER_MONTH) -> float:
    """USD per month of a machine kept running ``hours`` a month (730 = always on)."""
    return positive(usd_per_hour, "usd_per_hour") * positive(hours, "hours")


def replicas(tokens_per_month, tokens_per_second, utilization: float = 1.0) -> int:
    """Machines needed to produce ``tokens_per_month`` when each makes ``tokens_per_second``
    for a fraction ``utilization`` (0–1] of the time."""
    load = positive(tokens_per_month, "tokens_per_month")
    capacity = positive(tokens_per_second, "tokens_per_second") * 3600 * HOURS_PER_MONTH
    share = positive(utilization, "utilization")
    if share > 1:
        raise ValueError(f"utilization is a fraction of the time, at most 1, got {utilization}")
    return math.ceil(load / (capacity * share))


def self_host_vs_api(tokens_per_month, *, usd_per_hour, tokens_per_second,
                     api_usd_per_million, utilization: float = 1.0) -> dict:
    """Monthly cost of serving ``tokens_per_month`` on always-on rented machines against a
    per-token API: ``{"replicas", "capacity_tokens_per_month", "self_host_usd", "api_usd",
    "cheaper", "break_even_tokens_per_month"}``.

    The break-even is the load at which one always-on machine costs what the API charges for
    that load, ``usd_per_hour · 730 / api price per token``. It exists only if the machine's own
    cost per token (:func:`cost_per_million_tokens`, busy all the time) is below the API's;
    then it is below one machine's capacity. Otherwise the API is cheaper at every load and the
    break-even is None."""
    count = replicas(tokens_per_month, tokens_per_second, utilization)
    self_host = count * monthly_cost(usd_per_hour)
    api_price = positive(api_usd_per_million, "api_usd_per_million")
    api = positive(tokens_per_month, "tokens_per_month") / MILLION * api_price
    own = cost_per_million_tokens(usd_per_hour, tokens_per_second) / utilization
    return {"replicas": count,
            "capacity_tokens_per_month": tokens_per_second * 3600 * HOURS_PER_MONTH * utilization,
            "self_host_usd": self_host, "api_usd": api,
            "cheaper": "self-host" if self_host < api else "api",
            "break_even_tokens_per_month":
                monthly_cost(usd_per_hour) / api_price * MILLION if own < api_price else None}


def break_even_tokens(one_time_usd, usd_per_million_before, usd_per_million_after) -> float:
    """Tokens after which a one-time cost (the GPU hours and engineering to quantize and
    validate a model) is paid back by a lower cost per token:
    ``one_time / (before − after) · 10^6``. ValueError if the cost per token does not drop."""
    one_time = positive(one_time_usd, "one_time_usd")
    before = positive(usd_per_million_before, "usd_per_million_before")
    after = positive(usd_per_million_after, "usd_per_million_after")
    if after >= before:
        raise ValueError(f"the cost per million tokens must drop to break even: before "
                         f"{before:.4g}, after {after:.4g}")
    return one_time / (before - after) * MILLION
