"""Grading one notebook: a worker process runs it (:mod:`qcourse.grading.worker`), this process
judges what came back.

This process never runs learner code. It starts the worker, kills the kernel if it uses more
than ``memory_mb`` or the whole run outlives its deadline, and then computes each question's
verdict with the reference of this process (:meth:`~qcourse.exercises.Question.verdict`): the
answers travel as JSON data, never as pickles, and a results file a learner's own ``check()``
calls wrote is never read.

Two things it reads from the submitted notebook's saved outputs (what the learner saw):
the verdict each ``check()`` last printed (the feedback says when the grader's fresh run
disagrees), and, for predictions checked in graded mode, the first answer the check recorded
(it is the one that counts; see :mod:`qcourse.exercises`).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import nbformat

from qcourse import exercises
from qcourse.grading import notebooks, sandbox
from qcourse.grading.worker import PER_QUESTION_SECONDS

ERROR = "error"
STATUSES = (exercises.CORRECT, exercises.WRONG, exercises.NOT_ATTEMPTED, ERROR)
SHOWN_VERDICT = re.compile(r"^(?:✅|❌|⏳) (\S+ \S+): (correct|wrong|not attempted)\.(.*)$",
                           re.MULTILINE)
FIRST_ANSWER = re.compile(re.escape(exercises.FIRST_ANSWER_NOTE).replace(
    re.escape("{answer}"), "(.{1,500}?)"))


@dataclasses.dataclass
class Mark:
    """One question of one graded notebook. ``score`` is the share of its ``points`` earned;
    ``shown`` the status the notebook's own ``check()`` printed last (None if none);
    ``first_answer`` where the first answer of a prediction came from (``"your saved
    notebook"``, ``"the grader's run of your notebook"``, or None); ``failure``, ``passed``, ``total`` as in
    :class:`~qcourse.exercises.Verdict`."""

    status: str
    message: str
    score: float
    points: float
    shown: str | None = None
    first_answer: str | None = None
    failure: dict[str, Any] | None = None
    passed: int | None = None
    total: int | None = None

    @property
    def earned(self) -> float:
        return round(self.points * self.score, 4)


@dataclasses.dataclass
class Result:
    """One graded notebook: the mark of each question, a problem that stopped the run (or None),
    how long it took, and whether it was reused from an earlier run of the same file."""

    student: str
    notebook: str
    chapter: str | None
    marks: dict[str, Mark]
    problem: str | None
    seconds: float
    reused: bool = False

    @property
    def verdicts(self) -> dict[str, tuple[str, str]]:
        """``{question: (status, message)}``."""
        return {q: (m.status, m.message) for q, m in self.marks.items()}

    @property
    def earned(self) -> float:
        return round(sum(m.earned for m in self.marks.values()), 4)

    @property
    def possible(self) -> float:
        return sum(m.points for m in self.marks.values())

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Result:
        marks = {q: Mark(**m) for q, m in data["marks"].items()}
        return cls(**{**data, "marks": marks})


def questions_of(module_name: str) -> list[exercises.Question]:
    """The questions of an exercise module, in order."""
    module = importlib.import_module(module_name)
    return [q for q in vars(module).values() if isinstance(q, exercises.Question)]


def saved_checks(nb: nbformat.NotebookNode) -> tuple[dict[str, str], dict[str, Any]]:
    """From the notebook's saved outputs: the status each question's ``check()`` printed last,
    and the first answer graded mode recorded for each prediction (the first one printed)."""
    shown: dict[str, str] = {}
    first: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            for question, status, rest in SHOWN_VERDICT.findall(text):
                shown[question] = status
                recorded = FIRST_ANSWER.search(rest)
                if recorded and question not in first:
                    try:
                        first[question] = ast.literal_eval(recorded.group(1))
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        pass
    return shown, first


def judge(questions: list[exercises.Question], outcomes: dict[str, dict],
          nb: nbformat.NotebookNode, problem: str | None) -> dict[str, Mark]:
    """Each question's mark from the outcomes the grader's cell reported (a question without one
    is an error: the run never got there)."""
    shown, first = saved_checks(nb)
    marks = {}
    for q in questions:
        source = None
        if q.prediction and q.name in first:
            outcome, source = {"kind": "value", "value": first[q.name]}, "your saved notebook"
        elif q.name in outcomes:
            outcome = outcomes[q.name]
            source = "the grader's run of your notebook" if outcome.get("first answer") \
                else None
        else:
            marks[q.name] = Mark(ERROR, problem or "not graded", 0.0, q.points, shown.get(q.name))
            continue
        v = q.verdict(outcome)
        marks[q.name] = Mark(v.status, v.message, v.score, q.points, shown.get(q.name), source,
                             v.failure, v.passed, v.total)
    return marks


def grade_notebook(path: str | pathlib.Path, *, timeout: int = 600, memory_mb: int = 3000,
                   student: str | None = None, question_seconds: int = PER_QUESTION_SECONDS,
                   sandboxed: bool = False, folder: pathlib.Path | None = None,
                   protect: tuple[pathlib.Path, ...] = ()) -> Result:
    """Grade one notebook in a worker process: ``timeout`` seconds per cell, ``memory_mb`` for
    the kernel, ``question_seconds`` per answer on the hidden cases; ``folder`` (the student's
    own folder) is copied for the kernel to run in; ``sandboxed``: in the sandbox, with the
    ``protect`` paths checked read-only."""
    path = pathlib.Path(path)
    start = time.time()
    student = student or path.stem
    try:
        nb = notebooks.read(path)
    except ValueError as err:
        return Result(student, path.name, None, {}, str(err), 0.0)
    imported = notebooks.exercise_modules(nb)
    modules = [m for m in imported if importlib.util.find_spec(m) is not None]
    unknown = sorted(set(imported) - set(modules))
    if not modules:
        return Result(student, path.name, None, {}, "no qcourse exercises: the notebook imports "
                      "no qcourse.exercises module (a notebook of another course?)"
                      + (f"; {', '.join(unknown)} do(es) not exist" if unknown else ""), 0.0)
    questions = [q for m in modules for q in questions_of(m)]
    report = _run_worker(path, timeout=timeout, memory_mb=memory_mb, sandboxed=sandboxed,
                         question_seconds=question_seconds, folder=folder, protect=protect)
    marks = judge(questions, report["outcomes"] or {}, nb, report["problem"])
    problem = "; ".join(filter(None, [report["problem"], f"it imports {', '.join(unknown)}, "
                                      "which do(es) not exist" if unknown else None])) or None
    return Result(student, path.name, notebooks.chapter(modules), marks, problem,
                  round(time.time() - start, 1))


def _run_worker(path: pathlib.Path, *, timeout: int, memory_mb: int, sandboxed: bool,
                question_seconds: int, folder: pathlib.Path | None,
                protect: tuple[pathlib.Path, ...]) -> dict:
    """Start the worker on ``path`` and watch it; its report (or the problem that stopped it)."""
    with tempfile.TemporaryDirectory(prefix="qcourse-grade-") as private:
        scratch = pathlib.Path(tempfile.mkdtemp(prefix="qcourse-scratch-"))
        os.chmod(scratch, 0o755)      # a sandboxed kernel (nobody) reaches its copy through it
        pid_file, out_file = pathlib.Path(private) / "kernel.pid", pathlib.Path(private) / "report.json"
        command = [sys.executable, "-m", "qcourse.grading.worker", str(path), "--timeout",
                   str(timeout), "--pid-file", str(pid_file), "--report", str(out_file),
                   "--question-seconds", str(question_seconds), "--scratch", str(scratch)]
        command += ["--folder", str(folder)] if folder else []
        command += ["--sandbox", *[a for p in protect for a in ("--protect", str(p))]] \
            if sandboxed else []
        try:
            with open(pathlib.Path(private) / "worker.log", "w+") as log:
                worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                          start_new_session=True)
                problem = _watch(worker, pid_file, deadline=time.time() + 3 * timeout + 120,
                                 memory_bytes=memory_mb * 2**20)
                log.seek(0)
                failure = log.read().strip().splitlines()[-1:]
            report = json.loads(out_file.read_text()) if out_file.exists() else \
                {"outcomes": None,
                 "problem": f"the grader failed: {failure[0] if failure else 'no message'}"}
        finally:
            sandbox.remove_tree(scratch)
    report["problem"] = problem or report["problem"]
    return report


def _kernel_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and its children (Linux /proc), 0 if it is gone."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = pathlib.Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024
            for task in pathlib.Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, AttributeError, ValueError):
            continue
    return total


def _kill(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _watch(worker: subprocess.Popen, pid_file: pathlib.Path, deadline: float,
           memory_bytes: int) -> str | None:
    """Wait for the worker; kill the kernel if it uses more than ``memory_bytes``, and both if
    the worker outlives ``deadline``. Returns the problem, or None."""
    problem = None
    while worker.poll() is None:
        text = pid_file.read_text() if pid_file.exists() else ""
        kernel = int(text) if text.strip().isdigit() else None
        if kernel and _kernel_rss(kernel) > memory_bytes:
            problem = f"the notebook used more than {memory_bytes // 2**20} MB"
            _kill(kernel)
        if time.time() > deadline:
            problem = "the notebook did not finish in time"
            _kill(kernel)
            _kill(worker.pid)
            break
        time.sleep(0.2)
    worker.wait()
    return problem
