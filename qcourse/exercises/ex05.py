"""Exercises of notebook 05: AWQ's scales, folding them away, what the search evaluates, the
cost of the format, and predictions about what AWQ changes on qcourse-tiny."""
from __future__ import annotations

import inspect

import torch

from qcourse import awq, transforms
from qcourse.awq import awq_scales
from qcourse.exercises import Question
from qcourse.quant import fake_quantize

# decorated (torch.no_grad) package functions are forbidden through the function they wrap
FOLDS = tuple(inspect.unwrap(f) for f in (transforms.fold_scale_into_norm,
                                          transforms.fold_scale_into_linear)) + (awq.fold_scales,)


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
    name="05.3 awq_scale",
    prompt="Write awq_scale(x_mean, alpha): AWQ's per-input-channel scales, proportional to "
           "x_mean ** alpha (section 4) and normalised so that max(s) * min(s) = 1. Work out "
           "the normalising constant: the text does not give it.",
    reference=awq_scales,
    forbid=(awq_scales, inspect.unwrap(awq.search_scale)),
    cases=_scale_cases,
    rtol=1e-4,
    hints=("Two steps: the raw scales x_mean ** alpha, then one number that divides them all. "
           "What must that number be for max(s) · min(s) to become 1?",
           "Dividing every entry by c divides max(s) · min(s) by c²: solve for the c that "
           "leaves 1. Then check alpha = 0, where every scale should come out as 1."),
    solution_text="def awq_scale(x_mean, alpha):\n"
                  "    s = x_mean ** alpha\n"
                  "    return s / torch.sqrt(s.max() * s.min())",
)

fold_scale = Question(
    name="05.4 fold_scale",
    prompt="AWQ scales the K input columns of a linear layer that reads an RMSNorm's output "
           "by s [K]. Write fold_scale(norm_weight, weight, s): given the norm's weight [K], "
           "the linear layer's weight [N, K] and s, return the new (norm_weight, weight) so "
           "that linear(norm(x)) computes the same function for every x.",
    reference=_fold_reference,
    forbid=FOLDS,
    cases=_fold_cases,
    hints=("The RMSNorm's output is x̂ ⊙ g (g: its weight) and the layer computes "
           "(x̂ ⊙ g) · Wᵀ = Σ_j x̂_j g_j W_nj. If column j of W is multiplied by s_j, what must "
           "happen to g_j for every term of the sum to stay the same?",
           "Which dimension of weight [N, K] holds the input columns, and against which "
           "dimension does a tensor of shape [K] broadcast?"),
    solution_text="def fold_scale(norm_weight, weight, s):\n"
                  "    return norm_weight / s, weight * s",
)

scaled_quantization = Question(
    name="05.2 scaled_quantization",
    prompt="Write scaled_quantization(weight, s, bits, group_size): after AWQ the layer stores "
           "the quantized weight with its input columns scaled by s, and it receives x / s "
           "(the formula for y above). Return the float weight W_eff [N, K] such that "
           "x @ W_eff.T equals what that layer computes, for every x. Quantize with "
           "qcourse.quant.fake_quantize(..., symmetric=False, granularity='group', "
           "group_size=group_size).",
    reference=_scaled_quantization_reference,
    forbid=(inspect.unwrap(awq.search_scale),),
    cases=_scaled_quantization_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("Write what the layer computes for one output: Σ_j (x_j / s_j) · Q(s_j · W_nj), "
           "and read off the factor that multiplies x_j.",
           "Three operations in a row: one before the quantizer, the quantizer, one after. "
           "Which of them does the folded input x / s account for?"),
    solution_text="from qcourse.quant import fake_quantize\n\n"
                  "def scaled_quantization(weight, s, bits, group_size):\n"
                  "    q = fake_quantize(weight * s, bits, symmetric=False, granularity='group',\n"
                  "                      group_size=group_size)\n"
                  "    return q / s",
)

bits_per_weight = Question(
    name="05.6 bits_per_weight",
    prompt="How many bits per weight does AWQ's usual format cost: 4-bit integers with one fp16 "
           "scale and one 4-bit zero point per group of 128 weights (ignore g_idx)? A number.",
    reference=lambda: 4 + (16 + 4) / 128,
    hints=("Count the bits one group of 128 weights stores, then divide by 128.",
           "A group stores its codes, one scale and one zero point; the zero point is packed "
           "like a code, and the scale's format says how wide it is."),
    solution_text="bits_per_weight = 4 + (16 + 4) / 128   # 4.15625",
)

salient_recovery = Question(
    name="05.1 salient_recovery",
    prompt="Predict before section 2's experiment: at 3 bits (groups of 128), keeping the 1 % of "
           "input channels with the largest activations in fp32 will recover how much of the "
           "perplexity RTN loses on qcourse-tiny?",
    choices={"a": "most of it (more than half)", "b": "some of it (10 to 50 %)",
             "c": "almost none (under 10 %)"},
    reference=lambda: "c",  # measured in the notebook (tests/test_ex05.py re-measures it)
    hints=("The AWQ paper's effect comes from a few input channels whose activations are far "
           "larger than the rest. How large are the largest channels of qcourse-tiny (section 1)?",
           "Compare section 1's printed ratio (largest mean |x_j| over the median) with the "
           "outlier channels of notebook 02's outlier model (section 6b), about 100 times the "
           "median: which of the two does qcourse-tiny resemble?"),
    solution_text="salient_recovery = 'c'   # no strong outlier channels in qcourse-tiny",
)

clipped_share = Question(
    name="05.5 clipped_share",
    prompt="Predict before section 5 measures it: on block 1's mlp.down_proj at 3 bits, for what "
           "share of the (output channel, group) pairs will the clip search choose a ratio "
           "below 1?",
    choices={"a": "none", "b": "about a quarter", "c": "about half", "d": "most of them (over 75 %)"},
    reference=lambda: "d",  # measured in the notebook (tests/test_ex05.py re-measures it)
    hints=("With 8 levels (3 bits) over the range of 128 weights, how wide is a step compared "
           "with the typical weight?",
           "Clipping trades a larger error on the one or two largest weights of a group for a "
           "finer step on the other 126; the search keeps r < 1 only where the trade lowers "
           "the output error. How often would you expect that at 3 bits?"),
    solution_text="clipped_share = 'd'   # about 90 % of the groups here",
)
