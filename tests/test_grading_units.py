"""Grading without kernels: finding submissions, the roster, bounded parallel jobs, the notebook's
saved check() output, feedback text, and the files for Canvas and Gradescope checked against
their published formats."""
import re

import nbformat
import pytest

from qcourse.grading import batch, submissions


def write_notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))


HEAD = "from qcourse.exercises import ex00"


def test_canvas_download_names_group_a_students_notebooks(tmp_path):
    for name in ("smithjane_4242_1001_00_welcome.ipynb", "smithjane_LATE_4242_1002_01_formats.ipynb",
                 "doejohn_77_1003_00_welcome.ipynb"):
        write_notebook(tmp_path / name, [HEAD])
    found = submissions.find_submissions(tmp_path)
    assert [(s.student, s.canvas_id) for s in found] == [
        ("doejohn", "77"), ("smithjane", "4242"), ("smithjane", "4242")]
    assert not any(s.problem for s in found)


def test_the_roster_names_who_submitted_nothing_and_who_it_does_not_list():
    rows = [{"Student": "Smith, Jane", "ID": "4242", "SIS User ID": "", "SIS Login ID": "jsmith",
             "Section": "A"},
            {"Student": "Doe, John", "ID": "77", "SIS User ID": "", "SIS Login ID": "jdoe",
             "Section": "A"},
            {"Student": "Points Possible", "ID": "", "SIS User ID": "", "SIS Login ID": "",
             "Section": ""}]
    matched, messages = submissions.match_roster(["jsmith", "mallory"], rows[:2])
    assert matched == {"jsmith": rows[0]}
    assert any("1 student(s) with no submission: Doe, John" in m for m in messages)
    assert any("not in the roster: mallory" in m for m in messages)
    by_name, _ = submissions.match_roster(["JaneSmith", "john doe [john doe/]"], rows[:2])
    assert by_name == {"JaneSmith": rows[0], "john doe [john doe/]": rows[1]}


def test_reading_a_roster_skips_the_points_row_and_rejects_a_file_without_names(tmp_path):
    (tmp_path / "canvas.csv").write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        "Points Possible,,,,\n\"Smith, Jane\",4242,,jsmith,A\n")
    assert [r["ID"] for r in submissions.read_roster(tmp_path / "canvas.csv")] == ["4242"]
    (tmp_path / "bad.csv").write_text("name,email\nx,y\n")
    with pytest.raises(ValueError, match="needs a header with a 'student' column"):
        submissions.read_roster(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="cannot read the roster"):
        submissions.read_roster(tmp_path / "missing.csv")


def test_parallel_jobs_are_bounded(monkeypatch):
    monkeypatch.setattr(batch.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(batch, "memory_available", lambda: 10 * 2**30)
    assert batch.bounded_jobs(4, 3000, 100) == 3          # 10 GB hold three notebooks of 3 GB
    assert batch.bounded_jobs(16, 100, 100) == 8          # never more than the CPUs
    assert batch.bounded_jobs(4, 100, 2) == 2             # nor than the notebooks
    monkeypatch.setattr(batch, "memory_available", lambda: 2**30)
    assert batch.bounded_jobs(4, 3000, 100) == 1          # at least one
    with pytest.raises(ValueError, match="at least 1"):
        batch.bounded_jobs(0, 3000, 1)


# ---- what the learner's saved notebook says ---------------------------------------------------

def saved(*lines):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("ex00.two_bit_perplexity.check(two_bit_perplexity);")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=line + "\n")
                    for line in lines]
    nb.cells = [cell]
    return nb


