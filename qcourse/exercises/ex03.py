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
    prompt="Write ste_fake_quantize(x, scale, zero, qmin, qmax): in the forward pass, x after the "
           "round trip through the integer grid [qmin, qmax] of section 2; in the backward pass, "
           "the gradient of section 2's clipped straight-through estimator, not torch.round's. "
           "The check compares the values and the gradient your function hands back, inside "
           "the grid, exactly on both edges, just past them and far outside.",
    reference=lambda x, scale, zero, qmin, qmax: value_and_gradient(
        _reference_ste, x, scale, zero, qmin, qmax),
    cases=_ste_cases,
    hints=("Split the problem: first compute the forward value y with plain torch operations, "
           "without caring about its gradient (torch.round's is zero anyway). Then ask: how "
           "do I return a tensor whose value is y but whose gradient is the one I choose?",
           "For any tensors a and b, a + (b - a).detach() has the value of b and the gradient "
           "of a. Which a has gradient 1 where the clipped STE passes the gradient and 0 "
           "elsewhere? Look again at which u count as inside: the edges themselves, and u "
           "before rounding, not after. (A torch.autograd.Function with your own backward "
           "works too.)"),
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
    prompt="Predict before the measurement: QAT moves the latent float weights (the grid moves "
           "little). Which weights end up on a *different* integer code most often?",
    choices=WHICH_WEIGHTS,
    reference=_most_moved,
    hints=("A weight's code changes when it crosses a rounding boundary. How far does each "
           "kind of weight have to travel to cross one?",
           "With AdamW every step moves a weight by about the learning rate, whatever its "
           "gradient's size: over a short run, a few percent of a step. Compare that with "
           "the distance each kind of weight must travel."),
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
    prompt="Derive and write lsq_grad_scale(n, bits): the factor g that LSQ multiplies the "
           "step size's gradient by, for one step size shared by n weights on a signed "
           "bits-bit grid, from section 3's two observations (the step size's gradient is a "
           "sum over the weights that share it; the weights span a number of steps set by "
           "the width). Check your function on the widths you know: groups of 128 at 4 bits.",
    reference=qat.lsq_grad_scale,
    cases=_grad_scale_cases,
    hints=("How does the size of a sum of n terms of similar size and random sign grow with "
           "n? That is the first factor by which the step size's gradient is too large.",
           "LSQ's starting step is s = 2·mean(|w|)/√Q_P, with Q_P the number of grid levels "
           "above zero: so w/s is of order √Q_P. Count Q_P on the signed grid "
           "[-2^(b-1), 2^(b-1) - 1]. How do the two factors combine, and what must g do to "
           "them?"),
    solution_text="def lsq_grad_scale(n, bits):\n"
                  "    return 1 / math.sqrt(n * (2 ** (bits - 1) - 1))",
)
