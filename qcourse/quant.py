"""Uniform (integer) quantization: the two formulas every method in this course builds on.

    quantize:    q  = clamp(round(x / scale + zero), qmin, qmax)
    dequantize:  x' = (q - zero) · scale

``scale`` and ``zero`` are chosen from the range of the values that share them:

* symmetric  (signed q in [-2^(b-1), 2^(b-1) - 1]):  scale = absmax / (2^(b-1) - 1),  zero = 0
* asymmetric (unsigned q in [0, 2^b - 1]):           scale = (max - min) / (2^b - 1),
                                                      zero  = round(-min / scale)
  with min <= 0 <= max forced, so that 0.0 is always exactly representable (q = zero).

Which values share a scale is the *granularity*: the whole tensor, one channel (a slice along
``axis``), or a group of ``group_size`` consecutive values along the last dimension.
"""
from __future__ import annotations

import torch

GRANULARITIES = ("tensor", "channel", "group")


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 2 to 8, got {bits!r}")


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer grid ``(qmin, qmax)``: ``(-2^(b-1), 2^(b-1) - 1)`` if symmetric, else
    ``(0, 2^b - 1)``."""
    _check_bits(bits)
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; "
                        "convert it with x.float() first")
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); there is nothing to quantize")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf; quantization needs finite values")


def _grouped(x: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View ``x [..., K]`` as ``[..., K // group_size, group_size]``."""
    if x.dim() == 0:
        raise ValueError("granularity 'group' needs a tensor with at least one dimension")
    k = x.shape[-1]
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"granularity 'group' needs a positive integer group_size, "
                         f"got {group_size!r}")
    if k % group_size:
        raise ValueError(f"group_size {group_size} does not divide the last dimension {k} "
                         f"of x (shape {tuple(x.shape)})")
    return x.reshape(*x.shape[:-1], k // group_size, group_size)


def _range(x: torch.Tensor, granularity: str, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of the values that share one scale. For "group", ``x`` is already grouped."""
    if granularity == "tensor":
        return x.amin(), x.amax()
    if granularity == "group":
        return x.amin(dim=-1), x.amax(dim=-1)
    if x.dim() == 0:
        raise ValueError("granularity 'channel' needs a tensor with at least one dimension")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for a tensor of shape {tuple(x.shape)}")
    others = [d for d in range(x.dim()) if d != axis % x.dim()]
    if not others:  # a 1-D tensor: every element is its own channel
        return x, x
    return x.amin(dim=others, keepdim=True), x.amax(dim=others, keepdim=True)


def _check_clip_ratio(clip_ratio: float | torch.Tensor) -> torch.Tensor:
    ratio = torch.as_tensor(clip_ratio, dtype=torch.float32)
    if not torch.isfinite(ratio).all() or (ratio <= 0).any() or (ratio > 1).any():
        raise ValueError(f"clip_ratio must lie in (0, 1], got {clip_ratio!r}")
    return ratio


def scale_and_zero(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for values in ``[lo, hi]`` (elementwise tensors of ranges).

    symmetric:  scale = max(|lo|, |hi|) / (2^(b-1) - 1), zero = 0
    asymmetric: scale = (hi - lo) / (2^b - 1) after widening to lo <= 0 <= hi,
                zero  = clamp(round(-lo / scale), qmin, qmax)
    A zero range (all values 0) gets scale 1, so nothing is divided by zero.
    """
    qmin, qmax = qrange(bits, symmetric)
    lo, hi = lo.float().clamp(max=0), hi.float().clamp(min=0)
    if symmetric:
        width, levels = torch.maximum(-lo, hi), qmax
    else:
        width, levels = hi - lo, qmax - qmin
    scale = torch.where(width > 0, width / levels, torch.ones_like(width))
    if symmetric:
        zero = torch.zeros_like(scale)
    else:
        zero = torch.round(lo.abs() / scale).clamp(qmin, qmax)  # |lo| = -lo: avoids -0.0
    return scale, zero


def quantize(x: torch.Tensor, bits: int, *, symmetric: bool, granularity: str,
             group_size: int | None = None, axis: int = 0,
             clip_ratio: float | torch.Tensor = 1.0,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``x`` to ``bits``-bit integers: ``q = clamp(round(x / scale + zero), qmin, qmax)``.

    Args:
        symmetric: signed grid with zero = 0 (``int8`` output) or unsigned grid with a zero
            point (``uint8`` output).
        granularity: ``"tensor"`` (one scale), ``"channel"`` (one scale per index of ``axis``;
            scale/zero keep x's ndim with size 1 elsewhere, e.g. ``[N, 1]``) or ``"group"``
            (one scale per ``group_size`` consecutive values of the last dimension; scale/zero
            have shape ``x.shape[:-1] + (K // group_size,)``).
        clip_ratio: multiplies the range (min, max or absmax) before the scale is computed;
            values outside the shrunken range are clamped. A float or a tensor broadcastable
            to the scale's shape.

    Returns:
        ``(q, scale, zero)``: q has x's shape; scale is float32; zero is float32 holding integers.
    """
    _check_bits(bits)
    _check_input(x)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity != "group" and group_size is not None:
        raise ValueError(f"group_size={group_size} is only used with granularity='group' "
                         f"(got granularity={granularity!r}); leave it None")
    ratio = _check_clip_ratio(clip_ratio)
    xf = x.float()
    if granularity == "group":
        xf = _grouped(xf, group_size)
    lo, hi = _range(xf, granularity, axis)
    scale, zero = scale_and_zero(lo * ratio, hi * ratio, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    expand = (lambda t: t.unsqueeze(-1)) if granularity == "group" else (lambda t: t)
    q = torch.round(xf / expand(scale) + expand(zero)).clamp(qmin, qmax)
    q = q.reshape(x.shape).to(torch.int8 if symmetric else torch.uint8)
    return q, scale, zero


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, *,
               group_size: int | None = None) -> torch.Tensor:
    """Back to floats: ``x' = (q - zero) · scale`` (float32).

    With ``group_size``, ``scale`` and ``zero`` hold one value per group of the last dimension
    and are repeated ``group_size`` times along it; otherwise they must broadcast against ``q``.
    """
    scale, zero = torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(zero,
                                                                               dtype=torch.float32)
    if group_size is not None:
        if scale.dim() == 0 or scale.shape[-1] * group_size != q.shape[-1]:
            raise ValueError(f"scale of shape {tuple(scale.shape)} with group_size {group_size} "
                             f"does not cover the last dimension of q (shape {tuple(q.shape)})")
        scale = scale.repeat_interleave(group_size, dim=-1)
        zero = zero.repeat_interleave(group_size, dim=-1)
    try:
        torch.broadcast_shapes(q.shape, scale.shape, zero.shape)
    except RuntimeError:
        raise ValueError(f"scale {tuple(scale.shape)} and zero {tuple(zero.shape)} do not "
                         f"broadcast against q {tuple(q.shape)}; for per-group scales pass "
                         "group_size") from None
    return (q.float() - zero) * scale


def fake_quantize(x: torch.Tensor, bits: int, **kwargs) -> torch.Tensor:
    """``dequantize(quantize(x))`` in x's dtype: the value x takes after a round trip through
    the integer grid (what quantization-aware training and the error plots use)."""
    q, scale, zero = quantize(x, bits, **kwargs)
    group_size = kwargs.get("group_size") if kwargs.get("granularity") == "group" else None
    return dequantize(q, scale, zero, group_size=group_size).to(x.dtype)


def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error ``mean((x - x_hat)^2)`` between a tensor and its reconstruction."""
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    return (x.double() - x_hat.double()).pow(2).mean().item()
