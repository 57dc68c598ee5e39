"""Scoring: the logits of anything that yields them, and the perplexity of those logits.

Perplexity is the quality measure of the whole course:

    PPL = exp( (1/N) · Σ_t −log p(x_t | x_<t) )

over the N predicted tokens of a split. The split's token stream (documents joined by the EOS
token) is cut into non-overlapping windows of ``seq_len`` tokens; each window is scored on its own
(the first token of a window has no context and is not predicted), the tail shorter than a window
is dropped, and the average is token-weighted. Lower is better; a model that guessed uniformly
among V tokens would score V.

Every runtime of the course is scored through the same path: :func:`logits_fn` turns a Hugging
Face model, a runtime (PyTorch, llama.cpp, ONNX Runtime: anything with ``logits(ids [T])``) or a
plain ``ids -> logits`` callable into ``ids [B, T] -> logits [B, T, V]``, and :func:`window_nll`
scores those logits.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qcourse import data

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
LOGITS_BUDGET = 1 << 27    # bytes of float32 logits one forward pass may return (128 MiB)
SLICE_ABOVE = 1 << 25      # bytes of one window's float32 logits above which the head is sliced
HEAD_SLICE = 128           # positions per slice of the output head (see :func:`nll_per_window`)


def logits_fn(model) -> LogitsFn:
    """``token ids [B, T] -> float32 logits [B, T, V]`` from anything that yields logits:

    * a Hugging Face causal LM (anything whose call returns ``.logits``);
    * a runtime with ``logits(ids [T]) -> [T, V]`` (:mod:`qcourse.deploy.runtimes`: PyTorch,
      llama.cpp, ONNX Runtime), one window at a time;
    * a plain callable with this function's contract, returned unchanged (e.g.
      :func:`qcourse.gguf.llamacpp.logits_fn`).
    """
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device

        @torch.no_grad()
        def call(ids: torch.Tensor) -> torch.Tensor:
            return model(ids.to(device)).logits.float().cpu()
        return call
    if callable(getattr(model, "logits", None)):
        return lambda ids: torch.stack([model.logits(row).float() for row in ids])
    if callable(model):
        return model
    raise TypeError(f"expected an nn.Module, a runtime with .logits(ids) or a callable ids -> "
                    f"logits, got {type(model).__name__}")


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


def evaluation_windows(tokenizer, split: str = "test", seq_len: int = 512,
                       max_windows: int | None = None) -> torch.Tensor:
    """The windows :func:`perplexity` scores, ``[count, seq_len]`` (the first ``max_windows``)."""
    if split not in data.SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {data.SPLITS}")
    batches = windows(data.token_ids(tokenizer, split), seq_len)
    return batches if max_windows is None else batches[:max_windows]


def batch_size_for(tokenizer, seq_len: int, most: int = 8) -> int:
    """Windows per forward pass: at most ``most``, and few enough that their float32 logits
    ``[B, seq_len, V]`` fit in :data:`LOGITS_BUDGET` (qcourse-tiny, V = 4,096: 8 windows of 512;
    SmolLM2, V = 49,152: one window, 100 MB of logits, where 8 would hold 805 MB twice over).
    A tokenizer that does not say its vocabulary size gets ``most``."""
    vocabulary = len(tokenizer) if hasattr(tokenizer, "__len__") else 0
    return max(1, min(most, LOGITS_BUDGET // (4 * seq_len * vocabulary))) if vocabulary else most


def window_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood (nats) of each window's predicted tokens: ``logits
    [..., T, V]`` of windows ``ids [..., T]`` (position t predicts token t+1) -> ``[...]``."""
    targets = ids[..., 1:]                                                   # [..., T-1]
    nll = F.cross_entropy(logits[..., :-1, :].reshape(-1, logits.size(-1)), targets.reshape(-1),
                          reduction="none")
    return nll.view(targets.shape).sum(dim=-1)


def sliced_head(model, seq_len: int):
    """``(body, head)`` when ``model`` is a Llama-family causal LM (its logits are
    ``head(body(ids).last_hidden_state)``, nothing in between) whose float32 logits for one
    window of ``seq_len`` exceed :data:`SLICE_ABOVE` (SmolLM2, V = 49,152: 96 MiB per window of
    512; qcourse-tiny, V = 4,096, never); otherwise None. A hook on the model itself (which
    slicing would bypass) also gives None."""
    config = getattr(model, "config", None)
    if (not isinstance(model, nn.Module) or getattr(config, "model_type", None) != "llama"
            or not isinstance(getattr(model, "model", None), nn.Module)
            or not isinstance(getattr(model, "lm_head", None), nn.Module)
            or model._forward_hooks or model._forward_pre_hooks):
        return None
    if 4 * seq_len * config.vocab_size <= SLICE_ABOVE:
        return None
    return model.model, model.lm_head


@torch.no_grad()
def sliced_window_nll(body: nn.Module, head: nn.Module, ids: torch.Tensor,
                      step: int = HEAD_SLICE) -> torch.Tensor:
    """:func:`window_nll` of ``head(body(ids).last_hidden_state)``, the head applied to ``step``
    positions at a time: the same per-token values (each row of the head's output and of its
    log-softmax depends on its own position only), summed the same way, without the logits of
    the whole window in memory (nor the log-softmax's copy of them)."""
    device = next(body.parameters()).device
    hidden = body(ids.to(device), use_cache=False).last_hidden_state         # [B, T, d]
    predicted = ids.size(-1) - 1
    parts = []
    for start in range(0, predicted, step):
        stop = min(start + step, predicted)
        logits = head(hidden[:, start:stop]).float().cpu()                   # [B, t, V]
        targets = ids[:, start + 1:stop + 1]
        parts.append(F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                     reduction="none").view(targets.shape))
    return torch.cat(parts, dim=-1).sum(dim=-1)


@torch.no_grad()
def nll_per_window(model, batches: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Summed negative log-likelihood (nats) of each window's predicted tokens, shape [windows];
    ``model``: anything :func:`logits_fn` takes. A large-vocabulary Llama (:func:`sliced_head`)
    is scored through :func:`sliced_window_nll`: the same numbers, a fraction of the memory."""
    split = sliced_head(model, batches.size(-1))
    if split is not None:
        return torch.cat([sliced_window_nll(*split, chunk) for chunk in batches.split(batch_size)])
    call = logits_fn(model)
    return torch.cat([window_nll(call(chunk), chunk) for chunk in batches.split(batch_size)])


def perplexity(
    model,
    tokenizer,
    split: str = "test",
    seq_len: int = 512,
    *,
    domain: str | None = None,
    text: str | None = None,
    max_windows: int | None = None,
    batch_size: int | None = None,
) -> float:
    """Token-weighted perplexity of ``model`` (anything :func:`logits_fn` takes) on a corpus
    split (or on ``text`` if given).

    ``domain`` restricts the split to "prose" or "code"; ``max_windows`` scores only the first
    windows (for quick looks; the course's tables use the whole split); ``batch_size``: windows
    per forward pass (default :func:`batch_size_for`).
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
    nll = nll_per_window(model, batches, batch_size or batch_size_for(tokenizer, seq_len))
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
