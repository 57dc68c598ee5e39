import pytest
import torch

from qcourse.exercises import ex02


def verdict(question, answer):
    return question.check(answer).status


def test_layer_bytes_verdicts():
    q = ex02.layer_bytes

    def right(n, k, bits, group_size):
        groups = k // (group_size or k)
        return n * k * bits // 8 + n * groups * bits // 8 + 2 * n * groups + 4 * k

    assert verdict(q, ...) == "not attempted"
    assert verdict(q, right) == "correct"
    assert verdict(q, lambda n, k, b, g: n * k * b // 8) == "wrong"                # weights only
    assert verdict(q, lambda n, k, b, g: right(n, k, b, g) - 4 * k) == "wrong"    # forgot g_idx
    assert verdict(q, lambda n, k, b, g: right(n, k, b, g)
                   + 2 * n * (k // (g or k))) == "wrong"                           # fp32 scales
    assert verdict(q, lambda n, k, b, g: n * k * b // 8 + 2 * n * (k // g) + 4 * k) == "wrong"


def test_quantize_tokens_verdicts():
    q = ex02.quantize_tokens

    def right(x):
        scale = x.abs().amax(dim=1, keepdim=True) / 127
        return torch.round(x / scale).clamp(-128, 127).to(torch.int8), scale

    def per_feature(x):  # wrong axis: one scale per input feature
        scale = x.abs().amax(dim=0, keepdim=True) / 127
        return torch.round(x / scale).to(torch.int8), scale

    def truncating(x):  # floor instead of round
        scale = x.abs().amax(dim=1, keepdim=True) / 127
        return torch.floor(x / scale).to(torch.int8), scale

    def over_128(x):  # 2^7 instead of 2^7 - 1
        scale = x.abs().amax(dim=1, keepdim=True) / 128
        return torch.round(x / scale).clamp(-128, 127).to(torch.int8), scale

    assert verdict(q, right) == "correct"
    assert verdict(q, per_feature) == "wrong"
    assert verdict(q, truncating) == "wrong"
    assert verdict(q, over_128) == "wrong"
    assert verdict(q, lambda x: ...) == "not attempted"


def test_outlier_columns_verdicts():
    q = ex02.outlier_columns
    assert verdict(q, lambda x, t: x.abs().amax(dim=0) > t) == "correct"
    assert verdict(q, lambda x, t: x.amax(dim=0) > t) == "wrong"           # forgot abs
    assert verdict(q, lambda x, t: x.abs().amax(dim=1) > t) == "wrong"     # per token
    assert verdict(q, lambda x, t: x.abs().mean(dim=0) > t) == "wrong"     # mean, not max


def test_smoothing_verdicts():
    q = ex02.smoothing

    def right(act, w, alpha):
        return act ** alpha / w.abs().amax(dim=0) ** (1 - alpha)

    assert verdict(q, right) == "correct"
    assert verdict(q, lambda a, w, al: a ** (1 - al) / w.abs().amax(0) ** al) == "wrong"  # swapped
    assert verdict(q, lambda a, w, al: a ** al / w.abs().amax(1) ** (1 - al)) == "wrong"  # axis
    assert verdict(q, lambda a, w, al: a ** al / w.amax(0) ** (1 - al)) == "wrong"       # no abs
    assert verdict(q, lambda a, w, al: w.abs().amax(0) ** (1 - al) / a ** al) == "wrong"  # inverted


# --- 02.3 the clipping search ------------------------------------------------------------------

def best_clip(x, bits, ratios, *, order=sorted, reverse=True, strict=True, metric="sum"):
    """A learner's search, with switches for the usual mistakes."""
    from qcourse.quant import fake_quantize
    best = best_err = None
    for r in order(ratios, reverse=reverse):
        fq = fake_quantize(x, bits, symmetric=True, granularity="tensor", clip_ratio=r)
        err = (x - fq).pow(2).sum().item() if metric == "sum" else (x - fq).abs().max().item()
        if best_err is None or (err < best_err if strict else err <= best_err):
            best, best_err = r, err
    return best


def test_best_clip_ratio_verdicts():
    q = ex02.best_clip_ratio
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, best_clip) == "correct"
    assert verdict(q, lambda x, b, r: best_clip(x, b, r, reverse=False)) == "wrong"  # ties: smaller
    assert verdict(q, lambda x, b, r: best_clip(x, b, r, order=lambda v, reverse: list(v),
                                                strict=True)) == "wrong"   # given order: tie wrong
    assert verdict(q, lambda x, b, r: best_clip(x, b, r, metric="max")) == "wrong"   # max error
    assert verdict(q, lambda x, b, r: min(r)) == "wrong"                 # "clip as much as possible"
    assert verdict(q, lambda x, b, r: 1.0) == "wrong"                    # never clip


def test_the_clip_cases_make_clipping_matter():
    ratios = [ex02._clip_reference(*case) for case in ex02._clip_cases()]
    assert ratios[0] < 1 and ratios[1] == 1.0          # 3 bits clips the outlier, 8 bits does not
    assert ratios[3] == 1.0                             # the all-zero tie keeps the largest


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    from qcourse import calib, layers, quant, smoothquant
    from qcourse.eval import model_size_bytes
    from qcourse.layers import QuantLinear

    cheats = [
        (ex02.layer_bytes, lambda n, k, b, g: model_size_bytes(QuantLinear(k, n, b, g))),
        (ex02.quantize_tokens, layers.quantize_per_token),
        (ex02.quantize_tokens, lambda x: quant.quantize(x, 8, symmetric=True,
                                                        granularity="channel", axis=0)[:2]),
        (ex02.outlier_columns, lambda x, t: layers.outlier_features(x, t)),
        (ex02.outlier_columns, lambda x, t: calib.ActivationStats(
            x.abs().amax(0), x.abs().mean(0), x.pow(2).mean(0), x.shape[0]).outlier_channels(t)),
        (ex02.smoothing, lambda a, w, al: smoothquant.smoothing_scales(a, [w], al)),
        (ex02.best_clip_ratio, lambda x, b, r: calib.mse_clip_ratio(
            x, b, symmetric=True, granularity="tensor", ratios=r).item()),
    ]
    for question, answer in cheats:
        result = question.judge(answer)
        assert result.status == "wrong" and "course's own" in result.message, question.name


# --- predictions, hints ------------------------------------------------------------------------

def test_prediction_verdicts():
    assert verdict(ex02.two_bit_rtn, "b") == "correct"
    assert verdict(ex02.two_bit_rtn, "c") == "wrong"     # notebook 00's symmetric 3 levels
    assert verdict(ex02.outlier_layer, "d") == "correct"
    assert verdict(ex02.outlier_layer, "a") == "wrong"


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex02, {"torch": torch}, only_with_cases=True)


@pytest.mark.slow
def test_the_predictions_match_the_notebooks_measurements(tiny):
    import copy

    from qcourse import calib, data, ptq
    from qcourse import eval as ev

    model, tok = tiny
    fp32 = ev.perplexity(model, tok, "test", max_windows=8)
    two_bit = ev.perplexity(ptq.quantize_rtn(copy.deepcopy(model), 2, "channel"), tok, "test",
                            max_windows=8)
    assert 1.05 <= two_bit / fp32 <= 1.5                               # two_bit_rtn: b
    stats = calib.collect_activation_stats(model, data.calibration_samples(tok, 8, 256, seed=0))
    for i in range(model.config.num_hidden_layers):
        ratio = {name.rsplit(".", 1)[-1]: (s.absmax.max() / s.absmax.median()).item()
                 for name, s in stats.items() if name.startswith(f"model.layers.{i}.")}
        assert max(ratio, key=ratio.get) == "down_proj", ratio        # outlier_layer: d


def test_prompts_ask_for_thought_not_a_formula_to_transcribe():
    """Issue 25: no prompt states the formula; the notebook's text and hints lead to it."""
    assert "127" not in ex02.quantize_tokens.prompt
    assert "^alpha /" not in ex02.smoothing.prompt and "P_j" in ex02.smoothing.prompt
    assert "> threshold" not in ex02.outlier_columns.prompt
    assert "per output row and group" not in ex02.layer_bytes.prompt