def test_the_saved_check_output_and_a_recorded_first_answer_are_read_back():
    from qcourse.grading import runner
    nb = saved("❌ 00.4 two_bit_perplexity: wrong. Not a. Graded mode: your first answer, 'a', "
               "is the one that counts.",
               "✅ 00.4 two_bit_perplexity: correct. Graded mode: your first answer, 'd', is the "
               "one that counts.",                         # a forged later line: the first wins
               "✅ 00.1 weight_bytes: correct. All 7 hidden cases pass.")
    shown, first = runner.saved_checks(nb)
    assert shown == {"00.4 two_bit_perplexity": "correct", "00.1 weight_bytes": "correct"}
    assert first == {"00.4 two_bit_perplexity": "a"}
    questions = [ex for ex in runner.questions_of("qcourse.exercises.ex00")
                 if ex.name == "00.4 two_bit_perplexity"]
    # the grader's run answered 'd'; the saved first answer 'a' is the one graded
    marks = runner.judge(questions, {"00.4 two_bit_perplexity": {"kind": "value", "value": "d"}},
                         nb, None)
    mark = marks["00.4 two_bit_perplexity"]
    assert (mark.status, mark.first_answer, mark.shown) == ("wrong", "your saved notebook",
                                                            "correct")
    assert runner.saved_checks(saved("✅ 00.4 two_bit_perplexity: correct. Graded mode: your "
                                     "first answer, __import__('os'), is the one that counts."))[1] \
        == {}                                              # only literals are read back


def test_a_question_the_run_never_reached_is_an_error():
    from qcourse.grading import runner
    questions = runner.questions_of("qcourse.exercises.ex00")
    marks = runner.judge(questions, {}, nbformat.v4.new_notebook(), "the kernel died")
    assert {m.status for m in marks.values()} == {"error"}
    assert {m.message for m in marks.values()} == {"the kernel died"}


# ---- feedback ----------------------------------------------------------------------------------

def synthetic_results():
    """Two students, two chapters, in the shape grade_folder returns them."""
    from qcourse.grading.runner import Mark, Result
    wrong = Mark("wrong", "6 of 7 hidden cases pass. ...", 6 / 7, 1.0, shown="correct",
                 failure={"case": 7, "inputs": "(3, 4)", "expected": "2", "got": "<b>1</b>"},
                 passed=6, total=7)
    return [
        Result("ann", "00_welcome.ipynb", "00",
               {"00.1 weight_bytes": Mark("correct", "All 7 hidden cases pass.", 1.0, 1.0),
                "00.4 two_bit_perplexity": Mark("wrong", "Not c.", 0.0, 1.0,
                                                first_answer="your saved notebook")},
               None, 12.0),
        Result("ann", "01_formats.ipynb", "01",
               {"01.1 float_value": Mark("not attempted", "Replace the `...`.", 0.0, 2.0)},
               None, 10.0),
        Result("Bo Li", "00_welcome.ipynb", "00", {"00.1 weight_bytes": wrong},
               "cell 3 ran longer than 600 s (interrupted)", 30.0),
    ]


def test_feedback_says_what_failed_and_never_all_passed():
    from qcourse.grading import feedback
    from qcourse.exercises import ex00
    bo = synthetic_results()[2]
    lines = feedback.explain(bo.marks["00.1 weight_bytes"], ex00.weight_bytes)
    text = "\n".join(lines)
    assert lines[0] == "wrong: 0.86 of 1 point."
    assert "6 of 7 hidden cases pass" in text and not re.search(r"\ball\b", text, re.I)
    assert "inputs:   (3, 4)" in text and "expected: 2" in text and "got:      <b>1</b>" in text
    assert "check() showed 'correct'" in text
    assert f"Hint: {ex00.weight_bytes.hints[0]}" in text
    page = feedback.page("Bo Li", [bo], {"00.1 weight_bytes": ex00.weight_bytes})
    assert "&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page     # learner output escaped
    assert "cell 3 ran longer than 600 s" in page and "0.86 of 1 point" in page


# ---- Canvas: the gradebook importer's rules ------------------------------------------------------
# Canvas (instructure/canvas-lms, app/models/gradebook_importer.rb, GradebookImporter#parse! and
# #process_header): the header's first cell matches /Student/, the second /ID/; the third
# /Section/, or the third to fifth /SIS User ID/, /SIS Login ID/, /Section/; every later column
# is an assignment ("Title (id)" or a title; trailing Current/Final Score columns are dropped);
# a row whose first cell matches /Points Possible/ gives each assignment's points; every other
# row is a student, matched by the ID column, then SIS ids, then the name; a blank grade changes
# nothing.

