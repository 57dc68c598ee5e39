"""Exercises of notebook 07, in order of appearance: the roofline test, the bytes a GEMV must
move, reading a packed int32 word, predicting what the first kernels asked memory for (then
measured by the byte counter), and reading the recorded GPU run of those kernels."""
from __future__ import annotations

import torch

from qcourse import pack
from qcourse.exercises import Question
from qcourse.kernels import reference, roofline
from qcourse.kernels.checks import PACK
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


def _gemm_word_loads() -> float:
    """How often the first GEMM kernel's tile step loads each int32 word: its word address is
    ``ks // 8`` for ``ks`` = the BLOCK_K consecutive inputs of the step (any BLOCK_K)."""
    ks = torch.arange(64)                                   # one step of BLOCK_K = 64 inputs
    return ks.numel() / torch.unique(ks // PACK).numel()


def _old_gemv_ratio(group_size: int = 128) -> float:
    """Requested / ideal bytes of qweight + scales + zeros for the first GEMV, per word of 8
    weights: the word (4 bytes) once, a 2-byte scale and a 2-byte zero with every word, where
    the ideal needs them once per group (tests/test_ex07.py checks it against the counter)."""
    word, scale_and_zero = 4, 2 + 2
    return (word + scale_and_zero) / (word + scale_and_zero * PACK / group_size)


def _gemv_bytes_reference(n: int, k: int, group_size: int) -> int:
    return roofline.bytes_w4a16(1, n, k, group_size)


def _memory_bound_reference(m: int, n: int, k: int, bandwidth_gbs: float, tflops: float) -> bool:
    intensity = roofline.matmul_flops(m, n, k) / roofline.bytes_fp16(m, n, k)
    return intensity < tflops * 1e12 / (bandwidth_gbs * 1e9)


unpack_word = Question(
    name="07.3 unpack_word",
    prompt="Write unpack_word(word, scale, zero) -> list of 8 floats: the 8 weights one int32 "
           "word of qweight stands for. Nibble j (bits 4j..4j+3, j = 0 lowest) holds q_j; "
           "w_j = (q_j - zero) * scale. `word` is a Python int as torch prints an int32 "
           "(it may be negative).",
    reference=_unpack_word_reference,
    forbid=(dequantize_w4a16, pack.unpack_int32, pack.unpack_bits, reference.w4a16_reference),
    cases=_unpack_word_cases,
    hints=("Nibble j sits at bits 4j..4j+3: which shift brings it down to bits 0..3, and which "
           "mask keeps only those 4 bits?",
           "Bring nibble j down to the lowest bits, then keep only those 4 bits. Python's "
           "integers behave as two's complement under >> and &, so a negative word needs no "
           "special care; then apply the zero and scale."),
    solution_text="def unpack_word(word, scale, zero):\n"
                  "    return [(((word >> (4 * j)) & 0xF) - zero) * scale for j in range(8)]",
)

gemv_bytes = Question(
    name="07.2 gemv_bytes",
    prompt="Write gemv_bytes(n, k, group_size) -> int: the least number of bytes a W4A16 "
           "matrix-vector product y[N] = W'[N, K] x[K] must move, W' stored as 4-bit codes with "
           "an fp16 scale and an fp16 zero point per group of group_size inputs of each output, "
           "x read and y written in fp16.",
    reference=_gemv_bytes_reference,
    forbid=(roofline.bytes_w4a16, roofline.bytes_fp16, roofline.bytes_w8a8),
    cases=lambda: [(8, 16, 8), (4096, 4096, 128), (14336, 4096, 128), (4096, 14336, 64),
                   (256, 768, 32)],
    hints=("Four things cross the memory bus once each: the codes, the per-group metadata, x "
           "and y. Count the bytes of each.",
           "Codes: how many bytes per weight at 4 bits? Metadata: how many groups does one "
           "output have, and how many bytes does each group carry? x and y: how many values "
           "each, at 2 bytes?"),
    solution_text="def gemv_bytes(n, k, group_size):\n"
                  "    return n * k // 2 + 2 * 2 * (k // group_size) * n + 2 * k + 2 * n",
)

memory_bound = Question(
    name="07.1 memory_bound",
    prompt="Write memory_bound(m, n, k, bandwidth_gbs, tflops) -> bool: whether an fp16 linear "
           "y[M, N] = x[M, K] W[N, K]^T, reading W and x and writing y once (2 bytes per "
           "value), is memory-bound on a GPU with that peak bandwidth (GB/s) and fp16 peak "
           "(TFLOPS).",
    reference=_memory_bound_reference,
    forbid=(roofline.matmul_flops, roofline.bytes_fp16, roofline.roofline_seconds),
    cases=lambda: [(1, 4096, 4096, 3350, 989), (256, 4096, 4096, 3350, 989),
                   (320, 4096, 4096, 3350, 989),     # intensity 277 < ridge 295: still memory
                   (4096, 4096, 4096, 3350, 989), (64, 4096, 4096, 300, 121),
                   (512, 14336, 4096, 4800, 989), (340, 4096, 4096, 3350, 989),
                   (512, 4096, 4096, 3350, 989)],                  # 410: compute-bound
    hints=("Two ratios to compare: the kernel's FLOPs per byte, and the card's peak FLOP/s per "
           "peak byte/s. Mind the units (TFLOPS and GB/s).",
           "A multiply-add is 2 FLOPs per term of M·N·K; the bytes are those of W, x and y at 2 "
           "bytes each. For large M the x and y terms are what makes 'intensity ≈ M' wrong."),
    solution_text="def memory_bound(m, n, k, bandwidth_gbs, tflops):\n"
                  "    intensity = 2 * m * n * k / (2 * n * k + 2 * m * k + 2 * m * n)\n"
                  "    return intensity < tflops * 1e12 / (bandwidth_gbs * 1e9)",
)

kernel_vs_fp16 = Question(
    name="07.6 kernel_vs_fp16",
    prompt="Predict before section 9 shows the recorded run: on an H100, at M = 1 (decode), a "
           "4096×4096 layer, the course's first Triton W4A16 GEMV (the old kernels) compared "
           "with fp16 cuBLAS (F.linear) runs ...",
    choices={"a": "about 3.5 times faster, near the roofline bound",
             "b": "1.5 to 2.5 times faster", "c": "about as fast", "d": "slower"},
    reference=lambda: "d",  # the recorded JSON: x0.66 (tests/test_ex07.py reads it)
    hints=("The bound says what is possible if the kernel streams its 8.9 MB at the card's "
           "bandwidth. How much of the peak does a simple kernel reach?",
           "cuBLAS reaches about 40 % of the peak bandwidth on this shape (33.6 MB). Work out "
           "the time of a kernel moving 8.9 MB at 5, 10 or 20 % of the peak, and compare."),
    solution_text="kernel_vs_fp16 = 'd'   # recorded: x0.66 at M = 1",
)

gemm_word_loads = Question(
    name="07.4 gemm_word_loads",
    prompt="In the first GEMM kernel (triton_w4a16_v1.w4a16_gemm_kernel, section 4), one step "
           "loads `words` at qweight_ptr + (ks // 8) * N + cols for the BLOCK_K inputs ks of the "
           "step. How many times per step is each int32 word asked for? (a number; the byte "
           "counter measures it next)",
    reference=_gemm_word_loads,
    hints=("The address depends on the input k only through ks // 8. Does it change for every "
           "k of the step?",
           "Write out ks // 8 for ks = 0, 1, ..., 15 and count how often each value repeats."),
    solution_text="gemm_word_loads = 8   # once per nibble row: 8 loads of the same address",
)

old_gemv_ratio = Question(
    name="07.5 old_gemv_ratio",
    prompt="The first GEMV (section 4) loads each word once, but it loads `scale` and `zero` "
           "(fp16) at `group` for every word of its tile. With g = 128, predict requested / "
           "ideal for the bytes of qweight, scales and zeros together (a number; the next cell "
           "counts them).",
    reference=_old_gemv_ratio,
    rtol=0.02,
    hints=("Work per word (8 weights): the bytes the kernel asks for with it, and the bytes the "
           "ideal needs for those 8 weights, codes and their share of a group's scale and zero.",
           "A word is 4 bytes, and the kernel asks for a 2-byte scale and a 2-byte zero with "
           "each one. How many words share one group of 128 weights, and so what share of a "
           "scale and a zero does the ideal spend per word?"),
    solution_text="old_gemv_ratio = (4 + 4) / (4 + 4 / 16)   # = 1.88: x16 on scales and zeros",
)
