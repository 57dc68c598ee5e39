"""The sandbox (qcourse grade --sandbox): a submission that edits the package on disk, or fetches
answers from a server on 127.0.0.1, gains nothing inside it. Each attack is first shown to work
without the sandbox (so the test can fail), on a copy of the package: the real one is never
touched."""
import http.server
import json
import math
import os
import pathlib
import shutil
import tempfile
import threading

import nbformat
import pytest

from qcourse import grading, paths
from qcourse.grading import sandbox

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox.status().available,
                                 reason=f"no sandbox here: {sandbox.status().how}")]

HEAD = "import math\nfrom qcourse.exercises import ex00"
# Rewrites the grader's own code on disk: every function answer then reports the reference's
# results, which the grader would compare with the reference and find right.
EDIT_THE_PACKAGE = '''
import pathlib, qcourse.exercises
path = pathlib.Path(qcourse.exercises.__file__)
source = path.read_text()
anchor = "        pack = encode if portable else (lambda v: v)\\n"
assert anchor in source, "the attack no longer fits the package"
cheat = ("        if self.cases is not None and callable(answer):\\n"
         "            return {'kind': 'function', 'portable': portable, 'results': "
         "[{'value': pack(self.reference(*a))} for a in self.cases()]}\\n")
try:
    path.write_text(source.replace(anchor, anchor + cheat))
    print("edited", path)
except OSError as err:
    print("could not edit the package:", err)

def weight_bytes(n_params, bits):
    return 0
'''
FETCH_THE_ANSWERS = '''
import json, urllib.request

def weight_bytes(n_params, bits):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/{n_params}/{bits}", timeout=3) as r:
        return json.loads(r.read())
'''


class Answers(http.server.BaseHTTPRequestHandler):
    """Serves the right weight_bytes for /n_params/bits."""

    def do_GET(self):
        n, bits = map(int, self.path.strip("/").split("/"))
        body = json.dumps(math.ceil(n * bits / 8)).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def attacks():
    """Grade the two attacks without and with the sandbox, the package a copy each time."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outcome, roots = {}, []
    try:
        for sandboxed in (False, True):
            # readable by everyone: a sandboxed kernel runs as nobody, and pytest's own
            # temporary folders are private to their owner
            root = pathlib.Path(tempfile.mkdtemp(prefix="qcourse-sandbox-test-"))
            os.chmod(root, 0o755)
            roots.append(root)
            shutil.copytree(paths.PACKAGE_DIR, root / "package" / "qcourse",
                            ignore=shutil.ignore_patterns("__pycache__"))
            folder = root / "submissions"
            folder.mkdir()
            for student, answer in (("editor", EDIT_THE_PACKAGE),
                                    ("fetcher", FETCH_THE_ANSWERS.replace(
                                        "{PORT}", str(server.server_address[1])))):
                nb = nbformat.v4.new_notebook()
                nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                             "language": "python"}
                nb.cells = [nbformat.v4.new_code_cell(c) for c in (HEAD, answer)]
                nbformat.write(nb, str(folder / f"{student}.ipynb"))
            with pytest.MonkeyPatch.context() as patch:   # worker and kernel import the copy
                patch.setenv("PYTHONPATH", os.pathsep.join(
                    filter(None, [str(root / "package"), os.environ.get("PYTHONPATH")])))
                results = grading.grade_folder(folder, timeout=60, question_seconds=10,
                                               jobs=2, sandboxed=sandboxed)
            copied = root / "package" / "qcourse" / "exercises" / "__init__.py"
            outcome[sandboxed] = ({r.student: r.marks["00.1 weight_bytes"] for r in results},
                                  copied.read_text() == (paths.PACKAGE_DIR / "exercises" /
                                                         "__init__.py").read_text())
    finally:
        server.shutdown()
        for root in roots:
            sandbox.remove_tree(root)
    return outcome


def test_without_the_sandbox_both_attacks_work(attacks):
    marks, untouched = attacks[False]
    assert marks["editor"].status == "correct" and not untouched   # it rewrote the package
    assert marks["fetcher"].status == "correct"                     # it reached the server


def test_in_the_sandbox_editing_the_package_gains_nothing(attacks):
    marks, untouched = attacks[True]
    assert untouched
    assert marks["editor"].status == "wrong" and marks["editor"].score == 0


def test_in_the_sandbox_a_server_on_localhost_is_out_of_reach(attacks):
    marks, _ = attacks[True]
    fetcher = marks["fetcher"]
    assert fetcher.status == "wrong" and fetcher.score == 0
    assert "URLError" in fetcher.failure["raised"] or "unreachable" in fetcher.failure["raised"]
