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

What a format does with values beyond its largest finite value, with infinities and with NaN is
the format's own rule (``specials``):

* ``"fn"`` (E4M3FN, OCP FP8): no infinities; only ``S.1111.111`` is NaN, so the largest value is
  448. Overflow and ±inf saturate to ±448, as ``torch.float8_e4m3fn`` casts do.
* ``"ieee"`` (E5M2): exponent all ones means inf (``M = 0``) or NaN; overflow rounds to ±inf
  (IEEE round-to-nearest-even, as ``torch.float8_e5m2`` casts), or saturates if asked.
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


def round_to_grid(a: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """Non-negative finite ``a`` (float64) rounded to nearest-even on the format's grid, before
    any overflow rule: ``round(a / 2^(e-m)) · 2^(e-m)`` with ``e = max(floor(log2 a), emin)``."""
    _, exponent = torch.frexp(a)                        # a = f · 2^exponent, f in [0.5, 1)
    e = torch.where(a > 0, exponent - 1, spec.emin).clamp(min=spec.emin)
    step = torch.ldexp(torch.ones_like(a), e - spec.mbits)
    return torch.round(a / step) * step                 # torch.round: ties to even


def magnitude_code(mag: torch.Tensor, spec: Minifloat) -> torch.Tensor:
    """The code (without sign) of non-negative values ``mag`` that lie on the grid:
    ``mag / 2^(e-m) + (e - emin) · 2^m`` (= ``E·2^m + M``), int64."""
    _, exponent = torch.frexp(mag)
    e = torch.where(mag > 0, exponent - 1, spec.emin).clamp(min=spec.emin)
    steps = torch.ldexp(mag, spec.mbits - e)            # the mantissa 1.M (or 0.M) times 2^m
    return steps.long() + (e - spec.emin) * 2**spec.mbits


def encode(x: torch.Tensor, spec: Minifloat, *, saturate: bool | None = None) -> torch.Tensor:
    """Round ``x`` (read as float32, as torch casts do) to the nearest ``spec`` value, ties to
    even, and return its codes (uint8, x's shape).

    ``saturate``: values beyond ``spec.max`` (and ±inf) become ±max. Default: the format's own rule
    (E4M3 and the sub-byte formats saturate; E5M2 overflows to ±inf). NaN becomes the format's NaN
    code (sign kept); formats without NaN refuse it.
    """
    check_float(x)
    x = x.float()
    if saturate is None:
        saturate = spec.specials != "ieee"
    if spec.specials == "fn" and not saturate:
        raise ValueError("E4M3FN has no infinity: overflow can only saturate (saturate=True)")
    nan = torch.isnan(x)
    if spec.specials == "none" and nan.any():
        raise ValueError(f"{spec.name} has no NaN code; x contains NaN")
    a = torch.where(nan, 0.0, x.abs()).double()
    inf = torch.isinf(a)
    mag = round_to_grid(torch.where(inf, 0.0, a), spec)
    overflow = inf | (mag > spec.max)
    mag = torch.where(overflow, spec.max, mag)
    code = magnitude_code(mag, spec)
    if not saturate:                                     # E5M2: exponent all ones, M = 0
        code = torch.where(overflow, (2**spec.ebits - 1) * 2**spec.mbits, code)
    if spec.specials != "none":                          # NaN: exponent and mantissa all ones
        code = torch.where(nan, 2 ** (spec.ebits + spec.mbits) - 1, code)
    sign = torch.signbit(x).long() << (spec.ebits + spec.mbits)
    return (code | sign).to(torch.uint8)


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
    return torch.tensor([math.nan if c == 255 else math.ldexp(1.0, c - 127) for c in range(256)],
                        dtype=torch.float32)
