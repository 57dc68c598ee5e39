"""Exercises of notebook 04: GPTQ."""
from __future__ import annotations

import torch

from qcourse import gptq
from qcourse.exercises import Question


def _activations() -> list[tuple]:
    gen = torch.Generator().manual_seed(4)
    return [(torch.randn(10, 6, generator=gen),), (torch.randn(3, 8, generator=gen) * 5,),
            (torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]]),)]


def _feedback_cases() -> list[tuple]:
    gen = torch.Generator().manual_seed(5)
    cases = []
    for n, m in ((4, 5), (2, 1), (3, 8)):
        W1 = torch.randn(n, m, generator=gen)
        u = torch.randn(m, generator=gen)
        u[0] = u[0].abs() + 0.5                      # U_jj > 0
        q = torch.round(W1[:, 0] * 2) / 2            # the first column on a grid of step 0.5
        cases.append((W1, u, q))
    return cases


def _feedback(W1: torch.Tensor, u: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    W1 = W1.clone()
    gptq.error_feedback(W1, u, q)
    return W1


def _hessians() -> list[tuple]:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(50, 12, generator=gen) * torch.linspace(0.1, 3, 12)
    return [(gptq.hessian(x),), (torch.diag(torch.tensor([1.0, 5.0, 3.0, 0.5])),)]


hessian_from_activations = Question(
    name="04.1 hessian_from_activations",
    prompt="Write hessian_from_activations(X) for the inputs X [n, K] of a linear layer "
           "(n tokens, K input features): the GPTQ Hessian H = 2/n · XᵀX, shape [K, K].",
    reference=gptq.hessian,
    cases=_activations,
    rtol=1e-4,
    hint_text="The objective ||XWᵀ - XQᵀ||² summed over tokens is a quadratic in each row of W "
              "with matrix XᵀX; its second derivative is 2·XᵀX. Average over the n tokens. "
              "Mind the shape: [K, K], not [n, n].",
    solution_text="def hessian_from_activations(X):\n    return 2 / X.shape[0] * X.T @ X",
)

error_feedback = Question(
    name="04.2 error_feedback",
    prompt="Write error_feedback(W1, u, q): the first column w of W1 [N, m] is quantized to q "
           "[N]; u [m] is the row U[j, j:] of the upper Cholesky factor of H⁻¹ (u[0] = U_jj). "
           "Return the updated W1: e = (w - q) / u[0], W1 - e uᵀ (the first column becomes q).",
    reference=_feedback,
    cases=_feedback_cases,
    rtol=1e-4,
    atol=1e-5,
    hint_text="e is a vector of N errors, one per row, each divided by the same u[0]. The update "
              "is an outer product: e[:, None] * u[None, :]. Check: the first column becomes "
              "w - e·u[0] = q.",
    solution_text="def error_feedback(W1, u, q):\n"
                  "    e = (W1[:, 0] - q) / u[0]\n"
                  "    return W1 - e[:, None] * u[None, :]",
)

column_order = Question(
    name="04.3 column_order",
    prompt="Write column_order(H): the act-order permutation, the column indices sorted by "
           "the Hessian's diagonal, largest first (a LongTensor [K]).",
    reference=lambda H: torch.argsort(H.diagonal(), descending=True, stable=True),
    cases=_hessians,
    hint_text="diag(H)_k = 2/n Σ_t x_tk²: the energy of input k. Quantize the inputs that "
              "matter most first, while many columns are left to absorb their error.",
    solution_text="def column_order(H):\n"
                  "    return torch.argsort(H.diagonal(), descending=True)",
)
