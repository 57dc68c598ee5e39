"""Beyond perplexity: how far does a quantized model drift from the float model it came from?

Over the same predicted tokens as :func:`qcourse.evaluation.perplexity`, with p the reference
(float) model's next-token distribution and q the quantized model's (llama.cpp's
``--kl-divergence``):

    KL(p || q)       = Σ_v p(v) · (log p(v) − log q(v))         (mean over predicted tokens)
    top-1 agreement  = fraction of positions where argmax q = argmax p
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .scoring import batch_size_for, evaluation_windows, logits_fn, window_nll


def kl_per_token(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` at every position, ``[..., V] -> [...]`` (nats), where
    ``p = softmax(reference_logits)`` and ``q = softmax(logits)``, computed in float64."""
    if logits.shape != reference_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and reference logits "
                         f"{tuple(reference_logits.shape)} must have the same shape")
    log_q = F.log_softmax(logits.double(), dim=-1)
    log_p = F.log_softmax(reference_logits.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def logit_agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, float]:
    """Two runtimes' logits of the same tokens, ``[..., V]`` each: ``max_abs`` and ``mean_abs``
    of their difference, and ``top1``: the fraction of positions whose argmax token agrees."""
    diff = (logits - reference_logits).abs()
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(),
            "top1": (logits.argmax(-1) == reference_logits.argmax(-1)).float().mean().item()}


class Divergence:
    """Running sums over predicted tokens: the model's negative log-likelihood (its perplexity),
    ``KL(p_reference || q_model)`` and top-1 agreement. :meth:`update` with the logits of a
    batch of windows (the reference's may be left out: perplexity only); :meth:`result` for the
    token-weighted means."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.tokens = 0
        self.kl = 0.0
        self.agree = 0
        self.compared = 0

    def update(self, logits: torch.Tensor, reference_logits: torch.Tensor | None,
               ids: torch.Tensor) -> None:
        """``logits``, ``reference_logits`` ``[B, T, V]`` of windows ``ids [B, T]``; position t
        predicts token t+1, so the last position of each window is not scored."""
        self.nll += window_nll(logits.float(), ids).sum().item()
        self.tokens += ids[:, 1:].numel()
        if reference_logits is None:
            return
        logits, reference_logits = logits[:, :-1].float(), reference_logits[:, :-1].float()
        self.kl += kl_per_token(logits, reference_logits).sum().item()
        self.agree += (logits.argmax(-1) == reference_logits.argmax(-1)).sum().item()
        self.compared += ids[:, 1:].numel()

    def result(self) -> dict:
        """``{"perplexity", "tokens", "kl_divergence", "top1_agreement", "compared_tokens"}``
        (KL and top-1 over the tokens compared with the reference)."""
        if self.tokens == 0:
            raise ValueError("no tokens were scored")
        out = {"perplexity": math.exp(self.nll / self.tokens), "tokens": self.tokens}
        if self.compared:
            out.update(kl_divergence=self.kl / self.compared,
                       top1_agreement=self.agree / self.compared, compared_tokens=self.compared)
        return out


def divergence(model, reference, tokenizer, split: str = "test", seq_len: int = 512, *,
               max_windows: int | None = None, compare_windows: int | None = None,
               batch_size: int | None = None, progress: bool = False) -> dict:
    """Perplexity of ``model`` and its KL divergence from / top-1 agreement with ``reference``,
    in one pass over the windows of :func:`~qcourse.evaluation.perplexity` (``compare_windows``:
    compare with the reference on the first windows only; perplexity still uses every window).
    ``model`` and ``reference``: anything :func:`~qcourse.evaluation.logits_fn` takes;
    ``batch_size``: windows per forward pass (default
    :func:`~qcourse.evaluation.scoring.batch_size_for`). See :class:`Divergence`."""
    model_logits, reference_logits = logits_fn(model), logits_fn(reference)
    meter = Divergence()
    batches = evaluation_windows(tokenizer, split, seq_len, max_windows)
    compared = batches.size(0) if compare_windows is None else compare_windows
    batch_size = batch_size or batch_size_for(tokenizer, seq_len)
    starts = range(0, batches.size(0), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="windows", leave=False)
    for start in starts:
        chunk = batches[start:start + batch_size]
        logits = model_logits(chunk)
        k = max(0, min(len(chunk), compared - start))             # windows to compare here
        if k < len(chunk):
            meter.update(logits[k:], None, chunk[k:])
        if k:
            meter.update(logits[:k], reference_logits(chunk[:k]), chunk[:k])
    return meter.result()


def kl_divergence(model, reference, tokenizer, split: str = "test", seq_len: int = 512,
                  **options) -> float:
    """Mean ``KL(p_reference || q_model)`` per predicted token (nats); see :func:`divergence`."""
    return divergence(model, reference, tokenizer, split, seq_len, **options)["kl_divergence"]


def top1_agreement(model, reference, tokenizer, split: str = "test", seq_len: int = 512,
                   **options) -> float:
    """Fraction of predicted tokens where both models rank the same token first."""
    return divergence(model, reference, tokenizer, split, seq_len, **options)["top1_agreement"]
