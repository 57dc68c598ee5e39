"""Post-training quantization of a whole model: weight-only RTN, W8A8, and LLM.int8().

* RTN (round-to-nearest), weight-only: every linear weight becomes ``bits``-bit integers with a
  scale and zero point per output channel or per group, stored packed in a
  :class:`~qcourse.qlinear.QuantLinear`; activations stay in floating point.
* W8A8: weights int8 per output channel (symmetric, ``s_w[n] = max_k |W[n,k]| / 127``) and
  activations int8 per token, quantized at run time (``s_x[t] = max_k |X[t,k]| / 127``); the
  product is an integer matmul rescaled by both scales:

      Y[t, n] = s_x[t] · s_w[n] · Σ_k Xq[t, k] · Wq[n, k]  (+ bias)

* LLM.int8() (Dettmers et al., 2022): as W8A8, except that the input features holding an
  activation larger than ``threshold`` (6.0 in the paper) in the current batch are multiplied
  in floating point (with the dequantized int8 weight, as bitsandbytes does at inference):

      Y = X[:, O] · W'[:, O]^T  +  W8A8(X[:, ~O], W[:, ~O])

The output head and the embeddings are never quantized here.
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.calib import mse_clip_ratio
from qcourse.models import swap_linears
from qcourse.qlinear import QuantLinear, to_unsigned
from qcourse.quant import quantize

RTN_GRANULARITIES = ("tensor", "channel", "group")


def _rtn_layer(linear: nn.Linear, bits: int, granularity: str, group_size: int | None,
               symmetric: bool, clip: str) -> QuantLinear:
    weight = linear.weight.detach()
    n, k = weight.shape
    g = k if granularity != "group" else group_size
    if clip == "mse":
        kind = "tensor" if granularity == "tensor" else "group"
        ratio = mse_clip_ratio(weight, bits, symmetric=symmetric, granularity=kind,
                               group_size=None if kind == "tensor" else g)
    else:
        ratio = 1.0
    if granularity != "tensor":
        return QuantLinear.from_float(linear, bits, None if granularity == "channel" else g,
                                      symmetric=symmetric, clip_ratio=ratio)
    # one scale for the whole matrix, stored as per-channel with identical scales
    q, scale, zero = quantize(weight, bits, symmetric=symmetric, granularity="tensor",
                              clip_ratio=ratio)
    q, zero = to_unsigned(q, zero, bits)
    bias = None if linear.bias is None else linear.bias.detach()
    return QuantLinear.from_quantized(q, scale.expand(n, 1), zero.expand(n, 1), bits, None,
                                      bias=bias)


def quantize_rtn(model: nn.Module, bits: int, granularity: str, group_size: int | None = None,
                 *, symmetric: bool = False, clip: str = "minmax") -> nn.Module:
    """Round-to-nearest weight-only quantization of every linear layer (not the output head),
    in place; returns the model.

    ``granularity``: ``"channel"`` (one scale per output channel), ``"group"`` (one per
    ``group_size`` input columns) or ``"tensor"``. ``clip``: ``"minmax"`` (no clipping) or
    ``"mse"`` (MSE-optimal clip ratio per scale, :func:`qcourse.calib.mse_clip_ratio`).
    """
    if granularity not in RTN_GRANULARITIES:
        raise ValueError(f"granularity must be one of {RTN_GRANULARITIES}, got {granularity!r}")
    if granularity == "group" and group_size is None:
        raise ValueError("granularity 'group' needs a group_size (e.g. 128)")
    if granularity != "group" and group_size is not None:
        raise ValueError(f"group_size={group_size} is only used with granularity='group'")
    if clip not in ("minmax", "mse"):
        raise ValueError(f"clip must be 'minmax' or 'mse', got {clip!r}")
    return swap_linears(model, lambda name, linear: _rtn_layer(linear, bits, granularity,
                                                               group_size, symmetric, clip))


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact integer product of int8 ``a [M, K]`` and int8 ``b [N, K]``: ``a @ b.T`` in int32.

    Every product and partial sum is an integer below 2^53, so float64 computes it exactly;
    on CPUs this is far faster than torch's int8 GEMM (``torch._int_mm``), with the same result.
    """
    return (a.double() @ b.double().t()).to(torch.int32)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric int8 quantization of ``x [tokens, K]``, one scale per token (row)."""
    q, scale, _ = quantize(x, 8, symmetric=True, granularity="channel", axis=0)
    return q, scale


class W8A8Linear(nn.Module):
    """Linear layer with int8 weights (per output channel) and int8 activations (per token)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, 1))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, **kwargs) -> W8A8Linear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    **kwargs)
        q, scale, _ = quantize(linear.weight.detach(), 8, symmetric=True, granularity="channel")
        layer.qweight.copy_(q)
        layer.weight_scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def weight(self) -> torch.Tensor:
        """Dequantized weight ``Wq · s_w`` [N, K] (float32)."""
        return self.qweight.float() * self.weight_scale

    def int8_linear(self, x: torch.Tensor) -> torch.Tensor:
        """``s_x · s_w · (Xq Wq^T)`` for ``x [tokens, K]`` (float32, no bias)."""
        qx, scale_x = quantize_per_token(x)
        return int8_matmul(qx, self.qweight).float() * scale_x * self.weight_scale.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        y = self.int8_linear(rows)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"W8 per-channel, A8 per-token, bias={self.bias is not None}")


def outlier_features(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean mask ``[K]`` of the input features (columns of ``x [tokens, K]``) holding at
    least one activation with ``|x| > threshold``."""
    return x.abs().amax(dim=0) > threshold


class Int8MixedLinear(W8A8Linear):
    """LLM.int8(): W8A8, but input features with an activation above ``threshold`` stay float.

    ``last_outliers`` holds how many input features the latest forward pass kept in float.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 threshold: float = 6.0) -> None:
        super().__init__(in_features, out_features, bias)
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0 (or inf for plain W8A8), got {threshold!r}")
        self.threshold = float(threshold)
        self.last_outliers = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        outliers = outlier_features(rows, self.threshold)
        self.last_outliers = int(outliers.sum())
        y = self.int8_linear(rows.masked_fill(outliers, 0.0))
        if self.last_outliers:
            y = y + rows[:, outliers] @ self.weight()[:, outliers].t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", threshold={self.threshold}"


def quantize_w8a8(model: nn.Module) -> nn.Module:
    """Swap every linear layer (not the output head) for a :class:`W8A8Linear`, in place."""
    return swap_linears(model, lambda name, linear: W8A8Linear.from_float(linear))


def quantize_llm_int8(model: nn.Module, threshold: float = 6.0) -> nn.Module:
    """Swap every linear layer (not the output head) for an :class:`Int8MixedLinear`, in place."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (or inf for plain W8A8), got {threshold!r}")
    return swap_linears(model, lambda name, linear: Int8MixedLinear.from_float(
        linear, threshold=threshold))
