"""Exercises of notebook 09: the KV cache of a real model, the cost of a million tokens, and
which format lets a 70B model serve 8k tokens of context on a 24 GB card."""
from __future__ import annotations

from qcourse import cost
from qcourse.exercises import Question

CARD_BYTES = 24 * 1024**3            # a "24 GB" card (RTX 4090, RTX 3090, L4 ...) holds 24 GiB
CANDIDATES = ("fp16", "int8", "int4-g128", "nf4-dq", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M",
              "Q3_K_M", "Q2_K")


def _kv_cases() -> list[tuple]:
    grouped_wide_heads = {"hidden_size": 1536, "intermediate_size": 8192, "num_hidden_layers": 18,
                          "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256,
                          "vocab_size": 1000}        # head_dim given, not hidden // heads
    return [(cost.load_config("Llama-2-7B"), 4096, 1),
            (cost.load_config("Llama-3.1-8B"), 8192, 4),
            (cost.load_config("Mistral-7B"), 32768, 1),
            (cost.load_config("Qwen2.5-7B"), 16384, 2),
            (cost.load_config("Llama-3.1-70B"), 8192, 1),
            (grouped_wide_heads, 1000, 3)]


def _fp16_kv(config: dict, context: int, batch: int) -> int:
    """Every position cached, as the prompt asks (a sliding window, Mistral's, is not the point)."""
    return cost.kv_cache_bytes(config, context, batch, "fp16", sliding_window=False)


def _formats_that_fit() -> list[str]:
    return [f for f in CANDIDATES if cost.fits("Llama-3.1-70B", CARD_BYTES, weights=f,
                                               kv_cache="fp16", context=8192)]


kv_cache_bytes = Question(
    name="09.1 kv_cache_bytes",
    prompt="Write kv_cache_bytes(config, context, batch): the bytes of an fp16 KV cache for "
           "`batch` sequences of `context` tokens, for a Hugging Face config dict. Every layer "
           "stores K and V for every position: num_key_value_heads heads of head_dim values "
           "(config['head_dim'] if the config has it, else hidden_size // num_attention_heads), "
           "2 bytes each.",
    reference=_fp16_kv,
    cases=_kv_cases,
    hint_text="2 (K and V) × num_hidden_layers × num_key_value_heads × head_dim × context × "
              "batch × 2 bytes. Grouped-query attention is the point: Llama-3.1-8B has 32 query "
              "heads but only 8 key/value heads, and only those are cached.",
    solution_text="def kv_cache_bytes(config, context, batch):\n"
                  "    heads = config.get('num_key_value_heads') or config['num_attention_heads']\n"
                  "    head_dim = config.get('head_dim') or "
                  "config['hidden_size'] // config['num_attention_heads']\n"
                  "    return 2 * config['num_hidden_layers'] * heads * head_dim * context * "
                  "batch * 2",
)

cost_per_million_tokens = Question(
    name="09.3 cost_per_million_tokens",
    prompt="Write cost_per_million_tokens(usd_per_hour, tokens_per_second): the USD cost of one "
           "million generated tokens on a machine rented by the hour that produces "
           "tokens_per_second, busy all the time.",
    reference=cost.cost_per_million_tokens,
    cases=lambda: [(2.0, 100.0), (0.86, 61.03), (3.78, 2400.0), (1.0, 1.0), (0.25, 5000.0)],
    rtol=1e-9,
    hint_text="One hour makes tokens_per_second × 3600 tokens and costs usd_per_hour; divide, "
              "then multiply by 1,000,000.",
    solution_text="def cost_per_million_tokens(usd_per_hour, tokens_per_second):\n"
                  "    return usd_per_hour / (tokens_per_second * 3600) * 1_000_000",
)

formats_that_fit = Question(
    name="09.2 formats_that_fit",
    prompt="Llama-3.1-70B, one sequence of 8,192 tokens, fp16 KV cache, on a card with 24 GiB. "
           f"Which of {list(CANDIDATES)} fit, weights + KV cache + activations "
           "(cost.memory)? Answer with the list of names, in that order (an empty list if none).",
    reference=_formats_that_fit,
    hint_text="Start from the weights alone: 70.6 B parameters at the bits per weight of each "
              "format (Q2_K is about 3 bits per weight once its mix is counted). Then add the KV "
              "cache, 2 × 80 layers × 8 heads × 128 × 8192 × 2 bytes.",
    solution_text="[f for f in CANDIDATES if cost.fits('Llama-3.1-70B', 24 * 1024**3, weights=f, "
                  "kv_cache='fp16', context=8192)]  ->  []: even Q2_K's weights (26.4 GB) exceed "
                  "24 GiB (25.8 GB). A 70B model needs two such cards, or a 2-bit format smaller "
                  "than the course's (llama.cpp's IQ2 types), or offloading layers to the CPU.",
)
