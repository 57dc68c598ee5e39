"""Which windows a perplexity scores, named once, and when two models really differ.

Every perplexity the course prints says which protocol it used:

    WHOLE        the whole test split: every window of 512 tokens (recorded runs, the tables)
    QUICK        the first 8 test windows of 512 tokens (live cells on qcourse-tiny)
    REAL_QUICK   the first 4 test windows of 512 tokens (live cells on the real model,
                 SmolLM2-135M, whose forward pass is ~25 times qcourse-tiny's)

Two models scored on the same windows are compared **pairwise**: for each window i, the
difference of their mean negative log-likelihoods per token d_i = nll_b,i − nll_a,i. The mean d̄
is the log of the perplexity ratio (PPL_b / PPL_a = exp(d̄), all windows holding the same number
of predicted tokens), and Student's t interval over the n windows,

    d̄ ± t_{n−1, 0.975} · s_d / √n,

says how much of that ratio the choice of windows could explain. A difference whose interval
contains 0 is inside the noise: the course does not rank it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .scoring import batch_size_for, evaluation_windows, nll_per_window


@dataclass(frozen=True)
class Protocol:
    """Which test windows a perplexity scores: the first ``windows`` (``None``: all) of
    ``seq_len`` tokens of ``split``."""

    name: str
    windows: int | None
    seq_len: int = 512
    split: str = "test"

    def __post_init__(self) -> None:
        if self.windows is not None and (not isinstance(self.windows, int) or self.windows < 1):
            raise ValueError(f"windows must be a positive int or None (all), got {self.windows!r}")

    def label(self, available: int | None = None) -> str:
        """E.g. ``"quick: test windows 1-8 of 512 tokens"`` or ``"whole test split: 228 windows
        of 512 tokens"`` (``available``: how many windows the split holds for this tokenizer)."""
        if self.windows is None:
            count = f"{available} windows" if available is not None else "every window"
            return f"{self.name}: {count} of {self.seq_len} tokens"
        last = self.windows if available is None else min(self.windows, available)
        return f"{self.name}: {self.split} windows 1-{last} of {self.seq_len} tokens"


WHOLE = Protocol("whole test split", None)
QUICK = Protocol("quick", 8)
REAL_QUICK = Protocol("real-model quick", 4)


@dataclass(frozen=True)
class Score:
    """A model's per-window negative log-likelihood (mean nats per predicted token) under a
    protocol, and its perplexity exp(mean)."""

    protocol: Protocol
    nll: torch.Tensor          # [windows], nats per predicted token

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll.double().mean().item())

    @property
    def label(self) -> str:
        return self.protocol.label(len(self.nll))

    def __str__(self) -> str:
        return f"{self.perplexity:.2f} ({self.label})"


def score(model, tokenizer, protocol: Protocol = QUICK, batch_size: int | None = None) -> Score:
    """Score ``model`` (anything :func:`qcourse.evaluation.logits_fn` takes) on ``protocol``'s
    windows: the same perplexity as :func:`qcourse.evaluation.perplexity`, kept per window so
    that two models can be compared pairwise (:func:`paired_difference`). ``batch_size``:
    windows per forward pass (default :func:`~qcourse.evaluation.scoring.batch_size_for`)."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a qcourse.evaluation.Protocol (e.g. QUICK, WHOLE), "
                        f"got {type(protocol).__name__}")
    batches = evaluation_windows(tokenizer, protocol.split, protocol.seq_len, protocol.windows)
    batch_size = batch_size or batch_size_for(tokenizer, protocol.seq_len)
    nll = nll_per_window(model, batches, batch_size) / (protocol.seq_len - 1)
    return Score(protocol, nll)


def student_t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``dof`` degrees of freedom, by
    bisection on its CDF, 1/2 + ∫_0^x f(t) dt (Simpson's rule; |error| < 1e-6 for dof >= 1)."""
    if not 0.5 < p < 1 or dof < 1:
        raise ValueError(f"need 0.5 < p < 1 and dof >= 1, got p={p}, dof={dof}")
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def cdf(x: float, steps: int = 2000) -> float:
        h = x / steps
        f = [math.exp(log_c - (dof + 1) / 2 * math.log1p((i * h) ** 2 / dof)) for i in range(steps + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, 2 * high
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class PairedDifference:
    """How much higher b's perplexity is than a's, PPL_b / PPL_a − 1, with its interval."""

    ratio: float               # PPL_b / PPL_a
    low: float                 # interval of the ratio, at ``confidence``
    high: float
    windows: int
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes "no difference" (ratio 1)."""
        return self.low > 1 or self.high < 1

    def __str__(self) -> str:
        pct = lambda r: f"{100 * (r - 1):+.2f} %"  # noqa: E731
        verdict = "" if self.significant else ", inside the noise"
        return (f"{pct(self.ratio)} [{pct(self.low)}, {pct(self.high)}] "
                f"({self.confidence:.0%} paired interval over {self.windows} windows{verdict})")


def paired_difference(a: Score, b: Score, confidence: float = 0.95) -> PairedDifference:
    """PPL_b / PPL_a with Student's t interval over the windows both scored (module docstring)."""
    if a.protocol != b.protocol or a.nll.shape != b.nll.shape:
        raise ValueError(f"a pairwise comparison needs the same windows: got {a.label!r} and "
                         f"{b.label!r}")
    n = len(a.nll)
    if n < 2:
        raise ValueError("a paired interval needs at least 2 windows")
    d = (b.nll - a.nll).double()
    mean, half = d.mean().item(), 0.0
    spread = d.std(unbiased=True).item()
    if spread > 0:
        half = student_t_quantile(0.5 + confidence / 2, n - 1) * spread / math.sqrt(n)
    return PairedDifference(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n,
                            confidence)
