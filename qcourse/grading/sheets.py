"""Exercise sheets: a chapter's exercises alone in a notebook, and the guide's worked example.

:func:`sheet` writes a notebook holding only exercises (the question, then a cell defining
the answer and calling ``check()``), with the placeholders of the course notebooks or with
given answers. It is how the self-test grades every exercise without running whole chapters
(``tests/test_grading_selftest.py``), and how :func:`example` generates the submissions of
``docs/instructors.md``'s worked example:

    python -m qcourse.grading.sheets example submissions/
"""
from __future__ import annotations

import ast
import importlib
import pathlib
import sys

import nbformat

from qcourse import exercises

PREAMBLE = "import math\n\nimport numpy as np\nimport torch"


def variable_of(question: exercises.Question, module) -> str:
    """The name the exercise module gives ``question`` (``weight_bytes`` in ``ex00``)."""
    return next(name for name, value in vars(module).items() if value is question)


def placeholder(question: exercises.Question) -> str:
    """The cell a student copy starts from: ``name = ...``, or for a function its signature
    (from the solution) returning ``...``."""
    if question.cases is None:
        return f"{question.answer_name} = ...  # your answer here"
    try:
        tree = ast.parse(question.solution_text)
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                    and n.name == question.answer_name)
        arguments = ast.unparse(node.args)
    except (SyntaxError, StopIteration):
        arguments = "*args"
    return f"def {question.answer_name}({arguments}):\n    return ...  # your code here"


def sheet(modules: list[str], answers: dict[str, str] | None = None, *,
          preamble: str = PREAMBLE, graded: bool = False,
          checks: bool = True) -> nbformat.NotebookNode:
    """A notebook with the exercises of ``modules`` (e.g. ``["qcourse.exercises.ex00"]``): per
    question, its prompt and a cell with ``answers[answer_name]`` (code), or the placeholder,
    then (with ``checks``) the check. ``preamble``: code run first (imports the answers use);
    ``graded``: with the cell ``qcourse release`` adds."""
    answers = answers or {}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    short = [m.rsplit(".", 1)[-1] for m in modules]
    cells = [nbformat.v4.new_markdown_cell(f"# Exercises {', '.join(s[2:] for s in short)}"),
             nbformat.v4.new_code_cell(f"{preamble}\n\nfrom qcourse.exercises import "
                                       f"{', '.join(short)}".strip())]
    if graded:
        from qcourse.grading.copies import GRADED_CELL
        cells.append(nbformat.v4.new_code_cell(GRADED_CELL))
    for name, alias in zip(modules, short):
        module = importlib.import_module(name)
        for q in (v for v in vars(module).values() if isinstance(v, exercises.Question)):
            choices = "".join(f"\n- ({k}) {v}" for k, v in (q.choices or {}).items())
            cells.append(nbformat.v4.new_markdown_cell(f"**{q.name}.** {q.prompt}{choices}"))
            code = answers.get(q.answer_name, placeholder(q))
            check = f"\n\n{alias}.{variable_of(q, module)}.check({q.answer_name});" if checks \
                else ""
            cells.append(nbformat.v4.new_code_cell(code + check))
    nb.cells = cells
    return nb


# ---- the worked example of docs/instructors.md: three students, chapters 00 and 01 -------------

EXAMPLE_CHAPTERS = {"00_welcome_and_tour": ["qcourse.exercises.ex00"],
                    "01_number_formats_and_formulas": ["qcourse.exercises.ex01"]}

