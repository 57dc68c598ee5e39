"""torchao 0.18's MX and NVFP4 tensors (and its scaled FP8 tensor) on the CPU: the production
implementation :mod:`qcourse.mx` is checked against, code for code.

Each function quantizes with torchao's defaults and returns what :mod:`qcourse.mx` returns, as
plain tensors, so the two compare with ``torch.equal``:

* :func:`mx_codes`: ``MXTensor.to_mx(x, elem_dtype, 32)`` (``ScaleCalculationMode.FLOOR``);
* :func:`nvfp4_codes`: ``NVFP4Tensor.to_nvfp4(x)`` with the two-level scale
  (``per_tensor_scale = per_tensor_amax_to_scale(absmax)``) or torchao's single-level default;
* :func:`fp8_codes`: ``Float8Tensor.from_hp(x, granularity=PerTensor()/PerRow()/PerBlock)``.

Importing torchao on a CPU-only machine prints that its CUDA extensions could not be loaded;
harmless here.
"""
from __future__ import annotations

import torch

ELEMENT_DTYPES = {  # qcourse.mx format -> torchao elem_dtype
    "mxfp8_e4m3": "float8_e4m3fn", "mxfp8_e5m2": "float8_e5m2", "mxfp6_e3m2": "fp6_e3m2",
    "mxfp6_e2m3": "fp6_e2m3", "mxfp4": "float4_e2m1fn_x2",
}


def require_torchao():
    """Import torchao's MX formats, or say how to install it."""
    try:
        from torchao.prototype import mx_formats
    except ImportError as err:
        raise ImportError("torchao is not installed: pip install torchao==0.18.0") from err
    return mx_formats


def mx_tensor(x: torch.Tensor, fmt: str):
    """torchao's ``MXTensor`` of ``x`` (float32 or bfloat16, contiguous) in MX format ``fmt``."""
    require_torchao()
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    if fmt not in ELEMENT_DTYPES:
        raise ValueError(f"torchao MX formats here: {tuple(ELEMENT_DTYPES)}, got {fmt!r}")
    name = ELEMENT_DTYPES[fmt]
    elem_dtype = getattr(torch, name) if name.startswith("float") else name
    return MXTensor.to_mx(x.contiguous(), elem_dtype, 32)


def mx_codes(x: torch.Tensor, fmt: str) -> dict[str, torch.Tensor]:
    """torchao's MX quantization of ``x``: ``packed`` (its ``qdata`` bytes: FP8 one per byte,
    FP6 one code per byte, FP4 two per byte), ``scales`` (E8M0 codes, uint8) and ``dequantized``
    (its ``.dequantize(torch.float32)``)."""
    t = mx_tensor(x, fmt)
    return {"packed": t.qdata.view(torch.uint8), "scales": t.scale.view(torch.uint8),
            "dequantized": t.dequantize(torch.float32)}


def nvfp4_codes(x: torch.Tensor, tensor_scale: bool = True) -> dict[str, torch.Tensor]:
    """torchao's NVFP4 quantization of a 2-D ``x``: ``packed`` (two E2M1 codes per byte),
    ``scales`` (E4M3 codes, uint8), ``tensor_scale`` (float32 or None) and ``dequantized``.
    ``tensor_scale=False``: torchao's default single-level scaling (no per-tensor scale)."""
    require_torchao()
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    per_tensor = per_tensor_amax_to_scale(x.abs().amax()) if tensor_scale else None
    t = NVFP4Tensor.to_nvfp4(x.contiguous(), per_tensor_scale=per_tensor)
    return {"packed": t.qdata.view(torch.uint8), "scales": t.scale.view(torch.uint8),
            "tensor_scale": t.per_tensor_scale, "dequantized": t.dequantize(torch.float32)}


def fp8_codes(x: torch.Tensor, fmt: str = "fp8_e4m3", granularity: str = "tensor",
              block_shape: tuple[int, int] = (128, 128)) -> dict[str, torch.Tensor]:
    """torchao's ``Float8Tensor.from_hp`` of a 2-D ``x``: ``codes`` (uint8), ``scale`` (float32,
    ``[1, 1]``, ``[N, 1]`` or ``[N/bn, K/bk]``) and ``dequantized``."""
    require_torchao()
    from torchao.quantization import Float8Tensor, PerRow, PerTensor
    from torchao.quantization.granularity import PerBlock

    dtypes = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
    granularities = {"tensor": PerTensor(), "channel": PerRow(), "block": PerBlock(list(block_shape))}
    t = Float8Tensor.from_hp(x, float8_dtype=dtypes[fmt], granularity=granularities[granularity])
    return {"codes": t.qdata.view(torch.uint8), "scale": t.scale,
            "dequantized": t.dequantize(torch.float32)}
