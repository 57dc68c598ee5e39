"""Exercises of notebook 01: decoding a float format, asymmetric quantization, per-group
scales, 4-bit packing, and two predictions about quantization error."""
from __future__ import annotations

import torch

from qcourse import formats, pack, quant
from qcourse.exercises import Question
from qcourse.pack import pack_int32
from qcourse.quant import QuantScheme, quantize

QUANTIZERS = (quant.quantize, quant.scale_and_zero, quant.fake_quantize, QuantScheme.params,
              QuantScheme.quantize, QuantScheme.apply_grid, QuantScheme.fake_quantize)


def _float_value_reference(sign: int, exponent: int, mantissa: int, e_bits: int,
                           m_bits: int) -> float:
    """The value of a float bit pattern with no special encodings (every exponent is a number):
    bias = 2^(E-1) - 1; normal (exponent > 0): (-1)^s · 2^(exponent - bias) · (1 + m / 2^M);
    subnormal (exponent = 0): (-1)^s · 2^(1 - bias) · m / 2^M. tests/test_ex01.py checks it
    against torch's float16, bfloat16 and FP8 dtypes, bit pattern by bit pattern."""
    bias = 2 ** (e_bits - 1) - 1
    fraction = mantissa / 2**m_bits
    if exponent == 0:
        magnitude = 2.0 ** (1 - bias) * fraction
    else:
        magnitude = 2.0 ** (exponent - bias) * (1 + fraction)
    return -magnitude if sign else magnitude


def _float_value_cases() -> list[tuple]:
    return [(0, 7, 0, 4, 3),        # FP8 E4M3: 1.0
            (1, 15, 6, 4, 3),       # E4M3's largest, -448 (E4M3 has no infinities)
            (0, 0, 1, 4, 3),        # E4M3's smallest subnormal, 2^-9
            (0, 30, 1023, 5, 10),   # FP16's largest, 65504
            (0, 0, 1, 5, 10),       # FP16's smallest subnormal, 2^-24
            (0, 127, 64, 8, 7),     # BF16: 1.5
            (0, 1, 0, 5, 2),        # FP8 E5M2's smallest normal, 2^-14
            (1, 3, 2, 3, 2),        # FP6 E3M2 (MX): -1.5
            (0, 0, 3, 3, 2),        # E3M2 subnormal: 0.1875
            (0, 3, 1, 2, 1),        # FP4 E2M1 (MX, NVFP4): 6.0, its largest
            (0, 0, 1, 2, 1)]        # E2M1 subnormal: 0.5


def _mse_drop_per_bit() -> float:
    """Average factor by which the MSE of symmetric per-channel rounding of a Gaussian weight
    drops with each extra bit, from 4 to 8 bits (measured)."""
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    mse = [quant.quantization_error(w, quant.fake_quantize(w, b, symmetric=True,
                                                           granularity="channel"))
           for b in range(4, 9)]
    return (mse[0] / mse[-1]) ** (1 / (len(mse) - 1))


def _asymmetric_reference(x: torch.Tensor, bits: int):
    return quantize(x, bits, symmetric=False, granularity="tensor")


def _asymmetric_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.tensor([-1.0, 0.0, 0.4, 2.0]), 2),
        (torch.randn(64, generator=g), 4),
        (torch.randn(8, 16, generator=g) * 0.05 + 0.01, 8),
        (torch.rand(32, generator=g) + 1.0, 4),      # all positive: the range must include 0
        (-torch.rand(32, generator=g) - 0.5, 3),     # all negative
        (torch.tensor([-1.5, 1.5]), 2),              # 1.5/1 + 2 = 3.5 rounds to 4: clamp to 3
    ]


def _group_scales_reference(W: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    return quantize(W, bits, symmetric=True, granularity="group", group_size=group_size)[1]


def _group_scales_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.arange(1.0, 17.0).reshape(2, 8) * torch.tensor([1.0, -1.0]).repeat(4), 4, 4),
        (torch.randn(4, 32, generator=g), 4, 8),
        (torch.randn(16, 16, generator=g), 8, 4),    # square: a transposed answer has the shape
        (torch.randn(6, 64, generator=g) * 0.02, 3, 32),
    ]


