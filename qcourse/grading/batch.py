"""A folder of submissions: graded in parallel, resumable, with progress and a summary.

* ``jobs`` notebooks at a time (each in its own worker and kernel), never more than the CPU
  count or than the memory allows at ``memory_mb`` each;
* a notebook that crashes, runs out of time or memory is recorded with its problem and the
  batch goes on;
* with a ``resume`` folder (``qcourse grade`` uses ``OUT/.resume``), each graded notebook is
  kept under a key made of its bytes, the grading settings and the exercise code; a re-run
  reuses the result of every notebook whose key did not change (a timed-out one included:
  delete the folder to grade everything again), and grades the rest.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import sys
import threading
import time

from qcourse import paths
from qcourse.grading import export, notebooks, sandbox, submissions
from qcourse.grading.feedback import number
from qcourse.grading.runner import ERROR, Result, grade_notebook
from qcourse.grading.worker import PER_QUESTION_SECONDS


def memory_available() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bounded_jobs(jobs: int, memory_mb: int, notebooks_to_run: int) -> int:
    """``jobs``, lowered to the CPU count, to what the available memory holds at ``memory_mb``
    per notebook, and to the number of notebooks (at least 1)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    available = memory_available()
    by_memory = available // (memory_mb * 2**20) if available else jobs
    return max(1, min(jobs, os.cpu_count() or 1, by_memory, notebooks_to_run))


def exercise_fingerprint() -> str:
    """A hash of the exercise and grading code: results graded with other code are not reused."""
    digest = hashlib.sha256()
    for path in sorted([*(paths.PACKAGE_DIR / "exercises").glob("*.py"),
                        *(paths.PACKAGE_DIR / "grading").glob("*.py")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def resume_key(submission: submissions.Submission, settings: dict) -> str:
    """What a graded notebook's result depends on: its bytes, its student and file name, the
    grading settings and the exercise code."""
    digest = hashlib.sha256(submission.path.read_bytes())
    digest.update(json.dumps([submission.student, submission.path.name, settings,
                              exercise_fingerprint()], sort_keys=True).encode())
    return digest.hexdigest()


def _blocked(submission: submissions.Submission, chapter: str | None) -> Result:
    name = submission.path.name if submission.path else f"{submission.folder.name}/"
    return Result(submission.student, name, chapter, {}, submission.problem, 0.0)


def grade_folder(folder: str | pathlib.Path, timeout: int = 600, memory_mb: int = 3000,
                 progress: bool = False, question_seconds: int = PER_QUESTION_SECONDS, *,
                 jobs: int = 1, sandboxed: bool = False,
                 resume: str | pathlib.Path | None = None,
                 protect: tuple[pathlib.Path, ...] = ()) -> list[Result]:
    """Grade every submission of ``folder`` (:func:`~qcourse.grading.submissions.find_submissions`),
    ``jobs`` at a time (see the module docstring); one :class:`Result` per notebook, problems
    included, in student order."""
    return grade_submissions(submissions.find_submissions(folder), timeout=timeout,
                             memory_mb=memory_mb, progress=progress,
                             question_seconds=question_seconds, jobs=jobs, sandboxed=sandboxed,
                             resume=resume, protect=protect)


def grade_submissions(found: list[submissions.Submission], *, timeout: int = 600,
                      memory_mb: int = 3000, progress: bool = False,
                      question_seconds: int = PER_QUESTION_SECONDS, jobs: int = 1,
                      sandboxed: bool = False, resume: str | pathlib.Path | None = None,
                      protect: tuple[pathlib.Path, ...] = ()) -> list[Result]:
    """Grade ``found`` (see :func:`grade_folder`)."""
    chapters = {}
    for s in found:
        if s.path is not None:
            try:
                chapters[s.path] = notebooks.chapter(notebooks.exercise_modules(
                    notebooks.read(s.path))) or None
            except ValueError:
                pass                    # grade_notebook reports it
    submissions.flag_repeated_chapters(found, chapters)
    settings = {"timeout": timeout, "memory_mb": memory_mb, "question_seconds": question_seconds,
                "sandboxed": sandboxed}
    store = pathlib.Path(resume) if resume else None
    results: dict[int, Result] = {}
    todo = []
    for i, s in enumerate(found):
        if s.blocking:
            results[i] = _blocked(s, chapters.get(s.path))
            continue
        kept = store / f"{resume_key(s, settings)}.json" if store else None
        if kept is not None and kept.exists():
            results[i] = Result.from_json({**json.loads(kept.read_text()), "reused": True})
        else:
            todo.append((i, s, kept))
    workers = bounded_jobs(jobs, memory_mb, len(todo)) if todo else 1
    report = Progress(len(found), workers, jobs) if progress else None
    for i in sorted(results):
        if report:
            report.done(results[i])

    def grade(i: int, s: submissions.Submission, kept: pathlib.Path | None) -> None:
        try:
            result = grade_notebook(s.path, timeout=timeout, memory_mb=memory_mb,
                                    student=s.student, question_seconds=question_seconds,
                                    sandboxed=sandboxed, folder=s.folder, protect=protect)
        except Exception as err:     # one notebook the grader cannot handle: the batch goes on
            result = Result(s.student, s.path.name, chapters.get(s.path), {},
                            f"the grader failed: {type(err).__name__}: {err}", 0.0)
        if s.problem and not result.problem:
            result.problem = s.problem
        if kept is not None and result.marks and not (result.problem or "").startswith(
                "the grader failed"):
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps(result.to_json()))
        results[i] = result
        if report:
            report.done(result)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(grade, *job) for job in todo]:
            future.result()
    ordered = [results[i] for i in sorted(results)]
    if report:
        print(summary_line(ordered, time.time() - report.start), flush=True)
    return ordered


