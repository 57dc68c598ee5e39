"""Exercises of notebook 06: each check accepts a right answer and rejects typical mistakes."""
import numpy as np

from qcourse.exercises import ex06

TYPES = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q2_K": (256, 84), "Q3_K": (256, 110),
         "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}  # ggml's block layouts


def verdict(question, answer):
    return question.check(answer).status


def q8(x, *, divisor=127, to_half=True, rounding="away"):
    """A learner's Q8_0 block, with switches for the usual mistakes."""
    d = np.float32(np.abs(x).max() / divisor)
    inv = np.float32(1 / d) if d else np.float32(0)
    v = x * inv
    if rounding == "away":
        q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    elif rounding == "even":
        q = np.round(v)
    else:
        q = np.trunc(v)
    return (float(np.float16(d)) if to_half else float(d)), q.astype(np.int8)


def test_q8_0_block_verdicts():
    q = ex06.q8_0_block
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, q8) == "correct"
    assert verdict(q, lambda x: q8(x, divisor=128)) == "wrong"
    assert verdict(q, lambda x: q8(x, to_half=False)) == "wrong"     # d kept in float32
    assert verdict(q, lambda x: q8(x, rounding="trunc")) == "wrong"
    assert verdict(q, lambda x: q8(x)[1]) == "wrong"                  # q only


def test_q4_k_bits_per_weight_verdicts():
    q = ex06.q4_k_bits_per_weight
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, 4.5) == "correct"
    assert verdict(q, 4.0) == "wrong"        # forgot scales and mins
    assert verdict(q, 4.0 + 16 / 256) == "wrong"   # forgot the 6-bit scales


def test_file_bytes_verdicts():
    q = ex06.file_bytes
    assert verdict(q, ...) == "not attempted"
    right = lambda ts: sum(n // TYPES[t][0] * TYPES[t][1] for n, t in ts)  # noqa: E731
    assert verdict(q, right) == "correct"
    assert verdict(q, lambda ts: sum(n // 2 for n, t in ts)) == "wrong"           # 4 bits, no scales
    assert verdict(q, lambda ts: sum(int(n * 4.5 / 8) for n, t in ts)) == "wrong"  # one bpw for all
