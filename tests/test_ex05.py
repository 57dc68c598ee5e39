import pytest
import torch

from qcourse.exercises import ex05
from qcourse.quant import fake_quantize


def verdict(question, answer):
    return question.check(answer).status


def test_awq_scale_verdicts():
    q = ex05.awq_scale

    def right(x_mean, alpha):
        s = x_mean ** alpha
        return s / torch.sqrt(s.max() * s.min())

    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda x, a: ...) == "not attempted"
    assert verdict(q, right) == "correct"
    assert verdict(q, lambda x, a: x ** a) == "wrong"                        # not normalised
    assert verdict(q, lambda x, a: x ** a / (x ** a).max()) == "wrong"       # normalised by max
    assert verdict(q, lambda x, a: right(x, 1 - a)) == "wrong"               # exponent swapped
    assert verdict(q, lambda x, a: 1 / right(x, a)) == "wrong"               # inverted


def test_fold_scale_verdicts():
    q = ex05.fold_scale
    assert verdict(q, lambda n, w, s: (n / s, w * s)) == "correct"
    assert verdict(q, lambda n, w, s: (n * s, w / s)) == "wrong"             # the wrong way round
    assert verdict(q, lambda n, w, s: (n / s, w * s[:, None])) == "wrong"    # scales output rows
    assert verdict(q, lambda n, w, s: (n, w * s)) == "wrong"                 # norm left alone
    assert verdict(q, ...) == "not attempted"


def test_scaled_quantization_verdicts():
    q = ex05.scaled_quantization
    kw = dict(symmetric=False, granularity="group")

    def right(w, s, bits, g):
        return fake_quantize(w * s, bits, group_size=g, **kw) / s

    assert verdict(q, right) == "correct"
    assert verdict(q, lambda w, s, b, g: fake_quantize(w * s, b, group_size=g, **kw)) == "wrong"
    assert verdict(q, lambda w, s, b, g: fake_quantize(w, b, group_size=g, **kw)) == "wrong"
    assert verdict(q, lambda w, s, b, g: fake_quantize(w * s, b, symmetric=True,
                                                       granularity="group", group_size=g) / s
                   ) == "wrong"                                              # symmetric grid
    assert verdict(q, lambda w, s, b, g: fake_quantize(w / s, b, group_size=g, **kw) * s
                   ) == "wrong"                                              # scaled down


def test_bits_per_weight_verdicts():
    q = ex05.bits_per_weight
    assert verdict(q, 4.15625) == "correct"
    assert verdict(q, 4 + 16 / 128) == "wrong"      # forgot the zero point
    assert verdict(q, 4.0) == "wrong"
    assert verdict(q, 4 + 32 / 128) == "wrong"      # fp16 zero point
    assert verdict(q, ...) == "not attempted"


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    from torch import nn

    from qcourse import awq, transforms

    def fold_through_package(norm_weight, weight, s):
        norm = nn.Module()
        norm.weight = nn.Parameter(norm_weight.clone())
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        linear.weight.data = weight.clone()
        transforms.fold_scale_into_norm(norm, [linear], s)
        return norm.weight.detach(), linear.weight.detach()

    cheats = [(ex05.awq_scale, lambda x, a: awq.awq_scales(x, a)),
              (ex05.fold_scale, fold_through_package)]
    for question, answer in cheats:
        result = question.judge(answer)
        assert result.status == "wrong" and "course's own" in result.message, question.name


# --- predictions, hints ------------------------------------------------------------------------

def test_prediction_verdicts():
    assert verdict(ex05.salient_recovery, "c") == "correct"
    assert verdict(ex05.salient_recovery, "a") == "wrong"      # the paper's effect, not this model's
    assert verdict(ex05.clipped_share, "d") == "correct"
    assert verdict(ex05.clipped_share, "a") == "wrong"


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex05, {"torch": torch})


@pytest.mark.slow
def test_the_predictions_match_the_notebooks_measurements(tiny):
    """Notebook 05: 4 calibration windows of 256, 16 test windows; block 1's down_proj."""
    import copy

    from qcourse import awq, blocks, calib, data
    from qcourse import eval as ev
    from qcourse.quant import QuantScheme

    model, tok = tiny
    samples = data.calibration_samples(tok, 4, 256, seed=0)
    stats = calib.collect_activation_stats(model, samples)
    ppl = lambda m: ev.perplexity(m, tok, "test", max_windows=16)  # noqa: E731
    fp32 = ppl(model)
    rtn = ppl(awq.keep_salient(copy.deepcopy(model), stats, fraction=0.0))
    kept = ppl(awq.keep_salient(copy.deepcopy(model), stats, fraction=0.01, by="activation"))
    assert (rtn - kept) / (rtn - fp32) < 0.10                          # salient_recovery: c
    inputs = blocks.capture_block_inputs(model, samples)
    block = model.model.layers[1]
    x = torch.cat(awq.capture_linear_inputs(block, inputs, ["mlp.down_proj"])["mlp.down_proj"])
    ratio = awq.search_clip(block.mlp.down_proj.weight, x.reshape(-1, 768), QuantScheme(3, 128))
    assert (ratio < 1).float().mean() > 0.75                           # clipped_share: d