def _pack4_reference(values: torch.Tensor) -> torch.Tensor:
    return pack_int32(values, 4, dim=-1)


def _pack4_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.arange(8, dtype=torch.uint8),),
        (torch.tensor([1, 2, 3, 4, 5, 6, 7, 8], dtype=torch.uint8),),
        (torch.full((2, 8), 15, dtype=torch.uint8),),   # top nibble set: a negative int32
        (torch.randint(0, 16, (3, 32), generator=g, dtype=torch.uint8),),
        (torch.randint(0, 16, (2, 4, 16), generator=g, dtype=torch.uint8),),
    ]


float_value = Question(
    name="01.1 float_value",
    prompt="Write float_value(sign, exponent, mantissa, e_bits, m_bits) -> float: the value of a "
           "floating-point bit pattern with e_bits exponent bits and m_bits mantissa bits "
           "(sign, exponent and mantissa given as unsigned integers). The exponent bias is "
           "2^(e_bits-1) - 1. An exponent field of 0 means a subnormal number. Treat every "
           "pattern as a number (no infinities or NaNs: the cases avoid them).",
    reference=_float_value_reference,
    forbid=(formats.representable_values, formats.cast),
    cases=_float_value_cases,
    rtol=1e-9,
    atol=0.0,
    hints=("A normal number is 1.mantissa (binary) times 2 to the power (exponent - bias): "
           "the leading 1 is not stored. How much is the binary fraction .mantissa worth?",
           "A subnormal is 0.mantissa (no hidden 1) times some power of two. The largest "
           "subnormal (every mantissa bit set) must sit one step below the smallest normal "
           "number, 1.000... times 2^(1 - bias): which power of two gives that?"),
    solution_text=(
        "def float_value(sign, exponent, mantissa, e_bits, m_bits):\n"
        "    bias = 2 ** (e_bits - 1) - 1\n"
        "    fraction = mantissa / 2 ** m_bits\n"
        "    if exponent == 0:\n"
        "        value = 2.0 ** (1 - bias) * fraction\n"
        "    else:\n"
        "        value = 2.0 ** (exponent - bias) * (1 + fraction)\n"
        "    return -value if sign else value"),
)

asymmetric_quantize = Question(
    name="01.2 asymmetric_quantize",
    prompt="Write asymmetric_quantize(x, bits) -> (q, scale, zero): asymmetric quantization "
           "of the whole tensor x with one scale and one zero point, as section 2 builds it: "
           "every q an integer in 0 .. 2**bits - 1, and the real value 0.0 stored exactly, "
           "whatever the signs of x. Return q (any integer or float tensor of x's shape), and "
           "scale and zero as 0-d tensors.",
    reference=_asymmetric_reference,
    forbid=QUANTIZERS,
    cases=_asymmetric_cases,
    hints=("Follow the formulas of section 2 in order: range (widened to contain 0), scale, "
           "zero, then q. torch.round rounds halves to even, as the package does.",
           "2^bits levels have 2^bits - 1 steps between them. The zero point is an integer, "
           "so it is rounded too.",
           "x / scale + zero can land half a step outside [0, 2^bits - 1] after rounding "
           "(try x = [-1.5, 1.5] on 2 bits): what keeps q on the grid?"),
    solution_text=(
        "def asymmetric_quantize(x, bits):\n"
        "    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)\n"
        "    scale = (hi - lo) / (2**bits - 1)\n"
        "    zero = torch.round(-lo / scale)\n"
        "    q = torch.round(x / scale + zero).clamp(0, 2**bits - 1)\n"
        "    return q.to(torch.uint8), scale, zero"),
)

