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
1. explain, with a measurement, why the input channels with large activations are the salient
   ones (the 1 % experiment of the AWQ paper);
2. explain why AWQ scales channels instead of keeping them in mixed precision, and derive why
   scaling up a channel shrinks its quantization error;
3. implement the per-layer-group search over α of `s = mean|x|^α`, fold `1/s` into the
   preceding RMSNorm or linear layer, and add a clipping search;
4. compare RTN, GPTQ and AWQ at 4 and 3 bits at the same size;
5. recognise AWQ in production tools: AutoAWQ (deprecated), llm-compressor's `AWQModifier`,
   vLLM loading AWQ checkpoints.
"""),
    ("code", r"""
%matplotlib inline
import copy
import inspect
import json
import logging
import pathlib

import matplotlib.pyplot as plt
import torch

from qcourse import awq, blocks, calib, data, models, paths, ptq
from qcourse import eval as ev
from qcourse.exercises import ex05
from qcourse.formats import human_bytes
from qcourse.quant import QuantScheme, fake_quantize

torch.manual_seed(0)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()
samples = data.calibration_samples(tokenizer, 4, 256, seed=0)  # 1,024 calibration tokens

WINDOWS = 16  # perplexity on the first 16 windows of 512 test tokens (see below)


def ppl(m):
    return ev.perplexity(m, tokenizer, split="test", max_windows=WINDOWS)


fp32_ppl = ppl(model)
print(f"fp32 perplexity {fp32_ppl:.2f}, {human_bytes(ev.model_size_bytes(model))}")
"""),
    ("md", r"""
**About the numbers.** To stay under two minutes on a laptop CPU, this notebook calibrates on
4 windows of 256 tokens and measures perplexity on the first 16 windows of 512 tokens of the
test split (8,176 predicted tokens), not the whole split (228 windows). Those first windows are
harder than the average, so the perplexities are higher than the 29.2 of the whole split; what
matters is the gap to fp32. The table on the whole split, with 16 calibration windows of 512
tokens, is produced by `benchmarks/awq.py` and shown in section 7.

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
salient = {"RTN 3-bit (nothing kept)": ppl(awq.keep_salient(copy.deepcopy(model), stats, fraction=0.0))}
for by in awq.SALIENT_CRITERIA:
    kept = awq.keep_salient(copy.deepcopy(model), stats, fraction=0.01, by=by, bits=3)
    salient[f"1% kept by {by}"] = ppl(kept)
print(f"{'3-bit g128, 1% of input channels in fp32':42} perplexity   (fp32 {fp32_ppl:.2f})")
for label, value in salient.items():
    print(f"{label:42} {value:8.2f}   (+{value - fp32_ppl:.2f})")
"""),
    ("md", r"""
