"""Exercises of notebook 00: memory math, perplexity, and two predictions about rounding."""
from __future__ import annotations

import math

import torch

from qcourse.exercises import Question
from qcourse.formats import bits_per_weight, memory_bytes
from qcourse.quant import quantize


def _nll_cases() -> list[tuple]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.tensor([2.0]),), (torch.tensor([0.5, 1.5, 2.5]),),
            (torch.rand(100, generator=generator) * 6,), (torch.zeros(4),)]


def _perplexity_from_nll(nll: torch.Tensor) -> float:
    return math.exp(nll.mean().item())


def _two_bit_levels() -> int:
    """How many different integers symmetric 2-bit rounding uses on a weight row (measured)."""
    row = torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))
    q, _, _ = quantize(row, 2, symmetric=True, granularity="channel")
    return len(torch.unique(q))


weight_bytes = Question(
    name="00.1 weight_bytes",
    prompt="Write weight_bytes(n_params, bits) returning the bytes needed to store n_params "
           "weights at `bits` bits each (no scales; round up to whole bytes).",
    reference=lambda n, bits: memory_bytes(n, bits),
    forbid=(memory_bytes, bits_per_weight),
    cases=lambda: [(1, 8), (8, 4), (1_000, 16), (7_000_000_000, 16), (7_000_000_000, 4),
                   (135_000_000, 32), (3, 4)],
    hints=("Count bits first (n_params × bits), then turn them into bytes of 8 bits each.",
           "n_params × bits is the number of bits. What happens to 3 weights of 4 bits: 12 "
           "bits are not a whole number of bytes, and a file cannot hold half a byte."),
    solution_text="def weight_bytes(n_params, bits):\n    return math.ceil(n_params * bits / 8)",
)

perplexity_from_nll = Question(
    name="00.2 perplexity_from_nll",
    prompt="Write perplexity_from_nll(nll) turning a 1-D tensor of per-token negative "
           "log-likelihoods l_t = -log p_t (natural log) into the perplexity, the geometric "
           "mean of the 1 / p_t (a Python float).",
    reference=_perplexity_from_nll,
    cases=_nll_cases,
    hints=("Write 1 / p_t with l_t: since l_t = -log p_t, 1 / p_t = ... . Multiplying "
           "thousands of them overflows, so do not build the product itself.",
           "Take the logarithm of the geometric mean: the log of a product is a sum, and the "
           "power 1/N becomes a factor. That gives log PPL in terms of the l_t; what undoes "
           "a natural logarithm?"),
    solution_text="def perplexity_from_nll(nll):\n    return math.exp(nll.mean().item())",
)

two_bit_levels = Question(
    name="00.3 two_bit_levels",
    prompt="Symmetric round-to-nearest with b bits stores round(w / s) with one scale s per "
           "row, s = max|w| / (2^(b-1) - 1), so the row's largest |w| lands on the largest "
           "integer. How many different values can a weight take after symmetric 2-bit "
           "rounding? (a number)",
    reference=_two_bit_levels,
    hints=("For b = 2, what is s in terms of max|w|? Then what is the range of w / s?",
           "A 2-bit field has 4 codes (-2..1), but this scale sends the row's largest |w| "
           "to the largest code. Which of the four codes can round(w / s) reach when every "
           "|w| is at most max|w|?"),
    solution_text="two_bit_levels = 3   # -1, 0, +1 times the row's scale",
)

two_bit_perplexity = Question(
    name="00.4 two_bit_perplexity",
    prompt="Predict before running the rounding experiment: compared with fp32, the perplexity "
           "of qcourse-tiny with every linear layer rounded to symmetric 2-bit per channel "
           "will be ...",
    choices={"a": "about the same (within 1 %)", "b": "a few percent higher",
             "c": "about 1.5 times higher", "d": "two times higher or more"},
    reference=lambda: "d",  # measured in the notebook (quick protocol): x2.97; tests/test_ex00.py
                            # re-measures it
    hints=("Count the values a weight can take at 2 bits (question 00.3). What happens to the "
           "small weights of a row whose largest weight sets the scale?",
           "With levels -s, 0, +s and s = max|w|, every weight smaller than half the largest "
           "one of its row becomes exactly 0."),
    solution_text="two_bit_perplexity = 'd'   # most weights of a row round to 0 at 2 bits",
)
