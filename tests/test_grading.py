"""Grading a folder of generated submissions: right, partly right and wrong answers, one that
calls the package's own function, one that forges its results, one that never ends, one that
kills its kernel, one that eats memory, and the bad input an instructor meets (files that are
not course notebooks, an empty student folder, duplicate names, two notebooks of one chapter).
Graded two at a time; each bad input gets a message and the rest of the batch is graded."""
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
    "bob": [HEAD, "def weight_bytes(n_params, bits):\n    return n_params * bits", "1/0",
            "def perplexity_from_nll(nll):\n    return nll.exp().mean().item()"],
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
             "def perplexity_from_nll(nll):\n    while True:\n        try:\n"
             "            pass\n        except Exception:\n            pass"],
    "frank": [HEAD, RIGHT_BYTES, "import os\nos._exit(3)", RIGHT_PPL],
    "gina": [HEAD, RIGHT_BYTES, "hog = torch.ones(2**30)  # 4 GB", RIGHT_PPL],
    "Henry": [HEAD, RIGHT_BYTES],                      # and a folder named henry/
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
    nb = nbformat.read(folder / "alice.ipynb", as_version=4)      # alice ran her check
    nb.cells[2].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text="✅ 00.1 weight_bytes: correct. All 7 hidden cases pass.\n")]
    nbformat.write(nb, str(folder / "alice.ipynb"))
    (folder / "henry").mkdir()                        # a student folder holding the notebook
    write_notebook(folder / "henry" / "00_welcome.ipynb", [HEAD, RIGHT_PPL])
    (folder / "corrupt.ipynb").write_text("{ not json")
    write_notebook(folder / "other.ipynb", ["print('another course')"])
    (folder / "zoe").mkdir()                          # a student folder with no notebook
    (folder / "yan").mkdir()                          # two notebooks of chapter 00
    for name in ("00_welcome.ipynb", "00_welcome (1).ipynb"):
        write_notebook(folder / "yan" / name, [HEAD, RIGHT_BYTES])
    results = grading.grade_folder(folder, timeout=20, memory_mb=1500, question_seconds=5,
                                   jobs=2)
    return folder, {r.student: r for r in results}, results


def statuses(result):
    return {q: m.status for q, m in result.marks.items()}


def test_right_wrong_and_partly_right_answers(graded):
    _, by_student, _ = graded
    alice, bob = by_student["alice"], by_student["bob"]
    assert set(alice.marks) == set(bob.marks) == set(EX00_POINTS)   # every question
    assert statuses(alice)["00.1 weight_bytes"] == statuses(alice)["00.2 perplexity_from_nll"] \
        == "correct"
    assert {statuses(alice)[q] for q in EX00_POINTS if q[:4] not in ("00.1", "00.2")} == \
        {"not attempted"}
    assert alice.earned == EX00_POINTS["00.1 weight_bytes"] + EX00_POINTS["00.2 perplexity_from_nll"]
    assert statuses(bob)["00.1 weight_bytes"] == "wrong" and bob.marks["00.1 weight_bytes"].score == 0
    # the mean of exp: right on the cases where every value is the same (2 of 4), partial credit
    ppl = bob.marks["00.2 perplexity_from_nll"]
    assert (ppl.status, ppl.score, ppl.passed, ppl.total) == ("wrong", 0.5, 2, 4)
    assert ppl.failure["case"] == 2 and "shape (3,), float32" in ppl.failure["inputs"]
    henry = by_student["henry [henry/]"]
    assert henry.notebook == "00_welcome.ipynb" and statuses(henry)["00.2 perplexity_from_nll"] \
        == "correct"


def test_the_notebooks_own_check_output_is_compared_with_the_grader(graded):
    alice = graded[1]["alice"]            # her saved notebook shows weight_bytes' check only
    assert alice.marks["00.1 weight_bytes"].shown == "correct"
    assert alice.marks["00.2 perplexity_from_nll"].shown is None


def test_calling_the_package_function_is_not_graded_correct(graded):
    carol = graded[1]["carol"]
    mark = carol.marks["00.1 weight_bytes"]
    assert mark.status == "wrong" and mark.score == 0 and "qcourse.formats.memory_bytes" in mark.message
    assert carol.marks["00.2 perplexity_from_nll"].status == "correct"


def test_forged_results_and_patched_checks_do_not_count(graded):
    folder, by_student, _ = graded
    assert by_student["dave"].marks["00.1 weight_bytes"].status == "wrong"
    assert not (folder / "results.jsonl").exists()  # written in the scratch copy, never read


def test_an_endless_notebook_is_interrupted_and_still_graded(graded):
    erin = graded[1]["erin"]
    assert "ran longer than 20 s" in erin.problem
    assert erin.marks["00.1 weight_bytes"].status == "correct"
    mark = erin.marks["00.2 perplexity_from_nll"]
    assert mark.status == "wrong" and "longer than 5 s" in mark.message
    assert erin.seconds < 120


def test_a_dead_kernel_or_a_memory_hog_marks_the_questions(graded):
    frank, gina = graded[1]["frank"], graded[1]["gina"]
    assert "kernel died" in frank.problem
    assert set(statuses(frank).values()) == {"error"}
    assert "more than 1500 MB" in gina.problem
    assert set(statuses(gina).values()) == {"error"}


def test_bad_input_gets_a_message_and_the_rest_is_graded(graded):
    _, by_student, _ = graded
    assert "not a readable notebook" in by_student["corrupt"].problem
    assert "no qcourse exercises" in by_student["other"].problem
    assert by_student["zoe"].problem == "zoe/ holds no notebook" and not by_student["zoe"].marks
    yan = [r for r in graded[2] if r.student == "yan"]
    assert len(yan) == 2 and all("2 notebooks of chapter 00" in r.problem and not r.marks
                                 for r in yan)
    # Henry.ipynb and henry/: graded apart, each named after where it came from
    clash = {s: r for s, r in by_student.items() if s.lower().startswith("henry")}
    assert set(clash) == {"Henry [Henry.ipynb]", "henry [henry/]"}
    assert all("2 submissions are named" in r.problem for r in clash.values())
    assert clash["Henry [Henry.ipynb]"].marks["00.1 weight_bytes"].status == "correct"


def test_a_missing_or_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "alice").mkdir()
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
