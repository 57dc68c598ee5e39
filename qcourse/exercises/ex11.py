"""Exercises of notebook 11: decode an MXFP4 value (E2M1 nibble and E8M0 scale), the bytes a
quantized KV cache saves, what a Hadamard rotation does to an outlier channel, and (a
prediction) what an outlier does to the other channels of a token quantized to 4 bits."""
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
    prompt="Write decode_mxfp4(nibble, scale): the value of one MXFP4 element, from its E2M1 "
           "code nibble (0..15) and its block's E8M0 scale code (0..254). Return a float.",
    reference=_decode_reference,
    cases=_decode_cases,
    hints=("Split the nibble into the fields of section 1's diagram first: which bit is the "
           "sign, which the exponent E, which the mantissa M? What is E2M1's bias, from "
           "2^(e-1) - 1?",
           "Section 1's two formulas: E > 0 is normal, E = 0 subnormal. Test your decoder on "
           "the eight magnitudes section 1 lists for E2M1 before the scale comes in.",
           "The E8M0 scale has eight exponent bits and nothing else: no sign, no mantissa, "
           "bias 127. Which number does a code of 127 stand for?"),
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
    hints=("Count the cached numbers first: which two tensors are kept, and along which five "
           "sizes does their number grow?",
           "fp16 spends 2 bytes on every cached number. The quantized cache spends bits/8 on "
           "each, and one fp16 scale is shared by group_size of them: what does that add per "
           "number?"),
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
    hints=("x has one nonzero entry, so x·H is M times one row of H. How large is each entry "
           "of a row of a normalized Hadamard matrix?",
           "peak-to-RMS = max|x| / sqrt(mean of x²). Before the rotation one of the D squares "
           "is M², the others 0; after it, how do the D squares compare with each other?"),
    solution_text="def outlier_after_rotation(M, D):\n"
                  "    return M / math.sqrt(D), math.sqrt(D), 1.0",
)


def _outlier_share_reference() -> str:
    return "c"   # measured in the notebook (about 100 %); tests/test_ex11.py re-measures it


outlier_share = Question(
    name="11.4 outlier_share",
    prompt="Predict before the measurement: one channel of 256 holds an outlier 100 times the "
           "layer's typical |x|; each token is quantized to symmetric 4 bits with one scale per "
           "token (max |x| / 7). What share of the other 255 channels' energy does the rounding "
           "lose (relative squared error)?",
    choices={"a": "under 5 %, as without the outlier", "b": "between 10 % and 40 %",
             "c": "nearly all of it (about 100 %)", "d": "more than 100 %"},
    reference=_outlier_share_reference,
    hints=("Where does the scale come from, and how large is the grid's step once the outlier "
           "sets it?",
           "Compare that step with the other channels' values, which peak at a few times the "
           "typical |x| in a token without the outlier: to which level does rounding send most "
           "of them, and what does a value rounded there contribute to the error?"),
    solution_text="outlier_share = 'c'   # the step is 100/7 ≈ 14 typical |x|: the others round "
                  "to 0, and their whole energy is the error",
)
