"""NF4 (4-bit NormalFloat, QLoRA: Dettmers et al., 2023), written out so it can be compared with
bitsandbytes.

The weight is flattened and cut into blocks of 64 values. Each block is divided by its absmax,
and every value is replaced by the index of the nearest of the 16 code values ``c`` of
:data:`qcourse.formats.NF4_CODE` (quantiles of a standard normal in [-1, 1]):

    code[i]  = argmin_c |w[i] / absmax[block(i)] - c|
    w'[i]    = NF4_CODE[code[i]] · absmax[block(i)]

Storage: 4 bits per weight (two codes per byte) plus one float32 absmax per block,
i.e. 4 + 32/64 = 4.5 bits per weight (bitsandbytes' "double quantization" would shrink the
absmax further; not used here). The layer that stores it is :class:`qcourse.layers.NF4Linear`.
"""
from __future__ import annotations

import torch

from qcourse.formats import NF4_CODE, nearest_code
from qcourse.pack import pack_bytes
from qcourse.quant import check_finite

BLOCK_SIZE = 64


def _blocks(w: torch.Tensor, block_size: int) -> torch.Tensor:
    """``w`` flattened into blocks, ``[numel / block_size, block_size]`` float32."""
    check_finite(w, "w", "NF4")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if w.numel() % block_size:
        raise ValueError(f"w has {w.numel()} values, not a multiple of the block size "
                         f"{block_size}")
    return w.float().reshape(-1, block_size)


def quantize_nf4(w: torch.Tensor, block_size: int = BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, absmax)``: uint8 code indices in [0, 16) with w's shape, and one float32
    absmax per block of ``block_size`` consecutive values of the flattened ``w``."""
    blocks = _blocks(w, block_size)
    absmax = blocks.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))  # an all-zero block -> code 0.0
    codes = nearest_code(blocks / safe[:, None], NF4_CODE).to(torch.uint8)
    return codes.reshape(w.shape), absmax


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor,
                   block_size: int = BLOCK_SIZE) -> torch.Tensor:
    """``NF4_CODE[codes] · absmax`` per block, float32 with codes' shape."""
    if codes.numel() != absmax.numel() * block_size:
        raise ValueError(f"{codes.numel()} codes do not match {absmax.numel()} blocks of "
                         f"{block_size}")
    values = NF4_CODE[codes.long()].reshape(-1, block_size) * absmax.float()[:, None]
    return values.reshape(codes.shape)


def fake_nf4(w: torch.Tensor, block_size: int = BLOCK_SIZE) -> torch.Tensor:
    """``w`` after a round trip through NF4, in w's dtype."""
    return dequantize_nf4(*quantize_nf4(w, block_size), block_size).to(w.dtype)


def to_bnb_bytes(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes two per byte as bitsandbytes does: the first code in the *high* nibble
    (our :func:`qcourse.pack.pack_bytes` puts the first value in the low nibble)."""
    pairs = codes.reshape(-1, 2).flip(-1)
    return pack_bytes(pairs.reshape(-1), 4)
