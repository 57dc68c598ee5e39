"""The bytes the W4A16 kernels ask memory for, old and new, against the ideal.

The ideal for ``y[M, N] = x[M, K] · W'[N, K]ᵀ`` with 4-bit codes and groups of g inputs:

    qweight  once:  N·K/2 bytes                 scales, zeros  once per group: 2·(K/g)·N each
    x        once per program that needs it:    M·K·2 bytes × (number of blocks of N outputs)
    y        once:                              M·N·2 bytes

The first three are the weight's bytes: a memory-bound kernel's time is set by them, and the
redesign's target is to ask for them within 1.15× of their size. x and y depend on the tiling
(every block of outputs reads x again, from the L2 cache; split-K adds float32 partial sums
into y with atomics, counted as a read and a write): they are reported, not targeted.

Counts are made with the launch a GPU with ``sms`` streaming multiprocessors would get (132:
an H100 SXM), in Triton's interpreter (:mod:`qcourse.kernels.traffic`).
"""
from __future__ import annotations

import dataclasses
from unittest import mock

import torch

from . import traffic
from .layout import to_checkpoint

KERNELS = ("old", "new")   # qcourse.kernels.triton_w4a16_v1, qcourse.kernels.triton_w4a16
H100_SMS = 132
N_AXIS = {"w4a16_gemv_kernel": 0, "w4a16_gemm_kernel": 1}  # grid axis of the blocks of outputs
WEIGHT_PARTS = ("qweight", "scales", "zeros")


@dataclasses.dataclass
class Requested:
    """Requested and ideal bytes per tensor (``parts[name] = (requested, ideal)``) of one call."""
    kernel: str
    m: int
    n: int
    k: int
    group_size: int
    parts: dict[str, tuple[int, int]]
    launches: list[str]
    sampled: bool

    @property
    def weight_ratio(self) -> float:
        """Requested / ideal bytes of qweight, scales and zeros together (target: <= 1.15)."""
        requested = sum(self.parts[p][0] for p in WEIGHT_PARTS)
        return requested / sum(self.parts[p][1] for p in WEIGHT_PARTS)


def random_operands(m: int, n: int, k: int, group_size: int, seed: int = 0,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random packed codes, scales, zero points and fp16 x of this shape (the counts do not
    depend on the values, and drawing codes is much faster than quantizing a big weight)."""
    gen = torch.Generator().manual_seed(seed)
    qweight = torch.randint(-2**31, 2**31, (n, k // 8), generator=gen, dtype=torch.int64)
    scales = (torch.rand(k // group_size, n, generator=gen) / 16).to(torch.float16)
    zeros = torch.randint(0, 16, (k // group_size, n), generator=gen).to(torch.float16)
    x = torch.randn(m, k, generator=gen).to(torch.float16)
    return qweight.to(torch.int32), scales, zeros, x


def requested_bytes(kernel: str, m: int, n: int, k: int, group_size: int, *,
                    sms: int = H100_SMS, sample: bool = True, seed: int = 0) -> Requested:
    """Count one call of the ``kernel`` ("old" or "new") on fp16 operands of this shape.
    ``sample``: :func:`~qcourse.kernels.traffic.estimate` (exact for these tilings, fast enough
    for Llama-sized layers), else :func:`~qcourse.kernels.traffic.measure` (every program)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    qweight, scales, zeros, x = random_operands(m, n, k, group_size, seed)
    count = traffic.estimate if sample else traffic.measure
    if kernel == "new":
        from . import triton_w4a16 as new
        config = new.default_config(m, n, k, group_size, sms)
        counted = count(new.w4a16_matmul, x, qweight, scales, zeros, group_size, config=config)
    else:
        from . import triton_w4a16_v1 as old
        qweight = to_checkpoint(qweight, scales, zeros)[0]           # it reads [K/8, N]
        with mock.patch.object(old, "_programs_wanted", lambda device: 4 * sms):  # as on the GPU
            counted = count(old.w4a16_matmul, x, qweight, scales, zeros, group_size)
    n_blocks = sum(launch.grid[N_AXIS[launch.kernel]] for launch in counted.launches)
    parts = {name: (counted.loaded_from(t), t.numel() * t.element_size())
             for name, t in (("qweight", qweight), ("scales", scales), ("zeros", zeros))}
    parts["x"] = (counted.loaded_from(x), x.numel() * x.element_size() * n_blocks)
    inputs = sum(requested for requested, _ in parts.values())
    parts["y"] = (counted.loaded + counted.stored - inputs, m * n * x.element_size())
    launches = [f"{launch.kernel} grid {launch.grid}: {launch.programs_run} of "
                f"{launch.programs} programs run" for launch in counted.launches]
    return Requested(kernel, m, n, k, group_size, parts, launches, sample)
