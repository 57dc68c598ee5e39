"""Running :class:`qcourse.layers.QuantLinear` layers through the kernels.

``QuantLinear`` stores the GPTQ checkpoint layout: ``qweight [K/8, N]``, ``scales [K/g, N]`` and
zero points packed along N in ``qzeros [K/g, N/8]``. The kernels read the same words transposed,
``qweight [N, K/8]``, and the zero points unpacked (:func:`qcourse.kernels.layout.from_checkpoint`):
converted once per layer and cached, as a deployment repacks a checkpoint once at load time
(the cache holds a second copy of the codes: a server would drop the checkpoint's).

Backends: ``"triton"`` (:func:`w4a16_matmul`), ``"cuda"`` (the CUDA C GEMV), ``"reference"``
(PyTorch), ``"auto"`` = Triton for CUDA tensors, the reference otherwise.
"""
from __future__ import annotations

import functools
import weakref

import torch
from torch import nn

from .layout import from_checkpoint
from .reference import w4a16_reference

BACKENDS = ("auto", "triton", "cuda", "reference")
_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_quantlinear(module: nn.Module) -> bool:
    from qcourse.layers import QuantLinear
    return isinstance(module, QuantLinear)


def kernel_support(module: nn.Module) -> str | None:
    """None if the kernels can run ``module``, else the reason they cannot."""
    if not _is_quantlinear(module):
        return f"expected a QuantLinear, got {type(module).__name__}"
    if module.bits != 4:
        return f"the kernels read 4-bit weights, this layer has {module.bits}-bit"
    g = module.group_size
    if g % 8:
        return f"group size {g} is not a multiple of 8"
    in_order = torch.arange(module.in_features, device=module.g_idx.device) // g
    if not torch.equal(module.g_idx.long(), in_order):
        return "g_idx is not k // group_size (act-order): the kernels assume contiguous groups"
    return None


def kernel_inputs(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(qweight, scales, zeros, group_size)`` in the kernels' layout, converted once and cached
    (again if the layer's buffers change)."""
    reason = kernel_support(module)
    if reason:
        raise ValueError(f"this layer cannot use the W4A16 kernels: {reason}")
    key = tuple((t.data_ptr(), t._version, t.device)
                for t in (module.qweight, module.qzeros, module.scales))
    cached = _converted.get(module)
    if cached is None or cached[0] != key:
        cached = _converted[module] = (key, from_checkpoint(module.qweight, module.qzeros,
                                                            module.scales))
    return (*cached[1], module.group_size)


def quantlinear_forward(module: nn.Module, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``module(x)`` computed by a kernel: ``y = x · W'ᵀ + bias``, in x's dtype."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    qweight, scales, zeros, group_size = kernel_inputs(module)
    if backend == "auto":
        backend = "triton" if x.device.type == "cuda" else "reference"
    if backend == "triton":
        from .triton_w4a16 import w4a16_matmul
        y = w4a16_matmul(x, qweight, scales, zeros, group_size)
    elif backend == "cuda":
        from .cuda import w4a16_gemv
        y = w4a16_gemv(x, qweight, scales, zeros, group_size)
    else:
        y = w4a16_reference(x, qweight, scales, zeros, group_size)
    return y if module.bias is None else y + module.bias.to(y.dtype)


def use_kernels(model: nn.Module, backend: str | None = "auto") -> list[str]:
    """Route every 4-bit ``QuantLinear`` of ``model`` through :func:`quantlinear_forward`
    (``backend=None`` restores their own forward). Returns the names of the routed layers;
    layers the kernels cannot run (other bit widths, act-order) keep their own forward."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    routed = []
    for name, module in model.named_modules():
        if not _is_quantlinear(module):
            continue
        module.__dict__.pop("forward", None)                           # back to the class forward
        if backend is not None and kernel_support(module) is None:
            module.forward = functools.partial(quantlinear_forward, module, backend=backend)
            routed.append(name)
    return routed
