"""Why the course cross-checks GPTQ against llm-compressor and not GPTQModel or AutoGPTQ: the
requirements, recorded.

    python benchmarks/gptq_requirements.py            # record: pip's metadata + an import try
    python benchmarks/gptq_requirements.py --check    # re-read the newest record, no network

1. GPTQModel's requirements, as PyPI serves them (``pip install --dry-run --no-deps --report``:
   metadata only, nothing installed), against llm-compressor's, from the installed package
   (``importlib.metadata``). For torch and transformers the script prints both version ranges
   and whether any version satisfies both.
2. AutoGPTQ's last release installed with ``--no-deps --target`` into a temporary folder (its
   CUDA extension not built: ``BUILD_CUDA_EXT=0``) and imported next to this environment's
   transformers: the error it raises.

Writes ``benchmarks/results/gptq-requirements-<arch>-<date>.json`` with the run's record
(qcourse.bench.record: date, machine, versions, pip's version).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from qcourse.bench import record

GPTQMODEL = "gptqmodel==7.7.0"
AUTOGPTQ = "auto-gptq==0.7.1"
SHARED = ("torch", "transformers")


def pins(requirements: list[str], names=SHARED) -> dict[str, str]:
    """The version specifier of each of ``names`` among ``requirements`` (no extras, markers
    that hold here)."""
    found = {}
    for line in requirements:
        req = Requirement(line)
        if req.name in names and (req.marker is None or req.marker.evaluate({"extra": ""})):
            found[req.name] = str(req.specifier)
    return found


def disjoint(a: str, b: str) -> bool:
    """Whether no version satisfies both specifier sets ``a`` and ``b`` (bounds ``>=``, ``>``,
    ``<=``, ``<``, ``==``): the largest lower bound lies above the smallest upper bound."""
    low, high = (Version("0"), False), None     # (version, strict)
    for spec in SpecifierSet(a) & SpecifierSet(b):
        v, op = Version(spec.version), spec.operator
        if op in (">=", ">", "==") and (v, op == ">") > low:
            low = (v, op == ">")
        if op in ("<=", "<", "==") and (high is None or (v, op != "<") < high):
            high = (v, op != "<")
    if high is None:
        return False
    return low[0] > high[0] or (low[0] == high[0] and (low[1] or not high[1]))


def gptqmodel_requirements() -> dict:
    """GPTQModel's metadata from PyPI, without installing it."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "report.json")
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                        "--ignore-installed", "--quiet", "--report", report, GPTQMODEL],
                       check=True)
        metadata = json.load(open(report))["install"][0]["metadata"]
    return {"name": metadata["name"], "version": metadata["version"],
            "requires_dist": metadata.get("requires_dist", [])}


def autogptq_import() -> dict:
    """Install AutoGPTQ alone into a temporary folder and import it with this environment."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                        "--no-build-isolation", "--target", folder, AUTOGPTQ], check=True,
                       env={**os.environ, "BUILD_CUDA_EXT": "0"})
        probe = ("import transformers\ntry:\n    import auto_gptq\n    print('imports')\n"
                 "except Exception as err:\n    print(f'{type(err).__name__}: {err}')")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": folder}, check=True)
    message = re.sub(r" \(/[^)]*\)", "", out.stdout.strip().splitlines()[-1])  # no paths
    return {"package": AUTOGPTQ, "transformers": version("transformers"), "import": message}


def compare(gptqmodel: dict) -> dict:
    """For torch and transformers: GPTQModel's range, llm-compressor's, and whether they meet."""
    theirs = pins(gptqmodel["requires_dist"])
    ours = pins(requires("llmcompressor") or [])
    return {name: {"gptqmodel": theirs.get(name), "llmcompressor": ours.get(name),
                   "disjoint": bool(theirs.get(name) and ours.get(name)
                                    and disjoint(theirs[name], ours[name]))}
            for name in SHARED}


def show(result: dict) -> None:
    print(f"GPTQModel {result['gptqmodel']['version']} (PyPI metadata) against llm-compressor "
          f"{result['versions'].get('llmcompressor')} (installed):")
    for name, row in result["pins"].items():
        verdict = "no version satisfies both" if row["disjoint"] else "compatible"
        print(f"  {name:12} GPTQModel {row['gptqmodel']:12} llm-compressor "
              f"{row['llmcompressor']:18} {verdict}")
    auto = result.get("autogptq")
    if auto:
        print(f"{auto['package']} with transformers {auto['transformers']}: {auto['import']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="re-check the newest record against the installed llm-compressor")
    args = parser.parse_args()
    try:
        version("llmcompressor")
    except PackageNotFoundError:
        sys.exit("llm-compressor is not installed here (pip install -e '.[reference]')")
    if args.check:
        paths = sorted(record.RESULTS_DIR.glob("gptq-requirements-*.json"))
        if not paths:
            sys.exit("no record yet: python benchmarks/gptq_requirements.py")
        result = record.read(paths[-1])
        result["pins"] = compare(result["gptqmodel"])
        show(result)
        sys.exit(0 if all(row["disjoint"] for row in result["pins"].values()) else 1)
    result = record.start(("llmcompressor", "pip"))
    result["gptqmodel"] = gptqmodel_requirements()
    result["pins"] = compare(result["gptqmodel"])
    result["autogptq"] = autogptq_import()
    show(result)
    print(f"wrote {record.write(record.finish(result), record.result_path('gptq-requirements'))}")


if __name__ == "__main__":
    main()
