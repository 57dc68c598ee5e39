"""Exercises of notebook 01: asymmetric quantization, per-group scales, 4-bit packing."""
from __future__ import annotations

import torch

from qcourse.exercises import Question
from qcourse.pack import pack_int32
from qcourse.quant import quantize


def _asymmetric_reference(x: torch.Tensor, bits: int):
    return quantize(x, bits, symmetric=False, granularity="tensor")


def _asymmetric_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.tensor([-1.0, 0.0, 0.4, 2.0]), 2),
        (torch.randn(64, generator=g), 4),
        (torch.randn(8, 16, generator=g) * 0.05 + 0.01, 8),
        (torch.rand(32, generator=g) + 1.0, 4),      # all positive: the range must include 0
        (-torch.rand(32, generator=g) - 0.5, 3),     # all negative
        (torch.tensor([-1.5, 1.5]), 2),              # 1.5/1 + 2 = 3.5 rounds to 4: clamp to 3
    ]


def _group_scales_reference(W: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    return quantize(W, bits, symmetric=True, granularity="group", group_size=group_size)[1]


def _group_scales_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.arange(1.0, 17.0).reshape(2, 8) * torch.tensor([1.0, -1.0]).repeat(4), 4, 4),
        (torch.randn(4, 32, generator=g), 4, 8),
        (torch.randn(16, 16, generator=g), 8, 4),    # square: a transposed answer has the shape
        (torch.randn(6, 64, generator=g) * 0.02, 3, 32),
    ]


def _pack4_reference(values: torch.Tensor) -> torch.Tensor:
    return pack_int32(values, 4, dim=-1)


def _pack4_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.arange(8, dtype=torch.uint8),),
        (torch.tensor([1, 2, 3, 4, 5, 6, 7, 8], dtype=torch.uint8),),
        (torch.full((2, 8), 15, dtype=torch.uint8),),   # top nibble set: a negative int32
        (torch.randint(0, 16, (3, 32), generator=g, dtype=torch.uint8),),
        (torch.randint(0, 16, (2, 4, 16), generator=g, dtype=torch.uint8),),
    ]


asymmetric_quantize = Question(
    name="01.1 asymmetric_quantize",
    prompt="Write asymmetric_quantize(x, bits) -> (q, scale, zero) for one scale per tensor: "
           "widen the range to include 0 (lo = min(x.min(), 0), hi = max(x.max(), 0)), "
           "scale = (hi - lo) / (2**bits - 1), zero = round(-lo / scale), "
           "q = clamp(round(x / scale + zero), 0, 2**bits - 1). Return q (any integer or "
           "float tensor of x's shape), and scale and zero as 0-d tensors.",
    reference=_asymmetric_reference,
    cases=_asymmetric_cases,
    hint_text="Use torch.round (it rounds halves to even, like the package) and .clamp(0, "
              "2**bits - 1). There are 2**bits - 1 steps between 2**bits levels. Without "
              "the clamp, a value at the top of the range can round one step too far.",
    solution_text=(
        "def asymmetric_quantize(x, bits):\n"
        "    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)\n"
        "    scale = (hi - lo) / (2**bits - 1)\n"
        "    zero = torch.round(-lo / scale)\n"
        "    q = torch.round(x / scale + zero).clamp(0, 2**bits - 1)\n"
        "    return q.to(torch.uint8), scale, zero"),
)

group_scales = Question(
    name="01.2 group_scales",
    prompt="Write group_scales(W, bits, group_size) returning the symmetric scales of a weight "
           "W [N, K] quantized in groups of group_size consecutive weights along each row "
           "(the input dimension): scale = absmax of the group / (2**(bits-1) - 1), shape "
           "[N, K // group_size]. No Python loops: reshape.",
    reference=_group_scales_reference,
    cases=_group_scales_cases,
    hint_text="W.reshape(N, K // group_size, group_size) puts each group in the last "
              "dimension; take .abs().amax(dim=-1). The largest symmetric level is "
              "2**(bits-1) - 1 (7 for 4 bits), not 2**(bits-1).",
    solution_text=(
        "def group_scales(W, bits, group_size):\n"
        "    N, K = W.shape\n"
        "    groups = W.reshape(N, K // group_size, group_size)\n"
        "    return groups.abs().amax(dim=-1) / (2 ** (bits - 1) - 1)"),
)

pack4 = Question(
    name="01.3 pack4",
    prompt="Write pack4(values) packing 4-bit values (uint8 in [0, 15], last dimension a "
           "multiple of 8) into int32 words along the last dimension, 8 values per word, "
           "value 0 of each run of 8 in the lowest nibble (bits 0-3), value 7 in the highest "
           "(bits 28-31): the GPTQ layout. Return an int32 (or int64) tensor [..., K // 8].",
    reference=_pack4_reference,
    cases=_pack4_cases,
    hint_text="Reshape to [..., K // 8, 8], shift value j left by 4 * j bits (in int64, so "
              "nothing overflows), sum over the last dimension (the nibbles do not overlap, "
              "so + is the same as |), then map words >= 2**31 to word - 2**32 for int32.",
    solution_text=(
        "def pack4(values):\n"
        "    runs = values.long().reshape(*values.shape[:-1], -1, 8)\n"
        "    words = (runs << (4 * torch.arange(8))).sum(dim=-1)\n"
        "    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)"),
)
