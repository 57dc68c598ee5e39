"""Roofline arithmetic: bytes a matmul must move, the FLOPs it does, and what real GPUs offer.

A kernel cannot run faster than either roof:

    time >= max(bytes_moved / peak_bandwidth, flops / peak_flops)

``flops / bytes`` is the arithmetic intensity. Below ``peak_flops / peak_bandwidth`` (the ridge
point, ~295 FLOP/byte on an H100 SXM) a kernel is memory-bound: decoding one token (M = 1) does
2 FLOPs per weight and reads every weight once, so it sits far left of the ridge and its speed is
set by how many bytes the weights take. That is what weight-only quantization buys.
"""
from __future__ import annotations

from qcourse.hardware import GPUS, GPUSpec as GPU, lookup_gpu  # noqa: F401  (the spec table)


def matmul_flops(m: int, n: int, k: int) -> int:
    """``y[M, N] = x[M, K] · W[N, K]ᵀ``: one multiply and one add per (m, n, k)."""
    return 2 * m * n * k


def bytes_fp16(m: int, n: int, k: int) -> int:
    """Bytes an fp16 linear must move at least once: W (2NK), x (2MK), y (2MN)."""
    return 2 * n * k + 2 * m * k + 2 * m * n


def bytes_w4a16(m: int, n: int, k: int, group_size: int, scale_bytes: int = 2) -> int:
    """W4A16: 4-bit codes (NK/2), a scale and a zero per group ((K/g)·N each), x and y in fp16."""
    return n * k // 2 + 2 * scale_bytes * (k // group_size) * n + 2 * m * k + 2 * m * n


def bytes_w8a8(m: int, n: int, k: int) -> int:
    """W8A8: int8 W (NK) and x (MK), float32 scales (4M + 4N), fp16 y (2MN)."""
    return n * k + m * k + 4 * (m + n) + 2 * m * n


def roofline_seconds(flops: float, nbytes: float, gpu: GPU, int8: bool = False) -> float:
    """The lower bound on time: the slower of moving the bytes and doing the FLOPs."""
    peak = (gpu.int8_tops if int8 else gpu.fp16_tflops) * 1e12
    return max(nbytes / (gpu.bandwidth_gbs * 1e9), flops / peak)
