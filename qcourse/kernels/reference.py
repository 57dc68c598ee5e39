"""Pure PyTorch references for the kernels: slow, obviously right, and the CPU fallback.

Each reference computes what its kernel promises, including where rounding happens:

    w4a16:  y = x · round_to_x_dtype(W')ᵀ, with a float32 accumulator, y in x's dtype
    w8a8:   y = (x_q · w_qᵀ) ⊙ (s_x · s_wᵀ), the int32 product scaled once at the end
"""
from __future__ import annotations

import torch

from .checks import check_w4a16, check_w8a8
from .layout import dequantize_w4a16


def w4a16_reference(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                    zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """``y = x W'ᵀ`` for ``x [..., K]`` and the packed 4-bit weight (see :mod:`.layout`):
    the weight is dequantized, rounded to x's dtype (as the kernel feeds it to the tensor cores),
    multiplied in float32 and the result returned in x's dtype, shape ``[..., N]``."""
    check_w4a16(x, qweight, scales, zeros, group_size)
    weight = dequantize_w4a16(qweight, scales, zeros, group_size).to(x.dtype)
    return (x.float() @ weight.float().t()).to(x.dtype)


def w8a8_reference(x_int8: torch.Tensor, w_int8: torch.Tensor, x_scale: torch.Tensor,
                   w_scale: torch.Tensor, out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """``y[m, n] = s_x[m] · s_w[n] · Σ_k x_q[m, k] · w_q[n, k]`` with an exact integer sum
    (computed in float64, exact for |Σ| < 2^53), returned in ``out_dtype``."""
    check_w8a8(x_int8, w_int8, x_scale, w_scale)
    acc = x_int8.double() @ w_int8.double().t()                  # exact integer dot products
    y = acc.float() * x_scale.reshape(-1, 1) * w_scale.reshape(1, -1)
    return y.to(out_dtype)
