"""The course's first W4A16 Triton kernels, kept unchanged to be measured: do not use them.

These are the kernels timed on an H100 on 2026-11-27 (``benchmarks/results/kernels-nvidia-h100-
80gb-hbm3-2026-11-27.json``: ×0.58-0.66 of fp16 at M = 1). :mod:`qcourse.kernels.triton_w4a16`
replaces them; notebook 07 and ``benchmarks/kernel_traffic.py`` count the bytes both ask memory
for (:mod:`qcourse.kernels.traffic`), which is what the redesign fixed:

* the GEMM loads each int32 word once per nibble row (8 times) and a scale and a zero per weight;
* the GEMV loads a scale and a zero per word (16 times per group of 128) and reads the whole
  weight again for every row of x.

They read the GPTQ checkpoint layout (:func:`qcourse.kernels.layout.to_checkpoint`):

    qweight[i, n] (int32, [K/8, N]) holds q[n, 8i + j] in bits [4j, 4j + 4), j = 0..7
    W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]

Two kernels, chosen by the number of rows M of x: a tiled ``tl.dot`` GEMM for M ≥ 16 and a
split-K GEMV for M < 16; both accumulate in float32.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .backend import interpreting
from .checks import PACK, check_w4a16

GEMV_MAX_M = 15  # rows below 16 take the GEMV path (tl.dot needs >= 16 rows)


@triton.jit
def dequantize_nibbles(words, shift, scale, zero):
    """W' = (q - zero) · scale, with q the 4-bit field of ``words`` starting at bit ``shift``."""
    q = (words >> shift) & 0xF                  # 0..15 (the mask also drops the sign bits)
    return (q.to(tl.float32) - zero) * scale


@triton.jit
def w4a16_gemm_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, y_ptr,
                       M, N, K, group_size, stride_xm, stride_ym, k_per_split,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       SPLIT_K: tl.constexpr, DOT_DTYPE: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)       # m of this tile
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)       # n of this tile
    k_start = tl.program_id(2) * k_per_split                         # this program's K slice
    k_end = tl.minimum(k_start + k_per_split, K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)                              # k of this step
        x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :],
                    mask=(rows[:, None] < M) & (ks[None, :] < k_end), other=0.0)
        w_mask = (ks[:, None] < k_end) & (cols[None, :] < N)
        # row k of W'ᵀ lives in word row k // 8, nibble k % 8; its group is k // g
        words = tl.load(qweight_ptr + (ks // 8)[:, None] * N + cols[None, :], mask=w_mask, other=0)
        group = (ks // group_size)[:, None] * N + cols[None, :]
        scale = tl.load(scales_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        w = dequantize_nibbles(words, (ks % 8)[:, None] * 4, scale, zero)   # [BLOCK_K, BLOCK_N] = W'ᵀ
        w = w.to(x.dtype)                                            # what the tensor cores see
        acc = tl.dot(x.to(DOT_DTYPE), w.to(DOT_DTYPE), acc, input_precision="ieee")
    y_ptrs = y_ptr + rows[:, None] * stride_ym + cols[None, :]
    y_mask = (rows[:, None] < M) & (cols[None, :] < N)
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)
    else:
        tl.atomic_add(y_ptrs, acc, mask=y_mask)                      # y is a float32 buffer


@triton.jit
def w4a16_gemv_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, y_ptr,
                       N, K, group_size, stride_xm, stride_ym, words_per_split,
                       BLOCK_N: tl.constexpr, BLOCK_WORDS: tl.constexpr, SPLIT_K: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)        # outputs n
    word_start = tl.program_id(1) * words_per_split                  # this program's K slice
    word_end = tl.minimum(word_start + words_per_split, K // 8)
    row = tl.program_id(2)                                           # the row m of x
    acc = tl.zeros((BLOCK_WORDS, BLOCK_N), dtype=tl.float32)
    for i0 in range(word_start, word_end, BLOCK_WORDS):
        i = i0 + tl.arange(0, BLOCK_WORDS)                           # word rows: k = 8i .. 8i+7
        i_ok = i < word_end
        w_mask = i_ok[:, None] & (cols[None, :] < N)
        words = tl.load(qweight_ptr + i[:, None] * N + cols[None, :], mask=w_mask, other=0)
        group = (i * 8 // group_size)[:, None] * N + cols[None, :]   # g % 8 == 0: one group/word
        scale = tl.load(scales_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + group, mask=w_mask, other=0.0).to(tl.float32)
        for j in tl.static_range(8):                                 # the 8 nibbles of each word
            x = tl.load(x_ptr + row * stride_xm + i * 8 + j, mask=i_ok, other=0.0)
            w = dequantize_nibbles(words, 4 * j, scale, zero).to(x.dtype)   # rounded as in the GEMM
            acc += x.to(tl.float32)[:, None] * w.to(tl.float32)
    y = tl.sum(acc, axis=0)                                          # [BLOCK_N] partial sums
    y_ptrs = y_ptr + row * stride_ym + cols
    if SPLIT_K == 1:
        tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=cols < N)
    else:
        tl.atomic_add(y_ptrs, y, mask=cols < N)                      # y is a float32 buffer


def _dot_dtype(dtype: torch.dtype):
    # The interpreter multiplies with numpy, which has no bfloat16: there, bf16 tiles (exactly
    # representable in float32) are multiplied as float32. On a GPU the tensor cores take bf16.
    if dtype == torch.bfloat16 and interpreting():
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
            torch.float32: tl.float32}[dtype]


def _programs_wanted(device: torch.device) -> int:
    """Enough programs to keep every SM busy with several in flight (4 per SM); 8 in the
    interpreter, so that the tests' small shapes exercise the split-K paths."""
    if device.type != "cuda":
        return 8
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _sm_count(index: int) -> int:  # cached: a launch should not query the driver
    return 4 * torch.cuda.get_device_properties(index).multi_processor_count


def _output(m: int, n: int, split_k: int, like: torch.Tensor) -> torch.Tensor:
    """Where the kernel writes: y itself, or a zeroed float32 buffer the K slices add into."""
    if split_k == 1:
        return torch.empty(m, n, dtype=like.dtype, device=like.device)
    return torch.zeros(m, n, dtype=torch.float32, device=like.device)


def _split(split_k: int | None, tiles: int, k_steps: int, device: torch.device) -> int:
    """How many K slices: enough programs to fill the GPU, at most one per K step."""
    if split_k is None:
        split_k = triton.cdiv(_programs_wanted(device), tiles)
    return max(1, min(split_k, k_steps))


def launch_gemm(x: torch.Tensor, qweight, scales, zeros, group_size: int, n: int,
          split_k: int | None) -> torch.Tensor:
    m, k = x.shape
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64
    block_n, block_k = (64, 64) if m <= 64 else (128, 32)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    split_k = _split(split_k, tiles, triton.cdiv(k, block_k), x.device)
    k_per_split = triton.cdiv(triton.cdiv(k, block_k), split_k) * block_k
    split_k = triton.cdiv(k, k_per_split)                            # no empty slices
    y = _output(m, n, split_k, x)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n), split_k)
    w4a16_gemm_kernel[grid](x, qweight, scales, zeros, y, m, n, k, group_size,
                             x.stride(0), y.stride(0), k_per_split, BLOCK_M=block_m,
                             BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split_k,
                             DOT_DTYPE=_dot_dtype(x.dtype))
    return y.to(x.dtype)


