"""Build a course notebook from a list of cells, so notebooks are regenerated from reviewed source.

Each notebook's script (``notebooks/src/NN_topic.py``) defines ``CELLS`` as a list of
``("md", text)`` / ``("code", text)`` and calls :func:`main`. Then:

    python notebooks/src/NN_topic.py            # writes notebooks/NN_topic.ipynb (no outputs)
    python notebooks/src/NN_topic.py --execute  # writes it, then runs it on a fresh kernel and
                                                # saves it with its outputs (nbclient)

The first code cell of every notebook installs the package on Colab and does nothing elsewhere
(:func:`colab_cell`; the notebook's ``EXTRAS`` say which extras it installs). When that cell
changes, ``python notebooks/src/nbbuild.py --refresh-colab-cells [NOTEBOOK ...]`` rewrites it in
the committed notebooks and keeps their outputs (:func:`refresh_colab_cell`): nothing else needs
re-executing.

Executing also records what the outputs were computed from (:func:`fingerprint`): a hash of each
package source file defining a name the notebook's code uses, and of each recorded result
(``benchmarks/results/*.json``) it reads, in ``metadata["qcourse"]["executed_with"]``.
``tests/test_notebook_freshness.py`` recomputes it, so a notebook whose outputs are older than
the code or results it shows is caught.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import pathlib
import re
import runpy
import sys
import types

import nbformat

from qcourse import paths

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "qcourse"
RESULTS = ROOT / "benchmarks" / "results"
RESULT_NAME = re.compile(r"[\w.*?-]+\.json")                       # "gptq-*.json", "x.json"
SHOWN_SOURCES = (".cu", ".cuh")
RESULT_PATH = re.compile(r"benchmarks/results/([\w.*?-]+\.json)")   # as prose cites a result

COLAB_CLONE = "/content/qcourse"
COLAB_CELL = """\
# On Colab, install the course first (elsewhere this cell does nothing).
import sys
if "google.colab" in sys.modules:
    !test -d {clone} || git clone -q --depth 1 {url} {clone}
    sys.path.insert(0, "{clone}")
    from qcourse import colab
    colab.setup({arguments})"""


def colab_cell(extras: str = "", url: str | None = None, clone: str = COLAB_CLONE) -> str:
    """The first code cell: on Colab, clone ``url`` (default :func:`qcourse.paths.repository_url`) to
    ``clone`` and let ``qcourse.colab.setup`` install it with ``extras`` (comma-separated)."""
    arguments = f'extras="{extras}"' if extras else ""
    return COLAB_CELL.format(arguments=arguments, url=url or paths.repository_url(), clone=clone)


def notebook(cells: list[tuple[str, str]], extras: str = "") -> nbformat.NotebookNode:
    """The notebook (no outputs): a title cell first, then the Colab cell (installing the package
    with ``extras``, e.g. ``"torchao,hqq"``), then the rest."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    made = []
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        made.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
        if i == 0:
            made.append(nbformat.v4.new_code_cell(colab_cell(extras)))
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


def is_colab_cell(cell) -> bool:
    """Whether ``cell`` is a notebook's Colab install cell."""
    return cell.cell_type == "code" and "google.colab" in cell.source


def refresh_colab_cell(path: str | pathlib.Path) -> bool:
    """Give the committed notebook at ``path`` the Colab cell its source generates today,
    keeping every output; True if it changed. ValueError if any other cell differs from the
    source: then the notebook needs rebuilding and re-executing, not this."""
    path = pathlib.Path(path)
    committed = nbformat.read(str(path), as_version=4)
    fresh = from_source(path.parent / "src" / f"{path.stem}.py")
    pairs = list(zip(committed.cells, fresh.cells))
    stale = [i for i, (old, new) in enumerate(pairs)
             if not is_colab_cell(new) and (old.cell_type, old.source) != (new.cell_type, new.source)]
    if stale or len(committed.cells) != len(fresh.cells):
        raise ValueError(f"{path.name}: cells {stale or 'count'} differ from notebooks/src/"
                         f"{path.stem}.py; rebuild and re-execute it instead")
    changed = False
    for old, new in pairs:
        if is_colab_cell(new) and old.source != new.source:
            old.source, changed = new.source, True
    if changed:
        nbformat.write(committed, str(path))
    return changed


