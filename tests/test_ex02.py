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
