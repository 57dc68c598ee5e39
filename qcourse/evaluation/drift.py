"""How far a quantized model drifts from the model it came from, window by window, with a
large vocabulary and one model in memory at a time.

:func:`qcourse.evaluation.divergence` needs both models at once and holds both models' logits
for a batch of windows, and :func:`~qcourse.evaluation.kl_per_token` works in float64. With
SmolLM2 (vocabulary 49,152) one window of 512 tokens has 96 MiB of float32 logits, and the KL
of that window would pass through about 1 GB of temporaries; two SmolLM2 in memory are 1.1 GB.

Here the reference is kept as what its logits are made from: its **final hidden states**
(``[windows, T, d]``, after the final norm; SmolLM2, 4 windows of 512: 4.7 MB) and its output
head. :func:`reference` takes them from the float model, once, before it is quantized in
place; :func:`drift` then runs the quantized model window by window and applies both heads a
slice of ``step`` positions at a time, scoring every predicted token with

    NLL      −log q(x_{t+1})              (the model's own perplexity, per window)
    KL       Σ_v p(v) (log p(v) − log q(v))   p: the reference's distribution, q: the model's
    top-1    argmax q = argmax p

the same quantities as :class:`~qcourse.evaluation.Divergence`, the same per-token values (each
position's logits depend on its own hidden state only). The reference's head is the model's
own when the head is not quantized (the course's methods leave it float): :func:`drift`
checks that its weights did not change since :func:`reference` read them.

Two models' per-window KL are compared pairwise by :func:`paired_mean_difference` (Student's t
over the windows, as :func:`~qcourse.evaluation.paired_difference` does for perplexity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .divergence import kl_per_token
from .protocol import REAL_QUICK, Protocol, Score, student_t_quantile
from .scoring import evaluation_windows

STEP = 64     # positions per slice of the head: SmolLM2's KL temporaries stay near 130 MB


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(model.model, model.lm_head)`` of a Hugging Face causal LM whose logits are
    ``lm_head(model(ids).last_hidden_state)`` (every ``LlamaForCausalLM``: qcourse-tiny,
    SmolLM2); TypeError for anything else."""
    body, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if not (isinstance(model, nn.Module) and isinstance(body, nn.Module)
            and isinstance(head, nn.Module)):
        raise TypeError(f"expected a causal LM with .model (the decoder) and .lm_head (its output "
                        f"head), e.g. a LlamaForCausalLM; got {type(model).__name__}")
    return body, head


def head_fingerprint(head: nn.Module) -> tuple[float, float]:
    """Sum and sum of squares of the head's weights (float64): a change in place shows."""
    with torch.no_grad():
        values = [p.detach().double() for p in head.parameters()]
        return (sum(v.sum().item() for v in values), sum(v.square().sum().item() for v in values))


@dataclass
class Reference:
    """What :func:`drift` compares with: the reference's ``hidden [windows, T, d]`` final hidden
    states on ``ids [windows, T]``, its ``head`` (and that head's fingerprint when read), and its
    own per-window :class:`~qcourse.evaluation.Score`."""

    ids: torch.Tensor
    hidden: torch.Tensor
    head: nn.Module
    fingerprint: tuple[float, float]
    score: Score

    @property
    def protocol(self) -> Protocol:
        return self.score.protocol


@dataclass(frozen=True)
class Drift:
    """A model against a :class:`Reference`, per window: its ``score`` (NLL, so perplexity and
    paired intervals), ``kl`` (mean KL(p_reference || q_model) per predicted token, nats) and
    ``top1`` (fraction of predicted tokens whose most likely next token agrees), float64."""

    score: Score
    kl: torch.Tensor
    top1: torch.Tensor

    @property
    def kl_mean(self) -> float:
        """KL over every predicted token (every window holds as many)."""
        return self.kl.double().mean().item()

    @property
    def top1_mean(self) -> float:
        return self.top1.double().mean().item()


