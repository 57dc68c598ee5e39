"""Exercises of notebook 10: failure modes. Reason about what a "typical" channel is, detect
outlier channels from statistics, choose SmoothQuant's α from a measured sweep, predict which
layer breaks a 2-bit model and how far a real model falls at 2 bits, read three GGUF files'
checks; and the helpers that reproduce the broken files."""
from __future__ import annotations

import copy
import functools
import itertools
import pathlib

import torch
from torch import nn

from qcourse.diagnose import diagnose
from qcourse.exercises import Question
from qcourse.quant import QuantScheme

# ---- reproducing broken GGUF files -----------------------------------------------------------


def unpermuted_copy(model: nn.Module) -> nn.Module:
    """A copy of a Llama whose q/k rows are pre-permuted *back*, so that
    :func:`qcourse.gguf.writer.export` (which permutes them for llama.cpp's RoPE) writes them
    in Hugging Face's layout: the file a converter that forgot the permutation would write."""
    from qcourse.gguf.writer import unpermute_qk

    out = copy.deepcopy(model)
    config = model.config
    with torch.no_grad():
        for block in out.model.layers:
            q, k = block.self_attn.q_proj.weight, block.self_attn.k_proj.weight
            q.copy_(unpermute_qk(q, config.num_attention_heads))
            k.copy_(unpermute_qk(k, config.num_key_value_heads))
    return out


def with_wrong_pretokenizer(source: pathlib.Path, target: pathlib.Path,
                            wrong: bytes = b"qwen2") -> pathlib.Path:
    """A copy of the GGUF file ``source`` whose ``tokenizer.ggml.pre`` says ``wrong`` instead
    of ``gpt-2`` (the same length, so every offset stays valid): what a converter that guessed
    the pre-tokenizer wrongly writes."""
    raw = pathlib.Path(source).read_bytes()
    if len(wrong) != len(b"gpt-2") or raw.count(b"gpt-2") < 1:
        raise ValueError("the file has no 'gpt-2' pre-tokenizer to replace, or the replacement "
                         "is not 5 bytes long")
    pathlib.Path(target).write_bytes(raw.replace(b"gpt-2", wrong, 1))
    return pathlib.Path(target)


SUSPECTS = {"x": ("Q8_0", False), "y": ("Q8_0", True), "z": ("F16", False)}   # (type, broken)


def gguf_suspects(model: nn.Module, tokenizer, folder) -> dict[str, pathlib.Path]:
    """Write the three files of exercise 10.6 into ``folder``: ``suspect_x.gguf``,
    ``suspect_y.gguf``, ``suspect_z.gguf``: one F16 and one Q8_0 file written correctly, and one
    Q8_0 file with its q/k rows in the wrong layout (:data:`SUSPECTS`)."""
    from qcourse.gguf.writer import export

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for letter, (ftype, broken) in SUSPECTS.items():
        paths[letter] = folder / f"suspect_{letter}.gguf"
        export(unpermuted_copy(model) if broken else model, tokenizer, paths[letter], ftype)
    return paths


# ---- 10.1 what a typical channel looks like -------------------------------------------------


def _typical_channel() -> str:
    absmax = torch.cat([torch.full((216,), 1.0), torch.full((40,), 20.0)])
    by_mean = int((absmax > 6 * absmax.mean()).sum())
    by_median = int((absmax > 6 * absmax.median()).sum())
    return {(40, 40): "a", (0, 40): "b", (40, 0): "c", (0, 0): "d"}[by_mean, by_median]


typical_channel = Question(
    name="10.1 typical_channel",
    prompt="Predict: a layer has 256 input channels; calibration gives a largest |x| (absmax) of "
           "1.0 for 216 of them and 20.0 for the other 40. A detector flags the channels whose "
           "absmax exceeds k = 6 times that of a typical channel. How many channels does it "
           "flag if 'typical' is the mean of absmax over the channels, and how many if it is "
           "the median?",
    choices={"a": "mean: 40, median: 40", "b": "mean: 0, median: 40",
             "c": "mean: 40, median: 0", "d": "mean: 0, median: 0"},
    reference=_typical_channel,
    hints=("Compute both statistics of the 256 values: the mean includes the 40 large channels "
           "with their weight, the median is the value of the channel in the middle of the "
           "sorted list.",
           "The mean is (216 · 1 + 40 · 20) / 256 ≈ 4; the median is the 128th smallest value. "
           "Then compare 20 with 6 times each."),
    solution_text="typical_channel = 'b'   # the mean (3.97) is pulled up by the outliers",
)

# ---- 10.2 outlier channels -------------------------------------------------------------------


def _outlier_channels(absmax: torch.Tensor, k: float) -> torch.Tensor:
    return torch.nonzero(absmax > k * absmax.median()).flatten()


