"""What ``qcourse grade`` writes: the roster, summaries, the learning-management exports and
the feedback pages.

``OUT/``
    ``roster.csv``          one row per student: ``student``, ``points``, ``possible``, the
                            points earned on each question, ``problems``
    ``roster.json``         the same, plus every notebook's full result
    ``summary.md``, ``summary.html``  per question: how many got each status, the average
                            share of its points, the most common wrong answers
    ``canvas_gradebook.csv``  Canvas's gradebook import format: ``Student``, ``ID``,
                            ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column per
                            chapter (``qcourse NN``) with the points earned, and a
                            ``Points Possible`` row (the layout Canvas's gradebook importer reads)
    ``gradescope/STUDENT/results.json``  Gradescope's autograder results format: one test per
                            question with ``score``, ``max_score``, ``output``, ``visibility``
    ``feedback/STUDENT.html``  one self-contained feedback page per student
"""
from __future__ import annotations

import collections
import csv
import html
import json
import pathlib
import re

from qcourse import exercises
from qcourse.grading import feedback
from qcourse.grading.runner import STATUSES, Result, questions_of

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def safe_name(student: str) -> str:
    """``student`` as a file name: letters, digits, ``.``, ``-`` and ``_`` kept."""
    return re.sub(r"[^\w.-]+", "_", student).strip("_") or "student"


def questions(results: list[Result]) -> dict[str, exercises.Question]:
    """The question objects behind the results' marks, by name."""
    found = {}
    for chapter in {r.chapter for r in results if r.chapter}:
        for part in chapter.split("+"):
            found.update({q.name: q for q in questions_of(f"qcourse.exercises.ex{part}")})
    return found


def points(results: list[Result]) -> dict[str, float]:
    """Each question's points, by name."""
    return {name: q.points for name, q in questions(results).items()}


def by_student(results: list[Result]) -> dict[str, list[Result]]:
    grouped = collections.defaultdict(list)
    for r in results:
        grouped[r.student].append(r)
    return dict(sorted(grouped.items(), key=lambda item: item[0].casefold()))


def roster(results: list[Result], absent: list[str] = ()) -> list[dict]:
    """One row per student: points earned and possible, the points earned on each question,
    and the problems met; students in ``absent`` (on the roster, no submission) get a row
    with no points."""
    rows = []
    for student, theirs in by_student(results).items():
        row = {"student": student, "points": round(sum(r.earned for r in theirs), 2),
               "possible": sum(r.possible for r in theirs)}
        for r in theirs:
            row.update({q: round(m.earned, 2) for q, m in r.marks.items()})
        problems = [f"{r.notebook}: {r.problem}" for r in theirs if r.problem]
        if problems:
            row["problems"] = "; ".join(problems)
        rows.append(row)
    rows += [{"student": s, "points": "", "possible": "", "problems": "no submission"}
             for s in absent]
    return rows


def question_summary(results: list[Result]) -> list[dict]:
    """Per question: how many learners got each status, the average share of its points, and
    the most common wrong answers."""
    table: dict[str, dict] = {}
    for r in results:
        for question, mark in r.marks.items():
            entry = table.setdefault(question, {"question": question, **dict.fromkeys(STATUSES, 0),
                                                "scores": [], "wrong answers": collections.Counter()})
            entry[mark.status] += 1
            entry["scores"].append(mark.score)
            if mark.status == exercises.WRONG:
                entry["wrong answers"][mark.message] += 1
    for entry in table.values():
        entry["average"] = sum(entry.pop("scores")) / max(sum(entry[s] for s in STATUSES), 1)
    return [table[q] for q in sorted(table)]


def summary_markdown(results: list[Result]) -> str:
    lines = [f"# Grades: {len({r.student for r in results})} students, "
             f"{len(results)} notebooks", "",
             "| question | correct | wrong | not attempted | error | average | most common wrong "
             "answers |", "|---|---|---|---|---|---|---|"]
    for row in question_summary(results):
        common = "<br>".join(f"{n}× {m}" for m, n in row["wrong answers"].most_common(3))
        lines.append(f"| {row['question']} | {row['correct']} | {row['wrong']} | "
                     f"{row['not attempted']} | {row['error']} | {100 * row['average']:.0f} % | "
                     f"{common.replace('|', '/')} |")
    problems = [f"- {r.student} / {r.notebook}: {r.problem}" for r in results if r.problem]
    if problems:
        lines += ["", "## Problems", "", *problems]
    return "\n".join(lines) + "\n"


