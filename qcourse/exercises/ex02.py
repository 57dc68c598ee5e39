"""Exercises of notebook 02: post-training quantization."""
from __future__ import annotations

import torch

from qcourse.eval import model_size_bytes
from qcourse.exercises import Question
from qcourse.layers import outlier_features, quantize_per_token
from qcourse.layers import QuantLinear
from qcourse.smoothquant import smoothing_scales


def _layer_bytes(out_features: int, in_features: int, bits: int, group_size: int | None) -> int:
    """The real size of a QuantLinear of that shape, measured (no bias)."""
    return model_size_bytes(QuantLinear(in_features, out_features, bits, group_size))


def _activations() -> list[tuple]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(6, 32, generator=generator)
    x[:, 5] *= 30                              # an outlier feature
    y = torch.randn(3, 16, generator=generator) * torch.tensor([[1.0], [100.0], [0.01]])
    return [(x,), (y,), (torch.tensor([[0.5, -1.0, 0.25], [3.0, 0.0, -6.0]]),)]


def _outlier_cases() -> list[tuple]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(10, 24, generator=generator)
    x[3, 7], x[8, 2], x[0, 11] = 9.0, -12.0, 5.0   # one negative outlier, one below 6
    return [(x, 6.0), (x, 4.0), (torch.tensor([[1.0, -7.0], [2.0, 3.0]]), 6.0)]


def _smoothing_cases() -> list[tuple]:
    generator = torch.Generator().manual_seed(4)
    act = torch.rand(16, generator=generator) * 10 + 0.1
    act[3] = 80.0
    weight = torch.randn(8, 16, generator=generator) * 0.1
    return [(act, weight, 0.5), (act, weight, 0.8), (torch.tensor([4.0, 1.0]),
                                                     torch.tensor([[1.0, -0.25]]), 0.5)]


layer_bytes = Question(
    name="02.1 layer_bytes",
    prompt="Write layer_bytes(out_features, in_features, bits, group_size) returning the bytes a "
           "QuantLinear really stores (no bias): packed bits-bit weights, packed bits-bit zero "
           "points, one fp16 scale per output row and group, and an int32 g_idx per input column. "
           "group_size=None means one group per row.",
    reference=_layer_bytes,
    cases=lambda: [(256, 768, 4, 128), (128, 256, 3, None), (768, 256, 2, 32), (256, 256, 8, 64),
                   (64, 4096, 4, 128)],
    hint_text="N·K·b/8 for the weights; with G = K/g groups, N·G·b/8 for the zeros and N·G·2 for "
              "the fp16 scales; 4·K for g_idx.",
    solution_text="def layer_bytes(n, k, bits, group_size):\n"
                  "    groups = k // (group_size or k)\n"
                  "    return n * k * bits // 8 + n * groups * bits // 8 + 2 * n * groups + 4 * k",
)

quantize_tokens = Question(
    name="02.2 quantize_tokens",
    prompt="Write quantize_tokens(x) for activations x [tokens, K]: symmetric int8 with one scale "
           "per token (row), scale = max|x_row| / 127; return (q as torch.int8, scale [tokens, 1]).",
    reference=quantize_per_token,
    cases=_activations,
    hint_text="scale = x.abs().amax(dim=1, keepdim=True) / 127; q = round(x / scale), clamped to "
              "[-128, 127]. The max is over the features of a token, i.e. along dim 1.",
    solution_text="def quantize_tokens(x):\n"
                  "    scale = x.abs().amax(dim=1, keepdim=True) / 127\n"
                  "    q = torch.round(x / scale).clamp(-128, 127).to(torch.int8)\n"
                  "    return q, scale",
)

outlier_columns = Question(
    name="02.3 outlier_columns",
    prompt="Write outlier_columns(x, threshold) for x [tokens, K]: a boolean tensor [K], True for "
           "the input features that LLM.int8() keeps in floating point (some |x| > threshold).",
    reference=outlier_features,
    cases=_outlier_cases,
    hint_text="Take the absolute value first (outliers can be negative), then the max over the "
              "tokens (dim 0), then compare.",
    solution_text="def outlier_columns(x, threshold):\n"
                  "    return x.abs().amax(dim=0) > threshold",
)

smoothing = Question(
    name="02.4 smoothing",
    prompt="Write smoothing(act_absmax, weight, alpha): SmoothQuant's per-input-channel scales "
           "s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), with act_absmax [K] and weight [N, K].",
    reference=lambda act, weight, alpha: smoothing_scales(act, [weight], alpha),
    cases=_smoothing_cases,
    rtol=1e-4,
    hint_text="max|W_j| is the max over the output rows of column j: weight.abs().amax(dim=0).",
    solution_text="def smoothing(act_absmax, weight, alpha):\n"
                  "    w = weight.abs().amax(dim=0)\n"
                  "    return act_absmax ** alpha / w ** (1 - alpha)",
)
