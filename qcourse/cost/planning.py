"""A deployment plan: a model in a format on a rented card, under a monthly load: does it fit,
how fast can it decode, what does it cost against an API.

Decoding speed is a bound, not a measurement (notebook 07's roofline). Every step generates one
token for each of the ``batch`` sequences the card serves at once, reading every weight once
and each sequence's KV cache:

    bytes per step   = weights + batch · KV per sequence · fill
    FLOPs per step   = batch · (2 · matmul weights + 4 · layers · heads · head_dim · positions · fill)
    step time        = max(bytes / (bandwidth · efficiency), FLOPs / (FP16 peak · compute_efficiency))
    tokens/s         = batch / step time

where ``fill`` (0–1] is how full the caches are on average (0.5: a sequence decodes from an empty
cache up to the context), ``efficiency`` the fraction of the bandwidth bound a runtime reaches
(measured, e.g. llama.cpp's single-sequence tg128) and ``compute_efficiency`` the fraction of the
card's dense FP16 tensor peak. One sequence at a time is ``batch = 1``; a batched server fits as
many sequences as the memory left after the weights holds, each cache allocated for the whole
context (:func:`batched_throughput`).
"""
from __future__ import annotations

import dataclasses
import math

from qcourse.hardware import SPEC_SHEETS_READ, GPUSpec

from .footprint import gguf_shapes, kv_cache_bytes, cached_positions, memory, model_shape
from .money import break_even_tokens, cost_per_million_tokens, self_host_vs_api
from .quotes import Quote, positive


@dataclasses.dataclass(frozen=True)
class RentedGPU:
    """A card to rent: its memory in bytes, and quotes for its memory bandwidth (bytes/s), its
    price (USD/hour) and, optionally, its dense FP16 tensor peak (FLOP/s), each with source and
    date."""

    name: str
    memory_bytes: int
    bandwidth: Quote
    price: Quote
    fp16_flops: Quote | None = None

    @classmethod
    def from_spec(cls, spec: GPUSpec, price: Quote) -> RentedGPU:
        """The card of a spec sheet (:data:`qcourse.hardware.GPUS`) at ``price``: its memory, its
        bandwidth and its dense FP16 tensor peak quoted from the sheet."""
        bandwidth = Quote(spec.bandwidth_gbs * 1e9, "bytes/s", spec.source, SPEC_SHEETS_READ)
        flops = Quote(spec.fp16_tflops * 1e12, "FLOP/s (dense FP16 tensor)", spec.source,
                      SPEC_SHEETS_READ)
        return cls(spec.name, spec.memory_bytes, bandwidth, price, flops)


GPU = RentedGPU   # its former name (notebook 09)


def decode_tokens_per_second_bound(read_bytes_per_token: int, bandwidth) -> float:
    """Upper bound of single-sequence decoding speed when every generated token reads
    ``read_bytes_per_token`` (the weights, plus the KV cache so far) at ``bandwidth`` bytes/s:
    ``bandwidth / bytes`` (the memory-bound roofline of notebook 07)."""
    return positive(bandwidth, "bandwidth") / positive(read_bytes_per_token, "bytes per token")


def _fraction(value, what: str) -> float:
    share = positive(value, what)
    if share > 1:
        raise ValueError(f"{what} is a fraction, at most 1, got {value}")
    return share


def matmul_weights(config) -> int:
    """Weights that take part in a matrix product per generated token: every 2-D tensor of the
    decoder blocks and the output head (the token embedding is a lookup, unless it is the tied
    head)."""
    shape = model_shape(config)
    shapes = gguf_shapes(shape)
    total = sum(math.prod(s) for name, s in shapes.items() if len(s) == 2 and name != "token_embd.weight")
    return total + (shape.vocab * shape.hidden if shape.tied else 0)


