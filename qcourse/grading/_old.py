"""Grading a folder of submitted notebooks, and releasing student copies.

    qcourse grade submissions/ [--out grades/] [--timeout 600] [--memory-mb 3000]
    qcourse release notebooks/04_gptq.ipynb ... --out student/ [--keep-outputs]

How a submission is graded (one notebook, in a worker process of its own):

1. a fresh kernel runs the learner's cells top to bottom; a cell that raises does not stop it, a
   cell that runs past ``timeout`` seconds is interrupted, a kernel that dies (a crash, or the
   grader killing it for using more than ``memory_mb``) ends the run and marks its questions;
2. then the grader appends its own cell: it reloads ``qcourse.exercises`` and the exercise
   modules the notebook imports (so a learner's in-memory patches of them are gone), looks up
   each question's answer by the name the exercise asks for, and runs it on the hidden cases
   (each within a time budget) with the package's own implementation of that answer unavailable;
   the outcomes travel back as JSON data (never as pickles) behind a random marker;
3. the worker process, which never ran learner code, computes the expected values and the
   verdicts. The results file a learner's own ``check()`` calls write is never read.

What this does not defend against: a learner with full control of the kernel can still lie —
e.g. edit the package files on disk, or replace builtins the appended cell relies on. Grade in a
container with a read-only package (and no network) if that matters; see the README.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import html
import importlib
import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import nbformat

from qcourse import exercises

ERROR = "error"
STATUSES = (exercises.CORRECT, exercises.WRONG, exercises.NOT_ATTEMPTED, ERROR)
EXERCISE_MODULE = re.compile(r"qcourse\.exercises(?:\s+import\s+([\w\s,]+)|\.(ex\d\d))")
PER_QUESTION_SECONDS = 30


# ---- which questions a notebook holds ----------------------------------------------------------

def exercise_modules(nb: nbformat.NotebookNode) -> list[str]:
    """The ``qcourse.exercises.exNN`` modules the notebook's code imports, in order."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for imported, dotted in EXERCISE_MODULE.findall(cell.source):
            names = [n.strip() for n in imported.replace("\n", ",").split(",")] if imported \
                else [dotted]
            for name in names:
                if re.fullmatch(r"ex\d\d", name) and f"qcourse.exercises.{name}" not in found:
                    found.append(f"qcourse.exercises.{name}")
    return found


def questions_of(module_name: str) -> list[exercises.Question]:
    module = importlib.import_module(module_name)
    return [q for q in vars(module).values() if isinstance(q, exercises.Question)]


# ---- the cell the grader appends ----------------------------------------------------------------

GRADER_CELL = '''
def _qcourse_grader(marker, modules, seconds):
    import importlib, json, signal, sys
    import qcourse.exercises as framework
    framework = importlib.reload(framework)
    namespace = sys.modules["__main__"].__dict__
    def stop(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")
    signal.signal(signal.SIGALRM, stop)
    report = {}
    for name in modules:
        module = importlib.reload(importlib.import_module(name))
        for q in vars(module).values():
            if not isinstance(q, framework.Question):
                continue
            answer = namespace.get(q.answer_name, ...)
            signal.alarm(seconds)
            try:
                report[q.name] = q.outcome(answer, portable=True)
            except BaseException as err:
                report[q.name] = {"kind": "function", "portable": True,
                                  "results": [{"raised": f"{type(err).__name__}: {err}"}]}
            finally:
                signal.alarm(0)
    print(marker + json.dumps(report))
'''


@dataclasses.dataclass
class Result:
    """One graded notebook: the verdict of each question (``{question: (status, message)}``), a
    problem that stopped the run (or None), and how long it took."""

    student: str
    notebook: str
    verdicts: dict[str, tuple[str, str]]
    problem: str | None
    seconds: float


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