@torch.no_grad()
def final_hidden(body: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The decoder's final hidden states ``[B, T, d]`` (after its final norm) for ``ids [B, T]``."""
    device = next(body.parameters()).device
    return body(ids.to(device), use_cache=False).last_hidden_state.float().cpu()


@torch.no_grad()
def window_drift(hidden: torch.Tensor, head: nn.Module, ids: torch.Tensor,
                 reference_hidden: torch.Tensor | None = None,
                 reference_head: nn.Module | None = None, step: int = STEP
                 ) -> tuple[float, float, float]:
    """``(nll, kl, top1)`` of one window, means over its ``T − 1`` predicted tokens: the model's
    ``hidden [T, d]`` through ``head``, against ``reference_hidden [T, d]`` through
    ``reference_head`` (without a reference: ``kl`` and ``top1`` are NaN). The heads run on
    ``step`` positions at a time."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step must be a positive int (positions per slice), got {step!r}")
    if ids.dim() != 1 or hidden.dim() != 2 or hidden.size(0) != ids.size(0):
        raise ValueError(f"one window: ids [T] and hidden [T, d], got {tuple(ids.shape)} and "
                         f"{tuple(hidden.shape)}")
    if reference_hidden is not None and reference_hidden.shape != hidden.shape:
        raise ValueError(f"reference hidden states {tuple(reference_hidden.shape)} and the "
                         f"model's {tuple(hidden.shape)} must have the same shape")
    device = next(head.parameters()).device
    predicted = ids.size(0) - 1
    nll = kl = agree = 0.0
    for start in range(0, predicted, step):
        stop = min(start + step, predicted)
        logits = head(hidden[start:stop].to(device)).float().cpu()              # [t, V]
        nll += F.cross_entropy(logits, ids[start + 1:stop + 1], reduction="sum").item()
        if reference_hidden is not None:
            expected = reference_head(reference_hidden[start:stop].to(device)).float().cpu()
            kl += kl_per_token(logits, expected).sum().item()
            agree += (logits.argmax(-1) == expected.argmax(-1)).sum().item()
    if reference_hidden is None:
        return nll / predicted, math.nan, math.nan
    return nll / predicted, kl / predicted, agree / predicted


def reference(model: nn.Module, tokenizer, protocol: Protocol = REAL_QUICK, *,
              step: int = STEP) -> Reference:
    """The :class:`Reference` of ``model`` (the float model, before it is quantized) on
    ``protocol``'s windows: one forward pass per window."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a qcourse.evaluation.Protocol (e.g. REAL_QUICK), got "
                        f"{type(protocol).__name__}")
    body, head = body_and_head(model)
    ids = evaluation_windows(tokenizer, protocol.split, protocol.seq_len, protocol.windows)
    hidden, nll = [], []
    for window in ids:
        h = final_hidden(body, window[None])[0]
        hidden.append(h)
        nll.append(window_drift(h, head, window, step=step)[0])
    return Reference(ids, torch.stack(hidden), head, head_fingerprint(head),
                     Score(protocol, torch.tensor(nll)))


def drift(model: nn.Module, ref: Reference, *, step: int = STEP) -> Drift:
    """``model`` (e.g. the float model quantized in place) against ``ref`` on its windows, one
    window at a time: per-window NLL, KL from the reference and top-1 agreement. ValueError if
    the reference's head changed since :func:`reference` read it (a quantized head would have
    made the reference a different model)."""
    if not isinstance(ref, Reference):
        raise TypeError(f"ref must be a Reference (qcourse.evaluation.drift.reference), got "
                        f"{type(ref).__name__}")
    if head_fingerprint(ref.head) != ref.fingerprint:
        raise ValueError("the reference's output head changed since reference() read it: "
                         "quantize a copy of the head, or take the reference from a model whose "
                         "head stays as it is")
    body, head = body_and_head(model)
    rows = []
    for window, expected in zip(ref.ids, ref.hidden):
        rows.append(window_drift(final_hidden(body, window[None])[0], head, window, expected,
                                 ref.head, step))
    nll, kl, top1 = zip(*rows)
    return Drift(Score(ref.protocol, torch.tensor(nll)), torch.tensor(kl, dtype=torch.float64),
                 torch.tensor(top1, dtype=torch.float64))


@dataclass(frozen=True)
class MeanDifference:
    """``mean`` of b − a over windows, with its Student's t interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    windows: int
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        verdict = "" if self.significant else ", inside the noise"
        return (f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({self.confidence:.0%} "
                f"paired interval over {self.windows} windows{verdict})")


def paired_mean_difference(a: torch.Tensor, b: torch.Tensor, confidence: float = 0.95
                           ) -> MeanDifference:
    """The mean of ``b − a`` over windows (e.g. two models' per-window KL) with Student's t
    interval: ``d̄ ± t_{n−1} · s_d / √n``."""
    a, b = torch.as_tensor(a).double().flatten(), torch.as_tensor(b).double().flatten()
    if a.shape != b.shape:
        raise ValueError(f"a pairwise comparison needs the same windows: got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError("a paired interval needs at least 2 windows")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    d = b - a
    mean, spread = d.mean().item(), d.std(unbiased=True).item()
    half = student_t_quantile(0.5 + confidence / 2, len(d) - 1) * spread / math.sqrt(len(d))
    return MeanDifference(mean, mean - half, mean + half, len(d), confidence)
