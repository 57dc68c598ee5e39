"""Source of notebooks/03_quantization_aware_training.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 03 · Quantization-aware training and QLoRA

Post-training quantization (notebooks 02, 04, 05) rounds a finished model and tries to make the
rounding hurt as little as possible. **Quantization-aware training** (QAT) goes further: it keeps
training the model *while it computes with its rounded weights*, so the weights learn to live on
the grid. **QLoRA** trains with quantized weights too, but for another purpose: it freezes a
4-bit model and trains small adapters next to it, to adapt the model to new data cheaply.

**Learning goals.** After this notebook you can
1. explain why rounding has no useful gradient, and derive the straight-through estimator (STE)
   that QAT trains with, clipping included;
2. explain LSQ (learned step size): its gradient, its gradient scale `1/√(N·Q_P)`, its start;
3. run QAT on a real model with `qcourse.qat` (`prepare` → `train` → `convert`) and read what it
   buys over RTN and GPTQ, at what cost in training tokens, time and memory;
4. do the same with torchao, the maintained PyTorch QAT, and say how its grid differs from ours;
5. fine-tune a 4-bit model with LoRA adapters (QLoRA), count the memory it saves, merge the
   adapters, and see what it does to the domain it was trained on and to the other one;
6. choose between PTQ, QAT and QLoRA from measured and published figures.
"""),
    ("code", r"""
%matplotlib inline
import copy
import inspect
import logging
import time
import warnings

import matplotlib.pyplot as plt
import torch

from qcourse import evaluation as ev
from qcourse import models, ptq, qat, qlora, training
from qcourse.bench import record as bench_record
from qcourse.exercises import ex03
from qcourse.formats import human_bytes
from qcourse.quant import QuantScheme

torch.manual_seed(0)
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()

WINDOWS = ev.QUICK.windows  # the course's quick protocol (whole split: section 6)


def ppl(m, domain=None):  # the first 8 windows of the test split (or of its prose/code half)
    return ev.perplexity(m, tokenizer, max_windows=WINDOWS, domain=domain)


fp32_ppl = ppl(model)
print(f"fp32 perplexity, {ev.QUICK.label()}: {fp32_ppl:.2f}")
"""),
    ("md", r"""
**About the numbers.** Live cells here train for a few seconds and score perplexity with the
course's *quick* protocol (the first 8 test windows of 512 tokens), so that the notebook runs in
under two minutes on a laptop CPU. The comparison of every
method at every width comes from `benchmarks/qat.py`, recorded with the machine, the date and
its load (section 6).

## 1. Rounding has no gradient

Training needs `∂loss/∂w`. A quantized weight is `ŵ = s · round(w/s)`: a staircase in `w`. It
is flat between the steps (derivative 0) and jumps at them (no derivative at all). So the
gradient of the loss through `ŵ` is zero almost everywhere: gradient descent gets no signal to
move any weight. PyTorch agrees:
"""),
    ("code", r"""
w = torch.linspace(-1, 1, 9, requires_grad=True)
s = 0.3
(s * torch.round(w / s)).sum().backward()
print("w             ", [round(v, 2) for v in w.tolist()])
print("s·round(w/s)  ", [round(v, 2) for v in (s * torch.round(w / s)).tolist()])
print("d/dw          ", w.grad.tolist())
"""),
    ("md", r"""
## 2. The straight-through estimator

The STE (Bengio, Léonard & Courville, 2013) keeps the rounded value in the forward pass and, in
the backward pass, *pretends* `round` was the identity: `∂round(u)/∂u := 1`. With the grid's
clamp kept, the fake quantizer of our scheme (`QuantScheme`: scale `s`, zero point `z`, integers
`[qmin, qmax]`) and its gradient are

    u = w/s + z        ŵ = (clamp(round(u), qmin, qmax) − z) · s

    ∂ŵ/∂w = 1   if qmin ≤ u ≤ qmax      (inside the grid: pass the gradient straight through)
            0   otherwise                (clipped: moving w does not move ŵ at all)

This is the *clipped* STE: the backward pass is the exact derivative of the clipped identity
`clamp(w, s·(qmin − z), s·(qmax − z))`, the smooth function the staircase follows. Beyond the
grid the two agree exactly (both are flat), which `tests/test_qat.py` checks against finite
differences; inside, the STE is a choice, and the test checks the rule. The package's fake
quantizer draws both passes (its source follows exercise 3.1):
"""),
    ("code", r"""
scheme = QuantScheme(3, None, symmetric=True)            # integers -4 … 3
u = torch.linspace(-6, 5, 500, dtype=torch.float64)
x = (u * 0.5).requires_grad_(True)                        # s = 0.5, z = 0
y = qat.fake_quantize(x, torch.tensor(0.5, dtype=torch.float64),
                      torch.tensor(0.0, dtype=torch.float64), scheme)
y.sum().backward()
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(x.detach(), y.detach(), label="forward: ŵ (the staircase)")
axes[0].plot(x.detach(), x.detach().clamp(-2, 1.5), "--", label="clipped identity")
axes[0].set(xlabel="w", title="3-bit signed grid, s = 0.5")
axes[0].legend(fontsize=8)
axes[1].plot(x.detach(), x.grad, color="C2")
axes[1].set(xlabel="w", ylabel="∂ŵ/∂w used by backward", title="clipped STE")
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
**Exercise 3.1.** Write the STE yourself: `torch.round` alone hands back a zero gradient, so
the question is how to return one value forward and another derivative backward. The check
compares your forward values *and* the gradient your function hands back, on values inside the
grid, exactly on both edges, just past them and far outside. `ex03.ste_fake_quantize.hint()`
gives a hint, and a second one if called again.
"""),
    ("code", r"""
ex03.ste_fake_quantize.show()

def ste_fake_quantize(x, scale, zero, qmin, qmax):
    return ...  # your code here

ex03.ste_fake_quantize.check(ste_fake_quantize);
"""),
    ("md", r"""
The package's version is a `torch.autograd.Function` with its own backward (and LSQ's gradients
for `s` and `z`, section 3):
"""),
    ("code", r"""
print(inspect.getsource(qat.FakeQuantize))
"""),
    ("md", r"""
## 3. Learned step size (LSQ)

So far the grid comes from each group's min and max (as RTN), recomputed from the current
weights at every step. LSQ (Esser et al., ICLR 2020) makes the step size `s` (and here the zero
point `z`) a parameter trained with the weights. Treating `round` by the STE:

    ∂ŵ/∂s = round(u) − u      inside the grid          ∂ŵ/∂z = 0     inside
            qmin − z, qmax − z below / above                   −s    outside

Inside, a larger `s` moves `ŵ` by its rounding offset; outside, it stretches the end of the grid
to reach the clipped weight. Two more pieces:

* **Initialization.** `s = 2·mean(|w|)/√Q_P` (`init="lsq"`), with `Q_P` the number of grid
  levels above zero. `init="minmax"` (the default here) starts from RTN's grid instead, so QAT
  starts exactly where RTN ends.
* **Gradient scale.** Two things make the step size's gradient too large next to a weight's.
  One `s` is shared by `N` weights, so `∂L/∂s` is a sum of `N` terms, while a weight's gradient
  has one. And a weight is several steps large (the start above puts `|w|/s` near `√Q_P`), so
  the same update is a larger *relative* change of `s` than of `w`. LSQ multiplies `∂L/∂s` by a
  factor `g` that undoes both, so that step sizes and weights learn at comparable rates. With
  Adam, as here, the per-parameter normalization already cancels most of a constant factor; the
  scale matters most with SGD, which the paper used.
"""),
    ("md", r"""
**Exercise 3.2.** Derive LSQ's gradient scale `g` from the two observations above (how large
is a sum of `N` terms of random sign? how many steps large is a weight at `bits` bits?), then
write it. The package's version follows.
"""),
    ("code", r"""
ex03.lsq_grad_scale.show()

def lsq_grad_scale(n, bits):
    return ...  # your code here

ex03.lsq_grad_scale.check(lsq_grad_scale);
"""),
    ("code", r"""
print(inspect.getsource(qat.lsq_grad_scale))
print(inspect.getsource(qat.lsq_init))
"""),
    ("code", r"""
g = 64
w_group = model.model.layers[0].mlp.up_proj.weight[0, :g].detach()
s_lsq, z_lsq = qat.lsq_init(w_group.reshape(1, g), QuantScheme(2, g, symmetric=False))
s_mm, z_mm = QuantScheme(2, g, symmetric=False).params(w_group)
print(f"one group of {g} weights, 2 bits: min-max step {s_mm.item():.4f} (zero {z_mm.item():.0f}), "
      f"LSQ's initial step {s_lsq.item():.4f} (zero {z_lsq.item():.0f}); "
      f"gradient scale g = {qat.lsq_grad_scale(g, 2):.4f}")
for init in ("minmax", "lsq"):
    start = qat.prepare(copy.deepcopy(model), 2, 64, learn_scales=True, init=init)
    print(f"whole model at W2 g64 before any training, init={init!r}: perplexity "
          f"{ppl(start):.2f} ({ev.QUICK.label()})")
del start
"""),
    ("md", r"""
For this group LSQ's formula starts from a step close to min-max's, and over the whole model
its start is a little worse than RTN's grid before any training (the perplexities above). The
recorded runs of section 6 start LSQ from the min-max grid (`init="minmax"`), so the STE and LSQ
rows start from the same RTN grid and differ only in whether the grid learns.
"""),
    ("md", r"""
## 4. QAT on qcourse-tiny: prepare → train → convert

`qat.prepare` swaps every linear layer (not the tied output head) for a `FakeQuantLinear`: it
keeps the float weight as a trainable *latent* weight and computes with its fake-quantized
value. Scales are stored as fp16 and zero points as integers, exactly as `QuantLinear` stores
them, so what the model computes while training is what it computes after `convert`.
"""),
    ("code", r"""
print(inspect.getsource(qat.FakeQuantLinear.fake_weight))
print(inspect.getsource(qat.prepare))
"""),
    ("md", r"""
2 bits, groups of 64, is where round-to-nearest hurts most, so that is where a short run shows
most. We train the whole model (every weight, embeddings and norms too) for 30 steps of 4
windows of 128 tokens of the train split, AdamW at a learning rate of 1e-4.
"""),
    ("code", r"""
BITS, GROUP = 2, 64
rtn_score = ev.score(ptq.quantize_rtn(copy.deepcopy(model), BITS, "group", GROUP), tokenizer)
student = qat.prepare(copy.deepcopy(model), BITS, GROUP)
start_ppl = ppl(student)
layer = student.model.layers[3].mlp.down_proj
w_before = layer.weight.detach().clone()
log = qat.train(student, tokenizer, 30, lr=1e-4, batch_size=4, seq_len=128, progress=False)
qat_score = ev.score(student, tokenizer)       # per window, for a paired comparison
rtn_ppl, qat_ppl = rtn_score.perplexity, qat_score.perplexity
print(f"perplexity, {ev.QUICK.label()}: fp32 {fp32_ppl:.2f}   RTN {rtn_ppl:.2f}   "
      f"QAT at step 0 {start_ppl:.2f}   QAT after {log['tokens']:,} tokens {qat_ppl:.2f}")
print(f"QAT against RTN: {ev.paired_difference(rtn_score, qat_score)}")
plt.figure(figsize=(5, 2.8))
plt.plot(log["loss"], lw=0.8)
plt.xlabel("step")
plt.ylabel("train loss (nats/token)")
plt.title(f"QAT, W{BITS} g{GROUP}")
plt.show()
"""),
    ("md", r"""
QAT at step 0 computes RTN's grid (its scales rounded to fp16 first, so its perplexity is within
a hair of RTN's), and 30 short steps take back about a quarter of what rounding cost. The
second line is the course's way to tell a gain from luck: each of the 8 windows scores both
models, the difference of their losses is taken window by window, and Student's t interval over
the 8 differences says how far the ratio could move with other windows
(`qcourse.evaluation.paired_difference`). The loss curve is noisy: each step sees only 512
tokens.
`convert` stores the result in the same packed `QuantLinear` as RTN and GPTQ, so it exports to a
GPTQ checkpoint or GGUF like any other; its logits are the fake-quantized model's, bit for bit:
"""),
    ("code", r"""
ids = torch.randint(0, 4096, (1, 64), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    fake_logits = student(ids).logits
    packed = qat.convert(copy.deepcopy(student))
    same = torch.equal(fake_logits, packed(ids).logits)
print(f"converted logits equal the fake-quantized ones: {same}; "
      f"{type(packed.model.layers[0].mlp.down_proj).__name__}, "
      f"{human_bytes(ev.model_size_bytes(packed))} vs {human_bytes(ev.model_size_bytes(model))} fp32")
"""),
    ("md", r"""
## 5. Which weights does QAT move?

The latent weights move; the grid follows each group's min and max (it moves only when a
group's extreme weight moves). A weight's integer code changes when it crosses a rounding
boundary, half a step from the grid points, or when its group's grid moves under it.

**Exercise 3.3.** Predict before you look (in graded mode your first answer is the one that
counts).
"""),
    ("code", r"""
ex03.which_weights_move.show()

which = ...  # a letter

ex03.which_weights_move.check(which);
"""),
    ("md", r"""
The distance of each weight of `model.layers.3.mlp.down_proj` to its nearest grid point, in
steps (0: on a grid point, 0.5: on a rounding boundary), before and after the 30 steps above,
and how often a weight's code changed, by where it started:
"""),
    ("code", r"""
print(inspect.getsource(qat.grid_position))
"""),
    ("code", r"""
grid = QuantScheme(BITS, GROUP)
d_before, codes_before = qat.grid_position(w_before, grid)
d_after, codes_after = qat.grid_position(layer.weight, grid)
changed = codes_after != codes_before
bins = torch.clamp((d_before / 0.125).long(), max=3)
rates = [changed[bins == b].float().mean().item() for b in range(4)]
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].hist([d_before.flatten(), d_after.flatten()], bins=20, range=(0, 0.5),
             label=["before", "after QAT"])
axes[0].set(xlabel="distance to the nearest grid point (steps)", ylabel="weights")
axes[0].legend()
axes[1].bar(["0–⅛", "⅛–¼", "¼–⅜", "⅜–½"], rates)
axes[1].set(xlabel="starting distance (steps)", ylabel="fraction whose code changed")
plt.tight_layout()
plt.show()
print(f"codes changed: {changed.float().mean():.2%} of the layer; by starting distance: "
      + ", ".join(f"{r:.2%}" for r in rates))
step = grid.params(w_before)[0].repeat_interleave(GROUP, dim=1)          # [N, K]: each weight's step
moved = (layer.weight.detach() - w_before).abs() / step
print(f"how far the weights moved, in steps: median {moved.median():.2%}, largest {moved.max():.1%}")
"""),
    ("md", r"""
The weights that started within ⅛ of a step of a rounding boundary changed their code several
times as often as the others, and the histogram of distances hardly changed. The last line says
why: with AdamW each step moves a weight by about the learning rate (1e-4), so 30 steps move it
by a few percent of a 2-bit step at most. Only a weight that already sat that close to a
boundary can cross it; QAT this short does not push the weights towards grid points, it decides
on which side of a boundary the undecided ones land.

The benchmark of section 6 trained far longer; it recorded the same picture for this layer
after its QAT (STE) run at W2 g64:
"""),
    ("code", r"""
runs = [bench_record.read(p) for p in sorted(bench_record.RESULTS_DIR.glob("qat-*.json"))
        if "quick" not in p.name and not p.name.startswith("qat-qlora-")]  # section 8's own
# run (qat.py --qlora-only) aside; read() spells every record's fields one way
finished = [r for r in runs if r.get("complete")]
record = finished[-1] if finished else None     # the latest complete run
if record:
    stats = next(r["layer"] for r in record["rows"]
                 if r["width"] == "W2 g64" and r["method"] == "QAT (STE)")
    edges = [i / 40 for i in range(20)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    axes[0].bar(edges, stats["histogram_before"], width=0.025, align="edge", alpha=0.6,
                label="before")
    axes[0].bar(edges, stats["histogram_after"], width=0.025, align="edge", alpha=0.6,
                label="after QAT")
    axes[0].set(xlabel="distance to the nearest grid point (steps)", ylabel="weights",
                title=f"{stats['name']}, recorded")
    axes[0].legend()
    axes[1].bar(["0–⅛", "⅛–¼", "¼–⅜", "⅜–½"], stats["codes_changed_by_start"])
    axes[1].set(xlabel="starting distance (steps)", ylabel="fraction whose code changed")
    plt.tight_layout()
    plt.show()
    print(f"recorded: codes changed {stats['codes_changed']:.2%}; by starting distance: "
          + ", ".join(f"{r:.2%}" for r in stats["codes_changed_by_start"]))
else:
    print("no recorded run: python benchmarks/qat.py")
"""),
    ("md", r"""
The recorded run tells the same story: the weights that started within ⅛ of a step of a
rounding boundary changed their code several times as often as the others, and the two
histograms are nearly the same. The others are not at zero because the min-max grid itself
moves a little when a group's extreme weight moves. A picture in which QAT piles the weights
onto grid points needs far longer training (or a larger learning rate) than either run here.

## 6. The whole test split: PTQ against QAT (recorded)

`benchmarks/qat.py` runs every method in one process, seed 0, and scores each on the whole test
split (228 windows of 512 tokens; the header below gives the settings of the recorded run): RTN,
GPTQ, QAT with the STE, with LSQ, with distillation from
the float model's logits (as LLM-QAT, Liu et al. 2023, does), our QAT on torchao's symmetric
grid, and torchao's own QAT. All QAT runs see the same windows with the same optimizer.

**GPTQ** (Frantar et al., 2023; built in notebook 04) is the stronger post-training baseline: no
training and no labels, only the inputs each layer sees on a few calibration windows (here 128
of 512 tokens). It quantizes a layer's weights one input column at a time and, after each
column, updates the columns not yet quantized so that the layer's output on those inputs
changes as little as possible (a least-squares correction through `XXᵀ`, the inputs' second
moments).

**Reading the record.** Its header names the machine and the 1-minute load average at the start
and at the end of the run (at the end the run's own thread counts for about 1 of it). The cell
calls the machine quiet when the load was below 1 at the start (less than one job running on
average; `benchmarks/serve.py --timings` refuses to start above 1) and below the run's threads +
0.5 at the end; only then are the times and memory figures this machine's, rather than its share
of a busy one.

**What this run can rank.** Every row kept its loss on each of the 228 windows (`window_nll`),
so two rows of one width are compared window by window, as in section 4 but over the whole
split: the second table gives each row against RTN, against GPTQ and against the float model
fine-tuned alike, as the perplexity ratio minus one, in %, with its paired 95 % interval
(`qcourse.evaluation.paired_difference` on `Score`s built from the recorded losses). An interval
that contains zero is marked `~`: that difference is not ranked. The interval covers the choice
of test windows only. Each QAT row is one training run (seed 0), and another seed would move it
by an amount this record does not measure.
"""),
    ("code", r"""
def recovered(row):  # the share of RTN's perplexity increase (over fp32) a method takes back
    rtn = next(r["ppl"] for r in record["rows"] if r["width"] == row["width"] and r["method"] == "RTN")
    return (rtn - row["ppl"]) / (rtn - record["rows"][0]["ppl"])


def whole(row):  # a recorded row's per-window losses as the package's Score (whole test split)
    return ev.Score(ev.WHOLE, torch.tensor(row["window_nll"]))


def versus(reference, row):  # PPL_row / PPL_reference − 1 in %, its paired 95 % interval
    d = ev.paired_difference(whole(reference), whole(row))
    pct = lambda r: f"{100 * (r - 1):+.2f}"  # noqa: E731
    return f"{pct(d.ratio)} [{pct(d.low)}, {pct(d.high)}]" + ("  " if d.significant else " ~")


if record:
    load, threads, machine = record["load_average"], record["threads"], record["machine"]
    quiet = load["start"][0] < 1 and load["end"][0] < threads + 0.5
    print(f"recorded {record['date'][:16].replace('T', ' ')} UTC on {machine['cpu']} "
          f"({machine['cores']} cores, torch threads: {threads}); load average (1 min) "
          f"{load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end, its own "
          f"thread(s) included: " + ("a quiet machine" if quiet else
                                     "other jobs shared the machine, times compare rows within "
                                     "this run only"))
    if record.get("note"):
        print(f"note: {record['note']}")
    scored = "the whole test split" if record["test_windows"] == "all" else \
        f"{record['test_windows']} test windows"
    print(f"scored on {scored} (windows of 512 tokens); QAT: {record['qat']['steps']} "
          f"steps of {record['qat']['batch_size']}×{record['qat']['seq_len']} tokens, AdamW, "
          f"lr {record['qat']['lr']}; GPTQ: {record['gptq_calibration_windows']} windows of 512\n")
    print(f"{'width':9s} {'method':26s} {'ppl':>7s} {'of RTN loss':>11s} {'train tokens':>12s} "
          f"{'time':>6s} {'peak MB':>7s}")
    for r in record["rows"]:
        share = f"{recovered(r):11.0%}" if r["width"] != "float" and r["method"] != "RTN" else " " * 11
        print(f"{r['width']:9s} {r['method']:26s} {r['ppl']:7.2f} {share} "
              f"{r['training_tokens']:>12,} {r['seconds']:5.0f}s {r['peak_memory_mb']:7.0f}")
    print("\n'of RTN loss': the share of RTN's perplexity increase over fp32 that the method takes back")
else:
    print("no recorded run: python benchmarks/qat.py")
"""),
    ("code", r"""
rows = record["rows"] if record else []
if rows and all("window_nll" in r for r in rows):
    fp32_row, control = rows[0], rows[1]
    print(f"paired differences ({whole(fp32_row).label}): a row's perplexity against a "
          f"reference's, in %, [95 % interval]; ~ = inside the noise, not ranked\n")
    print(f"{control['method']} against {fp32_row['method']}: {versus(fp32_row, control)}\n")
    print(f"{'width':9s} {'method':26s} {'against RTN':>22s} {'against GPTQ':>22s} "
          f"{'against fine-tuned fp32':>23s}")
    for r in rows[2:]:
        same = {x["method"]: x for x in rows if x["width"] == r["width"]}
        cells = ["" if r["method"] == "RTN" else versus(same["RTN"], r),
                 "" if r["method"] in ("RTN", "GPTQ") else versus(same["GPTQ"], r),
                 versus(control, r)]
        print(f"{r['width']:9s} {r['method']:26s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>23s}")
elif record:
    print("this record kept no per-window losses: no paired interval between its rows")
"""),
    ("code", r"""
if record:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for width in dict.fromkeys(r["width"] for r in record["rows"] if r["width"] != "float"):
        ste = next(r for r in record["rows"] if r["width"] == width and r["method"] == "QAT (STE)")
        points = sorted({**{int(k): v for k, v in ste["sweep"].items()},
                         ste["training_tokens"]: ste["ppl"]}.items())
        line, = ax.plot(*zip(*points), marker="o", label=f"QAT (STE) {width}")
        for method, style in (("GPTQ", "--"), ("RTN", ":")):
            value = next(r["ppl"] for r in record["rows"] if r["width"] == width and r["method"] == method)
            ax.axhline(value, ls=style, color=line.get_color(), lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="QAT training tokens",
           ylabel=f"test perplexity ({scored})",
           title="QAT (STE) vs GPTQ (--) and RTN (:), recorded")
    ax.legend(fontsize=7)
    plt.show()
    print("training tokens after which QAT (STE)'s perplexity was below GPTQ's (point "
          "estimates: the checkpoints kept no per-window losses):", record["tokens_to_beat_gptq"])
"""),
    ("md", r"""
What this recorded run shows (131,072 training tokens per QAT run, one seed, the whole test
split; each perplexity is in the first table, each comparison in the second):

* **The fair reference for a QAT row is the float model fine-tuned alike.** Trained with the
  very same loop and tokens, the float model scores 29.14 against the original's 29.20: −0.22 %,
  with an interval of [−0.53, +0.09] % that contains zero, so this run does not show that the
  training alone helps. But a QAT row differs from that control only by the rounding, and every
  QAT row sits above it, with intervals well clear of zero (the closest: the STE at 4 bits,
  +0.20 % [+0.15, +0.24]). Those intervals are narrower than the ones against RTN, most likely
  because both models were trained on the same windows, so their losses move together from one
  test window to the next. So the STE's
  29.20 at 4 bits, fp32's figure to two decimals, is not QAT undoing the rounding and then some.
* **At 4 bits (groups of 128) every row lies within 0.4 % of fp32**: RTN 29.29, GPTQ 29.24, the
  QAT rows 29.20 to 29.31. Against RTN, GPTQ (−0.18 % [−0.25, −0.10]) and the STE (−0.33 %
  [−0.65, −0.00], just clear of zero) are better; LSQ and both symmetric rows are inside the
  noise. Against GPTQ no QAT row is better: the STE, LSQ and both symmetric rows are level with
  it, and distillation (training towards the float model's outputs instead of the train split's
  labels) is worse, +0.23 % [+0.15, +0.31]. Distillation is level with RTN (+0.06 % [−0.05,
  +0.16]): at this width it took back nothing this run can see. The "of RTN loss" shares are
  point estimates: where RTN loses only 0.3 %, they swing from −18 % to 108 % inside intervals
  that mostly contain zero.
* **At 3 bits** RTN loses 1.8 %. GPTQ (29.39) and the best QAT rows (LSQ 29.41, the STE 29.43)
  take back 55–63 % of it, and against GPTQ both QAT rows are inside the noise: level.
  Distillation (+0.23 % [+0.11, +0.35]) and our symmetric row (+0.43 % [+0.08, +0.77]) are worse
  than GPTQ; torchao's symmetric row is level with it.
* **At 2 bits (groups of 64) RTN loses about 9 %** (31.74). GPTQ and every QAT run on the
  asymmetric grid bring it to 30.09–30.24, 4.7–5.2 % below RTN with intervals far from zero.
  Against GPTQ the STE (+0.00 % [−0.40, +0.40]) and LSQ (−0.20 % [−0.59, +0.20]) are level;
  distillation is the one QAT row in this run that beats GPTQ at any width, −0.50 % [−0.73,
  −0.26], at the width where rounding costs most. The symmetric rows are discussed in section 7.
* **Training tokens to beat GPTQ** (the STE run and its checkpoints at 1/8, 1/4 and 1/2 of its
  tokens): by point estimates the STE went below GPTQ only at 4 bits and only with all 131,072
  tokens, and the paired interval puts that final gap inside the noise (−0.15 % [−0.47, +0.16]),
  as at 3 and 2 bits. The checkpoints kept no per-window losses, so read the plot as "the STE
  needs this whole budget to reach GPTQ's level", not as a crossing point.
* **Time and memory, on a quiet machine** (one torch thread; the header gives the load): a QAT
  run of 131,072 tokens took 63–97 s (distillation the longest: it also runs the float model
  forward for its targets), the float model's fine-tuning alike 57 s, GPTQ with 128
  calibration windows 36–42 s, RTN under a second. At each width QAT took 1.6 to 2.6 times GPTQ's
  time, and it needs training data. "peak MB" is the growth of the process's resident memory
  while the row ran; the allocator reuses memory freed by earlier rows, so only the first
  training row's figure (the fine-tuned control, 559 MB) measures what training adds to the
  loaded model, and the later rows' 96–438 MB (GPTQ's 0–3 MB) are lower bounds.

## 7. The same with torchao, and the legacy path

**torchao** is where PyTorch's quantization lives today. Its QAT is two calls around any
training loop (here ours, `training.fine_tune`):

```python
from torchao.quantization import quantize_, IntxWeightOnlyConfig, PerGroup
from torchao.quantization.qat import QATConfig

base = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))
quantize_(model, QATConfig(base, step="prepare"))   # nn.Linear -> FakeQuantizedLinear
train(model)                                        # any loop
quantize_(model, QATConfig(base, step="convert"))   # real int4 weights
```

`Int8DynamicActivationIntxWeightConfig` adds int8 activations per token (W4A8), which
`qat.prepare(..., activations="int8")` reproduces (`tests/test_torchao_qat.py` checks that the
two activation grids are equal). Neither this notebook nor the recorded benchmark trains W4A8:
the claim that QAT pays most with low-bit activations (section 9) rests on the PyTorch blog's
Llama-3-8B figures, not on a measurement here. `qcourse.references.torchao.qat` wraps these
calls; here is torchao's fake quantization of one layer next to ours:
"""),
    ("code", r"""
from qcourse.references.torchao import qat as torchao_qat

ao_model = torchao_qat.prepare(copy.deepcopy(model), 4, 32)
ao_layer = ao_model.model.layers[0].mlp.down_proj
theirs, ao_scale = torchao_qat.fake_quantized_weight(ao_layer)
w = ao_layer.weight.detach()
sym4 = QuantScheme(4, 32, symmetric=True)
ours_same_scale = qat.fake_quantize(w.reshape(w.shape[0], -1, 32), ao_scale[..., None],
                                    torch.zeros(()), sym4).reshape(w.shape)
ours_own = qat.prepare(copy.deepcopy(model), 4, 32, symmetric=True).model.layers[0].mlp.down_proj
with torch.no_grad():
    ours_own_weight, our_scale = ours_own.fake_weight(), ours_own.params()[0]
print(f"torchao's scale / ours: {(ao_scale / our_scale).mean():.4f} "
      f"(max|w|/7.5 against max|w|/7, ours in fp16)")
print(f"on torchao's scale, weights that differ: {(ours_same_scale != theirs).sum().item()} of "
      f"{w.numel():,} (one step each: ties at ±7.5, where torchao computes w·(1/s), we w/s)")
print(f"each on its own scale: RMS error vs w, torchao {(theirs - w).pow(2).mean().sqrt():.5f}, "
      f"ours {(ours_own_weight - w).pow(2).mean().sqrt():.5f}")
"""),
    ("md", r"""
So on a shared scale the grids and the rounding are the same (half to even, clamp), except at
exact ties, where torchao multiplies by `1/s` and we divide (a one-step difference on at most one
weight per group, tested in `tests/test_torchao_qat.py`). What differs is the symmetric scale
rule: torchao divides the group's absmax by `(qmax − qmin)/2 = 7.5`, we divide by `qmax = 7`.
On torchao's scale `u = w/s` spans [−7.5, 7.5]: the largest positive weight sits half a step
past the last level and is clipped to it, and −8 is reached only by the tie at `u = −7.5`. It
trades those clipped extremes for a step 7 % smaller; ours never clips.

**The backward passes differ too.** torchao rounds with a straight-through `_Round` and clamps
*after* rounding, so its gradient passes wherever `round(u)` is on the grid: up to half a step
beyond each end. Our clipped STE stops at `qmin` and `qmax` exactly. On torchao's own grid that
matters for the weights it clips (`7 < u < 7.5` at 4 bits): they stay clipped in the forward
pass but still get a gradient. Both backward passes on the same layer and scale:
"""),
    ("code", r"""
w_theirs = ao_layer.weight.detach().clone().requires_grad_(True)
ao_layer.weight_fake_quantizer(w_theirs).sum().backward()          # torchao's backward
w_ours = w.reshape(w.shape[0], -1, 32).clone().requires_grad_(True)
qat.fake_quantize(w_ours, ao_scale[..., None], torch.zeros(()), sym4).sum().backward()
u = w.reshape(w.shape[0], -1, 32) / ao_scale[..., None]              # on torchao's scale
theirs_pass, ours_pass = w_theirs.grad.reshape(u.shape) != 0, w_ours.grad != 0
only_theirs, outside = theirs_pass & ~ours_pass, (u < sym4.qmin) | (u > sym4.qmax)
print(f"gradient passes for {theirs_pass.sum().item():,} weights (torchao) and "
      f"{ours_pass.sum().item():,} (ours) of {u.numel():,}")
print(f"only torchao's: {only_theirs.sum().item()} weights, u from {u[only_theirs].min():.3f} "
      f"to {u[only_theirs].max():.3f} (qmax = {sym4.qmax}); ours outside [{sym4.qmin}, "
      f"{sym4.qmax}]: {(ours_pass & outside).sum().item()}")
"""),
    ("md", r"""
**Symmetric only?** The benchmark compares symmetric grids because the torchao path used here,
`QATConfig(IntxWeightOnlyConfig(...))` (the one whose convert step gives int weights on the
CPU), accepts only symmetric mapping in torchao 0.18. torchao's fake quantizer itself is more
general: `IntxFakeQuantizeConfig` takes `is_symmetric=False` (a zero point) and
`range_learning=True` (a prototype: scales and zero points become trainable parameters,
initialized by `initialize_fake_quantizers`, as LSQ), passed as
`QATConfig(weight_config=..., step="prepare")`. Its asymmetric grid on one layer at 2 bits,
next to ours:
"""),
    ("code", r"""
from torchao.quantization import IntxWeightOnlyConfig, MappingType, PerGroup, quantize_
from torchao.quantization.qat import IntxFakeQuantizeConfig, IntxFakeQuantizer, QATConfig

asym_base = IntxWeightOnlyConfig(weight_dtype=torch.int2, granularity=PerGroup(64),
                                 mapping_type=MappingType.ASYMMETRIC)
try:
    quantize_(copy.deepcopy(model.model.layers[0].mlp), QATConfig(asym_base, step="prepare"))
except AssertionError as err:
    print(f"QATConfig(IntxWeightOnlyConfig(..., ASYMMETRIC)): AssertionError: {err}")
w2 = model.model.layers[0].mlp.down_proj.weight.detach()               # [256, 768]
asym2 = QuantScheme(2, 64, symmetric=False)
s2, z2 = (t[..., None] for t in asym2.params(w2))
ours_asym = asym2.snap(w2.reshape(256, -1, 64), s2, z2).reshape(w2.shape)
with torch.no_grad():
    theirs_asym = IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int2, group_size=64,
                                                           is_symmetric=False))(w2)
for name, fq in (("ours (min-max, integer zero point)", ours_asym),
                 ("torchao IntxFakeQuantizeConfig(is_symmetric=False)", theirs_asym)):
    levels = torch.tensor([len(set(g.tolist())) for g in fq.reshape(-1, 64)]).float().mean()
    print(f"{name:52s} RMS error {(fq - w2).pow(2).mean().sqrt():.5f}, "
          f"distinct values per group of 64: {levels:.2f} of 4")
"""),
    ("md", r"""
The base-config path refuses asymmetric weights, as said. The fake quantizer's asymmetric grid
works, but it is not ours: in torchao 0.18 it picks each group's scale and zero point the way the
tinygemm kernel does (a float zero point for the unsigned grid 0…3), then stores that zero point
as an integer for the signed grid −2…1 (our reading of `IntxFakeQuantizer`; the printout is the
measurement), so many groups use fewer than four values and its error is a little above ours.
That, and its convert step, are why the benchmark compares symmetric grids only.

The recorded benchmark trained torchao's QAT and ours on its symmetric grid with the same loop,
windows and learning rate:
"""),
    ("code", r"""
if record:
    for width in dict.fromkeys(r["width"] for r in record["rows"][2:]):
        row = {r["method"]: r for r in record["rows"] if r["width"] == width}
        ours, theirs = row["QAT (STE, symmetric)"]["ppl"], row["torchao QAT (symmetric)"]["ppl"]
        paired = (versus(row["torchao QAT (symmetric)"], row["QAT (STE, symmetric)"]).rstrip()
                  if "window_nll" in row["QAT (STE, symmetric)"] else f"{100 * (ours / theirs - 1):+.1f}")
        print(f"{width}: ours (symmetric) {ours:7.2f}, torchao {theirs:7.2f}, ours against "
              f"torchao in % {paired}; time ours {row['QAT (STE, symmetric)']['seconds']:.0f} s, "
              f"torchao {row['torchao QAT (symmetric)']['seconds']:.0f} s")
"""),
    ("md", r"""
After the same training, torchao's QAT and ours on a symmetric grid are level at 4 bits (the
paired interval contains zero; `tests/test_torchao_qat.py`'s 30-step run at 4 bits, groups of
32, asks for 1 %), ours is 0.17 % worse at 3 bits, with an interval that only just excludes
zero, and at 2 bits ours is 8 % worse, far outside the noise; the two took about the same time.
With integers −2…1 neither scale rule
uses all four levels. Ours, `s = max|w|/qmax = max|w|`, maps every weight to −1, 0 or 1 and
rounds all those below `max|w|/2` to zero. torchao's `s = max|w|/1.5` has `u` in [−1.5, 1.5]:
it too rounds to −1, 0 or 1, and reaches −2 only by a tie, when a group's largest weight is
negative and lands on `u = −1.5` exactly (rounded half to even). It is a clipping trade-off:
the step is a third smaller, and in exchange the grid ends at `+s = ⅔·max|w|`, so the largest
weights are clipped to ±s (by up to half a step, `max|w|/3`). On one layer, and on the whole
model before any training:
"""),
    ("code", r"""
sym2 = QuantScheme(2, 64, symmetric=True)
s_ours = sym2.params(w2)[0][..., None]
with torch.no_grad():
    ao2 = IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int2, group_size=64))
    theirs2 = ao2(w2).reshape(256, -1, 64)
rules = {"ours, s = max|w|": (sym2.apply_grid(w2.reshape(256, -1, 64), s_ours, torch.zeros(())),
                              s_ours),
         "torchao, s = max|w|/1.5": (torch.round(theirs2 / ao2.scale.reshape(256, -1, 1)),
                                     ao2.scale.reshape(256, -1, 1))}
for name, (codes, step) in rules.items():
    share = "  ".join(f"{q:+d}: {(codes == q).float().mean():6.2%}" for q in range(-2, 2))
    error = (codes * step).reshape(w2.shape) - w2
    print(f"{name:24s} codes {share}   RMS error {error.pow(2).mean().sqrt():.5f}")
grouped2 = w2.reshape(256, -1, 64)
negative_max = (grouped2.amin(-1).abs() > grouped2.amax(-1)).sum().item()
with_minus2 = (rules["torchao, s = max|w|/1.5"][0] == -2).any(-1).sum().item()
minus2_elsewhere = ((rules["torchao, s = max|w|/1.5"][0] == -2).any(-1)
                    & (grouped2.amin(-1).abs() <= grouped2.amax(-1))).sum().item()
print(f"torchao's -2: {with_minus2} of {grouped2.shape[0] * grouped2.shape[1]} groups hold one; "
      f"{negative_max} groups have a negative largest weight (the ties), and {minus2_elsewhere} "
      f"groups without one use -2")
step0 = {name: ev.score(prepared, tokenizer) for name, prepared in (
    ("ours", qat.prepare(copy.deepcopy(model), 2, 64, symmetric=True)),
    ("torchao", torchao_qat.prepare(copy.deepcopy(model), 2, 64)))}
print(f"\nW2 g64 symmetric, before any training ({ev.QUICK.label()}): ours "
      f"{step0['ours'].perplexity:.2f}, torchao {step0['torchao'].perplexity:.2f}; ours against "
      f"torchao {ev.paired_difference(step0['torchao'], step0['ours'])}")
if record:
    after = {r["method"]: r for r in record["rows"] if r["width"] == "W2 g64"}
    print(f"after {after['QAT (STE, symmetric)']['training_tokens']:,} tokens of QAT (recorded, "
          f"{scored}): ours {after['QAT (STE, symmetric)']['ppl']:.2f}, torchao "
          f"{after['torchao QAT (symmetric)']['ppl']:.2f}")
"""),
    ("md", r"""
On this layer torchao's rule puts fewer weights on zero and has a lower RMS error; its −2 is
used only in groups whose largest weight is negative (the ties), not as a fourth level. The gap is
there before a single training step (ours about 30 % worse on the quick windows); after
131,072 tokens of the same training it has shrunk to 8 % on the whole split. So the training
does not cause the 2-bit difference between the two symmetric rows: the scale rule does, and
training only narrows it. That is why our QAT defaults to the asymmetric grid, which does use
all four levels (its zero point shifts the grid onto each group's range, as the previous cell's
"4.00 of 4" shows).

**The legacy path.** Tutorials from before 2024 show eager-mode QAT from `torch.ao.quantization`:
"""),
    ("code", r"""
import torch.ao.quantization as tq

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    toy = torch.nn.Sequential(tq.QuantStub(), torch.nn.Linear(16, 8), tq.DeQuantStub()).train()
    toy.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(toy, inplace=True)
print(toy[1])
print(next(str(w.message).splitlines()[0] for w in caught if w.category is DeprecationWarning))
"""),
    ("md", r"""
It inserts observers and fake quantizers per tensor or per channel at 8 bits (FBGEMM's x86
int8 kernels), needs `QuantStub`/`DeQuantStub` around the model, and converts to
`torch.ao.nn.quantized` modules. It has no grouped low-bit weights, which is what LLMs need, and
as the warning says the module is deprecated: torchao's `quantize_` with `QATConfig` replaces the
eager path, and torchao's `prepare_pt2e`/`convert_pt2e` replace the FX graph path.

## 8. QLoRA: train small adapters next to a frozen 4-bit model

QLoRA (Dettmers et al., 2023) stores the base model in NF4 (notebook 02) and freezes it; every
linear layer gets a trainable low-rank update (LoRA; Hu et al., 2021):

    y = x·W'ᵀ + (α/r)·(x·Aᵀ)·Bᵀ        W' NF4 (frozen),  A [r, K],  B [N, r]

`B` starts at zero, so training starts from the quantized model. Gradients and optimizer state
exist only for `A` and `B`. Three more pieces of the paper:

* **Storage type and compute type.** NF4 is only how `W'` is *stored*. Each forward pass
  dequantizes it to the 16-bit *compute* type (BF16 in the paper) and multiplies in BF16; the
  adapters are kept in 16 bits too. Ours stores NF4 and computes in float32 (on a CPU), adapters
  included.
* **Double quantization.** NF4's constants, one float32 absmax per block of 64 weights, cost
  32/64 = 0.5 bits per weight. QLoRA quantizes them again: 8-bit floats in blocks of 256 (their
  mean subtracted first), with one float32 constant per block, 8/64 + 32/(64·256) ≈ 0.127 bits
  per weight, saving about 0.37 bits per weight (the paper: about 3 GB on a 65B model). Our
  `NF4Linear` keeps float32 absmax values; bitsandbytes with `bnb_4bit_use_double_quant` (the
  peft reference below) quantizes them.
* **Paged optimizers** move optimizer state to CPU memory when the GPU runs out; not used here.

Here is our minimal version, on `NF4Linear`:
"""),
    ("code", r"""
print(inspect.getsource(qlora.LoRALinear.forward))
print(inspect.getsource(qlora.prepare))
"""),
    ("md", r"""
Domain adaptation is what QLoRA is used for. Our corpus has two domains: prose (the standard
library's documentation) and code (its source). We fine-tune rank-8 adapters on the prose half
of the train split only, and score both halves of the test split:
"""),
    ("code", r"""
adapted = qlora.prepare(copy.deepcopy(model), rank=8)
before = {d: ppl(adapted, d) for d in ("prose", "code")}
qlog = qlora.train(adapted, tokenizer, 30, lr=1e-3, batch_size=4, seq_len=128, domain="prose",
                   progress=False)
after = {d: ppl(adapted, d) for d in ("prose", "code")}
float_ppl = {d: ppl(model, d) for d in ("prose", "code")}
print(f"perplexity on the first {WINDOWS} test windows of 512 tokens of each half:")
for d in ("prose", "code"):
    print(f"{d:6s} fp32 {float_ppl[d]:6.2f}   NF4 {before[d]:6.2f}   NF4 + adapters trained on "
          f"prose {after[d]:6.2f}")
full = copy.deepcopy(model)
flog = training.fine_tune(full, tokenizer, 1, [{"params": list(full.parameters()), "lr": 1e-5}],
                          batch_size=4, seq_len=128, progress=False)
batch = torch.randint(0, 4096, (4, 128), generator=torch.Generator().manual_seed(0))
adapter_bytes = 4 * qlog["trainable_parameters"]                    # float32 A and B
memory = {"QLoRA": (ev.model_size_bytes(adapted) - adapter_bytes, qlog,
                    training.saved_activation_bytes(adapted, batch)),
          "full fine-tuning": (0, flog, training.saved_activation_bytes(full, batch))}
print(f"\nmemory of one training step on 4×128 tokens:")
print(f"{'':17s} {'trainable':>10s} {'frozen base':>12s} {'training state':>15s} "
      f"{'activations':>12s} {'total':>10s}")
for name, (frozen, log_, acts) in memory.items():
    state = log_["training_state_bytes"]
    print(f"{name:17s} {log_['trainable_parameters']:>10,} {human_bytes(frozen):>12s} "
          f"{human_bytes(state):>15s} {human_bytes(acts):>12s} {human_bytes(frozen + state + acts):>10s}")
print(f"NF4 storage: {qlora.storage_bits():.3f} bits per weight here (float32 absmax per 64), "
      f"{qlora.storage_bits(64, 256):.3f} with double quantization")
"""),
    ("code", r"""
with torch.no_grad():
    with_adapters = adapted(ids).logits
    merged = qlora.merge(adapted)
    diff = (merged(ids).logits - with_adapters).abs().max().item()
print(f"merged: {type(merged.model.layers[0].mlp.down_proj).__name__} layers, "
      f"max logit change {diff:.1e}")
"""),
    ("md", r"""
The production path is peft's LoRA on a bitsandbytes NF4 base with double quantization
(`qcourse.references.peft_qlora`). And what does the 4-bit base cost? The control is plain LoRA
on the float model (`qlora.prepare(model, base="float")`): the same adapters on unquantized
frozen weights. The benchmark's QLoRA part (`python benchmarks/qat.py --qlora-only`, its own
record) trained all three from the same `A` matrices, on the same windows of prose, with the
same options, and kept each test window's loss, so that any two rows compare with a paired
interval:
"""),
    ("code", r"""
qruns = [bench_record.read(p) for p in sorted(bench_record.RESULTS_DIR.glob("qat-qlora-*.json"))
         if "quick" not in p.name]
qfinished = [r for r in qruns if r.get("complete")]
qrecord = qfinished[-1] if qfinished else None
LABELS = {"ours": "QLoRA, ours", "peft": "QLoRA, peft", "float_lora": "LoRA on fp32"}


def half(entry, domain):  # one half's recorded per-window losses as the package's Score
    return ev.Score(ev.Protocol(f"{domain} half of the test split", None),
                    torch.tensor(entry["window_nll"][domain]))


if qrecord:
    q, qset, load = qrecord["qlora"], qrecord["qlora_settings"], qrecord["load_average"]
    print(f"recorded {qrecord['date'][:16].replace('T', ' ')} UTC on {qrecord['machine']['cpu']}, "
          f"torch threads: {qrecord['threads']}; load average (1 min) {load['start'][0]:.2f} at "
          f"the start, {load['end'][0]:.2f} at the end")
    print(f"{q['steps']} steps of {qset['batch_size']}×{qset['seq_len']} prose tokens, rank "
          f"{qset['rank']}, lr {qset['lr']}; perplexity on every test window of 512 tokens of each half; fp32: "
          f"prose {q['float']['prose']:.2f}, code {q['float']['code']:.2f}")
    print(f"{'':13s} {'prose before -> after':>22s} {'code before -> after':>21s} "
          f"{'trainable':>10s} {'state':>9s} {'peak':>9s} {'time':>6s}")
    for name, label in LABELS.items():
        r, r0 = q[name], q["start"][name]
        print(f"{label:13s} {r0['prose']:10.2f} -> {r['prose']:6.2f} {r0['code']:10.2f} -> "
              f"{r['code']:6.2f} {r['trainable_parameters']:>10,} "
              f"{human_bytes(r['training_state_bytes']):>9s} {r['peak_memory_mb']:6.0f} MB "
              f"{r['seconds']:4.0f} s")
    f = q["full_fine_tuning"]
    print(f"full fine-tuning: trainable {f['trainable_parameters']:,}, state "
          f"{human_bytes(f['training_state_bytes'])}")
    print("largest logit change on merging: ours {ours:.1e}, peft {peft:.1e}".format(
        **q["merge_max_logit_change"]))
    print("\npaired differences, PPL_b / PPL_a − 1 with its 95 % interval:")
    for domain in ("prose", "code"):
        d = ev.paired_difference(half(q["float"], domain), half(q["start"]["ours"], domain))
        print(f"  {domain:5s} before training (B = 0), NF4 (ours) against fp32: {d}")
    print("after training:")
    for domain in ("prose", "code"):
        for a, b in (("float_lora", "ours"), ("float_lora", "peft"), ("peft", "ours")):
            d = ev.paired_difference(half(q[a], domain), half(q[b], domain))
            print(f"  {domain:5s} {LABELS[b]} against {LABELS[a]}: {d}")
    print("what training did, each model against itself before it:")
    for domain in ("prose", "code"):
        for name in LABELS:
            d = ev.paired_difference(half(q["start"][name], domain), half(q[name], domain))
            print(f"  {domain:5s} {LABELS[name]}: {d}")
"""),
    ("md", r"""
From the same start ours and peft end at the same perplexities: their paired difference is
under 0.01 % on either half (on code its interval excludes zero by thousandths of a percent):
the two NF4 bases differ only by bitsandbytes' double quantization of the block absmax values.

The control says what the 4-bit base costs. Before training NF4 sits 0.49 % above fp32 on
prose and 0.34 % on code. After the same 32 steps, QLoRA ends 0.28 % above LoRA on fp32 on prose
and 0.33 % on code, both intervals clear of zero: the adapters did not learn the rounding back.
Training improved prose by about as much on either base (−1.46 % for QLoRA, −1.26 % for the
control, each against its own start, intervals overlapping), so most of the base's gap stayed
(on prose it narrowed from 0.49 % to 0.28 %, but those two intervals overlap too). Code,
the half the adapters never saw, did not move for any of the three (intervals containing zero):
they learned the domain they were shown. On prose QLoRA (71.92) ended below the untrained float
model (72.63): here the adaptation outweighs the 4-bit base's cost.

One draw of `A` only: peft draws its `A` matrices from torch's random stream
(`load_qlora` sets no seed) and ours copies them, so section 6's full run
(`benchmarks/results/qat-x86_64-2026-12-07.json`) drew others: its ours ended at 71.98 on
prose, 0.08 % from this run's 71.92, a third of the base's cost. The time and
peak memory columns rank nothing: the run shared the machine with other jobs (load average
above, not a quiet machine), and "peak" is the growth of the process's resident memory during
each training, run in the order ours, peft, control, so a later run reuses memory an earlier one
freed. The live cell's memory table counts the parts instead.

The memory table of the live cell puts QLoRA's training state next to what that figure leaves
out. Its adapters, their gradients and AdamW's moments are a small fraction of full fine-tuning's
state, but QLoRA also holds its frozen base (the NF4 linear layers plus the float32 embedding
and norms) and, like any training, the activations the backward pass needs. At 4×128 tokens the
activations are the largest item of both, and ours keeps *more* than full fine-tuning: each
layer's dequantized float32 weight is saved for the backward pass (bitsandbytes keeps the 4-bit
weight and dequantizes it again in the backward instead). So one step here saves about 1.7×,
not the ratio of the training states. The paper adds gradient checkpointing (activations
recomputed rather than kept) and paged optimizers; neither is used here.

Merging differs: ours keeps the merged weight in float (the
logits move by rounding only), while peft's `merge_and_unload` into a 4-bit base re-quantizes the
merged weight to NF4, which moved the logits visibly: to serve in 4 bits, either keep the adapters
beside the NF4 base or merge and accept (and measure) a second rounding.

## 9. PTQ, QAT or QLoRA?

Older course material claims that QAT costs "1–7 days" and "10K–100K samples" and that PTQ loses
"2–5 % quality". Here is what this course measured instead (recorded run of section 6):
"""),
    ("code", r"""
if record:
    fp32 = record["rows"][0]["ppl"]
    for width in dict.fromkeys(r["width"] for r in record["rows"][2:]):
        row = {r["method"]: r for r in record["rows"] if r["width"] == width}
        runs = [r for m, r in row.items() if m.startswith("QAT") and "symmetric" not in m]
        low, high = (f(r["ppl"] for r in runs) / fp32 - 1 for f in (min, max))
        print(f"{width}: perplexity {row['RTN']['ppl'] / fp32 - 1:+.1%} RTN, "
              f"{row['GPTQ']['ppl'] / fp32 - 1:+.1%} GPTQ ({row['GPTQ']['seconds']:.0f} s), "
              f"{low:+.1%} to {high:+.1%} QAT on the asymmetric grid ({len(runs)} runs of "
              f"{runs[0]['training_tokens']:,} tokens, "
              f"{min(r['seconds'] for r in runs):.0f}–{max(r['seconds'] for r in runs):.0f} s each)")
    control = record["rows"][1]
    print(f"fp32 fine-tuned with the same loop and tokens: {control['ppl']:.2f} (fp32 {fp32:.2f})")
"""),
    ("md", r"""
So "2–5 % quality loss" is not a property of PTQ: it depends on the width and the model. Here
it is under 2 % at 4 and 3 bits and about 9 % (RTN) or 3.5 % (GPTQ) at 2 bits. And QAT's
cost is not "1–7 days" or "10K–100K samples" by nature either: it is a training run, and its
price scales with the model and the tokens you give it. Published figures, each with its source:

| source | model and setting | PTQ | QAT | cost reported |
|---|---|---|---|---|
| PyTorch blog (Or et al., 2024) | Llama-3-8B, int4 grouped weights + int8 per-token activations, fine-tuned on C4 | — | recovers up to 96 % of PTQ's hellaswag accuracy loss and 68 % of its wikitext perplexity loss | — |
| same, lowered to XNNPACK | Llama-3-8B, same scheme | wikitext word perplexity 23.32 | 19.40 (16.8 % lower) | same size, same on-device speed |
| EfficientQAT model zoo (Chen et al.) | Llama-3-8B, WikiText2 perplexity (2,048 context) / average of 5 zero-shot tasks; fp16 6.14 / 68.58 | — | w4g128 6.47 / 68.43, w3g128 7.09 / 67.35, w2g64 9.41 / 60.76 | block-wise phase trains on 4,096 samples by default |
| EfficientQAT paper (abstract) | Llama-2-70B, 2 bits | — | average accuracy 69.48 vs 72.41 in fp16 | 41 hours on one A100-80GB |

**When is each worth its cost?**

* **PTQ first** (RTN, GPTQ, AWQ, notebooks 02, 04, 05): minutes, a few hundred calibration
  windows, no training. At 4 bits with groups it costs about 0.1-0.3 % on this model, and in the
  published Llama figures the 4-bit losses are small too. If PTQ's loss at your target width is
  acceptable, stop there.
* **QAT** when PTQ's loss at the width you need is not acceptable (2–3 bits, or low-bit
  activations as in the PyTorch blog's W4A8, not run here) *and* you can afford a real training
  run on data like the model's own: the published gains come from runs of many GPU-hours. On
  this small model 131,072 tokens of QAT with the STE or LSQ reached GPTQ's level at every width
  and went no further (paired intervals containing zero), in 1.6 to 2.6 times GPTQ's time and
  with training data GPTQ does not need. Distillation from the float model was the one QAT run
  to beat GPTQ, at 2 bits only (by 0.5 %); at 4 bits it was level with RTN and worse than GPTQ.
  Compare any QAT result with the float model fine-tuned alike, or the extra training passes for
  quantization quality. QAT's output is the same packed format as PTQ's
  (`convert` → `QuantLinear`), so deployment does not change.
* **QLoRA** answers a different question: not "how do I lose less when I quantize" but "how do I
  adapt a model I can only afford to hold in 4 bits". It trains a few hundred thousand adapter
  numbers instead of every weight (the training state above is a small fraction of full
  fine-tuning's), improves the domain it was trained on and leaves the base model frozen; the
  4-bit base costs about 0.3 % perplexity against LoRA on the float model trained alike
  (section 8). To
  serve it in 4 bits you either keep the adapters beside the NF4 base or merge and quantize
  again (peft's merge into NF4 does exactly that).

## Summary

* Rounding has zero gradient almost everywhere; the **straight-through estimator** uses the
  derivative of the clipped identity instead: 1 inside the grid, 0 outside
  (`qat.FakeQuantize`). **LSQ** also learns each group's step size, with gradient
  `round(u) − u` inside and `qmin − z`/`qmax − z` outside, scaled by `1/√(N·Q_P)`.
* `qat.prepare` → `qat.train` → `qat.convert` fine-tunes through the rounding and stores the
  result as the same packed `QuantLinear` as RTN and GPTQ; the converted logits equal the
  fake-quantized ones exactly.
* QAT moves few weights across a rounding boundary, mostly the ones that started near one.
* torchao's `QATConfig` prepare/convert computes the same grid and rounding on a shared scale;
  its symmetric scale rule (`max|w|/((qmax − qmin)/2)`) clips the largest weights for a finer
  step, which matters at 2 bits before any training; its backward pass lets gradients through
  up to half a step beyond the grid. Its fake quantizer also has asymmetric grids and learned
  ranges (`IntxFakeQuantizeConfig`); the `IntxWeightOnlyConfig` path used here is symmetric
  only. `torch.ao.quantization`'s eager `prepare_qat` is the deprecated path it replaces.
* On qcourse-tiny (whole test split, paired 95 % intervals over its 228 windows, 131,072
  training tokens per QAT run, one seed), QAT with the STE or LSQ ended level with GPTQ at every
  width. Only distillation beat GPTQ, at 2 bits (−0.5 %), where GPTQ and QAT took back 59–65 %
  of RTN's 9 % loss; at 4 bits distillation was level with RTN. Every QAT row stayed above the
  float model fine-tuned alike, the fair reference (whose own −0.22 % against fp32 is inside
  the noise). On a quiet machine, one thread, a QAT run took 63–97 s and GPTQ 36–42 s.
  Published results show QAT beating PTQ on Llama-3-8B with far longer training.
* QLoRA trains small adapters on a frozen NF4 base: a fraction of full fine-tuning's training
  state (the frozen base and the activations still count), a better perplexity on the domain it
  trained on, and adapters that merge into one weight per layer. Double quantization shrinks
  NF4's constants from 0.5 to about 0.127 bits per weight. Against LoRA on the float model,
  trained alike from the same `A`, the NF4 base cost about 0.3 % perplexity on both halves of
  the test split after training (paired intervals clear of zero; one draw of `A`), less than
  the 1.3–1.5 % the adapters gained on prose.

## Sources

* Bengio, Léonard, Courville, *Estimating or Propagating Gradients Through Stochastic Neurons for
  Conditional Computation*, 2013. arXiv:1308.3432 (the straight-through estimator).
* Esser, McKinstry, Bablani, Appuswamy, Modha, *Learned Step Size Quantization*, ICLR 2020.
  arXiv:1902.08153 (LSQ: gradient, gradient scale, initialization).
* Bhalgat, Lee, Nagel, Blankevoort, Kwak, *LSQ+: Improving low-bit quantization through learnable
  offsets and better initialization*, CVPR workshops 2020. arXiv:2004.09576.
* Liu et al., *LLM-QAT: Data-Free Quantization Aware Training for Large Language Models*, 2023.
  arXiv:2305.17888 (distillation from the float model's logits).
* Dettmers, Pagnoni, Holtzman, Zettlemoyer, *QLoRA: Efficient Finetuning of Quantized LLMs*,
  NeurIPS 2023. arXiv:2305.14314 (NF4, double quantization and its 0.5 → 0.127 bits per
  parameter, BF16 compute type, paged optimizers). Hu et al., *LoRA*, ICLR 2022.
  arXiv:2106.09685.
* Frantar, Ashkboos, Hoefler, Alistarh, *GPTQ: Accurate Post-Training Quantization for
  Generative Pre-trained Transformers*, ICLR 2023. arXiv:2210.17323.
* Or, Zhang, Smothers, Khandelwal, Rao, *Quantization-Aware Training for Large Language Models
  with PyTorch*, PyTorch blog, 2024 (https://pytorch.org/blog/quantization-aware-training):
  Llama-3-8B, int8 per-token activations + int4 grouped weights, fine-tuned on C4.
* Chen, Shao, Xu, Wang, Gao, Zhang, Qiao, Luo, *EfficientQAT: Efficient Quantization-Aware
  Training for Large Language Models*, 2024. arXiv:2407.11062 (the 70B figure), and the model
  zoo table of its README (github.com/OpenGVLab/EfficientQAT: the Llama-3-8B figures, lm-eval
  0.4.2; `--train_size` 4096 by default).
* torchao 0.18 (`QATConfig`, `IntxWeightOnlyConfig`, `Int8DynamicActivationIntxWeightConfig`,
  `IntxFakeQuantizeConfig`: read in the installed package, `torchao/quantization/qat/`),
  peft 0.21 (`LoraConfig`, `merge_and_unload`), bitsandbytes 0.50.2 (`BitsAndBytesConfig`).
"""),
]

EXTRAS = "torchao"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
