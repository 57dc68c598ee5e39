import json
import math
import time

import pytest
import torch

from qcourse import exercises
from qcourse.exercises import ex00


def verdict(question, answer):
    return question.check(answer).status


def test_weight_bytes_verdicts(capsys):
    q = ex00.weight_bytes
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda n, b: ...) == "not attempted"
    assert verdict(q, lambda n, b: math.ceil(n * b / 8)) == "correct"
    assert verdict(q, lambda n, b: n * b) == "wrong"               # bits, not bytes
    assert verdict(q, lambda n, b: n * b // 8) == "wrong"          # forgot to round up
    assert verdict(q, lambda n, b: n * b / 8 / 2**30) == "wrong"   # GiB instead of bytes
    assert verdict(q, lambda n: n) == "wrong"                      # wrong signature: no crash
    assert verdict(q, 42) == "wrong"
    out = capsys.readouterr().out
    assert "expected" in out and "raised TypeError" in out


def test_perplexity_verdicts():
    q = ex00.perplexity_from_nll
    assert verdict(q, lambda nll: math.exp(nll.mean().item())) == "correct"
    assert verdict(q, lambda nll: torch.exp(nll.mean())) == "correct"  # a 0-d tensor is fine
    assert verdict(q, lambda nll: nll.exp().mean().item()) == "wrong"  # mean of exp
    assert verdict(q, lambda nll: math.exp(nll.sum().item())) == "wrong"
    assert verdict(q, lambda nll: 2 ** nll.mean().item()) == "wrong"   # wrong base


def test_learner_cannot_corrupt_hidden_cases():
    q = ex00.perplexity_from_nll

    def sloppy(nll):
        nll.mul_(0)
        return 1.0

    assert verdict(q, sloppy) == "wrong"
    assert verdict(q, lambda nll: math.exp(nll.mean().item())) == "correct"


def test_value_question():
    q = exercises.Question("v", "two plus two", reference=lambda: 4)
    assert verdict(q, 4) == "correct"
    assert verdict(q, 4.0000001) == "correct"
    assert verdict(q, 5) == "wrong"
    assert verdict(q, "4") == "wrong"
    assert verdict(q, ...) == "not attempted"


def test_close_compares_tensors_by_shape_and_value():
    assert exercises.close(torch.ones(3), torch.ones(3))
    assert not exercises.close(torch.ones(3), torch.ones(1, 3))
    assert not exercises.close(torch.ones(3), [1, 1, 1])
    assert exercises.close(torch.tensor([1, 2], dtype=torch.int8), torch.tensor([1, 2]))
    assert exercises.close((1, 2.0), [1, 2])
    assert not exercises.close(True, 1.0) and exercises.close(True, True)


def test_results_are_recorded_for_grading(tmp_path, monkeypatch):
    results = tmp_path / "r.jsonl"
    monkeypatch.setenv("QCOURSE_RESULTS", str(results))
    exercises.RESULTS.clear()
    ex00.weight_bytes.check(lambda n, b: math.ceil(n * b / 8))
    ex00.perplexity_from_nll.check(...)
    lines = [json.loads(l) for l in results.read_text().splitlines()]
    assert [(l["question"], l["status"]) for l in lines] == [
        ("00.1 weight_bytes", "correct"), ("00.2 perplexity_from_nll", "not attempted")]
    assert exercises.score() == "1/2 exercises correct"


def test_hint_and_solution_print(capsys):
    ex00.weight_bytes.hint()
    ex00.weight_bytes.solution()
    out = capsys.readouterr().out
    assert "8 bits" in out and "def weight_bytes" in out


# ---- answers that call the package's own implementation -----------------------------------

def test_a_function_that_calls_the_reference_is_wrong_however_it_reaches_it():
    from qcourse import gptq
    from qcourse.exercises import ex04
    from qcourse.gptq import hessian as imported

    q = ex04.hessian_from_activations
    own = lambda X: 2 / X.shape[0] * X.T @ X  # noqa: E731
    assert verdict(q, own) == "correct"
    for cheat in (gptq.hessian,                                  # the function itself
                  lambda X: gptq.hessian(X),                     # through its module
                  lambda X: imported(X),                         # from ... import
                  lambda X, h=gptq.hessian: h(X)):               # captured beforehand
        result = q.judge(cheat)
        assert result.status == "wrong" and "qcourse.gptq.hessian" in result.message

    def hides_it(X):
        try:
            return gptq.hessian(X)
        except Exception:                                        # cannot swallow the check
            return own(X)
    assert verdict(q, hides_it) == "wrong"
    # and the package function works again afterwards
    X = torch.randn(5, 3)
    torch.testing.assert_close(gptq.hessian(X), own(X))


def test_unavailable_restores_the_functions_even_after_an_error():
    from qcourse import gptq
    with pytest.raises(RuntimeError):
        with exercises.unavailable([gptq.hessian]):
            raise RuntimeError("boom")
    assert gptq.hessian(torch.ones(2, 2)).shape == (2, 2)


# ---- hints, solutions, choices, strange answers ---------------------------------------------

def test_hints_are_progressive_and_stop_at_the_last(capsys):
    q = exercises.Question("x.1 f", "?", reference=lambda: 1, hints=("one", "two", "three"))
    q.hint(); q.hint(); q.hint(); q.hint()
    out = capsys.readouterr().out.splitlines()
    assert [line.split(") ", 1)[1] for line in out] == ["one", "two", "three", "three"]
    q.hint(2)
    assert "(hint 2 of 3) two" in capsys.readouterr().out


def test_graded_mode_withholds_solutions(capsys, monkeypatch):
    q = ex00.weight_bytes
    monkeypatch.setenv("QCOURSE_GRADED", "1")
    q.solution()
    out = capsys.readouterr().out
    assert "withheld" in out and "def weight_bytes" not in out
    monkeypatch.delenv("QCOURSE_GRADED")
    exercises.set_graded(True)
    try:
        q.solution()
        assert "withheld" in capsys.readouterr().out
    finally:
        exercises.set_graded(False)
    q.solution()
    assert "def weight_bytes" in capsys.readouterr().out


def test_multiple_choice_question():
    q = exercises.Question("x.2 pick", "which?", reference=lambda: "b",
                           choices={"a": "first", "b": "second", "c": "third"})
    assert verdict(q, "b") == verdict(q, " B ") == "correct"
    assert verdict(q, "a") == "wrong"
    result = q.judge("d")
    assert result.status == "wrong" and "a, b, c" in result.message
    assert verdict(q, 2) == "wrong" and verdict(q, ...) == "not attempted"


def test_any_answer_gets_a_verdict_never_an_exception():
    class Nasty:
        def __eq__(self, other):
            raise RuntimeError("no comparing me")
        __hash__ = None

        def __float__(self):
            raise RuntimeError("nor converting me")

    q = exercises.Question("x.3 v", "?", reference=lambda: "text")
    assert q.judge(Nasty()).status == "wrong"
    assert ex00.weight_bytes.judge(Nasty()).status == "wrong"          # not callable
    assert ex00.weight_bytes.judge(lambda n, b: Nasty()).status == "wrong"


def test_answer_name_is_what_the_notebook_asks_for():
    from qcourse.exercises import ex04
    assert ex04.hessian_from_activations.answer_name == "hessian_from_activations"


# ---- answers travel between processes as data, never as pickles -----------------------------

from hypothesis import given, strategies as st  # noqa: E402

leaves = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=5)
          | st.floats(allow_nan=False, width=32)
          | st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=6).map(torch.tensor)
          | st.lists(st.integers(-128, 127), min_size=1, max_size=6).map(
              lambda v: torch.tensor(v, dtype=torch.int8)))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                      | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


