"""The checks of notebook 07's exercises accept right answers and reject typical wrong ones."""
from qcourse.exercises import ex07


def verdict(question, answer):
    return question.check(answer).status


def test_unpack_word_verdicts():
    q = ex07.unpack_word
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda w, s, z: [(((w >> (4 * j)) & 0xF) - z) * s for j in range(8)]) \
        == "correct"
    assert verdict(q, lambda w, s, z: [(((w & 0xFFFFFFFF) // 16**j) % 16 - z) * s
                                       for j in range(8)]) == "correct"
    # value 0 in the highest nibble (reversed order)
    assert verdict(q, lambda w, s, z: [(((w >> (4 * (7 - j))) & 0xF) - z) * s
                                       for j in range(8)]) == "wrong"
    assert verdict(q, lambda w, s, z: [((w >> (4 * j)) & 0xF) * s for j in range(8)]) == "wrong"
    assert verdict(q, lambda w, s, z: [((w >> (4 * j)) & 0xF) * s - z for j in range(8)]) \
        == "wrong"
    assert verdict(q, lambda w, s, z: [(((w >> (4 * j)) & 0x7) - z) * s for j in range(8)]) \
        == "wrong"                                                     # 3-bit mask
    assert verdict(q, lambda w, s, z: [(((w >> (8 * j)) & 0xF) - z) * s for j in range(8)]) \
        == "wrong"                                                     # bytes, not nibbles
    assert verdict(q, lambda w, s, z: [(((w >> (4 * j)) & 0xF) - z) * s for j in range(4)]) \
        == "wrong"                                                     # half the word


def test_gemv_bytes_verdicts():
    q = ex07.gemv_bytes
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda n, k, g: n * k // 2 + 4 * (k // g) * n + 2 * k + 2 * n) == "correct"
    assert verdict(q, lambda n, k, g: n * k // 2 + 2 * k + 2 * n) == "wrong"   # no scales/zeros
    assert verdict(q, lambda n, k, g: n * k // 2 + 2 * (k // g) * n + 2 * k + 2 * n) == "wrong"
    assert verdict(q, lambda n, k, g: n * k * 4 + 4 * (k // g) * n + 2 * k + 2 * n) == "wrong"
    assert verdict(q, lambda n, k, g: n * k // 2 + 4 * (k // g) * n) == "wrong"  # no x, y
    assert verdict(q, lambda n, k, g: 2 * n * k + 2 * k + 2 * n) == "wrong"      # fp16 weights


def test_memory_bound_verdicts():
    q = ex07.memory_bound
    assert verdict(q, ...) == "not attempted"

    def right(m, n, k, bw, tf):
        return 2 * m * n * k / (2 * n * k + 2 * m * k + 2 * m * n) < tf * 1e12 / (bw * 1e9)

    assert verdict(q, right) == "correct"
    assert verdict(q, lambda m, n, k, bw, tf: not right(m, n, k, bw, tf)) == "wrong"
    # intensity ~ M (weight bytes only): wrong near the ridge point
    assert verdict(q, lambda m, n, k, bw, tf: m < tf * 1e12 / (bw * 1e9)) == "wrong"
    assert verdict(q, lambda m, n, k, bw, tf: True) == "wrong"          # "decode is memory-bound"
    # forgot the factor 2 in FLOPs
    assert verdict(q, lambda m, n, k, bw, tf: m * n * k / (2 * n * k + 2 * m * k + 2 * m * n)
                   < tf * 1e12 / (bw * 1e9)) == "wrong"
