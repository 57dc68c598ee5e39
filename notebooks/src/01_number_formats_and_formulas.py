"""Source of notebooks/01_number_formats_and_formulas.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 01 · Number formats and the quantization formulas

Notebook 00 showed that rounding weights to fewer bits shrinks a model. This notebook opens the
box: which number formats exist, what grid of values each can hold, and the two formulas that
every method in the rest of the course (RTN, GPTQ, AWQ, GGUF K-quants) is built on.

**Learning goals.** After this notebook you can
1. say how FP32, FP16, BF16, FP8 (E4M3, E5M2), INT8, INT4 and NF4 differ, and draw their grids;
2. derive a scale and a zero point from a tensor's range, and quantize/dequantize by hand;
3. choose between symmetric and asymmetric quantization, and between per-tensor, per-channel and
   per-group scales, from measured errors on a real weight matrix of `qcourse-tiny`;
4. pack 4-bit (and 3-bit) integers into int32 words the way GPTQ stores them;
5. decode a float's bits and implement asymmetric quantization, per-group scales and 4-bit packing
   yourself (exercises, each asked before the package shows its own code).
"""),
    ("code", r"""
%matplotlib inline
import inspect

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from qcourse import data, formats, models, pack, quant, viz
from qcourse.exercises import ex01

torch.manual_seed(0)
torch.set_num_threads(2)
model, tokenizer = models.load()
"""),
    ("md", r"""
## 1. Number formats and their grids

A floating-point number with E exponent bits and M mantissa bits stores a sign s, an exponent
field e and a mantissa field m. With the bias `2^(E-1) - 1`, a **normal** number (e > 0) is
`(-1)^s · 2^(e - bias) · (1 + m / 2^M)`: the leading 1 is not stored. The exponent field e = 0
is kept for the **subnormals**, which have no hidden 1 and fill the gap between the smallest
normal number and 0 with evenly spaced values, continuing the grid of the smallest normals without
a jump. So the grid is dense near zero and coarse far from it (the gap between neighbours grows
with the value: *relative* precision). An integer format is a uniform grid `k · scale`: the same gap everywhere
(*absolute* precision), and the scale has to be chosen for the data. NF4 is a lookup table of 16
values placed where normally distributed weights are dense, times a per-block absmax.

**Exercise 01.1.** Decode a bit pattern before the table below reads the formats' limits. The
normal case follows from the formula above; the subnormal case is yours to derive from the two
properties just stated (no hidden 1, no jump at the smallest normal). Replace each `...` and run
the cell: `check` runs hidden cases (FP16, BF16, FP8 and the 6- and
4-bit floats of the MX formats) and prints *correct*, *wrong* (with the first failing case) or
*not attempted*. `ex01.float_value.hint()` gives a hint (call it again for the next);
`.solution()` shows an answer.
"""),
    ("code", r"""
print(ex01.float_value.prompt)

def float_value(sign, exponent, mantissa, e_bits, m_bits):
    return ...  # your code here

ex01.float_value.check(float_value);
"""),
    ("md", r"""
The subnormal rule: `(-1)^s · 2^(1 - bias) · (m / 2^M)`, the power of two of e = 1 with 0.m in
place of 1.m, so the largest subnormal sits one step below the smallest normal, `2^(1 - bias)`.
The largest value of each format, and its smallest *normal* value (floats; subnormals go lower).
For INT8 and INT4 the last column is the step of the grid (1, times the scale), for NF4 its
smallest non-zero code:
"""),
    ("code", r"""
print(f"{'format':9} {'bits':>4} {'largest':>10} {'smallest normal / step':>23}  note")
for f in formats.format_table():
    print(f"{f.name:9} {f.bits:4d} {f.max_value:10.3g} {f.smallest_step:23.3g}  {f.note}")
"""),
    ("md", r"""
`formats.representable_values(name)` lists every value a format can hold, read from the bit
patterns themselves (all 256 patterns of an FP8 byte, all 65,536 of FP16). Here are the values in
[-4, 4]; INT and NF4 are drawn for a tensor whose largest magnitude (absmax) is 4, with the
symmetric scale `absmax / 7` (INT4) or `absmax / 127` (INT8). Why does INT4 show 15 values when
the table says -8..7, 16 integers? The signed 4-bit type holds -8..7, but a symmetric quantizer
maps absmax to 7 so that +absmax and -absmax are both on the grid; -8 would stand for
-8 · 4/7 ≈ -4.57, outside the tensor's range, so with a scale set by absmax it is never produced
(the *restricted* range -7..7: one code of 16 unused; only a clipped scale, notebook 02, can
reach -8). INT8 likewise uses -127..127, 255 of its 256 codes. An asymmetric grid
(section 2) uses all `2^b` codes.
"""),
    ("code", r"""
fig = viz.format_grid_figure(["FP8 E5M2", "FP8 E4M3", "INT8", "INT4", "NF4"], lo=-4, hi=4, absmax=4)
display(fig)
for name in ["FP16", "BF16", "FP8 E4M3", "FP8 E5M2"]:
    print(f"{name:9} has {len(formats.representable_values(name)):6d} distinct finite values")
"""),
    ("md", r"""
What does a value *become* in each format? `formats.cast(x, name)` stores `x` in the format and
reads it back. FP formats round to the nearest representable float; INT8/INT4 quantize the whole
tensor with one symmetric scale (`absmax / 127` or `absmax / 7`, the restricted ranges above); NF4 snaps `x / absmax` to the
nearest of its 16 code values. Note how one large value (300) sets the integer step (300/127 ≈ 2.4
for INT8, 300/7 ≈ 43 for INT4): the small values become 0. A float format keeps the same
*relative* precision whatever the size, set by its mantissa: a value is off by at most
`2^-(M+1)` of itself, about 3 significant digits for FP16 (M = 10), 2 for BF16 (M = 7), and only
about 1 for FP8: E4M3 (M = 3) turns 3.14159 into 3.25, E5M2 (M = 2) turns it into 3 and 300 into
320. FP16's largest value is 65,504: 70,000 becomes infinity.
"""),
    ("code", r"""
x = torch.tensor([0.1, 1 / 3, 3.14159, 300.0])
print(f"{'format':9}" + "".join(f"{v:>12.5g}" for v in x.tolist()))
for name in formats.FORMAT_NAMES:
    print(f"{name:9}" + "".join(f"{v:>12.5g}" for v in formats.cast(x, name).tolist()))
print("FP16 of 70000:", formats.cast(torch.tensor([70000.0]), "FP16").item())
"""),
    ("md", r"""
## 2. Scale and zero point from first principles

We want to map real values in a range `[lo, hi]` onto the `2^b` integers of a `b`-bit grid. Spread
them evenly: the **scale** is the real-valued size of one integer step, and the **zero point** is the
integer that represents the real value 0.

$$\text{scale} = \frac{hi - lo}{2^b - 1}, \qquad \text{zero} = \operatorname{round}\!\left(\frac{-lo}{\text{scale}}\right)$$

$$q = \operatorname{clamp}\!\left(\operatorname{round}\!\left(\frac{x}{\text{scale}}\right) + \text{zero},\ q_{min},\ q_{max}\right), \qquad x' = (q - \text{zero})\cdot \text{scale}$$

Two rules make this robust: the range is widened to include 0 (`lo ≤ 0 ≤ hi`), so that 0.0 (padding,
ReLU outputs, pruned weights) is stored *exactly* as `q = zero`; and a tensor of zeros gets scale 1
instead of a division by zero. **Symmetric** quantization fixes `zero = 0` and uses a signed grid,
`scale = absmax / (2^{b-1} - 1)`.

By hand: `x = [-1, 0, 0.4, 2]` on 2 bits (integers 0..3): scale = 3/3 = 1, zero = round(1/1) = 1,
`q = round(x + 1) = [0, 1, 1, 3]`, and back: `x' = q - 1 = [-1, 0, 0, 2]`. The error on 0.4 is
0.4, less than half a step, which is the worst that rounding can do to a value inside the range.
"""),
    ("code", r"""
x = torch.tensor([-1.0, 0.0, 0.4, 2.0])
q, scale, zero = quant.quantize(x, 2, symmetric=False, granularity="tensor")
print("q =", q.tolist(), " scale =", scale.item(), " zero =", zero.item())
print("x' =", quant.dequantize(q, scale, zero).tolist())
"""),
    ("md", r"""
**Exercise 01.2.** Now write it for any tensor, before reading the package's version below. The
formulas are above; the hidden cases test what they leave to you: a tensor with no negative (or no
positive) value, and a value that rounds past the end of the grid.
"""),
    ("code", r"""
print(ex01.asymmetric_quantize.prompt)

def asymmetric_quantize(x, bits):
    return ...  # your code here

ex01.asymmetric_quantize.check(asymmetric_quantize);
"""),
    ("md", r"""
The package's code, which every later notebook uses (`quant.quantize`, which also handles the
per-channel and per-group scales of section 4, comes after exercise 01.4):
"""),
    ("code", r"""
print(inspect.getsource(quant.scale_and_zero))
print(inspect.getsource(quant.dequantize))
"""),
    ("md", r"""
## 3. Symmetric or asymmetric?

Symmetric quantization wastes nothing when the data is centred on zero, but if the values are
one-sided, half of the signed grid is never used. We measure both on a real weight matrix of
`qcourse-tiny` and on real activations: the output of the SiLU in the first layer's MLP
(`SiLU(x) = x·sigmoid(x)` is never below -0.28), collected with a forward hook on two
calibration sequences.
The table gives the mean squared error (MSE) of `x - x'`, per-tensor scales. Predict first:
"""),
    ("code", r"""
ex01.asymmetric_on_silu.show()
asymmetric_on_silu = ...  # a letter
ex01.asymmetric_on_silu.check(asymmetric_on_silu);
"""),
    ("code", r"""
linears = models.linear_layers(model)
W = linears["model.layers.0.mlp.up_proj"].weight.detach()
print("weight:", tuple(W.shape), f"mean {W.mean():.4f}, min {W.min():.3f}, max {W.max():.3f}")

captured = {}

def keep_output(module, inputs, output):   # a forward hook sees what the module computed
    captured["x"] = output.detach().reshape(-1, output.shape[-1])

hook = models.get_module(model, "model.layers.0.mlp.act_fn").register_forward_hook(keep_output)
with torch.no_grad():
    model(data.calibration_samples(tokenizer, 2, 128, seed=0))
hook.remove()
acts = captured["x"]
print("activations:", tuple(acts.shape), f"min {acts.min():.3f}, max {acts.max():.3f}")
"""),
    ("code", r"""
print(f"{'tensor':12} {'bits':>4} {'symmetric MSE':>14} {'asymmetric MSE':>15}")
for label, t in [("weight", W), ("activations", acts)]:
    for bits in (8, 4):
        mse = [quant.quantization_error(t, quant.fake_quantize(t, bits, symmetric=s, granularity="tensor"))
               for s in (True, False)]
        print(f"{label:12} {bits:4d} {mse[0]:14.3g} {mse[1]:15.3g}")
"""),
    ("md", r"""
On the weight matrix, whose range is roughly balanced around zero, the two schemes are close.
On the SiLU outputs, which are one-sided, the symmetric grid spends almost half of its levels on
negative values that never occur; the asymmetric grid puts all its levels where the values are
and its error is several times lower.

What today's stacks do is not "weights symmetric, activations asymmetric". W8A8 inference
(weights and activations in int8; notebook 02) quantizes activations **symmetrically**, which
keeps the int8 matmul free of zero-point corrections, and the scales come in two granularities:

* **one scale per token**, computed at run time (*dynamic per-token*): llm-compressor's `W8A8`
  preset (compressed-tensors: weights per output channel, activations per token, both symmetric),
  which vLLM serves, and SmoothQuant's lightest setting, O1;
* **one scale per tensor**: SmoothQuant's O2 computes it at run time for each batch (*dynamic*),
  its O3 fixes it ahead of time from calibration data (*static*, the fastest). In all three of
  SmoothQuant's settings the weights have one scale per tensor (Xiao et al., 2023, Table 3).

The 4-bit weight-only formats, on the other hand, often store weights **asymmetrically**, with a
zero point per group (AWQ checkpoints always, `zero_point=True`; GPTQ checkpoints either way,
`sym` in their config; notebook 04 uses a zero point).

## 4. Per-tensor, per-channel, per-group

One scale for a whole matrix is set by its single largest weight; every other row pays for it.
**Per-channel** gives each output channel (row of `W [N, K]`) its own scale; **per-group** gives
each run of `g` consecutive weights along the input dimension its own scale (GPTQ and AWQ
checkpoints mostly use g = 128, sometimes 32 or 64; llama.cpp's legacy formats use blocks of 32,
and its K-quants super-blocks of 256 weights whose sub-blocks of 16 or 32 weights get their own,
themselves quantized, scales: notebook 06). Finer scales cost storage: a 16-bit scale per group of
128 weights adds 16/128 = 0.125 bits per weight.

**Exercise 01.4.** Compute per-group scales, before the table measures what they buy.
"""),
    ("code", r"""
print(ex01.group_scales.prompt)

def group_scales(W, bits, group_size):
    return ...  # your code here

ex01.group_scales.check(group_scales);
"""),
    ("md", r"""
How the package does it: `quant.quantize` checks the granularity and, for groups, hands over to
`QuantScheme.quantize`, which views `[N, K]` as `[N, K/g, g]` and takes one scale and zero per group.
"""),
    ("code", r"""
print(inspect.getsource(quant.quantize))
print(inspect.getsource(quant.QuantScheme.quantize))
"""),
    ("code", r"""
print(f"{'granularity':14} {'MSE at 4 bits':>14} {'MSE at 3 bits':>14} {'bits/weight (4-bit, fp16 scale)':>32}")
settings = [("tensor", None), ("channel", None), ("group", 128), ("group", 64), ("group", 32)]
for granularity, g in settings:
    mse = [quant.quantization_error(W, quant.fake_quantize(W, b, symmetric=True, granularity=granularity,
                                                           group_size=g)) for b in (4, 3)]
    per = g if g else (W.shape[1] if granularity == "channel" else None)
    label = f"group {g}" if g else granularity
    print(f"{label:14} {mse[0]:14.3g} {mse[1]:14.3g} {formats.bits_per_weight(4, per):32.3f}")
"""),
    ("md", r"""
The four panels show a corner of the matrix: the original weights, the integers that are stored,
the weights after dequantization, and the error. Per-tensor, the scale is set by the largest weight
somewhere else in the matrix, so the integers in this corner use only part of the grid (see the
colour bar of `q`); in groups of 32 each group's largest |w| lands on 7 or -7, so every group uses
most of the grid, and the error's colour scale shrinks.
"""),
    ("code", r"""
display(viz.error_panels(W, bits=4, symmetric=True, granularity="tensor"))
display(viz.error_panels(W, bits=4, symmetric=True, granularity="group", group_size=32))
"""),
    ("md", r"""
How much does each extra bit buy? Predict, then look at the plot:
"""),
    ("code", r"""
mse_drop_per_bit = ...  # each extra bit divides the MSE by about ...?
ex01.mse_drop_per_bit.check(mse_drop_per_bit);
"""),
    ("code", r"""
bit_range = list(range(2, 9))
fig, ax = plt.subplots(figsize=(5, 3))
errors = {}
for granularity, g in [("tensor", None), ("channel", None), ("group", 32)]:
    label = f"group {g}" if g else granularity
    errors[label] = [quant.quantization_error(W, quant.fake_quantize(W, b, symmetric=True,
                                                                     granularity=granularity,
                                                                     group_size=g))
                     for b in bit_range]
    ax.semilogy(bit_range, errors[label], marker="o", label=label)
ax.set_xlabel("bits")
ax.set_ylabel("MSE")
ax.set_title("Quantization error of layers.0.mlp.up_proj")
ax.legend()
plt.show()
steps = bit_range[1:]
print("MSE divided by, per added bit:")
print(f"{'':24}" + "".join(f"{b - 1}->{b} bits".rjust(11) for b in steps))
for label, mse in errors.items():
    print(f"{label:24}" + "".join(f"{mse[i] / mse[i + 1]:11.2f}" for i in range(len(steps))))
step_ratio = [(2 ** (b - 1) - 1) / (2 ** (b - 2) - 1) for b in steps]   # step at b-1 / step at b
print(f"{'(step ratio)^2':24}" + "".join(f"{r * r:11.2f}" for r in step_ratio))
"""),
    ("md", r"""
Why not exactly 4×? A symmetric grid has `2^(b-1) - 1` steps on each side of zero (3 at 3 bits,
7 at 4, 15 at 5: the restricted range of section 1), so going from b to b + 1 bits divides the
step by `(2^b - 1) / (2^(b-1) - 1)`: 7/3 ≈ 2.33 from 3 to 4 bits, 15/7 ≈ 2.14 from 4 to 5, and only
tends to 2. The error of rounding, about `step² / 12` for values spread evenly over a step, drops
by the square of that ratio (last row): 5.44× from 3 to 4 bits (the 5.4–5.5× of the granularity
table above), 4.59× from 4 to 5, and about **4× (6 dB) per bit** only at high bit widths. The
measured ratios follow that row from 3 bits up, for every granularity. From 2 to 3 bits they do
not: at 2 bits most weights round to 0, so the error is the weight itself, not spread evenly over
a step, and `step² / 12` no longer describes it.
"""),
    ("md", r"""
## 5. Bit packing

PyTorch has no 4-bit dtype, so 4-bit integers are stored eight to an int32 word. GPTQ and the
kernels that read its checkpoints pack along the input dimension (a layer's `qweight` is
`[K/8, N]` int32 for `W [N, K]`) and treat each run of values as a little-endian **bit stream**:
value `j` occupies bits `[4j, 4j+4)`, so value 0 is the lowest nibble. (Other layouts differ:
AutoAWQ's GEMM checkpoints pack along the output dimension, `qweight` `[K, N/8]`, and nibbles
0 to 7 of a word hold values 0, 2, 4, 6, 1, 3, 5, 7: `WQLinear_GEMM.from_linear`.) The exercise packs along the last dimension of whatever it is
given. 3-bit values do not divide 32:
GPTQ lets them straddle words, 32 values in 3 words. `qcourse.pack` does both (and a plain
byte layout) with one vectorised routine.

**Exercise 01.6.** Pack 4-bit values yourself first.
"""),
    ("code", r"""
print(ex01.pack4.prompt)

def pack4(values):
    return ...  # your code here

ex01.pack4.check(pack4);
"""),
    ("code", r"""
values = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8], dtype=torch.uint8)
word = pack.pack_int32(values, 4)
print("packed:", word.tolist(), "=", hex(word.item() & 0xFFFFFFFF), "(value 0 in the lowest nibble)")
print("unpacked:", pack.unpack_int32(word, 4).tolist())
three_bit = torch.arange(32, dtype=torch.uint8) % 8
print("32 three-bit values ->", pack.pack_int32(three_bit, 3).shape[-1], "int32 words")
print(inspect.getsource(pack.pack_bits))
"""),
    ("md", r"""
Packing is where the memory saving becomes real: the up-projection above stored in FP32 and as
packed 4-bit integers with one FP16 scale per group of 32:
"""),
    ("code", r"""
q, scale, zero = quant.quantize(W, 4, symmetric=True, granularity="group", group_size=32)
packed = pack.pack_int32((q.to(torch.int16) + 8).to(torch.uint8), 4)   # shift signed -> unsigned
stored = packed.numel() * 4 + scale.numel() * 2
print(f"FP32: {formats.human_bytes(W.numel() * 4)}, packed INT4 + fp16 scales: {formats.human_bytes(stored)} "
      f"({W.numel() * 32 / (stored * 8):.1f}x smaller, {stored * 8 / W.numel():.2f} bits per weight)")
assert torch.equal(pack.unpack_int32(packed, 4).to(torch.int16) - 8, q.to(torch.int16))
"""),
    ("md", r"""
## 6. Explore

Move the sliders: the picture is redrawn by `viz.error_panels` each time (a static view of this
notebook, on GitHub for instance, shows the first drawing). Try 2 bits per-tensor, then 2 bits in
groups of 8.
"""),
    ("code", r"""
viz.explorer(W)
"""),
    ("md", r"""
Stuck on an exercise? Every question has progressive hints: `ex01.pack4.hint()`, then
`ex01.pack4.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## Summary

* Float formats have relative precision (dense near 0), set by their mantissa bits (FP8: about one
  significant digit); integer formats have a uniform step set by a **scale**; NF4 is a 16-entry
  code book for normally distributed weights.
* `q = clamp(round(x / scale + zero), qmin, qmax)` and `x' = (q - zero) · scale`; the range always
  contains 0; rounding errs by at most half a step inside the range; clamping handles the rest.
* Asymmetric helps one-sided data (activations after SiLU); symmetric is enough for centred weights.
  In practice W8A8 quantizes activations symmetrically, per token at run time (llm-compressor's
  `W8A8`, SmoothQuant O1) or per tensor (SmoothQuant O2 at run time, O3 static), and 4-bit weight
  formats often carry a zero point per group.
* A symmetric b-bit grid uses the restricted range `-(2^(b-1) - 1) .. 2^(b-1) - 1` (INT4: -7..7,
  15 of 16 codes), so that +absmax and -absmax are both on it.
* Finer granularity (channel, then groups of 128…32) cuts the error up to about 4× (per tensor to
  groups of 32, on this matrix) for a fraction of a bit per weight; going from b to b + 1 bits
  divides the symmetric step by `(2^b - 1) / (2^(b-1) - 1)` and the MSE by its square: 5.4× from 3 to 4 bits,
  tending to 4× (6 dB) per bit.
* Packed integers are what make the saving real: 8 four-bit values per int32, value 0 lowest.

Next, notebook 02 applies these formulas to the whole model and measures perplexity.

## Sources

* IEEE 754-2019 (FP32, FP16); BF16: Google Brain's bfloat16 format.
* Micikevicius et al., *FP8 Formats for Deep Learning*, 2022 (E4M3, E5M2). arXiv:2209.05433.
* Open Compute Project, *OCP Microscaling Formats (MX) Specification* v1.0, 2023 (FP6 E3M2/E2M3,
  FP4 E2M1 elements).
* Jacob et al., *Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
  Inference*, CVPR 2018 (scale and zero point). arXiv:1712.05877.
* Nagel et al., *A White Paper on Neural Network Quantization*, 2021. arXiv:2106.08295.
* Dettmers et al., *QLoRA*, 2023 (NF4), and bitsandbytes' `create_normal_map`. arXiv:2305.14314.
* Frantar et al., *GPTQ*, 2022, and its reference code's `pack` (the int32 layout). arXiv:2210.17323.
* Xiao et al., *SmoothQuant*, ICML 2023, Table 3 (the O1–O3 settings). arXiv:2211.10438.
  llm-compressor's `W8A8` preset: `INT8_W8A8` in compressed-tensors' `quantization/quant_scheme.py`.
"""),
]

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS)
