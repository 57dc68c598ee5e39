"""Microscaling: MXFP8/MXFP6/MXFP4 (OCP MX v1.0) and NVFP4, block by block, with bit packing.

The last dimension is cut into blocks of ``k`` consecutive values; each block shares one scale,
and each value is stored as a minifloat element (:mod:`qcourse.mx.minifloat`).

**MX** (k = 32): the shared scale is a power of two, stored as an E8M0 code (8 exponent bits,
bias 127). OCP MX v1.0 (section 6.3) picks the exponent that maps the block's absmax into the
element's top binade, so the largest element keeps its leading bit::

    X      = 2^(floor(log2 absmax) - emax_elem)      (E8M0 code: that exponent + 127)
    codes  = element(x / X)                          (round to nearest even, saturating)
    x'     = element⁻¹(codes) · X

``emax_elem`` is the exponent of the element's largest binade (8 for E4M3, 15 for E5M2, 4 for E3M2,
2 for E2M3 and E2M1). Flooring the exponent means a block's absmax can exceed the element's max
value (up to ~2×, e.g. 7.9 for FP4 whose max is 6): it then saturates. This is torchao's default
``ScaleCalculationMode.FLOOR``; like torchao, the division uses ``max(X, 2^-126)`` (E8M0's
2^-127 is a float32 subnormal).

**NVFP4** (k = 16): E2M1 elements; the block scale is an E4M3 number (finer than a power of
two), and one float32 scale for the whole tensor lifts the block scales into E4M3's range::

    t      = absmax(tensor) / (448 · 6)                            (float32, per tensor)
    s      = e4m3(clamp(absmax(block) / 6 / t, 2^-6, 448))          (per block of 16)
    codes  = e2m1(clamp(x · ((1 / t) / s), -6, 6))
    x'     = e2m1⁻¹(codes) · (t · s)

the same float32 operations in the same order as torchao's ``NVFP4Tensor.to_nvfp4`` (which
multiplies by a reciprocal, as NVIDIA's kernels do); ``tensor_scale=False`` drops ``t``.

Storage (:func:`pack`): FP8 codes one per byte, FP4 two per byte (first value in the low nibble,
as torchao and :func:`qcourse.pack.pack_bytes`), FP6 as two bit planes: the low 4 bits two per
byte and the high 2 bits four per byte (6 bits per value, as llama.cpp's Q6_K splits ql/qh).
"""
from __future__ import annotations

import dataclasses

import torch

from qcourse.pack import pack_bytes, unpack_bytes
from qcourse.quant import check_finite, check_float

from .catalog import BlockFormat, get_format
from .minifloat import E2M1, E4M3, Minifloat, decode, e8m0_values, encode, fake_round

MIN_NORMAL_F32 = 2.0**-126
E4M3_MIN_NORMAL = 2.0**-6


