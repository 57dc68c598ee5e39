"""Exercises of notebook 04: GPTQ (the Hessian, one error-feedback step, act-order, the loop
over a block) and predictions about what it changes."""
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


def _block_reference(W1: torch.Tensor, U1: torch.Tensor, scale: torch.Tensor, bits: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ's inner loop over one block, with the package's :func:`~qcourse.gptq.error_feedback`:
    column i is rounded to the symmetric grid (as updated by the columns before it), then its
    error, divided by U1[i, i], moves the columns after it."""
    W1, qmax = W1.clone(), 2 ** (bits - 1) - 1
    Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
    for i in range(W1.shape[1]):
        Q1[:, i] = torch.round(W1[:, i] / scale).clamp(-qmax - 1, qmax) * scale
        Err1[:, i] = gptq.error_feedback(W1[:, i:], U1[i, i:], Q1[:, i])
    return Q1, Err1


def _block_cases() -> list[tuple]:
    gen = torch.Generator().manual_seed(7)
    cases = []
    for n, b, bits, shrink in ((4, 6, 4, 1.0), (8, 16, 3, 1.0), (3, 5, 2, 1.0), (6, 8, 3, 0.6)):
        X = torch.randn(4 * b, b, generator=gen) @ (torch.eye(b) + 0.5 * torch.randn(b, b,
                                                                                     generator=gen))
        U1 = gptq.inverse_hessian_cholesky(gptq.hessian(X))
        W1 = torch.randn(n, b, generator=gen)
        scale = shrink * W1.abs().amax(dim=1) / (2 ** (bits - 1) - 1)   # shrink < 1: clipping
        cases.append((W1, U1, scale, bits))
    return cases


def _hessians() -> list[tuple]:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(50, 12, generator=gen) * torch.linspace(0.1, 3, 12)
    return [(gptq.hessian(x),), (torch.diag(torch.tensor([1.0, 5.0, 3.0, 0.5])),)]


hessian_from_activations = Question(
    name="04.1 hessian_from_activations",
    prompt="Write hessian_from_activations(X) for the inputs X [n, K] of a linear layer "
           "(n tokens, K input features): the GPTQ Hessian H = 2/n · XᵀX, shape [K, K].",
    reference=gptq.hessian,
    forbid=(gptq.hessian, gptq.Hessian.add),
    cases=_activations,
    rtol=1e-4,
    hints=("H has one row and one column per input feature: [K, K]. Which product of X with "
           "itself has that shape, XᵀX or XXᵀ?",
           "The error of one output row, Σ_t (x_t·(w - q))², is a quadratic form in w - q; its "
           "second derivative is twice the matrix of that form. GPTQ then averages over the n "
           "tokens so H does not grow with the calibration set."),
    solution_text="def hessian_from_activations(X):\n    return 2 / X.shape[0] * X.T @ X",
)

error_feedback = Question(
    name="04.2 error_feedback",
    prompt="Write error_feedback(W1, u, q): the first column w of W1 [N, m] is quantized to q "
           "[N]; u [m] is the row U[j, j:] of the upper Cholesky factor of H⁻¹ (u[0] = U_jj). "
           "Return the updated W1: e = (w - q) / u[0], W1 - e uᵀ (the first column becomes q).",
    reference=_feedback,
    forbid=(gptq.error_feedback, gptq.gptq),
    cases=_feedback_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("e has one entry per row of W1 (N of them). The update W1 - e uᵀ changes every "
           "column: which product of a column vector and a row vector gives an [N, m] matrix?",
           "An outer product: broadcast e as a column and u as a row. Check your result on the "
           "first column: w - e·u[0] should be exactly q."),
    solution_text="def error_feedback(W1, u, q):\n"
                  "    e = (W1[:, 0] - q) / u[0]\n"
                  "    return W1 - e[:, None] * u[None, :]",
)

column_order = Question(
    name="04.3 column_order",
    prompt="Write column_order(H): the act-order permutation, the column indices sorted by "
           "the Hessian's diagonal, largest first (a LongTensor [K]).",
    reference=lambda H: torch.argsort(H.diagonal(), descending=True, stable=True),
    forbid=(gptq.gptq, gptq.gptq_quantize_layer),
    cases=_hessians,
    hints=("diag(H)_k = 2/n Σ_t x_tk² is the energy of input k. Which inputs should be "
           "quantized first, while many columns are left to absorb their error?",
           "You want indices, not values: a sort that returns the permutation, in decreasing "
           "order of the diagonal."),
    solution_text="def column_order(H):\n"
                  "    return torch.argsort(H.diagonal(), descending=True)",
)

gptq_block = Question(
    name="04.4 gptq_block",
    prompt="Write gptq_block(W1, U1, scale, bits) -> (Q1, Err1): GPTQ's loop over the columns of "
           "one block. W1 [N, B] is the block, U1 [B, B] the matching block of the upper "
           "Cholesky factor of H⁻¹, scale [N] one scale per row. For i = 0..B-1: round column i "
           "*as updated so far* to the symmetric grid, q = clamp(round(w / scale), -2^(b-1), "
           "2^(b-1) - 1) · scale; store it in Q1[:, i]; push its error onto the columns i.. with "
           "the step of exercise 04.2 (u = U1[i, i:]) and store e = (w - q) / U1[i, i] in "
           "Err1[:, i]. Do not modify the W1 you were given (work on a copy).",
    reference=_block_reference,
    forbid=(gptq.error_feedback, gptq.gptq, gptq.gptq_quantize_layer, gptq.obq_quantize_layer),
    cases=_block_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("One loop over the columns. At step i, which version of column i do you round: the "
           "original one, or the one the earlier steps have moved?",
           "Work on W1 = W1.clone(). At step i only the columns from i on move, by your "
           "error_feedback of 04.2 applied to W1[:, i:] with U1[i, i:]; remember e for Err1."),
    solution_text=(
        "def gptq_block(W1, U1, scale, bits):\n"
        "    W1, qmax = W1.clone(), 2 ** (bits - 1) - 1\n"
        "    Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)\n"
        "    for i in range(W1.shape[1]):\n"
        "        q = torch.round(W1[:, i] / scale).clamp(-qmax - 1, qmax) * scale\n"
        "        e = (W1[:, i] - q) / U1[i, i]\n"
        "        W1[:, i:] -= e[:, None] * U1[i, i:][None, :]\n"
        "        Q1[:, i], Err1[:, i] = q, e\n"
        "    return Q1, Err1"),
)

gptq_gain_3bit = Question(
    name="04.5 gptq_gain_3bit",
    prompt="Predict before section 4 measures it: on block 0's mlp.down_proj at 3 bits, groups "
           "of 128, GPTQ's output error tr((W - Q) H (W - Q)ᵀ) compared with round-to-nearest "
           "will be ...",
    choices={"a": "about the same", "b": "about half", "c": "3 to 5 times lower",
             "d": "more than 10 times lower"},
    reference=lambda: "c",  # measured in the notebook: x3.7 (tests/test_ex04.py re-measures it)
    hints=("Section 1's two-weight example cut the output error a lot; but a real layer has "
           "768 inputs that are far from perfectly correlated.",
           "Error feedback can only cancel what the remaining columns can reach through H's "
           "off-diagonal entries: a real, sizeable gain, not an order of magnitude."),
    solution_text="gptq_gain_3bit = 'c'   # about 3.7x lower here",
)

gptq_weight_distance = Question(
    name="04.6 gptq_weight_distance",
    prompt="Predict before the plot: compared with round-to-nearest, GPTQ's quantized weights "
           "are ... the original weights W (summed squared difference ‖W − Q‖²).",
    choices={"a": "closer to", "b": "about as close to", "c": "further from"},
    reference=lambda: "c",  # the notebook plots it (tests/test_ex04.py re-measures it)
    hints=("RTN puts every weight on its nearest grid point. Can any choice of grid points be "
           "closer to W, weight by weight?",
           "GPTQ moves the columns it has not quantized yet away from W on purpose, to cancel "
           "the output error of those already quantized."),
    solution_text="gptq_weight_distance = 'c'   # RTN is the closest grid point by definition",
)
