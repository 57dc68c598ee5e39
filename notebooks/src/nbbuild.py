"""Build a course notebook from a list of cells, so notebooks are regenerated from reviewed source.

Each notebook's script (``notebooks/src/NN_topic.py``) defines ``CELLS`` as a list of
``("md", text)`` / ``("code", text)`` and calls :func:`main`. Then:

    python notebooks/src/NN_topic.py            # writes notebooks/NN_topic.ipynb (no outputs)
    python notebooks/src/NN_topic.py --execute  # writes it, then runs it on a fresh kernel and
                                                # saves it with its outputs (nbclient)

The first code cell of every notebook installs the package on Colab and does nothing elsewhere.
"""
from __future__ import annotations

import pathlib
import runpy
import sys

import nbformat

COLAB_CELL = """\
# On Colab, install the course package first (elsewhere this cell does nothing).
import sys
if "google.colab" in sys.modules:
    !git clone -q --depth 1 https://github.com/qcourse/qcourse /content/qcourse
    %pip install -q -e "/content/qcourse{extras}"
    %cd /content/qcourse/notebooks"""


def notebook(cells: list[tuple[str, str]], extras: str = "") -> nbformat.NotebookNode:
    """The notebook (no outputs): a title cell first, then the Colab cell (installing the package
    with ``extras``, e.g. ``"reference"``), then the rest."""
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
    return nb


def from_source(script_file: str | pathlib.Path) -> nbformat.NotebookNode:
    """The notebook that ``notebooks/src/<script>`` generates (its ``CELLS`` and ``EXTRAS``),
    without writing it: what tests compare the committed notebook with."""
    namespace = runpy.run_path(str(script_file), run_name="nbbuild_source")
    return notebook(namespace["CELLS"], namespace.get("EXTRAS", ""))


def build(path: str | pathlib.Path, cells: list[tuple[str, str]], extras: str = "") -> None:
    """Write the notebook built from ``cells`` to ``path`` (no outputs)."""
    nbformat.write(notebook(cells, extras), str(path))


def execute(path: str | pathlib.Path, timeout: int = 600) -> None:
    """Run the notebook at ``path`` top to bottom on a fresh kernel (in its own folder) and save
    it with its outputs; a cell that raises stops it with the error."""
    from nbclient import NotebookClient

    path = pathlib.Path(path)
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, str(path))


def main(script_file: str, cells: list[tuple[str, str]], extras: str = "") -> None:
    """Write ``notebooks/<script name>.ipynb`` next to the src folder; with ``--execute`` on the
    command line, also run it and save its outputs."""
    script = pathlib.Path(script_file).resolve()
    path = script.parent.parent / f"{script.stem}.ipynb"
    build(path, cells, extras)
    print(f"wrote {path.name}", file=sys.stderr)
    if "--execute" in sys.argv[1:]:
        execute(path)
        print(f"executed {path.name}", file=sys.stderr)