def run_worker(path: pathlib.Path, timeout: int, pid_file: pathlib.Path,
               question_seconds: int = PER_QUESTION_SECONDS) -> dict:
    """In the worker process: execute the notebook and the grader cell; return the raw report
    ``{"outcomes": {...}, "problem": str | None}``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(path, as_version=4)
    modules = exercise_modules(nb)
    marker = f"QCOURSE-GRADER-{secrets.token_hex(16)}:"
    call = f"_qcourse_grader({marker!r}, {modules!r}, {question_seconds})"
    nb.cells.append(nbformat.v4.new_code_cell(GRADER_CELL + call))
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    problem = None
    env = {k: v for k, v in os.environ.items() if k != "QCOURSE_RESULTS"}
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
    grader = nb.cells[-1]
    for output in grader.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(marker):
                return {"outcomes": json.loads(line[len(marker):]), "problem": problem}
    return {"outcomes": None, "problem": problem or "the grader cell produced no report"}


def grade_notebook(path: str | pathlib.Path, *, timeout: int = 600, memory_mb: int = 3000,
                   student: str | None = None,
                   question_seconds: int = PER_QUESTION_SECONDS) -> Result:
    """Grade one notebook in a worker process (see the module docstring): ``timeout`` seconds
    per cell, ``memory_mb`` for the kernel, ``question_seconds`` per answer on the hidden cases."""
    path = pathlib.Path(path)
    start = time.time()
    student = student or path.stem
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:
        return Result(student, path.name, {}, f"not a readable notebook: {type(err).__name__}: "
                                              f"{err}", 0.0)
    modules = exercise_modules(nb)
    if not modules:
        return Result(student, path.name, {}, "no qcourse exercises: the notebook imports no "
                                              "qcourse.exercises module (another course?)", 0.0)
    questions = [q for m in modules for q in questions_of(m)]
    with tempfile.TemporaryDirectory() as tmp:
        pid_file, out_file = pathlib.Path(tmp) / "kernel.pid", pathlib.Path(tmp) / "report.json"
        log = open(pathlib.Path(tmp) / "worker.log", "w+")
        worker = subprocess.Popen(
            [sys.executable, "-m", "qcourse.grading", "--worker", str(path), "--timeout",
             str(timeout), "--pid-file", str(pid_file), "--report", str(out_file),
             "--question-seconds", str(question_seconds)],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        problem = _watch(worker, pid_file, deadline=start + 3 * timeout + 120,
                         memory_bytes=memory_mb * 2**20)
        log.seek(0)
        failure = log.read().strip().splitlines()[-1:]
        log.close()
        report = json.loads(out_file.read_text()) if out_file.exists() else \
            {"outcomes": None, "problem": f"the grader failed: {failure[0] if failure else '?'}"}
    problem = problem or report["problem"]
    outcomes = report["outcomes"] or {}
    verdicts = {}
    for q in questions:
        if q.name in outcomes:
            v = q.verdict(outcomes[q.name])
            verdicts[q.name] = (v.status, v.message)
        else:
            verdicts[q.name] = (ERROR, problem or "not graded")
    return Result(student, path.name, verdicts, problem, round(time.time() - start, 1))


def _watch(worker: subprocess.Popen, pid_file: pathlib.Path, deadline: float,
           memory_bytes: int) -> str | None:
    """Wait for the worker; kill the kernel if it uses more than ``memory_bytes``, and both if
    the worker outlives ``deadline``. Returns the problem, or None."""
    problem = None
    while worker.poll() is None:
        kernel = int(pid_file.read_text()) if pid_file.exists() and pid_file.read_text() else None
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


# ---- a folder of submissions ---------------------------------------------------------------------

def find_submissions(folder: str | pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """``(student, notebook)`` pairs: notebooks directly in ``folder`` (student = file name) and
    in its subfolders (student = subfolder name)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder holding the submitted notebooks")
    found = [(p.stem, p) for p in sorted(folder.glob("*.ipynb"))]
    found += [(p.parent.name, p) for p in sorted(folder.glob("*/*.ipynb"))
              if ".ipynb_checkpoints" not in p.parts]
    if not found:
        raise ValueError(f"{folder} holds no .ipynb files (directly or one folder down)")
    return found


def grade_folder(folder: str | pathlib.Path, timeout: int = 600, memory_mb: int = 3000,
                 progress: bool = False, question_seconds: int = PER_QUESTION_SECONDS
                 ) -> list[Result]:
    """Grade every submission of ``folder`` (:func:`find_submissions`), one at a time."""
    results = []
    for student, path in find_submissions(folder):
        result = grade_notebook(path, timeout=timeout, memory_mb=memory_mb, student=student,
                                question_seconds=question_seconds)
        if progress:
            right = sum(s == exercises.CORRECT for s, _ in result.verdicts.values())
            print(f"{student:20} {path.name:40} {right}/{len(result.verdicts)} correct"
                  + (f"  ({result.problem})" if result.problem else ""), flush=True)
        results.append(result)
    return results


def points(results: list[Result]) -> dict[str, float]:
    """Each question's points (from its :class:`~qcourse.exercises.Question`), by name."""
    weights = {}
    for module in {m for r in results for m in _modules_of(r)}:
        weights.update({q.name: q.points for q in questions_of(module)})
    return weights


def _modules_of(result: Result) -> set[str]:
    return {f"qcourse.exercises.ex{name[:2]}" for name in result.verdicts}


def roster(results: list[Result]) -> list[dict]:
    """One row per student: points earned, points possible, and each question's status."""
    weights = points(results)
    rows: dict[str, dict] = {}
    for r in results:
        row = rows.setdefault(r.student, {"student": r.student, "points": 0.0, "possible": 0.0})
        for question, (status, _) in sorted(r.verdicts.items()):
            row[question] = status
            row["possible"] += weights.get(question, 1.0)
            row["points"] += weights.get(question, 1.0) if status == exercises.CORRECT else 0.0
        if r.problem:
            row["problems"] = "; ".join(filter(None, [row.get("problems"), f"{r.notebook}: {r.problem}"]))
    return list(rows.values())


