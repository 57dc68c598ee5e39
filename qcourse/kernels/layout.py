"""The packed W4A16 layout the kernels read, and the GPTQ checkpoint layout it converts from.

A weight ``W [N, K]`` (N outputs, K inputs) becomes three tensors:

    qweight int32 [N, K/8]   word qweight[n, i] holds q[n, 8i + j] in bits [4j, 4j + 4), j = 0..7
    scales        [K/g, N]   one scale per group of g inputs and output n
    zeros         [K/g, N]   one integer zero point per group (unpacked, same dtype as scales)

    W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]

Row n of ``qweight`` is output n's codes in the order of its dot product, 8 per word:

    qweight [N, K/8]          k = 0 ..7   8..15  16..23       (one row = one output's K inputs)
    n = 0   | w00 | w01 | w02 | ... |     <- one 128-bit load: 4 words = 32 consecutive inputs,
    n = 1   | w10 | w11 | w12 | ... |        all in one group when g is a multiple of 32
    word bits: [q7 q6 q5 q4 q3 q2 q1 q0], q_j in bits 4j..4j+3

This is W's own orientation (as ``F.linear`` stores it), packed along K. It suits the kernels:
a program (or a CUDA warp) owning some outputs reads each row as one contiguous run of words,
each 128-bit load brings 32 inputs of one output that share one scale and one zero, and the sum
over k runs along the row: inside a thread, then across the threads of a warp.

GPTQ checkpoints (and :class:`qcourse.layers.QuantLinear`) store the *same words* transposed,
``qweight [K/8, N]`` (packed along K), with the zero points packed along N (``qzeros [K/g, N/8]``):
:func:`from_checkpoint` and :func:`to_checkpoint` convert, exactly, in both directions.
AutoAWQ's GEMM checkpoints (``WQLinear_GEMM``) pack along **N** instead, in an interleaved order:

    qweight int32 [K, N/8]    word [k, c] holds q[8c + AWQ_ORDER[i], k] in bits [4i, 4i + 4)
    qzeros  int32 [K/g, N/8]  the zero points, in the same order;  AWQ_ORDER = 0 2 4 6 1 3 5 7

:func:`to_awq_gemm` and :func:`from_awq_gemm` convert (``tests/test_awq_autoawq.py`` reads
AutoAWQ's own bytes back through them).
"""
from __future__ import annotations

import torch

from qcourse.pack import pack_int32, unpack_int32
from qcourse.quant import dequantize, quantize

from .checks import check_group_size

BITS = 4
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)   # AutoAWQ GEMM: nibble i of a word holds output 8c + AWQ_ORDER[i]


def prepare_w4a16(weight: torch.Tensor, group_size: int, dtype: torch.dtype = torch.float16,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``weight [N, K]`` to asymmetric 4-bit per group of ``group_size`` inputs and pack
    it for :func:`qcourse.kernels.w4a16_matmul`: returns ``(qweight, scales, zeros)``.

    ``q, scale, zero = quantize(W, 4, symmetric=False, granularity="group")``, then
    ``qweight = pack_int32(q, 4, dim=1)`` (``[N, K/8]``), ``scales = scale.T``, ``zeros = zero.T``
    in ``dtype`` (float16 by default, as in GPTQ checkpoints). Everything stays on ``weight``'s
    device.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor [N, K], got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    check_group_size(group_size)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"dtype of scales/zeros must be float16, bfloat16 or float32, got {dtype}")
    q, scale, zero = quantize(weight, BITS, symmetric=False, granularity="group",
                              group_size=group_size)
    qweight = pack_int32(q, BITS, dim=1)                                   # [N, K/8]
    return qweight, scale.t().contiguous().to(dtype), zero.t().contiguous().to(dtype)


def dequantize_w4a16(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                     group_size: int) -> torch.Tensor:
    """The float32 weight ``W' [N, K]`` the packed tensors stand for:
    ``W'[n, k] = (q[n, k] - zeros[k // g, n]) · scales[k // g, n]`` (:func:`qcourse.quant.dequantize`)."""
    q = unpack_int32(qweight, BITS, dim=1)                                 # [N, K]
    return dequantize(q, scales.t(), zeros.t(), group_size=group_size)


def from_checkpoint(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ checkpoint tensors (true zero points, as :class:`~qcourse.layers.QuantLinear` holds
    them) -> the kernels' ``(qweight [N, K/8], scales [K/g, N], zeros [K/g, N])``.

    The words are the same, transposed; the zero points are unpacked into ``scales``' dtype."""
    zeros = unpack_int32(qzeros, BITS, dim=1).to(device=scales.device, dtype=scales.dtype)
    return qweight.t().contiguous(), scales, zeros


def _integer_zeros(zeros: torch.Tensor) -> torch.Tensor:
    """The zero points as integers, checked to be whole numbers in [0, 15] (packable)."""
    zero_int = zeros.float().round()
    if not torch.equal(zero_int, zeros.float()) or zero_int.min() < 0 or zero_int.max() > 15:
        raise ValueError("zeros must hold integers in [0, 15] to be packed into qzeros")
    return zero_int.long()


def to_checkpoint(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`from_checkpoint`: ``(qweight [K/8, N], qzeros [K/g, N/8], scales)``.
    The zero points must be integers in [0, 15]."""
    return qweight.t().contiguous(), pack_int32(_integer_zeros(zeros), BITS, dim=1), scales


def _awq_order(n: int, device: torch.device, inverse: bool = False) -> torch.Tensor:
    """Column permutation of N values: ``8c + AWQ_ORDER[i]`` at position ``8c + i`` (or back)."""
    if n % 8:
        raise ValueError(f"AutoAWQ's GEMM layout packs the N = {n} outputs by 8: N must be a "
                         f"multiple of 8")
    order = torch.tensor(AWQ_ORDER, device=device)
    order = torch.argsort(order) if inverse else order
    return (torch.arange(0, n, 8, device=device)[:, None] + order[None, :]).reshape(-1)


def to_awq_gemm(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernels' layout -> AutoAWQ's GEMM checkpoint ``(qweight [K, N/8], qzeros [K/g, N/8],
    scales [K/g, N])``: packed along N, nibble i of word c holding output ``8c + AWQ_ORDER[i]``
    (0 2 4 6 1 3 5 7). The zero points must be integers in [0, 15]."""
    q = unpack_int32(qweight, BITS, dim=1).t()                               # [K, N]
    order = _awq_order(q.shape[1], q.device)
    return (pack_int32(q[:, order].long(), BITS, dim=1),
            pack_int32(_integer_zeros(zeros)[:, order], BITS, dim=1), scales)


def from_awq_gemm(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AutoAWQ's GEMM checkpoint -> the kernels' ``(qweight [N, K/8], scales [K/g, N],
    zeros [K/g, N])`` (inverse of :func:`to_awq_gemm`)."""
    q = unpack_int32(qweight, BITS, dim=1)                                   # [K, N], nibble order
    back = _awq_order(q.shape[1], q.device, inverse=True)
    zeros = unpack_int32(qzeros, BITS, dim=1)[:, back]
    return (pack_int32(q[:, back].t().long(), BITS, dim=1),
            scales, zeros.to(device=scales.device, dtype=scales.dtype))
