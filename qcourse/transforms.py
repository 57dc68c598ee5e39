"""Equivalence transforms: change a model's weights without changing the function it computes.

A linear layer computes ``Y = X W^T``. For any positive per-input-channel vector ``s``,

    Y = (X diag(s)^-1) (W diag(s))^T,

so dividing activation channel j by ``s_j`` and multiplying weight column j by ``s_j`` changes
nothing in exact arithmetic. The division of X costs nothing at run time when it is *folded*
into whatever produces X:

* a norm ``y = w ⊙ x̂ (+ b)`` (RMSNorm, LayerNorm): divide ``w`` (and ``b``) by ``s``;
* a linear layer whose output feeds X elementwise: divide its output rows (and bias) by ``s``
  (in a Llama MLP, ``down(act(gate(x)) ⊙ up(x))``: dividing the rows of ``up`` divides down's
  input; in attention, ``v_proj`` feeds ``o_proj`` when every head has its own v).

SmoothQuant moves activation outliers into the weights this way (``s > 1`` on outlier channels),
AWQ protects salient weight columns (``s > 1`` on salient channels).
"""
from __future__ import annotations

import torch
from torch import nn


def check_scales(s: torch.Tensor, width: int) -> torch.Tensor:
    """``s`` if it is ``[width]`` positive finite scales, else a clear error."""
    if not isinstance(s, torch.Tensor) or s.dim() != 1 or s.numel() != width:
        raise ValueError(f"the scales must be a 1-D tensor of {width} values (one per channel), "
                         f"got {getattr(s, 'shape', type(s).__name__)}")
    if not torch.isfinite(s).all() or (s <= 0).any():
        raise ValueError("the scales must be positive and finite")
    return s


@torch.no_grad()
def fold_scale_into_norm(norm: nn.Module, linears: list[nn.Linear], s: torch.Tensor) -> None:
    """``norm.weight /= s`` (and its bias, if any); each linear's weight columns ``*= s``."""
    check_scales(s, norm.weight.shape[-1])
    norm.weight.div_(s.to(norm.weight.dtype))
    if getattr(norm, "bias", None) is not None:  # LayerNorm: y = w ⊙ x̂ + b, divide both
        norm.bias.div_(s.to(norm.bias.dtype))
    for linear in linears:
        linear.weight.mul_(s.to(linear.weight.dtype))


@torch.no_grad()
def fold_scale_into_linear(previous: nn.Linear, linear: nn.Linear, s: torch.Tensor) -> None:
    """``previous``'s output rows (and bias) ``/= s``; ``linear``'s weight columns ``*= s``."""
    check_scales(s, previous.out_features)
    previous.weight.div_(s[:, None].to(previous.weight.dtype))
    if previous.bias is not None:
        previous.bias.div_(s.to(previous.bias.dtype))
    linear.weight.mul_(s.to(linear.weight.dtype))


def fold_scales(prev: nn.Module, linears: list[nn.Linear], s: torch.Tensor) -> None:
    """``linears``' weight columns ``*= s``; ``prev``'s output ``/= s``, whatever produces their
    input: a norm's weight (:func:`fold_scale_into_norm`), or a linear layer's rows and bias
    (:func:`fold_scale_into_linear`, one consumer). The float model computes the same function."""
    if isinstance(prev, nn.Linear):
        if len(linears) != 1:
            raise ValueError("folding into a linear layer supports one consumer layer")
        fold_scale_into_linear(prev, linears[0], s)
    else:
        fold_scale_into_norm(prev, linears, s)


@torch.no_grad()
def fold_norm_weight(norm: nn.Module, linears: list[nn.Linear]) -> None:
    """``W ← W diag(w)`` for each linear reading the norm's output, then ``w ← 1``: the norm's
    own weight (of any sign, so not a scale for :func:`fold_scale_into_norm`) moves into the
    linears (rotations need norms without a weight)."""
    w = norm.weight.detach().clone()
    for linear in linears:
        linear.weight.mul_(w.to(linear.weight.dtype))
    norm.weight.fill_(1.0)
