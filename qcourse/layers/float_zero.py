"""``FloatZeroLinear``: packed b-bit codes with a float scale *and a float zero point* per group
(HQQ's format, :mod:`qcourse.hqq`).

:class:`~qcourse.layers.QuantLinear` stores integer zero points on the b-bit grid (the GPTQ/AWQ
layout). HQQ optimizes the zero point as a real number, so it needs one float per group more:

    qweight  int32    [K·b/32, N]    codes transposed, packed along the input dimension
    scales   float16  [K/g, N]
    zeros    float16  [K/g, N]

    W'[n, k] = (q[n, k] - zero[n, k // g]) · scale[n, k // g]       (b + 32/g bits per weight)
"""
from __future__ import annotations

import torch

from qcourse.pack import pack_int32, unpack_int32
from qcourse.quant import QuantScheme, dequantize

from .base import QuantizedLinear


class FloatZeroLinear(QuantizedLinear):
    """A linear layer with packed ``bits``-bit codes, fp16 scales and fp16 zero points."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int | None = None,
                 bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias)
        g = QuantScheme(bits, group_size).packable().resolved(in_features, "this layer").group_size
        self.bits, self.group_size = bits, g
        self.register_buffer("qweight", torch.zeros(in_features * bits // 32, out_features,
                                                    dtype=torch.int32))
        self.register_buffer("scales", torch.zeros(in_features // g, out_features, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(in_features // g, out_features, dtype=torch.float16))

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
                       group_size: int | None, bias: torch.Tensor | None = None) -> FloatZeroLinear:
        """Store codes ``q [N, K]`` in ``[0, 2^bits)`` with ``scale``/``zero`` ``[N, K/g]`` (any
        finite floats)."""
        if not isinstance(q, torch.Tensor) or q.dim() != 2 or q.dtype.is_floating_point:
            raise ValueError("q must be a 2-D integer tensor [out_features, in_features]")
        n, k = q.shape
        layer = cls(k, n, bits, group_size, bias=bias is not None)
        groups = k // layer.group_size
        for name, t in (("scale", scale), ("zero", zero)):
            if tuple(t.shape) != (n, groups) or not torch.isfinite(t).all():
                raise ValueError(f"{name} must be finite, of shape [{n}, {groups}], got "
                                 f"{tuple(t.shape)}")
        if q.min() < 0 or q.max() >= 2**bits:
            raise ValueError(f"q must hold {bits}-bit codes in [0, {2**bits - 1}]")
        layer.qweight.copy_(pack_int32(q.t().long(), bits, dim=0))
        layer.scales.copy_(scale.t().to(torch.float16))
        layer.zeros.copy_(zero.t().to(torch.float16))
        layer.copy_bias(bias)
        return layer

    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight ``[N, K]``."""
        q = unpack_int32(self.qweight, self.bits, dim=0).t()
        return dequantize(q, self.scales.t(), self.zeros.t(), group_size=self.group_size)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, group_size={self.group_size}, float zeros, "
                f"bias={self.bias is not None}")
