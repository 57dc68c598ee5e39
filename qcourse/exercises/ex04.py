"""Exercises of notebook 04, in reading order: GPTQ's Hessian and its update derived, the loop
over a block, act-order's column order, and predictions about what GPTQ changes (the output
error, the distance to the float weights, the amount of calibration data)."""
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
    prompt="The output error of one row w of a linear layer, rounded to q, over n calibration "
           "tokens x_t (the rows of X [n, K]) is E = Σ_t ((w - q)·x_t)². Derive its matrix of "
           "second derivatives with respect to w, and write hessian_from_activations(X): that "
           "matrix divided by the number of tokens n (the course's convention: an average that "
           "does not grow with the calibration set), shape [K, K].",
    reference=gptq.hessian,
    forbid=(gptq.hessian, gptq.Hessian.add),
    cases=_activations,
    rtol=1e-4,
    hints=("Write δ = w - q. Each term (δ·x_t)² = δ (x_t x_tᵀ) δᵀ is a quadratic form. What is "
           "the second derivative of δ A δᵀ with respect to δ, for a symmetric matrix A?",
           "Summed over the tokens, Σ_t x_t x_tᵀ is [K, K] and is one matrix product of X with "
           "itself: XᵀX or XXᵀ, for X of shape [n, K]? Then mind the constant in front and the "
           "division by n."),
    solution_text="def hessian_from_activations(X):\n    return 2 / X.shape[0] * X.T @ X",
)

error_feedback = Question(
    name="04.2 error_feedback",
    prompt="Optimal Brain Surgeon moves the weights not yet quantized, F, by "
           "δ_F = -(w_j - q_j) / [H_F⁻¹]_jj · (row j of H_F⁻¹), and section 2 checked that at "
           "step j row j of H_F⁻¹ is U_jj · U[j, j:]. Write error_feedback(W1, u, q): the first "
           "column w of W1 [N, m] (one entry per row of the layer) is quantized to q [N]; "
           "u [m] is U[j, j:] (so u[0] = U_jj). Return W1 after the OBS update of every row; "
           "its first column must come out as q.",
    reference=_feedback,
    forbid=(gptq.error_feedback, gptq.gptq),
    cases=_feedback_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("Substitute [H_F⁻¹]_jj = u[0]² and (row j of H_F⁻¹) = u[0]·u into δ_F: one factor "
           "u[0] cancels. What scalar per row of the layer is left in front of u?",
           "That scalar is a column of N numbers and u a row of m numbers: which product of the "
           "two is an [N, m] update? Check it on the first column, where w must become q."),
    solution_text="def error_feedback(W1, u, q):\n"
                  "    e = (W1[:, 0] - q) / u[0]\n"
                  "    return W1 - e[:, None] * u[None, :]",
)

gptq_block = Question(
    name="04.3 gptq_block",
    prompt="Write gptq_block(W1, U1, scale, bits) -> (Q1, Err1): GPTQ's loop over the B columns "
           "of one block. W1 [N, B] is the block, U1 [B, B] the matching block of the upper "
           "Cholesky factor of H⁻¹, scale [N] one scale per row of the symmetric grid "
           "q = clamp(round(w / scale), -2^(b-1), 2^(b-1) - 1) · scale. Q1 [N, B] holds the "
           "quantized columns; column i of Err1 holds the scalar per row your error_feedback "
           "of 04.2 divides out at step i (the lazy update of the later blocks needs it). "
           "Do not modify the W1 you were given.",
    reference=_block_reference,
    forbid=(gptq.error_feedback, gptq.gptq, gptq.gptq_quantize_layer, gptq.obq_quantize_layer),
    cases=_block_cases,
    rtol=1e-4,
    atol=1e-5,
    hints=("One loop over the columns. At step i, which version of column i do you round: the "
           "original one, or the one the earlier steps have moved?",
           "Work on a clone. At step i only the columns from i on move, by the update of 04.2 "
           "with u = U1[i, i:]; keep that step's scalars for Err1."),
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

column_order = Question(
    name="04.4 column_order",
    prompt="Act-order changes only the order in which GPTQ visits the K input columns. Decide "
           "which inputs should go first (think of what the columns quantized late can still "
           "do about an error) and which number in H measures it, then write column_order(H): "
           "that permutation, a LongTensor [K] (column_order(H)[0] is quantized first).",
    reference=lambda H: torch.argsort(H.diagonal(), descending=True, stable=True),
    forbid=(gptq.gptq, gptq.gptq_quantize_layer),
    cases=_hessians,
    hints=("A column's error is repaired by the columns quantized after it: the earlier a "
           "column goes, the more columns remain to absorb its error. Which columns cause the "
           "largest output errors when rounded?",
           "H_kk = 2/n Σ_t x_tk² is the energy of input k: a column multiplied by large "
           "activations costs the most. You want the indices of a sort, not its values; in "
           "which direction?"),
    solution_text="def column_order(H):\n"
                  "    return torch.argsort(H.diagonal(), descending=True)",
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
           "off-diagonal entries. How correlated are the inputs of a layer that reads the MLP's "
           "hidden activations?"),
    solution_text="gptq_gain_3bit = 'c'   # about 3.7x lower here",
)

gptq_weight_distance = Question(
    name="04.6 gptq_weight_distance",
    prompt="Predict before the plot: compared with round-to-nearest, GPTQ's quantized weights "
           "are ... the original weights W (summed squared difference ‖W − Q‖²).",
    choices={"a": "closer to", "b": "about as close to", "c": "further from"},
    reference=lambda: "c",  # the notebook plots it (tests/test_ex04.py re-measures it)
    hints=("What does each method minimise: the distance of every weight to the grid, or the "
           "error of the layer's outputs?",
           "GPTQ moves the columns it has not quantized yet on purpose, to cancel the output "
           "error of those already quantized. Where does that leave those columns when their "
           "turn comes?"),
    solution_text="gptq_weight_distance = 'c'   # RTN takes the nearest point of its grid; GPTQ's "
                  "grid is almost the same and it leaves that point on purpose",
)

calibration_gain = Question(
    name="04.7 calibration_gain",
    prompt="Predict before section 6 measures it: GPTQ's 3-bit error of block 0's mlp.down_proj "
           "(768 inputs), measured on 64 held-out windows, when H comes from 256 calibration "
           "windows of 64 tokens instead of 16, will be ...",
    choices={"a": "about the same (within 10 %)", "b": "10 to 25 % lower",
             "c": "25 to 50 % lower", "d": "more than half lower"},
    reference=lambda: "c",  # measured in the notebook (tests/test_ex04.py re-measures it)
    hints=("16 windows of 64 tokens are 1,024 tokens for a layer with 768 inputs: how well "
           "can they pin down a 768 × 768 matrix?",
           "An H fitted to few tokens makes GPTQ cancel errors along directions that only "
           "those tokens had. More data removes that overfitting, but cannot beat the error "
           "GPTQ reaches with the exact H; RTN's error (the dashed line) bounds the other side."),
    solution_text="calibration_gain = 'c'   # about 35-40 % lower here",
)