group_scales = Question(
    name="01.4 group_scales",
    prompt="Write group_scales(W, bits, group_size) returning the symmetric scales of a weight "
           "W [N, K] quantized in groups of group_size consecutive weights along each row "
           "(the input dimension), one scale per group, chosen as the package's symmetric grid "
           "does (section 1: the restricted range), shape [N, K // group_size]. No Python "
           "loops: reshape.",
    reference=_group_scales_reference,
    forbid=QUANTIZERS,
    cases=_group_scales_cases,
    hints=("A group is a run of group_size consecutive weights of one row. Can you reshape W "
           "so that each group sits alone in the last dimension?",
           "After the reshape to [N, K // group_size, group_size], take the largest |w| over "
           "the last dimension. Which integer does that largest |w| map to on a symmetric "
           "b-bit grid (for 4 bits: 7 or 8)?"),
    solution_text=(
        "def group_scales(W, bits, group_size):\n"
        "    N, K = W.shape\n"
        "    groups = W.reshape(N, K // group_size, group_size)\n"
        "    return groups.abs().amax(dim=-1) / (2 ** (bits - 1) - 1)"),
)

pack4 = Question(
    name="01.6 pack4",
    prompt="Write pack4(values) packing 4-bit values (uint8 in [0, 15], last dimension a "
           "multiple of 8) into int32 words along the last dimension, 8 values per word, "
           "value 0 of each run of 8 in the lowest nibble (bits 0-3), value 7 in the highest "
           "(bits 28-31): the GPTQ layout. Return an int32 (or int64) tensor [..., K // 8].",
    reference=_pack4_reference,
    forbid=(pack.pack_int32, pack.pack_bits, pack.pack_bytes),
    cases=_pack4_cases,
    hints=("Group the values in runs of 8 (one word each): reshape the last dimension to "
           "[K // 8, 8]. Value j of a run goes to bits 4j..4j+3: which shift puts it there?",
           "Shift in int64 so nothing overflows, then combine the 8 shifted values of a run "
           "(they do not overlap: a sum works like a bitwise or). A word with its top bit set "
           "is >= 2^31: as an int32 it must wrap to a negative number."),
    solution_text=(
        "def pack4(values):\n"
        "    runs = values.long().reshape(*values.shape[:-1], -1, 8)\n"
        "    words = (runs << (4 * torch.arange(8))).sum(dim=-1)\n"
        "    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)"),
)

asymmetric_on_silu = Question(
    name="01.3 asymmetric_on_silu",
    prompt="Predict before the table: SiLU outputs lie in [-0.28, 6] (one-sided). Quantized to "
           "4 bits with one per-tensor scale, how does the asymmetric MSE compare with the "
           "symmetric one?",
    choices={"a": "symmetric is lower", "b": "about the same",
             "c": "asymmetric is 2 to 4 times lower", "d": "asymmetric is more than 10 times lower"},
    reference=lambda: "c",  # measured in the notebook: x2.7 (tests/test_ex01.py re-measures it)
    hints=("A symmetric grid spans [-6, 6] here; how many of its levels fall below -0.28?",
           "Compare the two steps: the symmetric one spreads its levels over [-6, 6], the "
           "asymmetric one over [-0.28, 6]. The MSE of rounding grows with the square of the "
           "step: which factor does that give?"),
    solution_text="asymmetric_on_silu = 'c'   # step about 2x smaller -> MSE about 2-4x lower",
)

mse_drop_per_bit = Question(
    name="01.5 mse_drop_per_bit",
    prompt="Predict before the plot: from 4 to 8 bits, each extra bit divides the mean "
           "squared rounding error of symmetric rounding by about how much, on average? "
           "(a number)",
    reference=_mse_drop_per_bit,
    rtol=0.2,
    hints=("One more bit about doubles the number of levels over the same range: what happens "
           "to the step?",
           "The rounding error of values spread evenly over a step of size Δ has variance "
           "Δ² / 12. By what factor does Δ shrink per bit (s = absmax / (2^(b-1) - 1)), and "
           "what does that do to Δ²?"),
    solution_text="mse_drop_per_bit = 4   # the step shrinks ~2x per bit (15/7, 31/15, ...), "
                  "the MSE (∝ step²) ~4x (6 dB)",
)
