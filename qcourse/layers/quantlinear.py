"""``QuantLinear``: the quantized linear layer every weight-only method of the course stores into.

A weight ``W [N, K]`` (N outputs, K inputs) is kept as ``b``-bit unsigned integers ``q`` with one
fp16 scale and one zero point per group of ``g`` input columns (per-channel = one group of K):

    W'[n, k] = (q[n, k] - zero[n, g_idx[k]]) · scale[n, g_idx[k]]

Storage follows the GPTQ/AWQ checkpoint layout, so its size in bytes is real:

    qweight  int32   [K·b/32, N]      q transposed, packed along the input dimension
    qzeros   int32   [K/g, N·b/32]    zero points, packed along the output dimension
    scales   float16 [K/g, N]
    g_idx    int32   [K]              group of each input column (k // g, unless act-order)

    bytes = b·N·K/8 + b·N·K/(8g) + 2·N·K/g + 4·K  (+ bias)

The forward pass dequantizes the weight and runs an ordinary matmul: ``y = x W'^T + bias``.
Symmetric schemes are stored unsigned too, shifted by ``2^(b-1)`` (zero = ``2^(b-1)``).
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.pack import pack_int32, run_length, unpack_int32
from qcourse.quant import QuantScheme, as_scheme, dequantize

from .base import QuantizedLinear, check_linear


def to_unsigned(q: torch.Tensor, zero: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric (signed int8) ``q`` shifted to the unsigned grid, zero point ``2^(b-1)``:
    ``(q - 0)·s = ((q + 2^(b-1)) - 2^(b-1))·s``. Unsigned ``q`` is returned unchanged."""
    if q.dtype != torch.int8:
        return q, zero
    offset = 2 ** (bits - 1)
    return (q.to(torch.int16) + offset).to(torch.uint8), zero + offset