def canvas_import(rows):
    """Parse rows the way Canvas's importer does; ``({assignment: points}, {student: {...}})``."""
    import re
    header = rows[0]
    assert len(header) >= 3 and re.search("Student", header[0]) and re.search("ID", header[1])
    if re.search("Section", header[2]):
        first = 3
    else:
        assert re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID",
                                                                       header[3])
        assert re.search("Section", header[4])
        first = 5
    assignments = header[first:]
    points, grades = {}, {}
    for row in rows[1:]:
        assert len(row) == len(header)
        cells = dict(zip(assignments, row[first:]))
        if re.search("Points Possible", row[0]):
            points = {a: float(v) for a, v in cells.items()}
            continue
        grades[row[0]] = {a: float(v) for a, v in cells.items() if v != ""}
        assert row[0] or row[1], "a student needs a name or an ID"
    return points, grades


def test_the_canvas_csv_is_what_canvas_imports(tmp_path):
    import csv
    from qcourse.grading import export
    results = synthetic_results()
    identities = {"ann": {"Student": "Lee, Ann", "ID": "4242", "SIS Login ID": "alee",
                          "Section": "A"}}
    absent = [{"Student": "Doe, John", "ID": "77", "SIS Login ID": "jdoe", "Section": "A"}]
    with open(tmp_path / "canvas.csv", "w", newline="") as f:
        csv.writer(f).writerows(export.canvas_rows(results, identities, absent))
    rows = list(csv.reader(open(tmp_path / "canvas.csv", newline="")))
    points, grades = canvas_import(rows)
    assert points == {"qcourse 00": 2.0, "qcourse 01": 2.0}
    assert grades == {"Lee, Ann": {"qcourse 00": 1.0, "qcourse 01": 0.0},
                      "Bo Li": {"qcourse 00": 0.86},        # no notebook of chapter 01: blank
                      "Doe, John": {}}                        # on the roster, no submission
    assert rows[2][:5] == ["Lee, Ann", "4242", "", "alee", "A"]


# ---- Gradescope: a schema written from the published specification ------------------------------
# https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output format"; the same text
# as gradescope/autograder_samples docs/specs.md): top level score (optional, but required if not
# on each test), execution_time, output, visibility, stdout_visibility, extra_data, tests,
# leaderboard; each test: score, max_score, name, number, output, tags, visibility, extra_data.
# Visibility: hidden, after_due_date, after_published, visible. Fields outside the spec are refused.

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
GRADESCOPE_TEST = {
    "type": "object", "additionalProperties": False,
    "properties": {"score": {"type": "number"}, "max_score": {"type": "number"},
                   "name": {"type": "string"}, "number": {"type": "string"},
                   "output": {"type": "string"},
                   "tags": {"type": "array", "items": {"type": "string"}},
                   "visibility": VISIBILITY, "extra_data": {"type": "object"}}}
GRADESCOPE_RESULTS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False,
    "properties": {"score": {"type": "number"}, "execution_time": {"type": "number"},
                   "output": {"type": "string"}, "visibility": VISIBILITY,
                   "stdout_visibility": VISIBILITY, "extra_data": {"type": "object"},
                   "tests": {"type": "array", "items": GRADESCOPE_TEST},
                   "leaderboard": {"type": "array", "items": {
                       "type": "object", "required": ["name", "value"],
                       "properties": {"name": {"type": "string"},
                                      "order": {"enum": ["asc", "desc"]}}}}},
    "anyOf": [{"required": ["score"]},
              {"required": ["tests"],
               "properties": {"tests": {"items": {"required": ["score"]}}}}],
}


def validate_gradescope(results: dict) -> None:
    import jsonschema
    jsonschema.validate(results, GRADESCOPE_RESULTS)


