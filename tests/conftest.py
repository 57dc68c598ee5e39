import pytest
import torch

from qcourse import models


@pytest.fixture(scope="session")
def tiny():
    """The embedded model and its tokenizer, loaded once per test session."""
    torch.manual_seed(0)
    return models.load("qcourse-tiny")
