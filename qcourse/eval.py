"""Measuring a model: perplexity, size in bytes, generation speed and peak memory.

Perplexity is the quality measure of the whole course:

    PPL = exp( (1/N) · Σ_t −log p(x_t | x_<t) )

over the N predicted tokens of a split. The split's token stream (documents joined by the EOS
token) is cut into non-overlapping windows of ``seq_len`` tokens; each window is scored on its own
(the first token of a window has no context and is not predicted), the tail shorter than a window
is dropped, and the average is token-weighted. Lower is better; a model that guessed uniformly
among V tokens would score V.
"""
from __future__ import annotations

import math
import resource
import sys
import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qcourse import data


def windows(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a 1-D token stream into non-overlapping windows, [len(ids) // seq_len, seq_len]."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (one token of context, one predicted), got {seq_len}")
    count = len(ids) // seq_len
    if count == 0:
        raise ValueError(
            f"the text holds {len(ids)} tokens, fewer than one window of seq_len={seq_len}; "
            "use a longer text or a shorter seq_len"
        )
    return ids[: count * seq_len].view(count, seq_len)


@torch.no_grad()
def nll_per_window(model: nn.Module, batches: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Summed negative log-likelihood (nats) of each window's predicted tokens, shape [windows]."""
    device = next(model.parameters()).device
    totals = []
    for chunk in batches.split(batch_size):
        chunk = chunk.to(device)
        logits = model(chunk).logits.float()
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1), reduction="none"
        )
        totals.append(nll.view(chunk.size(0), -1).sum(dim=1).cpu())
    return torch.cat(totals)


def perplexity(
    model: nn.Module,
    tokenizer,
    split: str = "test",
    seq_len: int = 512,
    *,
    domain: str | None = None,
    text: str | None = None,
    max_windows: int | None = None,
    batch_size: int = 8,
) -> float:
    """Token-weighted perplexity of ``model`` on a corpus split (or on ``text`` if given).

    ``domain`` restricts the split to "prose" or "code"; ``max_windows`` scores only the first
    windows (for quick looks; the course's tables use the whole split).
    """
    if text is not None:
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    else:
        if split not in data.SPLITS:
            raise ValueError(f"unknown split {split!r}: choose one of {data.SPLITS}")
        ids = data.token_ids(tokenizer, split, domain)
    batches = windows(ids, seq_len)
    if max_windows is not None:
        batches = batches[:max_windows]
    nll = nll_per_window(model, batches, batch_size)
    predicted = batches.size(0) * (seq_len - 1)
    return math.exp(nll.sum().item() / predicted)


def unigram_perplexity(tokenizer, train_split: str = "train", eval_split: str = "test",
                       seq_len: int = 512) -> float:
    """Perplexity of the best context-free model: token frequencies of ``train_split``
    (add-one smoothed), scored on the same predicted tokens as :func:`perplexity`."""
    counts = torch.bincount(data.token_ids(tokenizer, train_split), minlength=len(tokenizer)).double() + 1
    log_p = (counts / counts.sum()).log()
    targets = windows(data.token_ids(tokenizer, eval_split), seq_len)[:, 1:]
    return math.exp(-log_p[targets].mean().item())


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor occupies: ``numel · element_size``."""
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Real storage of the model's parameters and buffers, in bytes, each tensor counted once.

    Quantized layers keep their packed integers, scales and zeros as buffers, so they are counted
    at their true size. Tied weights (shared by embedding and output head) count once.
    """
    seen: dict[int, torch.Tensor] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(t.data_ptr() if t.numel() else id(t), t)
    return sum(tensor_bytes(t) for t in seen.values())


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


def current_rss() -> int:
    """Resident memory of this process now, in bytes (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_memory(fn: Callable[[], object], interval: float = 0.002) -> tuple[object, int]:
    """Run ``fn()``; return its result and the peak growth of resident memory while it ran, in
    bytes, sampled every ``interval`` seconds by a watcher thread (Linux only)."""
    baseline = current_rss()
    peak = baseline
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, current_rss())
            time.sleep(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = fn()
    finally:
        done.set()
        watcher.join()
    peak = max(peak, current_rss())
    return result, peak - baseline


def process_peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
