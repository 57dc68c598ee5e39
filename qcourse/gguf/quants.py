"""llama.cpp's tensor types, written from scratch in numpy: ``quantize`` and ``dequantize``.

``quantize(a, qtype)`` cuts each row of ``a`` (the last axis) into blocks of ``BLOCK_SIZE[qtype]``
weights and encodes each block into ``TYPE_SIZE[qtype]`` bytes, exactly the bytes llama.cpp's
``ggml_quantize_chunk`` writes into a GGUF file (tests compare them byte for byte). So

    bits per weight = 8 · TYPE_SIZE / BLOCK_SIZE      e.g. Q4_K: 8 · 144 / 256 = 4.5

    F32   1 weight, 4 bytes (IEEE float32)                                        32 bpw
    F16   1 weight, 2 bytes (IEEE half, round to nearest even)                    16 bpw
    BF16  1 weight, 2 bytes (top half of the float32, round to nearest even)      16 bpw
    Q8_0 Q4_0 Q4_1 Q5_0 Q5_1   32 weights per block, see ``legacy``           8.5/4.5/5/5.5/6
    Q2_K Q3_K Q4_K Q5_K Q6_K   256 weights per super-block, see ``kquants``
                                                                   2.625/3.4375/4.5/5.5/6.5625

``importance`` (llama.cpp's imatrix: one non-negative number per input column, e.g. the mean
squared activation the column multiplies) makes the scale searches minimise the *weighted* error;
it is used for exactly the types where llama.cpp uses it (``IMPORTANCE_TYPES``) and ignored for
the others, as llama.cpp ignores it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import kquants, legacy
from .numerics import F32, as_bytes, bf16_bits, fp16_bits

QTYPES: tuple[str, ...] = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                           "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

Quantizer = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]  # rows [R, n] -> bytes [R, m]
Dequantizer = Callable[[np.ndarray], np.ndarray]                    # blocks [B, size] -> [B, block]


# --- the float types ----------------------------------------------------------------------------

def _quantize_f32(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    return as_bytes(rows, "<f4")


def _quantize_f16(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    return as_bytes(fp16_bits(rows), "<u2")


def _quantize_bf16(rows: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
    return as_bytes(bf16_bits(rows), "<u2")


def _dequantize_f32(blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(blocks).view("<f4").astype(F32)


def _dequantize_f16(blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(blocks).view("<f2").astype(F32)


def _dequantize_bf16(blocks: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(blocks).view("<u2").astype(np.uint32) << 16
    return bits.view(F32)


# --- registry -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Codec:
    block_size: int
    type_size: int
    quantize: Quantizer
    dequantize: Dequantizer
    uses_importance: bool


_CODECS: dict[str, _Codec] = {
    "F32": _Codec(1, 4, _quantize_f32, _dequantize_f32, False),
    "F16": _Codec(1, 2, _quantize_f16, _dequantize_f16, False),
    "BF16": _Codec(1, 2, _quantize_bf16, _dequantize_bf16, False),
    "Q8_0": _Codec(32, 34, legacy.quantize_q8_0, legacy.dequantize_q8_0, False),
    "Q4_0": _Codec(32, 18, legacy.quantize_q4_0, legacy.dequantize_q4_0, True),
    "Q4_1": _Codec(32, 20, legacy.quantize_q4_1, legacy.dequantize_q4_1, True),
    "Q5_0": _Codec(32, 22, legacy.quantize_q5_0, legacy.dequantize_q5_0, True),
    "Q5_1": _Codec(32, 24, legacy.quantize_q5_1, legacy.dequantize_q5_1, True),
    "Q2_K": _Codec(256, 84, kquants.quantize_q2_k, kquants.dequantize_q2_k, True),
    "Q3_K": _Codec(256, 110, kquants.quantize_q3_k, kquants.dequantize_q3_k, True),
    "Q4_K": _Codec(256, 144, kquants.quantize_q4_k, kquants.dequantize_q4_k, True),
    "Q5_K": _Codec(256, 176, kquants.quantize_q5_k, kquants.dequantize_q5_k, True),
    "Q6_K": _Codec(256, 210, kquants.quantize_q6_k, kquants.dequantize_q6_k, True),
}
assert tuple(_CODECS) == QTYPES

BLOCK_SIZE: dict[str, int] = {name: c.block_size for name, c in _CODECS.items()}
TYPE_SIZE: dict[str, int] = {name: c.type_size for name, c in _CODECS.items()}
IMPORTANCE_TYPES: tuple[str, ...] = tuple(name for name, c in _CODECS.items() if c.uses_importance)

_CHUNK_VALUES = 1 << 18  # quantize this many weights at a time: bounded memory, cache-friendly


def bits_per_weight(qtype: str) -> float:
    """``8 · TYPE_SIZE / BLOCK_SIZE``: storage per weight, scales and mins included."""
    codec = _codec(qtype)
    return 8 * codec.type_size / codec.block_size


# --- input checks -------------------------------------------------------------------------------

def _codec(qtype: str) -> _Codec:
    if qtype not in _CODECS:
        raise ValueError(f"unknown qtype {qtype!r}; supported (as llama.cpp spells them): "
                         f"{', '.join(QTYPES)}")
    return _CODECS[qtype]


def _float_array(a, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what} must be a floating-point array, got dtype {arr.dtype}; "
                        "convert it with .astype(np.float32) first")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes Inf: rejected below
        arr = np.asarray(arr, dtype=F32, order="C")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or Inf (after conversion to float32); "
                         "only finite values can be quantized")
    return arr


def _row_length(shape: tuple[int, ...], codec: _Codec, qtype: str, what: str) -> int:
    if len(shape) == 0:
        raise ValueError(f"{what} must have at least one dimension (rows along the last axis)")
    n = shape[-1]
    if n == 0 or n % codec.block_size:
        raise ValueError(f"{qtype} needs rows whose length is a positive multiple of "
                         f"{codec.block_size}; the last dimension of {what} is {n} "
                         f"(shape {tuple(shape)})")
    return n


def _check_importance(importance, n: int) -> np.ndarray:
    imp = _float_array(importance, "importance")
    if imp.shape != (n,):
        raise ValueError(f"importance must have shape ({n},), one value per column of a, "
                         f"got shape {imp.shape}")
    if (imp < 0).any():
        raise ValueError("importance must be non-negative (it weights squared errors)")
    return imp


# --- public API ---------------------------------------------------------------------------------

def quantize(a: np.ndarray, qtype: str, importance: np.ndarray | None = None) -> np.ndarray:
    """Encode ``a [..., n]`` (rows along the last axis) as llama.cpp's ``qtype`` blocks.

    Returns uint8 ``[..., n // BLOCK_SIZE[qtype] * TYPE_SIZE[qtype]]``, identical to
    ``ggml_quantize_chunk(type, a, dst, 0, rows, n, importance)``. ``a`` is converted to float32
    first (llama.cpp quantizes from float32). ``importance``: optional ``[n]``, non-negative.
    Raises ValueError for an unknown qtype, a row length that is not a multiple of the block
    size, NaN/Inf, or a bad importance vector; TypeError for non-float input.
    """
    codec = _codec(qtype)
    arr = _float_array(a, "a")
    n = _row_length(arr.shape, codec, qtype, "a")
    imp = None if importance is None else _check_importance(importance, n)
    if not codec.uses_importance:
        imp = None
    rows = arr.reshape(-1, n)
    step = max(1, _CHUNK_VALUES // n)
    row_bytes = n // codec.block_size * codec.type_size
    out = np.empty((rows.shape[0], row_bytes), dtype=np.uint8)
    with np.errstate(all="ignore"):  # discarded branches divide by zero, as in the C code
        for start in range(0, rows.shape[0], step):
            out[start:start + step] = codec.quantize(rows[start:start + step], imp)
    return out.reshape(*arr.shape[:-1], row_bytes)


def dequantize(b: np.ndarray, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode llama.cpp ``qtype`` bytes into float32 of ``shape`` (what ``dequantize_row_*`` gives).

    ``b`` is uint8 with exactly ``prod(shape[:-1]) * shape[-1] // BLOCK_SIZE * TYPE_SIZE``
    elements (any layout, e.g. the ``[..., row_bytes]`` array ``quantize`` returned).
    """
    codec = _codec(qtype)
    arr = np.asarray(b)
    if arr.dtype != np.uint8:
        raise TypeError(f"b must be a uint8 array of {qtype} blocks, got dtype {arr.dtype}")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    n = _row_length(shape, codec, qtype, "shape")
    expected = int(np.prod(shape[:-1], dtype=np.int64)) * (n // codec.block_size) * codec.type_size
    if arr.size != expected:
        raise ValueError(f"{qtype} data for shape {shape} is {expected} bytes "
                         f"({codec.type_size} per {codec.block_size} weights), got {arr.size}")
    blocks = np.ascontiguousarray(arr).reshape(-1, codec.type_size)
    with np.errstate(all="ignore"):  # inf·0 (from fp16 scales that overflowed) is NaN, as in C
        return codec.dequantize(blocks).reshape(shape)