def code_of(cell) -> str:
    """A code cell's source with IPython magics (``%...``, ``!...``) replaced by ``pass``."""
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                     if line.lstrip().startswith(("%", "!")) else line
                     for line in cell.source.splitlines())


def _code_trees(nb) -> list[ast.Module]:
    return [ast.parse(code_of(c)) for c in nb.cells
            if c.cell_type == "code" and not is_colab_cell(c)]


def _in_package(obj) -> bool:
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
    return isinstance(name, str) and (name == "qcourse" or name.startswith("qcourse."))


def _source_file(obj) -> pathlib.Path | None:
    """The package file defining ``obj`` (a module, function, class, method, Triton kernel, or
    an instance of a package class), or None if it is not the package's."""
    obj = getattr(obj, "fn", obj)                            # a Triton JITFunction
    obj = inspect.unwrap(getattr(obj, "__func__", obj))      # methods, decorated functions
    if not isinstance(obj, (types.ModuleType, type, types.FunctionType)):
        obj = type(obj)                                      # an instance: its class
    if not _in_package(obj):
        return None
    try:
        file = pathlib.Path(inspect.getsourcefile(obj)).resolve()
    except (TypeError, OSError):
        return None
    return file if PACKAGE in file.parents else None


def package_files(nb) -> set[pathlib.Path]:
    """The package source files a notebook's code uses: the qcourse modules it imports, the
    files defining the names it imports from them, and the files defining every attribute it
    reads off them (``gptq.quantize_model`` -> ``qcourse/gptq.py``, ``models.load`` ->
    ``qcourse/models/loader.py``). What those call in turn is not followed: a file counts when
    the notebook names something in it."""
    namespace: dict = {}
    trees = _code_trees(nb)
    for node in (n for tree in trees for n in ast.walk(tree)):   # also inside functions, try
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            try:
                exec(compile(ast.Module(body=[node], type_ignores=[]), "<import>", "exec"),
                     namespace)
            except ImportError:   # an optional library the notebook guards against
                continue
    roots = {name: obj for name, obj in namespace.items() if _in_package(obj)}
    found = {_source_file(obj) for obj in roots.values()}
    for tree in trees:
        for node in ast.walk(tree):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.append(node.attr)
                node = node.value
            if not (isinstance(node, ast.Name) and node.id in roots and chain):
                continue
            obj = roots[node.id]
            for attr in reversed(chain):
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
                found.add(_source_file(obj))
    found.discard(None)
    # sources a module reads and shows (the CUDA kernel's .cu files next to its module)
    return found | {f for py in found for f in py.parent.glob("*") if f.suffix in SHOWN_SOURCES}


def result_files(nb) -> set[pathlib.Path]:
    """The recorded results a notebook reads or cites: the files of ``benchmarks/results``
    matching a ``*.json`` name or glob written in its code (``glob("gptq-*.json")``), or a
    ``benchmarks/results/NAME.json`` path written in its prose."""
    patterns = set()
    for tree in _code_trees(nb):
        patterns |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                     and isinstance(n.value, str) and RESULT_NAME.fullmatch(n.value)}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            patterns |= set(RESULT_PATH.findall(cell.source))
    return {path.resolve() for pattern in patterns for path in RESULTS.glob(pattern)}


def fingerprint(nb) -> dict[str, str]:
    """``{path relative to the repository: sha256 of its bytes}`` of everything the notebook's
    outputs are computed from (:func:`package_files` and :func:`result_files`)."""
    files = sorted(package_files(nb) | result_files(nb))
    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def execute(path: str | pathlib.Path, timeout: int = 600) -> None:
    """Run the notebook at ``path`` top to bottom on a fresh kernel (in its own folder) and save
    it with its outputs and its :func:`fingerprint` (taken before running); a cell that raises
    stops it with the error."""
    from nbclient import NotebookClient

    path = pathlib.Path(path)
    nb = nbformat.read(str(path), as_version=4)
    executed_with = fingerprint(nb)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.setdefault("qcourse", {})["executed_with"] = executed_with
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


if __name__ == "__main__" and sys.argv[1:2] == ["--refresh-colab-cells"]:
    # python notebooks/src/nbbuild.py --refresh-colab-cells [NOTEBOOK ...]   (default: all)
    chosen = [pathlib.Path(p) for p in sys.argv[2:]]
    for notebook_path in chosen or sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")):
        if refresh_colab_cell(notebook_path):
            print(f"refreshed the Colab cell of {notebook_path.name}", file=sys.stderr)
