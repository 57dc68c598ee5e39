"""What every quantized linear layer of the course shares: its shape, an optional bias, and a
forward pass through the weight it stores.

    y = x · W'ᵀ + bias,      W' = weight()   (the dequantized weight, float32 [N, K])

A subclass stores its weight in its own format (packed integers, int8 rows, NF4 codes) and says
how to get ``W'`` back; the W8A8 layers override ``forward`` to multiply in integers instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_linear(linear: nn.Module) -> nn.Linear:
    """``linear`` if it is an ``nn.Linear``, else a clear TypeError."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
    return linear


class QuantizedLinear(nn.Module):
    """Base of the quantized layers: ``in_features``, ``out_features`` and a bias buffer."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 bias_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype) if bias else None)

    def copy_bias(self, bias: torch.Tensor | None) -> None:
        """Keep ``bias`` (a float linear layer's, in full precision) if there is one."""
        if bias is not None:
            self.bias.copy_(bias.detach())

    def weight(self) -> torch.Tensor:
        """The dequantized weight ``[N, K]`` (float32)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight().to(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    """Every quantized linear layer of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