@dataclasses.dataclass(frozen=True)
class Quantized:
    """A tensor in format ``fmt``: element ``codes`` (uint8, unpacked, x's shape), the block
    scales' ``scales`` (uint8 codes ``[..., K / block]``: E8M0 for MX, E4M3 for NVFP4; None for
    a plain FP8 cast) and the ``tensor_scale`` (float32, NVFP4 only)."""

    fmt: str
    codes: torch.Tensor
    scales: torch.Tensor | None = None
    tensor_scale: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the packed storage (:func:`pack`)."""
        return sum(t.numel() * t.element_size() for t in pack(self).values())


def _blocks(x: torch.Tensor, fmt: BlockFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [..., K]`` as float32 blocks ``[..., K / k, k]`` and each block's absmax ``[..., K /
    k]``, or a clear error (a NaN or inf anywhere in a block makes its absmax NaN or inf)."""
    check_float(x)
    k = fmt.block_size
    if x.dim() == 0 or x.shape[-1] % k:
        raise ValueError(f"{fmt.name} needs the last dimension to be a multiple of its block size "
                         f"{k}, got shape {tuple(x.shape)}")
    blocks = x.float().reshape(*x.shape[:-1], x.shape[-1] // k, k)
    absmax = blocks.abs().amax(-1)
    check_finite(absmax, "x")
    return blocks, absmax


def shared_exponent(absmax: torch.Tensor, element: Minifloat) -> torch.Tensor:
    """E8M0 codes of the MX block scales: ``clamp(floor(log2 absmax) - emax, -127, 127) + 127``
    (an all-zero block gets code 0, i.e. 2^-127)."""
    _, exponent = torch.frexp(absmax)                       # absmax = f · 2^exponent, f in [0.5, 1)
    floor_log2 = torch.where(absmax > 0, exponent - 1, -127)
    return ((floor_log2 - element.emax).clamp(-127, 127) + 127).to(torch.uint8)


def _mx_scaled(x: torch.Tensor, fmt: BlockFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / X per block [..., K/32, 32], E8M0 codes [..., K/32])``: the values the elements
    round, and the block scales (module docstring)."""
    blocks, absmax = _blocks(x, fmt)                         # [..., K/32, 32], [..., K/32]
    scales = shared_exponent(absmax, fmt.element)
    divisor = e8m0_values()[scales.long()].clamp(min=MIN_NORMAL_F32)
    return blocks / divisor[..., None], scales


def quantize_mx(x: torch.Tensor, fmt: BlockFormat) -> Quantized:
    """MX quantization of ``x [..., K]`` (K a multiple of 32): E8M0 block scales, saturating
    elements (module docstring)."""
    scaled, scales = _mx_scaled(x, fmt)
    codes = encode(scaled, fmt.element, saturate=True)
    return Quantized(fmt.name, codes.reshape(x.shape), scales)


def nvfp4_tensor_scale(x: torch.Tensor) -> torch.Tensor:
    """NVFP4's float32 tensor scale ``absmax / (448 · 6)`` (1 for an all-zero tensor), so that
    the largest block scale lands on E4M3's largest value."""
    return _tensor_scale(x.float().abs().amax())


def _tensor_scale(absmax: torch.Tensor) -> torch.Tensor:
    t = absmax / (E4M3.max * E2M1.max)
    return torch.where(t > 0, t, 1.0)


def _nvfp4_scaled(x: torch.Tensor, tensor_scale: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x / (t · s) per block [..., K/16, 16] clamped to ±6, the block scales s before their
    E4M3 rounding [..., K/16], t or None)`` (module docstring)."""
    blocks, absmax = _blocks(x, get_format("nvfp4"))         # [..., K/16, 16], [..., K/16]
    block_scale = absmax / E2M1.max
    t = _tensor_scale(absmax.amax()) if tensor_scale else None
    if t is not None:
        block_scale = block_scale / t
    block_scale = block_scale.clamp(E4M3_MIN_NORMAL, E4M3.max)
    reciprocal = (1.0 / t if t is not None else 1.0) / fake_round(block_scale, E4M3)
    return (blocks * reciprocal[..., None]).clamp(-E2M1.max, E2M1.max), block_scale, t


def quantize_nvfp4(x: torch.Tensor, *, tensor_scale: bool = True) -> Quantized:
    """NVFP4 quantization of ``x [..., K]`` (K a multiple of 16): E4M3 block scales and, unless
    ``tensor_scale=False``, a float32 tensor scale (module docstring)."""
    scaled, block_scale, t = _nvfp4_scaled(x, tensor_scale)
    return Quantized("nvfp4", encode(scaled, E2M1).reshape(x.shape), encode(block_scale, E4M3), t)


def quantize(x: torch.Tensor, fmt: str) -> Quantized:
    """``x`` in format ``fmt`` (one of :data:`qcourse.mx.FORMATS`): codes and scales.

    "fp8_e4m3"/"fp8_e5m2" are the plain element cast (no scale; NaN and inf as the format
    defines them, bit-exact with torch's casts). The block formats need finite ``x`` whose last
    dimension is a multiple of the block size (32; 16 for NVFP4).
    """
    spec = get_format(fmt)
    check_float(x)
    if spec.block_size is None:
        return Quantized(fmt, encode(x, spec.element))
    if spec.scale == "e8m0":
        return quantize_mx(x, spec)
    return quantize_nvfp4(x)


def dequantize(q: Quantized) -> torch.Tensor:
    """Back to float32: ``element⁻¹(codes) · block scale`` (· tensor scale for NVFP4)."""
    spec = get_format(q.fmt)
    values = decode(q.codes, spec.element)
    if spec.block_size is None:
        return values
    if spec.scale == "e8m0":
        scale = e8m0_values()[q.scales.long()]
    else:
        scale = decode(q.scales, E4M3)
        if q.tensor_scale is not None:
            scale = q.tensor_scale * scale
    blocks = values.reshape(*values.shape[:-1], -1, spec.block_size)
    return (blocks * scale[..., None]).reshape(values.shape)


def fake_quantize(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """``x`` after a round trip through format ``fmt`` (same shape, x's dtype):
    ``dequantize(quantize(x, fmt))``, computed without the codes (:func:`fake_round`: the same
    roundings and products, a few passes over x, fast enough for every activation of a model)."""
    spec = get_format(fmt)
    check_float(x)
    if spec.block_size is None:
        return decode(encode(x, spec.element), spec.element).to(x.dtype)
    if spec.scale == "e8m0":
        scaled, scales = _mx_scaled(x, spec)
        values = fake_round(scaled, spec.element) * e8m0_values()[scales.long()][..., None]
    else:
        scaled, block_scale, t = _nvfp4_scaled(x, tensor_scale=True)
        values = fake_round(scaled, E2M1) * (t * fake_round(block_scale, E4M3))[..., None]
    return values.reshape(x.shape).to(x.dtype)


# --- storage -----------------------------------------------------------------------------------

def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Element codes ``[..., K]`` packed along the last dimension into bytes: 8-bit as they are,
    4-bit two per byte ``[..., K/2]``, 6-bit as a low-4-bit plane and a high-2-bit plane
    ``[..., K/2 + K/4]``."""
    if bits == 8:
        return codes.to(torch.uint8)
    if bits == 4:
        return pack_bytes(codes, 4)
    if bits == 6:
        low, high = codes & 0b1111, codes >> 4              # 6 bits: HH LLLL
        return torch.cat([pack_bytes(low, 4), pack_bytes(high, 2)], dim=-1)
    raise ValueError(f"element codes of {bits} bits are not packed here (8, 6 or 4)")


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`."""
    if bits == 8:
        return packed
    if bits == 4:
        return unpack_bytes(packed, 4)
    if bits == 6:
        k = packed.shape[-1] * 4 // 3                        # K/2 + K/4 bytes hold K values
        low, high = packed.split([k // 2, k // 4], dim=-1)
        return unpack_bytes(low, 4) | (unpack_bytes(high, 2) << 4)
    raise ValueError(f"element codes of {bits} bits are not packed here (8, 6 or 4)")


def pack(q: Quantized) -> dict[str, torch.Tensor]:
    """The bytes a :class:`Quantized` takes: packed ``codes``, the ``scales`` codes (one byte
    each) and the float32 ``tensor_scale`` where the format has them."""
    out = {"codes": pack_codes(q.codes, get_format(q.fmt).element.bits)}
    if q.scales is not None:
        out["scales"] = q.scales
    if q.tensor_scale is not None:
        out["tensor_scale"] = q.tensor_scale.reshape(1).float()
    return out


def unpack(packed: dict[str, torch.Tensor], fmt: str) -> Quantized:
    """Inverse of :func:`pack`."""
    codes = unpack_codes(packed["codes"], get_format(fmt).element.bits)
    tensor_scale = packed.get("tensor_scale")
    return Quantized(fmt, codes, packed.get("scales"),
                     None if tensor_scale is None else tensor_scale.reshape(()))
