import math

import pytest
import torch
from torch import nn

from qcourse import data, eval as qeval, models


def test_perplexity_matches_the_models_own_loss(tiny):
    """Independent check: exp of the mean of the loss HF computes with labels, window by window."""
    model, tokenizer = tiny
    ids = data.token_ids(tokenizer, "test")
    batches = ids[: 6 * 128].view(6, 128)
    with torch.no_grad():
        losses = [model(w[None], labels=w[None]).loss.item() for w in batches]
    expected = math.exp(sum(losses) / len(losses))  # every window predicts 127 tokens
    ours = qeval.perplexity(model, tokenizer, "test", seq_len=128, max_windows=6)
    assert ours == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_trained_model_beats_the_unigram_baseline_by_far(tiny):
    model, tokenizer = tiny
    ppl = qeval.perplexity(model, tokenizer, "test", max_windows=40)
    unigram = qeval.unigram_perplexity(tokenizer)
    assert 1 < ppl < unigram / 5


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, ids):
            return type("Out", (), {"logits": torch.zeros(*ids.shape, 50) + self.w})()

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) % 50 for c in text]}

    ppl = qeval.perplexity(Uniform(), Tok(), text="abcdefgh" * 40, seq_len=64)
    assert ppl == pytest.approx(50, rel=1e-5)


def test_bad_split_and_short_text_are_rejected(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="unknown split"):
        qeval.perplexity(model, tokenizer, "dev")
    with pytest.raises(ValueError, match="fewer than one window"):
        qeval.perplexity(model, tokenizer, text="too short", seq_len=512)
    with pytest.raises(ValueError, match="at least 2"):
        qeval.windows(torch.arange(10), 1)


def test_model_size_counts_tied_weights_once_and_buffers(tiny):
    model, _ = tiny
    n = models.parameter_count(model)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # RoPE frequencies
    assert qeval.model_size_bytes(model) == 4 * n + buffers
    layer = nn.Linear(8, 4, bias=False)
    layer.register_buffer("packed", torch.zeros(16, dtype=torch.uint8))
    assert qeval.model_size_bytes(layer) == 8 * 4 * 4 + 16


def test_generation_is_greedy_and_deterministic(tiny):
    model, tokenizer = tiny
    a = qeval.generate(model, tokenizer, "import ", 12)
    b = qeval.generate(model, tokenizer, "import ", 12)
    assert a == b and len(a) > 0


def test_speed_and_memory_helpers_measure_something(tiny):
    model, tokenizer = tiny
    assert qeval.tokens_per_second(model, tokenizer, new_tokens=8, repeats=1) > 0
    result, peak = qeval.peak_memory(lambda: torch.ones(64, 1024, 1024).sum())
    assert result.item() == 64 * 1024 * 1024
    assert peak > 100 * 2**20  # a 256 MiB tensor was alive
    assert qeval.process_peak_rss() > 0
