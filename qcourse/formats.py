"""Number formats and the memory they need.

A weight stored with ``b`` bits costs ``b/8`` bytes. Quantized formats also store, per group of
``g`` weights, a scale (and for asymmetric schemes a zero point), so the real cost is

    bits per weight = b + (scale_bits + zero_bits) / g

e.g. 4-bit weights in groups of 128 with an fp16 scale and an fp16 zero: 4 + 32/128 = 4.25.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from qcourse.quant import check_float, fake_quantize


@dataclasses.dataclass(frozen=True)
class Format:
    """A number format: its width, the largest finite magnitude, and the gap between 0 and the
    next representable value at full precision (for integers: 1 step of the integer grid)."""

    name: str
    bits: int
    kind: str  # "float", "int" or "lookup"
    max_value: float
    smallest_step: float
    note: str = ""

    @property
    def bytes_per_parameter(self) -> float:
        return self.bits / 8


def _float_format(name: str, dtype: torch.dtype, note: str = "") -> Format:
    info = torch.finfo(dtype)
    return Format(name, info.bits, "float", float(info.max), float(info.smallest_normal), note)


def format_table() -> list[Format]:
    """FP32, FP16, BF16, FP8 (E4M3, E5M2), INT8, INT4 and NF4, read from torch where it knows them."""
    return [
        _float_format("FP32", torch.float32, "IEEE single: 8 exponent, 23 mantissa bits"),
        _float_format("FP16", torch.float16, "IEEE half: 5 exponent, 10 mantissa bits"),
        _float_format("BF16", torch.bfloat16, "FP32's 8-bit exponent, 7 mantissa bits"),
        _float_format("FP8 E4M3", torch.float8_e4m3fn, "4 exponent, 3 mantissa bits, no infinities"),
        _float_format("FP8 E5M2", torch.float8_e5m2, "5 exponent, 2 mantissa bits"),
        Format("INT8", 8, "int", 127.0, 1.0, "integers -128..127, times a scale"),
        Format("INT4", 4, "int", 7.0, 1.0, "integers -8..7, times a scale"),
        Format("NF4", 4, "lookup", 1.0, 0.0796, "16 normal-distribution quantiles in [-1, 1], "
               "times a per-block absmax (QLoRA)"),
    ]


def bits_per_weight(bits: float, group_size: int | None = None, scale_bits: int = 16,
                    zero_bits: int = 0) -> float:
    """Storage cost per weight: ``bits + (scale_bits + zero_bits) / group_size``.

    ``group_size=None`` means no per-group metadata (a plain format like FP16, or a per-tensor
    scale whose cost is negligible).
    """
    if bits <= 0:
        raise ValueError(f"bits must be positive, got {bits}")
    if group_size is None:
        return float(bits)
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer or None, got {group_size!r}")
    return bits + (scale_bits + zero_bits) / group_size


def memory_bytes(parameters: int, bits: float, group_size: int | None = None,
                 scale_bits: int = 16, zero_bits: int = 0) -> int:
    """Bytes to store ``parameters`` weights: ``ceil(N · bits_per_weight / 8)``."""
    if parameters < 0:
        raise ValueError(f"parameters must be >= 0, got {parameters}")
    return math.ceil(parameters * bits_per_weight(bits, group_size, scale_bits, zero_bits) / 8)


def human_bytes(n: float) -> str:
    """Bytes in decimal units (1 GB = 10^9 bytes, as model files are usually quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# --- What a value becomes in each format --------------------------------------------------------

#: The 16 values of the NF4 code book (QLoRA, Dettmers et al. 2023, appendix E; bitsandbytes'
#: ``get_4bit_type("nf4")``): quantiles of a standard normal, rescaled to [-1, 1], with an exact
#: zero: 8 positive levels, 7 negative ones. A weight block is divided by its absmax and each value
#: is replaced by the nearest code.
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=torch.float32)

FLOAT_DTYPES = {
    "FP32": torch.float32,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP8 E4M3": torch.float8_e4m3fn,
    "FP8 E5M2": torch.float8_e5m2,
}
INT_BITS = {"INT8": 8, "INT4": 4}
FORMAT_NAMES = (*FLOAT_DTYPES, *INT_BITS, "NF4")


def canonical_name(name: str) -> str:
    """``"fp8_e4m3"``, ``"fp8-e4m3"`` or ``"FP8 E4M3"`` -> ``"FP8 E4M3"``."""
    key = str(name).upper().replace("_", " ").replace("-", " ").strip()
    if key not in FORMAT_NAMES:
        raise ValueError(f"unknown format {name!r}; choose one of {FORMAT_NAMES}")
    return key


def nearest_code(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of a sorted code book for every element of ``x``
    (ties go to the larger code), found by bucketing ``x`` between midpoints of the codes."""
    midpoints = (code[1:] + code[:-1]) / 2
    return torch.bucketize(x.contiguous(), midpoints.to(x.dtype), right=True)


def cast(x: torch.Tensor, name: str) -> torch.Tensor:
    """What ``x`` becomes when stored in format ``name``, returned as float32.

    * FP32, FP16, BF16, FP8 E4M3, FP8 E5M2: a round trip through the torch dtype (round to
      nearest even; FP16/E5M2 overflow to inf, torch saturates E4M3 at ±448).
    * INT8, INT4: symmetric per-tensor quantization, ``x' = clamp(round(x/s), qmin, qmax) · s``
      with ``s = absmax / (2^(b-1) - 1)`` (:func:`qcourse.quant.fake_quantize`).
    * NF4: ``x' = absmax · c`` with ``c`` the nearest entry of :data:`NF4_CODE` to
      ``x / absmax`` (:func:`qcourse.nf4.fake_nf4` with one block: the whole tensor).
    """
    from qcourse import nf4  # local: nf4 needs this module at import

    name = canonical_name(name)
    check_float(x)
    if name in FLOAT_DTYPES:
        return x.to(FLOAT_DTYPES[name]).float()
    if name in INT_BITS:
        return fake_quantize(x.float(), INT_BITS[name], symmetric=True, granularity="tensor")
    return nf4.fake_nf4(x.float(), block_size=max(x.numel(), 1))


def representable_values(name: str) -> torch.Tensor:
    """Every finite value of format ``name``, sorted, as float32.

    8- and 16-bit floats are enumerated from all their bit patterns; INT8/INT4 give their
    integer grid (to be multiplied by a scale); NF4 gives :data:`NF4_CODE` (to be multiplied by a
    block's absmax). FP32 has 2^32 patterns, too many to list: a ValueError says so.
    """
    name = canonical_name(name)
    if name == "FP32":
        raise ValueError("FP32 has about 4.3 billion values, too many to list; use "
                         "torch.finfo(torch.float32) or one of FP16, BF16, FP8 E4M3, FP8 E5M2")
    if name in FLOAT_DTYPES:
        dtype = FLOAT_DTYPES[name]
        int_dtype = torch.int16 if torch.finfo(dtype).bits == 16 else torch.uint8
        low, high = torch.iinfo(int_dtype).min, torch.iinfo(int_dtype).max
        patterns = torch.arange(low, high + 1, dtype=torch.int32).to(int_dtype)
        values = patterns.view(dtype).float()
        values = values[torch.isfinite(values)]
        return torch.unique(values)  # sorted; +0 and -0 count once
    if name in INT_BITS:
        bits = INT_BITS[name]
        return torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), dtype=torch.float32)
    return NF4_CODE.clone()
