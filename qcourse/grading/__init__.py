"""Grading a folder of submitted notebooks, and releasing student copies.

    qcourse release notebooks/04_gptq.ipynb ... --out student/ [--keep-outputs]
    qcourse grade submissions/ [--out grades/] [--jobs N] [--sandbox] [--timeout S]
                  [--memory-mb M] [--roster roster.csv]
    qcourse grade --gradescope            (inside Gradescope's autograder)

One idea per module:

* :mod:`~qcourse.grading.submissions` — which notebook is whose; bad input; the class roster;
* :mod:`~qcourse.grading.worker` — runs one notebook in a fresh kernel, then the grader's cell
  (which runs each answer on the hidden cases);
* :mod:`~qcourse.grading.sandbox` (with :mod:`~qcourse.grading.jail`) — the kernel in Linux
  namespaces: read-only files, no network, no privileges;
* :mod:`~qcourse.grading.runner` — one notebook: starts the worker, enforces time and memory,
  judges the outcomes in a process that never ran learner code (partial credit included);
* :mod:`~qcourse.grading.batch` — a folder: in parallel, resumable, with progress;
* :mod:`~qcourse.grading.export` — roster, summaries, Canvas CSV, Gradescope ``results.json``;
* :mod:`~qcourse.grading.feedback` — the feedback on each question, one HTML page per student;
* :mod:`~qcourse.grading.gradescope` — running inside Gradescope's autograder;
* :mod:`~qcourse.grading.copies` — student copies (``release``);
* :mod:`~qcourse.grading.sheets` — exercise sheets (the self-test, the worked example of
  ``docs/instructors.md``).

What a learner can and cannot do to their grade, and what the sandbox adds, is in
``docs/instructors.md`` ("Threat model"). The names below are imported on first use, so that
the worker process (``python -m qcourse.grading.worker``) does not import torch.
"""
from __future__ import annotations

import importlib

PUBLIC = {
    "batch": ("grade_folder", "grade_submissions", "main", "summary_line"),
    "export": ("roster", "points", "question_summary", "summary_markdown", "summary_html",
               "write_reports", "canvas_rows", "gradescope_results"),
    "feedback": ("explain",),
    "notebooks": ("exercise_modules",),
    "copies": ("release", "GRADED_CELL"),
    "runner": ("Result", "Mark", "grade_notebook", "questions_of", "ERROR", "STATUSES"),
    "submissions": ("Submission", "find_submissions", "read_roster", "match_roster"),
    "worker": ("GRADER_CELL", "PER_QUESTION_SECONDS"),
}
WHERE = {name: module for module, names in PUBLIC.items() for name in names}
__all__ = sorted(WHERE)


def __getattr__(name: str):
    if name in WHERE:
        return getattr(importlib.import_module(f"qcourse.grading.{WHERE[name]}"), name)
    raise AttributeError(f"module 'qcourse.grading' has no attribute {name!r}")
