"""Source of notebooks/07_kernels.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 07 · Kernels: Triton and CUDA, the roofline, and counting bytes

A 4-bit model is 4× smaller than its fp16 original. Whether it is also *faster* depends on the
code that multiplies with it: a **kernel** that reads the packed integers, turns them back into
numbers (dequantizes) and multiplies, all inside the GPU's registers. Decoding one token is
memory-bound, so such a kernel can be no faster than the bytes it asks memory for, and those
bytes can be **counted on a CPU**. This notebook builds the kernels in Triton and CUDA C, counts
what they ask for, and shows how the course's first kernels (measured on an H100: *slower* than
fp16) were redesigned to ask for each byte of the weight exactly once.

**Learning goals.** After this notebook you can
1. explain with the roofline model why generating text one token at a time is limited by memory
   bandwidth, not arithmetic, using the spec-sheet numbers of real GPUs;
2. count the bytes a matrix-vector product must move in fp16, W8A8 and W4A16, and so bound the
   speed-up weight-only quantization can give;
3. read the packed 4-bit layout (8 codes per int32) and map it to a kernel's loads;
4. **count what a kernel asks memory for** with a byte counter running Triton's interpreter,
   compare it with the ideal, and find redundant loads in real code;
5. follow the redesigned Triton W4A16 kernels (a GEMV and a `tl.dot` GEMM) and the CUDA C GEMV
   (128-bit loads, half2 math, a warp reduction), and run them on a GPU or in the interpreter;
6. read recorded GPU measurements for what they say, and for what they do not yet say.
"""),
    ("code", r"""
%matplotlib inline
import inspect

import torch

from qcourse import kernels

backend = kernels.device()   # the one decision: a GPU if there is one, else Triton's interpreter

import matplotlib.pyplot as plt
import triton
import triton.language as tl
from IPython.display import Image, display

from qcourse import models
from qcourse.bench import record
from qcourse.exercises import ex07
from qcourse.kernels import (cuda as cuda_kernel, layout, roofline, timing, traffic, triton_w4a16,
                             triton_w4a16_v1, triton_w8a8)
from qcourse.kernels.w4a16_traffic import requested_bytes
from qcourse.layers import QuantLinear

torch.manual_seed(0)
torch.set_num_threads(2)
device = backend.device
print(f"triton {triton.__version__}, torch {torch.__version__}; kernels run on {backend.description}")
"""),
    ("md", r"""
`kernels.device()` decides where the kernels run, once, for the package and this notebook: with
CUDA (a Colab T4 as much as an H100) Triton compiles them for the GPU and the cells below time
them; without, it sets `TRITON_INTERPRET=1` *before* triton is imported, so the same kernels run
in Triton's interpreter (numpy executing the tiles: exact, slow, and with no meaningful timings).
"""),
    ("code", r"""
print(inspect.getsource(kernels.device))
"""),
    ("md", r"""
## 1. The roofline: why decoding is memory-bound

A kernel must move its bytes between DRAM and the chip, and it must do its arithmetic. Each takes
a minimum time, and the kernel cannot beat the slower of the two
([Williams, Waterman, Patterson 2009](https://doi.org/10.1145/1498765.1498785)):

$$ t \;\ge\; \max\!\left(\frac{\text{bytes moved}}{\text{peak bandwidth}},\;
   \frac{\text{FLOPs}}{\text{peak FLOP/s}}\right) $$

The ratio FLOPs / bytes is the kernel's **arithmetic intensity**. The card's **ridge point**,
peak FLOP/s ÷ peak bandwidth, says how many FLOPs it can do per byte it reads. Below the ridge,
a kernel is memory-bound: faster arithmetic would not help, fewer bytes would.

The numbers of real cards, from NVIDIA's spec sheets (tensor-core peaks without sparsity):
"""),
    ("code", r"""
print(f"{'GPU':15} {'GB/s':>6} {'fp16 TFLOPS':>12} {'int8 TOPS':>10} {'ridge FLOP/B':>13}")
for gpu in roofline.GPUS.values():
    print(f"{gpu.name:15} {gpu.bandwidth_gbs:6.0f} {gpu.fp16_tflops:12.0f} {gpu.int8_tops:10.0f} "
          f"{gpu.ridge:13.0f}")
"""),
    ("md", r"""
A linear layer `y[M, N] = x[M, K] · W[N, K]ᵀ` does `2·M·N·K` FLOPs (a multiply and an add per
term) and in fp16 must read at least `2·N·K` bytes of weight plus `2·M·K` of input and write
`2·M·N` of output. When generating text, each step processes **one token per sequence**: M is the
batch size, often 1. Then the intensity is about `2·N·K / 2·N·K = 1` FLOP per byte, against a
ridge near 300 on an H100: the tensor cores wait for memory more than 99% of the time.

**Exercise 07.1.** Before the table below classifies a few batch sizes, write the test. Replace
the `...` and run the cell; `check` runs hidden cases and prints *correct*, *wrong* (with the
first failing case) or *not attempted*; `ex07.memory_bound.hint()` gives a hint (call it again
for the next), `.solution()` an answer.
"""),
    ("code", r"""
print(ex07.memory_bound.prompt)

def memory_bound(m, n, k, bandwidth_gbs, tflops):
    return ...  # your code here

ex07.memory_bound.check(memory_bound);
"""),
    ("code", r"""
from qcourse.kernels.roofline import bytes_fp16, bytes_w4a16, bytes_w8a8, matmul_flops

h100 = roofline.GPUS["H100"]
n = k = 4096
print(f"layer {n}x{k} on {h100.name}:")
print(f"{'M':>5} {'FLOP/byte':>10} {'t_memory us':>12} {'t_compute us':>13}  bound")
for m in (1, 16, 64, 256, 1024, 4096):
    flops, nbytes = matmul_flops(m, n, k), bytes_fp16(m, n, k)
    t_mem, t_flop = nbytes / (h100.bandwidth_gbs * 1e9), flops / (h100.fp16_tflops * 1e12)
    print(f"{m:5d} {flops / nbytes:10.1f} {t_mem * 1e6:12.2f} {t_flop * 1e6:13.2f}  "
          f"{'memory' if t_mem > t_flop else 'compute'}")
"""),
    ("md", r"""
## 2. What weight-only quantization buys: bytes

W4A16 keeps activations in fp16 but stores weights as 4-bit codes plus one fp16 scale and one
fp16 zero point per group of `g` inputs of each output. W8A8 stores weights
*and* activations in int8 and uses the int8 tensor cores (twice the fp16 peak on the data-centre
cards of the table, four times on the two GeForce cards, whose listed fp16 peak accumulates in
fp32).
Below the ridge the time is proportional to the bytes, so the bytes ratio is the best speed-up a
kernel can reach; above it, W4A16 still computes in fp16 and gains nothing, while W8A8 doubles
the arithmetic roof.

**Exercise 07.2.** Count the bytes of a W4A16 GEMV before the table does.
"""),
    ("code", r"""
print(ex07.gemv_bytes.prompt)

def gemv_bytes(n, k, group_size):
    return ...  # your code here

ex07.gemv_bytes.check(gemv_bytes);
"""),
    ("code", r"""
g = 128
print(f"bytes moved at M = 1 (group size {g}); speed-up bound = fp16 bytes / bytes")
print(f"{'N x K':>13} {'fp16 MB':>8} {'W8A8 MB':>8} {'W4A16 MB':>9} {'bound W8A8':>11} {'bound W4A16':>12}")
for n, k in [(4096, 4096), (14336, 4096), (4096, 14336)]:
    b16, b8, b4 = bytes_fp16(1, n, k), bytes_w8a8(1, n, k), bytes_w4a16(1, n, k, g)
    print(f"{n:6d}x{k:<6d} {b16 / 1e6:8.1f} {b8 / 1e6:8.1f} {b4 / 1e6:9.1f} {b16 / b8:10.2f}x {b16 / b4:11.2f}x")

ms = [2**i for i in range(0, 14)]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for gpu in (roofline.GPUS["H100"], roofline.GPUS["L4"]):
    xs = [0.5, gpu.ridge, 1e4]
    ax1.plot(xs, [min(x * gpu.bandwidth_gbs / 1e3, gpu.fp16_tflops) for x in xs],
             label=f"{gpu.name}: {gpu.bandwidth_gbs:.0f} GB/s, {gpu.fp16_tflops:.0f} TFLOPS")
for m in (1, 16, 256, 4096):                  # where fp16 linears of M rows sit
    intensity = matmul_flops(m, 4096, 4096) / bytes_fp16(m, 4096, 4096)
    ax1.axvline(intensity, ls=":", color="gray")
    ax1.text(intensity * 1.1, 0.6, f"M={m}", fontsize=7)
ax1.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)",
        ylabel="attainable TFLOPS", title="roofline (fp16 linear 4096x4096)")
ax1.legend(fontsize=7)
def bound(m, kind):
    n = k = 4096
    nbytes = {"fp16": bytes_fp16, "W8A8": bytes_w8a8}.get(kind, lambda *a: bytes_w4a16(*a, 128))(m, n, k)
    return roofline.roofline_seconds(matmul_flops(m, n, k), nbytes, h100, int8=kind == "W8A8")
for kind in ("W8A8", "W4A16"):
    ax2.plot(ms, [bound(m, "fp16") / bound(m, kind) for m in ms], marker=".", label=kind)
ax2.set(xscale="log", xlabel="rows M (tokens in the batch)", ylabel="best speed-up over fp16",
        title=f"roofline bound on {h100.name}")
ax2.legend()
fig.tight_layout()
plt.show()
"""),
    ("md", r"""
The weight of W4A16 takes `N·K/2 + 2·2·N·K/g` bytes instead of `2·N·K`: 4.25 bits per weight
at g = 128. The left plot is the roofline: decode (M = 1) sits at 1 FLOP/byte, deep on the sloped,
memory-bound part. The right plot is the consequence: at small M a W4A16 kernel can be up to
~3.8× faster than fp16 (4× fewer weight bytes, minus the scales and zeros), and the advantage
fades once M passes the ridge, where W8A8's int8 tensor cores take over. That bound assumes a
kernel that moves *only* these bytes. Section 4 counts what real kernels ask for.

## 3. The packed layout the kernels read

`prepare_w4a16(W, g)` quantizes with the course's own `qcourse.quant.quantize` (asymmetric 4-bit,
per group of `g` inputs) and packs with `qcourse.pack.pack_int32`, 8 four-bit codes per int32
word along K, in W's own orientation: row `n` of `qweight [N, K/8]` holds output `n`'s codes in
the order of its dot product. The two checkpoint formats people download pack differently:

* **GPTQ** (and the course's `QuantLinear`) stores the same words transposed, `qweight [K/8, N]`:
  packed along **K**, codes in order, each word 8 consecutive inputs of one output; the zero
  points are packed along N, `qzeros [K/g, N/8]`.
* **AutoAWQ's GEMM format** (`WQLinear_GEMM`) packs along **N**: `qweight [K, N/8]`, each word 8
  neighbouring *outputs* of one input, in the interleaved order 0 2 4 6 1 3 5 7 (nibble i holds
  output `8c + order[i]`), and `qzeros [K/g, N/8]` in the same order.

`layout` converts from and to both, exactly (`tests/test_awq_autoawq.py` reads AutoAWQ's own
bytes back through it).

**Exercise 07.3.** Read one word by hand before the layout module is shown.
"""),
    ("code", r"""
print(ex07.unpack_word.prompt)

def unpack_word(word, scale, zero):
    return ...  # your code here

ex07.unpack_word.check(unpack_word);
"""),
    ("code", r"""
print(inspect.getsource(layout))
"""),
    ("code", r"""
W = torch.randn(8, 16)                       # N = 8 outputs, K = 16 inputs
qweight, scales, zeros = kernels.prepare_w4a16(W, group_size=8)
print("qweight", tuple(qweight.shape), qweight.dtype, " scales", tuple(scales.shape), scales.dtype,
      " zeros", tuple(zeros.shape))
word = int(qweight[2, 1]) & 0xFFFFFFFF       # row n = 2, word i = 1: inputs k = 8..15
nibbles = [(word >> (4 * j)) & 0xF for j in range(8)]
print(f"qweight[2, 1] = 0x{word:08X} -> nibbles (j = 0..7): {nibbles}")
print(f"dequantized: {[round((q - zeros[1, 2].item()) * scales[1, 2].item(), 3) for q in nibbles]}")
print(f"W[2, 8:16]:  {[round(v, 3) for v in W[2, 8:16].tolist()]}")
ckpt_qweight, qzeros, _ = layout.to_checkpoint(qweight, scales, zeros)
print(f"GPTQ layout: qweight {tuple(ckpt_qweight.shape)}, qzeros {tuple(qzeros.shape)}; "
      f"the same word at [1, 2]: {int(ckpt_qweight[1, 2]) == int(qweight[2, 1])}")
awq_qweight, awq_qzeros, _ = layout.to_awq_gemm(qweight, scales, zeros)
awq_word = int(awq_qweight[8, 0]) & 0xFFFFFFFF    # input k = 8, outputs n = 0..7
q_k8 = [int(qweight[n, 1]) & 0xF for n in range(8)]   # q[n, 8]: nibble 0 of word 1 of row n
print(f"AutoAWQ GEMM layout: qweight {tuple(awq_qweight.shape)}, qzeros {tuple(awq_qzeros.shape)}; "
      f"q[n = 0..7, k = 8] = {q_k8}")
print(f"  qweight[8, 0] = 0x{awq_word:08X} -> nibbles (i = 0..7): "
      f"{[(awq_word >> (4 * i)) & 0xF for i in range(8)]} = q[n, 8] for n = {list(layout.AWQ_ORDER)}")
"""),
    ("md", r"""
## 4. Count what your kernel asks memory for

A memory-bound kernel is as fast as the bytes it moves. So before any GPU time is spent, ask:
**how many bytes does this kernel ask memory for, and how many does the problem need?** In
Triton's interpreter every `tl.load`, `tl.store` and atomic passes through one function with the
addresses of all its elements and its mask, so `qcourse.kernels.traffic.measure(fn, *args)` can
run `fn` and add up, for each of them, *element size × elements the mask lets through*:

* masked-off elements are not requested and not counted;
* an address asked for twice counts twice: the counter measures what the code *asks for*. A GPU's
  caches may serve a repeat, so this is an upper bound on DRAM traffic (and the traffic itself
  for code that asks for each byte once), and every repeat still costs a load instruction;
* an atomic add counts as a read and a write; `loaded_from(t)` / `stored_to(t)` give the bytes
  whose addresses fell inside tensor `t`.

A hand-written kernel first, whose traffic we know: `y = 2·x` over 100 floats in blocks of 64.
"""),
    ("code", r"""
@triton.jit
def double_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)   # this program's elements
    x = tl.load(x_ptr + i, mask=i < n)                   # nothing past n is asked for
    tl.store(y_ptr + i, 2 * x, mask=i < n)

def double(x, block=64):
    y = torch.empty_like(x)
    double_kernel[(triton.cdiv(x.numel(), block),)](x, y, x.numel(), BLOCK=block)
    return y

x = torch.randn(100)                                     # 400 bytes of float32
counted = traffic.measure(double, x)
(launch,) = counted.launches
print(f"{launch.kernel}: grid {launch.grid}, {launch.programs_run} programs")
print(f"loaded {counted.loaded} bytes ({counted.loaded_from(x)} from x), "
      f"stored {counted.stored} bytes ({counted.stored_to(counted.result)} to y)")
"""),
    ("md", r"""
Two programs of 64 elements, the second masked after 36: 400 bytes read, 400 written, as it
should be. Now the course's first W4A16 kernels (`qcourse.kernels.triton_w4a16_v1`), the ones
timed on an H100 in section 9. They read the checkpoint layout `qweight [K/8, N]`. Their GEMM
path (M ≥ 16) dequantizes a `[BLOCK_K, BLOCK_N]` tile of `W'ᵀ` per step; look at its loads:
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16_v1.w4a16_gemm_kernel.fn))
"""),
    ("md", r"""
**Exercise 07.4.** Predict from the `words = tl.load(...)` line, then let the counter measure.
"""),
    ("code", r"""
print(ex07.gemm_word_loads.prompt)
gemm_word_loads = ...  # a number
ex07.gemm_word_loads.check(gemm_word_loads);
"""),
    ("code", r"""
def show(r):
    print(f"{r.kernel} kernels, M = {r.m}, {r.n}x{r.k}, g = {r.group_size}: {'; '.join(r.launches)}")
    for name, (req, ideal) in r.parts.items():
        print(f"  {name:8} requested {req / 1e3:9.1f} kB   ideal {ideal / 1e3:8.1f} kB   "
              f"x{req / ideal:6.2f}")
    print(f"  qweight + scales + zeros: x{r.weight_ratio:.3f} of ideal")

show(requested_bytes("old", 16, 256, 1024, 128, sample=False))
"""),
    ("md", r"""
Every word is asked for 8 times (once per nibble row of the tile), and a scale and a zero for
every single weight: 128 times each per group of 128. The kernel asks for 8 bytes per weight
where 0.53 would do (×15.06). x is read once per block of 64 outputs, as any tiling must, and y
through float32 atomic adds (split-K, section 5).

The GEMV path (M < 16) loads each word once. Read its scale and zero loads:
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16_v1.w4a16_gemv_kernel.fn))
"""),
    ("md", r"""
**Exercise 07.5.** Predict what the counter will report for the GEMV's weight bytes.
"""),
    ("code", r"""
print(ex07.old_gemv_ratio.prompt)
old_gemv_ratio = ...  # a number
ex07.old_gemv_ratio.check(old_gemv_ratio);
"""),
    ("code", r"""
show(requested_bytes("old", 1, 256, 1024, 128, sample=False))
"""),
    ("md", r"""
×1.88: the scales and zeros, a sixteenth of the weight's bytes, were asked for 16 times each, as
many bytes as the codes themselves. And for M = 2..15 rows the GEMV's grid has one program per
row of x, each reading the whole weight again.

## 5. The redesign: ask for each byte once

The problem needs each code, scale and zero once. The redesigned kernels
(`qcourse.kernels.triton_w4a16`) are built around that:

* **The layout of section 3**: a program owning `BLOCK_N` outputs reads each output's codes as a
  contiguous run along K, 128-bit loads of 4 words (32 inputs) at a time.
* **A step lies inside one group**: a program walks its slice of K in steps of `BLOCK_K` inputs,
  a power of two dividing g (`step_size`), so each step needs *one* scale and *one* zero per
  output, loaded once (once per group when `BLOCK_K = g`).
* **Each word is loaded once and unpacked in registers**, nibble by nibble (shift and mask). The
  codes become floats without a conversion instruction: OR-ed into the mantissa of 2²³ the bits
  read as the float 2²³ + q (`codes`).
* **All rows of x share one read of the weight**: the GEMM (`tl.dot`, at least 16 rows) masks
  the rows beyond M instead of launching the GEMV once per row.

```
   old GEMM step (words [BLOCK_K, BLOCK_N])      new step (words [BLOCK_N, BLOCK_K/8])
   k=0 | w00 w01 ... |  <- word row 0            n=0 | w00 w01 ... w0F |  one contiguous run
   k=1 | w00 w01 ... |  <- the same words again  n=1 | w10 w11 ... w1F |  per output, each word
   ...   (8 times)                                ...                      once; 1 scale, 1 zero
   k=8 | w10 w11 ... |  scale, zero per element                           per output per step
```

The step's loads are one function, shared by both kernels:
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.load_step.fn))
print(inspect.getsource(triton_w4a16.codes.fn))
"""),
    ("md", r"""
**GEMV (M = 1, decoding).** The nibble loop multiplies the codes of nibble `j` of every word by
the inputs `k0 + 8i + j`. Since `Σ_k (q − zero)·scale·x = scale·(Σ q·x − zero·Σ x)` within a
group, the zero point and the scale leave the inner loop: per weight, a shift, a mask-and-or, a
subtraction and a multiply-add. Too few programs for the SMs (32 blocks of 128 outputs at N =
4096)? K is split into slices (**split-K**, [Hoque et al. 2024](https://arxiv.org/abs/2402.00025))
whose partial sums meet in a float32 `y` through `tl.atomic_add`.
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.w4a16_gemv_kernel.fn))
"""),
    ("md", r"""
**GEMM (M ≥ 2).** The same step, unpacked into a `[BLOCK_N, BLOCK_K]` tile of `W'`, rounded to
x's dtype and multiplied on the tensor cores with `tl.dot`, accumulating in float32:
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.w4a16_gemm_kernel.fn))
"""),
    ("md", r"""
Run both on small shapes (on a CPU: in the interpreter) and compare with the PyTorch reference,
which dequantizes the whole weight and calls an ordinary matmul. The shapes are deliberately not
multiples of the tiles, and M is odd.
"""),
    ("code", r"""
def w4_demo(m, n, k, g, dtype):
    W = torch.randn(n, k, device=device)
    x = torch.randn(m, k, device=device).to(dtype)
    packed = kernels.prepare_w4a16(W, g)
    y = kernels.w4a16_matmul(x, *packed, group_size=g)
    y_ref = kernels.w4a16_reference(x, *packed, group_size=g)
    rel_kernel = ((y.float() - y_ref.float()).abs().max() / y_ref.float().abs().max()).item()
    rel_quant = ((y.float() - x.float() @ W.t()).norm() / (x.float() @ W.t()).norm()).item()
    path = "GEMV" if m == 1 else "GEMM"
    print(f"M={m:3d} N={n:4d} K={k:4d} g={g:3d} {str(dtype):15} {path}: kernel vs reference "
          f"{rel_kernel:.0e}, vs unquantized x·Wᵀ {rel_quant:.2f}")

for m, n, k, g, dtype in [(1, 200, 384, 128, torch.float16), (3, 96, 160, 32, torch.bfloat16),
                          (33, 136, 192, 64, torch.float16), (1, 72, 256, 64, torch.float32)]:
    w4_demo(m, n, k, g, dtype)
"""),
    ("md", r"""
The kernel agrees with the reference within the rounding of the output dtype (relative to the
largest output: below 1e-3 in fp16, below 1e-2 in bf16, about 1e-6 or less in fp32); the
0.08–0.10 relative difference from the unquantized product is the 4-bit quantization error
itself, which no kernel removes.

Wrong inputs are refused before any launch, with a message saying what is accepted:
"""),
    ("code", r"""
x = torch.randn(2, 160, device=device, dtype=torch.float16)
qweight, scales, zeros = kernels.prepare_w4a16(torch.randn(96, 160, device=device), 32)
for label, args in [("K mismatch", (x[:, :128], qweight, scales, zeros, 32)),
                    ("group size", (x, qweight, scales, zeros, 12)),
                    ("int activations", (x.int(), qweight, scales, zeros, 32))]:
    try:
        kernels.w4a16_matmul(*args)
    except (ValueError, TypeError) as err:
        print(f"{label:16} -> {type(err).__name__}: {err}")
"""),
    ("md", r"""
Now the question the redesign set out to answer. The counter runs the kernels with the launch an
H100 (132 SMs) would get; on Llama-8B-sized layers it runs only the first, one interior and the
last program along each axis of the grid (`traffic.estimate`, exact for such rectangular tilings:
`benchmarks/kernel_traffic.py` checks it against the full count first). One layer live:
"""),
    ("code", r"""
for m in (1, 16):
    for kernel in ("old", "new"):
        show(requested_bytes(kernel, m, 4096, 4096, 128))
"""),
    ("md", r"""
The new kernels ask for the codes, scales and zeros exactly once (×1.000), at M = 1 and at M = 16,
where the old ones asked for ×1.88 and ×15.06. x is asked for once per block of outputs, which at
M = 16 is as many bytes as the weight: x is only 131 kB, so those repeats come from the L2 cache,
and wider blocks (an autotuning choice) ask for fewer. All three layer shapes, as recorded by
`python benchmarks/kernel_traffic.py`:
"""),
    ("code", r"""
results_dir = record.RESULTS_DIR
counts = record.read(sorted(results_dir.glob("kernel_traffic-*.json"))[-1])
print(f"recorded {counts['date'][:10]} (triton {counts['versions']['triton']}, as launched on a {counts['sms']}-SM H100)")
print(f"{'N x K':>12} {'M':>3} {'old':>8} {'new':>8}   (requested / ideal bytes of qweight + scales + zeros)")
for n, k in sorted({(r["N"], r["K"]) for r in counts["rows"]}):
    for m in (1, 16):
        ratio = {r["kernel"]: r["weight_ratio"] for r in counts["rows"]
                 if (r["N"], r["K"], r["M"]) == (n, k, m)}
        print(f"{n:5d}x{k:<6d} {m:3d} {ratio['old']:7.3f}x {ratio['new']:7.3f}x")
print("\n".join(counts["targets"]))
"""),
    ("md", r"""
Asking for the right bytes is necessary, not sufficient: the GPU must also keep enough loads in
flight and spend few instructions per weight. Those are measured on a GPU (section 9), where
`benchmarks/kernels.py` also autotunes the tile width, the number of K slices and the pipeline
depth (`triton_w4a16.candidate_configs`). The kernels already compile for an H100 here, on the CPU
(`tests/test_kernels.py` asks Triton for sm_90 code and checks it uses 128-bit loads and the
tensor cores).

## 6. W8A8 in Triton: integer GEMM, scales in the epilogue

W8A8 quantizes weights *and* activations to int8. SmoothQuant ([Xiao et al.
2023](https://arxiv.org/abs/2211.10438)) runs it with the coarsest scales: one scale for a whole
weight matrix (per-tensor, in all its settings O1–O3) and, for the activations, one scale per
token computed at run time (O1) or one per tensor (O2 dynamic, O3 static). Finer scales, one per
token `s_x[m]` and one per output channel `s_w[n]` (LLM.int8()'s vector-wise quantization), cost
the kernel nothing more: both are constant along K, so they factor out of the sum (as the zero
point and scale of one group did in the GEMV above):

$$ y_{mn} = \sum_k s_x[m]\,x_q[m,k]\; s_w[n]\,w_q[n,k] = s_x[m]\,s_w[n] \sum_k x_q[m,k]\,w_q[n,k] $$

A per-tensor scale is the special case of one value for every m (or n). The loop is a pure
int8 × int8 → int32 GEMM (exact), and the scales are applied once per output at the end (the
*epilogue*). Per-group scales (along K) would not factor out like this. The kernel takes either
kind; below, SmoothQuant's O1 (per-token × per-tensor) and the per-token × per-channel scheme on
the same random x and W (no smoothing here: the error is that of the scales alone).
"""),
    ("code", r"""
print(inspect.getsource(triton_w8a8.w8a8_kernel.fn))
from qcourse.quant import quantize

x, W = torch.randn(20, 200, device=device), torch.randn(72, 200, device=device)
xq, xs, _ = quantize(x, 8, symmetric=True, granularity="channel", axis=0)   # per token
for label, granularity in [("O1: per-token x, per-tensor W ", dict(granularity="tensor")),
                           ("per-token x, per-channel W   ", dict(granularity="channel", axis=0))]:
    wq, ws, _ = quantize(W, 8, symmetric=True, **granularity)
    y = kernels.w8a8_matmul(xq, wq, xs.reshape(-1), ws.reshape(-1), out_dtype=torch.float32)
    y_ref = kernels.w8a8_reference(xq, wq, xs.reshape(-1), ws.reshape(-1), out_dtype=torch.float32)
    print(f"{label}: {ws.numel():2d} weight scale(s); kernel == reference: {torch.equal(y, y_ref)}; "
          f"error vs fp32 x·Wᵀ: {((y - x @ W.t()).norm() / (x @ W.t()).norm()).item():.4f}")
"""),
    ("md", r"""
## 7. The same GEMV in CUDA C

Triton hides threads; CUDA C shows them. In `w4a16_gemv.cu` **one warp computes one output**:
its 32 lanes take turns over chunks of 32 inputs, each chunk one 128-bit load of 4 words, so a
warp's load instruction reads 512 contiguous bytes of the output's row; a chunk lies in one group
(g a multiple of 32), so one scale and one zero serve it. The lane dequantizes two weights per
instruction in `half2` (or `bfloat162`) arithmetic, with the magic-number trick in fp16: OR-ed
into the mantissa of 1024.0, a code reads as 1024 + q. Each lane sums its products in float32,
then the warp adds its 32 partial sums with 5 shuffles (a *warp reduction*) and one lane adds the
total into `y`. The per-lane arithmetic is a `__host__ __device__` function, so the tests compile
it with nvcc and run it on the CPU against the reference, and check the compiled code for the
128-bit loads, the shuffles and the `f16x2` instructions; on a GPU,
`torch.utils.cpp_extension.load_inline` compiles it at first use.
"""),
    ("code", r"""
print(cuda_kernel.source())
"""),
    ("code", r"""
if backend.gpu:
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    packed = kernels.prepare_w4a16(torch.randn(4096, 4096, device="cuda"), 128)
    try:
        y_cuda = cuda_kernel.w4a16_gemv(x, *packed, group_size=128)   # compiles on first use (~1 min)
        y_ref = kernels.w4a16_reference(x, *packed, group_size=128)
        print("CUDA vs reference, max |diff|:", (y_cuda.float() - y_ref.float()).abs().max().item())
    except Exception as err:   # e.g. no CUDA compiler in this runtime
        print(f"the CUDA kernel could not be built here: {type(err).__name__}: {err}")
else:
    print("No GPU here: the CUDA kernel is not compiled. tests/test_kernels.py compiles it with "
          "nvcc (when present) and runs its arithmetic on the host.")
"""),
    ("md", r"""
## 8. A quantized `qcourse-tiny` through the kernels

`QuantLinear` (the layer every weight-only method stores into) holds the GPTQ checkpoint layout.
`kernels.use_kernels(model)` routes each 4-bit layer through `quantlinear_forward`, which converts
the layer to the kernels' layout once (`layout.from_checkpoint`, cached, as a server repacks a
checkpoint at load time) and calls the Triton kernel on a GPU, the reference on a CPU.
"""),
    ("code", r"""
model, tokenizer = models.load()
models.swap_linears(model, lambda name, linear: QuantLinear.from_float(linear, 4, 64))
model.to(device)
ids = torch.tensor([tokenizer.encode("def fibonacci(n):\n    return")], device=device)
with torch.no_grad():
    own = model(ids).logits
    routed = kernels.use_kernels(model)               # "auto": Triton on CUDA, reference on CPU
    through = model(ids).logits
    kernels.use_kernels(model, None)                  # back to QuantLinear's own forward
print(f"{len(routed)} layers routed; max |logit difference| = {(through - own).abs().max().item():.1e}")
"""),
    ("md", r"""
## 9. Measurements on a GPU

The first kernels were timed on an H100 (2026-11-27) by the benchmark of the time: fp16
`F.linear` (cuBLAS) against them on Llama-3-8B-sized layers, with `triton.testing.do_bench`
(median of CUDA-graph replays, the L2 cache flushed between runs), the bandwidth each reached
reported against the card's peak. Predict first:
"""),
    ("code", r"""
ex07.kernel_vs_fp16.show()
kernel_vs_fp16 = ...  # a letter
ex07.kernel_vs_fp16.check(kernel_vs_fp16);
"""),
    ("code", r"""
old_run_file = results_dir / "kernels-nvidia-h100-80gb-hbm3-2026-11-27.json"
old_run = record.read(old_run_file)
print(f"THE OLD KERNELS (triton_w4a16_v1 and the first CUDA GEMV), recorded on {old_run['device']}, "
      f"{old_run['date'][:10]} (torch {old_run['versions']['torch']}, triton {old_run['versions']['triton']})")
print(f"{'kernel':13} {'M':>5} {'N x K':>12} {'us':>9} {'vs fp16':>8} {'% peak BW':>9}")
for r in old_run["rows"]:
    print(f"{r['kernel']:13} {r['M']:5d} {r['N']:5d}x{r['K']:<6d} {r['ms'] * 1e3:9.1f} "
          f"{r['speedup_vs_fp16']:7.2f}x {r.get('pct_peak_bandwidth', float('nan')):9.1f}")
print("\n".join(old_run["targets"]))
display(Image(filename=str(old_run_file.with_suffix(".png")), width=520))
"""),
    ("md", r"""
**Reading the old run honestly.** The W8A8 kernel beats fp16 at large M, where the int8 tensor
cores raise the compute roof (×1.15–1.58 at M ≥ 2048); at M ≤ 256 it is faster on the
14336×4096 layer only (×1.05–1.15) and slower on the two others (×0.55–0.72), although it moves
half fp16's weight bytes. The old W4A16 kernels are *slower* than fp16 where the roofline allows
3.76×: ×0.58–0.66 at M = 1 for Triton, ×0.42–0.56 for CUDA, and slower still at M ≥ 16. cuBLAS
streamed its fp16 weights at 42–64 % of the peak at M ≤ 256; at M = 1 the old W4A16 kernels
reached 6–10 % on the bytes they *needed*. Section 4 explains part of the gap: they asked for
×1.88 (GEMV) and ×15 (GEMM) those bytes, and the GEMV read the weight once per row of x (the CUDA
GEMV too: ×0.07–0.11 at M = 16). The rest is how they issued work, read from the code
(no profiler was at hand): a word-by-word dequantization with an int-to-float conversion per
weight, few loads in flight, and split-K's extra zeroing and cast kernels around each call.

**What production kernels do**, with their published figures:

* **Marlin** (IST-DASLab; Frantar et al. 2024) reaches "close to ideal (4x) speedups up to
  batchsizes of 16-32 tokens": the optimal 3.87× for 4-bit weights with g = 128 scales, on an
  NVIDIA A10 (its README's benchmarks). Weights *and* scales are reshuffled offline so each
  thread dequantizes straight into the tensor-core operand layout; loads are asynchronous with
  an evict-first policy; dequantization and tensor-core instructions are interleaved; a
  "striped" partition keeps every SM busy. Its README notes it is not yet optimized for Hopper.
* **Machete** (Neural Magic, vLLM's `csrc/quantization/machete`), "a spiritual successor to the
  Marlin kernel but optimized for Hopper architectures and based on Cutlass", prepacks the
  weights "to more closely match the tensor core layouts", applies zero points after the scales
  so that dequantization is one fused multiply-add, and uses Hopper's TMA and wgmma.
* **GemLite** (Mobius Labs) is, like ours, a set of Triton kernels (GEMV, GEMM, split-K GEMM),
  plus a "GEMV RevSplitK" that loads scales and zeros less often; its README notes the high
  launch overhead of Triton kernels for light workloads.
* **torchao's tinygemm** (`torch.ops.aten._weight_int4pack_mm`, weights repacked by
  `_convert_weight_to_int4pack`): with it, pytorch-labs/gpt-fast decodes Llama-2-7B at batch 1
  on an A100-80GB (power-limited to 330 W) at 196.80 tokens/s in int4 (g = 32) against 104.9 in
  bf16: ×1.88 end to end, at 862.69 GB/s of effective bandwidth against 1,397.31 for bf16.

The redesign took the first lessons: ask for each byte once, read runs of 128 bits, keep the
dequantization out of the inner loop where the algebra allows, share one read of the weight
among all rows. Its GPU run is **pending**: no GPU was available when it was written, so no speed
is claimed for it. `python benchmarks/kernels.py` on a GPU autotunes and times it against fp16
and tinygemm (issue 27's targets: at M = 1 ≥ 2.5× fp16 and ≥ 65 % of the peak bandwidth, at
M = 16 ≥ 1.8×, never slower than fp16 up to M = 64), and records the run here:
"""),
    ("code", r"""
runs = [record.read(p) for p in sorted(results_dir.glob("kernels-*.json"))]
new_runs = [run for run in runs if run.get("kernels", "").startswith("redesigned")
            and not run.get("cpu_check")]
if not new_runs:
    print("The redesigned kernels' GPU run is pending: no record yet in benchmarks/results/.")
for run in new_runs:
    print(f"THE REDESIGNED KERNELS, recorded on {run['device']}, {run['date'][:10]}")
    for r in run["rows"]:
        if "error" not in r:
            print(f"{r['kernel']:14} M={r['M']:3d} {r['N']:5d}x{r['K']:<6d} {r['ms'] * 1e3:8.1f} us "
                  f"{r['speedup_vs_fp16']:6.2f}x {r.get('pct_peak_bandwidth', float('nan')):6.1f}% of peak")
    print("\n".join(run["targets"]))
"""),
    ("code", r"""
if backend.gpu:   # live, on this GPU: fp16 against the redesigned kernels, default launches
    import torch.nn.functional as F
    W = torch.randn(4096, 4096, device="cuda") * 0.02
    packed = kernels.prepare_w4a16(W, 128)
    W = W.half()
    print(f"{torch.cuda.get_device_name()}, 4096x4096, g = 128 (CUDA-graph replays, median):")
    for m in (1, 16):
        x = torch.randn(m, 4096, device="cuda", dtype=torch.float16)
        t16 = timing.graph_ms(lambda: F.linear(x, W))
        line = f"  M = {m:2d}: fp16 {t16 * 1e3:7.1f} us"
        calls = {"Triton": lambda: kernels.w4a16_matmul(x, *packed, group_size=128),
                 "CUDA": lambda: cuda_kernel.w4a16_gemv(x, *packed, group_size=128)}
        for name, call in calls.items():
            try:
                t = timing.graph_ms(call)
                line += f" | {name} {t * 1e3:7.1f} us (x{t16 / t:.2f})"
            except Exception as err:
                line += f" | {name}: {type(err).__name__}"
        old = {r["kernel"]: r["speedup_vs_fp16"] for r in old_run["rows"]
               if (r["M"], r["N"], r["K"]) == (m, 4096, 4096)}
        print(line + f" | old kernels on the H100: Triton x{old['w4a16_triton']:.2f}, "
              f"CUDA x{old['w4a16_cuda']:.2f}")
else:
    print("No GPU here: no live timing (the interpreter's times mean nothing). On a GPU runtime "
          "(Colab's T4 included) this cell times fp16 and the redesigned kernels.")
"""),
    ("md", r"""
Stuck on an exercise? Every question has progressive hints: `ex07.memory_bound.hint()`, then
`ex07.memory_bound.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## Summary

* Time ≥ max(bytes / bandwidth, FLOPs / peak). Decoding (M = 1) does ~1 FLOP per byte against a
  ridge of ~300 FLOP/byte on an H100: it is memory-bound, so **fewer bytes means faster**.
* W4A16 cuts the bytes ~3.8× (4.25 bits per weight with g = 128 fp16 scales and zeros): the
  bound on its speed-up at small M. Past the ridge W8A8's int8 tensor cores raise the roof.
* **Count what your kernel asks memory for, then compare with the roofline.** Triton's
  interpreter sees every load; `traffic.measure` adds up the bytes per tensor. The course's first
  kernels asked for ×1.88 (GEMV) and ×15 (GEMM) the weight's bytes, and were measured slower
  than fp16 on an H100.
* The redesign asks for each code, scale and zero exactly once (×1.000 at M = 1 and 16 on
  Llama-sized layers): a K-major layout read in 128-bit runs, steps inside one group, words
  unpacked in registers, zero and scale factored out of the GEMV's inner sum, one read of the
  weight for up to 16 rows. The CUDA GEMV does the same with a warp per output, half2
  dequantization and a warp reduction. Their GPU timing is pending.
* Production kernels (Marlin, Machete, GemLite, tinygemm) go further: layouts matched to the
  tensor cores, asynchronous loads, and work spread over every SM without extra kernels.

## Sources

* S. Williams, A. Waterman, D. Patterson, *Roofline: An Insightful Visual Performance Model for
  Multicore Architectures*, CACM 52(4), 2009. doi:10.1145/1498765.1498785.
* NVIDIA spec sheets for the table: H100 (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet),
  H200, A100, L40S, L40, L4, A10, T4 (nvidia.com/en-us/data-center/…); links in `qcourse.kernels.roofline.GPUS`.
* P. Tillet, H. T. Kung, D. Cox, *Triton: an intermediate language and compiler for tiled neural
  network computations*, MAPL 2019. doi:10.1145/3315508.3329973.
* E. Frantar et al., *GPTQ*, 2022. arXiv:2210.17323. Its checkpoints (as AutoGPTQ and GPTQModel
  write them, and transformers loads them): int32 words packed along K.
* A. Hoque et al., *Accelerating a Triton Fused Kernel for W4A16 Quantized Inference with SplitK
  Work Decomposition*, 2024. arXiv:2402.00025.
* G. Xiao et al., *SmoothQuant*, ICML 2023 (W8A8 with per-tensor weight scales; per-token (O1) or
  per-tensor (O2, O3) activation scales). arXiv:2211.10438.
* T. Dettmers et al., *LLM.int8()*, 2022 (vector-wise quantization: a scale per row of x and per
  output of W). arXiv:2208.07339.
* AutoAWQ (casper-hansen/AutoAWQ, 0.2.9): `awq/modules/linear/gemm.py` (`WQLinear_GEMM`, packing
  along N in the order 0 2 4 6 1 3 5 7).
* E. Frantar et al., *MARLIN: Mixed-Precision Auto-Regressive Parallel Inference on Large Language
  Models*, 2024. arXiv:2408.11743; github.com/IST-DASLab/marlin README (techniques, A10 benchmarks).
* Machete: vLLM, `csrc/quantization/machete/Readme.md` (github.com/vllm-project/vllm).
* GemLite: github.com/mobiusml/gemlite README.
* torchao int4 tinygemm through pytorch-labs/gpt-fast: README benchmarks and `quantize.py`
  (`_convert_weight_to_int4pack`, `_weight_int4pack_mm`).
* NVIDIA, *CUDA C++ Programming Guide*, "Arithmetic Instructions" throughput table (16
  int-to-float conversions per clock per SM on compute capability 8.x/9.0).
"""),
]

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS)