def _absmax_cases() -> list[tuple]:
    gen = torch.Generator().manual_seed(10)
    cases = []
    for width, planted, k in ((33, [4, 20], 6.0), (129, [0, 64, 100], 10.0), (65, [], 6.0),
                              (17, [16], 3.0)):
        absmax = 1 + torch.rand(width, generator=gen)               # typical channels: 1 to 2
        absmax[planted] = 40 + 20 * torch.rand(len(planted), generator=gen)
        cases.append((absmax, k))
    large = 10 + 10 * torch.rand(31, generator=gen)                 # a layer with larger inputs
    large[7] = 500.0
    cases.append((large, 6.0))                                      # only channel 7, not all
    skewed = torch.cat([torch.full((20,), 1.0), torch.full((11,), 5.0)])   # many mid channels
    cases.append((skewed, 4.0))                                     # 5 > 4 x median 1: all 11
    boundary = torch.cat([torch.full((9,), 1.0), torch.tensor([4.0, 4.5])])
    cases.append((boundary, 4.0))                                   # exactly 4 x median: not more
    return cases


outlier_channels = Question(
    name="10.2 outlier_channels",
    prompt="Write outlier_channels(absmax, k): absmax [K] holds, for each input channel of a "
           "layer, the largest |x| seen over the calibration tokens. Return the indices of the "
           "channels more than k times larger than a typical channel of the same layer (your "
           "answer to 10.1 says which 'typical' survives many outliers), sorted, as a "
           "LongTensor (empty if there are none).",
    reference=_outlier_channels,
    cases=_absmax_cases,
    hints=("A typical channel must not move when some channels are outliers: which statistic "
           "of absmax stays put until half of the channels are large?",
           "Build a boolean mask over the K channels (strictly greater than k times that "
           "statistic), then turn the mask into the positions where it is True; the hidden "
           "cases compare a sorted LongTensor of indices."),
    solution_text="def outlier_channels(absmax, k):\n"
                  "    return torch.nonzero(absmax > k * absmax.median()).flatten()",
)

# ---- 10.3 choosing SmoothQuant's alpha -------------------------------------------------------


def _choose_alpha(sweep: dict, tolerance: float = 0.01) -> float:
    best = min(sweep.values())
    return min(alpha for alpha, value in sweep.items() if value <= best * (1 + tolerance))


def _sweep_cases() -> list[tuple]:
    return [({0.25: 80.0, 0.5: 72.6, 0.75: 72.5, 1.0: 73.9},),      # 0.5 within 1 % of 0.75
            ({0.25: 120.0, 0.5: 90.0, 0.75: 76.0, 1.0: 74.0},),     # only the largest
            ({0.3: 70.2, 0.5: 70.0, 0.7: 71.5},),                   # the smallest within 1 %
            ({0.5: 100.0, 0.6: 98.0, 0.9: 98.5},),                  # 0.9 is close, 0.6 first
            ({0.8: 65.0, 0.2: 65.3, 0.4: 70.0},)]                   # keys in any order


choose_alpha = Question(
    name="10.3 choose_alpha",
    prompt="Write choose_alpha(sweep): sweep maps each SmoothQuant α tried to the error "
           "measured with it (lower is better). Errors within 1 % of the best one are a tie "
           "for this measurement; among tied α, pick the one that disturbs the weights least "
           "(which direction of α is that? the cell above the exercise says what α moves "
           "where).",
    reference=_choose_alpha,
    cases=_sweep_cases,
    hints=("α = 0 leaves the activations as they are and the weights untouched; α = 1 moves "
           "all of the activations' range into the weight columns. So which end of a tie "
           "changes the weights least?",
           "Two passes over the sweep: the first finds the best error, the second keeps every "
           "α whose error is within 1 % of it. The keys are not sorted: choose among the kept "
           "α by value, not by position."),
    solution_text="def choose_alpha(sweep):\n"
                  "    best = min(sweep.values())\n"
                  "    return min(a for a, p in sweep.items() if p <= 1.01 * best)",
)

# ---- 10.4 the layer that breaks a 2-bit model -----------------------------------------------

BREAKING_SCHEME = QuantScheme(2, 128)
BREAKING_CHOICES = {
    "a": "a q_proj or k_proj (they decide where attention looks)",
    "b": "a v_proj, o_proj or down_proj of the first block",
    "c": "a gate_proj or up_proj of a middle block",
    "d": "the last block's down_proj, right before the output head",
}


@functools.lru_cache(maxsize=1)
def most_sensitive_layer() -> str:
    """The layer of qcourse-tiny whose 2-bit RTN quantization alone moves the next-token
    distribution most (``diagnose`` on 4 calibration windows of 128 tokens, seed 0)."""
    from qcourse import models

    model, tokenizer = models.load()
    return diagnose(model, tokenizer, quantize=BREAKING_SCHEME, n=4,
                    seq_len=128).most_sensitive(1)[0].name


