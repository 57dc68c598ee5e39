"""Exercises of notebook 06: one Q8_0 block by hand, the bits per weight of Q4_K, a file's size,
decoding a Q4_K super-block, the importance matrix, and predictions."""
from __future__ import annotations

import inspect

import numpy as np

from qcourse import calib
from qcourse.exercises import Question
from qcourse.gguf import BLOCK_SIZE, TYPE_SIZE, dequantize, imatrix, kquants, legacy, quantize
from qcourse.gguf import ggml, quants
from qcourse.gguf.mixes import file_size, tensor_size

Q4_K_DECODERS = (kquants.unpack_k4_scales, kquants.dequantize_q4_k, dequantize,
                 quants.dequantize, ggml.dequantize)


def _q8_0_block_reference(x: np.ndarray) -> tuple[float, np.ndarray]:
    """(d, q) of one Q8_0 block, read back from the package's block bytes: 2 bytes fp16 d, 32 int8."""
    block = quantize(np.asarray(x, dtype=np.float32)[None, :], "Q8_0")[0]
    return float(block[:2].view(np.float16)[0]), block[2:].view(np.int8).copy()


def _q8_0_cases() -> list[tuple]:
    rng = np.random.default_rng(6)
    outlier = rng.normal(size=32).astype(np.float32)
    outlier[7] = 40.0
    return [(np.linspace(-1, 1, 32, dtype=np.float32),),
            (rng.normal(size=32).astype(np.float32),),
            (outlier,),
            (np.zeros(32, dtype=np.float32),),
            ((rng.normal(size=32) * 1e-3).astype(np.float32),)]


def _scale_min_reference(scales: np.ndarray, j: int) -> tuple[int, int]:
    sc, m = kquants.unpack_k4_scales(np.asarray(scales, dtype=np.uint8)[None, :])
    return int(sc[0, j]), int(m[0, j])


def _scale_min_cases() -> list[tuple]:
    rng = np.random.default_rng(8)
    packed = rng.integers(0, 256, size=12, dtype=np.uint8)
    ones = np.full(12, 255, dtype=np.uint8)
    return [(packed, j) for j in range(8)] + [(ones, 0), (ones, 7),
                                              (kquants.pack_k4_scales(np.array([[1, 2, 3, 4, 50, 60, 61, 63]]),
                                                                      np.array([[5, 6, 7, 8, 33, 17, 48, 9]]))[0], 6)]


def _q4_k_reference(block: np.ndarray) -> np.ndarray:
    return kquants.dequantize_q4_k(np.asarray(block, dtype=np.uint8)[None, :])[0]


def _q4_k_cases() -> list[tuple]:
    rng = np.random.default_rng(9)
    rows = rng.normal(size=(3, 256)).astype(np.float32)
    rows[1] = rows[1] * 0.02 + 0.01                      # a real weight row: small, off-centre
    rows[2, :32] *= 8                                    # one loud sub-block
    made = quantize(rows, "Q4_K")                       # 3 blocks of 144 bytes
    odd = rng.integers(0, 256, size=144, dtype=np.uint8)  # arbitrary bytes, sane d and dmin
    odd[0:4] = np.array([0.01, 0.003], dtype=np.float16).view(np.uint8)
    return [(made[i],) for i in range(3)] + [(odd,)]


def _importance_reference(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) ** 2).mean(axis=0)


def _importance_cases() -> list[tuple]:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(50, 8)).astype(np.float32) * np.array([1, 1, 5, 1, 0.1, 1, 1, 20],
                                                               dtype=np.float32)
    return [(x,), (np.array([[1.0, -2.0], [3.0, 0.0]], dtype=np.float32),),
            (rng.normal(size=(7, 5)).astype(np.float32) + 3.0,)]      # not centred: x², not var


def _file_bytes_reference(tensors: list[tuple[int, str]]) -> int:
    return sum(tensor_size((n,), qtype) for n, qtype in tensors)


def _file_bytes_cases() -> list[tuple]:
    return [([(4096 * 4096, "Q4_K")],),
            ([(4096 * 4096, "Q8_0"), (4096, "F32")],),
            ([(32000 * 4096, "Q6_K"), (4096 * 11008, "Q4_K"), (4096 * 1024, "Q5_K")],),
            ([(256, "Q2_K"), (256, "Q3_K"), (256, "F16")],),
            ([(768 * 256, "Q5_0"), (768 * 256, "Q4_1")],)]


