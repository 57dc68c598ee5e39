"""GGUF's original ("legacy") block types: 32 weights per block, one fp16 scale (and min).

    Q8_0  x ≈ d·q,        q int8 in [-127, 127]       d = max|x| / 127
    Q4_0  x ≈ d·(q - 8),  q in [0, 15]                d = max / -8   (max = signed absmax)
    Q5_0  x ≈ d·(q - 16), q in [0, 31]                d = max / -16
    Q4_1  x ≈ d·q + m,    q in [0, 15]                d = (max - min) / 15,  m = min
    Q5_1  x ≈ d·q + m,    q in [0, 31]                d = (max - min) / 31,  m = min

Dividing by ``-8`` puts the value of largest magnitude exactly on the grid end ``-8`` (the
asymmetric side of a 4-bit signed grid), so it is never clipped.
With an importance vector (llama.cpp's imatrix), Q4_0/Q5_0 pick ``d`` by ``make_qx_quants`` and
Q4_1/Q5_1 pick ``d, m`` by ``make_qkx_quants``, with weights ``w = importance · sqrt(σ² + x²)``
(σ² the row's mean square), exactly as ``ggml-quants.c`` does; Q8_0 ignores importance.

Block layouts (little-endian; bits per weight = 8 · bytes / 32):

    Q8_0  34 bytes = d fp16 [0:2]  | qs int8[32] [2:34]                          8.5 bpw
    Q4_0  18 bytes = d fp16 [0:2]  | qs[16] [2:18]                                4.5 bpw
    Q4_1  20 bytes = d fp16 [0:2]  | m fp16 [2:4]  | qs[16] [4:20]                5.0 bpw
    Q5_0  22 bytes = d fp16 [0:2]  | qh u32 [2:6]  | qs[16] [6:22]                5.5 bpw
    Q5_1  24 bytes = d fp16 [0:2]  | m fp16 [2:4]  | qh u32 [4:8] | qs[16] [8:24]  6.0 bpw

``qs[j]`` holds value j in its low nibble and value j + 16 in its high nibble; bit k of ``qh`` is
the fifth bit of value k.
"""
from __future__ import annotations

import numpy as np

from .numerics import F32, as_bytes, first_absmax, first_max, first_min, fp16_field, fp16_from_bytes, round_away, running_sum, to_uint8
from .scale_search import make_qkx_quants, make_qx_quants

QK = 32  # weights per block


# --- packing ------------------------------------------------------------------------------------

def pack_nibbles(levels: np.ndarray) -> np.ndarray:
    """``[B, 32]`` levels -> ``[B, 16]`` bytes: low nibble value j, high nibble value j + 16."""
    return ((levels[:, :16] & 0xF) | ((levels[:, 16:] & 0xF) << 4)).astype(np.uint8)


def unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    """``[B, 16]`` bytes -> ``[B, 32]`` levels 0..15 (inverse of ``pack_nibbles``)."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=-1).astype(np.int32)


def pack_fifth_bits(levels: np.ndarray) -> np.ndarray:
    """``[B, 32]`` levels 0..31 -> ``[B, 4]``: the little-endian uint32 whose bit k is bit 4 of
    value k."""
    bits = ((levels >> 4) & 1).astype(np.uint32) << np.arange(QK, dtype=np.uint32)
    return as_bytes(np.bitwise_or.reduce(bits, axis=-1)[:, None], "<u4")


def unpack_fifth_bits(qh: np.ndarray) -> np.ndarray:
    """``[B, 4]`` bytes -> ``[B, 32]`` values 0 or 16 (bit k of the uint32, times 16)."""
    word = np.ascontiguousarray(qh).view("<u4").astype(np.int64)
    return (((word >> np.arange(QK)) & 1) << 4).astype(np.int32)


def _row_sigma2(rows: np.ndarray) -> np.ndarray:
    """σ² = Σx² / n over each whole row, repeated for each of the row's blocks: ``[R·n/32, 1]``."""
    sigma2 = running_sum(rows * rows) / F32(rows.shape[1])
    return np.repeat(sigma2, rows.shape[1] // QK)[:, None]


def _importance_weights(rows: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """``w = importance · sqrt(σ² + x²)`` per value, as ``[R·n/32, 32]`` blocks."""
    blocks = rows.reshape(-1, QK)
    qw = np.tile(importance.reshape(-1, QK), (rows.shape[0], 1))
    return qw * np.sqrt(_row_sigma2(rows) + blocks * blocks)


# --- symmetric: Q8_0, Q4_0, Q5_0 ----------------------------------------------------------------

def quantize_q8_0(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q8_0: ``d = max|x| / 127``, ``q = roundf(x / d)`` (half away from zero). 34 bytes / 32."""
    x = rows.reshape(-1, QK)
    d = np.abs(x).max(axis=-1) / F32(127)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0))
    q = round_away(x * inv[:, None]).astype(np.int8).view(np.uint8)
    return np.concatenate([fp16_field(d), q], axis=-1).reshape(rows.shape[0], -1)


def _symmetric_ref(x: np.ndarray, nlevels: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0/Q5_0 without importance: ``d = max / -(nlevels/2)``,
    ``L = min(nlevels-1, (int8)(x/d + nlevels/2 + 0.5))`` (truncation, as in C)."""
    half = nlevels // 2
    d = first_absmax(x) / F32(-half)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0))
    shifted = x * inv[:, None] + F32(half + 0.5)
    return d, np.minimum(nlevels - 1, np.trunc(shifted).astype(np.int32))


def _symmetric(rows: np.ndarray, importance: np.ndarray | None, nlevels: int):
    if importance is None:
        return _symmetric_ref(rows.reshape(-1, QK), nlevels)
    x = rows.reshape(-1, QK)
    return make_qx_quants(x, nlevels // 2, _importance_weights(rows, importance))


def quantize_q4_0(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q4_0: 4-bit symmetric, ``x ≈ d·(q - 8)``. 18 bytes per 32 weights = 4.5 bpw."""
    d, levels = _symmetric(rows, importance, 16)
    fields = [fp16_field(d), pack_nibbles(levels)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


def quantize_q5_0(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q5_0: 5-bit symmetric, ``x ≈ d·(q - 16)``. 22 bytes per 32 weights = 5.5 bpw."""
    d, levels = _symmetric(rows, importance, 32)
    fields = [fp16_field(d), pack_fifth_bits(levels), pack_nibbles(levels)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


# --- asymmetric: Q4_1, Q5_1 ---------------------------------------------------------------------

def _asymmetric_ref(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1/Q5_1 without importance: ``d = (max - min) / nmax``, ``L = (int)((x - min)/d + 0.5)``
    (C clamps Q4_1's levels to 15 and stores Q5_1's into a uint8; both are no-ops in range)."""
    lo, hi = first_min(x), first_max(x)
    d = (hi - lo) / F32(nmax)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0))
    shifted = (x - lo[:, None]) * inv[:, None] + F32(0.5)
    levels = np.trunc(shifted).astype(np.int32)
    return d, lo, (np.minimum(nmax, levels) if nmax == 15 else to_uint8(levels))


def _asymmetric(rows: np.ndarray, importance: np.ndarray | None, nmax: int):
    if importance is None:
        return _asymmetric_ref(rows.reshape(-1, QK), nmax)
    weights = _importance_weights(rows, importance)
    d, levels, the_min = make_qkx_quants(rows.reshape(-1, QK), weights, nmax, rmin=-0.9,
                                         rdelta=0.05, nstep=36, use_mad=False)
    return d, -the_min, levels


def quantize_q4_1(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q4_1: 4-bit with min, ``x ≈ d·q + m``. 20 bytes per 32 weights = 5.0 bpw."""
    d, m, levels = _asymmetric(rows, importance, 15)
    fields = [fp16_field(d), fp16_field(m), pack_nibbles(levels)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


def quantize_q5_1(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q5_1: 5-bit with min, ``x ≈ d·q + m``. 24 bytes per 32 weights = 6.0 bpw."""
    d, m, levels = _asymmetric(rows, importance, 31)
    fields = [fp16_field(d), fp16_field(m), pack_fifth_bits(levels), pack_nibbles(levels)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


# --- dequantize: blocks [B, bytes] -> values [B, 32] --------------------------------------------

def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    d = fp16_from_bytes(blocks[:, 0:2])
    return blocks[:, 2:].view(np.int8).astype(F32) * d[:, None]


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    d = fp16_from_bytes(blocks[:, 0:2])
    return (unpack_nibbles(blocks[:, 2:]) - 8).astype(F32) * d[:, None]


def dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    d = fp16_from_bytes(blocks[:, 0:2])
    q = unpack_nibbles(blocks[:, 6:]) | unpack_fifth_bits(blocks[:, 2:6])
    return (q - 16).astype(F32) * d[:, None]


def dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    d, m = fp16_from_bytes(blocks[:, 0:2]), fp16_from_bytes(blocks[:, 2:4])
    return unpack_nibbles(blocks[:, 4:]).astype(F32) * d[:, None] + m[:, None]


def dequantize_q5_1(blocks: np.ndarray) -> np.ndarray:
    d, m = fp16_from_bytes(blocks[:, 0:2]), fp16_from_bytes(blocks[:, 2:4])
    q = unpack_nibbles(blocks[:, 8:]) | unpack_fifth_bits(blocks[:, 4:8])
    return q.astype(F32) * d[:, None] + m[:, None]
