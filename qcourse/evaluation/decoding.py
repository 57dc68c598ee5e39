"""Decoding: greedy continuations, how long two models' continuations agree, and decoding speed.

From the same prompt, two models' greedy continuations agree on a common prefix; its length
(the *greedy-continuation match length*) says how soon quantization changes what a model writes:

    match length = min { t : a_t ≠ b_t }    (the whole length if they never differ)
"""
from __future__ import annotations

import time

import torch
from torch import nn

from qcourse import data

from .scoring import logits_fn


@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 40) -> str:
    """Greedy continuation of ``prompt`` (deterministic), returned without the prompt."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.size(1):])


@torch.no_grad()
def tokens_per_second(model: nn.Module, tokenizer, prompt: str = "def ", new_tokens: int = 64,
                      repeats: int = 2) -> float:
    """Greedy decoding speed, in generated tokens per second (best of ``repeats``)."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=tokenizer.eos_token_id)
        best = min(best, time.perf_counter() - start)
    return new_tokens / best


def match_length(a, b) -> int:
    """Length of the common prefix of two token sequences: ``[5, 7, 9]`` and ``[5, 7, 2]`` -> 2."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def token_agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How far two batches of continuations ``[batch, n]`` agree: the share of positions with
    the same token, and the mean :func:`match_length` (the position of the first difference,
    ``n`` if none)."""
    lengths = [match_length(a, b) for a, b in zip(reference.tolist(), other.tolist())]
    return {"same_tokens": (reference == other).float().mean().item(),
            "first_difference": torch.tensor(lengths).float().mean().item()}


@torch.no_grad()
def greedy_tokens(model, prompt_ids, new_tokens: int) -> list[int]:
    """The ``new_tokens`` tokens greedy decoding appends to ``prompt_ids``. A Hugging Face model
    decodes with its KV cache; a runtime (:mod:`qcourse.deploy.runtimes`) with its own
    ``generate``; any other ``ids -> logits`` callable re-reads the whole sequence at each step."""
    ids = torch.as_tensor(list(prompt_ids), dtype=torch.long)[None]     # [1, T]
    if isinstance(model, nn.Module):                                     # no EOS stop, no sampling
        step = model(ids, use_cache=True)
        out = []
        for _ in range(new_tokens):
            token = step.logits[0, -1].argmax().view(1, 1)                # [1, 1]
            out.append(int(token))
            step = model(token, past_key_values=step.past_key_values, use_cache=True)
        return out
    if callable(getattr(model, "generate", None)):
        return list(model.generate(list(prompt_ids), new_tokens))
    call, out = logits_fn(model), []
    for _ in range(new_tokens):
        token = int(call(ids)[0, -1].argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)            # [1, T + 1]
    return out


def greedy_continuations(model, prompts: torch.Tensor, new_tokens: int) -> list[list[int]]:
    """:func:`greedy_tokens` for every prompt of ``prompts [n, T]``."""
    return [greedy_tokens(model, p.tolist(), new_tokens) for p in prompts]


def continuation_prompts(tokenizer, count: int, prompt_tokens: int = 64, split: str = "test",
                         seed: int = 0) -> torch.Tensor:
    """``count`` prompts of ``prompt_tokens`` tokens drawn (seeded) from ``split``,
    LongTensor ``[count, prompt_tokens]`` (:func:`qcourse.data.calibration_samples`)."""
    return data.calibration_samples(tokenizer, count, prompt_tokens, seed, split=split)


def greedy_match_length(model, reference, tokenizer=None, *, prompts: torch.Tensor | None = None,
                        count: int = 8, new_tokens: int = 32, split: str = "test",
                        seed: int = 0) -> float:
    """Mean number of leading tokens on which the greedy continuations of ``model`` and
    ``reference`` agree (``new_tokens`` = they never diverge), over ``prompts [n, T]`` (default:
    ``count`` seeded prompts of 64 tokens from ``split``, which needs ``tokenizer``).
    ``reference`` may also be its continuations, already computed (a list of token lists)."""
    if prompts is None:
        if tokenizer is None:
            raise ValueError("pass prompts, or a tokenizer to draw them from the corpus")
        prompts = continuation_prompts(tokenizer, count, split=split, seed=seed)
    if not isinstance(reference, list):
        reference = greedy_continuations(reference, prompts, new_tokens)
    ours = greedy_continuations(model, prompts, new_tokens)
    if len(ours) != len(reference):
        raise ValueError(f"{len(reference)} reference continuations for {len(ours)} prompts")
    return sum(match_length(a, b) for a, b in zip(ours, reference)) / len(ours)
