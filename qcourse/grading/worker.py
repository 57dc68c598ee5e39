"""The worker process: run one submitted notebook in a fresh kernel, then the grader's cell.

    python -m qcourse.grading.worker NOTEBOOK --timeout S --pid-file F --report R
        [--question-seconds Q] [--scratch DIR] [--folder DIR] [--sandbox --protect PATH ...]

1. The notebook's folder (a student's own folder, else the notebook alone) is copied into a
   scratch folder, where the kernel runs: a learner's files never land among the submissions.
2. A fresh kernel (in the sandbox of :mod:`qcourse.grading.sandbox` with ``--sandbox``) runs
   the learner's cells top to bottom; a cell that raises does not stop it, a cell that runs
   past ``timeout`` seconds is interrupted, a kernel that dies ends the run.
3. Then :data:`GRADER_CELL`: it reads the first answers graded mode recorded for predictions,
   reloads ``qcourse.exercises`` and the notebook's exercise modules (so in-memory patches are
   gone), looks up each answer by name and runs it on the hidden cases (within
   ``question_seconds`` per question), and prints the outcomes as JSON data behind a random
   marker. The worker writes them to ``--report``; it never judges them (the parent does, in a
   process that never ran learner code).

Light on purpose (no torch): it only drives the kernel.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import shutil
import sys

import nbformat

from qcourse.grading import notebooks, sandbox

PER_QUESTION_SECONDS = 30

GRADER_CELL = '''
def _qcourse_grader(marker, modules, seconds):
    import importlib, json, sys
    namespace = sys.modules["__main__"].__dict__
    before = sys.modules.get("qcourse.exercises")
    first = dict(getattr(before, "FIRST_ANSWERS", None) or {})  # the reload below empties it
    framework = importlib.reload(importlib.import_module("qcourse.exercises"))
    report = {}
    for name in modules:
        try:
            module = importlib.reload(importlib.import_module(name))
        except ImportError:
            continue                          # no such exercise module: the grader says so
        for q in vars(module).values():
            if not isinstance(q, framework.Question):
                continue
            took_first = bool(q.prediction) and q.name in first
            answer = first[q.name] if took_first else namespace.get(q.answer_name, ...)
            try:
                report[q.name] = q.outcome(answer, portable=True, seconds=seconds)
            except BaseException as err:
                report[q.name] = {"kind": "function", "portable": True,
                                  "results": [{"raised": f"{type(err).__name__}: {err}"}]}
            report[q.name]["first answer"] = took_first
    print(marker + json.dumps(report))
'''


def copy_into_scratch(notebook: pathlib.Path, scratch: pathlib.Path,
                      folder: pathlib.Path | None) -> pathlib.Path:
    """``scratch/work``: a copy of ``folder`` (the student's own folder), or of the notebook
    alone when it was submitted loose among others'."""
    work = scratch / "work"
    if folder is not None:
        shutil.copytree(folder, work, symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        work.mkdir(parents=True)
        shutil.copy2(notebook, work / notebook.name)
    return work


def run(path: pathlib.Path, *, timeout: int, pid_file: pathlib.Path,
        question_seconds: int = PER_QUESTION_SECONDS, scratch: pathlib.Path,
        folder: pathlib.Path | None = None, sandboxed: bool = False,
        protect: tuple[pathlib.Path, ...] = ()) -> dict:
    """Execute the notebook and the grader cell; the raw report
    ``{"outcomes": {question: outcome} | None, "problem": str | None}``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = notebooks.read(path)
    marker = f"QCOURSE-GRADER-{secrets.token_hex(16)}:"
    call = f"_qcourse_grader({marker!r}, {notebooks.exercise_modules(nb)!r}, {question_seconds})"
    nb.cells.append(nbformat.v4.new_code_cell(GRADER_CELL + call))
    work = copy_into_scratch(path, scratch, folder)
    env = {k: v for k, v in os.environ.items() if k != "QCOURSE_RESULTS"}
    manager = None
    if sandboxed:
        manager = sandbox.kernel_manager(scratch, protect=protect)
        env = sandbox.environment(scratch, env)
    client = NotebookClient(nb, km=manager, timeout=timeout, allow_errors=True,
                            interrupt_on_timeout=True, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    problem = None
    with client.setup_kernel(env=env):
        pid_file.write_text(str(client.km.provisioner.pid))
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                problem = f"the kernel died while running cell {index + 1}"
                break
            if any(o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", [])) \
                    and index < len(nb.cells) - 1:
                problem = problem or f"cell {index + 1} ran longer than {timeout} s (interrupted)"
    for output in nb.cells[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(marker):
                return {"outcomes": json.loads(line[len(marker):]), "problem": problem}
    return {"outcomes": None, "problem": problem or "the grader cell produced no report"}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m qcourse.grading.worker")
    parser.add_argument("notebook")
    parser.add_argument("--timeout", type=int, required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--question-seconds", type=int, default=PER_QUESTION_SECONDS)
    parser.add_argument("--folder")
    parser.add_argument("--sandbox", action="store_true")
    parser.add_argument("--protect", action="append", default=[])
    args = parser.parse_args(argv)
    report = run(pathlib.Path(args.notebook), timeout=args.timeout,
                 pid_file=pathlib.Path(args.pid_file), question_seconds=args.question_seconds,
                 scratch=pathlib.Path(args.scratch),
                 folder=pathlib.Path(args.folder) if args.folder else None,
                 sandboxed=args.sandbox, protect=tuple(map(pathlib.Path, args.protect)))
    pathlib.Path(args.report).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
