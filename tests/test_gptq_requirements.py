"""The recorded reason the course cross-checks GPTQ against llm-compressor, not GPTQModel:
benchmarks/gptq_requirements.py and its record."""
import importlib.util
import runpy
import subprocess
import sys

import pytest

from qcourse.bench import record
from qcourse.paths import REPO_DIR

SCRIPT = REPO_DIR / "benchmarks" / "gptq_requirements.py"


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(SCRIPT), run_name="gptq_requirements")


@pytest.mark.parametrize("a, b, expected", [
    (">=2.14.1", "<=2.14.0,>=2.10.0", True),
    (">=5.20.2", "<=5.17.0,>=5.15.0", True),
    (">=2.14.0", "<=2.14.0", False),        # 2.14.0 satisfies both
    (">2.14.0", "<=2.14.0", True),
    (">=2.14.0", "<2.14.0", True),
    (">=2.10", "<3", False),
    (">=2.10", "", False),                  # no upper bound
    ("==2.13.0", ">=2.14", True),
])
def test_disjoint_ranges(script, a, b, expected):
    assert script["disjoint"](a, b) is expected


def test_pins_read_the_shared_libraries_only(script):
    found = script["pins"](["torch>=2.14.1", "transformers>=5.20.2", "numpy>=2",
                            'torchao>=0.18; extra == "cuda"'])
    assert found == {"torch": ">=2.14.1", "transformers": ">=5.20.2"}


def test_the_record_holds_what_notebook_04_says():
    paths = sorted(record.RESULTS_DIR.glob("gptq-requirements-*.json"))
    assert paths, "run python benchmarks/gptq_requirements.py"
    result = record.read(paths[-1])
    assert result["gptqmodel"]["version"] == "7.7.0" and result["date"] and result["machine"]["cpu"]
    assert all(row["disjoint"] for row in result["pins"].values())
    assert result["autogptq"]["import"].startswith("ImportError")


@pytest.mark.skipif(importlib.util.find_spec("llmcompressor") is None,
                    reason="llm-compressor not installed")
def test_the_installed_llm_compressor_still_excludes_gptqmodel():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                         text=True, cwd=REPO_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("no version satisfies both") == 2
