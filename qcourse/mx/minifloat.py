"""Minifloats: the 8-, 6- and 4-bit floating-point element formats of FP8, MX and NVFP4.

A minifloat with ``e`` exponent bits and ``m`` mantissa bits stores a sign ``s``, a biased exponent
``E`` and a mantissa ``M`` (``bias = 2^(e-1) - 1``)::

    normal     (E > 0):  (-1)^s · (1 + M / 2^m) · 2^(E - bias)
    subnormal  (E = 0):  (-1)^s · (M / 2^m)     · 2^(1 - bias)

Rounding a real number ``a = |x|`` onto that grid is one line once the spacing of the grid around
``a`` is known: inside the binade ``[2^e, 2^(e+1))`` the values are ``2^(e-m)`` apart, and below
the smallest normal exponent ``emin = 1 - bias`` they stay ``2^(emin-m)`` apart (the subnormals)::

    e  = max(floor(log2 a), emin)
    a' = round_half_even(a / 2^(e-m)) · 2^(e-m)                       (encode)

What a format *has* is fixed by the format (``specials``); what a *conversion* does with a value
beyond the largest finite one is a choice the OCP 8-bit spec (OFP8 v1.0, 2023) leaves to the
implementation: a saturating conversion clamps to ±max, a non-saturating one gives inf (E5M2) or
NaN (E4M3, which has no inf). Rounding comes first: only values that still exceed max after
rounding to nearest even overflow (464, the tie between E4M3's 448 and 480, rounds to 448).

* ``"fn"`` (E4M3FN, OCP FP8): no infinities; only ``S.1111.111`` is NaN, so the largest value is
  448. Default here: saturate (±inf too), as torchao, NVIDIA's ``cvt ... .satfinite`` and torch's
  CPU cast since PyTorch PR #178817 (April 2026) do; ``saturate=False`` gives NaN instead, as
  earlier torch releases and ``ml_dtypes`` do.
* ``"ieee"`` (E5M2): exponent all ones means inf (``M = 0``) or NaN; default: overflow rounds to
  ±inf (IEEE round-to-nearest-even, as ``torch.float8_e5m2`` casts); ``saturate=True`` clamps.
* ``"none"`` (FP6 E3M2/E2M3, FP4 E2M1 of OCP MX): every code is a finite number; overflow
  saturates; there is no NaN or inf to encode.

Codes are the bit patterns as unsigned integers, sign in the top bit: ``s·2^(e+m) + E·2^m + M``.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import torch

from qcourse.quant import check_float

SPECIALS = ("fn", "ieee", "none")


@dataclasses.dataclass(frozen=True)
class Minifloat:
    """A floating-point element format: ``ebits`` exponent and ``mbits`` mantissa bits, a sign
    bit, and its rule for specials (see the module docstring)."""

    name: str
    ebits: int
    mbits: int
    specials: str

    def __post_init__(self) -> None:
        if self.specials not in SPECIALS:
            raise ValueError(f"specials must be one of {SPECIALS}, got {self.specials!r}")

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def bias(self) -> int:
        return 2 ** (self.ebits - 1) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal value (subnormals share its spacing)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite binade."""
        top = 2**self.ebits - 1 - (self.specials == "ieee")
        return top - self.bias

    @property
    def max(self) -> float:
        """The largest finite value: 448 (E4M3), 57344 (E5M2), 28, 7.5, 6 (E3M2, E2M3, E2M1)."""
        top_mantissa = 2**self.mbits - 1 - (self.specials == "fn")  # fn: 1.111 is NaN
        return (1 + top_mantissa / 2**self.mbits) * 2.0**self.emax

    def value_of(self, code: int) -> float:
        """The number a code stands for (NaN and ±inf where the format has them)."""
        sign = -1.0 if code >> (self.ebits + self.mbits) else 1.0
        E = (code >> self.mbits) & (2**self.ebits - 1)
        M = code & (2**self.mbits - 1)
        top = E == 2**self.ebits - 1
        if self.specials == "fn" and top and M == 2**self.mbits - 1:
            return math.nan
        if self.specials == "ieee" and top:
            return sign * math.inf if M == 0 else math.nan
        if E == 0:
            return sign * math.ldexp(M, self.emin - self.mbits)
        return sign * math.ldexp(2**self.mbits + M, E - self.bias - self.mbits)

    def values(self) -> torch.Tensor:
        """The value of every code ``0 .. 2^bits - 1``, float32 ``[2^bits]`` (the decode table)."""
        return _table(self).clone()


@functools.cache
def _table(spec: Minifloat) -> torch.Tensor:
    return torch.tensor([spec.value_of(c) for c in range(2**spec.bits)], dtype=torch.float32)


E4M3 = Minifloat("E4M3", 4, 3, "fn")
E5M2 = Minifloat("E5M2", 5, 2, "ieee")
E3M2 = Minifloat("E3M2", 3, 2, "none")
E2M3 = Minifloat("E2M3", 2, 3, "none")
E2M1 = Minifloat("E2M1", 2, 1, "none")
ELEMENTS = {spec.name: spec for spec in (E4M3, E5M2, E3M2, E2M3, E2M1)}


