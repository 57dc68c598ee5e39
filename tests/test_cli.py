import json
import subprocess
import sys

import nbformat
import pytest

from qcourse import grading, paths


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "qcourse.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("tour", "train-tiny", "grade"):
        assert command in out.stdout


def test_unknown_command_fails_with_usage():
    out = run_cli("fly")
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QCOURSE_CACHE", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def _submission(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import math\nfrom qcourse.exercises import ex00"),
                nbformat.v4.new_code_cell(body),
                nbformat.v4.new_code_cell("ex00.perplexity_from_nll.check(...)")]
    nbformat.write(nb, str(path))


def test_grade_folder_collects_each_notebooks_verdicts(tmp_path):
    _submission(tmp_path / "alice.ipynb",
                "ex00.weight_bytes.check(lambda n, b: math.ceil(n * b / 8))")
    _submission(tmp_path / "bob.ipynb", "ex00.weight_bytes.check(lambda n, b: n * b)\n1/0")
    grades = grading.grade_folder(tmp_path, timeout=120)
    assert grades["alice.ipynb"] == {"00.1 weight_bytes": "correct",
                                     "00.2 perplexity_from_nll": "not attempted"}
    # bob's cell raised after the check: the notebook still ran to the end
    assert grades["bob.ipynb"] == {"00.1 weight_bytes": "wrong",
                                   "00.2 perplexity_from_nll": "not attempted"}


def test_grade_folder_rejects_a_folder_without_notebooks(tmp_path):
    with pytest.raises(ValueError, match="no .ipynb"):
        grading.grade_folder(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        grading.grade_folder(tmp_path / "missing")
