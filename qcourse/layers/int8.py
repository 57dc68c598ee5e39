"""Int8 layers: W8A8 and LLM.int8(), multiplying in integers.

* W8A8: weights int8 per output channel (symmetric, ``s_w[n] = max_k |W[n,k]| / 127``) and
  activations int8 per token, quantized at run time (``s_x[t] = max_k |X[t,k]| / 127``); the
  product is an integer matmul rescaled by both scales:

      Y[t, n] = s_x[t] · s_w[n] · Σ_k Xq[t, k] · Wq[n, k]  (+ bias)

  Three ways to give activations their scale (SmoothQuant's paper names the per-tensor ones
  O2 and O3):

      "token"   dynamic per token:   s_x[t] = max_k |X[t,k]| / 127, computed at run time
      "tensor"  dynamic per tensor:  s_x = max_{t,k} |X[t,k]| / 127 over the whole batch at run
                                     time (O2): one outlier anywhere coarsens every token's grid,
                                     and the result depends on what else is in the batch
      "static"  static per tensor:   s_x fixed before inference from calibration data (O3):
                                     ``max |X|`` over the calibration tokens / 127; values beyond
                                     ``127 · s_x`` saturate

* LLM.int8() (Dettmers et al., 2022): as W8A8, except that the input features holding an
  activation larger than ``threshold`` (6.0 in the paper) in the current batch are multiplied
  in floating point (with the dequantized int8 weight, as bitsandbytes does at inference):

      Y = X[:, O] · W'[:, O]^T  +  W8A8(X[:, ~O], W[:, ~O])
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.quant import QuantScheme, quantize

from .base import QuantizedLinear, check_linear

INT8 = QuantScheme(8, symmetric=True)      # the grid of every int8 tensor here: -128..127


EXACT_FLOAT32_DEPTH = 1024   # 1024 products of two int8 values sum to at most 1024 · 128² = 2^24


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact integer product of int8 ``a [M, K]`` and int8 ``b [N, K]``: ``a @ b.T`` in int32.

    A product of two int8 values is at most 128² = 2^14 in magnitude, so every partial sum over
    up to 1024 of them is an integer of at most 2^24, which float32 holds exactly, whatever the
    order of the additions. So float32 matmuls over chunks of 1024 input columns, added in
    int32, give the exact result; on CPUs this is far faster than torch's int8 GEMM
    (``torch._int_mm``).
    """
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.int32)                  # [M, N]
    for k in range(0, a.shape[1], EXACT_FLOAT32_DEPTH):
        chunk = slice(k, k + EXACT_FLOAT32_DEPTH)
        out += (a[:, chunk].float() @ b[:, chunk].float().t()).to(torch.int32)
    return out


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric int8 quantization of ``x [tokens, K]``, one scale per token (row)."""
    q, scale, _ = quantize(x, 8, symmetric=True, granularity="channel", axis=0)
    return q, scale


def quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric int8 quantization of ``x [tokens, K]`` with one scale for all of it
    (returned as ``[1, 1]``, so it broadcasts like the per-token scales)."""
    q, scale, _ = quantize(x, 8, symmetric=True, granularity="tensor")
    return q, scale.reshape(1, 1)


