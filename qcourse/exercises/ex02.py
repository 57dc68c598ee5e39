"""Exercises of notebook 02: post-training quantization (bytes, per-token int8, clipping,
LLM.int8()'s outliers, SmoothQuant) and two predictions."""
from __future__ import annotations

import torch

from qcourse import calib, quant
from qcourse.eval import model_size_bytes
from qcourse.exercises import Question
from qcourse.layers import outlier_features, quantize_per_token
from qcourse.layers import QuantLinear
from qcourse.quant import QuantScheme
from qcourse.smoothquant import smoothing_scales

QUANTIZERS = (quant.quantize, quant.scale_and_zero, quant.fake_quantize, QuantScheme.params,
              QuantScheme.quantize, QuantScheme.apply_grid, QuantScheme.fake_quantize)


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


def _clip_reference(x: torch.Tensor, bits: int, ratios: list[float]) -> float:
    return calib.mse_clip_ratio(x, bits, symmetric=True, granularity="tensor",
                                ratios=ratios).item()


def _clip_cases() -> list[tuple]:
    generator = torch.Generator().manual_seed(5)
    heavy = torch.randn(256, generator=generator)
    heavy[17] = 12.0                                  # one outlier stretches the range
    u = torch.rand(512, generator=generator) - 0.5
    laplace = -u.sign() * torch.log1p(-2 * u.abs())   # Laplace(0, 1) by inverse transform
    return [(heavy, 3, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]),
            (heavy, 8, [1.0, 0.9, 0.5]),                  # 8 bits: clipping costs more than it saves
            (laplace * 0.01, 4, [0.4, 1.0, 0.7, 0.55]),   # ratios in no particular order
            (torch.zeros(8), 4, [0.5, 0.75, 1.0]),        # every ratio ties: keep the largest
            (torch.linspace(-1, 1, 9), 2, [1.0, 0.75, 0.5])]


layer_bytes = Question(
    name="02.1 layer_bytes",
    prompt="Write layer_bytes(out_features, in_features, bits, group_size) returning the bytes a "
           "QuantLinear really stores (no bias), from the layout described above: packed codes, "
           "fp16 scales, packed zero points and GPTQ's g_idx (int32: the group of each input "
           "column). group_size=None means one group per row.",
    reference=_layer_bytes,
    forbid=(model_size_bytes,),
    cases=lambda: [(256, 768, 4, 128), (128, 256, 3, None), (768, 256, 2, 32), (256, 256, 8, 64),
                   (64, 4096, 4, 128)],
    hints=("Add up four tensors: the packed codes, the packed zero points, the scales and "
           "g_idx. How many entries does each have for a weight [N, K] with G = K / group_size "
           "groups per row?",
           "A scale and a zero point belong to one (row, group) pair; g_idx has one entry per "
           "input column, whatever the rows. Packing changes the bytes of an entry, not the "
           "number of entries.",
           "Bytes per entry: a packed code or zero point takes bits/8 bytes, a scale 2 (fp16), a "
           "g_idx entry 4 (int32). Multiply each count by its size; check the 4-bit q_proj "
           "printed below the exercise."),
    solution_text="def layer_bytes(n, k, bits, group_size):\n"
                  "    groups = k // (group_size or k)\n"
                  "    return n * k * bits // 8 + n * groups * bits // 8 + 2 * n * groups + 4 * k",
)

quantize_tokens = Question(
    name="02.4 quantize_tokens",
    prompt="Write quantize_tokens(x) for activations x [tokens, K]: dynamic symmetric int8 "
           "quantization with one scale per token (row), chosen so that no value of the row is "
           "clipped and the grid is as fine as it can be; return (q as torch.int8, "
           "scale [tokens, 1]).",
    reference=quantize_per_token,
    forbid=(quantize_per_token, *QUANTIZERS),
    cases=_activations,
    hints=("One scale per token: a token is a row of x. Over which dimension do you take the "
           "max, and how do you keep the result shaped [tokens, 1]?",
           "Symmetric means the grid reaches as far below 0 as above it, and int8 is not "
           "symmetric: which is then the largest level the row's largest |x| may land on? "
           "Round, and keep q inside int8's range before converting the dtype."),
    solution_text="def quantize_tokens(x):\n"
                  "    scale = x.abs().amax(dim=1, keepdim=True) / 127\n"
                  "    q = torch.round(x / scale).clamp(-128, 127).to(torch.int8)\n"
                  "    return q, scale",
)

outlier_columns = Question(
    name="02.6 outlier_columns",
    prompt="Write outlier_columns(x, threshold) for x [tokens, K]: a boolean tensor [K], True for "
           "the input features that LLM.int8() multiplies in floating point (the rule is in the "
           "text above: it is decided per feature, from the whole batch).",
    reference=outlier_features,
    forbid=(outlier_features, calib.ActivationStats.outlier_channels),
    cases=_outlier_cases,
    hints=("A feature is a column of x. It is an outlier feature if *any* token has a large "
           "value in it: which reduction over the tokens answers 'any value above'?",
           "Try your function on a column whose only large value is negative, say -12: does "
           "it count? And does your result hold one boolean per column [K], or one per token?"),
    solution_text="def outlier_columns(x, threshold):\n"
                  "    return x.abs().amax(dim=0) > threshold",
)