def breaking_choice(name: str, last_block: int) -> str | None:
    """The choice of :data:`BREAKING_CHOICES` a layer name falls under (None: none of them)."""
    block, kind = int(name.split(".")[2]), name.rsplit(".", 1)[-1]
    if kind in ("q_proj", "k_proj"):
        return "a"
    if block == 0 and kind in ("v_proj", "o_proj", "down_proj"):
        return "b"
    if 0 < block < last_block and kind in ("gate_proj", "up_proj"):
        return "c"
    if block == last_block and kind == "down_proj":
        return "d"
    return None


def _breaking_layer() -> str:
    from qcourse import models

    config = models.load()[0].config
    return breaking_choice(most_sensitive_layer(), config.num_hidden_layers - 1)


breaking_layer = Question(
    name="10.4 breaking_layer",
    prompt="Predict before the measurement: quantize one linear layer of qcourse-tiny at a time "
           "to 2 bits (RTN, groups of 128), the rest in float, and measure how far the "
           "next-token distribution moves. Which layer moves it most?",
    choices=BREAKING_CHOICES,
    reference=_breaking_layer,
    hints=("Where does a layer's error go? q and k only change attention weights, which a "
           "softmax then normalises; v, o and down write values that are added to the residual "
           "stream.",
           "An error made early is carried, and processed, by every block after it; an error "
           "in the last block reaches the output through one layer only."),
    solution_text="breaking_layer = 'b'   # block 0's v_proj: measured in the next cell",
)

# ---- 10.5 a real model at 2 bits ---------------------------------------------------------------

real_collapse = Question(
    name="10.5 real_collapse",
    prompt="Predict before the measurement: at 2 bits (RTN, groups of 128) qcourse-tiny's "
           "perplexity rose by the percentage printed above. SmolLM2-135M gets finer groups, "
           "64 weights per scale. On the real-model quick windows, its perplexity at W2 g64 "
           "will be ...",
    choices={"a": "within 20 % of its float perplexity", "b": "1.2 to 3 times higher",
             "c": "3 to 100 times higher", "d": "more than 1,000 times higher"},
    reference=lambda: "d",  # measured in the notebook: x26,000 (tests/test_ex10.py re-measures)
    hints=("qcourse-tiny was trained here for a few minutes; SmolLM2 was trained on trillions "
           "of tokens. Which one uses the fine differences between its weights more?",
           "A trained-to-convergence model packs information into small weight differences "
           "that 4 levels per group cannot keep; once every layer adds such an error, the "
           "errors compound through 30 blocks instead of 6."),
    solution_text="real_collapse = 'd'   # a collapse: the model no longer predicts text",
)

# ---- 10.6 reading three GGUF checks ------------------------------------------------------------

ROLES = ("F16", "Q8_0", "broken")


def _assignments() -> dict[str, dict[str, str]]:
    """Every way to give the files x, y, z the roles F16, Q8_0 and broken: choice letter ->
    {file: role}."""
    return {letter: dict(zip("xyz", roles))
            for letter, roles in zip("abcdef", itertools.permutations(ROLES))}


ASSIGNMENTS = _assignments()


def _describe(assignment: dict[str, str]) -> str:
    return ", ".join(f"{file} is {role}" for file, role in assignment.items())


def _gguf_reading() -> str:
    truth = {file: "broken" if broken else ftype for file, (ftype, broken) in SUSPECTS.items()}
    return next(letter for letter, a in ASSIGNMENTS.items() if a == truth)


gguf_reading = Question(
    name="10.6 gguf_reading",
    prompt="Three GGUF files of qcourse-tiny (x, y, z) all load in llama.cpp and declare the "
           "right tokenizer. One holds F16 weights, one Q8_0 weights, and one is broken (its "
           "weights in the wrong layout). From the check printed above (largest logit "
           "difference from the PyTorch model, top-1 agreement), without opening the files: "
           "which is which?",
    choices={letter: _describe(a) for letter, a in ASSIGNMENTS.items()},
    reference=_gguf_reading,
    hints=("How large is the rounding error of each format, relative to a weight? float16 keeps "
           "11 significant bits; Q8_0 gives each block of 32 weights 255 levels between −max "
           "and +max.",
           "Relative rounding error: about 2⁻¹² for float16, about 1/254 of a block's largest "
           "weight for Q8_0, ten times more. A layout mistake is not a rounding error at all: "
           "it changes the function."),
    solution_text="gguf_reading = 'd'   # the smallest difference is F16, the middle Q8_0",
)