class Progress:
    """One line per notebook as it finishes (``[3/12] alice / 04_gptq.ipynb: 7.5/10 points``)."""

    def __init__(self, total: int, workers: int, asked: int) -> None:
        self.total, self.count, self.start = total, 0, time.time()
        self.lock = threading.Lock()
        lowered = f" (asked for {asked}; lowered to fit the CPUs and memory)" if workers < asked \
            else ""
        print(f"grading {total} notebook(s), {workers} at a time{lowered}", flush=True)

    def done(self, result: Result) -> None:
        with self.lock:
            self.count += 1
            how = "unchanged since the last run" if result.reused else f"{result.seconds:.0f} s"
            score = f"{number(result.earned)}/{number(result.possible)} points" if result.marks \
                else "not graded"
            problem = f"  [{result.problem}]" if result.problem else ""
            print(f"[{self.count}/{self.total}] {result.student} / {result.notebook}: {score} "
                  f"({how}){problem}", flush=True)


def summary_line(results: list[Result], seconds: float) -> str:
    """The batch in one line: notebooks, students, time, reuse, problems, average score."""
    graded = [r for r in results if r.marks]
    reused = sum(r.reused for r in results)
    problems = sum(bool(r.problem) for r in results)
    errors = sum(m.status == ERROR for r in graded for m in r.marks.values())
    share = sum(r.earned for r in graded) / max(sum(r.possible for r in graded), 1e-9)
    minutes, secs = divmod(round(seconds), 60)
    return (f"graded {len(results)} notebook(s) of {len({r.student for r in results})} "
            f"student(s) in {minutes} min {secs} s: {reused} unchanged since the last run, "
            f"{problems} with a problem, {errors} question(s) not graded; "
            f"{100 * share:.0f} % of the points earned overall")


def sandbox_line(sandboxed: bool) -> tuple[str, bool]:
    """What the sandbox situation means, in one line, and whether grading may go on."""
    state = sandbox.status()
    if sandboxed and state.available:
        return f"sandbox: {state.how}", True
    if sandboxed:
        return (f"--sandbox is not available here: {state.how}. Without it, {sandbox.WITHOUT_SANDBOX}. "
                "Run without --sandbox only for submissions you trust (or inside a throwaway "
                "container); see docs/instructors.md.", False)
    offer = "--sandbox is available here" if state.available else \
        f"--sandbox is not available here: {state.how}"
    return f"not sandboxed: {sandbox.WITHOUT_SANDBOX} ({offer})", True


def main(folder: str, timeout: int = 600, memory_mb: int = 3000, out: str | None = None, *,
         jobs: int = 1, sandboxed: bool = False, roster: str | None = None,
         question_seconds: int = PER_QUESTION_SECONDS) -> int:
    """``qcourse grade``: grade ``folder`` into ``out`` (default ``FOLDER/grades``); the exit
    status (2 when the sandbox was asked for and is not available)."""
    line, go_on = sandbox_line(sandboxed)
    print(line, flush=True)
    if not go_on:
        return 2
    found = submissions.find_submissions(folder)
    target = pathlib.Path(out) if out else pathlib.Path(folder) / "grades"
    target.mkdir(parents=True, exist_ok=True)
    rows = submissions.read_roster(roster) if roster else []
    matched, messages = submissions.match_roster(sorted({s.student for s in found}), rows) \
        if rows else ({}, [])
    for message in messages:
        print(f"roster: {message}", flush=True)
    protect = (paths.REPO_DIR, pathlib.Path(sys.prefix), pathlib.Path(folder).resolve(),
               target.resolve())
    results = grade_submissions(found, timeout=timeout, memory_mb=memory_mb, progress=True,
                                question_seconds=question_seconds, jobs=jobs,
                                sandboxed=sandboxed, resume=target / ".resume", protect=protect)
    identities = {student: dict(row) for student, row in matched.items()}
    for s in found:
        if s.canvas_id:
            identities.setdefault(s.student, {}).setdefault("ID", s.canvas_id)
    absent = [r for r in rows if not any(r is m for m in matched.values())]
    export.write_reports(results, target, identities=identities, absent=absent)
    print(f"roster, summaries, Canvas and Gradescope files and feedback pages written to {target}")
    return 0
