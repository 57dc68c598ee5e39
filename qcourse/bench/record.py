"""What every recorded run says about itself, spelled one way, and reading the runs recorded before
that spelling existed.

A record (:func:`start`, then :func:`finish`) holds, besides the run's own results:

    date          when the run started, ISO 8601 in UTC
    machine       {"cpu": CPU model, "cores", "arch": platform.machine(), "node": host name,
                   "python"}
    threads       the torch threads the run used
    load_average  {"start": [1, 5, 15 min], "end": [...]}: timings from a busy machine are not
                  quiet-machine figures, and the record says so
    versions      torch, transformers and the libraries the run compared against

Files in ``benchmarks/results`` recorded earlier spell these fields five ways (``machine`` a host
name, an architecture, a CPU model or a dict; ``loadavg_start``, ``load_average_at_start``, ...);
:func:`read` gives any of them with the fields above, the rest of the file unchanged.

Imports only the standard library (``import torch`` happens inside :func:`start`).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence

from qcourse.paths import RESULTS_DIR
ARCHITECTURES = {"x86_64", "amd64", "aarch64", "arm64", "i386", "i686", "ppc64le", "s390x"}
DISTRIBUTIONS = {"lm_eval": "lm-eval", "llama_cpp": "llama-cpp-python"}


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s "model name"), or what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """``{"cpu", "cores", "arch", "node", "python"}`` of this machine."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "arch": platform.machine(),
            "node": platform.node(), "python": platform.python_version()}


def library_versions(libraries: Sequence[str] = ()) -> dict[str, str | None]:
    """Installed versions of torch, transformers and ``libraries`` (import names; None: not
    installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in dict.fromkeys(("torch", "transformers") + tuple(libraries)):
        try:
            found[name] = version(DISTRIBUTIONS.get(name, name))
        except PackageNotFoundError:
            found[name] = None
    return found


def now() -> str:
    """The time now, ISO 8601 in UTC to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_average() -> list[float]:
    """The load average over 1, 5 and 15 minutes, rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def start(libraries: Sequence[str] = (), *, threads: int | None = None) -> dict:
    """A new record: date, machine, torch threads (``threads``, default torch's current number),
    versions of torch, transformers and ``libraries``, and the load average now."""
    import torch

    return {"date": now(), "machine": machine(),
            "threads": torch.get_num_threads() if threads is None else threads,
            "load_average": {"start": load_average(), "end": None},
            "versions": library_versions(libraries)}


def finish(record: dict) -> dict:
    """``record`` with the load average at the end of the run; returned for chaining."""
    record["load_average"]["end"] = load_average()
    return record


def result_path(name: str, *, suffix: str = "", folder: pathlib.Path = RESULTS_DIR
                ) -> pathlib.Path:
    """``benchmarks/results/<name>-<arch>-<date><suffix>.json`` (today's date: the newest file
    of a benchmark sorts last)."""
    stamp = datetime.date.today().isoformat()
    return folder / f"{name}-{platform.machine()}-{stamp}{suffix}.json"


def write(record: dict, path: str | os.PathLike) -> pathlib.Path:
    """Write ``record`` as indented JSON; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``(fn(), seconds it took)`` (wall clock)."""
    begin = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - begin


def leave_script_folder_off_sys_path(script: str) -> None:
    """Remove the folder of ``script`` from ``sys.path``: run as ``python benchmarks/awq.py``,
    the benchmarks would stand in for the libraries they are named after (``awq``, ``gguf``,
    ``kernels``). Call it before importing anything else."""
    folder = pathlib.Path(script).resolve().parent
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != folder]


# ---- reading recorded runs, whatever their spelling ----------------------------------------

def _first(*values):
    return next((v for v in values if v is not None), None)


def _machine(raw: dict) -> dict:
    """The ``machine`` fields from any earlier spelling: a dict (``cpu``/``cores`` or
    ``processor``/``cpus``), or a string that is an architecture, a CPU model or a host name,
    beside ``processor`` and ``cpus``."""
    old = raw.get("machine")
    found = dict(old) if isinstance(old, dict) else {}
    if isinstance(old, str):
        key = "arch" if old.lower() in ARCHITECTURES else "cpu" if " " in old else "node"
        found[key] = old
    processor = _first(found.pop("processor", None), raw.get("processor"))
    if processor is not None and processor.lower() in ARCHITECTURES:
        found.setdefault("arch", processor)
        processor = None
    cpu = _first(found.get("cpu"), processor)
    cores = _first(found.get("cores"), found.pop("cpus", None), raw.get("cpus"))
    return {"cpu": cpu, "cores": cores, "arch": found.get("arch"), "node": found.get("node"),
            "python": _first(found.get("python"), raw.get("python"))}


def normalize(raw: dict) -> dict:
    """A recorded run with the fields of :func:`start` (module docstring) spelled as today,
    read from any earlier spelling; missing ones are None. Other fields are kept as they are."""
    old_machine = raw.get("machine") if isinstance(raw.get("machine"), dict) else {}
    load = raw.get("load_average") if isinstance(raw.get("load_average"), dict) else {}
    versions = raw.get("versions") or {k: raw[k] for k in ("torch", "triton", "cuda") if k in raw}
    return {**raw,
            "date": _first(raw.get("date"), old_machine.get("date")),
            "machine": _machine(raw),
            "threads": _first(raw.get("threads"), raw.get("torch_threads"),
                              old_machine.get("torch_threads"),
                              (raw.get("settings") or {}).get("threads")),
            "load_average": {
                "start": _first(load.get("start"), raw.get("loadavg_start"),
                                raw.get("load_average_start"), raw.get("load_average_at_start"),
                                old_machine.get("load_average")),
                "end": _first(load.get("end"), raw.get("loadavg_end"),
                              raw.get("load_average_end"), raw.get("load_average_at_end"),
                              old_machine.get("load_average_end"))},
            "versions": versions}


def read(path: str | os.PathLike) -> dict:
    """A recorded run (JSON) with its date, machine, threads, load average and versions spelled
    as today (:func:`normalize`)."""
    return normalize(json.loads(pathlib.Path(path).read_text(encoding="utf-8")))