def launch_gemv(x: torch.Tensor, qweight, scales, zeros, group_size: int, n: int,
          split_k: int | None) -> torch.Tensor:
    m, k = x.shape
    block_n, block_words = 128, 16                                   # 16 words = 128 inputs/step
    n_blocks, steps = triton.cdiv(n, block_n), triton.cdiv(k // PACK, block_words)
    split_k = _split(split_k, n_blocks * m, steps, x.device)
    words_per_split = triton.cdiv(steps, split_k) * block_words
    split_k = triton.cdiv(k // PACK, words_per_split)                # no empty slices
    y = _output(m, n, split_k, x)
    grid = (n_blocks, split_k, m)
    w4a16_gemv_kernel[grid](x, qweight, scales, zeros, y, n, k, group_size, x.stride(0),
                             y.stride(0), words_per_split, BLOCK_N=block_n,
                             BLOCK_WORDS=block_words, SPLIT_K=split_k)
    return y.to(x.dtype)


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, group_size: int, *, split_k: int | None = None,
                 ) -> torch.Tensor:
    """``y = x · W'ᵀ`` for ``x [..., K]`` (float16/bfloat16/float32) and a 4-bit weight in the
    checkpoint layout (``qweight [K/8, N]``); returns ``[..., N]`` in x's dtype.

    Rows M < 16 use the GEMV, M ≥ 16 the tiled ``tl.dot`` GEMM; both split K into ``split_k``
    slices (None: enough programs to fill the GPU). Runs on CUDA tensors, or on CPU tensors
    under the Triton interpreter (``TRITON_INTERPRET=1`` set before triton is imported).
    """
    k, n = check_w4a16(x, qweight.t(), scales, zeros, group_size)     # [K/8, N]: checkpoint layout
    if split_k is not None and (isinstance(split_k, bool) or not isinstance(split_k, int)
                                or split_k < 1):
        raise ValueError(f"split_k must be a positive integer or None, got {split_k!r}")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"the Triton kernel needs CUDA tensors (got {x.device}); on CPU use "
                         "w4a16_reference, or set TRITON_INTERPRET=1 before importing triton")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()
    qweight, scales, zeros = qweight.contiguous(), scales.contiguous(), zeros.contiguous()
    if x2.shape[0] == 0:
        return x.new_zeros(*lead, n)
    if x2.shape[0] <= GEMV_MAX_M:
        y = launch_gemv(x2, qweight, scales, zeros, group_size, n, split_k)
    else:
        y = launch_gemm(x2, qweight, scales, zeros, group_size, n, split_k)
    return y.reshape(*lead, n)
