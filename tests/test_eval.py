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


def large_vocabulary_llama(vocab: int = 20_000, tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=tie)
    return LlamaForCausalLM(config).eval()


def test_a_large_vocabulary_is_scored_through_the_sliced_head_with_the_same_numbers():
    """SmolLM2's case (a window's logits above SLICE_ABOVE): the head applied 128 positions at
    a time gives each window's NLL as the whole window's logits do, to the last bit here."""
    from qcourse.evaluation import scoring

    model = large_vocabulary_llama()
    assert 4 * 512 * 20_000 > scoring.SLICE_ABOVE
    assert scoring.sliced_head(model, 512) == (model.model, model.lm_head)
    ids = torch.randint(0, 20_000, (3, 512), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = torch.cat([scoring.window_nll(model(w[None]).logits, w[None]) for w in ids])
    sliced = scoring.nll_per_window(model, ids, batch_size=2)
    assert sliced.shape == (3,)
    torch.testing.assert_close(sliced, whole, rtol=1e-6, atol=1e-4)
    # an uneven last slice (T - 1 = 299 predictions: 128 + 128 + 43) scores every position once
    short = ids[:, :300]
    with torch.no_grad():
        expected = scoring.window_nll(model(short).logits, short)
    torch.testing.assert_close(scoring.sliced_window_nll(model.model, model.lm_head, short),
                               expected, rtol=1e-6, atol=1e-4)


def test_the_head_is_not_sliced_for_small_vocabularies_short_windows_or_hooked_models(tiny):
    from qcourse.evaluation import scoring

    model, _ = tiny
    assert scoring.sliced_head(model, 512) is None                   # V = 4,096: 8 MiB a window
    big = large_vocabulary_llama()
    assert scoring.sliced_head(big, 64) is None                      # 5 MiB of logits
    handle = big.register_forward_hook(lambda module, args, out: out)
    try:
        assert scoring.sliced_head(big, 512) is None                 # slicing would bypass it
    finally:
        handle.remove()
    assert scoring.sliced_head(lambda ids: ids, 512) is None         # a plain callable