@given(values)
def test_encode_then_decode_gives_an_equal_value(value):
    back = exercises.decode(json.loads(json.dumps(exercises.encode(value))))
    assert exercises.close(value, back, rtol=0, atol=0)
    if isinstance(value, torch.Tensor):
        assert back.dtype == value.dtype and back.shape == value.shape


def test_special_floats_and_unknown_objects_survive_the_trip():
    back = exercises.decode(json.loads(json.dumps(exercises.encode([float("inf"), object()]))))
    assert back[0] == float("inf")
    assert not exercises.close(1, back[1]) and "object" in repr(back[1])


def test_a_portable_outcome_gives_the_same_verdict():
    from qcourse.exercises import ex04, ex09
    for q, answers in ((ex04.error_feedback,
                        (lambda W1, u, q: W1 - ((W1[:, 0] - q) / u[0])[:, None] * u[None, :],
                         lambda W1, u, q: W1, ...)),
                       (ex09.formats_that_fit, ([], ["fp16"])),          # a value: a list
                       (exercises.Question("x.8 t", "?", reference=lambda: torch.ones(2)),
                        (torch.ones(2), torch.zeros(2)))):
        for answer in answers:
            local = q.verdict(q.outcome(answer))
            remote = q.verdict(json.loads(json.dumps(q.outcome(answer, portable=True))))
            assert (local.status, local.message) == (remote.status, remote.message), q.name
    assert ex09.formats_that_fit.verdict(ex09.formats_that_fit.outcome([], portable=True)).correct


# ---- partial credit, time limits, predictions in graded mode ---------------------------------

def counting_question(case_points=None):
    """Four cases x = 0..3 of the identity; an answer can pass any subset."""
    return exercises.Question("x.4 ident", "return x", reference=lambda x: x,
                              cases=lambda: [(0,), (1,), (2,), (3,)], case_points=case_points)


