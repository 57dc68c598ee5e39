"""The worked example of docs/instructors.md, end to end: three generated students (ada, ben, cy),
two chapters (00, 01), `qcourse grade` with a Canvas roster; the roster, the Canvas CSV, the
Gradescope results and the feedback pages; a re-run that reuses everything; and `qcourse grade
--gradescope` in Gradescope's autograder layout."""
import csv
import json
import shutil

import nbformat
import pytest

from qcourse import cli
from qcourse.grading import sheets
from test_grading_units import canvas_import, validate_gradescope

pytestmark = pytest.mark.slow  # six notebooks in fresh kernels

ROSTER = ("Student,ID,SIS User ID,SIS Login ID,Section\n"
          "Points Possible,,,,\n"
          "\"Lovelace, Ada\",101,,ada,Monday\n"
          "\"Babbage, Ben\",102,,ben,Monday\n"
          "\"Yu, Cy\",103,,cy,Tuesday\n"
          "\"Hopper, Grace\",104,,grace,Tuesday\n")   # on the roster, submitted nothing


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    sheets.example(root / "submissions")
    (root / "canvas_export.csv").write_text(ROSTER)
    argv = ["grade", str(root / "submissions"), "--out", str(root / "grades"), "--jobs", "2",
            "--timeout", "120", "--question-seconds", "10",
            "--roster", str(root / "canvas_export.csv")]
    with pytest.MonkeyPatch.context():
        status = cli.main(argv)
    return root, argv, status


def read_csv(path):
    return list(csv.reader(open(path, newline="", encoding="utf-8")))


def test_the_roster_has_points_per_question(example):
    root, _, status = example
    assert status == 0
    header, *rows = read_csv(root / "grades" / "roster.csv")
    assert header[:3] == ["student", "points", "possible"] and header[-1] == "problems"
    assert len(header) == 3 + 4 + 6 + 1                  # ten questions of chapters 00 and 01
    table = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(table) == {"ada", "ben", "cy", "Hopper, Grace"}
    assert table["ada"]["points"] == table["ada"]["possible"] == "10.0"
    ben, cy = table["ben"], table["cy"]
    assert ben["00.1 weight_bytes"] == "0.86"             # 6 of 7 cases: rounds 12 bits down
    assert ben["00.2 perplexity_from_nll"] == "0.5"       # mean of exp: right where all equal
    assert ben["01.2 asymmetric_quantize"] == "0.5"       # 3 of 6 cases
    assert ben["00.4 two_bit_perplexity"] == "0.0"        # first answer 'c' counts, not the 'd'
    assert cy["00.1 weight_bytes"] == "0.0" and cy["01.6 pack4"] == "0.0"   # package functions
    assert cy["01.1 float_value"] == "0.64"               # 7 of 11 cases: no subnormals
    assert cy["00.4 two_bit_perplexity"] == "1.0"
    assert table["Hopper, Grace"]["problems"] == "no submission" and \
        table["Hopper, Grace"]["points"] == ""


def test_the_canvas_csv_imports(example):
    root = example[0]
    points, grades = canvas_import(read_csv(root / "grades" / "canvas_gradebook.csv"))
    assert points == {"qcourse 00": 4.0, "qcourse 01": 6.0}
    assert grades["Lovelace, Ada"] == {"qcourse 00": 4.0, "qcourse 01": 6.0}
    assert grades["Hopper, Grace"] == {}                  # left as Canvas has it
    rows = {r[0]: r for r in read_csv(root / "grades" / "canvas_gradebook.csv")}
    assert rows["Babbage, Ben"][1:5] == ["102", "", "ben", "Monday"]


def test_gradescope_results_for_each_student(example):
    root = example[0]
    for student, total in (("ada", 10.0), ("ben", 1.86), ("cy", 1.64)):
        results = json.loads((root / "grades" / "gradescope" / student / "results.json").read_text())
        validate_gradescope(results)
        assert results["score"] == total and len(results["tests"]) == 10
        assert sum(t["score"] for t in results["tests"]) == pytest.approx(total, abs=0.02)


def test_feedback_pages_read_by_a_learner(example):
    root = example[0]
    pages = {p.stem: p.read_text() for p in (root / "grades" / "feedback").glob("*.html")}
    assert set(pages) == {"ada", "ben", "cy"}
    ben = pages["ben"]
    assert "Feedback for ben" in ben and "1.86 of 10 points" in ben
    assert "6 of 7 hidden cases pass; the first that fails:" in ben
    assert "inputs:   (3, 4)" in ben and "expected: 2" in ben and "got:      1" in ben
    assert "check() showed &#x27;correct&#x27;, but the grader" in ben   # edited after its check
    assert "first answer you gave (read from the grader&#x27;s run of your notebook)" in ben
    assert "shape (3,), float32" in ben                   # inputs with shapes and dtypes
    assert "uses the course&#x27;s own `qcourse.formats.memory_bytes`" in pages["cy"]
    assert "raised:   IndexError" in pages["cy"]
    assert "hidden cases pass; the first that fails" not in pages["ada"]


def test_a_rerun_grades_only_what_changed(example, capsys):
    root, argv, _ = example
    changed = root / "submissions" / "cy" / "01_number_formats_and_formulas.ipynb"
    nb = nbformat.read(changed, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("Handed in again."))
    nbformat.write(nb, str(changed))
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "graded 6 notebook(s) of 3 student(s)" in out and "5 unchanged since the last run" in out
    assert "roster: the roster lists 1 student(s) with no submission: Hopper, Grace" in out
    assert "cy / 01_number_formats_and_formulas.ipynb: 0.64/6 points (" in out
    assert out.count("unchanged since the last run") == 6     # five lines and the summary


def test_grading_inside_gradescopes_layout(example, tmp_path):
    root = example[0]
    autograder = tmp_path / "autograder"
    (autograder / "submission").mkdir(parents=True)
    shutil.copy(root / "submissions" / "ben" / "00_welcome_and_tour.ipynb",
                autograder / "submission")
    (autograder / "submission_metadata.json").write_text(json.dumps(
        {"id": 1, "users": [{"email": "ben@example.com", "id": 7, "name": "Ben Babbage"}]}))
    assert cli.main(["grade", "--gradescope", "--gradescope-root", str(autograder),
                     "--question-seconds", "10"]) == 0
    results = json.loads((autograder / "results" / "results.json").read_text())
    validate_gradescope(results)
    assert results["score"] == 1.36 and [t["name"][:4] for t in results["tests"]] == \
        ["00.1", "00.2", "00.3", "00.4"]
