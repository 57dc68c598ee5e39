"""KL divergence from a float model kept as its final hidden states: little memory, any vocabulary.

``KL(p || q)`` at a position needs the float model's whole next-token distribution there. For
SmolLM2 (vocabulary 49,152) the float32 logits of one window of 512 tokens take 96 MiB, and
:func:`~qcourse.evaluation.divergence` holds both models' logits of a window and their float64
log-softmaxes side by side: about 1 GB. But a Llama's logits are ``head(h)``, with ``h`` the
decoder's final (normed) hidden states, ``[T, d]`` per window (SmolLM2, d = 576: 1.1 MiB). A
weight-only method quantizes the decoder blocks and leaves the head alone, so the float model's
side of the comparison can be kept as its ``h`` and its head, and its logits recomputed a few
positions at a time next to the quantized model's:

    reference = hidden_reference(float_model, tokenizer, REAL_QUICK)   # one pass: Score and h
    ... quantize the model (in place or a copy: the reference keeps h and the head module)
    found = compare(quantized, reference)      # its Score, KL and top-1 agreement per window
    paired_mean_difference(rtn.kl, found.kl)   # two models' per-window KL, paired over windows

Both passes apply the head to :data:`SLICE` positions at a time, so no window's logits are ever
whole in memory. The perplexities equal :func:`~qcourse.evaluation.score`'s, and KL and top-1
:func:`~qcourse.evaluation.divergence`'s (``per_window=True``), up to float rounding.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .divergence import kl_per_token
from .protocol import Protocol, Score, student_t_quantile
from .scoring import evaluation_windows

SLICE = 64    # positions per head call: two float64 log-softmaxes of 64 x 49,152 are 50 MB


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(model.model, model.lm_head)`` of a Llama-family causal LM, whose logits are exactly
    ``lm_head(model.model(ids).last_hidden_state)``; TypeError for anything else."""
    config = getattr(model, "config", None)
    if (not isinstance(model, nn.Module) or getattr(config, "model_type", None) != "llama"
            or not isinstance(getattr(model, "model", None), nn.Module)
            or not isinstance(getattr(model, "lm_head", None), nn.Module)):
        raise TypeError(f"expected a Llama-family causal LM (a LlamaForCausalLM: .model, the "
                        f"decoder, then .lm_head), got {type(model).__name__}")
    return model.model, model.lm_head


def _check_step(step: int) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step (positions per head call) must be a positive int, got {step!r}")


def _slices(predicted: int, step: int) -> Iterator[slice]:
    for start in range(0, predicted, step):
        yield slice(start, min(start + step, predicted))


