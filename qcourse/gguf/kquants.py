"""K-quants: 256-weight super-blocks of 16 or 32-weight sub-blocks with quantized sub-block scales.

A legacy block spends 16 bits of fp16 scale on 32 weights (0.5 bpw). A K-quant super-block keeps
one or two fp16 numbers (``d``, ``dmin``) for all 256 weights and gives each sub-block a small
integer scale (and min) that multiplies them: two levels of quantization.

    Q2_K  x ≈ d·sc·q - dmin·m     16 sub-blocks of 16, q 2-bit, sc and m 4-bit
    Q3_K  x ≈ d·(sc - 32)·(q - 4)  16 sub-blocks of 16, q 3-bit, sc 6-bit
    Q4_K  x ≈ d·sc·q - dmin·m      8 sub-blocks of 32, q 4-bit, sc and m 6-bit
    Q5_K  x ≈ d·sc·q - dmin·m      8 sub-blocks of 32, q 5-bit, sc and m 6-bit
    Q6_K  x ≈ d·sc·(q - 32)       16 sub-blocks of 16, q 6-bit, sc int8

Quantizing a super-block (llama.cpp's ``quantize_row_*_ref``, used without importance):
1. each sub-block gets a float scale (and min) from a search (``scale_search``), weighted by
   ``|x|`` (Q2_K), ``sqrt(mean x²) + |x|`` (Q4_K, Q5_K) or ``x²`` (Q3_K, Q6_K);
2. the sub-block scales are themselves quantized against the largest one
   (``sc = round(63 · scale / max_scale)``, ``d = max_scale / 63`` for Q4_K/Q5_K);
3. every weight is re-rounded with the scale it will actually be decoded with (``d·sc``, after
   fp16 rounding of ``d``).
With an importance vector (``quantize_row_*_impl``) step 1 weights each value by
``importance · sqrt(σ² + x²)`` (σ² the super-block's mean square, times 2 except for Q2_K; Q6_K
uses the importance alone) and step 2 uses ``make_qp_quants`` weighted by each sub-block's total
weight, instead of rounding against the maximum.

Block layouts (little-endian; bits per weight = 8 · bytes / 256):

    Q2_K   84 bytes = scales[16] [0:16] | qs[64] [16:80] | d fp16 [80:82] | dmin fp16 [82:84]
                      scales[j] = sc_j | m_j << 4                                     2.625 bpw
    Q3_K  110 bytes = hmask[32] [0:32] | qs[64] [32:96] | scales[12] [96:108] | d fp16 [108:110]
                      low 2 bits of q in qs, third bit in hmask; 16 6-bit scales     3.4375 bpw
    Q4_K  144 bytes = d fp16 [0:2] | dmin fp16 [2:4] | scales[12] [4:16] | qs[128] [16:144]
                      8 6-bit scales + 8 6-bit mins in 12 bytes                        4.5 bpw
    Q5_K  176 bytes = d [0:2] | dmin [2:4] | scales[12] [4:16] | qh[32] [16:48] | qs[128] [48:176]
                      low 4 bits of q in qs, fifth bit in qh                          5.5 bpw
    Q6_K  210 bytes = ql[128] [0:128] | qh[64] [128:192] | scales int8[16] [192:208] | d [208:210]
                      low 4 bits of q in ql, high 2 bits in qh                      6.5625 bpw

Bit order inside the quant bytes: values are taken in halves of 128 (Q2_K, Q3_K, Q6_K) or
quarters of 64 (Q4_K, Q5_K); byte l of a group holds value l of each 32-value slice of that group,
slice k in bits ``[bits·k, bits·(k+1))``.
"""
from __future__ import annotations

import numpy as np

from .numerics import F32, GROUP_MAX_EPS, first_absmax, fp16_field, \
    fp16_from_bytes, fp16_round, max_from_zero, nearest_int, running_sum, to_int8, to_uint8
from .scale_search import make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants

