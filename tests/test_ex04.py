import pytest
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


# --- 04.3 the loop over a block ----------------------------------------------------------------

def gptq_block(W1, U1, scale, bits, *, feedback=True, updated=True, clamp=True, column=False,
               divide=True):
    """A learner's block loop, with switches for the usual mistakes."""
    original, W1, qmax = W1, W1.clone(), 2 ** (bits - 1) - 1
    Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
    for i in range(W1.shape[1]):
        w = W1[:, i] if updated else original[:, i]
        q = torch.round(w / scale)
        q = (q.clamp(-qmax - 1, qmax) if clamp else q) * scale
        e = (W1[:, i] - q) / (U1[i, i] if divide else 1)
        if feedback:
            u = U1[i:, i] if column else U1[i, i:]   # a column of U instead of its row
            W1[:, i:] -= e[:, None] * u[None, :]
        Q1[:, i], Err1[:, i] = q, e
    return Q1, Err1


def test_gptq_block_verdicts():
    q = ex04.gptq_block
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, gptq_block) == "correct"
    assert verdict(q, lambda *a: gptq_block(*a, feedback=False)) == "wrong"    # plain RTN
    assert verdict(q, lambda *a: gptq_block(*a, updated=False)) == "wrong"     # rounds the original
    assert verdict(q, lambda *a: gptq_block(*a, clamp=False)) == "wrong"
    assert verdict(q, lambda *a: gptq_block(*a, column=True)) == "wrong"       # U's column
    assert verdict(q, lambda *a: gptq_block(*a, divide=False)) == "wrong"      # e not / U_ii
    assert verdict(q, lambda *a: gptq_block(*a)[0]) == "wrong"                 # Q1 only


def test_the_block_loop_is_the_packages_gptq_on_one_block():
    """The reference of 04.3 is what qcourse.gptq.gptq does to a layer that fits one block."""
    from qcourse import gptq
    from qcourse.quant import QuantScheme

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 24, generator=gen)
    H, W = gptq.hessian(X), torch.randn(5, 24, generator=gen)
    expected = gptq.gptq(W, H, 3, None, sym=True).weight
    scale = QuantScheme(3, None, True).params(W)[0][:, 0]
    Q1, _ = ex04._block_reference(W, gptq.inverse_hessian_cholesky(H), scale, 3)
    torch.testing.assert_close(Q1, expected)


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    from qcourse import gptq

    def feedback_through_package(W1, u, q):
        W1 = W1.clone()
        gptq.error_feedback(W1, u, q)
        return W1

    def block_through_package(W1, U1, scale, bits):
        W1, qmax = W1.clone(), 2 ** (bits - 1) - 1
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        for i in range(W1.shape[1]):
            Q1[:, i] = torch.round(W1[:, i] / scale).clamp(-qmax - 1, qmax) * scale
            Err1[:, i] = gptq.error_feedback(W1[:, i:], U1[i, i:], Q1[:, i])
        return Q1, Err1

    def order_through_package(H):
        return gptq.gptq(torch.zeros(1, H.shape[0]), H, 4, None, act_order=True).perm

    def hessian_by_accumulator(X):
        h = gptq.Hessian(X.shape[1])
        h.add(X)
        return h.matrix

    cheats = [(ex04.hessian_from_activations, hessian_by_accumulator),
              (ex04.error_feedback, feedback_through_package),
              (ex04.column_order, order_through_package),
              (ex04.gptq_block, block_through_package)]
    for question, answer in cheats:
        result = question.judge(answer)
        assert result.status == "wrong" and "course's own" in result.message, question.name
    assert verdict(ex04.gptq_block, block_through_package) == "wrong"


# --- predictions, hints ------------------------------------------------------------------------

def test_prediction_verdicts():
    assert verdict(ex04.gptq_gain_3bit, "c") == "correct"
    assert verdict(ex04.gptq_gain_3bit, "d") == "wrong"
    assert verdict(ex04.gptq_weight_distance, "c") == "correct"
    assert verdict(ex04.gptq_weight_distance, "a") == "wrong"
    assert verdict(ex04.calibration_gain, "c") == "correct"
    assert verdict(ex04.calibration_gain, "d") == "wrong"      # cannot beat the exact H by half
    assert verdict(ex04.calibration_gain, ...) == "not attempted"


def test_questions_are_numbered_in_reading_order():
    """The notebook asks them in this order (04_gptq.py); the numbers must follow it."""
    order = [ex04.hessian_from_activations, ex04.error_feedback, ex04.gptq_block,
             ex04.column_order, ex04.gptq_gain_3bit, ex04.gptq_weight_distance,
             ex04.calibration_gain]
    assert [q.name.split()[0] for q in order] == [f"04.{i}" for i in range(1, len(order) + 1)]


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex04, {"torch": torch}, only_with_cases=True)


@pytest.mark.slow
def test_the_predictions_match_the_notebooks_measurements(tiny):
    """Notebook 04, section 4: block 0's down_proj, 3-bit g128, 32 calibration windows of 128."""
    from qcourse import blocks, data, gptq
    from qcourse.quant import fake_quantize

    model, tok = tiny
    inputs = blocks.capture_block_inputs(model, data.calibration_samples(tok, 32, 128, seed=0))
    block0 = model.model.layers[0]
    H = gptq.collect_hessians(block0, inputs, ["mlp.down_proj"])["mlp.down_proj"].matrix
    W = block0.mlp.down_proj.weight.detach()
    rtn = fake_quantize(W, 3, symmetric=False, granularity="group", group_size=128)
    ours = gptq.gptq_quantize_layer(W, H, 3, 128)[0]
    gain = gptq.hessian_error(W, rtn, H) / gptq.hessian_error(W, ours, H)
    assert 3 <= gain <= 5                                              # gptq_gain_3bit: c
    assert (W - ours).pow(2).sum() > (W - rtn).pow(2).sum()           # gptq_weight_distance: c


@pytest.mark.slow
def test_the_calibration_prediction_matches_the_notebooks_measurement(tiny):
    """Notebook 04, section 6: H of block 0's down_proj from 16 or 256 windows of 64 tokens
    (seed 1), 3-bit g128 error measured with the H of 64 held-out windows (seed 2)."""
    from qcourse import blocks, data, gptq

    model, tok = tiny
    block0, name = model.model.layers[0], "mlp.down_proj"

    def hessian(samples):
        inputs = blocks.capture_block_inputs(model, samples)
        return gptq.collect_hessians(block0, inputs, [name])[name].matrix

    pool = data.calibration_samples(tok, 256, 64, seed=1)
    H_test = hessian(data.calibration_samples(tok, 64, 64, seed=2))
    W = block0.mlp.down_proj.weight.detach()

    def error(H):
        Q = gptq.gptq_quantize_layer(W, H, 3, 128)[0]
        return gptq.hessian_error(W, Q, H_test) / gptq.hessian_error(W, torch.zeros_like(W), H_test)

    fall = 1 - error(hessian(pool)) / error(hessian(pool[:16]))
    assert 0.25 <= fall <= 0.50                                        # calibration_gain: c