def summary_html(results: list[Result]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['question'])}</td><td>{r['correct']}</td><td>{r['wrong']}</td>"
        f"<td>{r['not attempted']}</td><td>{r['error']}</td><td>{100 * r['average']:.0f} %</td>"
        "<td>" + "<br>".join(f"{n}× {html.escape(m)}" for m, n in r["wrong answers"].most_common(3))
        + "</td></tr>" for r in question_summary(results))
    return ("<!doctype html><meta charset='utf-8'><title>Grades</title>"
            "<table border=1 cellpadding=4><tr><th>question</th><th>correct</th><th>wrong</th>"
            "<th>not attempted</th><th>error</th><th>average</th>"
            f"<th>most common wrong answers</th></tr>{rows}</table>")


def canvas_rows(results: list[Result], identities: dict[str, dict[str, str]],
                absent: list[dict[str, str]] = ()) -> list[list[str]]:
    """Canvas's gradebook import layout: a header (the five identity columns, then one
    ``qcourse NN`` column per chapter), a ``Points Possible`` row, one row per student (points
    earned per chapter, blank where they submitted none), and the roster's ``absent`` students
    with blank points (an import leaves a blank cell's grade as it was)."""
    chapters = sorted({r.chapter for r in results if r.chapter})
    possible = {c: max(r.possible for r in results if r.chapter == c) for c in chapters}
    rows = [[*CANVAS_IDENTITY, *(f"qcourse {c}" for c in chapters)],
            ["Points Possible", "", "", "", "", *(feedback.number(possible[c]) for c in chapters)]]
    for student, theirs in by_student(results).items():
        who = identities.get(student, {})
        earned = {r.chapter: r.earned for r in theirs if r.chapter and r.marks}
        rows.append([who.get("Student") or student, *(who.get(k, "") for k in CANVAS_IDENTITY[1:]),
                     *(feedback.number(earned[c]) if c in earned else "" for c in chapters)])
    for who in absent:
        rows.append([who.get("Student") or who.get("student", ""),
                     *(who.get(k, "") for k in CANVAS_IDENTITY[1:]), *("" for _ in chapters)])
    return rows


def gradescope_results(results: list[Result]) -> dict:
    """One student's results in Gradescope's autograder format: a test per question (score,
    max_score, output, visibility "visible"), the problems in the top-level output."""
    found = questions(results)
    tests = []
    for r in sorted(results, key=lambda r: (r.chapter or "", r.notebook)):
        for name, mark in r.marks.items():
            tests.append({"name": name, "number": name.split(" ", 1)[0],
                          "score": round(mark.earned, 2), "max_score": mark.points,
                          "output": "\n".join(feedback.explain(mark, found.get(name))),
                          "tags": [f"chapter {r.chapter}", mark.status],
                          "visibility": "visible"})
    earned, possible = sum(r.earned for r in results), sum(r.possible for r in results)
    lines = [f"{feedback.number(earned)} of {feedback.number(possible)} points. The grader ran each notebook again from the "
             "top in a fresh kernel and checked the answers on the same hidden cases as check()."]
    lines += [f"{r.notebook}: {r.problem}" for r in results if r.problem]
    return {"score": round(earned, 2), "execution_time": round(sum(r.seconds for r in results)),
            "output": "\n".join(lines), "tests": tests,
            "extra_data": {"notebooks": [r.notebook for r in results]}}


def write_reports(results: list[Result], out: str | pathlib.Path, *,
                  identities: dict[str, dict[str, str]] | None = None,
                  absent: list[dict[str, str]] = ()) -> pathlib.Path:
    """Write everything listed in the module docstring into ``out``; ``identities`` gives each
    student's Canvas columns (from the roster), ``absent`` the roster rows with no submission."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [a.get("student") or a.get("Student") or a.get("SIS Login ID") or "?" for a in absent]
    rows = roster(results, names)
    columns = ["student", "points", "possible"] + sorted(
        {k for row in rows for k in row} - {"student", "points", "possible", "problems"}) \
        + ["problems"]
    with open(out / "roster.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "roster.json").write_text(json.dumps(
        {"students": rows, "results": [r.to_json() for r in results]}, indent=1))
    (out / "summary.md").write_text(summary_markdown(results))
    (out / "summary.html").write_text(summary_html(results))
    with open(out / "canvas_gradebook.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(canvas_rows(results, identities or {}, absent))
    found = questions(results)
    for student, theirs in by_student(results).items():
        folder = out / "gradescope" / safe_name(student)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(gradescope_results(theirs), indent=1))
        (out / "feedback").mkdir(exist_ok=True)
        (out / "feedback" / f"{safe_name(student)}.html").write_text(
            feedback.page(student, theirs, found), encoding="utf-8")
    return out
