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


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    import torch

    from qcourse import pack
    from qcourse.kernels import roofline
    from qcourse.kernels.layout import dequantize_w4a16

    def unpack_through_layout(word, scale, zero):
        qweight = torch.tensor([[word]], dtype=torch.int32)
        return dequantize_w4a16(qweight, torch.tensor([[scale]]), torch.tensor([[zero]]), 8)[0]\
            .tolist()

    def unpack_through_pack(word, scale, zero):
        q = pack.unpack_int32(torch.tensor([word], dtype=torch.int32), 4)
        return ((q.float() - zero) * scale).tolist()

    cheats = [(ex07.unpack_word, unpack_through_layout),
              (ex07.unpack_word, unpack_through_pack),
              (ex07.gemv_bytes, lambda n, k, g: roofline.bytes_w4a16(1, n, k, g)),
              (ex07.memory_bound, lambda m, n, k, bw, tf: roofline.matmul_flops(m, n, k)
               / roofline.bytes_fp16(m, n, k) < tf * 1e12 / (bw * 1e9))]
    for question, answer in cheats:
        result = question.judge(answer)
        assert result.status == "wrong" and "course's own" in result.message, question.name


# --- predictions, hints ------------------------------------------------------------------------

OLD_RUN = "kernels-nvidia-h100-80gb-hbm3-2026-11-27.json"   # the first kernels, timed on an H100


def test_the_kernel_prediction_matches_the_recorded_gpu_run():
    import json
    import pathlib

    results = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    run = json.loads((results / OLD_RUN).read_text())
    (row,) = [r for r in run["rows"] if r["kernel"] == "w4a16_triton" and r["M"] == 1
              and (r["N"], r["K"]) == (4096, 4096)]
    assert row["speedup_vs_fp16"] < 1                                  # kernel_vs_fp16: d
    assert verdict(ex07.kernel_vs_fp16, "d") == "correct"
    assert verdict(ex07.kernel_vs_fp16, "a") == "wrong"


def test_the_word_loads_question_reads_the_first_kernel_as_it_is():
    import inspect

    from qcourse.kernels import triton_w4a16_v1

    source = inspect.getsource(triton_w4a16_v1.w4a16_gemm_kernel.fn)
    assert "qweight_ptr + (ks // 8)[:, None] * N" in source   # one load per k, 8 k per word
    assert verdict(ex07.gemm_word_loads, 8) == "correct"
    assert verdict(ex07.gemm_word_loads, 1) == "wrong"          # "each word once"
    assert verdict(ex07.gemm_word_loads, 4) == "wrong"


def test_the_old_gemv_prediction_is_what_the_counter_measures():
    from qcourse.kernels.w4a16_traffic import requested_bytes

    measured = requested_bytes("old", 1, 256, 1024, 128, sms=4, sample=False).weight_ratio
    assert abs(ex07.old_gemv_ratio.reference() - measured) < 1e-9
    assert verdict(ex07.old_gemv_ratio, ...) == "not attempted"
    assert verdict(ex07.old_gemv_ratio, 1.88) == "correct"
    assert verdict(ex07.old_gemv_ratio, (4 + 4) / (4 + 4 / 16)) == "correct"
    assert verdict(ex07.old_gemv_ratio, 1.0) == "wrong"         # "each word once: no waste"
    assert verdict(ex07.old_gemv_ratio, 16) == "wrong"          # the scales' ratio alone
    assert verdict(ex07.old_gemv_ratio, 15.06) == "wrong"       # the GEMM's ratio
    assert verdict(ex07.old_gemv_ratio, (4 + 2) / (4 + 2 / 16)) == "wrong"   # zero forgotten


def test_questions_are_numbered_in_order_of_appearance():
    import pathlib
    import re

    source = (pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "src" /
              "07_kernels.py").read_text()
    order = re.findall(r"ex07\.(\w+)\.check\(", source)
    numbers = [getattr(ex07, name).name.split()[0] for name in order]
    assert numbers == [f"07.{i}" for i in range(1, len(order) + 1)] and len(order) == 6


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex07, {})