def question_summary(results: list[Result]) -> list[dict]:
    """Per question: how many learners got each status, and the most common wrong answers."""
    table: dict[str, dict] = {}
    for r in results:
        for question, (status, message) in r.verdicts.items():
            entry = table.setdefault(question, {"question": question, **dict.fromkeys(STATUSES, 0),
                                                "wrong answers": collections.Counter()})
            entry[status] += 1
            if status == exercises.WRONG:
                entry["wrong answers"][message] += 1
    return [table[q] for q in sorted(table)]


def summary_markdown(results: list[Result]) -> str:
    lines = [f"# Grades: {len({r.student for r in results})} students, "
             f"{len(results)} notebooks", "",
             "| question | correct | wrong | not attempted | error | most common wrong answers |",
             "|---|---|---|---|---|---|"]
    for row in question_summary(results):
        common = "<br>".join(f"{n}× {m}" for m, n in row["wrong answers"].most_common(3))
        lines.append(f"| {row['question']} | {row['correct']} | {row['wrong']} | "
                     f"{row['not attempted']} | {row['error']} | {common.replace('|', '/')} |")
    problems = [f"- {r.student} / {r.notebook}: {r.problem}" for r in results if r.problem]
    if problems:
        lines += ["", "## Notebooks that did not run to the end", "", *problems]
    return "\n".join(lines) + "\n"


def summary_html(results: list[Result]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['question'])}</td><td>{r['correct']}</td><td>{r['wrong']}</td>"
        f"<td>{r['not attempted']}</td><td>{r['error']}</td><td>"
        + "<br>".join(f"{n}× {html.escape(m)}" for m, n in r["wrong answers"].most_common(3))
        + "</td></tr>" for r in question_summary(results))
    return ("<!doctype html><meta charset='utf-8'><title>Grades</title>"
            "<table border=1 cellpadding=4><tr><th>question</th><th>correct</th><th>wrong</th>"
            f"<th>not attempted</th><th>error</th><th>most common wrong answers</th></tr>{rows}"
            "</table>")


def write_reports(results: list[Result], out: str | pathlib.Path) -> pathlib.Path:
    """Write ``roster.csv``, ``roster.json``, ``summary.md`` and ``summary.html`` into ``out``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = roster(results)
    columns = ["student", "points", "possible"] + sorted(
        {k for row in rows for k in row} - {"student", "points", "possible", "problems"}) \
        + ["problems"]
    with open(out / "roster.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "roster.json").write_text(json.dumps(
        {"students": rows, "results": [dataclasses.asdict(r) for r in results]}, indent=1))
    (out / "summary.md").write_text(summary_markdown(results))
    (out / "summary.html").write_text(summary_html(results))
    return out


# ---- student copies ---------------------------------------------------------------------------------

GRADED_CELL = ("# Graded mode: solutions are withheld in this copy (qcourse release).\n"
               "import qcourse.exercises\nqcourse.exercises.set_graded(True)")


def release(notebooks: list[str | pathlib.Path], out: str | pathlib.Path, *,
            keep_outputs: bool = False, graded: bool = True) -> list[pathlib.Path]:
    """Student copies of ``notebooks`` in ``out``: outputs cleared (unless ``keep_outputs``) and,
    with ``graded``, a first code cell that turns graded mode on (``solution()`` refuses)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in map(pathlib.Path, notebooks):
        try:
            nb = nbformat.read(source, as_version=4)
        except Exception as err:
            raise ValueError(f"{source} is not a readable notebook: {err}") from err
        if not exercise_modules(nb):
            raise ValueError(f"{source} has no qcourse exercises: is it a course notebook?")
        for cell in nb.cells:
            if cell.cell_type == "code" and not keep_outputs:
                cell.outputs, cell.execution_count = [], None
        if graded:
            cell = nbformat.v4.new_code_cell(GRADED_CELL)
            first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
            nb.cells.insert(first_code + 1, cell)
            nb.metadata.setdefault("qcourse", {})["graded"] = True
        target = out / source.name
        nbformat.write(nb, str(target))
        written.append(target)
    return written


# ---- command line ---------------------------------------------------------------------------------

def main(folder: str, timeout: int = 600, memory_mb: int = 3000, out: str | None = None) -> None:
    results = grade_folder(folder, timeout, memory_mb, progress=True)
    target = write_reports(results, out or pathlib.Path(folder) / "grades")
    print()
    print(summary_markdown(results))
    print(f"roster and summaries written to {target}")


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m qcourse.grading")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--timeout", type=int, required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--question-seconds", type=int, default=PER_QUESTION_SECONDS)
    args = parser.parse_args(argv)
    report = run_worker(pathlib.Path(args.worker), args.timeout, pathlib.Path(args.pid_file),
                        args.question_seconds)
    pathlib.Path(args.report).write_text(json.dumps(report))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
