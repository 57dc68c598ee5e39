"""The formats of :mod:`qcourse.mx` by name, and what each costs in bits per weight.

    name          element   block   block scale        tensor scale    bits per weight
    fp8_e4m3      E4M3      -       -                  -               8
    fp8_e5m2      E5M2      -       -                  -               8
    mxfp8_e4m3    E4M3      32      E8M0 (power of 2)  -               8 + 8/32 = 8.25
    mxfp8_e5m2    E5M2      32      E8M0               -               8.25
    mxfp6_e3m2    E3M2      32      E8M0               -               6.25
    mxfp6_e2m3    E2M3      32      E8M0               -               6.25
    mxfp4         E2M1      32      E8M0               -               4.25
    nvfp4         E2M1      16      E4M3               float32         4 + 8/16 = 4.5

(OCP Microscaling Formats (MX) v1.0, 2023; NVIDIA's NVFP4, 2025.) The "fp8_*" formats are the
plain element cast, without any scale; :mod:`qcourse.mx.scaled_fp8` adds tensor, channel and
block scales to them.
"""
from __future__ import annotations

import dataclasses

from qcourse.formats import bits_per_weight

from .minifloat import E2M1, E2M3, E3M2, E4M3, E5M2, Minifloat

E8M0_BITS = 8


@dataclasses.dataclass(frozen=True)
class BlockFormat:
    """An element format, and (for MX/NV formats) the block of ``block_size`` consecutive values
    of the last dimension that share one scale of format ``scale`` ("e8m0" or "e4m3"), plus an
    optional float32 scale for the whole tensor."""

    name: str
    element: Minifloat
    block_size: int | None = None
    scale: str | None = None
    tensor_scale: bool = False

    @property
    def bits_per_weight(self) -> float:
        """Element bits plus the block scale's 8 bits shared by ``block_size`` values (the
        tensor scale's 32 bits are negligible)."""
        return bits_per_weight(self.element.bits, self.block_size, scale_bits=E8M0_BITS)


FORMATS = {f.name: f for f in (
    BlockFormat("fp8_e4m3", E4M3),
    BlockFormat("fp8_e5m2", E5M2),
    BlockFormat("mxfp8_e4m3", E4M3, 32, "e8m0"),
    BlockFormat("mxfp8_e5m2", E5M2, 32, "e8m0"),
    BlockFormat("mxfp6_e3m2", E3M2, 32, "e8m0"),
    BlockFormat("mxfp6_e2m3", E2M3, 32, "e8m0"),
    BlockFormat("mxfp4", E2M1, 32, "e8m0"),
    BlockFormat("nvfp4", E2M1, 16, "e4m3", tensor_scale=True),
)}


def get_format(name: str) -> BlockFormat:
    """The format called ``name``, or a ValueError listing the names there are."""
    if not isinstance(name, str) or name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose one of {tuple(FORMATS)}")
    return FORMATS[name]


def fp8_element(name: str) -> Minifloat:
    """The element of ``"fp8_e4m3"`` or ``"fp8_e5m2"`` (other names: a ValueError)."""
    fmt = get_format(name)
    if fmt.block_size is not None:
        raise ValueError(f"{name!r} is a block format; scaled FP8 takes 'fp8_e4m3' or 'fp8_e5m2'")
    return fmt.element
