"""Calibration: choosing quantization ranges from data, and measuring activations.

Range observers decide which range ``[lo, hi]`` the integer grid covers. Clipping the range
(a ``clip_ratio`` r < 1 shrinks it to ``[r·min, r·max]``) trades a larger error on the few
values beyond it for a finer step on all the others:

* min-max:     the full range, ``r = 1``; never clips, but one outlier stretches every step.
* percentile:  the range that holds ``p`` % of the values: ``r = quantile(|x|, p) / max|x|``.
* MSE-optimal: the ratio on a grid that minimizes ``Σ (x - dequantize(quantize(x, r)))²``,
  searched independently for every set of values that share a scale (tensor, channel, group).

Activation statistics (per input channel of every linear layer, over calibration tokens) come
from forward hooks; they drive SmoothQuant, LLM.int8()'s outlier threshold and the plots of
notebook 02.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from qcourse.models import linear_layers
from qcourse.quant import check_finite, dequantize, quantize

DEFAULT_RATIOS = torch.linspace(0.2, 1.0, 41)


def minmax_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min(x), max(x))``: the range that clips nothing."""
    check_finite(x)
    return x.min().item(), x.max().item()


def _quantile(values: torch.Tensor, q: float) -> float:
    """``torch.quantile`` without its 16M-element limit (kthvalue, nearest rank)."""
    flat = values.flatten().float()
    k = max(1, min(flat.numel(), round(q * flat.numel())))
    return flat.kthvalue(k).values.item()


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile!r}")


def percentile_range(x: torch.Tensor, percentile: float = 99.9) -> tuple[float, float]:
    """``(lo, hi)``: the ``100 - p`` and ``p`` percentiles of ``x`` (ignores the rarest values)."""
    check_finite(x)
    _check_percentile(percentile)
    return _quantile(x, 1 - percentile / 100), _quantile(x, percentile / 100)


def percentile_clip_ratio(x: torch.Tensor, percentile: float = 99.9) -> float:
    """Clip ratio for :func:`qcourse.quant.quantize`: ``quantile(|x|, p) / max|x|``."""
    check_finite(x)
    _check_percentile(percentile)
    absmax = x.abs().max().item()
    return 1.0 if absmax == 0 else max(_quantile(x.abs(), percentile / 100) / absmax, 1e-6)


def _error_per_scale(x: torch.Tensor, x_hat: torch.Tensor, scale: torch.Tensor,
                     granularity: str, group_size: int | None) -> torch.Tensor:
    """Squared error summed over the values that share each scale (the scale's shape)."""
    err = (x.float() - x_hat).pow(2)
    if granularity == "tensor":
        return err.sum()
    if granularity == "group":
        return err.reshape(*scale.shape, group_size).sum(-1)
    dims = [d for d in range(x.dim()) if scale.shape[d] == 1]
    return err.sum(dim=dims, keepdim=True) if dims else err