def quantize_static(x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of ``x`` with a scale fixed in advance (``[1, 1]``, from
    calibration): ``clamp(round(x / scale), -128, 127)``, so values beyond ``127 · scale``
    saturate."""
    return INT8.apply_grid(x, scale, torch.zeros_like(scale)).to(torch.int8), scale


ACTIVATION_QUANTIZERS = {"token": quantize_per_token, "tensor": quantize_per_tensor}
ACTIVATIONS = (*ACTIVATION_QUANTIZERS, "static")
ACTIVATION_LABELS = {"token": "per-token (dynamic)", "tensor": "per-tensor (dynamic)",
                     "static": "per-tensor (static)"}


def check_activations(activations: str) -> str:
    """How activations get their scales: ``"token"`` (one per token, at run time), ``"tensor"``
    (one for the whole batch, at run time) or ``"static"`` (one fixed from calibration)."""
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS} (one scale per token or one "
                         f"for the whole batch, both at run time, or one fixed by calibration), "
                         f"got {activations!r}")
    return activations


def static_input_scale(input_absmax: float | torch.Tensor) -> torch.Tensor:
    """The static activation scale ``max|X| / 127`` (``[1, 1]``) from the largest input
    magnitude seen on calibration data (a number, or per-channel maxima to reduce)."""
    absmax = torch.as_tensor(input_absmax, dtype=torch.float32).max()
    if not torch.isfinite(absmax) or absmax <= 0:
        raise ValueError(f"a static activation scale needs a finite, positive calibration "
                         f"max |x|, got {absmax.item()!r}")
    return (absmax / INT8.qmax).reshape(1, 1)


def outlier_features(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean mask ``[K]`` of the input features (columns of ``x [tokens, K]``) holding at
    least one activation with ``|x| > threshold``."""
    return x.abs().amax(dim=0) > threshold


def check_threshold(threshold: float) -> float:
    """LLM.int8()'s outlier threshold: >= 0 (inf = plain W8A8)."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (or inf for plain W8A8), got {threshold!r}")
    return float(threshold)


class W8A8Linear(QuantizedLinear):
    """Linear layer with int8 weights (per output channel) and int8 activations: per token,
    per tensor (``activations="tensor"``), both at run time, or with a static per-tensor scale
    fixed by calibration (``"static"``: the buffer ``input_scale``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 activations: str = "token") -> None:
        super().__init__(in_features, out_features, bias)
        self.activations = check_activations(activations)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, 1))
        if activations == "static":
            self.register_buffer("input_scale", torch.ones(1, 1))

    @classmethod
    def from_float(cls, linear: nn.Linear, *, input_absmax: float | torch.Tensor | None = None,
                   **kwargs) -> W8A8Linear:
        """Quantize ``linear``'s weight per output channel; ``activations="static"`` needs
        ``input_absmax``, the largest |input| seen on calibration data (or its per-channel
        maxima, e.g. :attr:`qcourse.calib.ActivationStats.absmax`)."""
        check_linear(linear)
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    **kwargs)
        if (layer.activations == "static") != (input_absmax is not None):
            raise ValueError("input_absmax (the calibration max |x|) is needed by, and only "
                             "used by, activations='static'")
        q, scale, _ = quantize(linear.weight.detach(), 8, symmetric=True, granularity="channel")
        layer.qweight.copy_(q)
        layer.weight_scale.copy_(scale)
        if input_absmax is not None:
            layer.input_scale.copy_(static_input_scale(input_absmax))
        layer.copy_bias(linear.bias)
        return layer

    def weight(self) -> torch.Tensor:
        """Dequantized weight ``Wq · s_w`` [N, K] (float32)."""
        return self.qweight.float() * self.weight_scale

    def int8_linear(self, x: torch.Tensor) -> torch.Tensor:
        """``s_x · s_w · (Xq Wq^T)`` for ``x [tokens, K]`` (float32, no bias)."""
        qx, scale_x = quantize_static(x, self.input_scale) if self.activations == "static" \
            else ACTIVATION_QUANTIZERS[self.activations](x)
        return int8_matmul(qx, self.qweight).float() * scale_x * self.weight_scale.t()

    def matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [tokens, K]`` (float32) times the weight, without bias."""
        return self.int8_linear(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()                # [tokens, K]
        y = self.matmul(rows)                                         # [tokens, N]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"W8 per-channel, A8 {ACTIVATION_LABELS[self.activations]}, "
                f"bias={self.bias is not None}")


class Int8MixedLinear(W8A8Linear):
    """LLM.int8(): W8A8, but input features with an activation above ``threshold`` stay float.

    ``last_outliers`` holds how many input features the latest forward pass kept in float.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 threshold: float = 6.0, activations: str = "token") -> None:
        super().__init__(in_features, out_features, bias, activations)
        self.threshold = check_threshold(threshold)
        self.last_outliers = 0

    def matmul(self, rows: torch.Tensor) -> torch.Tensor:
        outliers = outlier_features(rows, self.threshold)             # [K] bool
        self.last_outliers = int(outliers.sum())
        y = self.int8_linear(rows.masked_fill(outliers, 0.0))
        if self.last_outliers:
            y = y + rows[:, outliers] @ self.weight()[:, outliers].t()
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", threshold={self.threshold}"
