"""Exercises of notebook 11: each check accepts a right answer and rejects typical mistakes."""
import math

import pytest
import torch

from qcourse.exercises import ex11


def verdict(question, answer):
    return question.check(answer).status


def decode(nibble, scale, *, subnormal=True, bias=1, scale_bias=127, signed=True):
    """A learner's MXFP4 decoder, with switches for the usual mistakes."""
    sign = -1.0 if signed and nibble & 8 else 1.0
    E, M = (nibble >> 1) & 3, nibble & 1
    if E == 0 and subnormal:
        value = M / 2 * 2.0 ** (1 - bias)
    else:
        value = (1 + M / 2) * 2.0 ** (E - bias)
    return sign * value * 2.0 ** (scale - scale_bias)


def test_decode_mxfp4_verdicts():
    q = ex11.decode_mxfp4
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, decode) == "correct"
    assert verdict(q, lambda n, s: decode(n, s, subnormal=False)) == "wrong"  # 1.0 for code 0
    assert verdict(q, lambda n, s: decode(n, s, bias=0)) == "wrong"
    assert verdict(q, lambda n, s: decode(n, s, scale_bias=128)) == "wrong"
    assert verdict(q, lambda n, s: decode(n, s, signed=False)) == "wrong"
    assert verdict(q, lambda n, s: decode(n, s) / 2.0 ** (s - 127)) == "wrong"  # scale forgotten


def saved(layers, kv_heads, head_dim, tokens, batch, bits, group_size, *, kv=2, scale_bytes=2,
          quantized_only=False):
    values = kv * layers * kv_heads * head_dim * tokens * batch
    quantized = values * (bits / 8 + scale_bytes / group_size)
    return quantized if quantized_only else values * 2 - quantized


def test_kv_bytes_saved_verdicts():
    q = ex11.kv_bytes_saved
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, saved) == "correct"
    assert verdict(q, lambda *a: saved(*a, kv=1)) == "wrong"             # keys only
    assert verdict(q, lambda *a: saved(*a, scale_bytes=0)) == "wrong"    # scales are free
    assert verdict(q, lambda *a: saved(*a, quantized_only=True)) == "wrong"
    assert verdict(q, lambda L, H, D, T, B, b, g: saved(L, H, D, T, 1, b, g)) == "wrong"  # batch


def test_outlier_after_rotation_verdicts():
    q = ex11.outlier_after_rotation
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda M, D: (M / math.sqrt(D), math.sqrt(D), 1.0)) == "correct"
    assert verdict(q, lambda M, D: (M / D, math.sqrt(D), 1.0)) == "wrong"
    assert verdict(q, lambda M, D: (M, math.sqrt(D), 1.0)) == "wrong"          # no change
    assert verdict(q, lambda M, D: (M / math.sqrt(D), D, 1.0)) == "wrong"
    assert verdict(q, lambda M, D: M / math.sqrt(D)) == "wrong"                # not a tuple


# --- the prediction, hints, prompts ------------------------------------------------------------

def test_outlier_share_verdicts():
    q = ex11.outlier_share
    assert q.prediction
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, "c") == "correct"
    assert verdict(q, "b") == "wrong"


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex11, {"math": math, "torch": torch}, only_with_cases=True)


def test_the_decode_prompt_leaves_the_formula_to_the_learner():
    """Issue 25: the prompt asks for the value; the bias, subnormals and scale come from the
    notebook's section 1 (and the hints), not from the prompt."""
    prompt = ex11.decode_mxfp4.prompt
    assert "bias" not in prompt and "2^(" not in prompt and "subnormal" not in prompt


@pytest.mark.slow
def test_the_prediction_matches_the_notebooks_measurement(tiny):
    """outlier_share is 'c': notebook 11's cell, an outlier 100x the layer's mean |x| on channel
    17 of layer 3's gate_proj input, per-token symmetric 4 bits: the other channels all but
    vanish."""
    from qcourse import data
    from qcourse.quant import fake_quantize

    model, tok = tiny
    seen = {}
    hook = model.model.layers[3].mlp.gate_proj.register_forward_hook(
        lambda m, a, o: seen.update(x=a[0].detach()))
    with torch.no_grad():
        model(data.calibration_samples(tok, 1, 128, seed=2))
    hook.remove()
    x = seen["x"][0].clone()
    others = torch.arange(x.shape[1]) != 17
    x[:, 17] = 100 * seen["x"][0].abs().mean()
    rec = fake_quantize(x, 4, symmetric=True, granularity="channel", axis=0)
    err = ((rec - x)[:, others].pow(2).sum() / x[:, others].pow(2).sum()).item()
    assert err > 0.9, err
