import torch

from qcourse.exercises import ex04


def verdict(question, answer):
    return question.check(answer).status


def test_hessian_from_activations_verdicts():
    q = ex04.hessian_from_activations
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda X: 2 / X.shape[0] * X.T @ X) == "correct"
    assert verdict(q, lambda X: 2 / X.shape[0] * X @ X.T) == "wrong"      # [n, n]: wrong axis
    assert verdict(q, lambda X: X.T @ X / X.shape[0]) == "wrong"          # forgot the 2
    assert verdict(q, lambda X: 2 * X.T @ X) == "wrong"                   # not averaged
    assert verdict(q, lambda X: 2 / X.shape[1] * X.T @ X) == "wrong"      # divided by K


def test_error_feedback_verdicts():
    q = ex04.error_feedback

    def right(W1, u, qc):
        e = (W1[:, 0] - qc) / u[0]
        return W1 - e[:, None] * u[None, :]

    assert verdict(q, right) == "correct"
    assert verdict(q, lambda W1, u, qc: W1 - ((W1[:, 0] - qc) * u[0])[:, None] * u) == "wrong"
    assert verdict(q, lambda W1, u, qc: W1 + ((W1[:, 0] - qc) / u[0])[:, None] * u) == "wrong"
    assert verdict(q, lambda W1, u, qc: W1 - (W1[:, 0] - qc)[:, None] * u) == "wrong"  # no /u0

    def rows_not_columns(W1, u, qc):   # updates along the wrong axis
        e = (W1[:, 0] - qc) / u[0]
        return W1 - e.sum() * u[None, :]

    assert verdict(q, rows_not_columns) == "wrong"
    assert verdict(q, lambda W1, u, qc: ...) == "not attempted"


def test_column_order_verdicts():
    q = ex04.column_order
    assert verdict(q, lambda H: torch.argsort(H.diagonal(), descending=True)) == "correct"
    assert verdict(q, lambda H: torch.argsort(H.diagonal())) == "wrong"            # ascending
    assert verdict(q, lambda H: torch.argsort(H.sum(0), descending=True)) == "wrong"
    assert verdict(q, lambda H: torch.arange(H.shape[0])) == "wrong"