smoothing = Question(
    name="02.7 smoothing",
    prompt="Write smoothing(act_absmax, weight, alpha) -> s [K], SmoothQuant's factors (act_absmax "
           "[K]: max|X_j| per input channel j; weight [N, K]). Migration divides activation "
           "channel j by s_j and multiplies weight column j by s_j, which leaves the product "
           "P_j = max|X_j| · max|W_j| unchanged; SmoothQuant chooses s_j so that afterwards the "
           "largest |activation| of channel j is P_j^(1 - alpha) and its largest |weight| "
           "P_j^alpha. Derive s_j, then code it.",
    reference=lambda act, weight, alpha: smoothing_scales(act, [weight], alpha),
    forbid=(smoothing_scales,),
    cases=_smoothing_cases,
    rtol=1e-4,
    hints=("After migration the activation max is max|X_j| / s_j and the weight max is "
           "max|W_j| · s_j. One of the two conditions is enough to find s_j (the other then "
           "holds, since the product is P_j): which one is simpler to solve?",
           "Solve max|X_j| / s_j = P_j^(1 - alpha) for s_j and replace P_j by its definition: the "
           "powers of max|X_j| combine. max|W_j| is the largest |weight| of column j, a max over "
           "the output rows."),
    solution_text="def smoothing(act_absmax, weight, alpha):\n"
                  "    w = weight.abs().amax(dim=0)\n"
                  "    return act_absmax ** alpha / w ** (1 - alpha)",
)

best_clip_ratio = Question(
    name="02.3 best_clip_ratio",
    prompt="Write best_clip_ratio(x, bits, ratios) -> float: of the clip ratios in `ratios`, the "
           "one whose symmetric per-tensor quantization of x (range r · max|x|, values beyond "
           "it saturate) gives the lowest mean squared error Σ(x - x')²; on a tie, the larger "
           "ratio. You may use qcourse.quant.fake_quantize(x, bits, symmetric=True, "
           "granularity='tensor', clip_ratio=r) for one quantization: the exercise is the "
           "search.",
    reference=_clip_reference,
    forbid=(calib.mse_clip_ratio, calib.best_ratio_on_grid),
    cases=_clip_cases,
    hints=("Try every ratio: quantize, dequantize, measure the error, keep the best. What "
           "should happen when two ratios give exactly the same error?",
           "The tie rule is the subtle part: if you keep the first best you meet, which ratio "
           "wins a tie depends on the order of `ratios` (a test case gives them unsorted). In "
           "which order should you visit them, and should an equal error replace the best?"),
    solution_text=(
        "from qcourse.quant import fake_quantize\n\n"
        "def best_clip_ratio(x, bits, ratios):\n"
        "    best, best_err = None, None\n"
        "    for r in sorted(ratios, reverse=True):\n"
        "        fq = fake_quantize(x, bits, symmetric=True, granularity='tensor', clip_ratio=r)\n"
        "        err = (x - fq).pow(2).sum().item()\n"
        "        if best_err is None or err < best_err:\n"
        "            best, best_err = r, err\n"
        "    return best"),
)

two_bit_rtn = Question(
    name="02.2 two_bit_rtn",
    prompt="Predict before the sweep: with RTN at 2 bits per channel (asymmetric: 4 levels, "
           "unlike notebook 00's symmetric 3), how much higher than fp32 will the perplexity "
           "on the 8 test windows be?",
    choices={"a": "within 1 %", "b": "between 5 % and 50 %", "c": "2 to 3 times",
             "d": "more than 10 times"},
    reference=lambda: "b",  # measured in the notebook: +20 % (tests/test_ex02.py re-measures it)
    hints=("Notebook 00's symmetric 2-bit grid had 3 levels and tripled the perplexity. What "
           "does a fourth level and a zero point that follows the row's range change?",
           "Place it between two measurements you know: 8 bits (255 steps across each row's "
           "range) leave the perplexity where it was, and notebook 00's 3 levels centred on 0 "
           "tripled it. Four levels from each row's min to its max: 3 steps. Which end is that "
           "closer to, and how far from either?"),
    solution_text="two_bit_rtn = 'b'   # about +20 % here; symmetric 3-level 2-bit tripled it",
)

outlier_layer = Question(
    name="02.5 outlier_layer",
    prompt="Predict before the measurement: the inputs of which linear layers of a Llama block "
           "have the largest activations (largest channel max over the median channel)?",
    choices={"a": "q_proj, k_proj, v_proj (after the attention norm)", "b": "o_proj",
             "c": "gate_proj, up_proj (after the MLP norm)", "d": "down_proj"},
    reference=lambda: "d",  # measured in the notebook (tests/test_ex02.py re-measures it)
    hints=("Which inputs come straight out of an RMSNorm, whose job is to keep magnitudes in "
           "check, and which one does not?",
           "For each option, what computes its input: an RMSNorm, attention's weighted average "
           "of values, or something else? Which of these bounds magnitudes, and which can "
           "multiply two large numbers together?"),
    solution_text="outlier_layer = 'd'   # SiLU(gate) * up: a product, not normalised",
)
