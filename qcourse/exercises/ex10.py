"""Exercises of notebook 10: failure modes. Detect outlier channels from statistics, choose
SmoothQuant's α from a measured sweep, find the layer that breaks a 2-bit model, spot the
corrupted GGUF among three files; and the helpers that reproduce the broken files."""
from __future__ import annotations

import copy
import functools
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


SUSPECTS = {"a": ("Q8_0", False), "b": ("F16", False), "c": ("Q8_0", True)}   # (type, broken)


def gguf_suspects(model: nn.Module, tokenizer, folder) -> dict[str, pathlib.Path]:
    """Write the three files of exercise 10.4 into ``folder``: ``suspect_a.gguf``,
    ``suspect_b.gguf``, ``suspect_c.gguf``; one of them has its q/k rows in the wrong layout."""
    from qcourse.gguf.writer import export

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for letter, (ftype, broken) in SUSPECTS.items():
        paths[letter] = folder / f"suspect_{letter}.gguf"
        export(unpermuted_copy(model) if broken else model, tokenizer, paths[letter], ftype)
    return paths


# ---- 10.1 outlier channels -------------------------------------------------------------------


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
    return cases


outlier_channels = Question(
    name="10.1 outlier_channels",
    prompt="Write outlier_channels(absmax, k): absmax [K] holds, for each input channel of a "
           "layer, the largest |x| seen over the calibration tokens. Return the indices of the "
           "channels whose absmax exceeds k times the median channel's, as a sorted LongTensor "
           "(empty if there are none).",
    reference=_outlier_channels,
    cases=_absmax_cases,
    hints=("Why the median and not the mean or the max? A few huge channels pull the mean up "
           "and are the max; the median is what a typical channel looks like.",
           "Compare absmax with k · absmax.median() (strictly greater), then turn the boolean "
           "mask into indices: torch.nonzero(mask).flatten() gives them sorted."),
    solution_text="def outlier_channels(absmax, k):\n"
                  "    return torch.nonzero(absmax > k * absmax.median()).flatten()",
)

# ---- 10.2 choosing SmoothQuant's alpha -------------------------------------------------------


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
    name="10.2 choose_alpha",
    prompt="Write choose_alpha(sweep): sweep maps each SmoothQuant α tried to the error "
           "measured with it (perplexity, KL, 1 - cosine: lower is better). A larger α moves "
           "more of the activations' range into the weights, so among the α whose error is "
           "within 1 % of the best (value <= best · 1.01), return the smallest.",
    reference=_choose_alpha,
    cases=_sweep_cases,
    hints=("Two steps: find the best (lowest) error, then look at every α again.",
           "Keep the α with value <= 1.01 · best; the dict's keys need not be sorted, so take "
           "min() of the kept α rather than the first one."),
    solution_text="def choose_alpha(sweep):\n"
                  "    best = min(sweep.values())\n"
                  "    return min(a for a, p in sweep.items() if p <= 1.01 * best)",
)

# ---- 10.3 the layer that breaks a 2-bit model -----------------------------------------------

BREAKING_SCHEME = QuantScheme(2, 128)


@functools.lru_cache(maxsize=1)
def _breaking_layer() -> str:
    from qcourse import models

    model, tokenizer = models.load()
    return diagnose(model, tokenizer, quantize=BREAKING_SCHEME, n=4,
                    seq_len=128).most_sensitive(1)[0].name


breaking_layer = Question(
    name="10.3 breaking_layer",
    prompt="Quantize one linear layer of qcourse-tiny at a time to 2 bits (round-to-nearest, "
           "asymmetric, groups of 128), leaving every other layer in float, and measure how far "
           "the next-token distribution moves (KL on 4 calibration windows of 128 tokens, seed "
           "0). Which layer moves it most? Answer with its full name, e.g. "
           "'model.layers.3.mlp.up_proj'.",
    reference=_breaking_layer,
    hints=("This is exactly what qcourse.diagnose.diagnose measures as 'sensitivity': look at "
           "its quantize= and n= / seq_len= arguments.",
           "diagnose(model, tokenizer, quantize=QuantScheme(2, 128)).most_sensitive(1) gives "
           "the layer; answer with its .name."),
    solution_text="breaking_layer = diagnose(model, tokenizer, quantize=QuantScheme(2, 128))"
                  ".most_sensitive(1)[0].name",
)

# ---- 10.4 the corrupted GGUF -------------------------------------------------------------------

corrupted_gguf = Question(
    name="10.4 corrupted_gguf",
    prompt="ex10.gguf_suspects(model, tokenizer, folder) writes three GGUF files of qcourse-tiny "
           "(a, b, c). All load in llama.cpp and declare the right tokenizer; one of them will "
           "nevertheless give wrong outputs. Which one?",
    choices={"a": "suspect_a.gguf", "b": "suspect_b.gguf", "c": "suspect_c.gguf"},
    reference=lambda: next(letter for letter, (_, broken) in SUSPECTS.items() if broken),
    hints=("The metadata is the same in all three: read_gguf will not tell. Compare what "
           "llama.cpp computes with what the Hugging Face model computes on the same tokens.",
           "qcourse.diagnose.check_gguf(path, model, tokenizer) gives max_logit_diff and "
           "top1_agreement; quantization (Q8_0, F16) moves logits by a few hundredths at most, "
           "a broken file by much more."),
    solution_text="for letter, path in files.items():\n"
                  "    print(letter, check_gguf(path, model, tokenizer)['max_logit_diff'])\n"
                  "corrupted_gguf = 'c'   # its q/k rows are not permuted for llama.cpp's RoPE",
)
