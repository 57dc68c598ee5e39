"""Grading inside Gradescope's autograder (``qcourse grade --gradescope``).

Gradescope builds an image from an uploaded zip holding ``setup.sh`` (installs the course) and
``run_autograder`` (runs it), then, for each submission, puts the student's files in
``/autograder/submission`` and reads ``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). ``qcourse grade
--gradescope`` grades every notebook of the submission as one student's and writes that file;
``qcourse grade --gradescope-autograder autograder.zip`` writes the zip to upload.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import zipfile

from qcourse import paths
from qcourse.grading import batch, export, submissions
from qcourse.grading.runner import Result

AUTOGRADER = pathlib.Path("/autograder")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
apt-get update -q && apt-get install -y -q python3.11 python3.11-venv git
git clone -q {repository} /opt/qcourse-src && git -C /opt/qcourse-src checkout -q {ref}
python3.11 -m venv /opt/qcourse
/opt/qcourse/bin/pip install -q "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
/opt/qcourse/bin/pip install -q -e /opt/qcourse-src
/opt/qcourse/bin/qcourse tour > /dev/null   # builds the corpus cache the notebooks read
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: the student's files are in /autograder/submission.
/opt/qcourse/bin/qcourse grade --gradescope --timeout {timeout} --memory-mb {memory_mb}
"""


def student_name(root: pathlib.Path) -> str:
    """The submitter's name(s) from ``submission_metadata.json``, else ``submission``."""
    try:
        users = json.loads((root / "submission_metadata.json").read_text())["users"]
        return ", ".join(u["name"] for u in users) or "submission"
    except (OSError, ValueError, KeyError, TypeError):
        return "submission"


def find_notebooks(folder: pathlib.Path) -> list[pathlib.Path]:
    """The notebooks of an uploaded submission, up to two folders down."""
    found = [*folder.glob("*.ipynb"), *folder.glob("*/*.ipynb"), *folder.glob("*/*/*.ipynb")]
    return sorted(p for p in found if not {".ipynb_checkpoints", "__MACOSX"} & set(p.parts))


def grade(root: str | pathlib.Path = AUTOGRADER, *, timeout: int = 600, memory_mb: int = 3000,
          sandboxed: bool = False, question_seconds: int | None = None) -> dict:
    """Grade the submission in ``root/submission``; write and return ``root/results/results.json``."""
    root = pathlib.Path(root)
    student = student_name(root)
    found = [submissions.Submission(student, path, folder=root / "submission")
             for path in find_notebooks(root / "submission")]
    options = {} if question_seconds is None else {"question_seconds": question_seconds}
    results: list[Result] = batch.grade_submissions(found, timeout=timeout, memory_mb=memory_mb,
                                                    sandboxed=sandboxed, progress=True, **options)
    if results:
        report = export.gradescope_results(results)
    else:
        report = {"score": 0.0, "output": "No notebook (.ipynb) was found in your submission: "
                                          "upload the notebook file itself.", "tests": []}
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / "results.json").write_text(json.dumps(report, indent=1))
    return report


def current_ref() -> str:
    """The commit this package was installed from (a git checkout), else ``main``."""
    try:
        done = subprocess.run(["git", "-C", str(paths.REPO_DIR), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "main"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "main"


def autograder_zip(path: str | pathlib.Path, *, repository: str | None = None,
                   ref: str | None = None, timeout: int = 600, memory_mb: int = 3000) -> pathlib.Path:
    """The zip to upload to Gradescope: ``setup.sh`` (installs the course at ``ref``, default
    the commit installed here) from ``repository`` (default: the course's own address,
    :func:`qcourse.paths.repository_url`) and ``run_autograder``, both at its root, executable."""
    path = pathlib.Path(path)
    files = {"setup.sh": SETUP.format(repository=repository or paths.repository_url(), ref=ref or current_ref()),
             "run_autograder": RUN.format(timeout=timeout, memory_mb=memory_mb)}
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16          # a regular file, rwxr-xr-x
            archive.writestr(info, text)
    return path
