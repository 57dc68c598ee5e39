"""Exercises of notebook 05: AWQ's scales, folding them away, and what the search evaluates."""
from __future__ import annotations

import torch

from qcourse.awq import awq_scales
from qcourse.exercises import Question
from qcourse.quant import fake_quantize


def _scale_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(5)
    x_mean = torch.rand(16, generator=g) * 2 + 0.05
    x_mean[4] = 40.0                                   # a salient channel
    return [(x_mean, 0.5), (x_mean, 0.85), (x_mean, 0.0),
            (torch.tensor([1.0, 4.0, 16.0]), 0.5),     # s ∝ [1, 2, 4], normalised: [.5, 1, 2]
            (torch.tensor([0.2, 3.0, 7.0, 0.9]), 0.3)]


def _fold_reference(norm_weight: torch.Tensor, weight: torch.Tensor, s: torch.Tensor):
    return norm_weight / s, weight * s


def _fold_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(6)
    return [(torch.rand(8, generator=g) + 0.5, torch.randn(12, 8, generator=g),
             torch.rand(8, generator=g) * 3 + 0.2),
            (torch.ones(4), torch.arange(8.0).reshape(2, 4), torch.tensor([1.0, 2.0, 4.0, 0.5])),
            (torch.rand(6, generator=g) + 0.5, torch.randn(6, 6, generator=g),   # square
             torch.rand(6, generator=g) * 3 + 0.2)]


def _scaled_quantization_reference(weight: torch.Tensor, s: torch.Tensor, bits: int,
                                   group_size: int) -> torch.Tensor:
    scaled = fake_quantize(weight * s, bits, symmetric=False, granularity="group",
                           group_size=group_size)
    return scaled / s


def _scaled_quantization_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(7)
    s = torch.ones(32)
    s[:4] = 4.0
    return [(torch.randn(8, 32, generator=g), s, 4, 16),
            (torch.randn(4, 64, generator=g) * 0.05, torch.rand(64, generator=g) * 2 + 0.5, 3, 32),
            (torch.randn(6, 32, generator=g), torch.rand(32, generator=g) + 0.5, 2, 8)]


awq_scale = Question(
    name="05.1 awq_scale",
    prompt="Write awq_scale(x_mean, alpha): AWQ's per-input-channel scales s = x_mean ** alpha, "
           "normalised so that max(s) * min(s) = 1 (divide by sqrt(max(s) * min(s))).",
    reference=awq_scales,
    cases=_scale_cases,
    rtol=1e-4,
    hint_text="Compute s = x_mean ** alpha first, then divide the whole vector by "
              "torch.sqrt(s.max() * s.min()). With alpha = 0 every scale is 1.",
    solution_text="def awq_scale(x_mean, alpha):\n"
                  "    s = x_mean ** alpha\n"
                  "    return s / torch.sqrt(s.max() * s.min())",
)

fold_scale = Question(
    name="05.2 fold_scale",
    prompt="Write fold_scale(norm_weight, weight, s) returning the new (norm_weight, weight) "
           "after folding AWQ's scales: the RMSNorm's weight [K] is divided by s [K] and the "
           "linear layer's weight [N, K] is multiplied by s along its input columns, so that "
           "linear(norm(x)) is unchanged.",
    reference=_fold_reference,
    cases=_fold_cases,
    hint_text="weight * s broadcasts s over the last dimension, the input columns. The norm "
              "output is divided by s, so its weight is divided too.",
    solution_text="def fold_scale(norm_weight, weight, s):\n"
                  "    return norm_weight / s, weight * s",
)

scaled_quantization = Question(
    name="05.3 scaled_quantization",
    prompt="Write scaled_quantization(weight, s, bits, group_size): the weight AWQ's search "
           "evaluates, Q(W · diag(s)) · diag(s)^-1, where Q is asymmetric fake quantization "
           "with one scale per group of group_size input columns "
           "(qcourse.quant.fake_quantize(..., symmetric=False, granularity='group', "
           "group_size=group_size)).",
    reference=_scaled_quantization_reference,
    cases=_scaled_quantization_cases,
    rtol=1e-4,
    atol=1e-5,
    hint_text="Scale the columns up (weight * s), quantize and dequantize, then scale them back "
              "down (/ s): the layer then multiplies the unscaled input.",
    solution_text="from qcourse.quant import fake_quantize\n\n"
                  "def scaled_quantization(weight, s, bits, group_size):\n"
                  "    q = fake_quantize(weight * s, bits, symmetric=False, granularity='group',\n"
                  "                      group_size=group_size)\n"
                  "    return q / s",
)

bits_per_weight = Question(
    name="05.4 bits_per_weight",
    prompt="How many bits per weight does AWQ's usual format cost: 4-bit integers with one fp16 "
           "scale and one 4-bit zero point per group of 128 weights (ignore g_idx)? A number.",
    reference=lambda: 4 + (16 + 4) / 128,
    hint_text="Each group of 128 weights stores 128 × 4 bits plus 16 bits of scale and 4 bits "
              "of zero point; divide by 128.",
    solution_text="bits_per_weight = 4 + (16 + 4) / 128   # 4.15625",
)
