import os

# Triton must see TRITON_INTERPRET before anything imports it (another test module, bitsandbytes,
# transformers): the kernels then run on the CPU. A GPU run can export TRITON_INTERPRET=0.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from qcourse import models


@pytest.fixture(scope="session")
def tiny():
    """The embedded model and its tokenizer, loaded once per test session."""
    torch.manual_seed(0)
    return models.load("qcourse-tiny")