q8_0_block = Question(
    name="06.1 q8_0_block",
    prompt="Write q8_0_block(x) for a float32 array of 32 weights, returning (d, q) exactly as "
           "llama.cpp's quantize_row_q8_0 stores them: the block's scale d (as a Python float of "
           "the float16 it is stored in) and the 32 codes as an int8 array, on the symmetric grid "
           "-127..127 with no value clipped. Three details decide whether your bytes are "
           "llama.cpp's: how halves are rounded (C's roundf), whether the codes are computed "
           "before or after d is rounded to float16 (before), and an all-zero block.",
    reference=_q8_0_block_reference,
    forbid=(quantize, quants.quantize, legacy.quantize_q8_0, ggml.quantize),
    cases=_q8_0_cases,
    hints=("Which |x| of the block must land exactly on ±127 for nothing to clip? That fixes d. "
           "Compute the codes with the float32 d, and round d to float16 only for storage.",
           "np.round rounds halves to even, roundf rounds them away from zero: build that from "
           "the sign and the floor of |v| + 0.5. An all-zero block has d = 0: guard the "
           "division."),
    solution_text="def q8_0_block(x):\n"
                  "    d = np.float32(np.abs(x).max() / 127)\n"
                  "    inv = np.float32(1 / d) if d else np.float32(0)\n"
                  "    v = x * inv\n"
                  "    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)\n"
                  "    return float(np.float16(d)), q",
)

q4_k_bits_per_weight = Question(
    name="06.2 q4_k_bits_per_weight",
    prompt="A Q4_K super-block holds 256 weights: d and dmin (float16 each), 12 bytes of packed "
           "6-bit scales and mins (8 sub-blocks of 32 weights), and 4-bit quants. How many bits "
           "per weight is that? (a number)",
    reference=lambda: 8 * TYPE_SIZE["Q4_K"] / BLOCK_SIZE["Q4_K"],
    hints=("Count the bytes of one super-block field by field, then bits per weight = 8 × "
           "bytes / 256.",
           "Fields: two float16 (d, dmin), 12 bytes of scales and mins, and 256 codes of 4 "
           "bits each."),
    solution_text="q4_k_bits_per_weight = 8 * (2 + 2 + 12 + 128) / 256   # = 4.5",
)

file_bytes = Question(
    name="06.8 file_bytes",
    prompt="Write file_bytes(tensors) for a list of (number_of_weights, qtype) pairs, returning the "
           "bytes of tensor data a GGUF file holds for them. qcourse.gguf.BLOCK_SIZE[qtype] and "
           "qcourse.gguf.TYPE_SIZE[qtype] describe each type's block layout.",
    reference=_file_bytes_reference,
    forbid=(tensor_size, file_size, quants.bits_per_weight),
    cases=_file_bytes_cases,
    hints=("Each tensor is a whole number of blocks. How many blocks, and how many bytes each?",
           "BLOCK_SIZE is weights per block, TYPE_SIZE bytes per block (Q4_K: 256 weights in "
           "144 bytes; F32: one weight in 4 bytes). Do it per tensor, then add up."),
    solution_text="def file_bytes(tensors):\n"
                  "    return sum(n // BLOCK_SIZE[t] * TYPE_SIZE[t] for n, t in tensors)",
)

q4_k_scale_min = Question(
    name="06.3 q4_k_scale_min",
    prompt="Write q4_k_scale_min(scales, j) -> (sc, m): the 6-bit scale and 6-bit min of "
           "sub-block j (0..7) from the 12 packed bytes `scales` (a uint8 array) of a Q4_K "
           "super-block, llama.cpp's get_scale_min_k4. Layout: bytes 0-3 hold sc[0:4] in their "
           "low 6 bits, bytes 4-7 hold m[0:4] in their low 6 bits; for j >= 4, the low 4 bits "
           "of sc[j] and m[j] are the low and high nibble of byte j + 4, and their top 2 bits "
           "are the top 2 bits (bits 6-7) of byte j - 4 (for sc) and byte j (for m).",
    reference=_scale_min_reference,
    forbid=(kquants.unpack_k4_scales, kquants.dequantize_q4_k, dequantize, quants.dequantize),
    cases=_scale_min_cases,
    hints=("Two cases: j < 4 needs one mask per value; j >= 4 assembles each value from two "
           "bytes. Work with Python ints (int(scales[i])) so nothing wraps at 8 bits.",
           "For j >= 4 a value's 6 bits come in two pieces: its low 4 bits are a nibble of byte "
           "j + 4, its high 2 bits sit at bits 6-7 of another byte. Bring those 2 bits down to "
           "bits 0-1, move them above the nibble (bits 4-5), and combine."),
    solution_text=(
        "def q4_k_scale_min(scales, j):\n"
        "    q = [int(b) for b in scales]\n"
        "    if j < 4:\n"
        "        return q[j] & 63, q[j + 4] & 63\n"
        "    return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),\n"
        "            (q[j + 4] >> 4) | ((q[j] >> 6) << 4))"),
)

