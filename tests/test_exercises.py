import json
import math

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
