"""W8A8 matmul in Triton (SmoothQuant-style): int8 × int8 → int32, scaled once at the end.

With per-token activation scales s_x[m] and per-output-channel weight scales s_w[n],

    y[m, n] = Σ_k (s_x[m] x_q[m, k]) (s_w[n] w_q[n, k]) = s_x[m] · s_w[n] · Σ_k x_q[m, k] w_q[n, k]

so the inner loop is a pure integer GEMM (int8 tensor cores, exact int32 accumulator) and the
two scales are applied once per output in the epilogue. Per-group scales would break this:
they change inside the K loop, so they would have to be applied per K step.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .checks import check_w8a8
from .backend import interpreting


@triton.jit
def w8a8_kernel(x_ptr, w_ptr, x_scale_ptr, w_scale_ptr, y_ptr, M, N, K,
                 stride_xm, stride_wn, stride_ym, x_scale_step, w_scale_step,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)       # m
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)       # n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :],
                    mask=(rows[:, None] < M) & (ks[None, :] < K), other=0)
        w = tl.load(w_ptr + cols[None, :] * stride_wn + ks[:, None],  # [BLOCK_K, BLOCK_N] = wᵀ
                    mask=(ks[:, None] < K) & (cols[None, :] < N), other=0)
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)                  # exact int32 sums
    # epilogue: y = acc · s_x[m] · s_w[n], once per output
    s_x = tl.load(x_scale_ptr + rows * x_scale_step, mask=rows < M, other=0.0)
    s_w = tl.load(w_scale_ptr + cols * w_scale_step, mask=cols < N, other=0.0)
    y = acc.to(tl.float32) * s_x[:, None] * s_w[None, :]
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def _tiles(m: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K): small tiles for few rows, large ones for big GEMMs."""
    if m <= 16:
        return 16, 64, 64
    if m <= 64:
        return 64, 64, 64
    return 128, 128, 64


def w8a8_matmul(x_int8: torch.Tensor, w_int8: torch.Tensor, x_scale: torch.Tensor,
                w_scale: torch.Tensor, out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """``y = (x_q · w_qᵀ) ⊙ (s_x s_wᵀ)`` for ``x_int8 [M, K]``, ``w_int8 [N, K]`` (int8),
    ``x_scale`` ``[M]`` per token and ``w_scale`` ``[N]`` per output channel (float32, or one
    value for all); int32 accumulation, result ``[M, N]`` in ``out_dtype``."""
    m, n, k = check_w8a8(x_int8, w_int8, x_scale, w_scale)
    if out_dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"out_dtype must be float16, bfloat16 or float32, got {out_dtype}")
    if x_int8.device.type != "cuda" and not interpreting():
        raise ValueError(f"the Triton kernel needs CUDA tensors (got {x_int8.device}); on CPU "
                         "use w8a8_reference, or call qcourse.kernels.device() before importing "
                         "triton (it sets TRITON_INTERPRET=1)")
    x_int8, w_int8 = x_int8.contiguous(), w_int8.contiguous()
    x_scale, w_scale = x_scale.reshape(-1).contiguous(), w_scale.reshape(-1).contiguous()
    y = torch.empty(m, n, dtype=out_dtype, device=x_int8.device)
    if m == 0 or n == 0:
        return y
    block_m, block_n, block_k = _tiles(m)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    w8a8_kernel[grid](x_int8, w_int8, x_scale, w_scale, y, m, n, k,
                       x_int8.stride(0), w_int8.stride(0), y.stride(0),
                       int(x_scale.numel() > 1), int(w_scale.numel() > 1),
                       BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return y
