"""HQQ: half-quadratic quantization (Badri & Shaji, Mobius Labs, 2023), calibration-free.

Round-to-nearest picks each group's scale and zero point from its min and max; GPTQ and AWQ
improve on that with calibration data. HQQ needs no data: it keeps the min-max scale and moves
the (float) zero point ``z`` to minimise a *sparsity-promoting* error between the weights and
their reconstruction, with an l_p norm, ``p < 1``, that forgives a few large errors (outliers)
to make most errors small:

    min_z  || W - Q_z⁻¹(Q_z(W)) ||_p^p,     Q_z(W) = clamp(round(W · s + z), 0, 2^b - 1)
                                            Q_z⁻¹(q) = (q - z) / s

(``s`` is the *inverse* scale ``(2^b - 1) / (max - min)``, so that quantizing is a multiply, as in
the ``hqq`` package.) The rounding makes this non-smooth; half-quadratic splitting adds an extra
variable ``W_e`` (the error) and alternates two easy problems, each step with a closed form:

    W_e ← shrink_p(W - Q_z⁻¹(Q_z(W)), β)        generalized soft-thresholding:
                                                 shrink_p(x, β) = sign(x)·relu(|x| - |x|^(p-1)/β)
    z   ← mean over the group of (Q_z(W) - (W - W_e) · s)

with ``p = 0.7`` and ``β = 10``, at most 20 steps, stopping as soon as the mean absolute error
``mean|W - Q_z⁻¹(Q_z(W))|`` over the whole matrix stops decreasing. As in ``hqq`` 0.2.8's default
solver (``optimize_weights_proximal_legacy``): ``β`` stays fixed (its experimental v2 solver grows
it by ``κ = 1.01`` a step: ``HQQSettings(kappa=1.01)``), the zero returned is the one computed
in the last step taken, and 4-bit zeros start rounded (``round_zero``, hqq's default for 4 bits).

Note what ``β = 10`` means: ``shrink_p(x, β)`` is zero unless ``|x|^(2-p) > 1/β``, i.e.
``|x| > 0.17``. Rounding errors of LLM weights are far smaller, so on weights ``W_e = 0`` and the
update is the least-squares zero point ``z = mean(Q_z(W) - W · s)``, alternated with re-rounding;
the l_p part only acts on tensors with larger values (keys and values of a KV cache, say).

The zero point ends up a float, not an integer on the grid, so :class:`qcourse.layers.QuantLinear`
(integer zeros, packed) cannot hold it exactly: :class:`qcourse.layers.FloatZeroLinear` stores
packed codes with an fp16 scale *and* an fp16 zero per group (what ``hqq`` stores too).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from qcourse.layers import FloatZeroLinear
from qcourse.models import swap_linears
from qcourse.quant import QuantScheme, check_finite, dequantize

SMALL_RANGE, MAX_INVERSE_SCALE = 1e-4, 2e4   # as hqq: a flat group gets s = 1; s <= 2e4


@dataclasses.dataclass(frozen=True)
class HQQSettings:
    """The solver's constants (hqq 0.2.8's defaults; ``kappa`` > 1 grows β every step)."""

    p: float = 0.7
    beta: float = 10.0
    kappa: float = 1.0
    iters: int = 20


@dataclasses.dataclass
class HQQResult:
    """``q [N, K]`` codes in ``[0, 2^b)`` (uint8), ``scale`` and ``zero`` ``[N, K/g]`` (float32,
    ``W' = (q - zero) · scale``), and ``errors``: the mean absolute error at each step taken."""

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    errors: list[float]

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized ``W' [N, K]``: ``(q - zero) · scale`` per group."""
        return dequantize(self.q, self.scale, self.zero,
                          group_size=self.q.shape[1] // self.scale.shape[1])


def shrink_lp(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """Generalized soft-thresholding, the proximal step of ``|·|^p / β``:
    ``sign(x) · relu(|x| - |x|^(p-1) / β)`` (``p = 1``: plain soft-thresholding by ``1/β``)."""
    magnitude = x.abs()
    return torch.sign(x) * torch.relu(magnitude - (1.0 / beta) * magnitude.pow(p - 1))


def initial_parameters(groups: torch.Tensor, bits: int, round_zero: bool
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max start for ``groups [G, g]``: inverse scale ``s = (2^b - 1) / (max - min)`` (1 for
    a group narrower than 1e-4, at most 2e4) and zero ``z = -min · s`` (rounded if asked),
    each ``[G, 1]``."""
    lo, hi = groups.amin(1, keepdim=True), groups.amax(1, keepdim=True)
    width = hi - lo
    s = (2**bits - 1) / width
    s = torch.where(width.abs() <= SMALL_RANGE, torch.ones_like(s), s).clamp(max=MAX_INVERSE_SCALE)
    zero = -lo * s
    return s, torch.round(zero) if round_zero else zero


def optimize_zero(groups: torch.Tensor, s: torch.Tensor, zero: torch.Tensor, bits: int,
                  settings: HQQSettings = HQQSettings()) -> tuple[torch.Tensor, list[float]]:
    """The half-quadratic iterations on the zero points of ``groups [G, g]`` (module
    docstring): returns the new zeros ``[G, 1]`` and the error of every step taken."""
    top, beta = 2**bits - 1, settings.beta
    best, errors = float("inf"), []
    for _ in range(settings.iters):
        q = torch.round(groups * s + zero).clamp(0, top)
        W_r = (q - zero) / s
        W_e = shrink_lp(groups - W_r, beta, settings.p)
        zero = torch.mean(q - (groups - W_e) * s, dim=1, keepdim=True)
        beta *= settings.kappa
        error = torch.abs(groups - W_r).mean().item()
        errors.append(error)
        if error >= best:
            break
        best = error
    return zero, errors


def _scheme(bits: int | QuantScheme, group_size: int | None) -> QuantScheme:
    """``bits`` if it is a scheme (HQQ's grid is asymmetric: ``symmetric`` is not used), else
    ``QuantScheme(bits, group_size)``."""
    return bits if isinstance(bits, QuantScheme) else QuantScheme(bits, group_size)


def hqq_quantize(W: torch.Tensor, bits: int | QuantScheme, group_size: int | None = 64, *,
                 round_zero: bool | None = None, settings: HQQSettings = HQQSettings(),
                 optimize: bool = True) -> HQQResult:
    """HQQ of one weight ``W [N, K]``, ``bits`` (2–8) per value in groups of ``group_size``
    consecutive inputs (None: per row), or a :class:`~qcourse.quant.QuantScheme` (asymmetric).
    ``round_zero``: start from rounded zeros (default: for 4 bits, as hqq). ``optimize=False``
    stops at the min-max start (round-to-nearest with a float zero)."""
    scheme = _scheme(bits, group_size)
    check_finite(W, "W", "HQQ")
    if W.dim() != 2:
        raise ValueError(f"W must be a 2-D weight [out_features, in_features], got shape "
                         f"{tuple(W.shape)}")
    n, k = W.shape
    g = scheme.group_size_for(k, "W")
    groups = W.detach().float().reshape(-1, g)                  # [N·K/g, g], row-major
    s, zero = initial_parameters(groups, scheme.bits,
                                 scheme.bits == 4 if round_zero is None else round_zero)
    errors: list[float] = []
    if optimize:
        zero, errors = optimize_zero(groups, s, zero, scheme.bits, settings)
    q = torch.round(groups * s + zero).clamp(0, 2**scheme.bits - 1)
    shape = (n, k // g)
    return HQQResult(q.reshape(n, k).to(torch.uint8), (1.0 / s).reshape(shape),
                     zero.reshape(shape), errors)


def hqq_layer(linear: nn.Linear, bits: int | QuantScheme, group_size: int | None = 64,
              **options) -> FloatZeroLinear:
    """HQQ-quantize ``linear`` (``bits``/``group_size`` or a scheme, as :func:`hqq_quantize`)
    into a packed :class:`~qcourse.layers.FloatZeroLinear`."""
    scheme = _scheme(bits, group_size).resolved(linear.in_features, "this layer")
    result = hqq_quantize(linear.weight, scheme, **options)
    return FloatZeroLinear.from_quantized(result.q, result.scale, result.zero, scheme.bits,
                                          scheme.group_size, bias=linear.bias)


def quantize_model(model: nn.Module, bits: int = 4, group_size: int | None = 64, **options
                   ) -> nn.Module:
    """HQQ on every linear layer (not the output head), in place; returns the model. No
    calibration data."""
    scheme = QuantScheme(bits, group_size).packable()
    return swap_linears(model, lambda name, linear: hqq_layer(linear, scheme, **options))