def mse_clip_ratio(x: torch.Tensor, bits: int, *, symmetric: bool, granularity: str,
                   group_size: int | None = None, axis: int = 0,
                   ratios: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """The clip ratio, one per scale, minimizing ``Σ (x - x')²`` over the values sharing it.

    Grid search: every ratio r of ``ratios`` (default 0.20, 0.22, ..., 1.0) is tried with
    ``quantize(x, ..., clip_ratio=r)``; the result has the scale's shape and can be passed back
    as ``clip_ratio``. Ties keep the larger ratio (r = 1 if clipping never helps).
    """
    check_finite(x)
    grid = DEFAULT_RATIOS if ratios is None else torch.as_tensor(ratios, dtype=torch.float32)
    if grid.dim() != 1 or grid.numel() == 0:
        raise ValueError("ratios must be a non-empty 1-D sequence of clip ratios in (0, 1]")
    kwargs = dict(symmetric=symmetric, granularity=granularity, group_size=group_size, axis=axis)
    dq_group = group_size if granularity == "group" else None

    def error(r: float) -> torch.Tensor:
        q, scale, zero = quantize(x, bits, clip_ratio=r, **kwargs)
        return _error_per_scale(x, dequantize(q, scale, zero, group_size=dq_group), scale,
                                granularity, group_size)

    return best_ratio_on_grid(grid.tolist(), error)


def best_ratio_on_grid(ratios: Sequence[float], error: Callable[[float], torch.Tensor]
                       ) -> torch.Tensor:
    """Element-wise grid search: for every entry of ``error(r)`` (one per scale, group, ...),
    the ratio ``r`` of ``ratios`` with the lowest error. Ratios are tried from the largest down,
    so ties keep the larger ratio (no clipping unless it helps)."""
    best_err = best_ratio = None
    for r in sorted(ratios, reverse=True):
        err = error(r)
        if best_err is None:
            best_err, best_ratio = err, torch.full_like(err, r)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_ratio = torch.where(better, torch.full_like(err, r), best_ratio)
    return best_ratio


@dataclasses.dataclass
class ActivationStats:
    """Per-input-channel statistics of the inputs a linear layer saw, over ``tokens`` tokens."""

    absmax: torch.Tensor    # [K] max |x_j|
    mean_abs: torch.Tensor  # [K] mean |x_j|
    mean_sq: torch.Tensor   # [K] mean x_j²
    tokens: int

    def outlier_channels(self, threshold: float) -> torch.Tensor:
        """Indices of the channels whose max |x| exceeds ``threshold``."""
        return torch.nonzero(self.absmax > threshold).flatten()


class _Accumulator:
    def __init__(self) -> None:
        self.absmax = self.sum_abs = self.sum_sq = None
        self.tokens = 0

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
        absmax, sum_abs, sum_sq = x.abs().amax(0), x.abs().sum(0), x.pow(2).sum(0)
        if self.absmax is None:
            self.absmax, self.sum_abs, self.sum_sq = absmax, sum_abs, sum_sq
        else:
            self.absmax = torch.maximum(self.absmax, absmax)
            self.sum_abs, self.sum_sq = self.sum_abs + sum_abs, self.sum_sq + sum_sq
        self.tokens += x.shape[0]

    def stats(self) -> ActivationStats:
        return ActivationStats(self.absmax, self.sum_abs / self.tokens, self.sum_sq / self.tokens,
                               self.tokens)


def check_samples(samples, vocab_size: int | None = None) -> list[torch.Tensor]:
    """Calibration samples as a list of LongTensor batches ``[b, T]``: a LongTensor
    ``[n, seq_len]`` or a list of ``[T]`` / ``[b, T]`` tensors; with ``vocab_size``, every id
    must lie in ``[0, vocab_size)``. A clear error for an empty set or anything else."""
    if isinstance(samples, torch.Tensor):
        if samples.dim() != 2:
            raise ValueError(f"samples must be token ids of shape [n, seq_len], got shape "
                             f"{tuple(samples.shape)}")
        batches = [samples]
    elif isinstance(samples, (list, tuple)):
        batches = [s if not isinstance(s, torch.Tensor) or s.dim() != 1 else s[None]
                   for s in samples]
    else:
        raise TypeError(f"samples must be a LongTensor [n, seq_len] or a list of token-id "
                        f"tensors, got {type(samples).__name__}")
    if not batches or any(isinstance(b, torch.Tensor) and b.numel() == 0 for b in batches):
        raise ValueError("the calibration set is empty: pass at least one sample of at least "
                         "one token (e.g. qcourse.data.calibration_samples(tokenizer, 8, 512))")
    for b in batches:
        if not isinstance(b, torch.Tensor) or b.dim() != 2:
            raise ValueError("every sample must be a 1-D or 2-D tensor of token ids")
        if b.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"samples must hold integer token ids (int64), got {b.dtype}")
        if vocab_size is not None and (b.min() < 0 or b.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{b.min().item()}, "
                             f"{b.max().item()}]")
    return batches


@torch.no_grad()
def collect_activation_stats(model: nn.Module, samples, *, batch_size: int = 4,
                             include_head: bool = False) -> dict[str, ActivationStats]:
    """Run the calibration ``samples`` through ``model`` and return, for every linear layer
    (by name), per-input-channel statistics of its inputs.

    ``samples``: token ids, a LongTensor ``[n, seq_len]`` or a list of ``[T]`` / ``[b, T]``
    tensors of different lengths (e.g. unpadded sentences).
    """
    batches = check_samples(samples)
    accumulators = {name: _Accumulator() for name in linear_layers(model, include_head=include_head)}
    if not accumulators:
        raise ValueError("the model has no nn.Linear layers to observe")
    handles = [module.register_forward_hook(accumulators[name])
               for name, module in linear_layers(model, include_head=include_head).items()]
    try:
        for batch in batches:
            for chunk in batch.split(batch_size):
                model(chunk.long())
    finally:
        for handle in handles:
            handle.remove()
    return {name: acc.stats() for name, acc in accumulators.items() if acc.tokens}
