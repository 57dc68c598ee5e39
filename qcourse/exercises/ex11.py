"""Exercises of notebook 11: decode an MXFP4 value (E2M1 nibble and E8M0 scale), the bytes a
quantized KV cache saves, and what a Hadamard rotation does to an outlier channel."""
from __future__ import annotations

import torch
from transformers import LlamaConfig

from qcourse import kvcache, mx, rotate
from qcourse.exercises import Question


def _decode_reference(nibble: int, scale: int) -> float:
    value = mx.decode(torch.tensor([nibble]), mx.E2M1) * mx.e8m0_values()[scale]
    return float(value.item())


def _decode_cases() -> list[tuple]:
    # every nibble once (zero, the subnormal 0.5, the normals up to 6, negatives), several scales
    scales = [127, 130, 120, 127, 128, 126, 131, 100, 127, 140, 127, 125, 127, 133, 118, 127]
    return [(nibble, scale) for nibble, scale in zip(range(16), scales)]


def _bytes_saved_reference(layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int,
                           bits: int, group_size: int) -> float:
    config = LlamaConfig(num_hidden_layers=layers, num_attention_heads=kv_heads,
                         num_key_value_heads=kv_heads, head_dim=head_dim,
                         hidden_size=kv_heads * head_dim)
    scheme = kvcache.KVScheme("int", bits, group_size)
    return kvcache.cache_bytes(config, tokens, batch=batch) - \
        kvcache.cache_bytes(config, tokens, scheme, batch=batch)


def _bytes_saved_cases() -> list[tuple]:
    return [(6, 2, 64, 512, 1, 8, 64),          # qcourse-tiny, int8, one scale per head and token
            (32, 8, 128, 8192, 1, 8, 128),      # Llama-3-8B shape, 8k context
            (32, 8, 128, 8192, 16, 4, 32),      # a batch of 16, int4 in groups of 32 (q4_0-like)
            (80, 8, 128, 32768, 4, 2, 32),      # Llama-3-70B shape, 32k context, int2
            (1, 1, 64, 1, 1, 4, 64)]


def _rotation_reference(M: float, D: int) -> tuple[float, float, float]:
    x = torch.zeros(1, D, dtype=torch.float64)
    x[0, 0] = M
    rotated = x @ rotate.random_hadamard(D, seed=0)
    return (rotated.abs().max().item(), rotate.peak_to_rms(x).item(),
            rotate.peak_to_rms(rotated).item())


def _rotation_cases() -> list[tuple]:
    return [(60.0, 256), (1.0, 4), (1000.0, 4096), (7.5, 64), (3.0, 1)]


decode_mxfp4 = Question(
    name="11.1 decode_mxfp4",
    prompt="Write decode_mxfp4(nibble, scale): the value of one MXFP4 element. nibble (0..15) is "
           "an E2M1 code: bit 3 the sign, bits 2-1 the exponent E (bias 1), bit 0 the mantissa M; "
           "E = 0 is subnormal (M/2 · 2^0). scale (0..254) is the block's E8M0 code: 2^(scale - "
           "127). Return the float.",
    reference=_decode_reference,
    cases=_decode_cases,
    hint_text="Normal (E > 0): (1 + M/2) · 2^(E - 1). Subnormal (E = 0): M/2 (so 0 or 0.5). The "
              "16 codes give ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}. Then multiply by 2.0 ** (scale - 127).",
    solution_text="def decode_mxfp4(nibble, scale):\n"
                  "    sign = -1.0 if nibble & 8 else 1.0\n"
                  "    E, M = (nibble >> 1) & 3, nibble & 1\n"
                  "    value = M / 2 if E == 0 else (1 + M / 2) * 2.0 ** (E - 1)\n"
                  "    return sign * value * 2.0 ** (scale - 127)",
)

kv_bytes_saved = Question(
    name="11.2 kv_bytes_saved",
    prompt="Write kv_bytes_saved(layers, kv_heads, head_dim, tokens, batch, bits, group_size): "
           "the bytes a KV cache saves against fp16 when every key and value is stored in `bits` "
           "bits with one fp16 scale per `group_size` values (symmetric, no zero point).",
    reference=_bytes_saved_reference,
    cases=_bytes_saved_cases,
    hint_text="Count the cached numbers first: keys AND values, for every layer, kv head, "
              "head_dim entry, token and sequence. fp16 spends 2 bytes on each; the quantized "
              "cache bits/8 plus 2 bytes per group of group_size.",
    solution_text="def kv_bytes_saved(layers, kv_heads, head_dim, tokens, batch, bits, group_size):\n"
                  "    values = 2 * layers * kv_heads * head_dim * tokens * batch\n"
                  "    return values * 2 - values * (bits / 8 + 2 / group_size)",
)

outlier_after_rotation = Question(
    name="11.3 outlier_after_rotation",
    prompt="A token has D channels (D a power of two): channel 0 holds M, all others are 0. It is "
           "multiplied by a normalized Hadamard matrix (entries ±1/√D). Write "
           "outlier_after_rotation(M, D) returning a tuple: (the largest |value| after the "
           "rotation, the peak-to-RMS ratio max|x|/rms(x) before, the same ratio after).",
    reference=_rotation_reference,
    cases=_rotation_cases,
    rtol=1e-6,
    hint_text="x·H is M times row 0 of H: every entry is ±M/√D. Before, the RMS of x is "
              "sqrt(M²/D) = M/√D; after, every entry has the same size.",
    solution_text="def outlier_after_rotation(M, D):\n"
                  "    return M / math.sqrt(D), math.sqrt(D), 1.0",
)
