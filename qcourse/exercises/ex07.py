"""Exercises of notebook 07: reading a packed int32 word, bytes moved by a GEMV, the roofline."""
from __future__ import annotations

import torch

from qcourse.exercises import Question
from qcourse.kernels import roofline
from qcourse.kernels.layout import dequantize_w4a16


def _unpack_word_reference(word: int, scale: float, zero: float) -> list[float]:
    """The kernel's dequantization of one word, through the package's own unpacking."""
    qweight = torch.tensor([[word]], dtype=torch.int32)              # one word: K = 8, N = 1
    as_fp32 = torch.tensor([[scale]]), torch.tensor([[zero]])
    return dequantize_w4a16(qweight, *as_fp32, group_size=8)[0].tolist()


def _unpack_word_cases() -> list[tuple]:
    return [(0x76543210, 1.0, 0.0),              # nibble j holds j
            (0x01234567, 0.5, 0.0),
            (-1, 0.25, 8.0),                     # 0xFFFFFFFF: every nibble 15, sign bit set
            (-2023406815, 0.1, 3.0),             # 0x87654321 as a signed int32
            (0x0F0F0F0F, 2.0, 15.0),
            (305419896, 0.03125, 7.0)]           # 0x12345678


def _gemv_bytes_reference(n: int, k: int, group_size: int) -> int:
    return roofline.bytes_w4a16(1, n, k, group_size)


def _memory_bound_reference(m: int, n: int, k: int, bandwidth_gbs: float, tflops: float) -> bool:
    intensity = roofline.matmul_flops(m, n, k) / roofline.bytes_fp16(m, n, k)
    return intensity < tflops * 1e12 / (bandwidth_gbs * 1e9)


unpack_word = Question(
    name="07.1 unpack_word",
    prompt="Write unpack_word(word, scale, zero) -> list of 8 floats: the 8 weights one int32 "
           "word of qweight stands for. Nibble j (bits 4j..4j+3, j = 0 lowest) holds q_j; "
           "w_j = (q_j - zero) * scale. `word` is a Python int as torch prints an int32 "
           "(it may be negative).",
    reference=_unpack_word_reference,
    cases=_unpack_word_cases,
    hint_text="q_j = (word >> (4 * j)) & 0xF. In Python, & 0xF also works for negative ints "
              "(two's complement), so the sign bit needs no special care.",
    solution_text="def unpack_word(word, scale, zero):\n"
                  "    return [(((word >> (4 * j)) & 0xF) - zero) * scale for j in range(8)]",
)

gemv_bytes = Question(
    name="07.2 gemv_bytes",
    prompt="Write gemv_bytes(n, k, group_size) -> int: the bytes a W4A16 matrix-vector product "
           "y[N] = W'[N, K] x[K] must move at least once: the 4-bit codes, one fp16 scale and "
           "one fp16 zero point per group of group_size inputs and per output, x in fp16 "
           "(read) and y in fp16 (written).",
    reference=_gemv_bytes_reference,
    cases=lambda: [(8, 16, 8), (4096, 4096, 128), (14336, 4096, 128), (4096, 14336, 64),
                   (256, 768, 32)],
    hint_text="Codes: N·K/2 bytes. Scales and zeros: (K/g)·N values each, 2 bytes each. "
              "x: 2K bytes, y: 2N bytes.",
    solution_text="def gemv_bytes(n, k, group_size):\n"
                  "    return n * k // 2 + 2 * 2 * (k // group_size) * n + 2 * k + 2 * n",
)

memory_bound = Question(
    name="07.3 memory_bound",
    prompt="Write memory_bound(m, n, k, bandwidth_gbs, tflops) -> bool: whether an fp16 linear "
           "y[M, N] = x[M, K] W[N, K]^T is memory-bound on a GPU with that peak bandwidth "
           "(GB/s) and fp16 peak (TFLOPS): its arithmetic intensity (FLOPs / bytes of W, x and "
           "y, 2 bytes each) is below the ridge point peak_flops / peak_bandwidth.",
    reference=_memory_bound_reference,
    cases=lambda: [(1, 4096, 4096, 3350, 989), (256, 4096, 4096, 3350, 989),
                   (320, 4096, 4096, 3350, 989),     # intensity 277 < ridge 295: still memory
                   (4096, 4096, 4096, 3350, 989), (64, 4096, 4096, 300, 121),
                   (512, 14336, 4096, 4800, 989), (340, 4096, 4096, 3350, 989),
                   (512, 4096, 4096, 3350, 989)],                  # 410: compute-bound
    hint_text="FLOPs = 2·M·N·K. Bytes = 2·N·K + 2·M·K + 2·M·N. Ridge = tflops·1e12 / "
              "(bandwidth_gbs·1e9) FLOP/byte. Memory-bound when FLOPs/bytes < ridge.",
    solution_text="def memory_bound(m, n, k, bandwidth_gbs, tflops):\n"
                  "    intensity = 2 * m * n * k / (2 * n * k + 2 * m * k + 2 * m * n)\n"
                  "    return intensity < tflops * 1e12 / (bandwidth_gbs * 1e9)",
)
