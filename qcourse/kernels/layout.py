"""The packed W4A16 layout the kernels read (the GPTQ/AWQ checkpoint layout).

A weight ``W [N, K]`` (N outputs, K inputs) becomes three tensors:

    qweight int32 [K/8, N]   word qweight[i, n] holds q[n, 8i + j] in bits [4j, 4j + 4), j = 0..7
    scales        [K/g, N]   one scale per group of g inputs and output n
    zeros         [K/g, N]   one integer zero point per group (unpacked, same dtype as scales)

    W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]

Packing along K puts the 8 codes a thread needs for one dot-product step in one 32-bit load,
and laying N last makes neighbouring threads (neighbouring outputs n) read neighbouring words:
coalesced loads.
"""
from __future__ import annotations

import torch

from qcourse.pack import pack_int32, unpack_int32
from qcourse.quant import quantize

from .checks import PACK

BITS = 4


def prepare_w4a16(weight: torch.Tensor, group_size: int, dtype: torch.dtype = torch.float16,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``weight [N, K]`` to asymmetric 4-bit per group of ``group_size`` inputs and pack
    it for :func:`qcourse.kernels.w4a16_matmul`: returns ``(qweight, scales, zeros)``.

    ``q, scale, zero = quantize(W, 4, symmetric=False, granularity="group")``, then
    ``qweight = pack_int32(q.T, 4, dim=0)``, ``scales = scale.T``, ``zeros = zero.T`` in ``dtype``
    (float16 by default, as in GPTQ checkpoints). Everything stays on ``weight``'s device.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor [N, K], got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0 \
            or group_size % PACK:
        raise ValueError(f"group_size must be a positive multiple of {PACK}, got {group_size!r}")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"dtype of scales/zeros must be float16, bfloat16 or float32, got {dtype}")
    q, scale, zero = quantize(weight, BITS, symmetric=False, granularity="group",
                              group_size=group_size)
    qweight = pack_int32(q.t(), BITS, dim=0)
    return qweight, scale.t().contiguous().to(dtype), zero.t().contiguous().to(dtype)


def dequantize_w4a16(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                     group_size: int) -> torch.Tensor:
    """The float32 weight ``W' [N, K]`` the packed tensors stand for:
    ``W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]``."""
    q = unpack_int32(qweight, BITS, dim=0)                                # [K, N]
    zero = zeros.float().repeat_interleave(group_size, dim=0)             # [K, N]
    scale = scales.float().repeat_interleave(group_size, dim=0)
    return ((q.float() - zero) * scale).t()