def batched_throughput(config, gpu: RentedGPU, *, weights: str, context: int, efficiency,
                       compute_efficiency=0.5, kv_cache: str = "fp16", batch: int | None = None,
                       fill: float = 0.5, runtime: int = 0) -> dict:
    """The decode bound of the module docstring for ``batch`` sequences of ``context`` tokens
    (None: as many as fit, each sequence's cache allocated for the whole context, in the memory
    left after the weights, the activations of one chunk and ``runtime`` bytes).

    Returns ``{"batch", "fits", "weights_bytes", "kv_bytes_per_sequence", "memory_seconds",
    "compute_seconds", "step_seconds", "bound" ("memory" or "compute"), "tokens_per_second"}``;
    a batch of 0 (not even one sequence fits) gives 0 tokens/s; a given ``batch`` that does not
    fit is computed anyway, with ``fits`` False."""
    share, compute_share = _fraction(efficiency, "efficiency"), \
        _fraction(compute_efficiency, "compute_efficiency")
    fill = _fraction(fill, "fill")
    one = memory(config, weights=weights, kv_cache=kv_cache, context=context, batch=1,
                 flash_attention=True, runtime=runtime)
    per_sequence = one["kv_cache"]
    free = gpu.memory_bytes - one["weights"] - one["activations"] - runtime
    if batch is None:
        batch = max(0, free // per_sequence)
    elif isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer or None (as many as fit), got {batch!r}")
    out = {"batch": batch, "fits": 0 < batch * per_sequence <= free,
           "weights_bytes": one["weights"], "kv_bytes_per_sequence": per_sequence}
    if batch == 0:
        return {**out, "memory_seconds": math.inf, "compute_seconds": math.inf,
                "step_seconds": math.inf, "bound": "memory", "tokens_per_second": 0.0}
    shape = model_shape(config)
    positions = cached_positions(config, context)
    read = one["weights"] + batch * per_sequence * fill
    flops = batch * (2 * matmul_weights(config)
                     + 4 * shape.layers * shape.heads * shape.head_dim * positions * fill)
    memory_seconds = read / (positive(gpu.bandwidth, "bandwidth") * share)
    if gpu.fp16_flops is None:
        raise ValueError(f"{gpu.name} has no fp16_flops quote: the compute bound needs one "
                         "(RentedGPU.from_spec quotes the spec sheet's)")
    compute_seconds = flops / (positive(gpu.fp16_flops, "fp16_flops") * compute_share)
    step = max(memory_seconds, compute_seconds)
    return {**out, "memory_seconds": memory_seconds, "compute_seconds": compute_seconds,
            "step_seconds": step, "bound": "memory" if memory_seconds >= compute_seconds
            else "compute", "tokens_per_second": batch / step}


def plan(config, gpu: RentedGPU, *, weights: str, context: int, tokens_per_month, efficiency,
         api_usd_per_million, one_time_usd=None, kv_cache: str = "fp16",
         baseline_weights: str = "fp16", batch: int | str = 1, compute_efficiency=0.5,
         fill: float = 0.5) -> dict:
    """Everything the cost panel shows, for one model, format, card and load:

    ``memory`` (:func:`memory` of one sequence), ``fits``; ``batch`` and ``tokens_per_second``,
    the decode bound of :func:`batched_throughput` for ``batch`` sequences at once (1: one
    sequence at a time; ``"max"``: as many as the memory holds); ``usd_per_million``; the
    monthly cost of self-hosting on as many cards as the load needs against the API
    (:func:`self_host_vs_api`); and, when ``one_time_usd`` (the cost of quantizing) is given,
    the tokens after which it is paid back against serving ``baseline_weights`` the same way
    (None if it never is, or if ``baseline_fits`` is False: the baseline leaves no room for a
    sequence)."""
    if batch != "max" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive integer or 'max', got {batch!r}")

    def throughput(fmt: str) -> dict:
        return batched_throughput(config, gpu, weights=fmt, context=context, kv_cache=kv_cache,
                                  efficiency=efficiency, compute_efficiency=compute_efficiency,
                                  batch=None if batch == "max" else batch, fill=fill)

    parts = memory(config, weights=weights, kv_cache=kv_cache, context=context)
    served = throughput(weights)
    tps = served["tokens_per_second"]
    if tps <= 0:
        raise ValueError(f"{weights} weights leave no room for one sequence's KV cache on "
                         f"{gpu.name}")
    out = {"memory": parts, "fits": parts["total"] <= gpu.memory_bytes, "batch": served["batch"],
           "bound": served["bound"], "tokens_per_second": tps,
           "usd_per_million": cost_per_million_tokens(gpu.price, tps),
           **self_host_vs_api(tokens_per_month, usd_per_hour=gpu.price, tokens_per_second=tps,
                              api_usd_per_million=api_usd_per_million)}
    if one_time_usd is not None:
        baseline = throughput(baseline_weights)
        out["baseline_fits"] = baseline["fits"]
        out["break_even_tokens"] = None
        if baseline["fits"]:
            before = cost_per_million_tokens(gpu.price, baseline["tokens_per_second"])
            if out["usd_per_million"] < before:
                out["break_even_tokens"] = break_even_tokens(one_time_usd, before,
                                                             out["usd_per_million"])
    return out
