"""The AWQ paper's first experiment (Lin et al. 2024, Table 1): which 1 % of a layer's input
channels is worth keeping in float?

Every linear layer gets round-to-nearest weights (asymmetric, per group), except ``fraction`` of
its input channels, kept in float, chosen by

    activation   the largest mean |x_j| over calibration tokens      (the paper: "salient")
    weight       the largest column norm ‖W[:, j]‖₂
    random       a seeded random choice

Keeping the activation-salient 1 % recovers most of the loss; the others do not. That is why AWQ
protects those channels (by scaling, :mod:`qcourse.awq`).
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.calib import ActivationStats
from qcourse.models import linear_layers
from qcourse.quant import QuantScheme

SALIENT_CRITERIA = ("activation", "weight", "random")


def salient_channels(weight: torch.Tensor, stats: ActivationStats | None, count: int, by: str,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``count`` input channels of ``weight [N, K]``: the largest mean |x|
    (``"activation"``), the largest column L2 norm (``"weight"``) or a random choice."""
    if by == "activation":
        if stats is None:
            raise ValueError("by='activation' needs the layer's activation statistics")
        return stats.mean_abs.topk(count).indices
    if by == "weight":
        return weight.detach().float().norm(dim=0).topk(count).indices
    if by == "random":
        return torch.randperm(weight.shape[1], generator=generator)[:count]
    raise ValueError(f"by must be one of {SALIENT_CRITERIA}, got {by!r}")


@torch.no_grad()
def keep_salient(model: nn.Module, stats: dict[str, ActivationStats] | None, *,
                 fraction: float = 0.01, by: str = "activation", bits: int = 3,
                 group_size: int = 128, seed: int = 0) -> nn.Module:
    """Mixed precision as in the AWQ paper's first experiment, in place: every linear layer
    (not the head) gets round-to-nearest weights (asymmetric, per group), except ``fraction`` of
    its input channels chosen ``by`` activation, weight or at random, which keep their float
    values. The result stays a float ``nn.Linear`` (fake quantization: mixed precision has no
    packed format here). ``stats``: :func:`qcourse.calib.collect_activation_stats` output."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}")
    if by not in SALIENT_CRITERIA:
        raise ValueError(f"by must be one of {SALIENT_CRITERIA}, got {by!r}")
    scheme = QuantScheme(bits, group_size)
    generator = torch.Generator().manual_seed(seed)
    for name, linear in linear_layers(model).items():
        w = linear.weight.detach()
        quantized = scheme.fake_quantize(w.float()).to(w.dtype)
        count = round(fraction * w.shape[1])
        if count:
            keep = salient_channels(w, None if stats is None else stats.get(name), count, by,
                                    generator)
            quantized[:, keep] = w[:, keep]
        linear.weight.copy_(quantized)
    return model
