"""Exercises of notebook 03: quantization-aware training."""
from __future__ import annotations

import dataclasses
import functools
import math

import torch

from qcourse import qat
from qcourse.exercises import Question
from qcourse.quant import QuantScheme

# ---------------------------------------------------------------- 03.1 the STE


def _reference_ste(x: torch.Tensor, scale: float, zero: float, qmin: int, qmax: int) -> torch.Tensor:
    scheme = QuantScheme(int(math.log2(qmax - qmin + 1)), None, symmetric=qmin < 0)
    assert (scheme.qmin, scheme.qmax) == (qmin, qmax)
    return qat.fake_quantize(x, torch.tensor(scale), torch.tensor(zero), scheme)


def value_and_gradient(fn, x: torch.Tensor, scale: float, zero: float, qmin: int, qmax: int):
    """``(fn(x, ...), d/dx of Σ weights·fn(x, ...))`` with fixed random weights, or ``...`` if
    ``fn`` still returns the placeholder."""
    x = x.clone().requires_grad_(True)
    y = fn(x, scale, zero, qmin, qmax)
    if y is Ellipsis:
        return Ellipsis
    if not isinstance(y, torch.Tensor):
        return y, None
    if y.requires_grad:           # torch.round alone gives a result without any gradient
        weights = torch.linspace(0.5, 1.5, x.numel()).reshape(x.shape)
        (y * weights).sum().backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return y.detach(), grad


def _ste_cases() -> list[tuple]:
    gen = torch.Generator().manual_seed(3)
    # 3-bit signed grid [-4, 3], step 0.5: values inside, on both edges, just past each edge,
    # and far outside
    edges = torch.tensor([1.5, -2.0, 1.625, -2.125, 0.26, -0.74, 7.0, -9.0])
    return [(edges, 0.5, 0.0, -4, 3),
            (torch.randn(12, generator=gen) * 2, 0.3, 7.0, 0, 15),          # 4-bit unsigned
            (torch.randn(3, 5, generator=gen), 0.25, 0.0, -2, 1)]           # 2-bit signed


@dataclasses.dataclass
class GradientQuestion(Question):
    """A question whose answer is a function of ``(x, scale, zero, qmin, qmax)``: its value
    *and* its gradient with respect to ``x`` are checked."""

    def wrap(self, answer):
        return lambda *args: value_and_gradient(answer, *args)


ste_fake_quantize = GradientQuestion(
    name="03.1 ste_fake_quantize",
    prompt="Write ste_fake_quantize(x, scale, zero, qmin, qmax): forward, x on the grid, "
           "(clamp(round(x/scale + zero), qmin, qmax) - zero) * scale; backward, the clipped "
           "straight-through estimator: the gradient passes unchanged where "
           "qmin <= x/scale + zero <= qmax and is 0 elsewhere. Both are checked. (A "
           "torch.autograd.Function, or the trick x + (y - x).detach() with a mask.)",
    reference=lambda x, scale, zero, qmin, qmax: value_and_gradient(
        _reference_ste, x, scale, zero, qmin, qmax),
    cases=_ste_cases,
    hint_text="torch.round has gradient 0, so write the forward value y without caring about "
              "gradients, then return something whose value is y and whose gradient is the "
              "mask: m = (u >= qmin) & (u <= qmax) with u = x/scale + zero; "
              "x * m + (y - x * m).detach() has value y and gradient m.",
    solution_text="def ste_fake_quantize(x, scale, zero, qmin, qmax):\n"
                  "    u = x / scale + zero\n"
                  "    y = (torch.clamp(torch.round(u), qmin, qmax) - zero) * scale\n"
                  "    inside = ((u >= qmin) & (u <= qmax)).to(x.dtype)\n"
                  "    return x * inside + (y - x * inside).detach()",
)

# ---------------------------------------------------------------- 03.2 which weights move


@functools.lru_cache(maxsize=4)
@torch.no_grad()
def code_changes_by_distance(steps: int = 150, seed: int = 0) -> torch.Tensor:
    """A small QAT run: a 3-bit layer ``W [32, 64]`` (per-row min-max grid) trained with the STE
    to match a teacher ``W + noise`` on random inputs. Returns, for the weights in each
    quarter of starting distance to the nearest grid point (0-0.125, ..., 0.375-0.5 steps), the
    fraction whose integer code changed."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(32, 64, generator=gen)
    target = w0 + 0.15 * torch.randn(32, 64, generator=gen)
    scheme = QuantScheme(3, None, symmetric=False)
    scale, zero = scheme.params(w0)
    codes0 = scheme.apply_grid(w0, scale, zero)
    distance = (w0 / scale + zero - codes0).abs().clamp(max=0.5)
    w = w0.clone()
    for _ in range(steps):
        x = torch.randn(64, 64, generator=gen)
        with torch.enable_grad():
            w.requires_grad_(True)
            out = x @ qat.fake_quantize(w, scale, zero, scheme).t()
            loss = (out - x @ target.t()).pow(2).mean()
            loss.backward()
        w = (w - 0.05 * w.grad).detach()
    changed = scheme.apply_grid(w, scale, zero) != codes0
    bins = torch.clamp((distance / 0.125).long(), max=3)
    return torch.stack([changed[bins == b].float().mean() for b in range(4)])


WHICH_WEIGHTS = {
    "a": "the weights that started close to a grid point (distance to it near 0)",
    "b": "the weights that started near a rounding boundary (half a step from the grid points)",
    "c": "all weights equally, whatever their distance to the grid",
}


def _most_moved() -> str:
    rates = code_changes_by_distance()
    if rates[-1] > 2 * rates[0] and rates[-1] == rates.max():
        return "b"
    if rates[0] > 2 * rates[-1]:
        return "a"
    return "c"


which_weights_move = Question(
    name="03.3 which_weights_move",
    prompt="QAT moves the latent float weights (the grid moves little). Which weights end up "
           "on a *different* integer code most often? Answer 'a', 'b' or 'c':\n"
           + "\n".join(f"  {k}: {v}" for k, v in WHICH_WEIGHTS.items()),
    reference=_most_moved,
    hint_text="A weight's code changes when it crosses a rounding boundary. How far does each "
              "kind of weight have to travel to cross one?",
    solution_text="'b': a weight half a step from two grid points needs a tiny push to round "
                  "the other way; one sitting on a grid point must travel half a step. "
                  "qcourse.exercises.ex03.code_changes_by_distance() measures it on a small "
                  "layer.",
)

# ---------------------------------------------------------------- 03.3 LSQ's gradient scale


def _grad_scale_cases() -> list[tuple]:
    return [(128, 4), (64, 2), (32, 3), (4096, 8), (1, 4)]


lsq_grad_scale = Question(
    name="03.2 lsq_grad_scale",
    prompt="Write lsq_grad_scale(n, bits): LSQ's gradient scale g = 1/sqrt(N · Q_P) for a step "
           "size shared by N = n values, with Q_P = 2^(bits-1) - 1 the grid levels above zero.",
    reference=qat.lsq_grad_scale,
    cases=_grad_scale_cases,
    hint_text="Q_P at 4 bits is 7 (levels 1..7 above zero on the grid -8..7). The scale "
              "divides by the square root of the product, not by the product.",
    solution_text="def lsq_grad_scale(n, bits):\n"
                  "    return 1 / math.sqrt(n * (2 ** (bits - 1) - 1))",
)
