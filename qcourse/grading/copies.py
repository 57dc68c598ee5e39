"""Student copies of course notebooks (``qcourse release``): outputs cleared and graded mode on.

Graded mode (:func:`qcourse.exercises.set_graded`) withholds ``solution()`` and makes a
prediction's first answer the one that counts.
"""
from __future__ import annotations

import pathlib

import nbformat

from qcourse.grading import notebooks

GRADED_CELL = ("# Graded mode: solutions are withheld in this copy, and a prediction's first "
               "answer counts (qcourse release).\n"
               "import qcourse.exercises\nqcourse.exercises.set_graded(True)")


def release(sources: list[str | pathlib.Path], out: str | pathlib.Path, *,
            keep_outputs: bool = False, graded: bool = True) -> list[pathlib.Path]:
    """Student copies of the notebooks ``sources`` in ``out``: outputs cleared (unless
    ``keep_outputs``) and, with ``graded``, a cell after the first code cell that turns graded
    mode on."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in map(pathlib.Path, sources):
        try:
            nb = notebooks.read(source)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err
        if not notebooks.exercise_modules(nb):
            raise ValueError(f"{source} has no qcourse exercises: is it a course notebook?")
        for cell in nb.cells:
            if cell.cell_type == "code" and not keep_outputs:
                cell.outputs, cell.execution_count = [], None
        if graded:
            first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
            nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(GRADED_CELL))
            nb.metadata.setdefault("qcourse", {})["graded"] = True
        target = out / source.name
        nbformat.write(nb, str(target))
        written.append(target)
    return written
