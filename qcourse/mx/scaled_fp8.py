"""FP8 with a scale: per tensor, per channel (row) or per 2-D block (DeepSeek-V3's 128×128).

A plain FP8 cast keeps only values up to 448 (E4M3) and loses everything below 2^-9. Weights and
activations live on other scales, so production FP8 stores ``x / s`` with one float32 scale per
tensor, per row (channel/token) or per block, chosen so that the block's absmax lands on the
format's largest value::

    s = absmax / fmt_max          codes = fp8(x / s)  (saturating)          x' = fp8⁻¹(codes) · s

(torchao's ``Float8Tensor.from_hp`` does exactly this: the cross-check in ``tests/test_mx.py``.)
An all-zero block gets ``s = 1`` here (torchao divides 0 by 0 there and stores NaN).
"""
from __future__ import annotations

import dataclasses

import torch

from qcourse.quant import check_finite

from .minifloat import decode, encode, fake_round
from .catalog import fp8_element

GRANULARITIES = ("tensor", "channel", "block")


@dataclasses.dataclass(frozen=True)
class ScaledFP8:
    """FP8 codes ``[N, K]`` (uint8, x's shape) and float32 scales: ``[1, 1]`` (tensor),
    ``[N, 1]`` (channel) or ``[N / bn, K / bk]`` (block ``(bn, bk)``)."""

    fmt: str
    codes: torch.Tensor
    scale: torch.Tensor
    block_shape: tuple[int, int]


def block_shape_for(shape: torch.Size, granularity: str,
                    block_shape: tuple[int, int] = (128, 128)) -> tuple[int, int]:
    """The 2-D block that shares one scale: the whole ``[N, K]`` matrix, one row ``(1, K)``, or
    ``block_shape`` (which must divide the matrix: a clear ValueError otherwise)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if len(shape) != 2:
        raise ValueError(f"scaled FP8 takes a 2-D tensor [N, K], got shape {tuple(shape)}")
    n, k = shape
    if granularity == "tensor":
        return n, k
    if granularity == "channel":
        return 1, k
    bn, bk = block_shape
    if not all(isinstance(b, int) and b > 0 for b in (bn, bk)) or n % bn or k % bk:
        raise ValueError(f"block shape {block_shape} does not divide the {n}x{k} matrix")
    return bn, bk


def _blocks(x: torch.Tensor, bn: int, bk: int) -> torch.Tensor:
    """``[N, K] -> [N/bn, K/bk, bn·bk]``: one row per block."""
    n, k = x.shape
    return x.reshape(n // bn, bn, k // bk, bk).transpose(1, 2).reshape(n // bn, k // bk, bn * bk)


def _unblocks(b: torch.Tensor, bn: int, bk: int) -> torch.Tensor:
    """Inverse of :func:`_blocks`."""
    nb, kb, _ = b.shape
    return b.reshape(nb, kb, bn, bk).transpose(1, 2).reshape(nb * bn, kb * bk)


def _scaled(x: torch.Tensor, fmt: str, granularity: str, block_shape: tuple[int, int]
            ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(x / s per block [N/bn, K/bk, bn·bk], s [N/bn, K/bk], (bn, bk))`` with
    ``s = absmax / fmt_max`` (1 for an all-zero block)."""
    spec = fp8_element(fmt)
    check_finite(x)
    bn, bk = block_shape_for(x.shape, granularity, block_shape)
    blocks = _blocks(x.float(), bn, bk)                       # [N/bn, K/bk, bn·bk]
    absmax = blocks.abs().amax(-1)
    scale = torch.where(absmax > 0, absmax / spec.max, 1.0)   # [N/bn, K/bk]
    return blocks / scale[..., None], scale, (bn, bk)


def quantize_fp8(x: torch.Tensor, fmt: str = "fp8_e4m3", granularity: str = "tensor",
                 block_shape: tuple[int, int] = (128, 128)) -> ScaledFP8:
    """``x [N, K]`` to FP8 (``"fp8_e4m3"`` or ``"fp8_e5m2"``) with ``s = absmax / fmt_max`` per
    tensor, channel (row) or block; the scaled values saturate at ``±fmt_max``."""
    scaled, scale, (bn, bk) = _scaled(x, fmt, granularity, block_shape)
    codes = encode(scaled, fp8_element(fmt), saturate=True)
    return ScaledFP8(fmt, _unblocks(codes, bn, bk), scale, (bn, bk))


def dequantize_fp8(q: ScaledFP8) -> torch.Tensor:
    """``fp8⁻¹(codes) · s`` per block, float32 ``[N, K]``."""
    bn, bk = q.block_shape
    values = _blocks(decode(q.codes, fp8_element(q.fmt)), bn, bk)
    return _unblocks(values * q.scale[..., None], bn, bk)


def fake_quantize_fp8(x: torch.Tensor, fmt: str = "fp8_e4m3", granularity: str = "tensor",
                      block_shape: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """``x`` after a round trip through scaled FP8, in x's dtype: ``dequantize_fp8(quantize_fp8(
    x, ...))`` without the codes (:func:`qcourse.mx.minifloat.fake_round`)."""
    scaled, scale, (bn, bk) = _scaled(x, fmt, granularity, block_shape)
    values = fake_round(scaled, fp8_element(fmt)) * scale[..., None]
    return _unblocks(values, bn, bk).to(x.dtype)