def test_the_schema_refuses_what_gradescope_would(tmp_path):
    import jsonschema
    with pytest.raises(jsonschema.ValidationError):
        validate_gradescope({"tests": [{"name": "q1"}]})                 # no score anywhere
    with pytest.raises(jsonschema.ValidationError):
        validate_gradescope({"score": 1, "tests": [{"score": 1, "visibility": "public"}]})
    with pytest.raises(jsonschema.ValidationError):
        validate_gradescope({"score": 1, "status": "passed"})             # not in the spec
    validate_gradescope({"tests": [{"score": 1.0, "max_score": 2}]})


def test_gradescope_results_follow_the_specification():
    from qcourse.grading import export
    ann = [r for r in synthetic_results() if r.student == "ann"]
    results = export.gradescope_results(ann)
    validate_gradescope(results)
    assert results["score"] == 1.0
    assert [(t["name"], t["score"], t["max_score"]) for t in results["tests"]] == [
        ("00.1 weight_bytes", 1.0, 1.0), ("00.4 two_bit_perplexity", 0.0, 1.0),
        ("01.1 float_value", 0.0, 2.0)]
    assert all(t["visibility"] == "visible" for t in results["tests"])
    assert "first answer you gave (read from your saved notebook)" in results["tests"][1]["output"]


# ---- the command line, the sandbox's word, Gradescope's zip -------------------------------------

def test_asking_for_a_sandbox_that_is_not_there_stops_with_the_reason(monkeypatch, tmp_path, capsys):
    from qcourse import cli
    from qcourse.grading import sandbox
    monkeypatch.setattr(sandbox, "status", lambda: sandbox.Status(False, "unshare failed: EPERM"))
    write_notebook(tmp_path / "alice.ipynb", [HEAD])
    assert cli.main(["grade", str(tmp_path), "--sandbox"]) == 2
    out = capsys.readouterr().out
    assert "--sandbox is not available here: unshare failed: EPERM" in out
    assert "it can change files you can change" in out and not (tmp_path / "grades").exists()
    line, go_on = batch.sandbox_line(False)
    assert go_on and line.startswith("not sandboxed:") and "not available here" in line


def test_the_summary_line_counts_what_happened():
    results = synthetic_results()
    results[0].reused = True
    line = batch.summary_line(results, 75)
    assert line == ("graded 3 notebook(s) of 2 student(s) in 1 min 15 s: 1 unchanged since the "
                    "last run, 1 with a problem, 0 question(s) not graded; 37 % of the points "
                    "earned overall")


def test_the_gradescope_autograder_zip(tmp_path):
    import stat
    import zipfile
    from qcourse.grading import gradescope
    path = gradescope.autograder_zip(tmp_path / "autograder.zip", ref="abc123", timeout=300)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["run_autograder", "setup.sh"]   # at the root
        for info in archive.infolist():
            assert stat.S_IMODE(info.external_attr >> 16) == 0o755
        setup, run = archive.read("setup.sh").decode(), archive.read("run_autograder").decode()
    assert setup.startswith("#!/usr/bin/env bash") and "checkout -q abc123" in setup
    assert "pip install -q -e /opt/qcourse-src" in setup
    assert "qcourse grade --gradescope --timeout 300 --memory-mb 3000" in run


def test_a_submission_without_a_notebook_on_gradescope(tmp_path):
    from qcourse.grading import gradescope
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "answers.py").write_text("x = 1")
    report = gradescope.grade(tmp_path)
    validate_gradescope(report)
    assert report["score"] == 0 and "No notebook (.ipynb)" in report["output"]
    assert (tmp_path / "results" / "results.json").exists()


def test_a_notebook_that_imports_an_exercise_module_that_does_not_exist(tmp_path):
    from qcourse.grading import runner
    write_notebook(tmp_path / "typo.ipynb", ["from qcourse.exercises import ex99"])
    result = runner.grade_notebook(tmp_path / "typo.ipynb")
    assert "no qcourse exercises" in result.problem and "qcourse.exercises.ex99 do(es) not exist" \
        in result.problem and not result.marks
