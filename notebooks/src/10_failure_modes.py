"""Source of notebooks/10_failure_modes.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 10 · Failure modes: each one broken, diagnosed and recovered

The earlier notebooks show methods working. In practice, quantization fails, and often silently:
the model loads, generates fluent text and is worse than it should be. This notebook breaks the
course's models in the ways practitioners actually meet, shows how each failure announces itself
(a measurement, a tool of the package), and recovers from it, with the numbers before and after.

**Learning goals.** After this notebook you can
1. recognise activation outlier channels from statistics, explain why they break W8A8, and fix
   them with finer scales, SmoothQuant, AWQ or mixed precision (LLM.int8());
2. explain why 2-bit quantization collapses, find the layer that breaks it, and avoid the
   symmetric-grid trap;
3. tell when calibration data does not match the use, and how much of it is enough;
4. check a GGUF file (tokenizer metadata, RoPE layout) and a GPTQ checkpoint (zero-point
   convention, `g_idx`) before trusting it;
5. explain float16 overflow and int8 accumulation overflow, and what a missing kernel costs;
6. read the errors and warnings the package gives for NaN weights, group sizes that do not
   divide and rank-deficient Hessians, and know what to do.

The tool used throughout is `qcourse.diagnose.diagnose`: per linear layer, the outlier ratio of
its inputs and weights, its output range, NaN/Inf, and its **sensitivity** (how far the model's
next-token distribution moves when only that layer is quantized).
"""),
    ("code", r"""
%matplotlib inline
import copy
import functools
import inspect
import json
import logging
import pathlib
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import torch

from qcourse import awq, blocks, calib, data, gptq, gptq_checkpoint, kernels, layers, models, ptq
from qcourse import eval as ev
from qcourse import smoothquant
from qcourse.diagnose import check_gguf, diagnose
from qcourse.exercises import ex10
from qcourse.gguf import llamacpp, reader, writer
from qcourse.models import minilm
from qcourse.quant import QuantScheme, fake_quantize

torch.manual_seed(0)
torch.set_num_threads(1)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()
WINDOWS = 2                                                  # see "About the numbers"
ids = data.calibration_samples(tokenizer, 4, 128, seed=0)   # 512 calibration tokens


def ppl(m, domain=None):
    return ev.perplexity(m, tokenizer, max_windows=WINDOWS, domain=domain)


fp32_ppl = ppl(model)
found = sorted(pathlib.Path("../benchmarks/results").glob("failure_modes-*.json"))
record = json.loads(found[-1].read_text()) if found else None
print(f"fp32 perplexity on {WINDOWS} test windows: {fp32_ppl:.1f}")
if record:
    print(f"recorded run: {record['date'][:10]}, {record['machine']['cpu']}, "
          f"{record['torch_threads']} thread(s), test windows: {record['windows']}")


def recorded(section):
    # the section of the recorded run, or None (saying how to record it)
    if record and section in record:
        return record[section]
    print(f"not recorded in this copy: python benchmarks/failure_modes.py --sections {section}")
    return None
"""),
    ("md", r"""
**About the numbers.** Live cells measure perplexity on the first 2 windows of 512 test tokens
(1,022 predicted tokens) so that the notebook runs in two minutes on a laptop CPU; they are
rough (±1 % between neighbouring methods means nothing) but each failure below moves them far
more than that. Figures on more windows come from `benchmarks/failure_modes.py`, recorded in
`benchmarks/results/` with the machine, date and load, and are printed as *recorded* (a cell says
so where a section has not been recorded). Torch runs on one
thread here: on a shared machine it is faster and its timings more repeatable.

The diagnosing tool, read once:
"""),
    ("code", r"""
print(inspect.getsource(diagnose))
"""),
    ("md", r"""
## 1. Outlier channels

**The phenomenon.** Large language models grow a few *outlier feature dimensions*: the same few
channels of the residual stream, in every layer, carry activations far larger than the others.
LLM.int8() (Dettmers et al. 2022) finds features "with magnitudes up to 20x larger than in
other dimensions" that appear in all layers from 6.7B parameters on (its Table 4: 3–20× the
largest other dimension, which usually lies in [−3.5, 3.5]); SmoothQuant (Xiao et al. 2023, §3)
puts them at "~100× larger than most of the activation values". With one int8 scale per token
(or per tensor), such a channel sets the scale and every other channel is left with a handful of
levels.

**A stand-in that is honest about what it is.** qcourse-tiny (5.8M parameters) has no such
channels. `models.with_outliers` gives it some *without changing its function*: in each block,
the RMSNorm weight of 4 residual channels is multiplied by 100 and the matching input columns of
the layers the norm feeds (q/k/v, gate/up) are divided by 100. The float model computes exactly
the same logits, so every difference below is caused by quantization alone. It is the inverse of
SmoothQuant's migration:

    y = (w ⊙ x̂) Wᵀ = (w ⊙ s⁻¹ ⊙ x̂) (W diag(s))ᵀ,      s_j = 1/100 on the chosen channels
"""),
    ("code", r"""
print(inspect.getsource(models.with_outliers))
"""),
    ("code", r"""
outlier = models.with_outliers(model)
with torch.no_grad():
    drift = (model(ids).logits - outlier(ids).logits).abs().max().item()
print(f"outlier channels {outlier.outlier_channels}, x{outlier.outlier_factor:g}")
print(f"largest logit difference with the original model: {drift:.1e} (float32 rounding)")
print(f"perplexity: original {fp32_ppl:.2f}, outlier model {ppl(outlier):.2f}")
"""),
    ("md", r"""
**Exercise 10.1** — before we measure: a layer's inputs have per-channel maxima `absmax [K]`
(calibration, `calib.collect_activation_stats`). Write the detector of outlier channels.
"""),
    ("code", r"""
ex10.outlier_channels.show()

def outlier_channels(absmax, k):
    return ...  # your code here

ex10.outlier_channels.check(outlier_channels);
"""),
    ("code", r"""
plain_report = diagnose(model, samples=ids, sensitivity=False)
outlier_report = diagnose(outlier, samples=ids, sensitivity=False)
print(outlier_report.summary())
gate = outlier_report["model.layers.2.mlp.gate_proj"].input_absmax
print("model.layers.2.mlp.gate_proj, channels above 6x the median channel:",
      ex10.outlier_channels.reference(gate, 6.0).tolist())

fig, ax = plt.subplots(figsize=(9, 2.6))
names = [layer.name for layer in plain_report.layers]
ax.bar(range(len(names)), [l.act_ratio for l in outlier_report.layers], label="outlier model")
ax.bar(range(len(names)), [l.act_ratio for l in plain_report.layers], label="qcourse-tiny")
ax.set(yscale="log", ylabel="max / median channel (r_x)")
ax.set_xticks(range(len(names)), [n.replace("model.layers.", "L").replace("self_attn.", "")
                                  .replace("mlp.", "") for n in names], rotation=90, fontsize=6)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
The ratio jumps from under 2× to over 100× on exactly the q/k/v and gate/up inputs, in every
block, always the same channels; `o_proj` and `down_proj` read other activations and stay as
they were.

**Against a real model.** all-MiniLM-L6-v2 (a pretrained 22.7M-parameter BERT) has one real
outlier channel, 99, in its residual stream. Same measurement, same tool:
"""),
    ("code", r"""
bert, bert_tokenizer = minilm.load()
bert_ids = minilm.token_ids(bert_tokenizer, minilm.sentences(16))
bert_report = diagnose(bert, samples=bert_ids, sensitivity=False)


def column_ratio(layer, j):
    columns = layer.weight.detach().abs().amax(0)   # max |W| of each input column
    return (columns[j] / columns.median()).item()


rows = [("MiniLM L0 intermediate (FFN in)", bert, bert_report, "encoder.layer.0.intermediate.dense", 99),
        ("MiniLM L3 intermediate", bert, bert_report, "encoder.layer.3.intermediate.dense", 99),
        ("MiniLM L3 query", bert, bert_report, "encoder.layer.3.attention.self.query", 99),
        ("qcourse-tiny L2 gate_proj", model, plain_report, "model.layers.2.mlp.gate_proj", 105),
        ("outlier model L2 gate_proj", outlier, outlier_report, "model.layers.2.mlp.gate_proj", 105)]
print(f"{'layer':32} {'channel':>7} {'its max|x|':>10} {'median':>7} {'ratio':>6} {'its W column':>13}")
for label, m, report, name, j in rows:
    a = report[name].input_absmax
    print(f"{label:32} {j:7d} {a[j]:10.1f} {a.median():7.2f} {a[j] / a.median():6.1f} "
          f"{column_ratio(m.get_submodule(name), j):12.2f}x")
readers = [l for l in bert_report.layers if l.name.endswith(("query", "key", "value", "intermediate.dense"))]
print(f"MiniLM: channel 99 is the largest input channel of "
      f"{sum(l.top_channels[0] == 99 for l in readers)} of the {len(readers)} layers that read "
      f"the hidden state (query, key, value, intermediate)")
"""),
    ("md", r"""
What the stand-in shares with the real thing, and where it differs:

* **Activations.** The same kind of object: a fixed residual channel, large in every layer. Its
  size is the large-model one (~100× the median channel, SmoothQuant's figure); MiniLM's channel
  99, in a model 300 times smaller than 6.7B, reaches about 17× at the FFN input and less at
  q/k/v. So W8A8 meets the same problem, scaled to the models where it matters.
* **Weights.** MiniLM's weight column for channel 99 is ordinary (about 1–2× the median column);
  ours is 100× *smaller*, because the transform must keep the product `x_j · W[:, j]`. A weight
  quantizer then rounds that column to (nearly) zero: the error on the channel is its whole
  contribution `x_j W[:, j]`, the size it had in the original model. With an ordinary column and
  a 100× activation the error would be the rounding step times `x_j`: larger. So weight-only
  damage on the stand-in is, if anything, an **underestimate**; the W8A8 failure is faithful.

**Breaking it.** W8A8 with one activation scale per tensor, then per token:
"""),
    ("code", r"""
w8a8 = {}
for activations in ("tensor", "token"):
    for name, base in (("qcourse-tiny", model), ("outlier model", outlier)):
        w8a8[activations, name] = ppl(ptq.quantize_w8a8(copy.deepcopy(base), activations))
print(f"{'':22} {'qcourse-tiny':>12} {'outlier model':>14}   (fp32 {fp32_ppl:.1f})")
for activations in ("tensor", "token"):
    print(f"W8A8 per-{activations:6}       {w8a8[activations, 'qcourse-tiny']:12.1f} "
          f"{w8a8[activations, 'outlier model']:14.1f}")
"""),
    ("md", r"""
On the original model W8A8 costs nothing; on the outlier model, with the same float function,
perplexity rises by about half with per-tensor scales and by several percent with per-token
scales. **Which
layers break?** `diagnose` with W8A8 as the quantizer: each linear layer alone in W8A8
(per-token), the KL divergence of the next-token distribution from the float model's.
"""),
    ("code", r"""
as_w8a8 = lambda name, linear: layers.W8A8Linear.from_float(linear)   # noqa: E731
broken = diagnose(outlier, samples=ids[:2], quantize=as_w8a8)
print(broken.table(top=8, sort="sensitivity"))
fig = broken.plot("outlier model, each layer alone in W8A8 (per token)")
plt.show()
"""),
    ("md", r"""
The sensitivity sits in the layers that read an outlier channel (q/k/v, gate/up), most of it in
block 0; `o_proj` and `down_proj`, which do not, barely register. The recoveries, each measured on the same outlier model:

* **finer activation scales**: one scale per token *and per group of 32 channels* (as MX formats
  do), so the outlier coarsens only its own group (here fake-quantized, weights int8 per channel);
* **SmoothQuant**: divide channel j by `s_j = max|X_j|^α / max|W_j|^(1−α)`, fold it into the
  norm (free at run time), W8A8 afterwards;
* **LLM.int8()** (mixed precision): the input features above 6.0 go through floating point.
"""),
    ("code", r"""
stats = calib.collect_activation_stats(outlier, ids)


def smoothed(alpha, activations):
    m = copy.deepcopy(outlier)
    smoothquant.smooth_llama(m, stats, alpha)
    return ptq.quantize_w8a8(m, activations)


per_group = functools.partial(fake_quantize, bits=8, symmetric=True, granularity="group",
                              group_size=32)
recovered = {
    "W8A8 per-token (broken)": w8a8["token", "outlier model"],
    "W8 + A8 per token and group of 32": ppl(layers.quantize_inputs(
        ptq.quantize_rtn(copy.deepcopy(outlier), 8, "channel"), per_group)),
    "SmoothQuant α=0.5 + W8A8 per-tensor": ppl(smoothed(0.5, "tensor")),
    "SmoothQuant α=0.5 + W8A8 per-token": ppl(smoothed(0.5, "token")),
    "LLM.int8() (threshold 6)": ppl(ptq.quantize_llm_int8(copy.deepcopy(outlier))),
}
for label, value in recovered.items():
    print(f"{label:38} {value:7.1f}")
print(f"{'fp32':38} {fp32_ppl:7.1f}")
"""),
    ("md", r"""
All three recover most or all of what W8A8 lost. SmoothQuant's α says how much of the
activations' range moves into the weights: the larger α, the flatter the activations and the
more uneven the weights. On the stand-in, α does not matter, exactly: its outlier channel has
`max|X_j|` 100 times larger and `max|W_j|` 100 times smaller, so
`s_j = max|X_j|^α / max|W_j|^(1−α)` is 100^α · 100^(1−α) = 100 times larger whatever α is, and
SmoothQuant simply undoes `with_outliers` (a limit of the stand-in, whose weight columns are not
those of a real outlier model). A real model shows what α does: MiniLM's first FFN layer
(`encoder.layer.0.intermediate.dense`, whose input carries channel 99), its calibration inputs
divided by `s` and its weight columns multiplied by `s`, in W8A8; the output error relative to
the float layer, `‖Y' − Y‖² / ‖Y‖²`, for each α (BERT cannot fold `s` into a norm: the division
stays explicit, see below):
"""),
    ("code", r"""
name = "encoder.layer.0.intermediate.dense"
with awq.recorded_inputs(bert, [name]) as seen, torch.no_grad():
    for sentence in bert_ids:
        bert(sentence)
x = torch.cat([t.flatten(0, -2) for t in seen[name]])            # [tokens, 384]
W_fc = bert.get_submodule(name).weight.detach()                   # [1536, 384]
y_fc = x @ W_fc.t()


def smoothed_w8a8_error(alpha, activations):
    s = (torch.ones(x.shape[1]) if alpha is None
         else smoothquant.smoothing_scales(x.abs().amax(0), [W_fc], alpha))
    linear = torch.nn.Linear(W_fc.shape[1], W_fc.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(W_fc * s)
    out = layers.W8A8Linear.from_float(linear, activations=activations)(x / s)
    return ((out - y_fc).pow(2).sum() / y_fc.pow(2).sum()).item()


sweeps = {activations: {alpha: smoothed_w8a8_error(alpha, activations)
                        for alpha in (0.25, 0.5, 0.75, 1.0)} for activations in ("tensor", "token")}
for activations, sweep in sweeps.items():
    print(f"W8A8 per-{activations:6}: no smoothing {smoothed_w8a8_error(None, activations):.2e};  "
          + "  ".join(f"α={a}: {v:.2e}" for a, v in sweep.items()))
"""),
    ("md", r"""
**Exercise 10.2** — write the rule that picks α from such a sweep.
"""),
    ("code", r"""
ex10.choose_alpha.show()

def choose_alpha(sweep):
    return ...  # your code here

ex10.choose_alpha.check(choose_alpha);
"""),
    ("code", r"""
for activations, sweep in sweeps.items():
    print(f"MiniLM W8A8 per-{activations}: α = {ex10.choose_alpha.reference(sweep)}")
"""),
    ("md", r"""
Per tensor, smoothing is what makes W8A8 usable on this layer: at α = 0.75 the error is more
than 20 times smaller than without smoothing; too little migration (α = 0.25) barely helps, and
too much (α = 1) moves the difficulty into the weights, whose error rises again. Per token, the
unsmoothed error is already an order of magnitude lower, and smoothing gains about a factor of 2
at α = 0.5–0.75 (at α = 0.25 it is slightly worse than none); the two are nearly tied and the
rule takes the smaller, less invasive one. α is a trade-off measured per model (and per
activation granularity), not a constant.
"""),
    ("md", r"""
**AWQ** protects the same channels for weight-only quantization: it scales channel j *up* by
`s_j = mean|x_j|^α` before rounding and folds `1/s` into the norm, which here undoes the stand-in's
shrinking of those columns. One group of block 0 (q/k/v behind the input norm), the output error
of the attention block for each α (α = 0 is plain round-to-nearest), 4-bit groups of 128:
"""),
    ("code", r"""
for name, base in (("qcourse-tiny", model), ("outlier model", outlier)):
    inputs = blocks.capture_block_inputs(base, ids[:2])
    block = base.model.layers[0]
    feats = awq.capture_linear_inputs(block, inputs, ["self_attn.q_proj"])["self_attn.q_proj"]
    attn = block.self_attn
    search = awq.search_scale(attn, [attn.q_proj, attn.k_proj, attn.v_proj], feats,
                              inputs.kwargs, QuantScheme(4, 128))
    print(f"{name:14} RTN error {search.errors[0]:.2e}, AWQ (α = {search.alpha:.2f}) "
          f"{search.errors.min():.2e}: {search.errors[0] / search.errors.min():.1f}x lower")
"""),
    ("md", r"""
**The recorded table.** Perplexity, and the KL divergence from the float model (on the first
windows; it isolates what quantization changed), on the original and the outlier model, from
`benchmarks/failure_modes.py` (the cell prints how many test windows and calibration windows the
run used).
"""),
    ("code", r"""
if recorded("outliers"):
    table, options = record["outliers"]["table"], record["options"]
    scored = "the whole test split" if record["windows"] == "whole test split" else \
        f"{record['windows']} test windows"
    print(f"recorded {record['date'][:10]}: perplexity on {scored} (windows of 512 tokens), KL on "
          f"the first {options['kl_windows']} windows; AWQ, GPTQ and SmoothQuant calibrated on "
          f"{options['calib_samples']} windows of 512 train tokens")
    print(f"{'method':38} {'ppl tiny':>9} {'ppl outl.':>9} {'KL tiny':>8} {'KL outl.':>8}")
    for label, row in table.items():
        a, b = row["qcourse-tiny"], row["outlier model"]
        print(f"{label:38} {a['perplexity']:9.2f} {b['perplexity']:9.2f} {a['kl']:8.4f} "
              f"{b['kl']:8.4f}")
"""),
    ("code", r"""
if recorded("outliers"):
    sweep = record["outliers"]["alpha_sweep"]
    print(f"outlier model, SmoothQuant + W8A8, perplexity on the first {sweep['windows']} windows "
          f"(float {record['twobit']['table']['float']:.2f} on the same windows):")
    for activations in ("per-tensor", "per-token"):
        print(f"  {activations:10} " + "  ".join(f"α={a}: {v:.2f}" for a, v in sweep[activations].items()))
"""),
    ("md", r"""
What to look for in it. The 8-bit rows repeat, on more windows, what the cells above measured:
on qcourse-tiny every 8-bit method sits at the float perplexity ("these methods buy nothing on a
model without outliers" is a real result), while on the outlier model the same float function
breaks W8A8 (per-tensor much more than per-token) and SmoothQuant or LLM.int8() bring it back.

The 4- and 3-bit rows ask whether weight-only quantization separates the methods too, and the
answer changes with the model. On qcourse-tiny GPTQ is the best weight-only method at both widths;
AWQ sits between it and RTN at 3 bits and is no better than RTN at 4 (as notebook 05 found). On the outlier model the scaled-down weight columns (divided
by 100, as the input channels they multiply grew by 100) are rounded away within their groups:
RTN loses more than on the original, GPTQ recovers part of it, and AWQ, which searches for
exactly this kind of per-channel scale, recovers the most: at 4 bits it is back at the original
model's RTN figure. (Notebook 05, section 7b, measures RTN, GPTQ and AWQ at 4 bits live on this
model.) SmoothQuant's α, swept on the outlier model over the first 32 windows, changes nothing
visible (next cell): with one factor of 100 on both sides, every α moves the same ratio (the
explanation is in section 1's SmoothQuant cell).

**The real model (recorded).** MiniLM has no perplexity; its task here is docstring retrieval
over the test split (`qcourse.models.retrieval`: for each function's signature, find its
docstring among all of them; accuracy@1, and agreement of the top-1 with the float model).
SmoothQuant and AWQ cannot fold their scales into BERT's LayerNorms (post-norm: the LayerNorm
output is also the residual stream), so they run with an explicit division in front of each
layer (`qcourse.layers.scaled.ScaledInput`), which a kernel fuses into the activation quantizer.
"""),
    ("code", r"""
mini = recorded("minilm")
if mini:
    print(f"{mini['pairs']} function/docstring pairs; channel {mini['outlier_channel']}: "
          f"max {mini['outlier_max']:.1f} vs median channel {mini['median_channel_max']:.2f}")
    print(f"{'all-MiniLM-L6-v2':48} {'acc@1':>6} {'agree':>6} {'1-cos':>8}")
    for label, row in mini["table"].items():
        print(f"{label:48} {row['accuracy']:6.3f} {row['agreement']:6.3f} "
              f"{row['one_minus_cosine']:8.1e}")
"""),
    ("md", r"""
With about a hundred pairs one query is about one point of accuracy, so accuracy barely
separates the 8-bit methods; the agreement with the float model's top-1 and the embedding
distance are the finer measures.

Read with those measures, the whole model does not repeat the one-layer picture of section 1.
Per token, SmoothQuant does help: it halves W8A8's embedding error and LLM.int8() does better
still. Per tensor, smoothing every linear layer with scales from the 32 calibration sentences made
W8A8 *worse* at every α of the recorded sweep (next cell; α = 0.75 is the least bad), although
it cut one layer's error twenty-fold above. What helps one layer need not help the model: measure
the whole model, on its task, before you ship a recipe.
"""),
    ("code", r"""
if mini:
    print("all-MiniLM-L6-v2, SmoothQuant + W8A8, 1 - cosine of the sentence embeddings "
          f"(W8A8 without smoothing: per-tensor {mini['table']['W8A8 per-tensor']['one_minus_cosine']:.1e}, "
          f"per-token {mini['table']['W8A8 per-token']['one_minus_cosine']:.1e})")
    for activations in ("per-tensor", "per-token"):
        print(f"  {activations:10} " + "  ".join(f"α={a}: {v:.1e}"
                                               for a, v in mini["alpha_sweep"][activations].items()))
"""),
    ("md", r"""
## 2. 2-bit collapse, and the symmetric-grid trap

At 2 bits a group of 128 weights gets four levels. Round-to-nearest error grows with the step,
`Δ = (max − min) / 3`; the error of a whole layer is then the size of its signal. A **symmetric**
grid makes it worse: `q ∈ {−2, −1, 0, 1}` with `scale = max|w| / 1` maps every weight to
`round(w / scale) ∈ {−1, 0, 1}`: the code −2 is never used, so symmetric 2-bit has **3 levels**,
not 4 (and symmetric 3-bit 7 of 8).
"""),
    ("code", r"""
W = model.model.layers[2].mlp.up_proj.weight.detach()
for symmetric in (False, True):
    scheme = QuantScheme(2, 128, symmetric)
    q, scale, zero = scheme.quantize(W)
    err = (scheme.dequantize(q, scale, zero) - W).pow(2).mean() / W.pow(2).mean()
    print(f"{'symmetric' if symmetric else 'asymmetric':10} 2-bit: codes used {sorted(q.unique().tolist())}, "
          f"relative weight error {err:.2f}")
rtn2 = {sym: ppl(ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128, symmetric=sym))
        for sym in (False, True)}
print(f"perplexity: fp32 {fp32_ppl:.1f}, RTN W2 g128 asymmetric {rtn2[False]:.1f}, "
      f"symmetric {rtn2[True]:.1f}")
"""),
    ("md", r"""
**Exercise 10.3** — quantize one layer at a time to 2 bits and find the one that hurts most.
"""),
    ("code", r"""
ex10.breaking_layer.show()

breaking_layer = ...  # your answer: a layer name

ex10.breaking_layer.check(breaking_layer);
"""),
    ("code", r"""
two_bit = diagnose(model, samples=ids, quantize=QuantScheme(2, 128))
print(two_bit.table(top=6, sort="sensitivity"))
fig = two_bit.plot("qcourse-tiny, each layer alone at 2 bits (RTN g128)")
plt.show()
"""),
    ("md", r"""
The first block carries most of the damage (its v, o and MLP projections). The cheapest recovery is
mixed precision: keep the few most sensitive layers at 8 bits (4 of 42 layers: the model grows
by a few percent) and quantize the rest to 2 bits.
"""),
    ("code", r"""
keep = [layer.name for layer in two_bit.most_sensitive(4)]
mixed = ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128)
for name in keep:
    models.set_module(mixed, name, ptq.rtn_layer(model.get_submodule(name), QuantScheme(8, 128)))
print("kept at 8 bits:", keep)
print(f"RTN W2: {rtn2[False]:.1f} -> with those 4 layers at W8: {ppl(mixed):.1f} (fp32 {fp32_ppl:.1f})")
"""),
    ("md", r"""
The other recoveries need calibration or training; the recorded run (GPTQ calibrated on the
windows printed below; K-quants through GGUF, `Q2_K` for every matrix with and without an
importance matrix; QAT fine-tuning through the 2-bit rounding, if the run had it):
"""),
    ("code", r"""
if recorded("twobit"):
    print(f"recorded: perplexity on {record['twobit']['windows']} test windows; calibration "
          f"{record['options']['calib_samples']} windows of 512 train tokens")
    for label, value in record["twobit"]["table"].items():
        print(f"{label:58} {value:8.2f}")
"""),
    ("md", r"""
In this recorded run the cheapest fix is also the best one: four layers kept at 8 bits take back
more of RTN's 2-bit loss than GPTQ does, and K-quants' `Q2_K` lands between RTN and GPTQ (the
importance matrix helps it a little). The short QAT run (100 steps at a learning rate of 5·10⁻⁴)
ends *worse* than RTN: training through the rounding adds its own drift before it repairs
anything. Notebook 03's longer runs (131,072 tokens at 10⁻⁴, whole test split) recover most of
RTN's 2-bit loss, about as much as GPTQ: QAT is a recovery that needs a real training budget.
"""),
    ("md", r"""
## 3. Calibration mismatch: calibrated on code, used on prose

GPTQ and AWQ fit the quantization to the inputs they saw. The corpus has two halves: Python
source (code) and documentation (prose), with different token statistics. Here is block 0's
`mlp.down_proj` quantized by GPTQ (3-bit, groups of 128) with Hessians from code only, prose only
or both, and its output error measured on *held-out* code and prose (relative to RTN):
"""),
    ("code", r"""
block0 = model.model.layers[0]
name = "mlp.down_proj"


def hessian_of(domain, seed):
    samples = data.calibration_samples(tokenizer, 8, 128, seed=seed, domain=domain)
    inputs = blocks.capture_block_inputs(model, samples)
    return gptq.collect_hessians(block0, inputs, [name])[name].matrix


held_out = {domain: hessian_of(domain, seed=5) for domain in ("code", "prose")}
W = block0.get_submodule(name).weight.detach()
rtn3 = fake_quantize(W, 3, symmetric=False, granularity="group", group_size=128)
print(f"{'calibrated on':14} {'error on code':>14} {'on prose':>9}   (RTN = 1.00)")
for domain in ("code", "prose", None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Q = gptq.gptq_quantize_layer(W, hessian_of(domain, seed=1), 3, 128)[0]
    row = [gptq.hessian_error(W, Q, H) / gptq.hessian_error(W, rtn3, H) for H in held_out.values()]
    print(f"{domain or 'both':14} {row[0]:14.2f} {row[1]:9.2f}")
"""),
    ("md", r"""
Calibrated on prose alone, GPTQ does no better than round-to-nearest on code; code calibration
carries over to prose better (source files hold docstrings and comments too), and the mix lies
in between on both: never the best, never as bad as the wrong domain. Over the whole model (recorded, GPTQ 3-bit; the windows used are
printed), and how many calibration windows are enough:
"""),
    ("code", r"""
cal = recorded("calibration")
if cal:
    print(f"recorded: {cal['samples'][0]} calibration windows of {cal['samples'][1]} tokens per "
          f"set; perplexity on the first {cal['windows']} test windows of each half")
    print(f"{'GPTQ W3 g128 calibrated on':28} {'ppl code':>9} {'ppl prose':>9}")
    for label, row in cal["domains"].items():
        print(f"{label:28} {row['code']:9.2f} {row['prose']:9.2f}")
    counts = [int(c) for c in cal["curve"]]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(counts, list(cal["curve"].values()), marker="o", label="GPTQ W3 g128")
    ax.axhline(cal["curve_rtn"], ls="--", lw=0.8, color="tab:red", label="RTN W3 g128")
    ax.axhline(cal["curve_float"], ls=":", lw=0.8, color="black", label="float")
    ax.set(xscale="log", xlabel="calibration windows of 512 tokens",
           ylabel=f"perplexity ({cal['curve_windows']} windows)", title="how much calibration?")
    ax.legend(fontsize=7)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    plt.tight_layout()
    plt.show()
"""),
    ("md", r"""
Over the whole model the picture of one layer does not carry over: in the recorded run prose-only
calibration scored best on *both* halves and code-only worst on both, all three within 0.6 % of
each other, while GPTQ's whole gain over RTN is under 1 %. So the calibration set moves the
result by a sizeable share of what GPTQ buys, and which set wins is an empirical question:
measure it on the text you will serve. The curve is noisy: one window of 512 tokens is no better
than RTN; from two windows on the differences are within the noise of 32 test windows. Below one
window of 512 tokens per 768-input layer, `H = 2/n·XXᵀ` is singular and the result
depends on the dampening (GPTQ warns, section 8). Calibrate on text like the text the model will
serve, and prefer a mix when in doubt.

## 4. A broken GGUF file

llama.cpp trusts the file: the tokenizer it declares and the layout of its weights. Two mistakes
converters make, reproduced on qcourse-tiny:

* **the wrong pre-tokenizer**: `tokenizer.ggml.pre` names the regex that splits text before BPE;
  here `"qwen2"` instead of `"gpt-2"` (`ex10.with_wrong_pretokenizer`). The token ids and merges
  are right, so a prompt that is already token ids works; text is tokenized differently.
* **the wrong RoPE layout**: llama.cpp rotates adjacent pairs of each head's q/k, Hugging Face
  rotates the two halves, so the converter must permute the q/k rows (`writer.permute_qk`); a
  file written without it (`ex10.unpermuted_copy`) loads and runs.
"""),
    ("code", r"""
folder = pathlib.Path(tempfile.mkdtemp())
files = {"correct": folder / "correct.gguf", "wrong RoPE": folder / "rope.gguf",
         "wrong pre-tokenizer": folder / "pre.gguf"}
writer.export(model, tokenizer, files["correct"], "F32")
writer.export(ex10.unpermuted_copy(model), tokenizer, files["wrong RoPE"], "F32")
ex10.with_wrong_pretokenizer(files["correct"], files["wrong pre-tokenizer"])
prompt = "def read_config(path):\n    with open(path) as f:\n"
for label, path in files.items():
    llm = llamacpp.load(path)
    print(f"--- {label}: perplexity on the tokenizer's ids {llamacpp.perplexity(llm, tokenizer, max_windows=1):.1f}")
    print(repr(llamacpp.generate(llm, prompt, 20)))
    llm.close()
"""),
    ("md", r"""
The RoPE mistake nearly doubles the perplexity and the continuation degenerates; the
pre-tokenizer mistake changes nothing when llama.cpp is fed our token ids, and shows only when it
tokenizes text itself (the same prompt, split differently, gets another continuation). **How to check a file**: read its metadata (`reader.read_gguf`, no llama.cpp needed),
compare llama.cpp's tokenization of a text with the tokenizer's, and compare its logits with the
source model's on the same ids (`qcourse.diagnose.check_gguf` does all three):
"""),
    ("code", r"""
print(inspect.getsource(check_gguf))
"""),
    ("code", r"""
print(f"{'file':20} {'pre':>6} {'same tokens':>12} {'max |Δlogit|':>12} {'top-1 agree':>11}")
for label, path in files.items():
    c = check_gguf(path, model, tokenizer)
    print(f"{label:20} {c['pre_tokenizer']:>6} {c['same_tokens']:5d}/{c['tokens']:<6d} "
          f"{c['max_logit_diff']:12.2e} {c['top1_agreement']:11.2f}")
"""),
    ("md", r"""
**Exercise 10.4** — three more files; all declare the right tokenizer. One is broken.
"""),
    ("code", r"""
suspects = ex10.gguf_suspects(model, tokenizer, folder / "suspects")
ex10.corrupted_gguf.show()

corrupted_gguf = ...  # "a", "b" or "c"

ex10.corrupted_gguf.check(corrupted_gguf);
"""),
    ("code", r"""
for letter, path in suspects.items():
    c = check_gguf(path, model, tokenizer)
    print(f"{letter}: {reader.read_gguf(path).tensors['blk.0.attn_q.weight'].qtype:5} "
          f"max |Δlogit| {c['max_logit_diff']:.2e}, top-1 agreement {c['top1_agreement']:.2f}")
"""),
    ("md", r"""
Quantization (F16, Q8_0) moves the logits by at most a tenth; the broken file by whole units,
and its top-1 agreement drops. Recorded (the window count is printed): llama.cpp's perplexity on our token ids, and the
bits per byte of text when llama.cpp tokenizes the text itself (per byte, because the two
tokenizations have different numbers of tokens):
"""),
    ("code", r"""
if recorded("gguf"):
    print(f"recorded on {record['gguf']['windows']} test windows")
    for label, row in record["gguf"]["files"].items():
        print(f"{label:14} ppl on our ids {row['perplexity_on_hf_tokens']:7.2f}   "
              f"own tokenization: {row['tokens']} tokens (ours {row['hf_tokens']}), "
              f"{row['bits_per_byte_own_tokens']:.3f} bits/byte")
"""),
    ("md", r"""
## 5. GPTQ checkpoints: the zero-point convention and `g_idx`

A GPTQ checkpoint stores zero points packed in `qzeros`. The original kernels add 1 to every
unpacked zero, so format `"gptq"` (v1) stores `zero − 1`; GPTQModel's `"gptq_v2"` stores the true
zero. A loader that applies the wrong convention shifts every weight of a group by one step: the
file is fine, the model is silently worse. Reproduced with a real checkpoint folder (RTN 4-bit),
its `config.json` mislabelled:
"""),
    ("code", r"""
rtn4 = ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 128)
path = folder / "gptq-4bit"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")           # zero points of 0 exist: v1's known wrinkle
    gptq_checkpoint.save_gptq_checkpoint(rtn4, path, checkpoint_format="gptq")
right = ppl(gptq_checkpoint.load_gptq_checkpoint(path)[0])
config = json.loads((path / "config.json").read_text())
config["quantization_config"]["checkpoint_format"] = "gptq_v2"   # the wrong convention
(path / "config.json").write_text(json.dumps(config))
wrong = ppl(gptq_checkpoint.load_gptq_checkpoint(path)[0])
print(f"RTN W4 in memory {ppl(rtn4):.1f}; read back as written {right:.1f}; "
      f"read with the v2 convention {wrong:.1f}")
"""),
    ("md", r"""
**Act-order without `g_idx`.** With act-order, GPTQ quantizes columns by decreasing `diag(H)`
and groups follow that order, so column k belongs to group `g_idx[k]`, not `k // 128`. A loader
(or kernel) that assumes `k // 128` reads every column with another group's scale. One layer,
its output error on calibration inputs relative to the float layer's output:
"""),
    ("code", r"""
inputs = blocks.capture_block_inputs(model, ids[:2])
x = torch.cat(awq.capture_linear_inputs(block0, inputs, [name])[name]).flatten(0, -2)
H = gptq.hessian(x)
layer = gptq.to_quant_linear(block0.get_submodule(name), H, QuantScheme(4, 128), act_order=True)
y = x @ W.t()


def output_error(weight):
    return ((x @ weight.t() - y).pow(2).mean() / y.pow(2).mean()).item()


print(f"GPTQ act-order, with its g_idx:  {output_error(layer.weight()):.2e}")
layer.g_idx.copy_(torch.arange(layer.in_features, dtype=torch.int32) // 128)
print(f"the same codes read with k // 128: {output_error(layer.weight()):.2e}")
if recorded("checkpoint"):
    print("recorded, whole model (GPTQ W4 g128 act-order):",
          {k: round(v, 2) for k, v in record["checkpoint"]["table"].items()})
"""),
    ("md", r"""
Check `quantization_config` (`checkpoint_format`, `desc_act`) before loading, and after loading
compare a few logits with the model that was quantized. `static_groups=True` (natural groups even
with act-order) avoids the `g_idx` dependence altogether.

## 6. Overflow: float16's 65504, and int8 accumulators

float16 has 5 exponent bits: its largest value is 65504. bfloat16 keeps float32's 8 exponent
bits (largest ~3.4·10³⁸) with fewer mantissa bits. An activation of 10⁵ is an ordinary number in
bfloat16 and float32 and `inf` in float16, and `inf − inf` in a normalization or softmax is NaN.
`with_outliers` with a factor of 30,000 (same float function) pushes the norm outputs past it:
"""),
    ("code", r"""
hot = models.with_outliers(model, factor=30000.0)
print(diagnose(hot, samples=ids[:1], sensitivity=False).summary())     # in float32, before casting
for dtype in (torch.float16, torch.bfloat16, torch.float32):
    print(f"{str(dtype):15} perplexity {ev.perplexity(copy.deepcopy(hot).to(dtype), tokenizer, max_windows=1):8.2f}")
undone = models.with_outliers(hot, hot.outlier_channels, 1 / 30000)   # the inverse transform
print(f"scales undone, float16: perplexity {ev.perplexity(undone.half(), tokenizer, max_windows=1):.2f}")
"""),
    ("md", r"""
`diagnose`, run in float32 before casting, already lists the layers whose inputs exceed 65504.
The fixes: run in bfloat16 (the range of float32), keep the offending part in float32
(transformers' RMSNorm already computes in float32 for this reason), or undo the scale with an
equivalence transform before casting, as the last line does. Attention logits `q·k / √d` overflow the same way when q and k are large: fused
attention kernels compute them with float32 accumulation.

**Integer accumulators.** W8A8 multiplies int8 by int8 (each product up to 127² = 16,129) and
sums K of them. A naive kernel that accumulates in int16 (largest 32,767) wraps around after a
few terms; int32 (largest ~2.1·10⁹) is safe up to K = 2³¹ / 127² ≈ 133,000 inputs, wider than
any layer:
"""),
    ("code", r"""
w8 = layers.W8A8Linear.from_float(block0.mlp.down_proj)
qx, _ = layers.quantize_per_token(x[:4])
exact = layers.int8_matmul(qx, w8.qweight)                        # int32 accumulation, exact
wrapped = (exact.long() + 2**15) % 2**16 - 2**15                  # what int16 would hold
print(f"K = {qx.shape[1]} inputs; largest |accumulator| {exact.abs().max().item():,}")
print(f"int16 accumulation: {(wrapped != exact).float().mean():.0%} of the outputs wrapped around")
"""),
    ("md", r"""
## 7. A missing kernel

A 4-bit `QuantLinear` saves memory only if something multiplies with the packed weights. Without
a kernel it unpacks and dequantizes the whole weight at every call (`QuantLinear.weight()`), which
costs time and a full float copy of each weight per call. `kernels.use_kernels` routes 4-bit
layers through a kernel (Triton on a GPU; on a CPU the PyTorch reference, the fallback path) and
leaves the layers it cannot run (other bit widths, act-order `g_idx`) on their own forward:
"""),
    ("code", r"""
one = ev.evaluation_windows(tokenizer, max_windows=1)


def cost(m):
    with torch.no_grad():
        m(one)
        start = time.perf_counter()
        m(one)
    return f"{(time.perf_counter() - start) * 1000:6.0f} ms per window of 512 tokens"


print(f"float32 model                 {cost(model)}")
print(f"W4 QuantLinear (no kernel)    {cost(rtn4)}")
routed = kernels.use_kernels(rtn4, "reference")
print(f"W4 through the kernel path    {cost(rtn4)}   ({len(routed)} layers routed)")
kernels.use_kernels(rtn4, None)
rtn3 = ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 128)
print(f"W3: layers the kernels can run: {len(kernels.use_kernels(rtn3, 'reference'))} "
      f"({kernels.quantlinear.kernel_support(rtn3.model.layers[0].mlp.up_proj)})")
print(f"stored: float32 {ev.model_size_bytes(model) / 2**20:.1f} MiB, W4 {ev.model_size_bytes(rtn4) / 2**20:.1f} MiB")
if recorded("kernel"):
    load = record.get("load_average_end", [float("nan")])[0]   # the kernel section runs last
    print(f"recorded (time, memory allocated during one forward pass), on a shared machine "
          f"under load average {load:.1f}: the times are not quiet-machine figures")
    for label, row in record["kernel"]["table"].items():
        print(f"  {label:40} {row['seconds'] * 1000:5.0f} ms  {row['allocated_bytes'] / 2**20:5.0f} MiB")
"""),
    ("md", r"""
On this CPU there is no fast 4-bit kernel: every path is slower than float32, and the quantized
model's saving is memory at rest, not speed. On a GPU, `use_kernels(model)`
picks the Triton kernel of notebook 07; where a layer is not supported the model still runs, on
the slow path, so measure the speed you get rather than assume it.

## 8. Bad inputs: what the package says, and what to do

**NaN/Inf weights** (a failed conversion, an overflow during fine-tuning): `diagnose` counts them
per parameter, and every quantizer refuses them rather than spread NaN through the scales.
"""),
    ("code", r"""
corrupt = copy.deepcopy(model)
with torch.no_grad():
    corrupt.model.layers[3].mlp.up_proj.weight[5, 7] = float("nan")
print(diagnose(corrupt, samples=ids[:1], sensitivity=False).summary().splitlines()[0])
try:
    ptq.quantize_rtn(corrupt, 4, "group", 128)
except ValueError as err:
    print("ValueError:", err)
"""),
    ("md", r"""
What to do: find where the NaN came from (the first layer `diagnose` names), reload or reconvert
the weights; never quantize around them.

**A group size that does not divide the layer** (every input width of qcourse-tiny is a multiple
of 256; 96 divides none of them):
"""),
    ("code", r"""
try:
    ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 96)
except ValueError as err:
    print("ValueError:", err)
"""),
    ("md", r"""
What to do: pick a divisor of every width (32, 64, 128 here), or per-channel scales for the odd
layer (llama.cpp falls back to another block type for rows that K-quants' 256 does not divide).

**Too little calibration for the Hessian, and no dampening.** With fewer tokens than inputs,
`H = 2/n·XXᵀ` has rank at most n: it is singular, and its Cholesky factorisation fails without
dampening. GPTQ warns about the token count, and retries with 10× more dampening until it works:
"""),
    ("code", r"""
few = x[:64]                                                     # 64 tokens, 768 inputs
hessian = gptq.Hessian(few.shape[1])
hessian.add(few)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gptq.warn_few_tokens("mlp.down_proj", hessian)
    Q = gptq.gptq_quantize_layer(W, hessian.matrix, 4, 128, damp=0.0)[0]
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
print(f"rank of H: {torch.linalg.matrix_rank(hessian.matrix)} of {hessian.width}")
"""),
    ("md", r"""
What to do: calibrate on several times more tokens than the layer has inputs, keep the
default dampening (1 % of the mean diagonal), and treat the warning as a reason to look.

## Summary

| failure | how it shows | tool | recovery (measured above) |
|---|---|---|---|
| outlier channels | W8A8 loses quality, per-tensor much more than per-token | `diagnose`: r_x > 100 on q/k/v, gate/up; W8A8 sensitivity | finer activation scales, SmoothQuant, LLM.int8(); AWQ for weight-only |
| 2-bit collapse | perplexity jumps; symmetric 2-bit uses 3 levels | `diagnose(quantize=QuantScheme(2, 128))` | asymmetric grid, sensitive layers at 8 bits, GPTQ, K-quants + imatrix, QAT |
| calibration mismatch | good on one kind of text, worse on another | per-domain perplexity | calibrate on the serving distribution or a mix; a few windows suffice |
| broken GGUF | fluent but worse (RoPE), or different tokens (pre-tokenizer) | `read_gguf`, `check_gguf` | reconvert with the right permutation and metadata |
| GPTQ zero convention / `g_idx` | silently worse | `quantization_config`, logits vs source | read `checkpoint_format`, keep `g_idx` (or static groups) |
| float16 overflow | NaN | `diagnose` (`float16 overflow`) | bfloat16, float32 where it overflows, undo scales |
| int8 accumulation | wrong outputs | compare with an exact matmul | int32 accumulators |
| missing kernel | slow, memory per call | time and peak memory per forward | `use_kernels`; measure the fallback |
| NaN, group size, damping | clear `ValueError` / warning | the message | fix the source, pick a divisor, more calibration |

## Sources

* Dettmers, Lewis, Belkada, Zettlemoyer, *LLM.int8(): 8-bit Matrix Multiplication for
  Transformers at Scale*, NeurIPS 2022, arXiv:2208.07339 (outlier features "up to 20x larger",
  6.7B phase shift, Table 4, threshold 6.0).
* Xiao, Lin, Seznec, Wu, Demouth, Han, *SmoothQuant*, ICML 2023, arXiv:2211.10438 (§3: outliers
  "~100× larger than most of the activation values"; α).
* Lin et al., *AWQ: Activation-aware Weight Quantization*, MLSys 2024, arXiv:2306.00978.
* Frantar et al., *GPTQ*, ICLR 2023, arXiv:2210.17323; GPTQModel (`gptq` / `gptq_v2` formats).
* llama.cpp: `convert_hf_to_gguf.py` (q/k permutation, pre-tokenizer names), K-quants, imatrix.
* IEEE 754 half precision (largest finite value 65504); bfloat16 (8 exponent bits).
"""),
]

EXTRAS = "llamacpp"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
