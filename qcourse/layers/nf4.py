"""``NF4Linear``: a linear layer storing NF4 codes (QLoRA's 4-bit NormalFloat, :mod:`qcourse.nf4`).

    packed  uint8    [N·K/2]       two codes per byte, the first in the low nibble
    absmax  float32  [N·K/64]      one per block of 64 consecutive weights (row-major)

    W'[i] = NF4_CODE[code[i]] · absmax[i // 64]       (4.5 bits per weight)
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.nf4 import BLOCK_SIZE, dequantize_nf4, quantize_nf4
from qcourse.pack import pack_bytes, unpack_bytes

from .base import QuantizedLinear, check_linear


class NF4Linear(QuantizedLinear):
    """Linear layer storing NF4 codes (two per byte) and float32 block absmax values."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 block_size: int = BLOCK_SIZE) -> None:
        super().__init__(in_features, out_features, bias)
        if (in_features * out_features) % block_size:
            raise ValueError(f"{out_features}x{in_features} weights do not split into blocks "
                             f"of {block_size}")
        self.block_size = block_size
        n = in_features * out_features
        self.register_buffer("packed", torch.zeros(n // 2, dtype=torch.uint8))
        self.register_buffer("absmax", torch.zeros(n // block_size))

    @classmethod
    def from_float(cls, linear: nn.Linear, block_size: int = BLOCK_SIZE) -> NF4Linear:
        check_linear(linear)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, block_size)
        codes, absmax = quantize_nf4(linear.weight.detach(), block_size)
        layer.packed.copy_(pack_bytes(codes.reshape(-1), 4))
        layer.absmax.copy_(absmax)
        layer.copy_bias(linear.bias)
        return layer

    def weight(self) -> torch.Tensor:
        codes = unpack_bytes(self.packed, 4).reshape(self.out_features, self.in_features)
        return dequantize_nf4(codes, self.absmax, self.block_size)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, NF4, "
                f"block_size={self.block_size}, bias={self.bias is not None}")
