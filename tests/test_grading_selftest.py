"""Self-test of every exercise through `qcourse grade` (issue 26, item 6): a notebook filled with
each question's reference solution gets full marks; the untouched student copy gets zero and
"not attempted" everywhere; a copy whose functions call the package's own implementation (the
question's reference) gets zero for each of them.

To stay quick, the notebooks are exercise sheets (qcourse.grading.sheets): every exercise of the
twelve chapters, with the imports the solutions use taken from the chapters' own notebooks,
rather than the chapters themselves. A solution that needs a chapter's earlier cells (a model, a
folder of files) is given as its value, computed by the question's reference."""
import ast
import importlib
import pathlib
import sys

import nbformat
import pytest

from qcourse import exercises, grading
from qcourse.grading import sheets

pytestmark = pytest.mark.slow  # three notebooks, every exercise, in fresh kernels

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = [f"qcourse.exercises.ex{i:02d}" for i in range(12)]


def all_questions() -> list[tuple[str, exercises.Question]]:
    return [(m, q) for m in MODULES for q in vars(importlib.import_module(m)).values()
            if isinstance(q, exercises.Question)]


def chapter_imports() -> str:
    """The import statements of the course notebooks that bind a name some solution uses."""
    sys.path.insert(0, str(ROOT / "notebooks" / "src"))
    import nbbuild
    needed = set()
    for _, q in all_questions():
        try:
            needed |= {n.id for n in ast.walk(ast.parse(q.solution_text))
                       if isinstance(n, ast.Name)}
        except SyntaxError:
            pass
    lines = ["import math", "import numpy as np", "import torch"]
    for source in sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py")):
        for cell in nbbuild.from_source(source).cells:
            try:
                tree = ast.parse(nbbuild.code_of(cell)) if cell.cell_type == "code" else None
            except SyntaxError:
                continue
            for node in tree.body if tree else []:
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or \
                        (getattr(node, "module", "") or "").startswith("qcourse.exercises"):
                    continue
                node.names = [a for a in node.names
                              if (a.asname or a.name.split(".")[0]) in needed]
                if node.names and ast.unparse(node) not in lines:
                    lines.append(ast.unparse(node))
    return "\n".join(lines)


def reference_answers(preamble: str) -> dict[str, str]:
    """Each question's solution as answer code where it runs on its own (after the solutions
    before it, as in a notebook), else ``name = <the reference's value>``."""
    namespace: dict = {}
    exec(preamble, namespace)
    answers = {}
    for _, q in all_questions():
        try:
            exec(q.solution_text, namespace)
            defined = q.answer_name in namespace
        except Exception:
            defined = False
        answers[q.answer_name] = q.solution_text if defined else \
            f"{q.answer_name} = {q.expected()!r}"
    return answers


def cheating_answers() -> dict[str, str]:
    """Every function answered by calling the question's reference (values left untouched)."""
    return {q.answer_name: f"def {q.answer_name}(*args):\n    return {m.rsplit('.', 1)[-1]}."
                           f"{sheets.variable_of(q, importlib.import_module(m))}.reference(*args)"
            for m, q in all_questions() if q.cases is not None}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("selftest")
    preamble = chapter_imports()
    for name, answers in (("reference", reference_answers(preamble)), ("untouched", None),
                          ("cheat", cheating_answers())):
        nb = sheets.sheet(MODULES, answers, preamble=preamble, checks=False)
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    results = grading.grade_folder(folder, timeout=300, question_seconds=60, jobs=2)
    return {r.student: r for r in results}


def test_every_reference_solution_gets_full_marks(graded):
    result = graded["reference"]
    assert result.problem is None
    assert len(result.marks) == len(all_questions())
    wrong = {q: f"{m.status}: {m.message}" for q, m in result.marks.items() if m.score != 1.0}
    assert not wrong
    assert result.earned == result.possible


def test_the_untouched_copy_gets_zero_and_not_attempted(graded):
    result = graded["untouched"]
    assert {m.status for m in result.marks.values()} == {"not attempted"}
    assert result.earned == 0 and len(result.marks) == len(all_questions())


def test_calling_the_package_function_gives_zero_for_it(graded):
    result = graded["cheat"]
    functions = {q.name for _, q in all_questions() if q.cases is not None}
    assert functions
    for name in functions:
        mark = result.marks[name]
        assert (mark.status, mark.score) == ("wrong", 0.0), name
        assert "the course's own" in mark.message, name
    assert {result.marks[n].status for n in set(result.marks) - functions} == {"not attempted"}
