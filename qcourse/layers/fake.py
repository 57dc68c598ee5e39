"""Fake quantization of a model: weights replaced by their round trip through a format, and
inputs quantized at run time, token by token.

For the formats this package has no kernel for (FP8, MX, NVFP4 weights; FP8, W4A8, W4A4
activations) a layer computes with values that were rounded onto the format's grid and back:

    W ← q_w(W)                                   (fake_quantize_weights, once)
    y = layer(q_a(x)),  q_a(x)[t] = round trip of row t of x [tokens, K]   (QuantizedInput)

which is exactly what a kernel for that format computes, up to float summation order. W8A8 with
a real integer matmul lives in :mod:`.int8`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from qcourse.models import linear_layers, set_module
from qcourse.quant import fake_quantize

from .base import QuantizedLinear


class QuantizedInput(nn.Module):
    """``layer(quantize(x))`` with ``quantize`` applied to the rows ``[tokens, K]`` of x."""

    def __init__(self, layer: nn.Module, quantize: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.layer, self.quantize = layer, quantize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])                           # [tokens, K]
        return self.layer(self.quantize(rows).reshape(x.shape).to(x.dtype))


def per_token_int(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric ``bits``-bit round trip of each row: ``s[t] = max_k |x[t, k]| / (2^(b-1) - 1)``."""
    return fake_quantize(rows, bits, symmetric=True, granularity="channel", axis=0)


def int_activations(bits: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-token integer quantizer of ``bits`` bits, for :func:`quantize_inputs`."""
    return functools.partial(per_token_int, bits=bits)


def quantize_inputs(model: nn.Module, quantize: Callable[[torch.Tensor], torch.Tensor]
                    ) -> nn.Module:
    """Wrap every linear layer, float or quantized (not the output head), in a
    :class:`QuantizedInput`, in place; returns the model."""
    targets = [name for name, m in model.named_modules()
               if isinstance(m, (nn.Linear, QuantizedLinear)) and not name.endswith("lm_head")]
    for name in targets:
        set_module(model, name, QuantizedInput(model.get_submodule(name), quantize))
    return model


@torch.no_grad()
def fake_quantize_weights(model: nn.Module, quantize: Callable[[torch.Tensor], torch.Tensor]
                          ) -> nn.Module:
    """Replace the weight of every ``nn.Linear`` (not the output head) by ``quantize(weight)``
    (same shape), in place; returns the model."""
    for linear in linear_layers(model).values():
        linear.weight.copy_(quantize(linear.weight.detach()))
    return model
