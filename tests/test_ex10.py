import pytest
import torch

from qcourse.diagnose import compare_gguf_to_model
from qcourse.exercises import ex10


def verdict(question, answer):
    return question.check(answer).status


def test_typical_channel_verdicts():
    q = ex10.typical_channel
    assert verdict(q, "b") == "correct"          # mean 3.97 x 6 = 23.8 > 20; median 1 x 6 = 6
    assert verdict(q, " B ") == "correct"
    assert verdict(q, "a") == "wrong"            # both flag the 40: the mean's pull forgotten
    assert verdict(q, "c") == "wrong"            # the two statistics swapped
    assert verdict(q, ...) == "not attempted"


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
    # "at least" instead of "more than": a channel exactly at k x median is not an outlier
    assert verdict(q, lambda a, k: torch.nonzero(a >= k * a.median()).flatten()) == "wrong"


def test_outlier_channels_uses_the_median_case():
    # the skewed hidden case: 11 channels at 5 over a median of 1 are all outliers at k = 4
    absmax, k = ex10.outlier_channels.cases()[-2]
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
    largest_tied = lambda s: max(a for a, v in s.items() if v <= 1.01 * min(s.values()))  # noqa: E731
    assert verdict(q, largest_tied) == "wrong"                             # the wrong end
    assert verdict(q, lambda s: ...) == "not attempted"


def test_breaking_choice_sorts_layer_names():
    assert ex10.breaking_choice("model.layers.0.self_attn.v_proj", 5) == "b"
    assert ex10.breaking_choice("model.layers.0.mlp.down_proj", 5) == "b"
    assert ex10.breaking_choice("model.layers.3.self_attn.k_proj", 5) == "a"
    assert ex10.breaking_choice("model.layers.2.mlp.up_proj", 5) == "c"
    assert ex10.breaking_choice("model.layers.5.mlp.down_proj", 5) == "d"
    assert ex10.breaking_choice("model.layers.3.mlp.down_proj", 5) is None


def test_prediction_verdicts():
    assert verdict(ex10.real_collapse, "d") == "correct"
    assert verdict(ex10.real_collapse, "b") == "wrong"     # what qcourse-tiny suggests
    assert verdict(ex10.real_collapse, ...) == "not attempted"
    assert verdict(ex10.breaking_layer, ...) == "not attempted"


def test_gguf_reading_verdicts():
    q = ex10.gguf_reading
    answer = q.reference()
    assert ex10.ASSIGNMENTS[answer] == {"x": "Q8_0", "y": "broken", "z": "F16"}
    assert verdict(q, answer) == "correct"
    swapped = next(k for k, a in ex10.ASSIGNMENTS.items()
                   if a == {"x": "F16", "y": "broken", "z": "Q8_0"})
    assert verdict(q, swapped) == "wrong"                  # the broken file right, F16/Q8_0 not
    assert verdict(q, "g") == "wrong"
    assert verdict(q, ...) == "not attempted"
    assert len(q.choices) == 6 and len(set(q.choices.values())) == 6


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex10, {"torch": torch}, only_with_cases=True)


@pytest.mark.slow
def test_breaking_layer_is_block_0_value_output_or_down():
    name = ex10.most_sensitive_layer()
    assert name.startswith("model.layers.0.") and name.endswith(("v_proj", "o_proj", "down_proj"))
    assert verdict(ex10.breaking_layer, "b") == "correct"
    assert verdict(ex10.breaking_layer, "a") == "wrong"


@pytest.mark.slow
def test_the_suspect_files_are_what_the_exercise_says(tiny, tmp_path):
    model, tokenizer = tiny
    files = ex10.gguf_suspects(model, tokenizer, tmp_path)
    diffs = {f: compare_gguf_to_model(path, model, tokenizer)["max_logit_diff"]
             for f, path in files.items()}
    roles = ex10.ASSIGNMENTS[ex10.gguf_reading.reference()]
    by_role = {role: diffs[f] for f, role in roles.items()}
    assert by_role["F16"] < by_role["Q8_0"] < 0.5 < 1.0 < by_role["broken"]


@pytest.mark.slow
def test_real_collapse_matches_a_measurement():
    from qcourse import evaluation, models, ptq
    from qcourse.models import smollm2

    if not smollm2.available():
        pytest.skip(smollm2.INSTALL)
    model, tokenizer = models.load(smollm2.NAME)
    one = evaluation.Protocol("first window", 1)
    float_ppl = evaluation.score(model, tokenizer, one, batch_size=1).perplexity
    ptq.quantize_rtn(model, 2, "group", 64)
    two_bit = evaluation.score(model, tokenizer, one, batch_size=1).perplexity
    assert two_bit / float_ppl > 1000                                  # real_collapse: d
