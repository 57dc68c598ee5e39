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
