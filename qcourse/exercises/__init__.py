"""Exercises with automatic checks: one module per notebook (``ex00``, ``ex01``, ...).

A :class:`Question` holds hidden cases and a reference (the package's own implementation).
``question.check(answer)`` prints one verdict and returns it:

* ``correct``: every hidden case matches the reference;
* ``wrong``: the first failing case, what was expected and what came back (an exception raised
  by the learner's code is reported the same way, never re-raised);
* ``not attempted``: the answer is still the placeholder ``...`` (or a function returning it).

Every verdict is recorded in :data:`RESULTS`; if the environment variable ``QCOURSE_RESULTS``
names a file, it is also appended there as one JSON line, which is how ``qcourse grade`` collects
the results of a folder of submitted notebooks.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"
RESULTS: list[dict] = []


@dataclasses.dataclass
class Verdict:
    question: str
    status: str
    message: str

    @property
    def correct(self) -> bool:
        return self.status == CORRECT

    def __str__(self) -> str:
        mark = {CORRECT: "✅", WRONG: "❌", NOT_ATTEMPTED: "⏳"}[self.status]
        return f"{mark} {self.question}: {self.status}. {self.message}".rstrip()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows str(), not the dataclass
        printer.text(str(self))


def close(expected: Any, got: Any, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Whether ``got`` equals ``expected``: numbers and tensors within tolerance, shapes and
    dtypes kinds equal for tensors, containers element by element, anything else with ==."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return False
        if expected.dtype.is_floating_point:
            return torch.allclose(got.double(), expected.double(), rtol=rtol, atol=atol)
        return bool(torch.equal(got.to(expected.dtype), expected))
    if isinstance(expected, np.ndarray):
        got = np.asarray(got)
        return got.shape == expected.shape and np.allclose(got, expected, rtol=rtol, atol=atol)
    if isinstance(expected, (tuple, list)):
        return (isinstance(got, (tuple, list)) and len(got) == len(expected)
                and all(close(e, g, rtol, atol) for e, g in zip(expected, got)))
    if isinstance(expected, bool):
        return isinstance(got, (bool, np.bool_)) and bool(got) == expected
    if not isinstance(expected, (int, float)):
        return got == expected
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float, np.number)) or isinstance(got, bool):
        return False
    return math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol)


def describe(value: Any, limit: int = 120) -> str:
    """Short printable form of a value for a verdict."""
    if isinstance(value, torch.Tensor):
        body = repr(value.tolist()) if value.numel() <= 8 else f"shape {tuple(value.shape)}"
        return f"tensor {body} ({str(value.dtype).replace('torch.', '')})"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_placeholder(answer: Any) -> bool:
    return answer is Ellipsis


@dataclasses.dataclass
class Question:
    """One exercise.

    ``reference`` is the right function (for function questions) or a zero-argument function
    computing the right value (for value questions, ``cases`` empty). ``cases`` are tuples of
    positional arguments, built lazily by a function so hidden inputs can be random but seeded.
    """

    name: str
    prompt: str
    reference: Callable[..., Any]
    cases: Callable[[], Sequence[tuple]] | None = None
    hint_text: str = ""
    solution_text: str = ""
    rtol: float = 1e-5
    atol: float = 1e-6

    def check(self, answer: Any) -> Verdict:
        """Run the hidden cases against ``answer``; print and return the verdict."""
        verdict = self._judge(answer)
        record(verdict)
        print(verdict)
        return verdict

    def _judge(self, answer: Any) -> Verdict:
        if _is_placeholder(answer):
            return Verdict(self.name, NOT_ATTEMPTED, "Replace the `...` with your answer.")
        if self.cases is None:
            return self._judge_value(answer)
        if not callable(answer):
            return Verdict(self.name, WRONG, f"Expected a function, got {describe(answer)}.")
        cases = list(self.cases())
        for i, args in enumerate(cases, 1):
            expected = self.reference(*_copy(args))
            try:
                got = answer(*_copy(args))
            except Exception as err:  # a learner's bug is a verdict, not a crash
                return Verdict(self.name, WRONG, f"Case {i} with inputs {describe(args)} raised "
                                                 f"{type(err).__name__}: {err}")
            if _is_placeholder(got):
                return Verdict(self.name, NOT_ATTEMPTED, "Your function still returns `...`.")
            if not close(expected, got, self.rtol, self.atol):
                return Verdict(self.name, WRONG, f"Case {i} with inputs {describe(args)}: "
                                                 f"expected {describe(expected)}, got {describe(got)}.")
        return Verdict(self.name, CORRECT, f"All {len(cases)} hidden cases pass.")

    def _judge_value(self, answer: Any) -> Verdict:
        expected = self.reference()
        if close(expected, answer, self.rtol, self.atol):
            return Verdict(self.name, CORRECT, "")
        return Verdict(self.name, WRONG, f"Got {describe(answer)}; not what we computed.")

    def hint(self) -> None:
        print(f"💡 {self.hint_text}")

    def solution(self) -> None:
        print(self.solution_text)


def _copy(args: tuple) -> tuple:
    """Fresh copies of tensor arguments, so a learner's in-place edit cannot leak."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def record(verdict: Verdict) -> None:
    """Keep the verdict in :data:`RESULTS` and, if ``QCOURSE_RESULTS`` is set, in that file."""
    entry = {"question": verdict.question, "status": verdict.status, "time": time.time()}
    RESULTS.append(entry)
    path = os.environ.get("QCOURSE_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def score() -> str:
    """The learner's latest verdict per question, as one line."""
    latest = {r["question"]: r["status"] for r in RESULTS}
    right = sum(s == CORRECT for s in latest.values())
    return f"{right}/{len(latest)} exercises correct"
