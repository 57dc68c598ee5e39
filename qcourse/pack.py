"""Bit packing: storing b-bit integers densely in int32 words or in bytes.

The values along one dimension form a little-endian bit stream: value ``j`` occupies bits
``[j·b, (j+1)·b)`` of the stream, and the stream is cut into words of 32 bits (``pack_int32``,
the GPTQ/AWQ layout: 8 four-bit values per int32, value 0 in the lowest nibble) or of 8 bits
(``pack_bytes``). A value can straddle two words: 3-bit values are packed 32 to 3 words, as GPTQ
does. For a value at bit offset ``o`` with ``s = o mod W`` (W = word width):

    word[o // W]     |= (v << s) mod 2^W
    word[o // W + 1] |=  v >> (W - s)        (only when s + b > W)

Values must be unsigned, in ``[0, 2^b)``; shift signed integers by ``2^(b-1)`` first.
"""
from __future__ import annotations

import math

import torch

PACKABLE_BITS = (2, 3, 4, 8)


def check_packable_bits(bits: int) -> None:
    """The widths these packers (and every packed layer of the course) store: 2, 3, 4 and 8."""
    if isinstance(bits, bool) or bits not in PACKABLE_BITS:
        raise ValueError(f"bits must be one of {PACKABLE_BITS} to be stored packed, got {bits!r}")


def run_length(bits: int, word_bits: int) -> tuple[int, int]:
    """(values, words) of the shortest run that fills whole words: ``W / gcd(W, b)`` values
    in ``b / gcd(W, b)`` words (8 values in 1 word for 4-bit int32, 32 in 3 for 3-bit)."""
    common = math.gcd(word_bits, bits)
    return word_bits // common, bits // common


def _layout(bits: int, word_bits: int, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each value of a run: its word index, its shift inside the word, and whether it
    spills into the next word (index tensors on ``device``, next to the data they index)."""
    n_values, _ = run_length(bits, word_bits)
    offset = torch.arange(n_values, device=device) * bits
    word, shift = offset // word_bits, offset % word_bits
    return word, shift, shift + bits > word_bits


def _split_runs(t: torch.Tensor, dim: int, run: int, what: str) -> torch.Tensor:
    """Move ``dim`` last and cut it into runs: ``[..., n] -> [..., n // run, run]``."""
    if t.dim() == 0:
        raise ValueError(f"{what} must have at least one dimension")
    t = t.movedim(dim, -1)
    n = t.shape[-1]
    if n % run:
        raise ValueError(f"the size of {what} along dim {dim} is {n}, not a multiple of {run}")
    return t.reshape(*t.shape[:-1], n // run, run)


def pack_bits(values: torch.Tensor, bits: int, dim: int, word_bits: int) -> torch.Tensor:
    """Pack unsigned ``bits``-bit ``values`` along ``dim`` into ``word_bits``-bit words (held in
    int64): ``[..., n] -> [..., n · b / W]`` along dim. The run of W / gcd(W, b) values that
    fills whole words is the unit: ``word[o // W] |= v << (o mod W)``, spilling into the next."""
    check_packable_bits(bits)
    if not isinstance(values, torch.Tensor) or values.dtype.is_floating_point \
            or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"values must be an integer tensor, got "
                        f"{getattr(values, 'dtype', type(values).__name__)}")
    values = values.long()  # also keeps 2**bits = 256 from wrapping in a uint8 comparison
    if values.numel() and (values.min() < 0 or values.max() >= 2**bits):
        raise ValueError(f"{bits}-bit values must lie in [0, {2**bits - 1}], got "
                         f"min {values.min().item()}, max {values.max().item()}; shift signed "
                         f"values by {2 ** (bits - 1)} first")
    n_values, n_words = run_length(bits, word_bits)
    runs = _split_runs(values, dim, n_values, "values")
    word, shift, spills = _layout(bits, word_bits, runs.device)
    low = (runs << shift) & (2**word_bits - 1)
    high = torch.where(spills, runs >> (word_bits - shift), 0)
    words = torch.zeros(*runs.shape[:-1], n_words + 1, dtype=torch.long, device=runs.device)
    words.index_add_(-1, word, low).index_add_(-1, word + 1, high)  # bits never overlap: + is |
    words = words[..., :n_words].flatten(-2)
    return words.movedim(-1, dim)


def unpack_bits(words: torch.Tensor, bits: int, dim: int, word_bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`; ``words`` are unsigned values held in int64."""
    n_values, n_words = run_length(bits, word_bits)
    runs = _split_runs(words, dim, n_words, "the packed tensor")
    runs = torch.cat([runs, torch.zeros_like(runs[..., :1])], dim=-1)  # a spare word to spill into
    word, shift, spills = _layout(bits, word_bits, runs.device)
    low = runs[..., word] >> shift
    high = torch.where(spills, runs[..., word + 1] << (word_bits - shift), 0)
    values = ((low | high) & (2**bits - 1)).flatten(-2)
    return values.to(torch.uint8).movedim(-1, dim)


def pack_int32(values: torch.Tensor, bits: int, dim: int = -1) -> torch.Tensor:
    """Pack unsigned ``bits``-bit integers along ``dim`` into int32 words (GPTQ/AWQ layout).

    The size along ``dim`` must be a multiple of 16 (2-bit), 32 (3-bit), 8 (4-bit) or 4 (8-bit);
    the result is ``bits / 32`` times as long along it.
    """
    words = pack_bits(values, bits, dim, 32)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement


def unpack_int32(words: torch.Tensor, bits: int, dim: int = -1) -> torch.Tensor:
    """Exact inverse of :func:`pack_int32`: int32 words -> uint8 values in ``[0, 2^bits)``."""
    check_packable_bits(bits)
    if not isinstance(words, torch.Tensor) or words.dtype != torch.int32:
        raise TypeError(f"words must be an int32 tensor, got "
                        f"{getattr(words, 'dtype', type(words).__name__)}")
    return unpack_bits(words.long() & 0xFFFFFFFF, bits, dim, 32)


def pack_bytes(values: torch.Tensor, bits: int, dim: int = -1) -> torch.Tensor:
    """Pack unsigned ``bits``-bit integers along ``dim`` into bytes (the same little-endian bit
    stream as :func:`pack_int32`, cut every 8 bits). The size along ``dim`` must be a multiple of
    4 (2-bit), 8 (3-bit), 2 (4-bit) or 1 (8-bit)."""
    return pack_bits(values, bits, dim, 8).to(torch.uint8)


def unpack_bytes(bytes_: torch.Tensor, bits: int, dim: int = -1) -> torch.Tensor:
    """Exact inverse of :func:`pack_bytes`: uint8 bytes -> uint8 values in ``[0, 2^bits)``."""
    check_packable_bits(bits)
    if not isinstance(bytes_, torch.Tensor) or bytes_.dtype != torch.uint8:
        raise TypeError(f"bytes_ must be a uint8 tensor, got "
                        f"{getattr(bytes_, 'dtype', type(bytes_).__name__)}")
    return unpack_bits(bytes_.long(), bits, dim, 8)
