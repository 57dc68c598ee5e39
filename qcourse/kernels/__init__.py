"""Quantized matmul kernels: Triton W4A16 and W8A8, a CUDA C W4A16 GEMV, PyTorch references.

    device()                                                where they run: the GPU, or Triton's
                                                            CPU interpreter (decided once, here)
    w4a16_matmul(x, qweight, scales, zeros, group_size)   Triton, y = x · W'ᵀ, W' from 4-bit codes
    w8a8_matmul(x_int8, w_int8, x_scale, w_scale)          Triton, int8 GEMM, scales in the epilogue
    cuda.w4a16_gemv(...)                                    CUDA C, same inputs as w4a16_matmul
    prepare_w4a16(W, group_size)                            float weight -> (qweight, scales, zeros)
    w4a16_reference / w8a8_reference                        pure PyTorch, the CPU path
    quantlinear_forward(module, x) / use_kernels(model)    run QuantLinear layers through them
    traffic.measure(fn, *args)                              bytes a Triton launch asks memory for

Triton is imported only when a Triton kernel is first used (``qcourse.kernels.w4a16_matmul``
is resolved lazily), so :func:`device` can still set ``TRITON_INTERPRET=1`` after
``import qcourse``.
"""
from __future__ import annotations

import importlib

from .backend import Backend, device
from .checks import check_w4a16, check_w8a8
from .layout import dequantize_w4a16, prepare_w4a16
from .quantlinear import quantlinear_forward, use_kernels
from .reference import w4a16_reference, w8a8_reference

_LAZY = {"w4a16_matmul": "triton_w4a16", "w8a8_matmul": "triton_w8a8", "cuda": "cuda",
         "triton_w4a16": "triton_w4a16", "triton_w4a16_v1": "triton_w4a16_v1",
         "triton_w8a8": "triton_w8a8", "traffic": "traffic"}

__all__ = ["device", "Backend", "traffic", "w4a16_matmul", "w8a8_matmul", "prepare_w4a16", "dequantize_w4a16",
           "w4a16_reference", "w8a8_reference", "quantlinear_forward", "use_kernels",
           "check_w4a16", "check_w8a8", "cuda", "load_cuda"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'qcourse.kernels' has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return module if name == _LAZY[name] else getattr(module, name)


def load_cuda(verbose: bool = False):
    """Compile (at first use, needs a GPU) and return the CUDA extension module."""
    from .cuda import load
    return load(verbose)