class QuantLinear(QuantizedLinear):
    """A linear layer with packed ``bits``-bit weights, fp16 scales and packed zero points.

    ``group_size`` is stored resolved: ``in_features`` for a per-channel layer."""

    def __init__(self, in_features: int, out_features: int, bits: int,
                 group_size: int | None = None, bias: bool = False,
                 bias_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(in_features, out_features, bias, bias_dtype)
        g = self.storable(in_features, out_features, QuantScheme(bits, group_size)).group_size
        self.bits, self.group_size = bits, g
        groups = in_features // g
        self.register_buffer("qweight", torch.zeros(in_features * bits // 32, out_features,
                                                    dtype=torch.int32))
        self.register_buffer("qzeros", torch.zeros(groups, out_features * bits // 32,
                                                   dtype=torch.int32))
        self.register_buffer("scales", torch.zeros(groups, out_features, dtype=torch.float16))
        self.register_buffer("g_idx", torch.arange(in_features, dtype=torch.int32) // g)

    @staticmethod
    def storable(in_features: int, out_features: int, scheme: QuantScheme,
                 what: str = "this layer") -> QuantScheme:
        """``scheme`` resolved for a layer of this shape, if a QuantLinear can store it: packable
        bits, a group size that divides ``in_features``, and both widths whole runs of the
        int32 packing (e.g. multiples of 8 at 4 bits); else a clear error naming ``what``."""
        scheme = scheme.packable().resolved(in_features, what)
        run, _ = run_length(scheme.bits, 32)
        for name, size in (("in_features", in_features), ("out_features", out_features)):
            if size % run:
                raise ValueError(f"{name} of {what} is {size}, which {scheme.bits}-bit int32 "
                                 f"packing cannot hold: it must be a multiple of {run}")
        return scheme

    @property
    def per_channel(self) -> bool:
        """One group per output row (``group_size == in_features``)."""
        return self.group_size == self.in_features

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
                       group_size: int | None, bias: torch.Tensor | None = None,
                       g_idx: torch.Tensor | None = None) -> QuantLinear:
        """Store an already quantized weight (GPTQ, AWQ, RTN, QAT).

        ``q [N, K]``: integers on the ``bits``-bit grid, unsigned in ``[0, 2^bits)`` or signed
        (int8, a symmetric scheme: shifted by ``2^(bits-1)`` here); ``scale``, ``zero``
        ``[N, K/g]``; ``g_idx [K]``: group of each input column (default ``k // g``).
        """
        if not isinstance(q, torch.Tensor) or q.dim() != 2:
            raise ValueError(f"q must be a 2-D tensor [out_features, in_features], got "
                             f"{getattr(q, 'shape', type(q).__name__)}")
        if q.dtype.is_floating_point or q.dtype == torch.bool:
            raise TypeError(f"q must hold integers, got dtype {q.dtype}")
        n, k = q.shape
        layer = cls(k, n, bits, group_size, bias=bias is not None,
                    bias_dtype=bias.dtype if bias is not None else torch.float32)
        q, zero = to_unsigned(q, zero, bits)
        groups = layer.scales.shape[0]
        for name, t in (("scale", scale), ("zero", zero)):
            if tuple(t.shape) != (n, groups):
                raise ValueError(f"{name} must have shape [{n}, {groups}] (one per output row and "
                                 f"group of {k // groups} inputs), got {tuple(t.shape)}")
        top = 2**bits - 1
        if q.min() < 0 or q.max() > top:
            raise ValueError(f"q must be unsigned {bits}-bit integers in [0, {top}], got "
                             f"[{q.min().item()}, {q.max().item()}]; shift symmetric q by "
                             f"{2 ** (bits - 1)}")
        zero_int = torch.round(zero.float())
        if (zero_int != zero.float()).any() or zero_int.min() < 0 or zero_int.max() > top:
            raise ValueError(f"zero must hold integers in [0, {top}]")
        if not torch.isfinite(scale).all():
            raise ValueError("scale contains NaN or Inf")
        layer.qweight.copy_(pack_int32(q.t().long(), bits, dim=0))
        layer.qzeros.copy_(pack_int32(zero_int.t().long(), bits, dim=1))
        layer.scales.copy_(scale.t().to(torch.float16))
        if g_idx is not None:
            if tuple(g_idx.shape) != (k,) or g_idx.min() < 0 or g_idx.max() >= groups:
                raise ValueError(f"g_idx must be [{k}] group indices in [0, {groups})")
            layer.g_idx.copy_(g_idx.to(torch.int32))
        layer.copy_bias(bias)
        return layer

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: int | QuantScheme,
                   group_size: int | None = None, *, symmetric: bool = False,
                   clip_ratio: float | torch.Tensor = 1.0) -> QuantLinear:
        """Round-to-nearest quantization of ``linear``'s weight: per group of ``group_size``
        input columns, or per output channel if ``group_size`` is None (or pass a
        :class:`~qcourse.quant.QuantScheme` as ``bits``). ``clip_ratio`` (a float or one per
        group, ``[N, K/g]``) shrinks each range first (see :mod:`qcourse.calib`)."""
        check_linear(linear)
        scheme = cls.storable(linear.in_features, linear.out_features,
                              as_scheme(bits, group_size, symmetric))
        q, scale, zero = scheme.quantize(linear.weight.detach(), clip_ratio)
        return cls.from_quantized(q, scale, zero, scheme.bits, scheme.group_size,
                                  bias=linear.bias)

    def integers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpacked ``(q [N, K], zero [N, K/g])`` as uint8."""
        q = unpack_int32(self.qweight, self.bits, dim=0).t()
        zero = unpack_int32(self.qzeros, self.bits, dim=1).t()
        return q, zero

    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight ``[N, K]``: ``(q - zero[:, g_idx]) · scale[:, g_idx]``."""
        q, zero = self.integers()
        g_idx = self.g_idx.long()
        return dequantize(q, self.scales.t()[:, g_idx], zero[:, g_idx])

    def extra_repr(self) -> str:
        group = "per-channel" if self.per_channel else f"group_size={self.group_size}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, {group}, bias={self.bias is not None}")