def test_partial_credit_is_the_share_of_passing_cases():
    q = counting_question()
    result = q.judge(lambda x: x if x != 2 else -1)
    assert (result.status, result.score, result.passed, result.total) == ("wrong", 0.75, 3, 4)
    assert result.message.startswith("3 of 4 hidden cases pass. Case 3 with inputs (2,)")
    assert result.failure == {"case": 3, "inputs": "(2,)", "expected": "2", "got": "-1"}
    assert q.judge(lambda x: x).score == 1.0 and q.judge(lambda x: x).correct
    assert q.judge(lambda x: -1).score == 0.0


def test_case_points_weigh_the_cases():
    q = counting_question(case_points=(1, 1, 2, 0))
    assert q.judge(lambda x: x if x != 2 else -1).score == 0.5
    assert q.judge(lambda x: x if x != 3 else -1).status == "wrong"    # a 0-point case still fails
    assert q.judge(lambda x: x if x != 3 else -1).score == 1.0
    with pytest.raises(ValueError, match="one non-negative number per hidden case"):
        counting_question(case_points=(1, 2)).case_weights(4)


def test_a_case_that_raises_fails_alone():
    def flaky(x):
        if x == 1:
            raise ZeroDivisionError("boom")
        return x
    result = counting_question().judge(flaky)
    assert result.score == 0.75 and result.failure["raised"] == "ZeroDivisionError: boom"
    assert "raised ZeroDivisionError: boom" in result.message


def test_a_time_limit_stops_the_cases_and_cannot_be_swallowed():
    def stuck(x):
        while x == 2:
            try:
                time.sleep(0.05)
            except Exception:          # a learner's catch-all does not catch OutOfTime
                pass
        return x
    q = counting_question()
    start = time.time()
    outcome = q.outcome(stuck, seconds=0.5)
    assert time.time() - start < 3
    assert [r.get("raised", "ok")[:9] for r in outcome["results"]] == ["ok", "ok", "OutOfTime"]
    result = q.verdict(outcome)
    assert result.score == 0.5 and "took longer than 0.5 s" in result.message


def test_a_gradient_question_is_judged_the_same_by_check_and_by_judge():
    from qcourse.exercises import ex03
    q = ex03.ste_fake_quantize
    namespace = {"torch": torch}
    exec(q.solution_text, namespace)
    assert q.judge(namespace["ste_fake_quantize"]).correct      # what qcourse grade calls
    assert q.check(namespace["ste_fake_quantize"]).correct


def test_which_questions_are_predictions():
    assert ex00.two_bit_perplexity.prediction                              # multiple choice
    assert exercises.Question("x.5 p", "Predict before ...", reference=lambda: 1).prediction
    assert not ex00.two_bit_levels.prediction and not ex00.weight_bytes.prediction
    assert not exercises.Question("x.6 p", "?", reference=lambda: "a", choices={"a": "x"},
                                  prediction=False).prediction


def test_in_graded_mode_a_predictions_first_answer_counts(capsys):
    q = exercises.Question("x.7 pick", "which?", reference=lambda: "b",
                           choices={"a": "first", "b": "second"})
    exercises.FIRST_ANSWERS.clear()
    assert q.check("a").status == "wrong" and "Try again" in capsys.readouterr().out
    assert q.check("b").correct                             # not graded: each answer counts
    exercises.set_graded(True)
    try:
        assert q.check(...).status == "not attempted"      # the placeholder is no answer
        assert q.check("z").status == "wrong"              # nor is a letter that is not offered
        first = q.check("a")
        assert first.status == "wrong" and "your first answer, 'a', is the one that counts" \
            in first.message and "Try again" not in first.message
        again = q.check("b")                               # changed after seeing the verdict
        assert again.status == "wrong" and "'a'" in again.message
        assert exercises.FIRST_ANSWERS == {"x.7 pick": "a"}
        assert q.judge("b").correct                         # judge() itself has no memory
    finally:
        exercises.set_graded(False)
        exercises.FIRST_ANSWERS.clear()


def test_the_reference_itself_is_never_an_answer():
    q = ex00.perplexity_from_nll                          # a private reference in ex00
    for cheat in (q.reference, lambda nll: q.reference(nll)):
        result = q.judge(cheat)
        assert result.status == "wrong" and "reference solution of 00.2" in result.message


def test_describe_gives_shapes_and_dtypes():
    assert exercises.describe(torch.tensor([1, 2], dtype=torch.int8)) == \
        "tensor [1, 2] (shape (2,), int8)"
    assert exercises.describe(torch.zeros(3, 4)) == \
        "tensor values from 0 to 0 (shape (3, 4), float32)"
    assert exercises.describe((torch.ones(1), 2)) == "(tensor [1.0] (shape (1,), float32), 2)"
    import numpy as np
    assert "shape (2, 2), uint8" in exercises.describe(np.zeros((2, 2), np.uint8))
