"""Uniform (integer) quantization: the two formulas every method in this course builds on.

    quantize:    q  = clamp(round(x / scale + zero), qmin, qmax)      (apply_grid)
    dequantize:  x' = (q - zero) · scale

``scale`` and ``zero`` are chosen from the range of the values that share them:

* symmetric  (signed q in [-2^(b-1), 2^(b-1) - 1]):  scale = absmax / (2^(b-1) - 1),  zero = 0
* asymmetric (unsigned q in [0, 2^b - 1]):           scale = (max - min) / (2^b - 1),
                                                      zero  = round(-min / scale)
  with min <= 0 <= max forced, so that 0.0 is always exactly representable (q = zero).

Which values share a scale is the *granularity*: the whole tensor, one channel (a slice along
``axis``), or a group of ``group_size`` consecutive values along the last dimension.

:class:`QuantScheme` (bits, group size, symmetric) is the one place where a scheme is checked:
its bits and group size at construction, the packable widths (:meth:`QuantScheme.packable`) and a
layer's group size (:meth:`QuantScheme.resolved`) where a method asks; every method of the course
(RTN, GPTQ, AWQ, QAT, HQQ) takes one, or the same keyword arguments. :func:`check_finite` is the
one check of the tensors they quantize.
"""
from __future__ import annotations

import dataclasses

import torch

from qcourse.pack import check_packable_bits

GRANULARITIES = ("tensor", "channel", "group")
MIN_BITS, MAX_BITS = 2, 8


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class QuantScheme:
    """How a weight is quantized: ``bits`` (2–8), ``group_size`` consecutive inputs per scale
    (None: one group per row, i.e. per output channel) and a ``symmetric`` or asymmetric grid.

    Checked once, at construction. :meth:`packable` checks that a packed layer can store the
    bits; per layer, :meth:`resolved` (or :meth:`group_size_for`) resolves ``None`` to the
    layer's input width and checks that the group size divides it.
    """

    bits: int
    group_size: int | None = None
    symmetric: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.bits) or not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, "
                             f"got {self.bits!r}")
        if self.group_size is not None and (not _is_int(self.group_size) or self.group_size < 1):
            raise ValueError(f"group_size must be a positive integer or None (per-channel), "
                             f"got {self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise TypeError(f"symmetric must be True or False, got {self.symmetric!r}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def group_size_for(self, width: int, what: str = "the tensor") -> int:
        """The group size used for ``width`` inputs: ``width`` itself when per-channel; a clear
        error if the group size does not divide it (``what`` names the layer in the message)."""
        if self.group_size is None:
            return width
        if width % self.group_size:
            fitting = ", ".join(str(g) for g in (8, 16, 32, 64, 128, 256) if width % g == 0)
            raise ValueError(f"group_size {self.group_size} does not divide the {width} inputs "
                             f"of {what} (" + (f"group sizes that do: {fitting}; or " if fitting
                                              else "") + "None: one group per output channel)")
        return self.group_size

    def resolved(self, width: int, what: str = "the tensor") -> QuantScheme:
        """This scheme with the group size :meth:`group_size_for` ``width`` inputs (itself if it
        already divides them)."""
        g = self.group_size_for(width, what)
        return self if g == self.group_size else dataclasses.replace(self, group_size=g)

    def packable(self) -> QuantScheme:
        """This scheme, if :class:`~qcourse.layers.QuantLinear` can store its bits packed
        (2, 3, 4 or 8: :data:`qcourse.pack.PACKABLE_BITS`); else a clear error."""
        check_packable_bits(self.bits)
        return self

    def apply_grid(self, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """The integers ``clamp(round(x / scale + zero), qmin, qmax)`` (as floats, x's shape;
        ``scale`` and ``zero`` broadcast against ``x``)."""
        return torch.round(x / scale + zero).clamp(self.qmin, self.qmax)

    def snap(self, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """The nearest value on the grid: ``(apply_grid(x) - zero) · scale`` (x's shape)."""
        return (self.apply_grid(x, scale, zero) - zero) * scale

    def params(self, w: torch.Tensor, clip_ratio: float | torch.Tensor = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point of every group of ``w [..., K]`` from its min and max (each
        shrunk by ``clip_ratio``): ``[..., K / g]`` each."""
        grouped = _grouped(w.float(), self.group_size_for(w.shape[-1]))
        ratio = _check_clip_ratio(clip_ratio)
        return scale_and_zero(grouped.amin(-1) * ratio, grouped.amax(-1) * ratio, self.bits,
                              self.symmetric)

    def quantize(self, w: torch.Tensor, clip_ratio: float | torch.Tensor = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, scale, zero)`` of ``w [..., K]`` per group of the last dimension; ``q`` is int8
        (symmetric) or uint8, scale and zero are ``[..., K / g]`` float32."""
        check_finite(w)
        scale, zero = self.params(w, clip_ratio)
        g = self.group_size_for(w.shape[-1])
        q = self.apply_grid(_grouped(w.float(), g), scale[..., None], zero[..., None])
        return q.reshape(w.shape).to(torch.int8 if self.symmetric else torch.uint8), scale, zero

    def dequantize(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
                   ) -> torch.Tensor:
        """``(q - zero) · scale`` with one scale and zero per group (float32)."""
        return dequantize(q, scale, zero, group_size=self.group_size_for(q.shape[-1]))

    def fake_quantize(self, w: torch.Tensor, clip_ratio: float | torch.Tensor = 1.0
                      ) -> torch.Tensor:
        """``w`` after a round trip through the grid, in w's dtype."""
        return self.dequantize(*self.quantize(w, clip_ratio)).to(w.dtype)


def as_scheme(bits: int | QuantScheme, group_size: int | None = None,
              symmetric: bool = False) -> QuantScheme:
    """A :class:`QuantScheme` from either a scheme or the keyword arguments of one (which the
    scheme checks). Passing a scheme *and* other arguments is refused, so nothing is ignored."""
    if isinstance(bits, QuantScheme):
        if group_size is not None or symmetric:
            raise ValueError("pass either a QuantScheme or bits/group_size/symmetric, not both")
        return bits
    return QuantScheme(bits, group_size, symmetric)


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer grid ``(qmin, qmax)``: ``(-2^(b-1), 2^(b-1) - 1)`` if symmetric, else
    ``(0, 2^b - 1)``."""
    scheme = QuantScheme(bits, symmetric=symmetric)
    return scheme.qmin, scheme.qmax


def check_float(x: torch.Tensor, what: str = "x") -> None:
    """A floating-point tensor (of any values), or a clear TypeError."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}; "
                        f"convert it with .float() first")


def check_finite(x: torch.Tensor, what: str = "x", needed_by: str = "quantization",
                 hint: str = "") -> None:
    """A non-empty floating-point tensor of finite values, or a clear error naming ``what``,
    what needs finite values (``needed_by``) and, if given, a ``hint`` at the usual cause."""
    check_float(x, what)
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)}); there is nothing to quantize")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or Inf; {needed_by} needs finite values"
                         + (f" ({hint})" if hint else ""))


