"""Reading a submitted notebook: is it one, which chapter's exercises it holds.

Light on purpose (no torch): the worker process that runs a notebook imports it.
"""
from __future__ import annotations

import pathlib
import re

import nbformat

EXERCISE_MODULE = re.compile(r"qcourse\.exercises(?:\s+import\s+([\w\s,()]+)|\.(ex\d\d))")


def read(path: str | pathlib.Path) -> nbformat.NotebookNode:
    """The notebook at ``path``; ValueError saying what is wrong if it is not one."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as err:
        raise ValueError(f"not a readable notebook ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from err


def exercise_modules(nb: nbformat.NotebookNode) -> list[str]:
    """The ``qcourse.exercises.exNN`` modules the notebook's code imports, in order."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for imported, dotted in EXERCISE_MODULE.findall(cell.source):
            names = re.split(r"[\s,()]+", imported) if imported else [dotted]
            for name in names:
                if re.fullmatch(r"ex\d\d", name) and f"qcourse.exercises.{name}" not in found:
                    found.append(f"qcourse.exercises.{name}")
    return found


def chapter(modules: list[str]) -> str:
    """The chapter a notebook is, from its exercise modules: ``"04"``, or ``"00+01"`` for a
    notebook that holds the exercises of several."""
    return "+".join(sorted(m.rsplit("ex", 1)[-1] for m in modules))