Read the gaps to fp32 (the `+` column), not the absolute values. On this 6-layer model trained
on clean text, activation outliers are mild (the largest channel mean is a few times the median,
far from the outlier features that LLM.int8() reports in large LLMs), so keeping 1 % of the
channels barely moves the perplexity here, by any criterion: the paper's effect needs real
outliers. The experiment shows how to measure it; and whatever the ranking, mixed precision has
a practical cost, which is the next point.

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
error `‖x Ŵᵀ − x Wᵀ‖²` (the paper's Table 2 does the same on OPT-6.7B).
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
    w_hat = fake_quantize(w * s, 3, symmetric=False, granularity="group", group_size=128) / s
    err = ((x @ w_hat.t() - reference) ** 2).mean().item()
    base = err if s_value == 1.0 else base
    print(f"{s_value:5}  {err / base:.3f}")
"""),
    ("md", r"""
On this layer a small scale (about 1.25) lowers the error a little and larger ones raise it:
its outliers are mild, and a large `s` makes the scaled channels dominate their groups, so
every other weight of the group pays. The best `s` depends on the layer: it has to be
*searched*.

## 4. The search: s = mean|x|^α, one α per group of layers

AWQ ties all channels to one knob: `s_j = mean|x_j|^α`, normalised so that
`max(s)·min(s) = 1`. `α = 0` is plain RTN, `α = 1` scales every channel by its activation
magnitude. For each **group of layers that read the same input** (one `s` per input, because
the division of `x` is shared), α is chosen from the grid `{0, 0.05, …, 0.95}` by running the
block part on the calibration activations and keeping the α with the lowest output error:

    α* = argmin_α ‖ f(X; Q(W·diag(s)) · diag(s)⁻¹) − f(X; W) ‖²

| input produced by | layers that share it | f (where the error is measured) |
|---|---|---|
| `input_layernorm` | q, k, v | the attention output |
| `v_proj` | o | o's output (only without grouped-query attention, see below) |
| `post_attention_layernorm` | gate, up | the MLP output |
| `up_proj` | down | down's output |

Folding `1/s` into an RMSNorm divides its weight; into a linear layer, divides its output rows.
`qcourse-tiny` uses grouped-query attention (4 query heads, 2 key/value heads): one row of `v`
feeds two heads of `o`, so a per-channel scale of `o`'s 256 inputs cannot be folded into `v`'s 128
outputs. AutoAWQ skips that pair when the shapes differ (`v_proj.weight.shape ==
o_proj.weight.shape`), and so do we: three groups per block. AutoAWQ also offers
`duo_scaling` (its default): `s_j = mean|x_j|^α / w̄_j^(1−α)` with `w̄_j` the mean normalised
weight magnitude of channel j. Ours defaults to `duo_scaling=False`, the paper's
`s = mean|x|^α`; the AutoAWQ runs of section 7 use AutoAWQ's default, `True`, so the recorded
benchmark also runs ours with `duo_scaling=True` to compare like with like.

**Exercises 05.2 and 05.3.** Write the scales and the weight the search evaluates, before the
package's code below shows them. Replace each `...` and run the cell; `check` runs hidden cases
and prints *correct*, *wrong* (with the first failing case) or *not attempted*.
"""),
    ("code", r"""
print(ex05.awq_scale.prompt)


def awq_scale(x_mean, alpha):
    return ...  # s = x_mean ** alpha, normalised so that max(s) * min(s) = 1


ex05.awq_scale.check(awq_scale);
"""),
    ("code", r"""
print(ex05.scaled_quantization.prompt)


def scaled_quantization(weight, s, bits, group_size):
    return ...  # Q(W · diag(s)) · diag(s)^-1


ex05.scaled_quantization.check(scaled_quantization);
"""),
    ("code", r"""
print(inspect.getsource(awq.awq_scales))
print(inspect.getsource(awq.search_scale))
"""),
    ("md", r"""
**Exercise 05.4.** Folding `1/s` into the RMSNorm before `q/k/v`: write it before the package's
`fold_scales` is shown.
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
recorded = sorted(p for p in (paths.REPO_DIR / "benchmarks" / "results").glob("awq-*.json")
                  if "quick" not in p.name)
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
layer's output error. Its groups are fairly balanced around zero (last line), so "scale min and
max by r" and "clamp to ±r·max|w|" pick similar ranges; they would part ways on lopsided groups.
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
def gptq_model(bits):
    # GPTQ column: qcourse.gptq (notebook 04); rerun this cell if it was not available yet
    try:
        from qcourse import gptq
    except ImportError as err:
        print(f"GPTQ not available: {err}")
        return None
    return gptq.quantize_model(copy.deepcopy(model), samples, bits, 128, progress=False)


rows = {}
for bits in (4, 3):
    rows["RTN", bits] = ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128)
    rows["GPTQ", bits] = gptq_model(bits)
    rows["AWQ", bits] = awq4 if bits == 4 else awq.quantize_model(
        copy.deepcopy(model), samples, bits, 128, progress=False)
print(f"{'method':6} {'bits':>4} {'perplexity':>10} {'vs fp32':>8} {'size':>9}")
print(f"{'fp32':6} {32:4} {fp32_ppl:10.2f} {'':8} {human_bytes(ev.model_size_bytes(model)):>9}")
for (method, bits), m in rows.items():
    if m is not None:
        p = ppl(m)
        print(f"{method:6} {bits:4} {p:10.2f} {p - fp32_ppl:+8.2f} "
              f"{human_bytes(ev.model_size_bytes(m)):>9}")
"""),
    ("md", r"""
On the whole test split, with more calibration data (`python benchmarks/awq.py --extra`; the
latest recorded run is read below, with its machine and date), together with AutoAWQ on the same
calibration windows. AutoAWQ runs with its default `duo_scaling=True`; so does the "ours,
duo_scaling" row, the like-for-like comparison. The file also holds each run's wall time, but
this run shared the machine's two cores with other jobs, so those times are not a speed
comparison and are not shown.
"""),
    ("code", r"""
recorded = sorted((paths.REPO_DIR / "benchmarks" / "results").glob("awq-*.json"))
recorded = [p for p in recorded if "quick" not in p.name]
if recorded:
    result = json.loads(recorded[-1].read_text())
    print(f"{recorded[-1].name}: recorded {result['date'][:10]} on {result['machine']}, "
          f"{result['torch_threads']} torch thread(s); {result['calibration']} calibration, "
          f"test windows: {result['test_windows']}")
    for name, row in result["rows"].items():
        print(f"  {name:32} perplexity {row['ppl']:7.2f}")
else:
    print("no recorded run: python benchmarks/awq.py")
"""),
    ("md", r"""
How to read it. At 4 bits, round-to-nearest with groups of 128 already loses very little on this
model (about 0.1 perplexity), and neither our AWQ nor AutoAWQ improves on it on the whole split:
there are no strong activation outliers to protect, and what the search gains on the calibration
windows is within the noise of the test set. At 3 bits, where rounding costs more, AWQ recovers
about a third of RTN's loss (29.72 → 29.57–29.59). Like with like (`duo_scaling=True` on both
sides), ours and AutoAWQ land within 0.02 of each other at both widths (29.30 and 29.32 at 4
bits, 29.59 and 29.58 at 3); the paper's plain `s = mean|x|^α` (ours by default) does as well.
GPTQ, which corrects each rounding error with the layer's second-order statistics instead of
only rescaling channels, does better here at both widths.