def _grouped(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """View ``x [..., K]`` as ``[..., K // group_size, group_size]`` (group_size divides K)."""
    if x.dim() == 0:
        raise ValueError("granularity 'group' needs a tensor with at least one dimension")
    return x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size)


def _channel_range(x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over everything but ``axis``, keeping x's ndim."""
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
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "group" and group_size is None:
        raise ValueError("granularity 'group' needs a group_size (e.g. 128)")
    if granularity != "group" and group_size is not None:
        raise ValueError(f"group_size={group_size} is only used with granularity='group' "
                         f"(got granularity={granularity!r}); leave it None")
    scheme = QuantScheme(bits, group_size, symmetric)
    check_finite(x)
    if granularity == "group":
        scheme.group_size_for(x.shape[-1] if x.dim() else 0, f"x (shape {tuple(x.shape)})")
        return scheme.quantize(x, clip_ratio)
    ratio = _check_clip_ratio(clip_ratio)
    xf = x.float()
    lo, hi = (xf.amin(), xf.amax()) if granularity == "tensor" else _channel_range(xf, axis)
    scale, zero = scale_and_zero(lo * ratio, hi * ratio, bits, symmetric)
    q = scheme.apply_grid(xf, scale, zero)
    return q.to(torch.int8 if symmetric else torch.uint8), scale, zero


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
    the integer grid that :func:`quantize` chooses (``kwargs``: its options). In this module
    "fake quantization" always means this round trip (:meth:`QuantScheme.fake_quantize` too);
    :func:`qcourse.qat.fake_quantize_ste` is its trainable form, :func:`qcourse.mx.fake_quantize`
    the float formats'."""
    q, scale, zero = quantize(x, bits, **kwargs)
    group_size = kwargs.get("group_size") if kwargs.get("granularity") == "group" else None
    return dequantize(q, scale, zero, group_size=group_size).to(x.dtype)


def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error ``mean((x - x_hat)^2)`` between a tensor and its reconstruction."""
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    return (x.double() - x_hat.double()).pow(2).mean().item()
