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
    name="05.2 awq_scale",
    prompt="Write awq_scale(x_mean, alpha): AWQ's per-input-channel scales s = x_mean ** alpha, "
           "normalised so that max(s) * min(s) = 1 (divide by sqrt(max(s) * min(s))).",
    reference=awq_scales,
    forbid=(awq_scales, inspect.unwrap(awq.search_scale)),
    cases=_scale_cases,
    rtol=1e-4,
    hints=("Two steps: the raw scales x_mean ** alpha, then one number that divides them all. "
           "What must that number be for max(s) · min(s) to become 1?",
           "If you divide every entry by c, the product of the largest and smallest is divided "
           "by c². Check alpha = 0: every scale should come out as 1."),
    solution_text="def awq_scale(x_mean, alpha):\n"
                  "    s = x_mean ** alpha\n"
                  "    return s / torch.sqrt(s.max() * s.min())",
)

fold_scale = Question(
    name="05.4 fold_scale",
    prompt="Write fold_scale(norm_weight, weight, s) returning the new (norm_weight, weight) "
           "after folding AWQ's scales: the RMSNorm's weight [K] is divided by s [K] and the "
           "linear layer's weight [N, K] is multiplied by s along its input columns, so that "
           "linear(norm(x)) is unchanged.",
    reference=_fold_reference,
    forbid=FOLDS,
    cases=_fold_cases,
    hints=("The product is unchanged if one side is divided by s and the other multiplied by "
           "s. Which side is the norm's output, and which the linear layer's input columns?",
           "weight [N, K] times s [K] broadcasts s over the last dimension, the input columns; "
           "the RMSNorm multiplies its output element-wise by its weight [K]."),
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
    forbid=(inspect.unwrap(awq.search_scale),),
    cases=_scaled_quantization_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("Three operations in a row: one before the quantizer, the quantizer, one after. "
           "Which input does the layer multiply after folding?",
           "The columns are scaled up before quantizing (so a salient column uses more of the "
           "grid) and scaled back down after, since the folded input is x / s."),
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
           "128 codes of 4 bits, one fp16 scale (16 bits) and one zero point packed in 4 bits "
           "like the codes."),
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
           "Section 1 found the largest mean |x_j| only 2 to 4 times the median: there are no "
           "strong outlier channels to protect here."),
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
           "A range set by the one or two largest weights of a group makes the step coarse for "
           "the 126 others: trading a little error on the extremes for a finer step usually "
           "pays at 3 bits."),
    solution_text="clipped_share = 'd'   # about 90 % of the groups here",
)