MISTAKES = {  # ben: typical mistakes, some earning partial credit
    "weight_bytes": "def weight_bytes(n_params, bits):\n"
                    "    return n_params * bits // 8   # rounds down: 3 weights of 4 bits -> 1",
    "perplexity_from_nll": "def perplexity_from_nll(nll):\n"
                           "    return nll.exp().mean().item()   # mean of exp, not exp of mean",
    "two_bit_levels": "two_bit_levels = 4   # 2 bits hold 4 codes, but symmetric uses 3",
    "two_bit_perplexity": "two_bit_perplexity = 'c'",
    "asymmetric_quantize": "def asymmetric_quantize(x, bits):\n"
                           "    scale = (x.max() - x.min()) / (2 ** bits - 1)  # 0 not in range\n"
                           "    zero = torch.round(-x.min() / scale)\n"
                           "    q = torch.round(x / scale + zero)   # no clamp to 0..2^bits-1\n"
                           "    return q, scale, zero",
    "mse_drop_per_bit": "mse_drop_per_bit = 2",
}

SHORTCUTS = {  # cy: calls the course's own functions, an answer that crashes, one half right
    "weight_bytes": "from qcourse.formats import memory_bytes\n\n"
                    "def weight_bytes(n_params, bits):\n    return memory_bytes(n_params, bits)",
    "perplexity_from_nll": "def perplexity_from_nll(nll):\n"
                           "    return math.exp(nll.sum().item() / nll.shape[1])",
    "float_value": "def float_value(sign, exponent, mantissa, e_bits, m_bits):\n"
                   "    bias = 2 ** (e_bits - 1) - 1   # forgets subnormals (exponent 0)\n"
                   "    value = 2.0 ** (exponent - bias) * (1 + mantissa / 2 ** m_bits)\n"
                   "    return -value if sign else value",
    "pack4": "import qcourse.pack\n\n"
             "def pack4(values):\n    return qcourse.pack.pack_int32(values, 4)",
    "two_bit_perplexity": "two_bit_perplexity = 'd'",
}


def solutions(modules: list[str]) -> dict[str, str]:
    """Each question's solution as answer code, by answer name."""
    return {q.answer_name: q.solution_text for m in modules
            for q in vars(importlib.import_module(m)).values() if isinstance(q, exercises.Question)}


def example(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Write the worked example's submissions, ``folder/STUDENT/NN_topic.ipynb``, as ``qcourse
    release`` copies (graded mode) of chapters 00 and 01 filled in by three students: ada
    (every solution), ben (typical mistakes; he also changes a prediction after the
    measurement, and edited a function after its check passed) and cy (shortcuts through the
    course's own functions, an answer that raises, a float decoder without subnormals)."""
    folder = pathlib.Path(folder)
    every = [m for modules in EXAMPLE_CHAPTERS.values() for m in modules]
    students = {"ada": solutions(every), "ben": MISTAKES, "cy": SHORTCUTS}
    written = []
    for student, answers in students.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        for stem, modules in EXAMPLE_CHAPTERS.items():
            nb = sheet(modules, answers, graded=True)
            if student == "ben" and "qcourse.exercises.ex00" in modules:
                _ben_after_the_fact(nb)
            path = folder / student / f"{stem}.ipynb"
            nbformat.write(nb, str(path))
            written.append(path)
    return written


def _ben_after_the_fact(nb: nbformat.NotebookNode) -> None:
    """ben's session, as his saved notebook shows it: weight_bytes passed its check before he
    edited the cell (the saved output says correct), and after the measurement he changed his
    prediction (graded mode keeps his first answer)."""
    cell = next(c for c in nb.cells if "ex00.weight_bytes.check" in c.source)
    cell.outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text="✅ 00.1 weight_bytes: correct. All 7 hidden cases pass.\n")]
    nb.cells.append(nbformat.v4.new_code_cell(
        "two_bit_perplexity = 'd'   # changed after seeing the measurement\n"
        "ex00.two_bit_perplexity.check(two_bit_perplexity);"))


if __name__ == "__main__":
    if sys.argv[1:2] != ["example"] or len(sys.argv) != 3:
        sys.exit("usage: python -m qcourse.grading.sheets example FOLDER")
    for path in example(sys.argv[2]):
        print(f"wrote {path}")
