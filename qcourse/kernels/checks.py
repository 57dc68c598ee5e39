"""Input checks shared by every matmul backend (Triton, CUDA, PyTorch reference).

A kernel that reads past a buffer or mixes dtypes does not raise: it returns garbage or crashes
the process. So every public entry point checks shapes, dtypes and devices *before* launching,
and says what was wrong and what is accepted.
"""
from __future__ import annotations

import torch

ACTIVATION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PACK = 8  # 4-bit values per int32 word


def check_group_size(group_size: int, multiple: int = PACK, why: str = "") -> None:
    """``group_size`` must be a positive multiple of ``multiple`` (8: a packed word never
    straddles two groups; kernels may ask for more, saying ``why``)."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0 \
            or group_size % multiple:
        raise ValueError(f"group_size must be a positive multiple of {multiple}{why}, "
                         f"got {group_size!r}")


def _check_tensor(t: object, what: str, ndim: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{what} must be {ndim}-D, got shape {tuple(t.shape)}")


def _check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"all tensors must be on the same device, got {listing}")


def check_w4a16(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                zeros: torch.Tensor, group_size: int) -> tuple[int, int]:
    """Validate the inputs of a W4A16 matmul; return ``(K, N)``.

    Accepted: ``x [..., K]`` float16/bfloat16/float32; ``qweight [N, K/8]`` int32 (the layout of
    :mod:`qcourse.kernels.layout`);
    ``scales``, ``zeros [K/g, N]`` float16 or x's dtype (both the same); ``g`` a positive
    multiple of 8 dividing K; all on one device.
    """
    for t, what in ((x, "x"), (qweight, "qweight"), (scales, "scales"), (zeros, "zeros")):
        _check_tensor(t, what, None if what == "x" else 2)
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"x must be float16, bfloat16 or float32, got {x.dtype}")
    if qweight.dtype != torch.int32:
        raise TypeError(f"qweight must be int32 (8 four-bit values per word), got {qweight.dtype}")
    if scales.dtype != zeros.dtype or scales.dtype not in (torch.float16, x.dtype):
        raise TypeError(f"scales and zeros must share one dtype, float16 or x's dtype ({x.dtype}); "
                        f"got scales {scales.dtype}, zeros {zeros.dtype}")
    check_group_size(group_size)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension [..., K]")
    k = x.shape[-1]
    if k % PACK:
        raise ValueError(f"K = {k} (last dim of x) must be a multiple of {PACK} for 4-bit packing")
    if k % group_size:
        raise ValueError(f"K = {k} (last dim of x) is not a multiple of group_size {group_size}")
    n = qweight.shape[0]
    if qweight.shape[1] * PACK != k:
        raise ValueError(f"qweight has {qweight.shape[1]} packed columns, which hold "
                         f"{qweight.shape[1] * PACK} inputs, but x has K = {k}: expected qweight "
                         f"[N, {k // PACK}]")
    for t, what in ((scales, "scales"), (zeros, "zeros")):
        if tuple(t.shape) != (k // group_size, n):
            raise ValueError(f"{what} must be [K/g, N] = [{k // group_size}, {n}] for K = {k}, "
                             f"group_size {group_size}, N = {n}; got {tuple(t.shape)}")
    _check_same_device(x=x, qweight=qweight, scales=scales, zeros=zeros)
    return k, n


def check_w8a8(x_int8: torch.Tensor, w_int8: torch.Tensor, x_scale: torch.Tensor,
               w_scale: torch.Tensor) -> tuple[int, int, int]:
    """Validate the inputs of a W8A8 matmul; return ``(M, N, K)``.

    Accepted: ``x_int8 [M, K]`` and ``w_int8 [N, K]`` int8; ``x_scale`` ``[M]`` or ``[M, 1]``
    (per token) and ``w_scale`` ``[N]`` or ``[N, 1]`` (per output channel), float32 (a 0-d scale
    means per-tensor); all on one device.
    """
    for t, what in ((x_int8, "x_int8"), (w_int8, "w_int8")):
        _check_tensor(t, what, 2)
        if t.dtype != torch.int8:
            raise TypeError(f"{what} must be int8, got {t.dtype}")
    (m, k), (n, k_w) = x_int8.shape, w_int8.shape
    if k != k_w:
        raise ValueError(f"x_int8 [M, K] = {tuple(x_int8.shape)} and w_int8 [N, K] = "
                         f"{tuple(w_int8.shape)} disagree on K")
    for t, what, rows in ((x_scale, "x_scale", m), (w_scale, "w_scale", n)):
        _check_tensor(t, what)
        if t.dtype != torch.float32:
            raise TypeError(f"{what} must be float32, got {t.dtype}")
        if t.numel() not in (1, rows) or (t.dim() == 2 and t.shape[1] != 1) or t.dim() > 2:
            raise ValueError(f"{what} must hold one scale per row ([{rows}] or [{rows}, 1]) or "
                             f"one for all, got shape {tuple(t.shape)}")
    _check_same_device(x_int8=x_int8, w_int8=w_int8, x_scale=x_scale, w_scale=w_scale)
    return m, n, k
