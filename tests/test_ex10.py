import pytest
import torch

from qcourse.diagnose import check_gguf
from qcourse.exercises import ex10


def verdict(question, answer):
    return question.check(answer).status


def test_outlier_channels_verdicts():
    q = ex10.outlier_channels
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda a, k: torch.nonzero(a > k * a.median()).flatten()) == "correct"
    assert verdict(q, lambda a, k: torch.where(a > k * a.median())[0]) == "correct"
    # the mean is pulled up by the outliers themselves
    assert verdict(q, lambda a, k: torch.nonzero(a > k * a.mean()).flatten()) == "wrong"
    # only the largest channel
    assert verdict(q, lambda a, k: a.argmax().reshape(1)) == "wrong"
    # an absolute threshold, as LLM.int8()'s 6.0, instead of k times the median
    assert verdict(q, lambda a, k: torch.nonzero(a > k).flatten()) == "wrong"
    # the mask instead of the indices
    assert verdict(q, lambda a, k: a > k * a.median()) == "wrong"


def test_outlier_channels_uses_the_median_case():
    # the skewed hidden case: 11 channels at 5 over a median of 1 are all outliers at k = 4
    absmax, k = ex10.outlier_channels.cases()[-1]
    assert ex10.outlier_channels.reference(absmax, k).tolist() == list(range(20, 31))


def test_choose_alpha_verdicts():
    q = ex10.choose_alpha

    def right(sweep):
        best = min(sweep.values())
        return min(a for a, v in sweep.items() if v <= 1.01 * best)

    assert verdict(q, right) == "correct"
    assert verdict(q, lambda s: min(s, key=s.get)) == "wrong"              # plain argmin
    assert verdict(q, lambda s: max(s)) == "wrong"                         # most migration
    first = lambda s: next(a for a, v in s.items() if v <= 1.01 * min(s.values()))  # noqa: E731
    assert verdict(q, first) == "wrong"                                    # assumes sorted keys
    assert verdict(q, lambda s: ...) == "not attempted"


def test_corrupted_gguf_verdicts():
    q = ex10.corrupted_gguf
    assert verdict(q, "c") == "correct"
    assert verdict(q, " C ") == "correct"
    assert verdict(q, "a") == "wrong"
    assert verdict(q, "b") == "wrong"
    assert verdict(q, "d") == "wrong"
    assert verdict(q, 3) == "wrong"
    assert verdict(q, ...) == "not attempted"


def test_breaking_layer_needs_a_name():
    q = ex10.breaking_layer
    assert verdict(q, ...) == "not attempted"


@pytest.mark.slow
def test_breaking_layer_is_the_most_sensitive_at_two_bits():
    q = ex10.breaking_layer
    answer = q.reference()
    assert answer.startswith("model.layers.") and answer.endswith("_proj")
    assert verdict(q, answer) == "correct"
    assert verdict(q, "model.layers.5.mlp.down_proj" if answer != "model.layers.5.mlp.down_proj"
                   else "model.layers.0.self_attn.q_proj") == "wrong"


@pytest.mark.slow
def test_the_suspect_files_hold_exactly_one_broken_file(tiny, tmp_path):
    model, tokenizer = tiny
    files = ex10.gguf_suspects(model, tokenizer, tmp_path)
    diffs = {letter: check_gguf(path, model, tokenizer)["max_logit_diff"]
             for letter, path in files.items()}
    broken = ex10.corrupted_gguf.reference()
    assert diffs[broken] > 1.0
    assert all(d < 0.5 for letter, d in diffs.items() if letter != broken)
