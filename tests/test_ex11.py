"""Exercises of notebook 11: each check accepts a right answer and rejects typical mistakes."""
import math

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