**Real models.** The AWQ paper's Table 4 (Lin et al., 2024; WikiText-2 perplexity, groups of 128)
for Llama-2-7B, next to the tiny model's recorded numbers above:

| Llama-2-7B, g128 | fp16 | RTN | GPTQ | GPTQ act-order | AWQ |
|---|---|---|---|---|---|
| 4-bit | 5.47 | 5.73 | 5.69 | 5.63 | 5.60 |
| 3-bit | 5.47 | 6.66 | 6.43 | 6.42 | 6.24 |

On that model, with real outlier channels, AWQ beats GPTQ at both widths; on qcourse-tiny GPTQ
wins. Which method wins depends on the model, which is why we measure.
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
from qcourse import gptq

outlier = models.with_outliers(model)
outlier_rows = {
    "RTN": ptq.quantize_rtn(copy.deepcopy(outlier), 4, "group", 128),
    "GPTQ": gptq.quantize_model(copy.deepcopy(outlier), samples, 4, 128, progress=False),
    "AWQ": awq.quantize_model(copy.deepcopy(outlier), samples, 4, 128, progress=False),
}
print(f"{'4-bit g128':8} {'qcourse-tiny':>12} {'outlier model':>14}   (fp32: {fp32_ppl:.2f} and "
      f"{ppl(outlier):.2f}, the same function)")
for method, m in outlier_rows.items():
    print(f"{method:8} {ppl(rows[method, 4]):12.2f} {ppl(m):14.2f}")
"""),
    ("md", r"""
The outliers separate the methods. Round-to-nearest loses almost twice as much on the outlier
model as on qcourse-tiny (+0.49 instead of +0.27 perplexity over fp32, 16 windows): the
rounding errors of the outlier columns are multiplied by activations 100 times larger. AWQ loses
the same on both models (+0.21 and +0.22): its scales `s = mean|x|^α` are largest exactly on the
outlier channels and undo the damage, so here AWQ beats RTN by 0.28, against 0.05 on the plain model.
GPTQ, the best on qcourse-tiny (+0.06), loses more on the outlier model (+0.19) and ends level
with AWQ. On a model without outliers AWQ buys little; on one with them it is what keeps 4 bits
close to fp32.
"""),
    ("md", r"""
## 8. AWQ in production tools

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
    print(f"fp32 {rows['fp32']['ppl']:.2f}; AutoAWQ 0.2.9 on a CPU, 4-bit: as released "
          f"{rows['AutoAWQ (as released) 4-bit']['ppl']:.2f}, with the CPU fix "
          f"{rows['AutoAWQ (CPU fix) 4-bit']['ppl']:.2f}  ({recorded[-1].name})")
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
`quantization_config` (as text: it needs a GPU):

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
  strong activation outliers, no criterion changes much (section 2).
* Scaling a channel up by `s` before quantization shrinks its error by about `s`, as long as it
  does not become its group's maximum; the inverse scale is folded into the previous RMSNorm or
  linear layer, so all weights keep one hardware-friendly format.
* AWQ searches one exponent α per group of layers sharing an input (`s = mean|x|^α`, 20 values;
  AutoAWQ's default `duo_scaling` also divides by a weight term) on the output error of the block
  part, then a clip ratio per output channel and group (ours scales the group's min and max,
  AutoAWQ clamps to ±r·max|w|).
* On a model with outlier channels (qcourse-tiny through `models.with_outliers`, section 7b)
  round-to-nearest loses about twice as much at 4 bits, and AWQ, unaffected, beats it.
* Under grouped-query attention the v → o pair cannot be folded per channel and is skipped.
* AutoAWQ is deprecated (and, on a CPU, changes the float weights during its search unless
  patched); llm-compressor's `AWQModifier` is its successor, and vLLM serves the checkpoints.

## Sources

* J. Lin, J. Tang, H. Tang, S. Yang, W.-M. Chen, W.-C. Wang, G. Xiao, X. Dang, C. Gan, S. Han.
  *AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration.*
  MLSys 2024, [arXiv:2306.00978](https://arxiv.org/abs/2306.00978).
* AutoAWQ 0.2.9: [github.com/casper-hansen/AutoAWQ](https://github.com/casper-hansen/AutoAWQ)
  (`awq/quantize/quantizer.py`, `awq/models/llama.py`).
* llm-awq issue #163 / PR #327: the CPU copy problem of the scale search
  ([github.com/mit-han-lab/llm-awq](https://github.com/mit-han-lab/llm-awq)).
* llm-compressor: [github.com/vllm-project/llm-compressor](https://github.com/vllm-project/llm-compressor);
  vLLM quantization docs: [docs.vllm.ai](https://docs.vllm.ai).
"""),
]

EXTRAS = ""  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
