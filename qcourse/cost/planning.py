"""A deployment plan: a model in a format on a rented card, under a monthly load: does it fit,
how fast can it decode (the memory-bound roofline), what does it cost against an API."""
from __future__ import annotations

import dataclasses

from qcourse.hardware import SPEC_SHEETS_READ, GPUSpec

from .footprint import memory
from .money import break_even_tokens, cost_per_million_tokens, self_host_vs_api
from .quotes import Quote, positive


@dataclasses.dataclass(frozen=True)
class RentedGPU:
    """A card to rent: its memory in bytes, and quotes for its memory bandwidth (bytes/s) and
    its price (USD/hour), each with source and date."""

    name: str
    memory_bytes: int
    bandwidth: Quote
    price: Quote

    @classmethod
    def from_spec(cls, spec: GPUSpec, price: Quote) -> RentedGPU:
        """The card of a spec sheet (:data:`qcourse.hardware.GPUS`) at ``price``: its memory and
        its bandwidth quoted from the sheet."""
        bandwidth = Quote(spec.bandwidth_gbs * 1e9, "bytes/s", spec.source, SPEC_SHEETS_READ)
        return cls(spec.name, spec.memory_bytes, bandwidth, price)


GPU = RentedGPU   # its former name (notebook 09)


def decode_tokens_per_second_bound(read_bytes_per_token: int, bandwidth) -> float:
    """Upper bound of single-sequence decoding speed when every generated token reads
    ``read_bytes_per_token`` (the weights, plus the KV cache so far) at ``bandwidth`` bytes/s:
    ``bandwidth / bytes`` (the memory-bound roofline of notebook 07)."""
    return positive(bandwidth, "bandwidth") / positive(read_bytes_per_token, "bytes per token")


def plan(config, gpu: RentedGPU, *, weights: str, context: int, tokens_per_month, efficiency,
         api_usd_per_million, one_time_usd=None, kv_cache: str = "fp16",
         baseline_weights: str = "fp16") -> dict:
    """Everything the cost panel shows, for one model, format, card and load:

    ``memory`` (:func:`memory`), ``fits``; ``tokens_per_second`` = ``efficiency`` × the decode
    bound of the weights plus a full KV cache (one sequence; ``efficiency``, 0–1, is what a
    measured runtime reaches of its bound); ``usd_per_million``; the monthly cost of self-hosting
    on as many cards as the load needs against the API (:func:`self_host_vs_api`); and, when
    ``one_time_usd`` (the cost of quantizing) is given, the tokens after which it is paid back
    against serving ``baseline_weights`` on the same card."""
    share = positive(efficiency, "efficiency")
    if share > 1:
        raise ValueError(f"efficiency is a fraction of the bound, at most 1, got {efficiency}")

    def speed(fmt: str) -> float:
        parts = memory(config, weights=fmt, kv_cache=kv_cache, context=context)
        return share * decode_tokens_per_second_bound(parts["weights"] + parts["kv_cache"],
                                                      gpu.bandwidth)

    parts = memory(config, weights=weights, kv_cache=kv_cache, context=context)
    tps = speed(weights)
    out = {"memory": parts, "fits": parts["total"] <= gpu.memory_bytes, "tokens_per_second": tps,
           "usd_per_million": cost_per_million_tokens(gpu.price, tps),
           **self_host_vs_api(tokens_per_month, usd_per_hour=gpu.price, tokens_per_second=tps,
                              api_usd_per_million=api_usd_per_million)}
    if one_time_usd is not None:
        before = cost_per_million_tokens(gpu.price, speed(baseline_weights))
        out["break_even_tokens"] = break_even_tokens(one_time_usd, before, out["usd_per_million"]) \
            if out["usd_per_million"] < before else None
    return out
