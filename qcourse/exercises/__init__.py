"""Exercises with automatic checks: one module per notebook (``ex00``, ``ex01``, ...).

A :class:`Question` holds hidden cases and a reference (the package's own implementation).
``question.check(answer)`` prints one verdict and returns it:

* ``correct``: every hidden case matches the reference;
* ``wrong``: some case fails; the verdict says how many pass, and shows the first failing case
  (its inputs, what was expected and what came back, with shapes and dtypes). An exception
  raised by the learner's code fails that case and is reported the same way, never re-raised.
  A function that calls the package's own implementation of what it is asked to write (or the
  question's reference) is wrong, whatever it returns: the check runs it with those functions
  unavailable (:attr:`Question.forbidden`);
* ``not attempted``: the answer is still the placeholder ``...`` (or a function returning it).

**Partial credit.** A function question's score is the share of its hidden cases that pass,
each case weighted by :attr:`Question.case_points` (equal weights by default):

    score = Σ_{passing cases} points_i / Σ_{all cases} points_i ∈ [0, 1],

so 7 of 10 equally weighted cases earn 7/10 of the question's :attr:`Question.points`. Value
and multiple-choice questions are all or nothing.

**Predictions** (multiple choice, or a prompt that starts with "Predict") are asked before the
cell that measures the answer. In graded mode (``QCOURSE_GRADED=1`` or :func:`set_graded`) the
first answer given to a prediction's ``check()`` is the one that counts: later calls judge that
first answer again, and the printed verdict says so (``qcourse grade`` reads it back from the
submitted notebook). Graded mode also withholds ``solution()``.

Kinds of questions: a function (hidden ``cases``), a value (``reference()`` computes it; a
prediction asked before the cell that measures it uses a loose ``rtol``), or multiple choice
(``choices``; the answer is the letter). Hints are progressive: ``hint()`` shows the next one,
``hint(2)`` the second; the last one stops short of the solution.

Every verdict is recorded in :data:`RESULTS`; if the environment variable ``QCOURSE_RESULTS``
names a file, it is also appended there as one JSON line (a learner's own log). ``qcourse grade``
does not trust that file: it runs the checks itself (:mod:`qcourse.grading`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"
RESULTS: list[dict] = []
FIRST_ANSWERS: dict[str, Any] = {}   # graded mode: a prediction's first answer, by question name
FIRST_ANSWER_NOTE = "Graded mode: your first answer, {answer}, is the one that counts."
_GRADED = False


def set_graded(on: bool = True) -> None:
    """Graded mode on or off for this session (``QCOURSE_GRADED=1`` also turns it on)."""
    global _GRADED
    _GRADED = bool(on)


def graded() -> bool:
    """Whether solutions are withheld (a workshop's graded run)."""
    return _GRADED or os.environ.get("QCOURSE_GRADED", "") not in ("", "0")


class ReferenceCalled(BaseException):
    """Raised when a learner's function calls a package function it was asked to write (a
    BaseException, so that a learner's ``except Exception`` does not swallow it)."""


class OutOfTime(BaseException):
    """Raised when a learner's function runs past the time a grader allows it (a BaseException,
    so that a learner's ``except Exception`` does not swallow it)."""


def _raise_reference_called(*args, **kwargs):
    # runs with the swapped function's globals: reach everything through builtins only
    exercises = __import__("qcourse.exercises", fromlist=["ReferenceCalled"])
    raise exercises.ReferenceCalled(__import__("sys")._getframe().f_code.co_qualname)


def _plain_function(f: Callable):
    """The Python function behind ``f`` (a function, method, classmethod or staticmethod)."""
    f = getattr(f, "__func__", f)
    return f if hasattr(f, "__code__") else None


@contextlib.contextmanager
def unavailable(functions: Sequence[Callable] | Mapping[Callable, str]):
    """Within the block, calling any of ``functions`` raises :class:`ReferenceCalled` — however
    the caller got hold of it (module attribute, ``from ... import``, a default argument, the
    function object itself): the function's code is swapped for one that raises, and restored
    afterwards. A mapping gives each function the name the exception carries (by default
    ``module.qualname``)."""
    labels = dict(functions) if isinstance(functions, Mapping) else dict.fromkeys(functions)
    swapped = []
    try:
        for f, label in labels.items():
            f = _plain_function(f)
            if f is None or f.__closure__ or any(f is g for g, _ in swapped):
                continue  # a closure's code cannot be swapped for one without free variables
            stub = _raise_reference_called.__code__.replace(
                co_name=f.__name__, co_qualname=label or f"{f.__module__}.{f.__qualname__}")
            swapped.append((f, f.__code__))
            f.__code__ = stub
        yield
    finally:
        for f, code in swapped:
            f.__code__ = code


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Within the block, raise :class:`OutOfTime` once ``seconds`` of wall time have passed
    (``None``: no limit). Uses SIGALRM, so it only limits the main thread of a POSIX process;
    elsewhere it does nothing."""
    usable = seconds is not None and hasattr(signal, "setitimer") \
        and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def stop(signum, frame):
        raise OutOfTime(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass
class Verdict:
    """One question's verdict. ``score`` is the share of the question's points earned (1 when
    correct, the weighted share of passing cases for a function, else 0); ``passed`` and
    ``total`` count a function's hidden cases; ``failure`` describes the first failing case
    (``case``, ``inputs``, then ``expected`` and ``got``, or ``raised``)."""

    question: str
    status: str
    message: str
    score: float | None = None
    passed: int | None = None
    total: int | None = None
    failure: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = 1.0 if self.status == CORRECT else 0.0

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
    if isinstance(expected, dict):
        return (isinstance(got, dict) and set(got) == set(expected)
                and all(close(expected[k], got[k], rtol, atol) for k in expected))
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
    """Short printable form of a value for a verdict: a tensor or array always with its shape
    and dtype (its values when it has at most 8, else its range), containers item by item."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        dtype = str(value.dtype).replace("torch.", "")
        values = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if values.size <= 8:
            body = repr(values.tolist())
        elif np.issubdtype(values.dtype, np.number) and not np.iscomplexobj(values):
            body = f"values from {values.min():.4g} to {values.max():.4g}"
        else:
            body = f"{values.size} values"
        return f"{kind} {body} (shape {tuple(value.shape)}, {dtype})"
    if isinstance(value, (tuple, list)) and any(isinstance(v, (torch.Tensor, np.ndarray))
                                                for v in value):
        inner = ", ".join(describe(v, limit) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode(value: Any) -> Any:
    """``value`` as JSON-safe data that :func:`decode` turns back into an equal value: numbers,
    strings, None, lists, tuples, str-keyed dicts, tensors and arrays (dtype, shape, data);
    anything else becomes its ``repr`` (which compares equal to nothing). Nothing in the result
    can run code when decoded, unlike a pickle."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, torch.Tensor):
        return {"tensor": str(value.dtype).replace("torch.", ""), "shape": list(value.shape),
                "data": [encode(v) for v in value.detach().cpu().flatten().tolist()]}
    if isinstance(value, np.ndarray):
        return {"array": str(value.dtype), "shape": list(value.shape),
                "data": [encode(v) for v in value.flatten().tolist()]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [encode(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v) for k, v in value.items()}}
    return {"repr": describe(value)}


class _Unreadable:
    """A value that could not travel: equal to nothing, described by its repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def decode(data: Any) -> Any:
    """Inverse of :func:`encode`."""
    if not isinstance(data, dict):
        return data
    if "float" in data:
        return float(data["float"])
    if "tensor" in data:
        dtype = getattr(torch, data["tensor"])
        return torch.tensor([decode(v) for v in data["data"]], dtype=dtype).reshape(data["shape"])
    if "array" in data:
        return np.array([decode(v) for v in data["data"]], dtype=data["array"]).reshape(
            data["shape"])
    if "tuple" in data:
        return tuple(decode(v) for v in data["tuple"])
    if "list" in data:
        return [decode(v) for v in data["list"]]
    if "dict" in data:
        return {k: decode(v) for k, v in data["dict"].items()}
    return _Unreadable(str(data.get("repr", data)))


def _is_placeholder(answer: Any) -> bool:
    return answer is Ellipsis


@dataclasses.dataclass
class Question:
    """One exercise.

    ``reference`` is the right function (for function questions) or a zero-argument function
    computing the right value (for value and multiple-choice questions, ``cases`` empty).
    ``cases`` are tuples of positional arguments, built lazily by a function so hidden inputs can
    be random but seeded; ``case_points`` weighs them for partial credit (one number per case;
    equal weights by default). ``forbid``: package functions a learner's function must not call
    (by default the reference itself, if it is a named package function); the reference is
    never available to the learner's function either. ``hints``: progressive hints (or one
    ``hint_text``). ``choices``: ``{letter: text}`` for a multiple-choice question, whose
    reference returns the right letter. ``points``: its weight in grading. ``prediction``:
    whether it is asked before the cell that measures it (by default: multiple choice, or a
    prompt starting with "Predict"); in graded mode a prediction's first answer counts.
    """

    name: str
    prompt: str
    reference: Callable[..., Any]
    cases: Callable[[], Sequence[tuple]] | None = None
    hint_text: str = ""
    solution_text: str = ""
    rtol: float = 1e-5
    atol: float = 1e-6
    hints: Sequence[str] = ()
    forbid: Sequence[Callable] | None = None
    choices: Mapping[str, str] | None = None
    points: float = 1.0
    case_points: Sequence[float] | None = None
    prediction: bool | None = None

    def __post_init__(self) -> None:
        if not self.hints and self.hint_text:
            self.hints = (self.hint_text,)
        if self.prediction is None:
            self.prediction = self.choices is not None \
                or self.prompt.lstrip().lower().startswith("predict")
        self._hints_shown = 0
        self._expected = None          # the reference's value, computed once (value questions)
        self._expected_lock = threading.Lock()

    @property
    def answer_name(self) -> str:
        """The name the notebook asks the learner to define (``"04.1 hessian"`` -> ``hessian``)."""
        return self.name.split(" ", 1)[-1]

    @property
    def forbidden(self) -> dict[Callable, str | None]:
        """The functions unavailable while the learner's function runs, each with the name a
        verdict gives it: :attr:`forbid` (or by default the reference, if it is a named package
        function) and the reference itself."""
        if self.forbid is not None:
            found = dict.fromkeys(self.forbid)
        else:
            named = getattr(self.reference, "__name__", "<lambda>")
            module = getattr(self.reference, "__module__", "") or ""
            is_package = module.startswith("qcourse.") and not module.startswith("qcourse.exercises")
            found = {self.reference: None} if is_package and not named.startswith(("<", "_")) \
                else {}
        if self.cases is not None and (getattr(self.reference, "__module__", "") or "").startswith(
                "qcourse.") and self.reference not in found:
            found[self.reference] = f"reference solution of {self.name}"
        return found

    def case_weights(self, n_cases: int) -> list[float]:
        """The points of each of the ``n_cases`` hidden cases (:attr:`case_points`, or 1 each)."""
        if self.case_points is None:
            return [1.0] * n_cases
        if len(self.case_points) != n_cases or any(p < 0 for p in self.case_points) \
                or sum(self.case_points) <= 0:
            raise ValueError(f"{self.name}: case_points must give one non-negative number per "
                             f"hidden case ({n_cases}), not all zero; got {list(self.case_points)}")
        return [float(p) for p in self.case_points]

    def check(self, answer: Any) -> Verdict:
        """Run the hidden cases against ``answer``; print and return the verdict. In graded mode
        a prediction judges its first answer (see the module docstring)."""
        note = ""
        if graded() and self.prediction and self._answers_the_question(answer):
            answer = FIRST_ANSWERS.setdefault(self.name, answer)
            note = FIRST_ANSWER_NOTE.format(answer=repr(answer))
        verdict = self.judge(answer)
        if note:
            verdict.message = f"{verdict.message} {note}".strip()
        elif self.choices is not None and verdict.status == WRONG:
            verdict.message += " Try again."
        record(verdict)
        print(verdict)
        return verdict

    def _answers_the_question(self, answer: Any) -> bool:
        """Whether ``answer`` is an answer at all (a first answer to record): not the
        placeholder, and one of the letters for a multiple-choice question."""
        if _is_placeholder(answer):
            return False
        return self.choices is None or (isinstance(answer, str)
                                        and answer.strip().lower() in self.choices)

    def judge(self, answer: Any) -> Verdict:
        """The verdict on ``answer``, without printing or recording it; never raises."""
        return self.verdict(self.outcome(answer))

    def outcome(self, answer: Any, *, portable: bool = False,
                seconds: float | None = None) -> dict:
        """What ``answer`` gives, before any comparison: the value itself, or for a function its
        result (or the exception it raised) on each hidden case, run with :attr:`forbidden`
        unavailable and, if ``seconds`` is given, within that many seconds for all the cases
        together (the cases left when time runs out are not run). ``portable``: values encoded
        as JSON-safe data (:func:`encode`), so a grader can compare them in another process.
        Never raises."""
        pack = encode if portable else (lambda v: v)
        if _is_placeholder(answer):
            return {"kind": "placeholder"}
        if self.cases is None:
            return {"kind": "value", "value": pack(answer), "portable": portable}
        if not callable(answer):
            return {"kind": "not callable", "what": describe(answer)}
        function, results, cases = self.wrap(answer), [], self.cases()
        try:
            with time_limit(seconds):
                for args in cases:
                    try:
                        with unavailable(self.forbidden):
                            got = function(*_copy(args))
                    except Exception as err:  # a learner's bug fails the case, not the check
                        results.append({"raised": f"{type(err).__name__}: {err}"})
                        continue
                    if _is_placeholder(got):
                        return {"kind": "placeholder"}
                    results.append({"value": pack(got)})
        except ReferenceCalled as err:
            return {"kind": "reference called", "name": str(err)}
        except OutOfTime as err:
            results.append({"raised": f"OutOfTime: {err}"})
        return {"kind": "function", "results": results, "portable": portable}

    def wrap(self, answer: Callable) -> Callable:
        """The function the hidden cases call and compare with the reference: the answer itself
        (a subclass may wrap it, e.g. to measure its gradient as well as its value)."""
        return answer

    def verdict(self, outcome: dict) -> Verdict:
        """The verdict on an :meth:`outcome` (computed here, with the reference of this process);
        never raises."""
        try:
            return self._verdict(outcome)
        except Exception as err:  # anything a strange answer does is a verdict, not a crash
            return Verdict(self.name, WRONG, f"Could not check this answer: "
                                             f"{type(err).__name__}: {err}")

    def _verdict(self, outcome: dict) -> Verdict:
        kind = outcome.get("kind")
        if kind == "placeholder":
            return Verdict(self.name, NOT_ATTEMPTED, "Replace the `...` with your answer.")
        if kind == "reference called":
            return Verdict(self.name, WRONG, f"Your answer uses the course's own "
                                             f"`{outcome['name']}`: the exercise is to write it "
                                             "yourself.")
        if kind == "not callable":
            return Verdict(self.name, WRONG, f"Expected a function, got {outcome['what']}.")
        if kind == "value":
            value = decode(outcome["value"]) if outcome.get("portable") else outcome["value"]
            return self._judge_choice(value) if self.choices is not None \
                else self._judge_value(value)
        if kind != "function":
            return Verdict(self.name, WRONG, f"No answer could be read ({kind}).")
        return self._judge_cases(outcome["results"],
                                 decode if outcome.get("portable") else (lambda v: v))

    def _judge_cases(self, results: list[dict], unpack: Callable[[Any], Any]) -> Verdict:
        """Compare each case's result with the reference: the weighted share that pass, and the
        first failing case in words."""
        cases = list(self.cases())
        weights = self.case_weights(len(cases))
        earned, passed, failure = 0.0, 0, None
        for i, (args, weight) in enumerate(zip(cases, weights), 1):
            result = results[i - 1] if i <= len(results) else {"raised": "not run (no time left)"}
            if "raised" in result:
                failure = failure or {"case": i, "inputs": describe(args),
                                      "raised": result["raised"]}
                continue
            want, got = self.reference(*_copy(args)), unpack(result["value"])
            if close(want, got, self.rtol, self.atol):
                earned, passed = earned + weight, passed + 1
            else:
                failure = failure or {"case": i, "inputs": describe(args),
                                      "expected": describe(want), "got": describe(got)}
        total, score = len(cases), earned / sum(weights)
        if failure is None:
            return Verdict(self.name, CORRECT, f"All {total} hidden cases pass.", 1.0, passed,
                           total)
        first = f"Case {failure['case']} with inputs {failure['inputs']} " + (
            f"raised {failure['raised']}" if "raised" in failure
            else f"gave {failure['got']}; expected {failure['expected']}.")
        return Verdict(self.name, WRONG, f"{passed} of {total} hidden cases pass. {first}",
                       score, passed, total, failure)

    def expected(self) -> Any:
        """The right answer of a value or multiple-choice question (``reference()``, computed
        once per process: some references measure a model)."""
        with self._expected_lock:
            if self._expected is None:
                self._expected = (self.reference(),)
            return self._expected[0]

    def _judge_value(self, answer: Any) -> Verdict:
        if close(self.expected(), answer, self.rtol, self.atol):
            return Verdict(self.name, CORRECT, "")
        return Verdict(self.name, WRONG, f"Got {describe(answer)}; not what we computed.")

    def _judge_choice(self, answer: Any) -> Verdict:
        letters = ", ".join(self.choices)
        if not isinstance(answer, str) or answer.strip().lower() not in self.choices:
            return Verdict(self.name, WRONG, f"Answer with one letter: {letters}; got "
                                             f"{describe(answer)}.")
        if answer.strip().lower() == self.expected():
            return Verdict(self.name, CORRECT, "")
        return Verdict(self.name, WRONG, f"Not {answer.strip().lower()}.")

    def show(self) -> None:
        """Print the question (and its choices)."""
        print(f"{self.name}: {self.prompt}")
        for letter, text in (self.choices or {}).items():
            print(f"  ({letter}) {text}")

    def hint(self, level: int | None = None) -> None:
        """The next hint (or hint number ``level``, from 1); the last stops short of the answer."""
        if not self.hints:
            print("💡 No hint for this one: re-read the section above it.")
            return
        if level is None:
            self._hints_shown = min(self._hints_shown + 1, len(self.hints))
            level = self._hints_shown
        level = max(1, min(int(level), len(self.hints)))
        more = f" (hint {level} of {len(self.hints)})" if len(self.hints) > 1 else ""
        print(f"💡{more} {self.hints[level - 1]}")

    def solution(self) -> None:
        if graded():
            print("🔒 Solutions are withheld in graded mode.")
            return
        print(self.solution_text)


def _copy(args: tuple) -> tuple:
    """Fresh copies of tensor arguments, so a learner's in-place edit cannot leak."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def record(verdict: Verdict) -> None:
    """Keep the verdict in :data:`RESULTS` and, if ``QCOURSE_RESULTS`` is set, in that file."""
    entry = {"question": verdict.question, "status": verdict.status, "score": verdict.score,
             "time": time.time()}
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
