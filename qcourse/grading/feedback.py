"""Feedback a learner can act on: per question, in words, and one offline HTML page per student.

For each question: its status and points; for a function, how many hidden cases pass and the
first failing one (inputs, what was expected, what came back, with shapes and dtypes); whether
the notebook's own ``check()`` output agrees with the grader's fresh run (they run the same
hidden cases, so a difference means the notebook's state differed: cells run out of order, a
name redefined further down); for a prediction, which first answer was graded; and the first
hint when it was not right. Never "all passed" when a case failed.
"""
from __future__ import annotations

import datetime
import html

from qcourse import exercises
from qcourse.grading.runner import ERROR, Mark, Result

COLOUR = {exercises.CORRECT: "#1a7f37", exercises.WRONG: "#cf222e",
          exercises.NOT_ATTEMPTED: "#9a6700", ERROR: "#8250df"}


def number(x: float) -> str:
    """A number of points as people write it: at most two decimals (0.86, 1, 2.5)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def points_text(mark: Mark) -> str:
    return f"{number(mark.earned)} of {number(mark.points)} point{'s' if mark.points != 1 else ''}"


def case_lines(failure: dict) -> list[str]:
    """The first failing case, one line each: which, inputs, then expected and got (or raised)."""
    lines = [f"case {failure['case']}", f"inputs:   {failure['inputs']}"]
    if "raised" in failure:
        return lines + [f"raised:   {failure['raised']}"]
    return lines + [f"expected: {failure['expected']}", f"got:      {failure['got']}"]


def summary(mark: Mark) -> str:
    """The verdict in one sentence (for a failing function: how many cases pass)."""
    if mark.failure:
        return f"{mark.passed} of {mark.total} hidden cases pass; the first that fails:"
    return mark.message


def notes(mark: Mark, question: exercises.Question | None = None) -> list[str]:
    """What else the learner should know: how the verdict compares with the notebook's own
    check() output, which first answer a prediction was graded on, the first hint."""
    found = []
    if mark.shown is not None and mark.status != ERROR:
        found.append("The same verdict as your notebook's own check(), which runs the same hidden "
                     "cases." if mark.shown == mark.status else
                     f"Your notebook's own check() showed '{mark.shown}', but the grader's fresh "
                     f"run (a new kernel running the notebook top to bottom) gives "
                     f"'{mark.status}': were cells run out of order, or is a name redefined "
                     "further down?")
    if mark.first_answer:
        found.append(f"A prediction: the first answer you gave (read from {mark.first_answer}) "
                     "is the one graded.")
    if question is not None and question.hints and mark.status in (exercises.WRONG,
                                                                   exercises.NOT_ATTEMPTED):
        found.append(f"Hint: {question.hints[0]}")
    return found


def explain(mark: Mark, question: exercises.Question | None = None) -> list[str]:
    """The feedback on one question as plain-text lines: status and points, the verdict, the
    first failing case (if any), then the :func:`notes`."""
    lines = [f"{mark.status}: {points_text(mark)}.", summary(mark)]
    return [line for line in lines if line] + (case_lines(mark.failure) if mark.failure else []) \
        + notes(mark, question)


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 58rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.sub { color: #59636e; margin-top: 0; }
.total { font-size: 1.1rem; margin: 1rem 0; }
.bar { height: .6rem; background: #eaeef2; border-radius: .3rem; overflow: hidden; }
.bar span { display: block; height: 100%; background: #1a7f37; }
.problem { background: #fff8c5; border: 1px solid #d4a72c; border-radius: .4rem;
           padding: .5rem .8rem; }
.q { border: 1px solid #d1d9e0; border-left-width: .35rem; border-radius: .4rem;
     padding: .6rem .9rem; margin: .8rem 0; }
.q header { display: flex; justify-content: space-between; gap: 1rem; font-weight: 600; }
.q .prompt { color: #59636e; margin: .3rem 0; font-size: .92rem; } .q p { margin: .3rem 0; }
.pill { color: white; border-radius: 1rem; padding: .05rem .55rem; font-size: .85rem; }
.q ul { margin: .3rem 0; padding-left: 1.2rem; } .q li { margin: .15rem 0; }
code, .case { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .88rem; }
.case { background: #f6f8fa; border-radius: .3rem; padding: .4rem .6rem; margin: .3rem 0;
        white-space: pre-wrap; overflow-wrap: anywhere; }
footer { color: #59636e; font-size: .85rem; margin-top: 2.5rem; }
"""


def _question_html(name: str, mark: Mark, question: exercises.Question | None) -> str:
    choices = "".join(f" ({k}) {v}" for k, v in (question.choices or {}).items()) if question \
        else ""
    prompt = f"<p class='prompt'>{html.escape(question.prompt + choices)}</p>" if question else ""
    verdict = f"<p>{html.escape(summary(mark))}</p>" if summary(mark) else ""
    case = f"<div class='case'>{html.escape(chr(10).join(case_lines(mark.failure)))}</div>" \
        if mark.failure else ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in notes(mark, question))
    return (f"<section class='q' style='border-left-color:{COLOUR[mark.status]}'>"
            f"<header><span>{html.escape(name)}</span><span><span class='pill' "
            f"style='background:{COLOUR[mark.status]}'>{html.escape(mark.status)}</span> "
            f"{points_text(mark)}</span></header>"
            f"{prompt}{verdict}{case}{'<ul>' + items + '</ul>' if items else ''}</section>")


def page(student: str, results: list[Result],
         questions: dict[str, exercises.Question]) -> str:
    """One student's feedback page: every notebook they submitted, every question (HTML,
    self-contained: readable offline)."""
    earned = sum(r.earned for r in results)
    possible = sum(r.possible for r in results)
    share = earned / possible if possible else 0.0
    body = [f"<h1>Feedback for {html.escape(student)}</h1>",
            f"<p class='sub'>qcourse grade, {datetime.date.today():%d %B %Y}</p>",
            f"<div class='total'><strong>{number(earned)} of {number(possible)} points</strong> "
            f"({100 * share:.0f} %)</div><div class='bar'><span style='width:{100 * share:.1f}%'>"
            "</span></div>",
            "<p>The grader ran each notebook again from the top, in a fresh kernel, then checked "
            "your answers on the same hidden cases as <code>check()</code> in the notebook. "
            "A function earns the share of its cases that pass.</p>"]
    for r in sorted(results, key=lambda r: (r.chapter or "", r.notebook)):
        title = f"{r.notebook}" + (f" (chapter {r.chapter})" if r.chapter else "")
        body.append(f"<h2>{html.escape(title)}: {number(r.earned)} of {number(r.possible)} "
                    "points</h2>")
        if r.problem:
            body.append(f"<p class='problem'>{html.escape(r.problem)}</p>")
        if r.marks and all(m.shown is None for m in r.marks.values()):
            body.append("<p class='sub'>Your saved notebook holds no check() output: these are "
                        "the first verdicts on it.</p>")
        body += [_question_html(name, mark, questions.get(name)) for name, mark in r.marks.items()]
    body.append("<footer>Questions about a mark? Reply to your instructor with this page.</footer>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Feedback: {html.escape(student)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>")
