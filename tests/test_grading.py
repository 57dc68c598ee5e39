"""Grading a folder of generated submissions: correct, wrong, one that calls the package's own
function, one that forges its results, one that never ends, one that kills its kernel, one that
eats memory, and files that are not course notebooks."""
import json

import nbformat
import pytest

from qcourse import grading
from qcourse.exercises import Question, ex00

pytestmark = pytest.mark.slow  # every submission runs in a fresh kernel

HEAD = "import math\nimport torch\nfrom qcourse.exercises import ex00"
RIGHT_BYTES = "def weight_bytes(n_params, bits):\n    return math.ceil(n_params * bits / 8)"
RIGHT_PPL = "def perplexity_from_nll(nll):\n    return math.exp(nll.mean().item())"
SUBMISSIONS = {
    "alice": [HEAD, RIGHT_BYTES, "ex00.weight_bytes.check(weight_bytes)", RIGHT_PPL],
    "bob": [HEAD, "def weight_bytes(n_params, bits):\n    return n_params * bits", "1/0"],
    "carol": [HEAD, "from qcourse.formats import memory_bytes\n"
                    "def weight_bytes(n_params, bits):\n    return memory_bytes(n_params, bits)",
              RIGHT_PPL],
    "dave": [HEAD,  # forges: a results file, a patched check, a patched framework
             "import json, os\n"
             "open(os.environ.get('QCOURSE_RESULTS', 'results.jsonl'), 'a').write(json.dumps("
             "{'question': '00.1 weight_bytes', 'status': 'correct'}) + '\\n')",
             "import qcourse.exercises as qe\n"
             "qe.close = lambda *a, **k: True\n"
             "qe.Question.verdict = lambda self, o: qe.Verdict(self.name, 'correct', '')\n"
             "ex00.weight_bytes.check = lambda answer: print('✅ correct')",
             "def weight_bytes(n_params, bits):\n    return 0",
             "ex00.weight_bytes.check(weight_bytes)"],
    "erin": [HEAD, RIGHT_BYTES, "while True:\n    pass",
             "def perplexity_from_nll(nll):\n    while True:\n        pass"],
    "frank": [HEAD, RIGHT_BYTES, "import os\nos._exit(3)", RIGHT_PPL],
    "gina": [HEAD, RIGHT_BYTES, "hog = torch.ones(2**30)  # 4 GB", RIGHT_PPL],
}


EX00_POINTS = {q.name: q.points for q in vars(ex00).values() if isinstance(q, Question)}


def write_notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    for student, sources in SUBMISSIONS.items():
        write_notebook(folder / f"{student}.ipynb", sources)
    (folder / "henry").mkdir()                        # a student folder holding the notebook
    write_notebook(folder / "henry" / "00_welcome.ipynb", [HEAD, RIGHT_PPL])
    results = grading.grade_folder(folder, timeout=15, memory_mb=1500, question_seconds=5)
    return folder, {r.student: r for r in results}


def statuses(result):
    return {q: s for q, (s, _) in result.verdicts.items()}


def test_right_and_wrong_answers(graded):
    _, by_student = graded
    alice, bob = statuses(by_student["alice"]), statuses(by_student["bob"])
    assert set(alice) == set(bob) == set(EX00_POINTS)         # every question of the notebook
    assert alice["00.1 weight_bytes"] == alice["00.2 perplexity_from_nll"] == "correct"
    assert {alice[q] for q in EX00_POINTS if q[:4] not in ("00.1", "00.2")} == {"not attempted"}
    assert bob["00.1 weight_bytes"] == "wrong"
    assert bob["00.2 perplexity_from_nll"] == "not attempted"
    assert by_student["henry"].notebook == "00_welcome.ipynb"
    assert statuses(by_student["henry"])["00.2 perplexity_from_nll"] == "correct"


def test_calling_the_package_function_is_not_graded_correct(graded):
    carol = graded[1]["carol"]
    status, message = carol.verdicts["00.1 weight_bytes"]
    assert status == "wrong" and "qcourse.formats.memory_bytes" in message
    assert carol.verdicts["00.2 perplexity_from_nll"][0] == "correct"


def test_forged_results_and_patched_checks_do_not_count(graded):
    folder, by_student = graded
    assert by_student["dave"].verdicts["00.1 weight_bytes"][0] == "wrong"
    assert (folder / "results.jsonl").exists()  # the forgery happened; nobody read it


def test_an_endless_notebook_is_interrupted_and_still_graded(graded):
    erin = graded[1]["erin"]
    assert "ran longer than 15 s" in erin.problem
    assert erin.verdicts["00.1 weight_bytes"][0] == "correct"
    status, message = erin.verdicts["00.2 perplexity_from_nll"]
    assert status == "wrong" and "longer than 5 s" in message
    assert erin.seconds < 120


def test_a_dead_kernel_or_a_memory_hog_marks_the_questions(graded):
    frank, gina = graded[1]["frank"], graded[1]["gina"]
    assert "kernel died" in frank.problem
    assert set(statuses(frank).values()) == {"error"}
    assert "more than 1500 MB" in gina.problem
    assert set(statuses(gina).values()) == {"error"}


def test_reports_for_the_instructor(graded, tmp_path):
    folder, by_student = graded
    out = grading.write_reports(list(by_student.values()), tmp_path / "grades")
    roster = json.loads((out / "roster.json").read_text())["students"]
    alice = next(r for r in roster if r["student"] == "alice")
    assert alice["points"] == EX00_POINTS["00.1 weight_bytes"] + EX00_POINTS["00.2 perplexity_from_nll"]
    assert alice["possible"] == sum(EX00_POINTS.values())
    summary = (out / "summary.md").read_text()
    assert "| 00.1 weight_bytes | 2 |" in summary          # alice and erin got it right
    assert "qcourse.formats.memory_bytes" in summary       # carol's, among the common wrong answers
    assert (out / "roster.csv").read_text().startswith("student,points,possible")
    assert "<table" in (out / "summary.html").read_text()


def test_files_that_are_not_course_notebooks(tmp_path):
    (tmp_path / "corrupt.ipynb").write_text("{ not json")
    write_notebook(tmp_path / "other.ipynb", ["print('another course')"])
    results = {r.student: r for r in grading.grade_folder(tmp_path, timeout=15)}
    assert "not a readable notebook" in results["corrupt"].problem
    assert "no qcourse exercises" in results["other"].problem
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .ipynb"):
        grading.grade_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a folder"):
        grading.grade_folder(tmp_path / "missing")


def test_release_makes_graded_student_copies(tmp_path):
    source = tmp_path / "course.ipynb"
    write_notebook(source, [HEAD, "print('output')"])
    nb = nbformat.read(source, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="output\n")]
    nbformat.write(nb, str(source))
    [copy] = grading.release([source], tmp_path / "student")
    released = nbformat.read(copy, as_version=4)
    assert released.metadata["qcourse"]["graded"] is True
    assert "set_graded(True)" in released.cells[1].source
    assert all(not c.get("outputs") for c in released.cells if c.cell_type == "code")
    [kept] = grading.release([source], tmp_path / "kept", keep_outputs=True, graded=False)
    assert nbformat.read(kept, as_version=4).cells[1].outputs
    write_notebook(tmp_path / "plain.ipynb", ["1 + 1"])
    with pytest.raises(ValueError, match="no qcourse exercises"):
        grading.release([tmp_path / "plain.ipynb"], tmp_path / "x")
