"""The shape of the package and of the course (ARCHITECTURE.md): what may import what, and that
the committed notebooks are what their sources generate and show today's package code."""
import ast
import inspect
import json
import pathlib
import subprocess
import sys

import nbformat
import pytest

import qcourse

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qcourse"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "notebooks" / "src"))
import nbbuild  # noqa: E402

# The production libraries of qcourse.references (and the GGUF runtime), by import name.
REFERENCE_LIBRARIES = ("llmcompressor", "compressed_tensors", "awq", "bitsandbytes", "torchao",
                       "peft", "hqq", "onnxruntime", "llama_cpp", "lm_eval")
# every module but the references themselves and the course's own room
METHOD_MODULES = tuple(m for room in qcourse.ROOMS if room.name not in ("references", "course")
                       for m in room.modules)


def package_modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(tree: ast.AST, own_module: str, is_package: bool = False) -> list[str]:
    """``from qcourse.x import _y`` and ``x._y`` where ``x`` is another qcourse module."""
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                here = own_module.split(".") + ([""] if is_package else [])
                source = ".".join(here[: -node.level] + ([source] if source else []))
            if not source.startswith("qcourse"):
                continue
            for alias in node.names:
                if private(alias.name) and source != own_module:
                    found.append(f"from {source} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qcourse"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and private(node.attr):
            if aliases[node.value.id] != own_module:
                found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another():
    offenders = {}
    for path in package_modules():
        uses = private_uses(ast.parse(path.read_text()), module_name(path),
                            path.name == "__init__.py")
        if uses:
            offenders[str(path.relative_to(ROOT))] = uses
    assert not offenders, f"private names used across modules: {offenders}"


def test_the_private_name_check_catches_both_forms():
    tree = ast.parse("from qcourse.calib import _check\nfrom qcourse import quant\nquant._grid(1)")
    assert private_uses(tree, "qcourse.awq") == ["from qcourse.calib import _check", "quant._grid"]


def test_method_modules_import_no_reference_library():
    # transformers itself imports some of them when they are installed (hqq, for its HQQ
    # integration): only what importing qcourse adds on top of transformers counts
    code = ("import sys\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM\n"
            "before = set(sys.modules)\n"
            + "".join(f"import qcourse.{m}\n" for m in METHOD_MODULES)
            + f"print([m for m in {REFERENCE_LIBRARIES!r} if m in set(sys.modules) - before])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')) == []


# ---- notebooks -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_what_its_source_generates(path):
    source = ROOT / "notebooks" / "src" / f"{path.stem}.py"
    assert source.exists(), f"{path.name} has no source in notebooks/src"
    expected = [(c.cell_type, c.source) for c in nbbuild.from_source(source).cells]
    committed = [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]
    assert committed == expected, (f"{path.name} differs from notebooks/src/{path.stem}.py: "
                                   f"run the source, then re-execute the notebook")


def code_without_magics(cell) -> str:
    """The cell's code with IPython magics (``%...``, ``!...``) replaced by ``pass``."""
    lines = cell.source.splitlines()
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                     if line.lstrip().startswith(("%", "!")) else line for line in lines)


def notebook_namespace(nb) -> dict:
    """The names a notebook imports at the top level of its cells (the Colab cell excluded)."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "google.colab" in cell.source:
            continue
        tree = ast.parse(code_without_magics(cell))
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if imports:
            exec(compile(ast.Module(body=imports, type_ignores=[]), "<imports>", "exec"),
                 namespace)
    return namespace


def shown_sources(cell) -> list[str]:
    """The expressions ``X`` of the ``inspect.getsource(X)`` calls of a cell."""
    return [ast.unparse(node.args[0]) for node in ast.walk(ast.parse(code_without_magics(cell)))
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "inspect.getsource"]


def only_prints_sources(cell) -> bool:
    body = ast.parse(code_without_magics(cell)).body
    return bool(body) and all(
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
        and ast.unparse(s.value.func) == "print" and len(s.value.args) == 1
        and ast.unparse(s.value.args[0]).startswith("inspect.getsource(") for s in body)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shown_package_code_is_public_and_todays(path):
    nb = nbformat.read(path, as_version=4)
    namespace = notebook_namespace(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        targets = shown_sources(cell)
        for expr in targets:
            names = [n for n in expr.split(".") if n != "fn"]
            assert not any(private(n) for n in names), f"{path.name} shows a private name: {expr}"
            eval(expr, namespace)  # raises if it no longer exists
        if targets and only_prints_sources(cell):
            expected = "".join(inspect.getsource(eval(e, namespace)) + "\n" for e in targets)
            printed = "".join(o.get("text", "") for o in cell.get("outputs", [])
                              if o.get("output_type") == "stream")
            assert printed == expected, (f"{path.name} shows stale code for {targets}: "
                                         "re-execute the notebook")


# ---- rooms: a module imports only from its own room or the rooms below it ---------------------

ROOMS = [(room.name, list(room.modules)) for room in qcourse.ROOMS]   # bottom to top
room = qcourse.room_of


def top_level_modules() -> set[str]:
    """The modules and subpackages of the tree: ``qcourse/<name>.py`` and ``qcourse/<name>/``."""
    return {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_the_map_holds_every_module_of_the_tree_once():
    mapped = [m for _, modules in ROOMS for m in modules]
    assert len(mapped) == len(set(mapped)), "a module is in two rooms"
    assert set(mapped) == top_level_modules(), (
        f"in the tree, not in qcourse.ROOMS: {sorted(top_level_modules() - set(mapped))}; "
        f"in qcourse.ROOMS, not in the tree: {sorted(set(mapped) - top_level_modules())}")


def test_importing_qcourse_imports_nothing_else():
    code = ("import sys, qcourse\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'qcourse.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after the line ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def readme_room_rows() -> list[list[str]]:
    """The README's rooms table as the map writes it: ``room | `module` (what it holds), ...``."""
    return [[room.name, ", ".join(f"`{m}` ({what})" for m, what in room.modules.items())]
            for room in qcourse.ROOMS]


def test_the_readme_rooms_table_is_the_map():
    readme = markdown_table((ROOT / "README.md").read_text(), "## Layout")
    expected = readme_room_rows()
    assert readme == expected, "README's rooms table differs from qcourse.ROOMS; it should " \
        "read:\n" + "\n".join(f"| {name} | {modules} |" for name, modules in expected)


def test_the_architecture_rooms_table_lists_the_map():
    table = markdown_table((ROOT / "ARCHITECTURE.md").read_text(), "# ARCHITECTURE")
    listed = [(row[0], [m.strip("`/ ") for m in row[1].split(",")]) for row in table]
    expected = [(f"{level + 1} {name}", modules) for level, (name, modules) in enumerate(ROOMS)]
    assert listed == expected, "ARCHITECTURE.md's rooms table differs from qcourse.ROOMS"


def qcourse_imports(path: pathlib.Path) -> set[str]:
    own = module_name(path)
    here = own.split(".") + ([""] if path.name == "__init__.py" else [])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("qcourse.")}
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                source = ".".join(here[: -node.level] + ([source] if source else []))
            if source == "qcourse":
                found |= {f"qcourse.{a.name}" for a in node.names}
            elif source.startswith("qcourse."):
                found.add(source)
    return found


def test_every_module_imports_only_its_room_and_below():
    upward = []
    for path in package_modules():
        own = module_name(path)
        if own == "qcourse":
            continue
        for target in qcourse_imports(path):
            if room(target) > room(own):
                upward.append(f"{own} ({ROOMS[room(own)][0]}) imports {target} "
                              f"({ROOMS[room(target)][0]})")
    assert not upward, "\n".join(upward)


def test_the_room_check_sees_relative_and_absolute_imports(tmp_path, monkeypatch):
    fake = ROOT / "qcourse" / "layers" / "fake.py"
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self: (
        "from qcourse import gptq\nfrom ..references import bnb\nimport qcourse.kernels.layout\n"
        "from .base import QuantizedLinear\n"))
    assert qcourse_imports(fake) == {"qcourse.gptq", "qcourse.references", "qcourse.kernels.layout",
                                     "qcourse.layers.base"}
    assert room("qcourse.gptq") > room("qcourse.layers.fake") < room("qcourse.references.bnb")
