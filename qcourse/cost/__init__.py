"""Memory and money: what a model needs to run, and what its tokens cost.

    footprint   memory(config, weights=..., kv_cache=..., context=...): weights, KV cache,
                activations, runtime and total bytes, from a Hugging Face config.json
    quotes      Quote: a value with its unit, source and date (no price is built in)
    money       cost per million tokens, per month, replicas, self-hosting against an API,
                break-even of a one-time cost
    planning    RentedGPU (a card and its price), batched_throughput() (the decode bound of one
                sequence or of as many as the memory holds) and plan(): fit, speed and money
    widget      panel(): the plan as an ipywidgets panel
"""
from .footprint import (CONFIG_DIR, FLOAT_BYTES, KV_DTYPES, REQUIRED_FIELDS, WEIGHT_FORMATS,
                        ModelShape, WeightFormat, activation_bytes, cached_positions, fits,
                        gguf_shapes, kv_cache_bytes, load_config, max_context, memory,
                        model_shape, published_gguf_sizes, shipped_configs, weight_bytes,
                        weight_formats)
from .money import (HOURS_PER_MONTH, MILLION, break_even_tokens, cost_per_million_tokens,
                    monthly_cost, replicas, self_host_vs_api)
from .planning import (GPU, RentedGPU, batched_throughput, decode_tokens_per_second_bound,
                       matmul_weights, plan)
from .quotes import Quote, positive
from .widget import panel

__all__ = ["CONFIG_DIR", "FLOAT_BYTES", "KV_DTYPES", "REQUIRED_FIELDS", "WEIGHT_FORMATS",
           "ModelShape", "WeightFormat", "activation_bytes", "cached_positions", "fits",
           "gguf_shapes", "kv_cache_bytes", "max_context", "load_config", "memory",
           "model_shape", "published_gguf_sizes", "shipped_configs", "weight_bytes", "weight_formats", "HOURS_PER_MONTH", "MILLION",
           "break_even_tokens", "cost_per_million_tokens", "monthly_cost", "replicas",
           "self_host_vs_api", "GPU", "RentedGPU", "batched_throughput",
           "decode_tokens_per_second_bound", "matmul_weights", "plan",
           "Quote", "positive", "panel"]
