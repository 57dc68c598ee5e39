"""A committed notebook's outputs are not older than the package code and recorded results it
shows: executing a notebook (``python notebooks/src/NN_topic.py --execute``) stores a hash of
each file its outputs come from (``nbbuild.fingerprint``); here the hashes are recomputed."""
import hashlib
import pathlib
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "notebooks" / "src"))
import nbbuild  # noqa: E402


def stale_files(recorded: dict, now: dict) -> list[str]:
    """What changed between the fingerprint a notebook was executed with and today's."""
    return ([f"{f} changed" for f in sorted(set(recorded) & set(now)) if recorded[f] != now[f]]
            + [f"{f} is new" for f in sorted(set(now) - set(recorded))]
            + [f"{f} is gone" for f in sorted(set(recorded) - set(now))])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_not_older_than_what_they_show(path):
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("qcourse", {}).get("executed_with")
    redo = f"re-execute it: python notebooks/src/{path.stem}.py --execute"
    assert recorded is not None, f"{path.name} was not executed by nbbuild (no fingerprint): {redo}"
    changes = stale_files(recorded, nbbuild.fingerprint(nb))
    assert not changes, (f"{path.name} shows outputs older than the files they come from "
                         f"({'; '.join(changes)}): {redo}")


# ---- what the fingerprint covers -------------------------------------------------------------

def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else
                nbformat.v4.new_markdown_cell(src) for kind, src in cells]
    return nb


def test_the_fingerprint_holds_the_files_defining_what_the_code_names():
    nb = notebook(("code", "%matplotlib inline\nfrom qcourse import gptq, models\n"
                           "from qcourse.quant import QuantScheme\nimport torch\n"),
                  ("code", "def f():\n    from qcourse import awq\n    return awq.search_clip\n"
                           "m, t = models.load()\ngptq.quantize_model(m, 1, 4, 128)\n"))
    files = set(nbbuild.fingerprint(nb))
    assert {"qcourse/gptq.py", "qcourse/models/__init__.py", "qcourse/models/loader.py",
            "qcourse/quant.py", "qcourse/awq.py"} <= files
    assert not any(f.startswith(("torch", "/")) for f in files)
    assert "qcourse/smoothquant.py" not in files and "qcourse/nf4.py" not in files
    digest = hashlib.sha256((ROOT / "qcourse/gptq.py").read_bytes()).hexdigest()
    assert nbbuild.fingerprint(nb)["qcourse/gptq.py"] == digest


def test_the_fingerprint_holds_the_recorded_results_read_or_cited():
    nb = notebook(("code", 'import pathlib\nfiles = pathlib.Path("r").glob("gptq-*.json")'),
                  ("markdown", "As recorded in `benchmarks/results/kernels-nvidia-h100-80gb-"
                               "hbm3-2026-11-27.json`."))
    files = set(nbbuild.fingerprint(nb))
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks/results").glob("gptq-*.json")}
    assert expected and expected <= files
    assert "benchmarks/results/kernels-nvidia-h100-80gb-hbm3-2026-11-27.json" in files
    assert not any("awq-" in f for f in files)


def test_the_cuda_sources_a_notebook_prints_are_covered():
    nb = notebook(("code", "from qcourse.kernels import cuda as cuda_kernel\n"
                           "print(cuda_kernel.source())"))
    assert any(f.endswith(".cu") for f in nbbuild.fingerprint(nb))


def test_a_change_is_reported_by_file():
    assert stale_files({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"}) == [
        "b changed", "d is new", "c is gone"]
