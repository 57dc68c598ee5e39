"""Source of notebooks/07_kernels.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 07 · Kernels: Triton and CUDA, and the roofline

A 4-bit model is 4× smaller than its fp16 original. Whether it is also *faster* depends on the
code that multiplies with it: a **kernel** that reads the packed integers, turns them back into
numbers (dequantizes) and multiplies, all inside the GPU's registers. This notebook builds two
such kernels in Triton and one in CUDA C, shows when such kernels can win and by how much, and
why ours, measured on an H100, do not (yet).

**Learning goals.** After this notebook you can
1. explain with the roofline model why generating text one token at a time is limited by memory
   bandwidth, not arithmetic, using the spec-sheet numbers of real GPUs;
2. count the bytes a matrix-vector product moves in fp16, W8A8 and W4A16, and so bound the
   speed-up weight-only quantization can give;
3. read the packed GPTQ layout (8 four-bit codes per int32) and map it to a kernel's loads;
4. follow a Triton W4A16 kernel line by line (tiled `tl.dot` GEMM and split-K GEMV) and a
   Triton W8A8 kernel, and run them in Triton's CPU interpreter;
5. compare with the same GEMV written in CUDA C, read recorded GPU measurements, and explain from
   the roofline and the kernels' memory traffic why these first kernels are *slower* than fp16,
   and what production kernels (Marlin, Machete, GemLite, torchao's tinygemm) do differently.
"""),
    ("code", r"""
%matplotlib inline
import inspect
import json
import os
import pathlib

import torch

GPU = torch.cuda.is_available()
if not GPU:
    # No GPU: run Triton kernels in its CPU interpreter. This must be set before triton is
    # imported (qcourse imports triton only when a Triton kernel is first used).
    os.environ["TRITON_INTERPRET"] = "1"

import matplotlib.pyplot as plt
import triton

import qcourse
from qcourse import kernels, models
from qcourse.exercises import ex07
from qcourse.kernels import cuda as cuda_kernel, layout, roofline, triton_w4a16, triton_w8a8
from qcourse.layers import QuantLinear

torch.manual_seed(0)
torch.set_num_threads(2)
device = "cuda" if GPU else "cpu"
print(f"triton {triton.__version__}, torch {torch.__version__}, running kernels on "
      f"{torch.cuda.get_device_name() if GPU else 'the CPU (Triton interpreter)'}")
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

**Exercise 07.3.** Before the table below classifies a few batch sizes, write the test. Replace
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

W4A16 keeps activations in fp16 but stores weights as 4-bit codes plus one scale and one zero
point per group of `g` inputs: `N·K/2 + 2·2·N·K/g` bytes instead of `2·N·K`. W8A8 stores weights
*and* activations in int8 and uses the int8 tensor cores (twice the fp16 peak on these cards).
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
The left plot is the roofline: decode (M = 1) sits at 1 FLOP/byte, deep on the sloped,
memory-bound part. The right plot is the consequence: at small M a W4A16 kernel can be up to
~3.8× faster than fp16 (4× fewer weight bytes, minus the scales and zeros), and the advantage
fades once M passes the ridge, where W8A8's int8 tensor cores take over. Real kernels reach
a fraction of these bounds; that fraction is what the benchmark in section 8 measures.

## 3. The packed layout the kernels read

`prepare_w4a16(W, g)` quantizes with the course's own `qcourse.quant.quantize` (asymmetric 4-bit,
per group of `g` inputs) and packs with `qcourse.pack.pack_int32`: the GPTQ/AWQ checkpoint layout,
8 four-bit codes per int32 word along K.

**Exercise 07.1.** Read one word by hand before the layout module is shown.
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
W = torch.randn(4, 16)                       # N = 4 outputs, K = 16 inputs
qweight, scales, zeros = kernels.prepare_w4a16(W, group_size=8)
print("qweight", tuple(qweight.shape), qweight.dtype, " scales", tuple(scales.shape), scales.dtype,
      " zeros", tuple(zeros.shape))
word = int(qweight[1, 2]) & 0xFFFFFFFF       # word row i = 1 holds inputs k = 8..15 of output n = 2
nibbles = [(word >> (4 * j)) & 0xF for j in range(8)]
print(f"qweight[1, 2] = 0x{word:08X} -> nibbles (j = 0..7): {nibbles}")
print(f"dequantized: {[round((q - zeros[1, 2].item()) * scales[1, 2].item(), 3) for q in nibbles]}")
print(f"W[2, 8:16]:  {[round(v, 3) for v in W[2, 8:16].tolist()]}")
"""),
    ("md", r"""
Why this layout suits a kernel:

* **Packed along K.** One 32-bit load brings 8 consecutive inputs of one output, the unit of work
  of a dot product. All 8 fall in the same group (g is a multiple of 8), so one scale and one zero
  serve the whole word.
* **N last (row-major `[K/8, N]`).** GPU threads that compute neighbouring outputs `n` read
  neighbouring words: a warp of 32 threads reads 128 contiguous bytes, one coalesced transaction
  carrying 256 weights.
* In a tile of `BLOCK_K` inputs, input `k` lives in word row `k // 8` at bit `4·(k % 8)`, and its
  group is `k // g`. These three integer expressions are all the kernel needs to find its data.

## 4. The Triton W4A16 kernel

Triton ([Tillet et al. 2019](https://doi.org/10.1145/3315508.3329973)) programs a *block* of
threads as if it were one thread working on small arrays (tiles); the compiler maps the tiles to
threads, registers, shared memory and tensor cores. The dequantization is one helper, the formula
`W' = (q - zero) · scale` written out:
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.dequantize_nibbles.fn))
"""),
    ("md", r"""
**GEMM path (M ≥ 16).** Each program computes a `BLOCK_M × BLOCK_N` tile of `y`. For each step of
`BLOCK_K` inputs it loads the activations, loads the words holding rows `ks` of `W'ᵀ`, the scales
and zeros of each row's group, dequantizes, rounds to the activation dtype and multiplies on the
tensor cores with `tl.dot`, accumulating in fp32. Masks (`< M`, `< N`, `< k_end`) handle sizes that are not
multiples of the tiles. When M is small there are few tiles, so K is split into slices as in the
GEMV below (`SPLIT_K`), each slice adding its partial tile into a float32 output.
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.w4a16_gemm_kernel.fn))
"""),
    ("md", r"""
Read the `words = tl.load(...)` line: a question about its memory traffic, which section 8 comes
back to.
"""),
    ("code", r"""
print(ex07.gemm_word_loads.prompt)
gemm_word_loads = ...  # a number
ex07.gemm_word_loads.check(gemm_word_loads);
"""),
    ("md", r"""
**GEMV path (M < 16).** `tl.dot` needs at least 16 rows, and with one row there is nothing to
reuse: the job is to stream the weight through the chip once, as fast as DRAM allows. Each program
takes `BLOCK_N` outputs of one row and a slice of K, loads each word **once**, and unrolls its
8 nibbles (`tl.static_range(8)`). One row of a 4096-wide layer gives only 32 programs of 128
outputs, too few to keep 132 SMs busy, so K is split into slices too (**split-K**,
[Hoque et al. 2024](https://arxiv.org/abs/2402.00025)) and the partial sums are added with
`tl.atomic_add`.
"""),
    ("code", r"""
print(inspect.getsource(triton_w4a16.w4a16_gemv_kernel.fn))
print(inspect.getsource(triton_w4a16.launch_gemv))
"""),
    ("md", r"""
Run both paths on small shapes (on the CPU this is Triton's interpreter: numpy executing the
tiles, slow but exact) and compare with the PyTorch reference, which dequantizes the whole weight
and calls an ordinary matmul. The shapes are deliberately not multiples of the tile sizes.
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
    path = "GEMV" if m <= triton_w4a16.GEMV_MAX_M else "GEMM"
    print(f"M={m:3d} N={n:4d} K={k:4d} g={g:3d} {str(dtype):15} {path}: kernel vs reference "
          f"{rel_kernel:.0e}, vs unquantized x·Wᵀ {rel_quant:.2f}")

for m, n, k, g, dtype in [(1, 200, 384, 128, torch.float16), (3, 96, 160, 32, torch.bfloat16),
                          (33, 136, 192, 64, torch.float16), (16, 72, 256, 128, torch.float32)]:
    w4_demo(m, n, k, g, dtype)
"""),
    ("md", r"""
The kernel agrees with the reference to the rounding of the output dtype (fp16: ~1e-3, bf16:
~1e-2, relative to the largest output); the ~0.1 relative difference from the unquantized product
is the 4-bit quantization error itself, which no kernel removes.

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
## 5. W8A8 in Triton: integer GEMM, scales in the epilogue

SmoothQuant-style W8A8 ([Xiao et al. 2023](https://arxiv.org/abs/2211.10438)) quantizes
activations per token (`s_x[m]`) and weights per output channel (`s_w[n]`). Both scales are
constant along K, so they factor out of the sum:

$$ y_{mn} = \sum_k s_x[m]\,x_q[m,k]\; s_w[n]\,w_q[n,k] = s_x[m]\,s_w[n] \sum_k x_q[m,k]\,w_q[n,k] $$

The loop is a pure int8 × int8 → int32 GEMM (exact), and the scales are applied once per output
at the end (the *epilogue*). Per-group scales would not factor out like this.
"""),
    ("code", r"""
print(inspect.getsource(triton_w8a8.w8a8_kernel.fn))
from qcourse.quant import quantize

x, W = torch.randn(20, 200, device=device), torch.randn(72, 200, device=device)
xq, xs, _ = quantize(x, 8, symmetric=True, granularity="channel", axis=0)   # per token
wq, ws, _ = quantize(W, 8, symmetric=True, granularity="channel", axis=0)   # per output channel
y = kernels.w8a8_matmul(xq, wq, xs.reshape(-1), ws.reshape(-1), out_dtype=torch.float32)
y_ref = kernels.w8a8_reference(xq, wq, xs.reshape(-1), ws.reshape(-1), out_dtype=torch.float32)
print(f"kernel == reference: {torch.equal(y, y_ref)};  error vs fp32 x·Wᵀ: "
      f"{((y - x @ W.t()).norm() / (x @ W.t()).norm()).item():.3f}")
"""),
    ("md", r"""
## 6. The same GEMV in CUDA C

Triton hides threads; CUDA C shows them. In `w4a16_gemv.cu` **one thread computes one output
column `n`** over one slice of K: it loads a word, unpacks its 8 nibbles with shifts and masks,
and accumulates `x[8i + j] · (q_j − zero) · scale`. Compare with the Triton GEMV above: the
formula and the layout are the same; what Triton calls a tile of `BLOCK_N` outputs is here a
block of 128 threads, and the split-K slices are `blockIdx.y`. The arithmetic is a
`__host__ __device__` function, so the tests compile it with nvcc and run it on the CPU against
the reference; on a GPU, `torch.utils.cpp_extension.load_inline` compiles it at first use.
"""),
    ("code", r"""
print(cuda_kernel.source())
"""),
    ("code", r"""
if GPU:
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    packed = kernels.prepare_w4a16(torch.randn(4096, 4096, device="cuda"), 128)
    y_cuda = cuda_kernel.w4a16_gemv(x, *packed, group_size=128)    # compiles on first use (~1 min)
    y_ref = kernels.w4a16_reference(x, *packed, group_size=128)
    print("CUDA vs reference, max |diff|:", (y_cuda.float() - y_ref.float()).abs().max().item())
else:
    print("No GPU here: the CUDA kernel is not compiled. tests/test_kernels.py compiles it with "
          "nvcc (when present) and runs its arithmetic on the host.")
"""),
    ("md", r"""
## 7. A quantized `qcourse-tiny` through the kernels

`QuantLinear` (the layer every weight-only method stores into) holds exactly the GPTQ layout.
`kernels.use_kernels(model)` routes each 4-bit layer through `quantlinear_forward`, which unpacks
the zero points once and calls the Triton kernel on a GPU, the reference on a CPU.
"""),
    ("code", r"""
model, tokenizer = models.load()
models.swap_linears(model, lambda name, linear: QuantLinear.from_float(linear, 4, 64))
ids = torch.tensor([tokenizer.encode("def fibonacci(n):\n    return")])
with torch.no_grad():
    own = model(ids).logits
    routed = kernels.use_kernels(model)               # "auto": Triton on CUDA, reference on CPU
    through = model(ids).logits
    kernels.use_kernels(model, None)                  # back to QuantLinear's own forward
print(f"{len(routed)} layers routed; max |logit difference| = {(through - own).abs().max().item():.1e}")
"""),
    ("md", r"""
## 8. Measurements on a GPU

`python benchmarks/kernels.py` times each kernel against fp16 `F.linear` (cuBLAS) on
Llama-3-8B-sized layers (4096×4096, 14336×4096, 4096×14336) for M = 1, 16, 64, 256 (and
2048, 4096 for W8A8), with `triton.testing.do_bench`, reports the bandwidth reached against the
card's peak, and records each run in `benchmarks/results/` with the device, versions and date.
The benchmark also checks the targets these kernels were written for (W4A16 at M = 1 at least
2.5× faster than fp16 at ≥ 65 % of peak bandwidth; at M = 16 at least 1.8×; W8A8 at M ≥ 2048 at
least 1.3×) and prints PASS or MISS for each. Predict first:
"""),
    ("code", r"""
ex07.kernel_vs_fp16.show()
kernel_vs_fp16 = ...  # a letter
ex07.kernel_vs_fp16.check(kernel_vs_fp16);
"""),
    ("code", r"""
results_dir = pathlib.Path(qcourse.__file__).resolve().parent.parent / "benchmarks" / "results"
recorded = sorted(results_dir.glob("kernels-*.json"))
if not recorded:
    print("No GPU results are recorded yet: this course's kernels have only been tested on a CPU\n"
          "(Triton interpreter, nvcc compile-only). Run `python benchmarks/kernels.py` on a GPU to\n"
          "record some; they will be shown here.")
for path in recorded:
    run = json.loads(path.read_text())
    print(f"\n{path.name}: recorded on {run['device']}, {run['date'][:10]} "
          f"(torch {run['torch']}, triton {run['triton']}, CUDA {run['cuda']})")
    print(f"{'kernel':13} {'M':>5} {'N x K':>12} {'us':>9} {'vs fp16':>8} {'% peak BW':>9}")
    for r in run["rows"]:
        print(f"{r['kernel']:13} {r['M']:5d} {r['N']:5d}x{r['K']:<6d} {r['ms'] * 1e3:9.1f} "
              f"{r['speedup_vs_fp16']:7.2f}x {r.get('pct_peak_bandwidth', float('nan')):9.1f}")
    print("\n".join(run["targets"]))
"""),
    ("md", r"""
**Reading it honestly.** The W8A8 kernel beats fp16 at large M, where the int8 tensor cores raise
the compute roof (×1.15–1.58 at M ≥ 2048; its target of ×1.3 is met in 4 of the 6 cases). The
W4A16 kernels miss theirs by far: at M = 1, where the roofline allows 3.76× (section 2), they are
*slower* than fp16 (×0.58–0.66 for Triton, ×0.42–0.56 for CUDA), and at M ≥ 16 slower still. The roofline says why this is not the memory's fault: divide the bytes
each kernel must move by its recorded time.
"""),
    ("code", r"""
run = json.loads(recorded[-1].read_text())
peak = run["gpu_spec"]["bandwidth_gbs"]
print(f"M = 1 on {run['device']} (peak {peak} GB/s): bytes each kernel must move / its time")
print(f"{'kernel':13} {'N x K':>12} {'MB':>6} {'us':>7} {'GB/s':>6} {'% peak':>7} "
      f"{'us at cuBLAS GB/s':>18}")
for r in [r for r in run["rows"] if r["M"] == 1]:
    cublas = next(c for c in run["rows"] if c["kernel"] == "fp16_linear" and c["M"] == 1
                  and (c["N"], c["K"]) == (r["N"], r["K"]))
    at_cublas_speed = r["bytes"] / (cublas["bytes"] / cublas["ms"])          # ms
    print(f"{r['kernel']:13} {r['N']:5d}x{r['K']:<6d} {r['bytes'] / 1e6:6.1f} {r['ms'] * 1e3:7.1f} "
          f"{r['bytes'] / r['ms'] / 1e6:6.0f} {r['pct_peak_bandwidth']:6.1f}% "
          f"{at_cublas_speed * 1e3:18.1f}")
"""),
    ("md", r"""
cuBLAS streams its fp16 weights at 43–64 % of the peak; our W4A16 kernels move their 4× fewer
bytes at only 6–10 %. Had they streamed at cuBLAS's rate, they would take the last column's time,
about a quarter of fp16's. So they are neither memory-bound nor compute-bound (the arithmetic of
a GEMV is negligible on this card): they are bound by how they issue work. Reading the kernels of
sections 4 and 6 line by line shows where (read from the code, not profiled: no GPU was at hand
for Nsight Compute; the recorded bandwidth is the symptom these add up to):

* **Redundant loads.** The GEMM path loads each int32 word once per nibble row, 8 times per tile
  step (exercise 07.5), and a scale and a zero *per element* of the `[BLOCK_K, BLOCK_N]` tile, where
  one per group and column would do; and every tile of M rows dequantizes the same weights again
  (4 tiles at M = 256). The GEMV path loads each word once, but its `[16, 128]` scale and zero
  tiles repeat the same group 16 times per step, and each row of x (M up to 15) launches its own
  programs that read the whole weight again.
* **Dequantization on the CUDA cores, weight by weight.** Shift, mask, int-to-float, subtract,
  multiply, round to fp16 and back to fp32, then a multiply-add: several instructions per weight,
  in the loop that should only be streaming memory.
* **Few bytes in flight.** A GEMV step loads one 8 KB tile of words, then computes on it; the
  launch asks for no extra pipeline stages (`num_stages`) and no asynchronous copies, and splits
  K only until the SMs have one program each, so too few loads are outstanding to hide the memory
  latency of 132 SMs.
* **Extra kernels around it.** Split-K needs a zeroed float32 output, atomic adds, and a final
  cast: three launches where cuBLAS makes one. The recorded `eager_ms` (a plain Python call)
  shows the cost: 60 µs against 35 µs replayed from a CUDA graph for the Triton GEMV at 4096².

**What production kernels do differently**, with their published figures:

* **Marlin** (IST-DASLab; Frantar et al. 2024) reaches "close to ideal (4x) speedups up to
  batchsizes of 16-32 tokens": the optimal 3.87× for 4-bit weights with g = 128 scales, on an
  NVIDIA A10 (its README's benchmarks; prior kernels came close to 3.87× only at batch 1–2). How:
  weights *and* scales are reshuffled offline into a layout that lets each thread dequantize
  directly into the tensor-core operand layout; global weight loads are asynchronous with an
  evict-first cache policy; shared-memory loads are double-buffered; dequantization and
  tensor-core instructions are interleaved; several warps share an output tile, and a "striped"
  partition keeps every SM busy, with the global reduction done in the L2-resident output. Its
  README notes it is not yet optimized for Hopper.
* **Machete** (Neural Magic, in vLLM's `csrc/quantization/machete`) is described as "a spiritual
  successor to the Marlin kernel but optimized for Hopper architectures and based on Cutlass":
  its main optimization is prepacking the weight matrix "to more closely match the tensor core
  layouts, allowing for wider shared memory loads", with zero points applied after the scales so
  that dequantization is one fused multiply-add; it uses Hopper's TMA and wgmma instructions. Its
  announcement reports end-to-end serving gains over Marlin on H100 for Llama 3.1 70B and 405B;
  we could not check those figures against the original post, so we do not repeat them.
* **GemLite** (Mobius Labs) is, like ours, a set of Triton kernels (GEMV, GEMM, split-K GEMM),
  plus a "GEMV RevSplitK" that doubles the work per program so that scales and zeros are loaded
  less often and fewer threads are needed; it sets `eviction_policy="evict_last"` to keep the
  activations cached, and its README notes the high launch overhead of Triton kernels for light
  workloads. It reports "up to 7-8x faster prefill and 3-6x faster decoding compared to default
  Torch AO kernels" (compared with torchao's kernels, not with fp16).
* **torchao's tinygemm** (`torch.ops.aten._weight_int4pack_mm`, weights repacked once by
  `_convert_weight_to_int4pack` into tensor-core tiles): with it, pytorch-labs/gpt-fast decodes
  Llama-2-7B at batch 1 on an A100-80GB (power-limited to 330 W) at 196.80 tokens/s in int4
  (g = 32) against 104.9 in bf16: ×1.88 end to end, at 862.69 GB/s of effective bandwidth against
  1,397.31 for bf16. Even a production kernel leaves part of the 4× on the table at batch 1.

The common thread: a weight layout designed for the kernel (repacked once, offline) rather than
the checkpoint's, loads kept in flight asynchronously, dequantization amortized over many weights,
and work spread over every SM without extra kernels. Our kernels keep the GPTQ layout and plain
loads because they are meant to be read; they show the arithmetic, not the speed.
"""),
    ("code", r"""
if GPU:  # a live measurement on this machine: one shape, M = 1 (and note the device)
    import torch.nn.functional as F
    from triton.testing import do_bench
    W = torch.randn(4096, 4096, device="cuda", dtype=torch.float16) * 0.02
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    packed = kernels.prepare_w4a16(W, 128)
    t16 = do_bench(lambda: F.linear(x, W), quantiles=[0.5])
    t4 = do_bench(lambda: kernels.w4a16_matmul(x, *packed, group_size=128), quantiles=[0.5])
    print(f"{torch.cuda.get_device_name()}: fp16 {t16 * 1e3:.1f} us, W4A16 {t4 * 1e3:.1f} us, "
          f"speed-up {t16 / t4:.2f}x")
else:
    print("No GPU: no live measurement (timings in the Triton interpreter mean nothing).")
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
  bound on its speed-up at small M. Past the ridge it computes in fp16 and gains nothing; W8A8's
  int8 tensor cores raise the compute roof instead.
* The GPTQ layout packs 8 codes per int32 along K with N last: one coalesced load gives each
  thread 8 weights of one group, dequantized as `(q − zero) · scale` in registers.
* Triton's W4A16 kernel: a tiled `tl.dot` GEMM for M ≥ 16, a split-K GEMV for the decode case;
  W8A8 applies its per-token × per-channel scales once, in the epilogue. CUDA C shows the same
  GEMV with the threads written out.
* Recorded on an H100, this course's W4A16 kernels are *slower* than fp16 cuBLAS (×0.58–0.66 at
  M = 1): they stream their bytes at 6–10 % of the peak bandwidth, because of redundant loads,
  per-weight dequantization, few loads in flight and extra launches. W8A8 beats fp16 at large M
  (up to ×1.58).
* Production kernels (Marlin: near-ideal 3.87× up to batch 16–32 on an A10; Machete on Hopper;
  GemLite in Triton; torchao's tinygemm: ×1.88 end to end for Llama-2-7B on an A100) repack the
  weights offline for the kernel, keep loads in flight and amortize the dequantization.

## Sources

* S. Williams, A. Waterman, D. Patterson, *Roofline: An Insightful Visual Performance Model for
  Multicore Architectures*, CACM 52(4), 2009. doi:10.1145/1498765.1498785.
* NVIDIA spec sheets for the table: H100 (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet),
  H200, A100, L40S, L40, L4, A10, T4 (nvidia.com/en-us/data-center/…); links in `qcourse.kernels.roofline.GPUS`.
* P. Tillet, H. T. Kung, D. Cox, *Triton: an intermediate language and compiler for tiled neural
  network computations*, MAPL 2019. doi:10.1145/3315508.3329973.
* E. Frantar et al., *GPTQ*, 2022 (the packed int32 layout). arXiv:2210.17323.
* A. Hoque et al., *Accelerating a Triton Fused Kernel for W4A16 Quantized Inference with SplitK
  Work Decomposition*, 2024. arXiv:2402.00025.
* G. Xiao et al., *SmoothQuant*, ICML 2023 (W8A8, per-token × per-channel scales). arXiv:2211.10438.
* E. Frantar et al., *MARLIN: Mixed-Precision Auto-Regressive Parallel Inference on Large Language
  Models*, 2024. arXiv:2408.11743; github.com/IST-DASLab/marlin README (techniques, A10 benchmarks).
* Machete: vLLM, `csrc/quantization/machete/Readme.md` (github.com/vllm-project/vllm).
* GemLite: github.com/mobiusml/gemlite README.
* torchao int4 tinygemm through pytorch-labs/gpt-fast: README benchmarks and `quantize.py`
  (`_convert_weight_to_int4pack`, `_weight_int4pack_mm`).
"""),
]

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS)
