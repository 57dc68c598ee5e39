"""``ScaledInput``: a layer that divides its input by a per-channel scale before running.

SmoothQuant and AWQ rescale input channel j of a linear layer by ``1/s_j`` and its weight column
j by ``s_j`` (:mod:`qcourse.transforms`). In a pre-norm decoder the division is folded into the
norm or the previous layer and costs nothing. Where nothing can absorb it (a post-norm encoder
such as BERT, whose LayerNorm output is also the residual stream; a GELU between two linear
layers), the division stays explicit:

    y = layer(x / s)          (layer's weight columns already multiplied by s)

one multiply per activation, which an int8 kernel fuses into the activation quantization that
reads every activation anyway.
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.transforms import check_scales


class ScaledInput(nn.Module):
    """``layer(x / scales)``: ``scales [K]`` positive, one per input channel of ``layer``."""

    def __init__(self, layer: nn.Module, scales: torch.Tensor) -> None:
        super().__init__()
        self.layer = layer
        width = getattr(layer, "in_features", scales.numel())
        self.register_buffer("scales", check_scales(scales.detach().float().clone(), width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x / self.scales.to(x.dtype))                 # [..., K] -> [..., N]

    def extra_repr(self) -> str:
        return f"explicit input scales [{self.scales.numel()}]"
