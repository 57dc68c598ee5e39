"""Exercises of notebook 00: memory math and perplexity."""
from __future__ import annotations

import math

import torch

from qcourse.exercises import Question
from qcourse.formats import memory_bytes


def _nll_cases() -> list[tuple]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.tensor([2.0]),), (torch.tensor([0.5, 1.5, 2.5]),),
            (torch.rand(100, generator=generator) * 6,), (torch.zeros(4),)]


def _perplexity_from_nll(nll: torch.Tensor) -> float:
    return math.exp(nll.mean().item())


weight_bytes = Question(
    name="00.1 weight_bytes",
    prompt="Write weight_bytes(n_params, bits) returning the bytes needed to store n_params "
           "weights at `bits` bits each (no scales, no rounding up beyond whole bytes).",
    reference=lambda n, bits: memory_bytes(n, bits),
    forbid=(memory_bytes,),
    cases=lambda: [(1, 8), (8, 4), (1_000, 16), (7_000_000_000, 16), (7_000_000_000, 4),
                   (135_000_000, 32), (3, 4)],
    hint_text="A byte has 8 bits: bytes = n_params × bits / 8. Round up: 3 weights of 4 bits "
              "still occupy 2 bytes.",
    solution_text="def weight_bytes(n_params, bits):\n    return math.ceil(n_params * bits / 8)",
)

perplexity_from_nll = Question(
    name="00.2 perplexity_from_nll",
    prompt="Write perplexity_from_nll(nll) turning a 1-D tensor of per-token negative "
           "log-likelihoods (natural log) into a perplexity (a Python float).",
    reference=_perplexity_from_nll,
    cases=_nll_cases,
    hint_text="Perplexity is the exponential of the *average* negative log-likelihood per token.",
    solution_text="def perplexity_from_nll(nll):\n    return math.exp(nll.mean().item())",
)
