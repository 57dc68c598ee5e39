"""Exercises of notebook 06: one Q8_0 block by hand, the bits per weight of Q4_K, a file's size."""
from __future__ import annotations

import numpy as np

from qcourse.exercises import Question
from qcourse.gguf import BLOCK_SIZE, TYPE_SIZE, quantize
from qcourse.gguf.mixes import tensor_size


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
    prompt="Write q8_0_block(x) for a float32 array of 32 weights, returning (d, q) as llama.cpp's "
           "quantize_row_q8_0 does: d = max|x| / 127, stored as float16 (return it as a Python "
           "float of that float16 value); q = round(x / d) as an int8 array (q = 0 if d = 0). "
           "Round half away from zero, and scale by the float32 d before it is cast to float16.",
    reference=_q8_0_block_reference,
    cases=_q8_0_cases,
    hint_text="amax = np.abs(x).max(); d = amax / 127; inv = 1/d if d else 0; "
              "v = x * inv; q = np.sign(v) * np.floor(np.abs(v) + 0.5) (np.round rounds half to "
              "even); return float(np.float16(d)), q.astype(np.int8).",
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
    hint_text="Count bytes: 2 + 2 + 12 + 256 x 4 / 8; then bits per weight = 8 x bytes / 256.",
    solution_text="q4_k_bits_per_weight = 8 * (2 + 2 + 12 + 128) / 256   # = 4.5",
)

file_bytes = Question(
    name="06.3 file_bytes",
    prompt="Write file_bytes(tensors) for a list of (number_of_weights, qtype) pairs, returning the "
           "bytes of tensor data: each tensor takes number_of_weights / block_size blocks of "
           "type_size bytes. Use qcourse.gguf.BLOCK_SIZE and qcourse.gguf.TYPE_SIZE.",
    reference=_file_bytes_reference,
    cases=_file_bytes_cases,
    hint_text="sum(n // BLOCK_SIZE[t] * TYPE_SIZE[t] for n, t in tensors). Q4_K: 256 weights in "
              "144 bytes; Q8_0: 32 weights in 34 bytes; F32: 1 weight in 4 bytes.",
    solution_text="def file_bytes(tensors):\n"
                  "    return sum(n // BLOCK_SIZE[t] * TYPE_SIZE[t] for n, t in tensors)",
)
