"""Source of notebooks/11_frontier_formats.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 11 · Frontier formats: FP8, MXFP4/NVFP4, KV-cache quantization, HQQ and rotations

The integer formats of notebooks 01–06 are what most open checkpoints shipped in until 2024.
Production serving in 2026 runs on other things: **FP8** on Hopper and Ada GPUs, **MXFP4** and
**NVFP4** on Blackwell (OpenAI's gpt-oss ships its expert weights in MXFP4), a **quantized KV
cache**, calibration-free weight quantizers such as **HQQ**, and **rotations** (QuaRot,
SpinQuant) that make 4-bit *activations* usable. This notebook builds each one from scratch in
`qcourse`, checks it against the production library bit for bit where one runs here (torch's
casts, torchao, hqq, transformers, llama.cpp), and measures what it does to `qcourse-tiny`.

**Learning goals.** After this notebook you can
1. encode and decode a minifloat (E4M3, E5M2, E3M2, E2M3, E2M1) by hand: bias, subnormals,
   rounding to nearest even, saturation, NaN and infinity as each format defines them;
2. explain why E4M3 carries weights and activations and E5M2 gradients, and what per-tensor,
   per-channel and 128×128 block scales buy;
3. build MX blocks (a shared power-of-two E8M0 scale per 32 values) and NVFP4 blocks (an E4M3
   scale per 16 plus a float32 tensor scale), and pack them into bits;
4. place every format on an error-versus-bits-per-weight chart next to INT4, NF4 and the K-quants;
5. derive HQQ's half-quadratic solver, and see what its default constants really do;
6. size a KV cache, quantize it per token and head, and measure what that costs in quality;
7. fold a Hadamard rotation into a Llama without changing its outputs, and predict what it does to
   an outlier channel and to 4-bit activations;
8. say which hardware runs which format natively.

The four exercises sit next to the material they check, each before the cell that answers it
(11.4 is a prediction: answer it before the measurement below it).
"""),
    ("code", r"""
%matplotlib inline
import copy
import datetime
import functools
import inspect
import logging
import math
import pathlib

import matplotlib.pyplot as plt
import torch

from qcourse import calib, data, evaluation, formats, hqq, kvcache, models, mx, nf4, rotate
from qcourse.bench import record as bench_record
from qcourse.exercises import ex11
from qcourse.layers import fake_quantize_weights, quantize_inputs
from qcourse.quant import fake_quantize

torch.manual_seed(0)
torch.set_num_threads(1)   # a 5.8M-parameter model gains little from more threads; two spin on a busy machine (CPU budget)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tok = models.load()
WINDOWS = 4   # live perplexities: the first 4 windows of 512 test tokens (harder than average:
              # the whole split gives 29.2)
ppl = functools.partial(evaluation.perplexity, tokenizer=tok, max_windows=WINDOWS)
fp32_ppl = ppl(model)
block0 = {name: m.weight.detach() for name, m in model.model.layers[0].named_modules()
          if isinstance(m, torch.nn.Linear)}

def latest_record(model_name, timings=False):
    # the newest benchmarks/frontier.py record on model_name, by the date it holds (not by file
    # name); timings=True: the newest `--timings` record (speeds only) instead of a quality run
    found = [bench_record.read(path) for path in pathlib.Path("../benchmarks/results").glob("frontier-*.json")]
    found = [r for r in found if r.get("model") == model_name and ("timings" in r) == timings]
    return max(found, key=lambda r: datetime.datetime.fromisoformat(r["date"]), default=None)


def describe(run):
    return (f"{run['date'][:10]} on {run['machine']['cpu']}, {run['threads']} thread(s), load average "
            f"{run['load_average']['start'][0]:.2f} at its start, {run['load_average']['end'][0]:.2f} at its end")


record = latest_record("qcourse-tiny")
if record:
    RECORDED = evaluation.protocol.Protocol("recorded", record["protocol"]["windows"])
    SPLIT = RECORDED.label().split(": ")[1]   # e.g. "test windows 1-16 of 512 tokens"


def scored(row):
    # a recorded row's per-window negative log-likelihoods, as a Score on the recorded windows
    return evaluation.protocol.Score(RECORDED, torch.tensor(row["nll"]))


def delta(a, b):
    # b's perplexity against a's (two recorded rows): % with its 95 % paired interval; ~ inside the noise
    d = evaluation.protocol.paired_difference(scored(a), scored(b))
    pct = lambda r: f"{100 * (r - 1):+.2f}"
    return f"{pct(d.ratio):>6s} % [{pct(d.low):>6s}, {pct(d.high):>6s}]{'' if d.significant else ' ~'}"


print(f"fp32 perplexity on {WINDOWS} test windows: {fp32_ppl:.2f}")
print("recorded run:", f"{describe(record)}; perplexities on {SPLIT}" if record
      else "none found (run benchmarks/frontier.py)")
"""),
    ("md", r"""
## 1. Minifloats, bit by bit

A minifloat with `e` exponent bits and `m` mantissa bits stores a sign `s`, a biased exponent `E`
and a mantissa `M` (bias `2^(e-1) − 1`):

    normal     (E > 0):  (−1)^s · (1 + M/2^m) · 2^(E − bias)
    subnormal  (E = 0):  (−1)^s · (M/2^m)     · 2^(1 − bias)

The formats differ in how they split the bits, and in what they do with the top exponent:

* **E4M3** (OCP FP8, `torch.float8_e4m3fn`): no infinities; only `S.1111.111` is NaN, so the
  top binade still holds numbers and the largest is 1.75 · 2^8 = **448**;
* **E5M2** (`torch.float8_e5m2`): IEEE-like, the top exponent means ±inf or NaN; largest 57344;
* **E3M2, E2M3** (FP6) and **E2M1** (FP4) of the OCP MX spec: every code is a number, no NaN,
  no inf: E2M1's eight magnitudes are 0, 0.5, 1, 1.5, 2, 3, 4, 6;
* **E8M0**, the MX scale: eight exponent bits and nothing else, `2^(code − 127)`.
"""),
    ("code", r"""
LAYOUTS = [("FP16", 5, 10), ("BF16", 8, 7), ("E4M3", 4, 3), ("E5M2", 5, 2), ("E3M2", 3, 2),
           ("E2M3", 2, 3), ("E2M1", 2, 1), ("E8M0 (scale)", 8, 0)]
fig, ax = plt.subplots(figsize=(9, 3.4))
for row, (name, e, m) in enumerate(LAYOUTS):
    sign = 0 if name.startswith("E8M0") else 1
    fields = [("S", sign, "tab:red"), ("E", e, "tab:blue"), ("M", m, "tab:green")]
    x = 0
    for label, width, color in fields:
        for i in range(width):
            ax.add_patch(plt.Rectangle((x + i, -row), 0.95, 0.8, color=color, alpha=0.7))
            ax.text(x + i + 0.47, -row + 0.4, label, ha="center", va="center", fontsize=7)
        x += width
    ax.text(-0.5, -row + 0.4, f"{name} ({sign + e + m} bits)", ha="right", va="center", fontsize=9)
ax.set_xlim(-6.5, 16.5)
ax.set_ylim(-len(LAYOUTS) + 0.7, 0.9)
ax.axis("off")
ax.set_title("sign · exponent · mantissa")
plt.show()

print("format  bits  bias  largest    smallest normal  smallest subnormal  finite values")
for spec in mx.ELEMENTS.values():
    v = spec.values()
    finite = torch.unique(v[torch.isfinite(v)])
    print(f"{spec.name:6s}  {spec.bits:4d}  {spec.bias:4d}  {spec.max:<9g}  {2.0 ** spec.emin:<15g}  "
          f"{2.0 ** (spec.emin - spec.mbits):<18g}  {len(finite)}")
"""),
    ("md", r"""
**Encoding** is one rounding once the spacing of the grid around a value is known: inside the
binade `[2^e, 2^(e+1))` the values are `2^(e−m)` apart, and below the smallest normal exponent
`emin` the subnormals keep the spacing `2^(emin−m)`:

    e  = max(floor(log2 |x|), emin)
    x' = round_half_even(|x| / 2^(e−m)) · 2^(e−m),   then the format's overflow rule

`qcourse.mx.minifloat` writes exactly that, then turns the rounded magnitude into its code
`E·2^m + M`:
"""),
    ("code", r"""
print(inspect.getsource(mx.minifloat.round_to_grid))
print(inspect.getsource(mx.encode))
"""),
    ("md", r"""
Is it right? torch has E4M3 and E5M2 casts. We feed both every one of the 65,536 bfloat16 bit
patterns (all signs, exponents, subnormals, ±inf and NaNs) and the 65,536 float16 patterns, and
compare the bytes:
"""),
    ("code", r"""
def all_patterns(dtype):
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype).float()


for spec, dtype in ((mx.E4M3, torch.float8_e4m3fn), (mx.E5M2, torch.float8_e5m2)):
    for source in (torch.bfloat16, torch.float16):
        x = all_patterns(source)
        same = (mx.encode(x, spec) == x.to(dtype).view(torch.uint8)).sum().item()
        print(f"{spec.name} from every {str(source)[6:]:8s} pattern: {same} of {x.numel()} codes equal torch's cast")
x = torch.tensor([float("nan"), float("inf"), 1000.0, 61440.0, 2.0**-10, -0.0])
print("x            ", x.tolist())
print("E4M3 (ours)  ", mx.fake_quantize(x, "fp8_e4m3").tolist())
print("E5M2 (ours)  ", mx.fake_quantize(x, "fp8_e5m2").tolist())
print("E4M3 non-saturating", mx.decode(mx.encode(x, mx.E4M3, saturate=False), mx.E4M3).tolist())
"""),
    ("md", r"""
E4M3 has no infinity, so an overflow can only saturate to ±448 or become NaN: the OCP FP8 spec
(OFP8 rev. 1.0) leaves that choice to the *conversion*, not the format. `mx.encode` saturates by
default (1000 and even +inf become 448), as torch's CPU cast does since PyTorch PR #178817 (April
2026; the matching count above says this torch does); `saturate=False` gives NaN, as older torch
releases and `ml_dtypes` do (the last line). E5M2 rounds 1000 to 1024 and
overflows 61440 (the tie between its largest value 57344 and the next power of two) to inf, as
IEEE rounding does. 2^-10 is half of E4M3's smallest subnormal 2^-9, a tie, and rounds to the
even code 0.

## 2. FP8: which half for what, and where the scale goes

**E4M3 or E5M2?** One more mantissa bit halves the rounding step; one more exponent bit doubles the
number of binades. The forward pass (weights, activations) has values of similar size within a
tensor once it is scaled, so it wants precision: E4M3. Gradients spread over many more binades
within one tensor, so the backward pass wants range: E5M2 (the *hybrid* recipe of NVIDIA's
Transformer Engine; Micikevicius et al., 2022). Measured on `qcourse-tiny`: the weights of block 0,
and the gradients of one training batch, each scaled per tensor so that its absmax lands on the
format's largest value:
"""),
    ("code", r"""
batch = data.calibration_samples(tok, 2, 256, seed=0)
grad_model = copy.deepcopy(model)
grad_model(batch, labels=batch).loss.backward()
gradients = torch.cat([p.grad.flatten() for p in grad_model.parameters() if p.grad is not None])
weights = torch.cat([w.flatten() for w in block0.values()])
del grad_model

print("tensor      binades spanned   format   rel. error   flushed to zero")
for name, t in (("weights", weights), ("gradients", gradients)):
    nonzero = t[t != 0].abs()
    span = math.log2(nonzero.max() / nonzero.min())
    for fmt in ("fp8_e4m3", "fp8_e5m2"):
        back = mx.fake_quantize_fp8(t[None, :], fmt, "tensor")[0]
        err = ((back - t).pow(2).sum() / t.pow(2).sum()).item()
        flushed = ((back == 0) & (t != 0)).float().mean().item()
        print(f"{name:10s}  {span:6.1f}            {fmt[4:]:6s}   {err:.2e}     {flushed:.1%}")
"""),
    ("md", r"""
E4M3's one extra mantissa bit halves the rounding step, so its squared error is a quarter of
E5M2's, on weights and on gradients alike: the large values dominate that sum. What E4M3 cannot do
is *range*: it spans 17.8 binades (448 down to its smallest subnormal 2^-9), the gradients of one
batch span about 35, and the smallest of them are flushed to zero in E4M3 but kept by E5M2's 31.8
binades. Those small gradients are the ones that add up over thousands of steps; that, not the
error of one cast, is why training keeps E5M2 (or finer scales) for the backward pass.

**Scales.** Production FP8 divides by a scale first, `s = absmax / 448`, per **tensor**, per
**channel** (one per output row of a weight, or per token of an activation) or per **block**
(DeepSeek-V3 uses 128×128 weight blocks and 1×128 activation tiles). On a layer of `qcourse-tiny`,
and on the same layer divided by 1000:
"""),
    ("code", r"""
print(inspect.getsource(mx.quantize_fp8))
W = block0["mlp.down_proj"]
print("down_proj [256, 768], E4M3     relative error   same weight / 1000")
for label, fn in (("plain cast", lambda w: mx.fake_quantize(w, "fp8_e4m3")),
                  ("per tensor", lambda w: mx.fake_quantize_fp8(w, "fp8_e4m3", "tensor")),
                  ("per channel", lambda w: mx.fake_quantize_fp8(w, "fp8_e4m3", "channel")),
                  ("128x128 blocks", lambda w: mx.fake_quantize_fp8(w, "fp8_e4m3", "block"))):
    errors = [((fn(w) - w).pow(2).sum() / w.pow(2).sum()).item() for w in (W, W / 1000)]
    print(f"  {label:15s}              {errors[0]:.2e}         {errors[1]:.2e}")
"""),
    ("md", r"""
Unlike an integer grid, a float grid has the same *relative* precision in every binade: once the
values are inside the format's range, a finer scale granularity buys almost nothing. The scale is
about range: `qcourse-tiny`'s weights (mostly between 2^-8 and 2^-1) already fit E4M3 and the
plain cast loses only the few below 2^-6, among the subnormals; the same weight divided by 1000
falls off the bottom, and only a scale brings it back.

torchao's `Float8Tensor.from_hp` (per tensor, per row, `PerBlock([128, 128])`) is the production
version; `qcourse.references.torchao.mx` runs it on the CPU. Same codes, same float32 scales, same
dequantized values, on every linear weight of block 0:
"""),
    ("code", r"""
from qcourse.references.torchao import mx as torchao_mx

for fmt in ("fp8_e4m3", "fp8_e5m2"):
    for granularity in ("tensor", "channel", "block"):
        codes = scales = total = 0
        for name, W in block0.items():
            ours, theirs = mx.quantize_fp8(W, fmt, granularity), torchao_mx.fp8_codes(W, fmt, granularity)
            codes += (ours.codes == theirs["codes"]).sum().item()
            scales += torch.equal(ours.scale, theirs["scale"])
            total += W.numel()
        print(f"{fmt} {granularity:8s} codes equal {codes}/{total}, scale tensors equal {scales}/{len(block0)}")
"""),
    ("md", r"""
**W8A8 in FP8** quantizes the activations too, at run time: each token's row of a layer's input
gets its own scale (per token), and the weights their per-channel scale. Here both are
fake-quantized (rounded onto the FP8 grid and back: what an FP8 kernel computes, up to summation
order); the CPU has no FP8 matmul.
"""),
    ("code", r"""
per_channel = functools.partial(mx.fake_quantize_fp8, fmt="fp8_e4m3", granularity="channel")
w8a8 = quantize_inputs(fake_quantize_weights(copy.deepcopy(model), per_channel), per_channel)
print(f"fp32 {fp32_ppl:.3f}   W8A8-FP8 (E4M3, weights per channel, activations per token) {ppl(w8a8):.3f}")
if record:
    w8a8_row = record["activations"]["W8A8 FP8 E4M3 (channel / token)"]
    print(f"recorded, {SPLIT}: fp32 {record['float']['perplexity']:.3f}   W8A8-FP8 "
          f"{w8a8_row['perplexity']:.3f}, {delta(record['float'], w8a8_row)} (paired 95 % interval)")
del w8a8
"""),
    ("md", r"""
## 3. Microscaling: MXFP8, MXFP6, MXFP4 and NVFP4

FP8 with one scale per tensor or row still needs 8 bits per value. To go to 6 and 4 bits the
scale must follow the data closely: **one scale per small block**. The OCP Microscaling (MX) v1.0
spec fixes the block at 32 consecutive values and the scale at a power of two, stored as an E8M0
byte (8.25, 6.25 and 4.25 bits per value). Its scale rule puts the block's absmax in the
element's top binade:

    X = 2^(floor(log2 absmax) − emax_elem)        codes = element(x / X)        x' = element⁻¹(codes) · X

`emax_elem` is the exponent of the element's top binade (2 for E2M1, whose largest value is 6 =
1.5 · 2^2). Flooring has a cost: a block whose absmax is 7.9 gets X = 1, and 7.9 saturates to 6.
**NVFP4** (NVIDIA, Blackwell) fixes that with a finer scale: blocks of 16, an **E4M3** block scale
(any value, not just powers of two) and a float32 scale for the whole tensor that lifts the block
scales into E4M3's range (4.5 bits per value).
"""),
    ("code", r"""
print(inspect.getsource(mx.shared_exponent))
print(inspect.getsource(mx.quantize_mx))
print(inspect.getsource(mx.quantize_nvfp4))
"""),
    ("md", r"""
**Exercise 11.1.** Before the next cell decodes a block for you, decode one MXFP4 element
yourself. Each exercise's `check` runs hidden cases and prints *correct*, *wrong* (with the first
failing case) or *not attempted*; `ex11.<question>.hint()` and `.solution()` help.
"""),
    ("code", r"""
print(ex11.decode_mxfp4.prompt)

def decode_mxfp4(nibble, scale):
    return ...  # your code here

ex11.decode_mxfp4.check(decode_mxfp4);
"""),
    ("md", r"""
One block by hand, in MXFP4 and NVFP4 (the other 28/12 values of each block are zeros):
"""),
    ("code", r"""
x = torch.zeros(1, 32)
x[0, :4] = torch.tensor([7.9, 1.0, -0.3, 2.6])
q = mx.quantize(x, "mxfp4")
print(f"MXFP4: E8M0 code {q.scales.item()} -> X = 2^{q.scales.item() - 127}; "
      f"nibbles {[f'{c:04b}' for c in q.codes[0, :4].tolist()]} -> {mx.dequantize(q)[0, :4].tolist()}")
n = mx.quantize(x, "nvfp4")
print(f"NVFP4: tensor scale {n.tensor_scale.item():.6f}, E4M3 block scale "
      f"{mx.decode(n.scales[0, :1], mx.E4M3).item():g} -> {[round(v, 3) for v in mx.dequantize(n)[0, :4].tolist()]}")
"""),
    ("md", r"""
MXFP4 clips 7.9 to 6. NVFP4's block scale (7.9/6 ≈ 1.32, stored as E4M3 448 times the tensor
scale) keeps 7.9 exactly and 2.6 closer (2.63 against 3), but its grid is now 1.32 apart at the
small end: 1.0 becomes 1.32 and −0.3 becomes −0. Which wins depends on the block; over whole
layers NVFP4's error is lower (next section).

**Bit packing.** Two FP4 codes per byte (the first in the low nibble, as torchao and
`qcourse.pack` do); FP6 as two bit planes, the low 4 bits two per byte and the high 2 bits four
per byte (6 bits a value, the way llama.cpp's Q6_K splits `ql`/`qh`); one scale byte per block:
"""),
    ("code", r"""
print(inspect.getsource(mx.pack_codes))
W = block0["mlp.down_proj"]
for fmt in ("mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "nvfp4"):
    q = mx.quantize(W, fmt)
    print(f"{fmt:11s} {q.nbytes:7d} bytes for {W.numel()} weights = {8 * q.nbytes / W.numel():.3f} bits "
          f"per weight (catalog: {mx.get_format(fmt).bits_per_weight})")
"""),
    ("md", r"""
**Against torchao.** torchao 0.18's `MXTensor.to_mx` (default `ScaleCalculationMode.FLOOR`) and
`NVFP4Tensor.to_nvfp4` (with the per-tensor scale) are the production implementations. On every
linear weight of block 0 (the test suite covers every weight of the model, bf16 inputs, zero and
subnormal blocks):
"""),
    ("code", r"""
for fmt in ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "nvfp4"):
    codes = scales = values = total = 0
    for W in block0.values():
        ours = mx.quantize(W, fmt)
        theirs = torchao_mx.nvfp4_codes(W) if fmt == "nvfp4" else torchao_mx.mx_codes(W, fmt)
        packed = ours.codes if fmt.startswith("mxfp6") else mx.pack(ours)["codes"]  # torchao: FP6 unpacked
        codes += (packed == theirs["packed"]).sum().item()
        total += packed.numel()
        scales += (ours.scales == theirs["scales"]).all().item()
        values += torch.equal(mx.dequantize(ours), theirs["dequantized"])
    print(f"{fmt:11s} stored bytes equal {codes}/{total}, scales equal {scales}/7, dequantized equal {values}/7")
"""),
    ("md", r"""
## 4. Error against bits per weight

Every weight of block 0 through every format, next to INT4 with groups of 128 (RTN, fp16 scale and
4-bit zero: 4.16 bits), NF4 (blocks of 64, 4.5 bits) and llama.cpp's K-quants (bit-exact with
llama.cpp, notebook 06). The error is `Σ‖W − W'‖² / Σ‖W‖²`:
"""),
    ("code", r"""
from qcourse import gguf
from qcourse.gguf.quants import bits_per_weight as gguf_bpw


def kquant(W, qtype):
    blocks = gguf.quantize(W.numpy(), qtype)
    return torch.from_numpy(gguf.dequantize(blocks, qtype, tuple(W.shape)).copy())


candidates = {fmt: (mx.get_format(fmt).bits_per_weight, functools.partial(mx.fake_quantize, fmt=fmt))
              for fmt in ("mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "nvfp4")}
candidates["fp8_e4m3 per channel"] = (8.0, functools.partial(mx.fake_quantize_fp8, granularity="channel"))
candidates["INT4 g128"] = (formats.bits_per_weight(4, 128, 16, 4), lambda W: fake_quantize(
    W, 4, symmetric=False, granularity="group", group_size=128))
candidates["NF4"] = (4.5, nf4.fake_nf4)
for qtype in ("Q8_0", "Q4_K", "Q3_K"):
    candidates[qtype] = (gguf_bpw(qtype), functools.partial(kquant, qtype=qtype))

table = {}
for name, (bpw, fn) in candidates.items():
    num = sum((fn(W) - W).pow(2).sum().item() for W in block0.values())
    table[name] = (bpw, num / sum(W.pow(2).sum().item() for W in block0.values()))
fig, ax = plt.subplots(figsize=(7, 4))
for name, (bpw, err) in table.items():
    kind = "tab:blue" if name.startswith(("mx", "nv", "fp8")) else "tab:gray"
    ax.scatter(bpw, err, color=kind)
    ax.annotate(name, (bpw, err), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set(yscale="log", xlabel="bits per weight (stored)", ylabel="relative squared error",
       title="block 0 of qcourse-tiny: floats (blue) and integer formats (gray)")
plt.show()
for name, (bpw, err) in sorted(table.items(), key=lambda kv: kv[1][0]):
    print(f"{name:22s} {bpw:6.3f} bits   error {err:.2e}")
"""),
    ("md", r"""
The recorded run (`benchmarks/frontier.py`) puts every weight of the model through each format
and measures the perplexity on the test windows it names (GPTQ calibrated on the windows of 512
tokens it names):
"""),
    ("code", r"""
if record:
    fp32_row = record["float"]
    print(f"recorded {describe(record)}; perplexity on {SPLIT}; GPTQ calibrated on "
          f"{record['calibration'][0]} windows of {record['calibration'][1]} tokens; fp32 {fp32_row['perplexity']:.3f}")
    print("vs fp32: the perplexity's change, [95 % paired interval over the windows], ~ inside the noise")
    print(f"{'format':26s} {'bits/weight':>11s} {'rel. error':>11s} {'perplexity':>11s}   {'vs fp32':>26s}")
    weight_rows = sorted(record["weights"].items(), key=lambda kv: -kv[1]["bits_per_weight"])
    for name, row in weight_rows:
        print(f"{name:26s} {row['bits_per_weight']:11.3f} {row['relative_error']:11.2e} "
              f"{row['perplexity']:11.3f}   {delta(fp32_row, row)}")
    four_bit = sorted(((name, row) for name, row in weight_rows if 4 <= row["bits_per_weight"] <= 4.5),
                      key=lambda kv: kv[1]["perplexity"])
    best_name, best = four_bit[0]
    print(f"\n4-bit rows against the best of them, {best_name} (paired 95 % interval):")
    for name, row in four_bit[1:]:
        print(f"  {name:26s} {row['bits_per_weight']:5.3f} bits  {row['perplexity']:8.3f}   {delta(best, row)}")
    w = record["weights"]
    print("pairs the text below names:")
    for a, b in (("INT4 g128 (RTN)", "Q4_K"), ("INT4 g128 (RTN)", "MXFP4"), ("NVFP4", "MXFP4"),
                 ("INT4 g128 (RTN)", "GPTQ 4-bit g128")):
        print(f"  {b:16s} against {a:16s} {delta(w[a], w[b])}")
    print()
    for name, row in record["activations"].items():
        print(f"{name:34s} perplexity {row['perplexity']:.3f}   vs fp32 {delta(fp32_row, row)}")
    acts = record["activations"]
    print(f"W4A4: MXFP4 against NVFP4 {delta(acts['W4A4 NVFP4'], acts['W4A4 MXFP4'])}")
    print(f"W4A4 MXFP4 against W4A16 MXFP4 (the 4-bit activations alone) "
          f"{delta(acts['W4A16 MXFP4'], acts['W4A4 MXFP4'])}")
"""),
    ("md", r"""
What the recorded table shows (16 test windows; the intervals say which differences the choice
of windows could explain). At 8 and 6 bits every format stays within 0.11 % (0.05 points) of the
float perplexity; a few of these tiny differences are outside the noise (the plain E4M3 cast
+0.09 %, MXFP8 +0.10 %, MXFP6 E2M3 +0.11 %, and Q6_K 0.05 % *below* float), but errors below
3·10⁻³ cost this model next to nothing (E5M2 has about four times E4M3's error: one mantissa
bit fewer). Around 4 bits, among the data-free formats, the weight error sorts them: MXFP4 is the
worst (1.3·10⁻², its power-of-two scale leaves part of E2M1's range unused and saturates the
rest), then INT4 g128 by RTN, HQQ g128, NVFP4 (its E4M3 scale fits each block of 16 closely),
NF4, HQQ g64, Q4_0 and Q4_K (5.1·10⁻³: llama.cpp searches its scales, notebook 06). They are not
at equal bits: NVFP4, NF4, Q4_0, Q4_K and HQQ g64 carry 0.25–0.35 more bits per weight than
MXFP4 and INT4 g128 (the table's first column).

Perplexity follows the weight error only loosely, and the paired intervals keep us from reading
more into it. NF4 has the best 4-bit perplexity, but GPTQ, NVFP4, Q4_K and HQQ g64 are inside the
noise of it; Q4_0, HQQ g128, INT4 g128 and MXFP4 are measurably worse. Q4_K, the smallest weight
error of the data-free formats (half of INT4 g128's), is not measurably different from NF4, the
best, nor even from INT4 g128 (−0.23 %, inside the noise). MXFP4, the largest, is not measurably
worse than INT4 g128 (+0.14 %, inside the noise); it is worse than NVFP4 (+0.57 %). Now look at
GPTQ: the largest weight error of all the 4-bit rows (and, at 3 bits, twice RTN's) with one of
the best perplexities, 0.49 % below RTN's at the same 4.16 bits.
Weight error is a proxy; GPTQ minimises the error of each layer's *output* on calibration data
(notebook 04) and moves weights further from their values to do it. With 4-bit *activations*
too, NVFP4's finer scale matters more: W4A4 in NVFP4 costs +1.0 % over float, in MXFP4 +3.1 %
(MXFP4 2.0 % above NVFP4, against 0.57 % with float activations).

## 5. HQQ: half-quadratic quantization, no calibration data

RTN takes each group's scale and zero point from its min and max. HQQ (Badri & Shaji, 2023) keeps
the min-max scale but *optimizes the zero point*, with no data, to minimise a sparsity-promoting
error with an l_p norm, p < 1 (it forgives a few large errors to make most errors small):

    min_z ‖W − Q_z⁻¹(Q_z(W))‖_p^p,     Q_z(W) = clamp(round(W·s + z), 0, 2^b − 1),   Q_z⁻¹(q) = (q − z)/s

(`s` is the *inverse* scale, as in the `hqq` package.) Rounding makes this non-smooth in `z`.
**Half-quadratic splitting** gives the error its own variable `W_e` and ties it to the rounding
error by a quadratic penalty of weight β (the l_p term written `‖W_e‖_p^p / p`, which has the
same minimiser):

    min_{z, W_e}  ‖W_e‖_p^p / p  +  β/2 · ‖W_e − (W − Q_z⁻¹(Q_z(W)))‖²

and alternates between the two variables, each sub-problem having a closed form.

*`z` fixed, solve for `W_e`.* With `r = W − Q_z⁻¹(Q_z(W))` the problem splits into one per weight,
`min_e |e|^p / p + β/2 · (e − r)²`. Its minimiser has the sign of `r` (or is 0); setting the
derivative to zero, `|e|^(p−1) + β(|e| − |r|) = 0`, that is `|e| = |r| − |e|^(p−1)/β`. One
fixed-point step from `e = r` gives `|r| − |r|^(p−1)/β`; where that is negative, `e` is set to
0 (small errors are not worth a nonzero `W_e`). That is generalized soft-thresholding, the
approximate proximal step HQQ uses:

    W_e ← shrink_p(r, β),    shrink_p(x, β) = sign(x)·relu(|x| − |x|^(p−1)/β)   (p = 1: soft-thresholding by 1/β)

*`W_e` fixed, solve for `z`.* Holding the codes `q = Q_z(W)` fixed (HQQ's approximation: the
rounding is redone at the next step), the penalty `‖W_e − W + (q − z)/s‖²` is a quadratic in each
group's `z`; its derivative `−(2/s) Σ ((q − z)/s − (W − W_e))` vanishes at

    z ← mean over the group of (q − (W − W_e)·s)

Then re-round with the new `z`, and repeat (β fixed in `hqq` 0.2.8's default solver, at most 20
steps, stopping when the mean absolute error stops falling):
"""),
    ("code", r"""
print(inspect.getsource(hqq.shrink_lp))
print(inspect.getsource(hqq.optimize_zero))
"""),
    ("md", r"""
**What β = 10 means.** `shrink_p(x, β)` is zero unless `|x|^(2−p) > 1/β`, that is `|x| > 0.17`.
A rounding error of a weight is a fraction of a group's step, far below that. So on weights `W_e`
is exactly zero at every step and the update is `z = mean(Q_z(W) − W·s)`: the least-squares zero
point for the current codes, alternated with re-rounding. The l_p machinery only acts on tensors
with larger values:
"""),
    ("code", r"""
def shrunk_share(t, bits=4, group=64):
    groups = t.reshape(-1, group)
    s, z = hqq.initial_parameters(groups, bits, round_zero=False)
    q = torch.round(groups * s + z).clamp(0, 2**bits - 1)
    W_e = hqq.shrink_lp(groups - (q - z) / s, 10.0, 0.7)
    return (W_e != 0).float().mean().item()


keys = torch.randn(64, 64) * 3      # values of a KV-cache's size (qcourse-tiny's keys reach ~10)
print(f"share of W_e that is not zero: block 0 weights {shrunk_share(weights):.1%}, "
      f"a tensor of scale 3 {shrunk_share(keys):.1%}")
"""),
    ("md", r"""
Against the `hqq` package (0.2.8, its `Quantizer.quantize` with the defaults of
`BaseQuantizeConfig`: 4-bit zeros start rounded, 20 steps at most, early stopping): every weight
of block 0, at 4 and 3 bits, groups of 64, then our error against RTN's (min-max, integer zero).
"""),
    ("code", r"""
from qcourse.references import hqq_lib

for bits in (4, 3):
    same, hqq_err, rtn_err, norm = 0, 0.0, 0.0, 0.0
    for W in block0.values():
        ours, theirs = hqq.hqq_quantize(W, bits, 64), hqq_lib.quantize_weight(W, bits, 64)
        same += torch.equal(ours.q, theirs["q"]) and torch.equal(ours.weight, theirs["dequantized"])
        hqq_err += (ours.weight - W).pow(2).sum().item()
        rtn_err += (fake_quantize(W, bits, symmetric=False, granularity="group", group_size=64) - W).pow(2).sum().item()
        norm += W.pow(2).sum().item()
    print(f"{bits}-bit g64: bit-exact with hqq on {same}/7 weights;  relative error RTN {rtn_err / norm:.2e}, HQQ {hqq_err / norm:.2e}")
"""),
    ("md", r"""
HQQ's zero point is a float, not an integer on the grid, so `QuantLinear` (integer zeros packed
next to the codes, the GPTQ/AWQ layout) cannot hold it exactly. `qcourse.layers.FloatZeroLinear`
stores the packed codes with an fp16 scale *and* an fp16 zero per group, what `hqq` stores too
(4 + 32/64 = 4.5 bits per weight at g64). Perplexities (recorded) of RTN, HQQ and GPTQ, groups
of 128:
"""),
    ("code", r"""
if record:
    w = record["weights"]
    print(f"recorded, perplexity on {SPLIT} (bits per weight); [95 % paired interval], ~ inside the noise")
    for bits in (4, 3):
        rtn, hqq_row, gptq_row = (w[f"INT{bits} g128 (RTN)"], w[f"HQQ {bits}-bit g128"], w[f"GPTQ {bits}-bit g128"])
        print(f"{bits}-bit g128:  RTN {rtn['perplexity']:.3f} ({rtn['bits_per_weight']:.2f})   "
              f"HQQ {hqq_row['perplexity']:.3f} ({hqq_row['bits_per_weight']:.2f})   "
              f"GPTQ {gptq_row['perplexity']:.3f} ({gptq_row['bits_per_weight']:.2f})")
        print(f"    HQQ vs RTN {delta(rtn, hqq_row)}   GPTQ vs RTN {delta(rtn, gptq_row)}   "
              f"GPTQ vs HQQ {delta(hqq_row, gptq_row)}")
    same = w["hqq package 4-bit g64"]["nll"] == w["HQQ 4-bit g64"]["nll"]
    print(f"hqq package 4-bit g64 {w['hqq package 4-bit g64']['perplexity']:.3f}, ours "
          f"{w['HQQ 4-bit g64']['perplexity']:.3f} (per-window NLL {'identical' if same else 'different'})")
"""),
    ("md", r"""
HQQ lowers RTN's weight error at 4 and 3 bits, with no data, and is bit-exact with the `hqq`
package (whose model has the same per-window NLLs as ours). In perplexity it is not a clear win
on this model, and it stores more: its fp16 zero costs 4.25 bits per weight at g128 against
RTN's 4.16. At 4 bits it sits 0.23 % below RTN (an interval that just excludes zero), at 3 bits
level with it (inside the noise). GPTQ, which *uses* calibration data and minimises the error of
each layer's output rather than of its weights, is measurably below RTN at both widths, and at 3
bits below HQQ too; at 4 bits its lead over HQQ is inside the noise. HQQ's selling point is
speed and no calibration set, not beating GPTQ.
Its authors' blog (Badri & Shaji, Mobius Labs, 2023, introduction) says: "HQQ takes less than 5
minutes to process the colossal Llama-2-70B, that's over 50x faster compared to the widely
adopted GPTQ". Measured here, on a quiet machine (`benchmarks/frontier.py --timings`), the seconds
each method takes to quantize every linear layer of `qcourse-tiny` at 4 bits in groups of 64:
"""),
    ("code", r"""
timing_run = latest_record("qcourse-tiny", timings=True)
if timing_run is None:
    print("no timings recorded here: python benchmarks/frontier.py --timings (on a quiet machine)")
else:
    seconds = {m: timing_run["timings"][f"quantize model: {m} 4-bit g64 (s)"] for m in ("RTN", "HQQ", "GPTQ")}
    print(f"qcourse-tiny, recorded {describe(timing_run)}")
    print("   ".join(f"{m} {v:.2f} s" for m, v in seconds.items()))
    print(f"GPTQ / HQQ: {seconds['GPTQ'] / seconds['HQQ']:.0f}x measured here;  HQQ / RTN: "
          f"{seconds['HQQ'] / seconds['RTN']:.1f}x")
    print("quoted:     'over 50x' (HQQ against GPTQ, Llama-2-70B; Badri & Shaji's blog, 2023)")
"""),
    ("md", r"""
What each time holds (the model is loaded before the clock starts). RTN: a min and a max per
group, rounding, packing. HQQ (`qcourse.hqq`, float32 on the CPU): the same, plus up to 20
half-quadratic steps per layer (with early stopping), no data. GPTQ: 128 calibration windows of
512 tokens (65,536 tokens, the script's default `--samples`) run through the model block by
block: for each of the 6 blocks one partial forward pass per layer group (q/k/v, o, gate/up,
down) to collect that group's Hessian, the solve of each layer (a Cholesky factorisation, then
the columns one by one with error feedback, notebook 04), and one full pass to feed the next
block. GPTQ's time grows with the calibration tokens times the square of each layer's input
width (the Hessian), plus its cube (the factorisation) and the output width times its square
(the solve); HQQ's grows with the number of weights alone. So the ratio measured on a
5.8M-parameter model on a CPU (31×) is not the blog's on Llama-2-70B on a GPU, and neither is a
property of the methods alone. What both say: HQQ costs a few RTNs (4.2× here) and no data, GPTQ
more than an order of magnitude more.

## 6. The KV cache

While generating, a decoder keeps the keys and values of every past token, in every layer:

    bytes = 2 (K and V) · layers · kv_heads · head_dim · tokens · batch · bytes per value

**Exercise 11.2.** Write that count as a function, with a scale per group, before the next cell
uses the package's.
"""),
    ("code", r"""
print(ex11.kv_bytes_saved.prompt)

def kv_bytes_saved(layers, kv_heads, head_dim, tokens, batch, bits, group_size):
    return ...  # your code here

ex11.kv_bytes_saved.check(kv_bytes_saved);
"""),
    ("md", r"""
For `qcourse-tiny` the cache is small; for a Llama-3-8B-shaped model (32 layers, 8 kv heads of
128) at 32k tokens and a batch of 8 it outgrows the 16 GB of its fp16 weights:
"""),
    ("code", r"""
from transformers import LlamaConfig

llama8b = LlamaConfig(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, hidden_size=4096)
contexts = [2**k for k in range(10, 18)]
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, scheme in (("fp16", None), ("int8 (fp16 scale per head)", kvcache.KVScheme("int", 8)),
                      ("int4 g32 (like q4_0)", kvcache.KVScheme("int", 4, 32))):
    ax.plot(contexts, [kvcache.cache_bytes(llama8b, t, scheme, batch=8) / 1e9 for t in contexts],
            marker="o", label=label)
ax.axhline(16.1, color="gray", ls="--", lw=0.8, label="8B weights in fp16")
ax.set(xscale="log", xlabel="context (tokens)", ylabel="GB", title="KV cache, Llama-3-8B shape, batch 8")
ax.legend(fontsize=8)
plt.show()
print(f"qcourse-tiny, 512 tokens, fp16: {kvcache.cache_bytes(model.config, 512) / 1e6:.2f} MB")
"""),
    ("md", r"""
`qcourse.kvcache` quantizes each **token and head** on arrival, over its 64 `head_dim` values (or
groups of 32, like llama.cpp's `q8_0`/`q4_0` cache types): symmetric int8/int4, asymmetric int
with a float zero point (per token, as transformers' `QuantizedCache` does), optionally
HQQ-optimized, or FP8. KIVI's own recipe (`kvcache.KIVI`: keys per *channel* in groups of 32
tokens, values per token, the newest 128 tokens kept in float) is a `KVScheme` too. `QuantizedKVCache` is a
transformers `Cache`, so the model's own attention reads the dequantized keys and values and
`model.generate(..., past_key_values=cache)` works unchanged:
"""),
    ("code", r"""
print(inspect.getsource(kvcache.KVScheme.quantize))
print(inspect.getsource(kvcache.QuantizedKVLayer.update))
"""),
    ("code", r"""
prompts = data.calibration_samples(tok, 1, 32, seed=1)   # one prompt, 64 greedy tokens (live)
reference = kvcache.greedy(model, prompts, 64)
print(f"live: 1 prompt of 32 tokens, 64 greedy tokens; perplexity on {WINDOWS} test windows")
print(f"{'cache':14s} {'bits/value':>10s} {'perplexity':>11s} {'same greedy tokens':>19s} {'first difference':>17s}")
print(f"{'float':14s} {16:10.2f} {fp32_ppl:11.3f}")
for scheme in (kvcache.KVScheme("int", 8), kvcache.KVScheme("fp8_e4m3"), kvcache.KVScheme("int", 4, 32),
               kvcache.KVScheme("int", 2, symmetric=False)):
    agree = kvcache.agreement(reference, kvcache.greedy(model, prompts, 64, scheme))
    print(f"{scheme.name:14s} {8 * scheme.bytes_per_value(64):10.2f} "
          f"{ppl(kvcache.WithQuantizedCache(model, scheme)):11.3f} {agree['same_tokens']:19.0%} "
          f"{agree['first_difference']:17.0f}")
"""),
    ("md", r"""
**Cross-checks.** transformers' own `QuantizedCache(backend="hqq")` quantizes with hqq's
optimizer; our `KVScheme("int", 4, symmetric=False, hqq=True)` does the same with `qcourse.hqq`.
On real keys of `qcourse-tiny` (layer 2, 96 tokens):
"""),
    ("code", r"""
from transformers import DynamicCache

cache = DynamicCache(config=model.config)
with torch.no_grad():
    model(data.calibration_samples(tok, 1, 96, seed=0), past_key_values=cache, use_cache=True)
keys = cache.layers[2].keys
hf_layer = hqq_lib.quantized_cache(model.config, bits=4, group_size=64).layers[0]
hf_layer.lazy_initialization(keys, keys)
theirs = hf_layer._dequantize(hf_layer._quantize(keys.contiguous(), axis=1))
ours_scheme = kvcache.KVScheme("int", 4, symmetric=False, hqq=True, meta_dtype=torch.float32)
ours = ours_scheme.dequantize(ours_scheme.quantize(keys))
print(f"keys {tuple(keys.shape)}: {(ours == theirs).sum().item()} of {keys.numel()} dequantized values identical")
"""),
    ("md", r"""
(`_quantize`/`_dequantize` are that class's own hooks, the only way to see its quantizer alone.)
The recorded numbers, long generations (the prompt and the greedy tokens fill the 512-token
context), transformers' cache (which quantizes the prompt at prefill, the prefill's own
attention still reading float keys, then keeps up to 128 newest tokens in float and re-quantizes
all of them together when that buffer fills) and llama.cpp's `type_k`/`type_v` run for real on a GGUF export of the same model:
"""),
    ("code", r"""
if record:
    g, fp32_row = record["greedy"], record["float"]
    print(f"recorded, perplexity on {SPLIT}; greedy: {g['prompts']} prompts of {g['prompt_tokens']} "
          f"tokens, {g['new_tokens']} new tokens each; vs float: [95 % paired interval], ~ inside the noise")
    print(f"{'cache':40s} {'bits/value':>10s} {'kB @512':>7s} {'perplexity':>10s} {'  vs float':28s} "
          f"{'same tokens':>11s} {'1st diff':>8s}")
    print(f"{'float (fp16 storage)':40s} {16:10.2f} {kvcache.cache_bytes(model.config, 512) / 1e3:7.1f} "
          f"{fp32_row['perplexity']:10.3f}")
    kv_rows = record["kv_cache"]
    for name, row in sorted(kv_rows.items(), key=lambda kv: -kv[1].get("bits_per_value", 0)):
        if "perplexity" not in row:
            continue
        print(f"{name:40s} {row['bits_per_value']:10.2f} {row['cache_bytes_512'] / 1e3:7.1f} "
              f"{row['perplexity']:10.3f} {delta(fp32_row, row):28s} {row['same_tokens']:11.1%} "
              f"{row['first_difference']:8.0f}")
    for name, row in kv_rows.items():
        if "perplexity" not in row:   # transformers' QuantizedCache: generation only
            print(f"{name}: same tokens {row['same_tokens']:.1%}, 1st diff {row['first_difference']:.0f}")
    for name, row in record["llamacpp_kv_cache"].items():
        print(f"{'llama.cpp ' + name:40s} {row['bits_per_value']:10.2f} {'':7s} {row['perplexity']:10.3f}")
    print("\none change at a time (paired, the second against the first):")
    for a, b, what in (("int2 asym g32", "int2 asym g32 +128 float", "a float residual of 128, 2 bits"),
                       ("int2 asym g32 +128 float", "int2 asym g32 keys/channel +128 float", "keys per channel (KIVI-2)"),
                       ("int4 asym g32 +128 float", "int4 asym g32 keys/channel +128 float", "keys per channel (KIVI-4)")):
        if a in kv_rows and b in kv_rows:
            print(f"  {what:34s} {delta(kv_rows[a], kv_rows[b])}   1st diff "
                  f"{kv_rows[a]['first_difference']:.0f} -> {kv_rows[b]['first_difference']:.0f}")
"""),
    ("md", r"""
The live table is one prompt: there even the int8 cache can part from the float model early
(greedy agreement on one prompt is a coin toss once two candidates are close). In the recorded
run (4 prompts × 192 tokens, 16 windows for perplexity) only the int8 caches (a scale per token
and head, or per 32 values) keep every greedy token of the float model over the whole
generation, at a perplexity within 0.01 (int8 per head +0.01 %, an interval that just excludes
zero). FP8 E4M3, a plain cast without a scale, costs no measurable perplexity, but its
generations part from the float model's after about 60 tokens on average; E5M2 costs +0.15 %.
The int4 caches that quantize every token (no float residual) cost 0.02 to 0.14 of perplexity:
per head and asymmetric (+0.22 %) or symmetric (+0.35 %) measurably, in groups of 32 (+0.05 %)
and HQQ-optimized (+0.14 %) inside the noise. They part from the float model after 25 to 89
tokens, and the order of the parting points is not the order of the perplexities (int4 asym
parts last, later than FP8). Once one token differs, the continuation differs from there on, so
the share of same tokens falls much further than perplexity suggests. 2 bits on every token costs
clearly (+5.2 %, +3.4 % in groups of 32).

**KIVI, one change at a time.** A float residual of the 128 newest tokens is what rescues 2 bits:
in groups of 32 it takes the cost from +3.4 % to +0.26 % and the first difference from 10 to 31
tokens. It is not free: the float tokens take fp16 space (at 512 tokens 455 kB against 295 kB,
the table's kB column), so those two rows are not at equal size. At equal size (the same
residual and groups), KIVI's keys per channel beat keys per token at 2 bits by 0.16 % (an
interval that just excludes zero; first difference 31 → 32) and are level at 4 bits (inside the
noise; the same greedy agreement). On this model, then, most of KIVI's gain comes from its float
residual, and the per-channel keys add a little at 2 bits; the paper's case for them is outlier
*channels* in the keys of large models (how `qcourse-tiny`'s keys compare is not measured here).

The same residual explains transformers' `QuantizedCache`: its 4-bit generations stay with the
float model's far longer than our every-token caches (84 % of the tokens, first difference after
159 on average), and our `int4 asym g32 +128 float`, which like it reads the prompt in float at
prefill and keeps the newest tokens in float, gives the same first difference (159) and nearly
the same share (85 %). llama.cpp's `q8_0`/`q4_0` cache types, run for real (perplexity only: this
path keeps no per-window NLL, so no interval), move perplexity in the same direction and order as
our int8/int4 caches in groups of 32, `q4_0` by more (+0.08 against our +0.02). Quantizing its
keys alone costs +0.05 and its values alone +0.02: most of `q4_0`'s loss is in the keys. We did
not isolate why llama.cpp's keys lose more than ours; one candidate is that its CPU
flash-attention path also rounds the queries to `q8_0` to take dot products with quantized keys.

## 7. Rotations: making 4-bit activations possible

Weights quantize well to 4 bits; activations do not, because of **outlier channels**: a few
channels carry values 10–100× larger than the rest, so a per-token scale fitted to them leaves the
other channels a handful of grid steps. Rotations remove them without changing the model: for any
orthogonal `Q`, a linear layer fed `x Q` with weight `W Q` computes `(xQ)(WQ)ᵀ = x Wᵀ`. A random
**Hadamard** matrix (±1/√n entries, random signs) spreads every channel evenly over all n:
a channel holding M becomes ±M/√n everywhere. Hadamard matrices exist only for n = 1, 2 and
multiples of 4; `rotate.hadamard` builds Sylvester's for powers of two and, for the other widths,
a Kronecker product of one of Paley's (orders q + 1 or 2(q + 1), q a prime) with a Sylvester
power: `qcourse-tiny`'s 768 = 12 · 64, SmolLM2's 576 = 36 · 16 (QuaRot stores the same small
matrices, `get_hadK`). A *block-diagonal* Hadamard (`block=64`: 9 blocks for 576) is cheaper but
spreads an outlier over its own block only: ±M/√64 = M/8, not M/24.

**Exercise 11.3.** Predict it exactly, for a token that holds nothing but the outlier:
"""),
    ("code", r"""
print(ex11.outlier_after_rotation.prompt)

def outlier_after_rotation(M, D):
    return ...  # your code here

ex11.outlier_after_rotation.check(outlier_after_rotation);
"""),
    ("md", r"""
Now a real activation of `qcourse-tiny` (the input of layer 3's `gate_proj`), into which we inject
one outlier channel 20 or 100 times the layer's typical |x| (its mean |x|; SmoothQuant reports
outliers ~100× larger than most activation values in real LLMs). Each token is then quantized to
symmetric 4 bits with one scale per token, without and with the rotation.

**Exercise 11.4.** Predict first what the outlier does to the *other* channels (your first answer
counts in graded mode):
"""),
    ("code", r"""
ex11.outlier_share.show()
outlier_share = ...  # a letter
ex11.outlier_share.check(outlier_share);
"""),
    ("code", r"""
stats_input = {}
hook = model.model.layers[3].mlp.gate_proj.register_forward_hook(lambda m, a, o: stats_input.update(x=a[0].detach()))
with torch.no_grad():
    model(data.calibration_samples(tok, 1, 128, seed=2))
hook.remove()
x = stats_input["x"][0]                                   # [128 tokens, 256 channels]
Q = rotate.random_hadamard(256, seed=0).float()
others = torch.arange(256) != 17
print("outlier on channel 17     peak-to-RMS per token    4-bit error on the other 255 channels")
for factor in (None, 20, 100):                            # x the typical |x| of the layer
    x_out = x.clone()
    if factor:
        x_out[:, 17] = factor * x.abs().mean()
    for label, t, back in (("plain", x_out, lambda r: r), ("rotated", x_out @ Q, lambda r: r @ Q.t())):
        rec = back(fake_quantize(t, 4, symmetric=True, granularity="channel", axis=0))
        err = (rec - x_out)[:, others].pow(2).sum() / x_out[:, others].pow(2).sum()
        print(f"{f'{factor}x' if factor else 'none':6s} {label:8s}          {rotate.peak_to_rms(t).mean():5.1f}"
              f"                    {err.item():6.1%}")
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, (label, t) in zip(axes, (("100x outlier on channel 17", x_out), ("after the Hadamard rotation", x_out @ Q))):
    ax.plot(t.abs().amax(0), lw=0.8)
    ax.set(title=label, xlabel="channel", ylabel="max |x| over tokens")
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
Folded into a Llama (`rotate_model`, QuaRot's recipe): RMSNorm weights go into the next linear
layers (a norm without weight commutes with `Q`), the residual stream is rotated by `Q` (the
embedding, every layer reading the stream `W ← W Q`, every layer writing to it `W ← Qᵀ W`; tied
embeddings are untied first), each head's values by a Hadamard `R` fused into `v_proj` and
`o_proj`, and `down_proj`'s input online (after the SiLU nothing can absorb it).
"""),
    ("code", r"""
print(inspect.getsource(rotate.rotate_model))
rotated = rotate.rotate_model(copy.deepcopy(model))
ids = data.calibration_samples(tok, 2, 128, seed=3)
with torch.no_grad():
    diff = (rotated(ids).logits - model(ids).logits).abs().max().item()
print(f"largest logit difference, rotated vs original: {diff:.1e} (logits reach ~{model(ids).logits.abs().max().item():.0f})")
peaks = {}
for kind, m in (("plain", model), ("rotated", rotated)):
    stats = calib.collect_activation_stats(m, data.calibration_samples(tok, 4, 128, seed=4))
    peaks[kind] = [(s.absmax.max() / s.mean_sq.mean().sqrt()).item() for s in stats.values()]
print("channel peak-to-RMS of each linear layer's input, mean over layers: "
      f"plain {sum(peaks['plain']) / len(peaks['plain']):.1f}, rotated {sum(peaks['rotated']) / len(peaks['rotated']):.1f}")
"""),
    ("md", r"""
W4A4 (weights per channel, activations per token, both symmetric RTN) with and without the
rotation (live on 2 windows; recorded on more), then the same on notebook 10's outlier model:
"""),
    ("code", r"""
live = rotate.rotation_experiment(model, tok, settings=((4, 4),), max_windows=2)
print("live, 2 windows:", {kind: {k: round(v, 2) for k, v in row.items()} for kind, row in live.items()})
if record:
    rot = record["rotation"]
    settings = ("W4A16", "W4A8", "W16A4", "W4A4")
    print(f"recorded, perplexity on {SPLIT}; float {record['float']['perplexity']:.3f}")
    print(f"  {'':36s}" + "".join(f"{k:>12s}" for k in settings))
    for kind, row in rot.items():
        if kind != "channel_peak_to_rms":
            print(f"  {kind:36s}" + "".join(f"{row[k]['perplexity']:12.3f}" if row[k]["perplexity"] < 1e5
                                           else f"{row[k]['perplexity']:12.3e}" for k in settings))
    print("paired, the second against the first:")
    for a, b, setting in (("plain", "rotated", "W16A4"), ("plain", "rotated", "W4A4"),
                          ("plain", "rotated", "W4A8"), ("plain", "norms folded", "W4A4"),
                          ("rotated", "rotated, orthogonal", "W4A4"), ("rotated", "rotated, blocks of 64", "W16A4"),
                          ("rotated", "rotated, blocks of 64", "W4A4"),
                          ("outlier model norms folded", "outlier model rotated", "W4A4")):
        print(f"  {setting:5s} {a:26s} -> {b:22s} {delta(rot[a][setting], rot[b][setting])}")
    print(f"  W4A8 against W4A16, plain: {delta(rot['plain']['W4A16'], rot['plain']['W4A8'])}")
outlier_model = models.with_outliers(model)   # notebook 10: 4 residual channels 100x larger
outliers = rotate.rotation_experiment(outlier_model, tok, settings=((4, 4),), max_windows=2,
                                      kinds=("plain", "norms folded", "rotated"))
print("outlier model, 2 windows:", {kind: {k: round(v, 2) for k, v in row.items()} for kind, row in outliers.items()})
"""),
    ("md", r"""
On plain `qcourse-tiny` the activations have no strong outlier channels (peak-to-RMS per channel
of a few, except `down_proj`'s inputs). 8-bit activations add almost nothing to 4-bit weights
(W4A8 0.05 % above W4A16); 4-bit activations cost more (W16A4 +3.5 %, W4A4 +4.9 % over float).
The full-width rotation cuts that measurably (W16A4 −2.0 %, W4A4 −2.4 %) and leaves W4A8 inside
the noise; folding the norms alone changes nothing measurable. On a model without outliers the
kind of rotation matters little: the random orthogonal matrix is level with the Hadamard at W4A4
(inside the noise), and blocks of 64 cost +0.34 % at W16A4 and nothing measurable at W4A4. On
notebook 10's outlier model, the same function with four residual channels 100× larger at the
inputs of q/k/v and gate/up, per-token 4-bit activations collapse (perplexity 2.2 million at
W16A4, 37 million at W4A4): the outlier channels take the whole grid and the other channels round
to zero (exercise 11.4); W4A8 suffers too (44.95). Here folding the norms alone already undoes
the damage, by construction: `with_outliers` put the factor into the norm weights, and folding
moves it into the weights of the next layers, where per-channel weight scales absorb it (the
folded outlier model scores as the folded `qcourse-tiny`). The Hadamard rotation fixes it as
well, and would wherever the outliers came from: it spreads them over all 256 channels, and
measurably better than folding alone (W4A4 −2.5 %; the rotated outlier model computes the same
function as the rotated `qcourse-tiny`, and their rows agree to within 0.02). QuaRot folds the norms too and then rotates, because in real LLMs the outliers live
in the residual stream itself, which folding does not touch: measured on a real model next.

### A real model that needs the rotation: SmolLM2-135M

SmolLM2-135M (hidden width 576, MLP 1536) is a real pretrained model. The recorded run
(`benchmarks/frontier.py --model smollm2-135m --sections rotation`: each row loads the model again,
prepares it, then quantizes the activations alone, W16A4, or the weights and activations, W4A4,
per token and per output channel, symmetric RTN) compares the plain model, its norms folded, and
three rotations: the full-width random Hadamard (576 = 36 · 16, 1536 = 12 · 128), a
block-diagonal one with blocks of 64, and a random orthogonal matrix:
"""),
    ("code", r"""
real_record = latest_record("smollm2-135m")
if real_record is None:
    print("no recorded SmolLM2 run here: python benchmarks/frontier.py --model smollm2-135m --sections rotation")
else:
    real_rot, windows = real_record["rotation"], real_record["protocol"]["windows"]
    real_protocol = evaluation.protocol.Protocol("recorded", windows)
    nll = lambda kind, setting: evaluation.protocol.Score(real_protocol, torch.tensor(real_rot[kind][setting]["nll"]))
    print(f"SmolLM2-135M, recorded {real_record['date'][:10]}: perplexity on "
          + (f"test windows 1-{windows} of 512 tokens" if windows else "the whole test split")
          + f"; float {real_record['float']['perplexity']:.2f}")
    print(f"{'':24s}{'W16A4':>12s}{'W4A4':>12s}   W16A4 against the full-width rotation (paired)")
    for kind, row in real_rot.items():
        if kind == "channel_peak_to_rms":
            continue
        cells = "".join(f"{row[s]['perplexity']:12,.1f}" if s in row else f"{'-':>12s}" for s in ("W16A4", "W4A4"))
        versus = (evaluation.protocol.paired_difference(nll("rotated", "W16A4"), nll(kind, "W16A4"))
                  if kind.startswith("rotated,") else "")
        print(f"{kind:24s}{cells}   {versus}")
    for kind, layers in real_rot["channel_peak_to_rms"].items():
        values = torch.tensor(list(layers.values()))
        print(f"channel peak-to-RMS of the linear inputs, {kind:22s} median {values.median():6.1f}, largest {values.max():7.1f}")
"""),
    ("md", r"""
What the recorded table shows (test windows 1–4, one run: the orders of magnitude are the point,
and the paired intervals cover the close pairs). 4-bit activations alone (W16A4) take SmolLM2 from
15.6 to about 4,600: the plain model's linear inputs have a median channel peak-to-RMS of 20 and
up to 869 (layer 11's `down_proj` input; measured on 8 calibration samples). Folding the norms
alone makes it *worse*, about 115,000: folding does not touch the residual stream, and it moves
each norm's weight out of the activations into the next weights (presumably those weights were
damping the outlier channels; we did not isolate it). The full-width Hadamard rotation brings
W16A4 to 28.6 and the largest peak-to-RMS to 31. Blocks of 64 leave a peak-to-RMS of 109 and cost
+43 % of perplexity against the full width, a random orthogonal matrix +88 % (both intervals
exclude zero): how evenly the rotation spreads matters, as SpinQuant found for random rotations.
With 4-bit weights too (W4A4, per-channel RTN, no groups, no GPTQ) even the rotated model sits at
291, far from float; what the rotation buys is a factor of about 26 over the plain model
(7,662 → 291), and blocks of 64 give back about half of it (622). QuaRot's best results pair the
rotation with GPTQ weights.

On real models the rotation is what makes W4A4 work at all. Cited from the papers' abstracts:
QuaRot (Ashkboos et al., NeurIPS 2024)
quantizes LLaMA-2-70B end to end (weights, activations and KV cache) to 4 bits with at most **0.47**
WikiText-2 perplexity lost and 99 % of the zero-shot accuracy kept, and reports lossless 6- and
8-bit models with RTN and no calibration data. SpinQuant (Liu et al., ICLR 2025) *learns* the
rotations (random ones differ by up to 13 points of zero-shot accuracy) and narrows the W4A4KV4 gap
on LLaMA-2-7B to **2.9 points** (19.1 better than LLM-QAT, 25.0 better than SmoothQuant), and by up
to 45.1 % relative to QuaRot on LLaMA-3-8B.

## 8. Which hardware runs which format natively

| format | natively on | notes |
|---|---|---|
| FP8 E4M3/E5M2, per tensor | NVIDIA Ada (compute capability 8.9: L4, L40S, RTX 40), Hopper (9.0: H100, H200), Blackwell | Transformer Engine support matrix |
| FP8 with 128×128 / 1×128 block scales | Hopper, Blackwell | TE's `Float8BlockScaling`; DeepSeek-V3's training recipe |
| MXFP8, NVFP4 | Blackwell data center (10.0: B200, B300, GB300) | TE support matrix; NVFP4 "partial" on RTX 50 / RTX PRO (12.0) |
| MXFP4, MXFP6 | Blackwell; AMD Instinct MI350 series (CDNA 4) | NVIDIA's NVFP4 blog lists FP4/MXFP4/NVFP4 on Blackwell; AMD CDNA 4 white paper |
| FP8 "FNUZ" variants (bias one higher, no −0, no inf) | AMD MI300 (CDNA 3) | proposed by Graphcore, AMD and Qualcomm (StableHLO RFC); `torch.float8_e4m3fnuz`; OCP E4M3 checkpoints are converted for AMD GPUs (Modular's `convert_e4m3fn_to_e4m3fnuz`) |
| all of them | this CPU: none | here everything runs as fake quantization, so the course measures quality, not speed |

Fake quantization has a price of its own here. From the same quiet timings record: rounding a
[4096, 1536] activation (8 sequences of 512 tokens, SmolLM2's MLP width) onto a grid and back,
next to the matmul with a [576, 1536] weight that it would feed:
"""),
    ("code", r"""
if timing_run:
    t = timing_run["timings"]
    matmul = next(v for k, v in t.items() if k.startswith("matmul"))
    for name, ms in t.items():
        if name.endswith("(ms, best of 5)"):
            print(f"{name.removesuffix(' (ms, best of 5)'):45s} {ms:6.1f} ms   {ms / matmul:4.2f}x the matmul")
"""),
    ("md", r"""
Each fake-quantized input costs more than the matmul it feeds (1.5 to 1.8 times here): a
fake-quantized W4A4 model runs slower than the float one on this CPU, and its speed says nothing
about the format's. What these formats buy in speed needs hardware that reads them natively.

The formats earn their keep in memory and bandwidth: gpt-oss-120b's MXFP4 expert weights (4.25
bits per parameter, 90 %+ of its parameters) are what let it fit on one 80 GB GPU (OpenAI's model
card).
"""),
    ("md", r"""
## Summary

* A minifloat is sign, biased exponent and mantissa; rounding is `round(|x| / 2^(e−m))` on the
  grid of its binade, then an overflow rule: E4M3 has no inf, so its overflow saturates at 448
  (`mx.encode`'s default, torch's cast since PR #178817) or becomes NaN (`saturate=False`), E5M2
  overflows to inf, the MX sub-byte formats saturate and have no NaN. Ours equals torch's casts
  on every 16-bit input pattern.
* FP8 needs a scale: per tensor, per channel or per 128×128 block. E4M3 (precision) for weights and
  activations, E5M2 (range) for gradients.
* MX formats share a power-of-two E8M0 scale per 32 values (4.25 / 6.25 / 8.25 bits); NVFP4 an E4M3
  scale per 16 plus a float32 tensor scale (4.5 bits). Ours and torchao's produce the same bytes.
* HQQ optimizes the zero point with no data; with its default β, on weights, that reduces to a
  least-squares zero alternated with re-rounding. Bit-exact with the `hqq` package. On
  `qcourse-tiny` it quantizes 31× faster than GPTQ (0.64 s against 20 s, quiet machine; its
  authors quote "over 50x" on Llama-2-70B), and is not better than GPTQ in perplexity.
* By weight error MXFP4 is the worst data-free 4-bit format, but weight error is a proxy: GPTQ has
  the largest weight error and one of the best perplexities, and the paired intervals separate
  fewer of the 4-bit formats than their weight errors do.
* The KV cache grows with context × batch; per-token, per-head int8 and FP8 are nearly free in
  perplexity, int4 costs a little, int2 a lot; long greedy generations part from the float model's
  with every cache but int8. KIVI's float residual of the newest tokens is what rescues 2 bits here
  (+3.4 % → +0.26 %, at more bytes); its per-channel keys add a little at 2 bits, nothing at 4.
* A Hadamard rotation folded into the weights leaves the model's function unchanged and spreads
  outlier channels evenly over its width (a block-diagonal one over its block only). On SmolLM2,
  whose outliers live in the residual stream, folding the norms alone makes 4-bit activations
  worse; the full-width rotation is what makes them usable.

## Sources

* OCP, *Microscaling Formats (MX) Specification v1.0* (2023); Rouhani et al., *Microscaling Data
  Formats for Deep Learning*, arXiv:2310.10537.
* Micikevicius et al., *FP8 Formats for Deep Learning*, arXiv:2209.05433 (E4M3 for the forward
  pass, E5M2 for gradients).
* OCP, *OCP 8-bit Floating Point Specification (OFP8)*, revision 1.0 (2023): saturating and
  non-saturating conversions; PyTorch PR #178817, *Properly saturate E4M3 on finite-overflow on
  CPU/C++ conversion code* (merged April 2026).
* Paley, *On orthogonal matrices*, J. Math. Phys. 12 (1933): Hadamard matrices of orders q + 1
  and 2(q + 1); QuaRot's code combines such matrices with powers of two the same way
  (`hadamard_utils.get_hadK`).
* NVIDIA, *Introducing NVFP4 for Efficient and Accurate Low-Precision Inference* (developer blog,
  2025); Transformer Engine, *Datatype and hardware support matrix*.
* DeepSeek-AI, *DeepSeek-V3 Technical Report*, arXiv:2412.19437 (128×128 / 1×128 FP8 blocks).
* OpenAI, *gpt-oss-120b & gpt-oss-20b model card* (2025): MXFP4 MoE weights, 4.25 bits per parameter.
* AMD, *Introducing AMD CDNA 4 Architecture* (white paper, 2025); OpenXLA StableHLO RFC
  *FP8 FNUZ types* (2023); Modular MAX docs, `convert_e4m3fn_to_e4m3fnuz`.
* Badri & Shaji, *Half-Quadratic Quantization of Large Machine Learning Models* (Mobius Labs blog,
  2023); the `hqq` package 0.2.8.
* Liu et al., *KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache*, arXiv:2402.02750;
  transformers' `QuantizedCache`; llama.cpp's `--cache-type-k/-v`.
* Ashkboos et al., *QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs*, NeurIPS 2024,
  arXiv:2404.00456.
* Liu et al., *SpinQuant: LLM Quantization with Learned Rotations*, ICLR 2025, arXiv:2405.16406.
* torchao 0.18 (`MXTensor`, `NVFP4Tensor`, `Float8Tensor`).
"""),
]

EXTRAS = "torchao,hqq"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
