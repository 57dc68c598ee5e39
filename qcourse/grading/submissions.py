"""Which notebook is whose: a folder of submissions, and a roster of the class.

A submissions folder holds, for each student, either

* a folder named after the student, with their notebooks in it (any number of chapters), or
* notebooks directly in the folder: ``STUDENT.ipynb`` (one chapter), or the names Canvas gives
  a bulk download of submissions, ``lastfirst_[LATE_]USERID_SUBMISSIONID_name.ipynb`` (the
  student is ``lastfirst``, and their Canvas ID is kept for the gradebook).

Problems found here are recorded on the submission, never raised, so the rest of the batch is
graded: a student folder without a notebook, two submissions under the same name, two
notebooks of the same chapter from one student (neither is graded: which one counts is the
instructor's call). Only a folder that is missing or holds no notebook at all is an error.

A roster (``--roster FILE``, CSV) lists the class: a ``student`` column naming students as the
submissions do, or Canvas's gradebook export (``Student``, ``ID``, ``SIS User ID``,
``SIS Login ID``, ``Section``), matched by any of them. It adds the Canvas columns to the
gradebook CSV and names who submitted nothing; submissions it does not list are named too.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import pathlib
import re

CANVAS_DOWNLOAD = re.compile(r"^(?P<name>[a-z0-9]+?)(?:_late)?_(?P<id>\d+)_\d+_.+$")
ROSTER_KEYS = ("student", "Student", "ID", "SIS User ID", "SIS Login ID")


@dataclasses.dataclass
class Submission:
    """One notebook of one student (``path`` None: a student folder with none), and a problem
    that keeps it from being graded or that the instructor should know."""

    student: str
    path: pathlib.Path | None
    folder: pathlib.Path | None = None     # the student's own folder, copied for the kernel
    canvas_id: str | None = None
    problem: str | None = None
    blocking: bool = False                  # the problem keeps it from being graded


def find_submissions(folder: str | pathlib.Path) -> list[Submission]:
    """The submissions of ``folder`` (see the module docstring), sorted by student."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder holding the submitted "
                         "notebooks (one per student, or one subfolder per student)")
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        canvas = CANVAS_DOWNLOAD.match(path.stem.lower())
        found.append(Submission(canvas["name"], path, canvas_id=canvas["id"]) if canvas
                     else Submission(path.stem, path))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        notebooks = sorted(p for p in sub.glob("*.ipynb"))
        found += [Submission(sub.name, p, folder=sub) for p in notebooks] or \
            [Submission(sub.name, None, folder=sub, problem=f"{sub.name}/ holds no notebook",
                        blocking=True)]
    if all(s.path is None for s in found):
        raise ValueError(f"{folder} holds no .ipynb files (directly or one folder down)")
    _flag_duplicate_names(found)
    return sorted(found, key=lambda s: (s.student.casefold(), str(s.path)))


def _source(submission: Submission) -> str:
    """Where a submission comes from, in words: its folder, its Canvas ID, or its file."""
    if submission.folder is not None:
        return f"{submission.folder.name}/"
    if submission.canvas_id is not None:
        return f"Canvas user {submission.canvas_id}"
    return submission.path.name


def _flag_duplicate_names(found: list[Submission]) -> None:
    """Two sources (folders, files, Canvas users) whose student names differ only in case or
    are equal: graded apart, each under a name that says where it came from."""
    sources = collections.defaultdict(set)
    for s in found:
        sources[s.student.casefold()].add(_source(s))
    for s in found:
        clash = sorted(sources[s.student.casefold()])
        if len(clash) > 1:
            s.problem = (f"{len(clash)} submissions are named '{s.student}' "
                         f"({', '.join(clash)}): graded apart; check which is whose")
            s.student = f"{s.student} [{_source(s)}]"


def flag_repeated_chapters(submissions: list[Submission], chapters: dict[pathlib.Path, str]) -> None:
    """A student with two notebooks of the same chapter: neither is graded."""
    by_chapter = collections.defaultdict(list)
    for s in submissions:
        if s.path in chapters:
            by_chapter[(s.student, chapters[s.path])].append(s)
    for (student, chapter), repeated in by_chapter.items():
        if len(repeated) > 1:
            names = ", ".join(s.path.name for s in repeated)
            for s in repeated:
                s.problem = (f"{student} has {len(repeated)} notebooks of chapter {chapter} "
                             f"({names}): none graded; keep one and run again")
                s.blocking = True


def read_roster(path: str | pathlib.Path) -> list[dict[str, str]]:
    """The roster's rows; ValueError if it is unreadable or names no student."""
    path = pathlib.Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read the roster {path}: {err}") from err
    if not rows or not any(k in rows[0] for k in ROSTER_KEYS):
        raise ValueError(f"the roster {path} needs a header with a 'student' column, or "
                         f"Canvas's gradebook export columns ({', '.join(ROSTER_KEYS[1:])})")
    return [r for r in rows if not (r.get("Student") or "").strip().startswith("Points Possible")]


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def match_roster(students: list[str], rows: list[dict[str, str]]) -> tuple[dict[str, dict], list[str]]:
    """``({student: roster row}, messages)``: each student matched to the row that names them
    (by any of :data:`ROSTER_KEYS`, ignoring case and punctuation; Canvas's "Last, First" also
    as "firstlast"), and a message for roster rows with no submission and for submissions the
    roster does not list."""
    index = {}
    for row in rows:
        names = [row.get(k) or "" for k in ROSTER_KEYS]
        last_first = (row.get("Student") or "").split(",", 1)
        if len(last_first) == 2:
            names.append(last_first[1] + last_first[0])
        for name in filter(None, map(_key, names)):
            index.setdefault(name, row)
    matched = {s: index[_key(s.split(" [")[0])] for s in students if _key(s.split(" [")[0]) in index}
    messages = []
    missing = [r for r in rows if not any(r is m for m in matched.values())]
    if missing:
        names = ", ".join(r.get("student") or r.get("Student") or r.get("SIS Login ID") or "?"
                          for r in missing)
        messages.append(f"the roster lists {len(missing)} student(s) with no submission: {names} "
                        "(no points written for them)")
    unknown = [s for s in students if s not in matched]
    if unknown:
        messages.append(f"{len(unknown)} submission(s) are not in the roster: "
                        f"{', '.join(unknown)} (graded; the Canvas CSV names them as their "
                        "folders do)")
    return matched, messages
