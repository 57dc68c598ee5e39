"""Build a course notebook from a list of cells, so notebooks are regenerated from reviewed source.

Each notebook's script (``notebooks/src/NN_topic.py``) defines ``CELLS`` as a list of
``("md", text)`` / ``("code", text)`` and calls :func:`main`. Then:

    python notebooks/src/NN_topic.py            # writes notebooks/NN_topic.ipynb (no outputs)
    jupyter nbconvert --to notebook --execute --inplace notebooks/NN_topic.ipynb

The first code cell of every notebook installs the package on Colab and does nothing elsewhere.
"""
from __future__ import annotations

import pathlib
import sys

import nbformat

COLAB_CELL = """\
# On Colab, install the course package first (elsewhere this cell does nothing).
import sys
if "google.colab" in sys.modules:
    !git clone -q --depth 1 https://github.com/qcourse/qcourse /content/qcourse
    %pip install -q -e "/content/qcourse{extras}"
    %cd /content/qcourse/notebooks"""


def build(path: str | pathlib.Path, cells: list[tuple[str, str]], extras: str = "") -> None:
    """Write the notebook: a title cell first, then the Colab cell (installing the package with
    ``extras``, e.g. ``"reference"``), then the rest."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    made = []
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        made.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
        if i == 0:
            made.append(nbformat.v4.new_code_cell(
                COLAB_CELL.format(extras=f"[{extras}]" if extras else "")))
    nb.cells = made
    nbformat.write(nb, str(path))


def main(script_file: str, cells: list[tuple[str, str]], extras: str = "") -> None:
    """Write ``notebooks/<script name>.ipynb`` next to the src folder."""
    script = pathlib.Path(script_file).resolve()
    build(script.parent.parent / f"{script.stem}.ipynb", cells, extras)
    print(f"wrote {script.stem}.ipynb", file=sys.stderr)
