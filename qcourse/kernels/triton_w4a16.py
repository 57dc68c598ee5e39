"""W4A16 matmul in Triton: ``y = x · W'ᵀ`` with W' dequantized from 4-bit codes inside the kernel.

Inputs in the layout of :mod:`qcourse.kernels.layout`: ``qweight [N, K/8]`` (row n = output n's
codes along K, 8 per word), ``scales`` and ``zeros [K/g, N]``,
``W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]``.

Decoding one token reads every weight once and does 2 FLOPs per weight: the kernel is
memory-bound, as fast as the bytes it asks for. So both kernels ask for each byte once
(:mod:`qcourse.kernels.traffic` counts it):

* A program owns ``BLOCK_N`` outputs and one slice of K, which it walks in steps of ``BLOCK_K``
  inputs. ``BLOCK_K`` is a power of two that divides g, so a step lies inside one group: it needs
  one scale and one zero per output, loaded once per step (once per group when ``BLOCK_K = g``).
* A step loads its ``[BLOCK_N, BLOCK_K/8]`` words once (each row a contiguous run of one output's
  codes: 128-bit loads) and unpacks the 8 nibbles of every word in registers (:func:`codes`).
* x: a step loads its ``[BLOCK_M, BLOCK_K]`` slice of x once. Every block of N outputs reads x
  again, from the L2 cache: x is K values per row against K·N/2 bytes of weight.

Then the two kernels differ in how they multiply:

* GEMV (M = 1, decoding), on the CUDA cores in float32: nibble by nibble, codes times inputs;
  within a group ``Σ (q - zero)·scale·x = scale·(Σ q·x - zero·Σ x)``, so the zero point and the
  scale are applied once per output and step, outside the inner loop;
* GEMM (M ≥ 2): the step's ``[BLOCK_N, BLOCK_K]`` tile of W', rounded to x's dtype, into
  ``tl.dot`` on the tensor cores, which take at least 16 rows: rows of x beyond M are masked
  (never loaded), so M = 2..16 read the weight once, as M = 1 does.

With few outputs there are few programs, too few to keep every SM streaming: K is split into
``SPLIT_K`` slices whose partial sums are added with atomics into a float32 y.
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import triton
import triton.language as tl

from .backend import interpreting
from .checks import check_group_size, check_w4a16

MIN_GROUP = 16  # tl.dot multiplies tiles of >= 16 inputs, and a step stays inside one group


@triton.jit
def load_step(qweight_ptr, scales_ptr, zeros_ptr, n, n_ok, k0, N, K, group_size,
              BLOCK_K: tl.constexpr):
    """The words of outputs ``n`` for inputs ``k0 .. k0 + BLOCK_K`` (``[BLOCK_N, BLOCK_K/8]``,
    loaded once) and the scale and zero of the step's group for each output (float32)."""
    row = (K // BLOCK_K) * (BLOCK_K // 8)       # = K/8 words per row, visibly a multiple of
    i = k0 // 8 + tl.arange(0, BLOCK_K // 8)    # BLOCK_K/8 (as k0 // 8 is): 128-bit loads
    words = tl.load(qweight_ptr + n[:, None] * row + i[None, :], mask=n_ok[:, None], other=0)
    group = k0 // group_size
    scale = tl.load(scales_ptr + group * N + n, mask=n_ok, other=0.0).to(tl.float32)
    zero = tl.load(zeros_ptr + group * N + n, mask=n_ok, other=0.0).to(tl.float32)
    return words, scale, zero


@triton.jit
def codes(words, j):
    """The 4-bit codes in bits 4j..4j+3 of ``words``, as exact float32 values. OR-ed into the
    mantissa of 2^23 (bits 0x4B000000), q reads as the float 2^23 + q: subtracting 2^23 leaves
    q without an int-to-float conversion (a slow instruction on GPUs: 16 per clock per SM)."""
    bits = ((words >> (4 * j)) & 0xF) | 0x4B000000                        # & 0xF drops the sign
    return bits.to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def w4a16_gemv_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, y_ptr, N, K, group_size,
                      steps_per_split, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      SPLIT_K: tl.constexpr):
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)               # this program's outputs
    n_ok = n < N
    k_start = tl.program_id(1) * steps_per_split * BLOCK_K                # its K slice
    k_end = tl.minimum(k_start + steps_per_split * BLOCK_K, K)
    i = tl.arange(0, BLOCK_K // 8)                                        # words of a step
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        words, scale, zero = load_step(qweight_ptr, scales_ptr, zeros_ptr, n, n_ok, k0, N, K,
                                       group_size, BLOCK_K)
        qx = tl.zeros((BLOCK_N, BLOCK_K // 8), dtype=tl.float32)          # Σ q·x, per word
        x_sum = tl.zeros((BLOCK_K // 8,), dtype=tl.float32)               # Σ x
        for j in tl.static_range(8):                      # nibble j of word i: input k0 + 8i + j
            x = tl.load(x_ptr + k0 + 8 * i + j).to(tl.float32)           # [BLOCK_K/8]
            qx += codes(words, j) * x[None, :]
            x_sum += x
        # Σ_k (q - zero)·scale·x = scale·(Σ q·x - zero·Σ x): zero and scale leave the inner loop
        acc += scale * (tl.sum(qx, axis=1) - zero * tl.sum(x_sum, axis=0))
    if SPLIT_K == 1:
        tl.store(y_ptr + n, acc.to(y_ptr.dtype.element_ty), mask=n_ok)
    else:
        tl.atomic_add(y_ptr + n, acc, mask=n_ok)                          # y: a float32 buffer


@triton.jit
def w4a16_gemm_kernel(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, y_ptr, M, N, K, group_size,
                      steps_per_split, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr, DOT_DTYPE: tl.constexpr):
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)               # rows of x and y
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)               # outputs
    m_ok, n_ok = m < M, n < N
    k_start = tl.program_id(2) * steps_per_split * BLOCK_K
    k_end = tl.minimum(k_start + steps_per_split * BLOCK_K, K)
    row = (K // BLOCK_K) * BLOCK_K                                        # = K, for aligned loads
    nibble = tl.arange(0, 8)[None, None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + m[:, None] * row + ks[None, :], mask=m_ok[:, None], other=0.0)
        words, scale, zero = load_step(qweight_ptr, scales_ptr, zeros_ptr, n, n_ok, k0, N, K,
                                       group_size, BLOCK_K)
        q = tl.reshape(codes(words[:, :, None], nibble), (BLOCK_N, BLOCK_K))  # k = 8i + j
        w = ((q - zero[:, None]) * scale[:, None]).to(x.dtype)            # as the tensor cores see it
        acc = tl.dot(x.to(DOT_DTYPE), tl.trans(w).to(DOT_DTYPE), acc,    # [BLOCK_M, BLOCK_N]
                     input_precision="ieee")
    y_ptrs = y_ptr + m[:, None] * N + n[None, :]
    y_ok = m_ok[:, None] & n_ok[None, :]
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_ok)
    else:
        tl.atomic_add(y_ptrs, acc, mask=y_ok)


@dataclasses.dataclass(frozen=True)
class Config:
    """One launch: tile sizes, K slices, and Triton's ``num_warps``/``num_stages`` (ignored by
    the interpreter). ``block_m = 1`` is the GEMV; 16, 32, 64 the ``tl.dot`` GEMM."""
    block_m: int
    block_n: int
    block_k: int          # at most: the step is min(block_k, largest power of two dividing g)
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 2


def step_size(group_size: int, block_k: int) -> int:
    """The largest power of two dividing ``group_size``, at most ``block_k``: a step of that many
    inputs never straddles two groups, and K (a multiple of g) is a whole number of steps."""
    return min(group_size & -group_size, block_k)


def default_config(m: int, n: int, k: int, group_size: int, sms: int) -> Config:
    """The launch without autotuning, for ``sms`` streaming multiprocessors: tiles by M, then
    enough K slices for about 4 programs per SM (at most one slice per step)."""
    block_m, block_n, block_k = (1, 128, 128) if m == 1 else (16, 64, 128) if m <= 16 else \
        (32, 64, 128) if m <= 32 else (64, 128, 64)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    steps = k // step_size(group_size, block_k)
    split_k = max(1, min(triton.cdiv(4 * sms, tiles), steps))
    return Config(block_m, block_n, block_k, split_k)


def candidate_configs(m: int, n: int, k: int, group_size: int, sms: int) -> list[Config]:
    """What ``benchmarks/kernels.py`` autotunes over: the default, then other tile widths, K
    splits and pipelining depths (every one is tested for correctness on the CPU)."""
    base = default_config(m, n, k, group_size, sms)
    steps = k // step_size(group_size, base.block_k)
    found = [base]
    for block_n in (32, 64, 128, 256) if m == 1 else (32, 64, 128):
        tiles = triton.cdiv(m, base.block_m) * triton.cdiv(n, block_n)
        for per_sm in (2, 4, 8):
            split_k = max(1, min(triton.cdiv(per_sm * sms, tiles), steps))
            for num_stages in (2, 4):
                found.append(dataclasses.replace(base, block_n=block_n, split_k=split_k,
                                                 num_stages=num_stages))
    found.append(dataclasses.replace(base, split_k=1))
    return list(dict.fromkeys(found))                                     # unique, in order


@functools.cache
def _sm_count(index: int) -> int:  # cached: a launch should not query the driver
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """SMs of a CUDA device; 2 in the interpreter, so that small test shapes split K too."""
    if device.type != "cuda":
        return 2
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def _dot_dtype(dtype: torch.dtype):
    # The interpreter multiplies with numpy, which has no bfloat16: there, bf16 tiles (exactly
    # representable in float32) are multiplied as float32. On a GPU the tensor cores take bf16.
    if dtype == torch.bfloat16 and interpreting():
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
            torch.float32: tl.float32}[dtype]


def launch(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
           group_size: int, config: Config) -> torch.Tensor:
    """Run one kernel on contiguous ``x [M, K]``; returns ``y [M, N]`` in x's dtype."""
    (m, k), n = x.shape, qweight.shape[0]
    step = step_size(group_size, config.block_k)
    steps_per_split = triton.cdiv(k // step, config.split_k)
    split_k = triton.cdiv(k // step, steps_per_split)                     # no empty slices
    y = torch.empty(m, n, dtype=x.dtype, device=x.device) if split_k == 1 else \
        torch.zeros(m, n, dtype=torch.float32, device=x.device)
    tuning = dict(num_warps=config.num_warps, num_stages=config.num_stages)
    if config.block_m == 1:
        grid = (triton.cdiv(n, config.block_n), split_k)
        w4a16_gemv_kernel[grid](x, qweight, scales, zeros, y, n, k, group_size, steps_per_split,
                                BLOCK_N=config.block_n, BLOCK_K=step, SPLIT_K=split_k, **tuning)
    else:
        grid = (triton.cdiv(m, config.block_m), triton.cdiv(n, config.block_n), split_k)
        w4a16_gemm_kernel[grid](x, qweight, scales, zeros, y, m, n, k, group_size, steps_per_split,
                                BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=step,
                                SPLIT_K=split_k, DOT_DTYPE=_dot_dtype(x.dtype), **tuning)
    return y.to(x.dtype)


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, group_size: int, *, split_k: int | None = None,
                 config: Config | None = None) -> torch.Tensor:
    """``y = x · W'ᵀ`` for ``x [..., K]`` (float16/bfloat16/float32) and a 4-bit weight packed as
    in :mod:`qcourse.kernels.layout`; returns ``[..., N]`` in x's dtype, accumulated in float32.

    One row (M = 1) uses the GEMV, more rows the ``tl.dot`` GEMM. ``config`` fixes the launch
    (tiles, K slices); by default :func:`default_config` for this device, with ``split_k``
    slices of K if given. Runs on CUDA tensors, or on CPU tensors under the Triton interpreter
    (see :func:`qcourse.kernels.device`). The group size must be a multiple of 16.
    """
    k, n = check_w4a16(x, qweight, scales, zeros, group_size)
    check_group_size(group_size, MIN_GROUP, " for the Triton kernels (tl.dot takes tiles of at "
                     "least 16 inputs, and a tile must lie inside one group)")
    if split_k is not None and (isinstance(split_k, bool) or not isinstance(split_k, int)
                                or split_k < 1):
        raise ValueError(f"split_k must be a positive integer or None, got {split_k!r}")
    if config is not None and (split_k is not None or not isinstance(config, Config)):
        raise ValueError("pass a Config as config, or split_k, not both")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"the Triton kernel needs CUDA tensors (got {x.device}); on CPU use "
                         "w4a16_reference, or call qcourse.kernels.device() before importing "
                         "triton (it sets TRITON_INTERPRET=1)")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    if m == 0 or n == 0:
        return x.new_zeros(*lead, n)
    if config is None:
        config = default_config(m, n, k, group_size, sm_count(x.device))
        if split_k is not None:
            config = dataclasses.replace(config, split_k=split_k)
    if (config.block_m == 1) != (m == 1):
        raise ValueError(f"config.block_m = {config.block_m} (1 = the GEMV) does not fit M = {m}")
    y = launch(x2, qweight.contiguous(), scales.contiguous(), zeros.contiguous(), group_size,
               config)
    return y.reshape(*lead, n)
