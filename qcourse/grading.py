"""Grade a folder of submitted notebooks: run each one, collect the verdicts of its checks.

    qcourse grade submissions/

Each notebook runs top to bottom on a fresh kernel (errors in a learner's cells do not stop it:
the exercise checks never raise). Every ``check()`` appends its verdict to a file named by the
``QCOURSE_RESULTS`` environment variable; this module points that variable at a temporary file
per notebook and tabulates the latest verdict of each question.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile

import nbformat
from nbclient import NotebookClient


def run_notebook(path: pathlib.Path, timeout: int = 600) -> dict[str, str]:
    """Execute one notebook; return {question: latest status}."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        results = pathlib.Path(tmp) / "results.jsonl"
        previous = os.environ.get("QCOURSE_RESULTS")
        os.environ["QCOURSE_RESULTS"] = str(results)
        try:
            NotebookClient(notebook, timeout=timeout, allow_errors=True,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            if previous is None:
                os.environ.pop("QCOURSE_RESULTS", None)
            else:
                os.environ["QCOURSE_RESULTS"] = previous
        lines = results.read_text().splitlines() if results.exists() else []
    return {entry["question"]: entry["status"] for entry in map(json.loads, lines)}


def grade_folder(folder: str | pathlib.Path, timeout: int = 600) -> dict[str, dict[str, str]]:
    """{notebook file name: {question: status}} for every .ipynb in ``folder`` (sorted)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder holding the submitted notebooks")
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"{folder} holds no .ipynb files")
    return {nb.name: run_notebook(nb, timeout) for nb in notebooks}


def main(folder: str, timeout: int = 600) -> None:
    grades = grade_folder(folder, timeout)
    for name, verdicts in grades.items():
        right = sum(s == "correct" for s in verdicts.values())
        print(f"{name}: {right}/{len(verdicts)} correct")
        for question, status in sorted(verdicts.items()):
            print(f"    {question:<40} {status}")
