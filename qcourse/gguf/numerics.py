"""The float32 arithmetic of llama.cpp's quantizers, reproduced bit for bit in numpy.

llama.cpp's ``ggml-quants.c`` computes in IEEE float32, adds terms one after another, and rounds
with its own tricks. To produce the same bytes we do the same, vectorised over blocks:

* ``nearest_int(v)``: add ``1.5 * 2^23`` in float32 and read the low 23 mantissa bits. For
  ``|v| < 2^22`` this is round-half-to-even; outside that range it is the same garbage as C's.
* ``round_away(v)``: C's ``roundf``, half away from zero (used by Q8_0 only).
* ``running_sum(a)``: ``s = 0; for x in a: s += x`` in float32. ``np.sum`` adds pairwise and can
  differ in the last bit; ``np.add.accumulate`` adds strictly left to right.
* ``fp16_bits`` / ``fp16_round``: ``GGML_FP32_TO_FP16``, round to nearest even (numpy's cast does
  the same, subnormals and overflow to inf included).
* ``bf16_bits``: ``ggml_compute_fp32_to_bf16``, round to nearest even by integer arithmetic.
* ``to_int8`` / ``to_uint8``: what storing an ``int`` into an ``int8_t`` / ``uint8_t`` does (wrap).
* ``first_min`` / ``first_max`` / ``first_absmax`` / ``max_from_zero`` / ``fold_max``: the C loops
  that find a block's extremes, with their tie-breaking (the sign of a zero) and NaN behaviour
  (NaNs appear when x² overflows float32 for |x| > 1.8e19; llama.cpp still writes a block).

Constants are float32 (``F32(0.1)`` is C's ``0.1f``), so every product and quotient below rounds
exactly where the C code rounds. Callers run under ``np.errstate(all="ignore")``: like the C code,
some branches compute a value (e.g. a division by zero) that is then discarded.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)  # llama.cpp: below this a group counts as all zero

_ROUNDING_BIAS = F32(12582912.0)  # 1.5 * 2^23


def nearest_int(v: np.ndarray) -> np.ndarray:
    """llama.cpp's ``nearest_int``: ``bits(v + 1.5*2^23) & 0x7fffff - 0x400000`` (int32)."""
    biased = np.asarray(v, dtype=F32) + _ROUNDING_BIAS
    return (biased.view(np.int32) & 0x007FFFFF) - 0x00400000


def round_away(v: np.ndarray) -> np.ndarray:
    """C's ``roundf``: round half away from zero (numpy's ``round`` rounds half to even)."""
    whole = np.trunc(v)
    return whole + np.where(np.abs(v - whole) >= F32(0.5), np.sign(v), F32(0))


def running_sum(a: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over the last axis, as a C loop ``s += a[i]`` computes it."""
    return np.add.accumulate(a, axis=-1, dtype=F32)[..., -1]


def fp16_bits(v: np.ndarray) -> np.ndarray:
    """``GGML_FP32_TO_FP16``: IEEE half, round to nearest even, as uint16 bit patterns."""
    return np.asarray(v, dtype=F32).astype(np.float16).view(np.uint16)


def fp16_round(v: np.ndarray) -> np.ndarray:
    """``GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(v))``: the float32 value a stored fp16 holds."""
    return np.asarray(v, dtype=F32).astype(np.float16).astype(F32)


def fp16_from_bytes(b: np.ndarray) -> np.ndarray:
    """Read little-endian fp16 fields ``[..., 2]`` (uint8) as float32 ``[...]``."""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(F32)


def fp16_field(v: np.ndarray) -> np.ndarray:
    """One little-endian fp16 per row, as the 2-byte field of a block: ``[B] -> [B, 2]`` bytes."""
    return as_bytes(fp16_bits(v)[:, None], "<u2")


def bf16_bits(v: np.ndarray) -> np.ndarray:
    """``ggml_compute_fp32_to_bf16``: keep the top 16 bits after adding ``0x7fff + lsb``
    (round to nearest even). NaN is rejected before we get here."""
    bits = np.asarray(v, dtype=F32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def to_uint8(v: np.ndarray) -> np.ndarray:
    """Store an int into ``uint8_t``: keep the low 8 bits."""
    return np.asarray(v) & 0xFF


def to_int8(v: np.ndarray) -> np.ndarray:
    """Store an int into ``int8_t``: keep the low 8 bits, read them as two's complement."""
    return ((np.asarray(v) + 128) & 0xFF) - 128


def as_bytes(values: np.ndarray, dtype: str) -> np.ndarray:
    """Little-endian bytes of each value: ``[..., k]`` -> ``[..., k * itemsize]`` uint8."""
    arr = np.ascontiguousarray(values).astype(dtype)
    return arr.view(np.uint8).reshape(*arr.shape[:-1], -1)


def _take(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(x, index[:, None], axis=-1)[:, 0]


def first_min(x: np.ndarray) -> np.ndarray:
    """Row minimum of ``x [B, n]``, the first one on ties (so -0.0 vs 0.0 is decided as in C's
    ``if (x[i] < min) min = x[i];``)."""
    return _take(x, np.argmin(x, axis=-1))


def first_max(x: np.ndarray) -> np.ndarray:
    """Row maximum of ``x [B, n]``, the first one on ties."""
    return _take(x, np.argmax(x, axis=-1))


def first_absmax(x: np.ndarray) -> np.ndarray:
    """The signed value of largest magnitude in each row of ``x [B, n]``, as llama.cpp's
    ``amax = 0; if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }``: the first on ties,
    +0.0 when the row is all zeros, and NaNs never win."""
    magnitude = np.abs(x)
    magnitude = np.where(np.isnan(magnitude), F32(-1), magnitude)
    index = np.argmax(magnitude, axis=-1)
    return np.where(_take(magnitude, index) > 0, _take(x, index), F32(0))


def max_from_zero(x: np.ndarray) -> np.ndarray:
    """``m = 0; if (x[i] > m) m = x[i];`` over each row: the max, at least 0, NaNs ignored."""
    return np.maximum(np.where(np.isnan(x), F32(0), x).max(axis=-1), F32(0))


def fold_max(x: np.ndarray) -> np.ndarray:
    """``m = 0; m = MAX(m, x[i])`` with C's ``MAX(a, b) = a > b ? a : b`` over each row (a NaN
    replaces the running max, as the macro does)."""
    m = np.zeros(x.shape[0], dtype=F32)
    for i in range(x.shape[1]):
        m = np.where(m > x[:, i], m, x[:, i])
    return m
