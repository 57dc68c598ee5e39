"""The floating-point formats production runs on: FP8, MX (OCP Microscaling v1.0) and NVFP4,
written from scratch and bit-exact with torch's casts and torchao's ``MXTensor``/``NVFP4Tensor``.

    minifloat     the element formats E4M3, E5M2, E3M2, E2M3, E2M1 and the E8M0 scale: encode
                  (round to nearest even, saturation, NaN/inf per format) and decode
    catalog       the formats by name and their bits per weight
    scaled_fp8    FP8 with a float32 scale per tensor, channel or 128×128 block
    microscaling  MXFP8/MXFP6/MXFP4 (E8M0 scale per 32) and NVFP4 (E4M3 scale per 16, float32
                  tensor scale); bit packing

``quantize(x, fmt)`` returns the codes and scales, ``dequantize`` reads them back,
``fake_quantize(x, fmt)`` does both (same shape).
"""
from .catalog import FORMATS, BlockFormat, get_format
from .microscaling import (Quantized, dequantize, fake_quantize, nvfp4_tensor_scale, pack,
                           pack_codes, quantize, quantize_mx, quantize_nvfp4, shared_exponent,
                           unpack, unpack_codes)
from .minifloat import E2M1, E2M3, E3M2, E4M3, E5M2, ELEMENTS, Minifloat, decode, e8m0_values, encode
from .scaled_fp8 import ScaledFP8, dequantize_fp8, fake_quantize_fp8, quantize_fp8

__all__ = ["FORMATS", "BlockFormat", "get_format", "Quantized", "quantize", "dequantize",
           "fake_quantize", "quantize_mx", "quantize_nvfp4", "nvfp4_tensor_scale",
           "shared_exponent", "pack", "unpack", "pack_codes", "unpack_codes", "Minifloat",
           "ELEMENTS", "E4M3", "E5M2", "E3M2", "E2M3", "E2M1", "encode", "decode", "e8m0_values",
           "ScaledFP8", "quantize_fp8", "dequantize_fp8", "fake_quantize_fp8"]