QK_K = 256  # weights per super-block


# --- bit packing --------------------------------------------------------------------------------

def _interleave(levels: np.ndarray, group: int, bits: int) -> np.ndarray:
    """``[S, 256]`` -> ``[S, 256·bits/8]``: within each group of ``group`` values, byte l holds
    value ``l + 32·k`` in bits ``[bits·k, bits·(k+1))`` for each of the ``group/32`` slices."""
    s = levels.shape[0]
    slices = levels.reshape(s, QK_K // group, group // 32, 32).astype(np.int32)
    shifts = (bits * np.arange(group // 32))[None, None, :, None]
    return (slices << shifts).sum(axis=2).astype(np.uint8).reshape(s, -1)


def _deinterleave(packed: np.ndarray, group: int, bits: int) -> np.ndarray:
    """Inverse of ``_interleave``: ``[S, 256·bits/8]`` bytes -> ``[S, 256]`` values."""
    s = packed.shape[0]
    nslices = group // 32
    shifts = (bits * np.arange(nslices))[None, None, :, None]
    grouped = packed.reshape(s, QK_K // group, 1, 32).astype(np.int32)
    return ((grouped >> shifts) & ((1 << bits) - 1)).reshape(s, QK_K)


def pack_k4_scales(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and eight 6-bit mins ``[S, 8]`` into 12 bytes (Q4_K, Q5_K):
    bytes 0-3 = sc[0:4] | (sc[4:8] >> 4) << 6,  bytes 4-7 = m[0:4] | (m[4:8] >> 4) << 6,
    bytes 8-11 = (sc[4:8] & 15) | (m[4:8] & 15) << 4. Values are stored as C's uint8 stores do."""
    low = np.concatenate([sc[:, :4], m[:, :4]], axis=-1)
    high = np.concatenate([sc[:, 4:] >> 4, m[:, 4:] >> 4], axis=-1) << 6
    tail = (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4)
    return to_uint8(np.concatenate([low | high, tail], axis=-1)).astype(np.uint8)


def unpack_k4_scales(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 bytes -> ``(sc [S, 8], m [S, 8])``, llama.cpp's ``get_scale_min_k4`` for j = 0..7."""
    q = packed.astype(np.int32)
    sc_low, m_low, tail = q[:, 0:4], q[:, 4:8], q[:, 8:12]
    sc = np.concatenate([sc_low & 63, (tail & 0xF) | ((sc_low >> 6) << 4)], axis=-1)
    m = np.concatenate([m_low & 63, (tail >> 4) | ((m_low >> 6) << 4)], axis=-1)
    return sc, m


def pack_q3_scales(levels: np.ndarray) -> np.ndarray:
    """Sixteen 6-bit scales ``[S, 16]`` into 12 bytes (Q3_K): bytes 0-7 hold the low nibbles
    (scale j and j + 8), bytes 8-11 the 2-bit high parts (scale j at bits 2·(j // 4) of byte
    8 + j % 4)."""
    low = (levels[:, :8] & 0xF) | ((levels[:, 8:] & 0xF) << 4)
    high_parts = (levels >> 4).reshape(-1, 4, 4) << (2 * np.arange(4))[None, :, None]
    high = np.bitwise_or.reduce(high_parts, axis=1)
    return to_uint8(np.concatenate([low, high], axis=-1)).astype(np.uint8)


def unpack_q3_scales(packed: np.ndarray) -> np.ndarray:
    """12 bytes -> 16 scales in ``[0, 63]`` (subtract 32 for the signed scale)."""
    q = packed.astype(np.int32)
    low = np.concatenate([q[:, :8] & 0xF, q[:, :8] >> 4], axis=-1)
    high = (q[:, 8:12][:, None, :] >> (2 * np.arange(4))[None, :, None]) & 3  # [S, j // 4, j % 4]
    return low | (high.reshape(-1, 16) << 4)


# --- shared steps -------------------------------------------------------------------------------

def importance_weights(x: np.ndarray, importance: np.ndarray, sigma2_factor: int) -> np.ndarray:
    """The weight of each value in the error a K-quant minimises when it has an importance
    vector (llama.cpp's ``quantize_row_q2_K_impl`` ... ``quantize_row_q5_K_impl``):

        minimise Σ_i w_i · (x_i − x̂_i)²,   w_i = imatrix_i · sqrt(σ² + x_i²),
        σ² = factor · Σ_super-block x² / 256   (factor 1 for Q2_K, 2 for Q3_K, Q4_K, Q5_K)

    Q6_K weighs by ``imatrix_i`` alone; the legacy types take σ² over the whole row. With
    ``w_i = imatrix_i`` the sum would be the layer's expected squared output error (inputs
    uncorrelated); the factor ``sqrt(σ² + x_i²)`` is llama.cpp's heuristic on top (written in
    ``ggml-quants.c``, not derived there): among channels of equal importance, values of larger
    magnitude count more, as ``|x|`` or ``sqrt(mean x²) + |x|`` do without an imatrix.

    ``x [S, 256]``: super-blocks of rows whose length is a multiple of ``importance.size``
    (one value per column).
    """
    if sigma2_factor not in (1, 2):
        raise ValueError(f"sigma2_factor is 1 (Q2_K) or 2 (Q3_K, Q4_K, Q5_K), got {sigma2_factor!r}")
    if x.ndim != 2 or x.shape[1] != QK_K or importance.size % QK_K or \
            (x.shape[0] * QK_K) % importance.size:
        raise ValueError(f"x must be super-blocks [S, {QK_K}] of rows of {importance.size} "
                         f"columns (the importance's length, a multiple of {QK_K}), got "
                         f"x {x.shape}")
    sigma2 = F32(sigma2_factor) * running_sum(x * x) / F32(QK_K)
    qw = np.tile(importance.reshape(-1, QK_K), (x.shape[0] * QK_K // importance.size, 1))
    return qw * np.sqrt(sigma2[:, None] + x * x)


def _sub_sums(weights: np.ndarray, size: int) -> np.ndarray:
    """Total weight of each sub-block: ``[S, 256]`` -> ``[S, 256 / size]``."""
    return running_sum(weights.reshape(weights.shape[0], -1, size))


def _requantize(x: np.ndarray, levels: np.ndarray, scale: np.ndarray, offset: np.ndarray,
                lo: int, hi: int) -> np.ndarray:
    """Re-round every weight with its decoded sub-block scale: ``clamp(round((x + offset) / scale),
    lo, hi)``; sub-blocks whose scale is 0 keep the levels of the search (llama.cpp skips them).
    ``x, levels [S, 256]``, ``scale, offset [S, nsub]``."""
    s, nsub = scale.shape
    xs = x.reshape(s, nsub, -1)
    zero = scale == 0
    q = nearest_int((xs + offset[:, :, None]) / np.where(zero, F32(1), scale)[:, :, None])
    q = np.clip(q, lo, hi).reshape(s, QK_K)
    return np.where(np.repeat(zero, QK_K // nsub, axis=1), levels, q)


def _quantize_against_max(values: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 without importance for Q2_K/Q4_K/Q5_K: ``L = round(nmax · v / max v)`` (max over
    the super-block, at least 0) and the super-block scale ``max v / nmax``."""
    top = max_from_zero(values)
    inv = np.where(top > 0, F32(nmax) / np.where(top > 0, top, F32(1)), F32(0))
    return nearest_int(inv[:, None] * values), top / F32(nmax)


# --- Q2_K ---------------------------------------------------------------------------------------

def quantize_q2_k(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q2_K: 2-bit, 16 sub-blocks of 16 with 4-bit scale and min. 84 bytes / 256 = 2.625 bpw."""
    x = rows.reshape(-1, QK_K)
    sub = x.reshape(-1, 16)
    if importance is None:
        scales, levels, mins = make_qkx_quants(sub, np.abs(sub), 3, rmin=-0.5, rdelta=0.1,
                                               nstep=15, use_mad=True)
        ls, d = _quantize_against_max(scales.reshape(-1, 16), 15)
        lm, dmin = _quantize_against_max(mins.reshape(-1, 16), 15)
    else:
        weights = importance_weights(x, importance, sigma2_factor=1)
        scales, levels, mins = make_qkx_quants(sub, weights.reshape(-1, 16), 3, rmin=-0.9,
                                               rdelta=0.05, nstep=36, use_mad=False)
        sw = _sub_sums(weights, 16)
        d, ls = make_qp_quants(scales.reshape(-1, 16), 15, sw)
        dmin, lm = make_qp_quants(mins.reshape(-1, 16), 15, sw)
    packed = to_uint8(to_uint8(ls) | (lm << 4))
    d, dmin = fp16_round(d), fp16_round(dmin)
    scale = d[:, None] * (packed & 0xF).astype(F32)
    offset = dmin[:, None] * (packed >> 4).astype(F32)
    levels = _requantize(x, levels.reshape(-1, QK_K), scale, offset, 0, 3)
    fields = [packed.astype(np.uint8), _interleave(levels, 128, 2), fp16_field(d),
              fp16_field(dmin)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


def dequantize_q2_k(blocks: np.ndarray) -> np.ndarray:
    scales = blocks[:, 0:16].astype(np.int32)
    q = _deinterleave(blocks[:, 16:80], 128, 2).reshape(-1, 16, 16).astype(F32)
    d, dmin = fp16_from_bytes(blocks[:, 80:82]), fp16_from_bytes(blocks[:, 82:84])
    dl = (d[:, None] * (scales & 0xF).astype(F32))[:, :, None]
    ml = (dmin[:, None] * (scales >> 4).astype(F32))[:, :, None]
    return (dl * q - ml).reshape(-1, QK_K)


# --- Q3_K ---------------------------------------------------------------------------------------

def _q3_scales_against_max(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q3_K step 2 without importance: ``l = clamp(round(-32 · s / max), -32, 31) + 32`` with
    ``max`` the signed scale of largest magnitude; ``d = max / -32`` (0 if all scales are 0)."""
    max_scale = first_absmax(scales)
    has_scale = max_scale != 0
    iscale = F32(-32) / np.where(has_scale, max_scale, F32(1))
    levels = np.clip(to_int8(nearest_int(iscale[:, None] * scales)), -32, 31) + 32
    levels = np.where(has_scale[:, None], levels, 0)
    return levels, np.where(has_scale, F32(1) / iscale, F32(0))


def quantize_q3_k(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q3_K: 3-bit symmetric, 16 sub-blocks of 16, 6-bit scales. 110 bytes / 256 = 3.4375 bpw."""
    x = rows.reshape(-1, QK_K)
    sub = x.reshape(-1, 16)
    if importance is None:
        scales, levels = make_q3_quants(sub, 4)
        scale_levels, d = _q3_scales_against_max(scales.reshape(-1, 16))
    else:
        weights = importance_weights(x, importance, sigma2_factor=2)
        scales, levels = make_qx_quants(sub, 4, weights.reshape(-1, 16))
        d, scale_levels = make_qx_quants(scales.reshape(-1, 16), 32, _sub_sums(weights, 16))
    packed_scales = pack_q3_scales(scale_levels)
    d = fp16_round(d)
    scale = d[:, None] * (unpack_q3_scales(packed_scales) - 32).astype(F32)
    levels = _requantize(x, levels.reshape(-1, QK_K) - 4, scale, np.zeros_like(scale), -4, 3) + 4
    high = levels > 3
    hmask = (high.reshape(-1, 8, 32).astype(np.int32) << np.arange(8)[None, :, None]).sum(axis=1)
    fields = [hmask.astype(np.uint8), _interleave(levels - 4 * high, 128, 2), packed_scales,
              fp16_field(d)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


def dequantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    hmask = blocks[:, 0:32].astype(np.int32)
    low = _deinterleave(blocks[:, 32:96], 128, 2)
    high = (hmask[:, None, :] >> np.arange(8)[None, :, None]) & 1  # [S, bit, 32] = value bit·32 + l
    q = (low - 4 * (1 - high.reshape(-1, QK_K))).reshape(-1, 16, 16).astype(F32)
    scales = (unpack_q3_scales(blocks[:, 96:108]) - 32).astype(F32)
    d = fp16_from_bytes(blocks[:, 108:110])
    return ((d[:, None] * scales)[:, :, None] * q).reshape(-1, QK_K)


# --- Q4_K and Q5_K ------------------------------------------------------------------------------

def _scales_and_mins_k(x: np.ndarray, importance: np.ndarray | None, nmax: int,
                       clamp_importance_levels: bool):
    """Steps 1 and 2 of Q4_K (nmax 15) and Q5_K (nmax 31): levels ``[S, 256]``, 6-bit sc and m
    ``[S, 8]``, and the unrounded super-block scales ``d``, ``dmin``."""
    sub = x.reshape(-1, 32)
    if importance is None:
        av_x = np.sqrt(running_sum(sub * sub) / F32(32))
        search = dict(rmin=-1.0, rdelta=0.1, nstep=20) if nmax == 15 else \
            dict(rmin=-0.5, rdelta=0.1, nstep=15)
        scales, levels, mins = make_qkx_quants(sub, av_x[:, None] + np.abs(sub), nmax,
                                               use_mad=False, **search)
        ls, d = _quantize_against_max(scales.reshape(-1, 8), 63)
        lm, dmin = _quantize_against_max(mins.reshape(-1, 8), 63)
        ls, lm = np.minimum(63, to_uint8(ls)), np.minimum(63, to_uint8(lm))
    else:
        weights = importance_weights(x, importance, sigma2_factor=2)
        scales, levels, mins = make_qkx_quants(sub, weights.reshape(-1, 32), nmax, rmin=-0.9,
                                               rdelta=0.05, nstep=36, use_mad=False)
        sw = _sub_sums(weights, 32)
        d, ls = make_qp_quants(scales.reshape(-1, 8), 63, sw)
        dmin, lm = make_qp_quants(mins.reshape(-1, 8), 63, sw)
        if clamp_importance_levels:  # Q5_K's impl clamps to 63, Q4_K's does not
            ls, lm = np.minimum(63, ls), np.minimum(63, lm)
    return levels.reshape(-1, QK_K), ls, lm, d, dmin


def quantize_k_scaled_blocks(rows: np.ndarray, importance: np.ndarray | None, nmax: int):
    """Q4_K/Q5_K: final levels ``[S, 256]`` and the header fields (d, dmin, 12 scale bytes)."""
    x = rows.reshape(-1, QK_K)
    levels, ls, lm, d, dmin = _scales_and_mins_k(x, importance, nmax, nmax == 31)
    packed_scales = pack_k4_scales(ls, lm)
    d, dmin = fp16_round(d), fp16_round(dmin)
    sc, m = unpack_k4_scales(packed_scales)
    scale = d[:, None] * sc.astype(F32)
    offset = dmin[:, None] * m.astype(F32)
    levels = _requantize(x, levels, scale, offset, 0, nmax)
    return levels, [fp16_field(d), fp16_field(dmin), packed_scales]


def quantize_q4_k(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q4_K: 4-bit, 8 sub-blocks of 32 with 6-bit scale and min. 144 bytes / 256 = 4.5 bpw."""
    levels, header = quantize_k_scaled_blocks(rows, importance, 15)
    return np.concatenate(header + [_interleave(levels, 64, 4)], axis=-1).reshape(rows.shape[0], -1)


def quantize_q5_k(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q5_K: 5-bit, 8 sub-blocks of 32 with 6-bit scale and min. 176 bytes / 256 = 5.5 bpw."""
    levels, header = quantize_k_scaled_blocks(rows, importance, 31)
    fifth = (levels >> 4).reshape(-1, 8, 32).astype(np.int32) << np.arange(8)[None, :, None]
    qh = fifth.sum(axis=1).astype(np.uint8)
    fields = header + [qh, _interleave(levels & 0xF, 64, 4)]
    return np.concatenate(fields, axis=-1).reshape(rows.shape[0], -1)


def _dequantize_k(blocks: np.ndarray, q: np.ndarray) -> np.ndarray:
    d, dmin = fp16_from_bytes(blocks[:, 0:2]), fp16_from_bytes(blocks[:, 2:4])
    sc, m = unpack_k4_scales(blocks[:, 4:16])
    scale = (d[:, None] * sc.astype(F32))[:, :, None]
    offset = (dmin[:, None] * m.astype(F32))[:, :, None]
    return (scale * q.reshape(-1, 8, 32).astype(F32) - offset).reshape(-1, QK_K)


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    return _dequantize_k(blocks, _deinterleave(blocks[:, 16:144], 64, 4))


def dequantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    qh = blocks[:, 16:48].astype(np.int32)
    fifth = ((qh[:, None, :] >> np.arange(8)[None, :, None]) & 1).reshape(-1, QK_K)
    return _dequantize_k(blocks, _deinterleave(blocks[:, 48:176], 64, 4) + 16 * fifth)


# --- Q6_K ---------------------------------------------------------------------------------------

def quantize_q6_k(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    """Q6_K: 6-bit symmetric, 16 sub-blocks of 16 with int8 scales. 210 bytes / 256 = 6.5625 bpw."""
    x = rows.reshape(-1, QK_K)
    sub = x.reshape(-1, 16)
    qw = None if importance is None else np.tile(importance.reshape(-1, 16), (rows.shape[0], 1))
    scales, levels = make_qx_quants(sub, 32, qw)
    scales = scales.reshape(-1, 16)
    max_scale = first_absmax(scales)
    empty = np.abs(max_scale) < GROUP_MAX_EPS
    iscale = F32(-128) / np.where(empty, F32(1), max_scale)
    d = fp16_round(F32(1) / iscale)
    sc = to_int8(np.minimum(127, nearest_int(iscale[:, None] * scales)))
    scale = d[:, None] * sc.astype(F32)
    no_offset = np.zeros_like(scale)
    levels = _requantize(x, levels.reshape(-1, QK_K) - 32, scale, no_offset, -32, 31) + 32
    halves = levels.reshape(-1, 2, 4, 32)
    ql = (halves[:, :, 0:2] & 0xF) | ((halves[:, :, 2:4] & 0xF) << 4)  # slices (0,2), (1,3)
    qh = _interleave((levels >> 4).reshape(-1, QK_K), 128, 2)
    fields = [ql.astype(np.uint8).reshape(-1, 128), qh, sc.astype(np.int8).view(np.uint8),
              fp16_field(d)]
    out = np.concatenate(fields, axis=-1)
    out[empty] = 0
    return out.reshape(rows.shape[0], -1)


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    ql = blocks[:, 0:128].astype(np.int32).reshape(-1, 2, 2, 32)
    low = np.concatenate([ql & 0xF, ql >> 4], axis=2)  # slices 0, 1, 2, 3 of each half
    high = _deinterleave(blocks[:, 128:192], 128, 2).reshape(-1, 2, 4, 32)
    q = ((low | (high << 4)) - 32).reshape(-1, 16, 16).astype(F32)
    sc = blocks[:, 192:208].view(np.int8).astype(F32)
    d = fp16_from_bytes(blocks[:, 208:210])
    return ((d[:, None] * sc)[:, :, None] * q).reshape(-1, QK_K)
