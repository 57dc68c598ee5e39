"""SmoothQuant (Xiao et al., 2023): move activation outliers into the weights, then W8A8.

A linear layer computes ``Y = X W^T``. For any positive per-input-channel vector ``s``,

    Y = (X diag(s)^-1) (W diag(s))^T,

so dividing activation channel j by ``s_j`` and multiplying weight column j by ``s_j`` changes
nothing in exact arithmetic, but it can make both easier to quantize. SmoothQuant picks

    s_j = max|X_j|^α / max|W_j|^(1-α)          (α = 0.5 balances the two; max over calibration
                                                tokens for X, over output rows for W)

The division of X costs nothing at run time when it is folded into what produces X
(:mod:`qcourse.transforms`). SmoothQuant (the paper, its reference code and llm-compressor's
``DEFAULT_SMOOTHQUANT_MAPPINGS``) smooths the layers fed by a norm: q/k/v through the attention
RMSNorm and gate/up through the MLP RMSNorm. ``include_down=True`` adds the course's extension:
``down_proj`` through the rows of ``up_proj`` (``down_proj`` reads SiLU(gate) ⊙ up, linear in
up's output; AWQ folds its scales the same way). It matters where a model's largest activation
outliers sit at ``down_proj``'s input, as in SmolLM2 (its largest input outliers are
``down_proj``'s, thousands of times its median channel).

Layers sharing one input (q, k, v) share one ``s``, with max|W_j| taken over all of them.

Where nothing can absorb the division (a post-norm encoder such as BERT, whose LayerNorm output
is also the residual stream), :func:`smooth_explicit` keeps it as an explicit division of each
layer's input (:class:`~qcourse.layers.scaled.ScaledInput`), one ``s`` per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.calib import ActivationStats, collect_activation_stats
from qcourse.layers.scaled import ScaledInput
from qcourse.models import linear_layers, set_module
from qcourse.models.llama import NORM_GROUPS, UP_DOWN, decoder_blocks
from qcourse.ptq import quantize_w8a8
from qcourse.transforms import fold_scales


def smoothing_scales(act_absmax: torch.Tensor, weights: list[torch.Tensor],
                     alpha: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """``s_j = max|X_j|^α / max|W_j|^(1-α)`` for the input channels j of ``weights [N_i, K]``."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    k = act_absmax.shape[-1]
    if not weights or any(w.shape[-1] != k for w in weights):
        raise ValueError(f"every weight must have {k} input columns, like the activation stats")
    weight_absmax = torch.cat([w.detach().abs().float() for w in weights]).amax(dim=0)
    s = act_absmax.float().clamp(min=eps).pow(alpha) / weight_absmax.clamp(min=eps).pow(1 - alpha)
    return s.clamp(min=eps)


def smooth_llama(model: nn.Module, stats: dict[str, ActivationStats], alpha: float = 0.5,
                 *, include_down: bool = False) -> dict[str, torch.Tensor]:
    """Apply SmoothQuant's equivalent transformation to every block of a Llama-family model,
    in place (the float model's outputs are unchanged). Returns the scales by layer name.

    ``stats`` come from :func:`qcourse.calib.collect_activation_stats` on the unsmoothed model.
    By default the paper's mapping (q/k/v and gate/up, through the norms); ``include_down``
    also smooths ``down_proj`` through ``up_proj`` (the course's extension: module docstring).
    """
    groups = NORM_GROUPS + ((UP_DOWN,) if include_down else ())
    scales = {}
    for i, block in enumerate(decoder_blocks(model, "SmoothQuant")):
        for group in groups:
            name = f"model.layers.{i}.{group.layers[0]}"
            prev, linears = group.modules(block)
            s = smoothing_scales(stats[name].absmax, [l.weight for l in linears], alpha)
            fold_scales(prev, linears, s)
            scales[name] = s
    return scales


@torch.no_grad()
def smooth_explicit(model: nn.Module, stats: dict[str, ActivationStats], alpha: float = 0.5
                    ) -> dict[str, torch.Tensor]:
    """SmoothQuant's transformation for any model, in place: every linear layer with
    statistics (not the head) gets its weight columns ``*= s`` and is wrapped in a
    :class:`~qcourse.layers.scaled.ScaledInput` that divides its input by ``s`` (the float
    model's outputs are unchanged). Returns the scales by layer name; quantize afterwards
    (e.g. :func:`qcourse.ptq.quantize_w8a8`, which reaches the wrapped layers)."""
    scales = {}
    for name, linear in linear_layers(model).items():
        if name not in stats:
            continue
        s = smoothing_scales(stats[name].absmax, [linear.weight], alpha)
        linear.weight.mul_(s.to(linear.weight.dtype))
        set_module(model, name, ScaledInput(linear, s))
        scales[name] = s
    return scales


def smoothquant(model: nn.Module, samples: torch.Tensor, alpha: float = 0.5,
                *, include_down: bool = False) -> nn.Module:
    """Calibrate on ``samples`` (token ids [n, seq_len]), smooth, then quantize W8A8; in place."""
    stats = collect_activation_stats(model, samples)
    smooth_llama(model, stats, alpha, include_down=include_down)
    return quantize_w8a8(model)