q4_k_decode = Question(
    name="06.4 q4_k_decode",
    prompt="Write q4_k_decode(block) -> float32 array of 256 weights from the 144 bytes of one "
           "Q4_K super-block: d = float16 at bytes 0-1, dmin = float16 at bytes 2-3 (little-"
           "endian), scales = bytes 4-15 (your q4_k_scale_min), qs = bytes 16-143. Weight i of "
           "sub-block j (32 weights each) is x = d·sc_j·q - dmin·m_j. The codes are stored in 4 "
           "chunks of 32 bytes, chunk c holding sub-blocks 2c and 2c+1: byte l of chunk c has "
           "weight l of sub-block 2c in its low nibble and weight l of sub-block 2c+1 in its "
           "high nibble. Compute in float32 (d·sc_j first, then times q, minus dmin·m_j).",
    reference=_q4_k_reference,
    forbid=Q4_K_DECODERS,
    cases=_q4_k_cases,
    rtol=1e-6,
    atol=1e-7,
    hints=("block[0:2].view(np.float16) reads d. Loop over the 8 sub-blocks: which chunk of "
           "qs holds sub-block j, and which nibble?",
           "Sub-block j lives in chunk c = j // 2 (bytes 16 + 32c .. 16 + 32c + 31), low nibble "
           "if j is even, high nibble if odd; then apply the formula with the (sc, m) of j."),
    solution_text=(
        "def q4_k_decode(block):\n"
        "    d = np.float32(block[0:2].view(np.float16)[0])\n"
        "    dmin = np.float32(block[2:4].view(np.float16)[0])\n"
        "    out = np.zeros(256, dtype=np.float32)\n"
        "    for j in range(8):\n"
        "        sc, m = q4_k_scale_min(block[4:16], j)\n"
        "        chunk = block[16 + 32 * (j // 2): 16 + 32 * (j // 2) + 32].astype(np.int32)\n"
        "        q = chunk & 0xF if j % 2 == 0 else chunk >> 4\n"
        "        out[32 * j: 32 * j + 32] = (d * np.float32(sc)) * q - dmin * np.float32(m)\n"
        "    return out"),
)

importance = Question(
    name="06.5 importance",
    prompt="Write importance(x) -> array [K]: the importance vector llama-imatrix records for a "
           "weight matrix, from the inputs x [T, K] its layer received (T tokens). It is the c "
           "for which sum_j (W_ij - Ŵ_ij)² · c_j equals the squared output error of row i "
           "averaged over the T tokens, once the cross terms between channels are dropped: "
           "derive it, then compute it.",
    reference=_importance_reference,
    forbid=(imatrix, inspect.unwrap(calib.collect_activation_stats)),
    cases=_importance_cases,
    rtol=1e-4,
    hints=("Write the output error on token t as sum_j Δ_j x_tj, square it, and average over t. "
           "Which terms are left once every product of two different channels is dropped?",
           "Each remaining term is Δ_j² times an average over the tokens of something that "
           "depends on channel j alone: one number per column of x. Nothing is subtracted "
           "from x first."),
    solution_text="def importance(x):\n    return (x.astype(np.float64) ** 2).mean(axis=0)",
)

imatrix_gain = Question(
    name="06.6 imatrix_gain",
    prompt="Predict before section 5 measures it: quantizing blk.2.ffn_down to Q2_K with the "
           "importance matrix instead of without will change the layer's relative output error "
           "(on calibration activations) by ...",
    choices={"a": "nothing measurable", "b": "5 to 25 % lower", "c": "about half",
             "d": "more than 3 times lower"},
    reference=lambda: "b",  # measured in the notebook: 14 % lower (tests/test_ex06.py re-measures)
    hints=("The format and the bits are the same; only the choice of scales and mins inside "
           "each sub-block changes. How much room does that leave?",
           "The weighting moves error from channels with little input energy to the others: "
           "a real gain at 2 bits, but the grid is as coarse as before."),
    solution_text="imatrix_gain = 'b'   # 0.186 -> 0.160 here",
)

first_to_hurt = Question(
    name="06.7 first_to_hurt",
    prompt="Predict before section 6: going down from Q8_0, which file type is the first whose "
           "perplexity (llama.cpp, the quick protocol's 8 test windows) is more than 1 % above "
           "F32?",
    choices={"a": "Q6_K", "b": "Q4_K_M", "c": "Q3_K_M", "d": "Q2_K"},
    reference=lambda: "d",  # measured in the notebook (tests/test_ex06.py re-measures it)
    hints=("Section 3's plot shows how the relative error of a weight matrix grows as the bits "
           "fall: where does it jump by the largest factor?",
           "A mix keeps the embedding/head and some attn_v and ffn_down at more bits than its "
           "base type, so each file's error sits a little below its base type's. Compare the "
           "errors of the base types with that of Q8_0 and Q6_K, which cost nothing measurable."),
    solution_text="first_to_hurt = 'd'   # Q2_K",
)