@torch.no_grad()
def _hidden(body: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    device = next(body.parameters()).device
    return body(ids.to(device), use_cache=False).last_hidden_state


def _logits(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    device = next(head.parameters()).device
    return head(hidden.to(device)).float().cpu()


def head_fingerprint(head: nn.Module, chunk: int = 1 << 20) -> tuple[float, float]:
    """Sum and sum of squares of the head's weights, in float64, ``chunk`` values at a time (a
    float64 copy of SmolLM2's whole head would be 226 MB): a change in place shows."""
    total = squares = 0.0
    with torch.no_grad():
        for p in head.parameters():
            for part in p.detach().reshape(-1).split(chunk):
                values = part.double()
                total += values.sum().item()
                squares += values.square().sum().item()
    return total, squares


@dataclasses.dataclass(frozen=True)
class HiddenReference:
    """The float model's side of every comparison on one protocol's windows: its
    :class:`~qcourse.evaluation.Score`, the windows' token ids ``[n, T]``, its final hidden states
    ``[n, T, d]`` (float32), its output head (the module itself, not a copy) and that head's
    :func:`head_fingerprint` when it was read (:func:`compare` refuses a head changed since)."""

    score: Score
    windows: torch.Tensor
    hidden: torch.Tensor
    head: nn.Module
    fingerprint: tuple[float, float]

    @property
    def protocol(self) -> Protocol:
        return self.score.protocol


@torch.no_grad()
def hidden_reference(model: nn.Module, tokenizer, protocol: Protocol, *,
                     step: int = SLICE) -> HiddenReference:
    """Score the float ``model`` on ``protocol``'s windows, one window at a time, and keep what
    :func:`compare` needs: its per-window negative log-likelihood, its final hidden states and
    its head. Call it before quantizing the model."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a qcourse.evaluation.Protocol (e.g. REAL_QUICK), got "
                        f"{type(protocol).__name__}")
    _check_step(step)
    body, head = body_and_head(model)
    windows = evaluation_windows(tokenizer, protocol.split, protocol.seq_len, protocol.windows)
    predicted = windows.size(1) - 1
    hidden, nll = [], []
    for ids in windows.split(1):
        h = _hidden(body, ids).float().cpu()                               # [1, T, d]
        total = 0.0
        for part in _slices(predicted, step):
            logits = _logits(head, h[:, part])                             # [1, t, V]
            targets = ids[:, part.start + 1:part.stop + 1]
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                     reduction="sum").item()
        hidden.append(h)
        nll.append(total / predicted)
    return HiddenReference(Score(protocol, torch.tensor(nll)), windows, torch.cat(hidden), head,
                           head_fingerprint(head))


@dataclasses.dataclass(frozen=True)
class Compared:
    """A model against a :class:`HiddenReference`, window by window: its
    :class:`~qcourse.evaluation.Score` on the same windows (pair it with ``reference.score``),
    ``kl``: the mean ``KL(p_reference || q_model)`` per predicted token of each window (nats),
    and ``top1``: the share of each window's positions where both rank the same token first."""

    score: Score
    kl: torch.Tensor
    top1: torch.Tensor

    @property
    def kl_divergence(self) -> float:
        """Mean KL per predicted token over every window (each window predicts as many)."""
        return self.kl.double().mean().item()

    @property
    def top1_agreement(self) -> float:
        return self.top1.double().mean().item()

    def __str__(self) -> str:
        return (f"perplexity {self.score}, KL {self.kl_divergence:.4f} nats per token, top-1 "
                f"agreement {self.top1_agreement:.1%}")


@torch.no_grad()
def compare(model: nn.Module, reference: HiddenReference, *, step: int = SLICE) -> Compared:
    """``model``'s perplexity, KL divergence from the reference and top-1 agreement with it on
    the reference's windows, one window and ``step`` positions at a time: the reference's logits
    are its head applied to its kept hidden states, the model's its own head applied to its
    own. ValueError if the two disagree on the hidden size or the vocabulary."""
    if not isinstance(reference, HiddenReference):
        raise TypeError(f"reference must be a HiddenReference (from hidden_reference), got "
                        f"{type(reference).__name__}")
    _check_step(step)
    if head_fingerprint(reference.head) != reference.fingerprint:
        raise ValueError("the reference's output head changed since hidden_reference read it (was "
                         "it quantized in place?): its logits would no longer be the float model's")
    body, head = body_and_head(model)
    predicted = reference.windows.size(1) - 1
    nll, kl, top1 = [], [], []
    for i, ids in enumerate(reference.windows.split(1)):
        h = _hidden(body, ids).float().cpu()
        kept = reference.hidden[i:i + 1]
        if h.shape != kept.shape:
            raise ValueError(f"the model's hidden states {tuple(h.shape)} do not match the "
                             f"reference's {tuple(kept.shape)}: not the same architecture")
        total_nll = total_kl = 0.0
        agree = 0
        for part in _slices(predicted, step):
            q, p = _logits(head, h[:, part]), _logits(reference.head, kept[:, part])
            if q.shape != p.shape:
                raise ValueError(f"the model predicts {q.size(-1)} tokens, the reference "
                                 f"{p.size(-1)}: not the same vocabulary")
            targets = ids[:, part.start + 1:part.stop + 1]
            total_nll += F.cross_entropy(q.reshape(-1, q.size(-1)), targets.reshape(-1),
                                         reduction="sum").item()
            total_kl += kl_per_token(q, p).sum().item()
            agree += (q.argmax(-1) == p.argmax(-1)).sum().item()
        nll.append(total_nll / predicted)
        kl.append(total_kl / predicted)
        top1.append(agree / predicted)
    return Compared(Score(reference.protocol, torch.tensor(nll)),
                    torch.tensor(kl, dtype=torch.float64), torch.tensor(top1, dtype=torch.float64))


@dataclasses.dataclass(frozen=True)
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