def round_to_grid(x: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """float32 ``x`` rounded to nearest-even on the format's grid, sign kept, before any overflow
    rule: ``round(x / 2^(e-m)) · 2^(e-m)`` with ``e = max(floor(log2 |x|), emin)``.

    ``floor(log2 |x|) + 127`` is a float32's exponent field (bits 30-23; 0 for float32
    subnormals, below every format's emin), and ``2^(e-m)`` is the float32 whose exponent field
    is ``e - m + 127``: integer operations on the bits instead of a logarithm. Dividing and
    multiplying by a power of two is exact and ``torch.round`` breaks ties to even, so the result
    is exact for every float32 (±inf stays ±inf, NaN stays NaN)."""
    exponent = (x.view(torch.int32) & 0x7F800000).clamp_(min=(spec.emin + 127) << 23)
    step = exponent.sub_(spec.mbits << 23).view(torch.float32)         # 2^(e - m)
    return (x / step).round_().mul_(step)


def magnitude_code(mag: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """The code ``E·2^m + M`` (without sign) of non-negative float32 values ``mag`` on the
    grid, int32. A normal value's float32 bits hold ``e + 127`` and, on top of the mantissa, the
    format's ``M``: ``bits >> (23 - m)`` is ``(e + 127)·2^m + M``, re-biased by ``127 - bias``. A
    subnormal (E = 0) is ``M = mag / 2^(emin - m)``."""
    normal = (mag.view(torch.int32) >> (23 - spec.mbits)) - ((127 - spec.bias) << spec.mbits)
    subnormal = (mag * 2.0 ** (spec.mbits - spec.emin)).int()
    return torch.where(mag < 2.0**spec.emin, subnormal, normal)


def encode(x: torch.Tensor, spec: Minifloat, *, saturate: bool | None = None) -> torch.Tensor:
    """Round ``x`` (read as float32, as torch casts do) to the nearest ``spec`` value, ties to
    even, and return its codes (uint8, x's shape).

    ``saturate``: values that still exceed ``spec.max`` after rounding (and ±inf) become ±max;
    otherwise ±inf (E5M2) or NaN (E4M3, which has no inf). Default: saturate, except E5M2, which
    follows IEEE (module docstring: the spec leaves this to the conversion). NaN becomes the
    format's NaN code (sign kept); formats without NaN refuse it.
    """
    check_float(x)
    x = x.float()
    if saturate is None:
        saturate = spec.specials != "ieee"
    nan = torch.isnan(x)
    if spec.specials == "none" and nan.any():
        raise ValueError(f"{spec.name} has no NaN code; x contains NaN")
    mag = round_to_grid(x.abs(), spec)                   # NaN stays NaN, inf stays inf
    overflow = mag > spec.max
    code = magnitude_code(torch.where(overflow | nan, spec.max, mag), spec)
    nan_code = 2 ** (spec.ebits + spec.mbits) - 1        # exponent and mantissa all ones
    if not saturate:                                     # E5M2: inf (M = 0); E4M3: NaN
        inf_code = (2**spec.ebits - 1) * 2**spec.mbits if spec.specials == "ieee" else nan_code
        code = torch.where(overflow, inf_code, code)
    if spec.specials != "none":
        code = torch.where(nan, nan_code, code)
    sign = torch.signbit(x).int() << (spec.ebits + spec.mbits)
    return (code | sign).to(torch.uint8)


def fake_round(x: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """``decode(encode(x, spec, saturate=True), spec)`` for finite float32 ``x``, without the
    codes: x clamped to ``±spec.max`` and rounded (the fast path of fake quantization)."""
    return round_to_grid(x.clamp(-spec.max, spec.max), spec)   # max is on the grid


def decode(codes: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """The float32 value of each code (a lookup in :meth:`Minifloat.values`)."""
    if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point:
        raise TypeError(f"codes must be an integer tensor, got "
                        f"{getattr(codes, 'dtype', type(codes).__name__)}")
    codes = codes.long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= 2**spec.bits):
        raise ValueError(f"{spec.name} codes lie in [0, {2**spec.bits - 1}], got "
                         f"[{codes.min().item()}, {codes.max().item()}]")
    return spec.values()[codes]


def e8m0_values() -> torch.Tensor:
    """The E8M0 scale format of OCP MX: code ``c`` stands for ``2^(c - 127)`` (code 255: NaN);
    float32 ``[256]``, from 2^-127 (a float32 subnormal) to 2^127."""
    return _e8m0_table().clone()


@functools.cache
def _e8m0_table() -> torch.Tensor:
    return torch.tensor([math.nan if c == 255 else math.ldexp(1.0, c - 127) for c in range(256)],
                        dtype=torch.float32)
