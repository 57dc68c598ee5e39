"""Source of notebooks/09_benchmarks_and_cost.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

EXTRAS = "llamacpp"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

CELLS = [
    ("md", r"""
# 09 · Benchmarks, evaluation beyond perplexity, memory and cost

Each notebook so far taught one method. To *choose* one, a learner needs every method measured on
the same model, the same data and the same machine, quality measured more than one way, and the
step from "my tiny model got 5 % bigger perplexity" to "this 70B model at 8k tokens needs this
card and costs this much a month". This notebook does both, with numbers that are measured here
or cited with their source.

**Learning goals.** After this notebook you can
1. run `qcourse compare` and read its table: size, bits per weight, perplexity, KL divergence,
   top-1 agreement, greedy-continuation match, task accuracy, quantization time, speed, memory;
2. say what perplexity, KL divergence and task accuracy each see, where they agree, and why a
   task score on 100 questions cannot rank close methods (and why a task the float model barely
   solves measures nothing);
3. compute the memory of a real model (weights in any format, KV cache with grouped-query
   attention, activations) and see when the KV cache, not the weights, is the problem;
4. turn a GPU price and a throughput into cost per million tokens, compare self-hosting with an
   API, and spot the tables that contradict themselves;
5. pick a format for a job from measurements, not slogans.
"""),
    ("code", r"""
%matplotlib inline
import contextlib
import inspect
import io
import json
import math
import pathlib
import tempfile

import matplotlib.pyplot as plt

from qcourse import bench, cost, hardware, tasks
from qcourse import evaluation as ev
from qcourse.exercises import ex09

RESULTS = pathlib.Path("../benchmarks/results")
RECORDED = json.loads(sorted(RESULTS.glob("compare-quick-x86_64-*.json"))[-1].read_text())
WHOLE = json.loads(sorted(RESULTS.glob("compare-x86_64-*.json"))[-1].read_text())
for run in (RECORDED, WHOLE):
    print(f"recorded run ({'quick subset' if run['quick'] else 'whole test split'}): "
          f"{run['date'][:10]}, {run['machine']['cpu']}, {run['machine']['cores']} cores, "
          f"{run['settings']['threads']} thread, {len(run['rows'])} methods measured"
          + (f", not run: {', '.join(run['not_run'])}" if run["not_run"] else ""))
    shared = max(run["loadavg_start"][0], run["loadavg_end"][0]) > 1.5   # the run itself: ~1
    print(f"  load average (1, 5, 15 min) at start {[round(x, 1) for x in run['loadavg_start']]}, "
          f"at end {[round(x, 1) for x in run['loadavg_end']]}: "
          + ("other jobs shared the 2 cores" if shared else "nothing else ran"))
"""),
    ("md", r"""
**About the numbers.** Two kinds of numbers appear below. *Live* ones are computed as this
notebook runs, on a few test windows so that it runs in about two minutes on a laptop CPU.
*Recorded* ones come from a full `qcourse compare` run saved in `benchmarks/results/` (the file
names its machine and date; the command that reproduces it is in section 3). Figures from papers
or vendors are quoted with their source and date.

## 1. What we measure beyond perplexity

Perplexity asks how surprised the quantized model is by the *text*. Two other questions are
closer to "did quantization change my model?":

* **KL divergence** from the float model: at every position, how far the quantized model's
  next-token distribution `q` is from the float model's `p` (what llama.cpp's `--kl-divergence`
  reports):  `KL(p‖q) = Σ_v p(v) · (log p(v) − log q(v))`, averaged over positions. It is 0 only
  if the two distributions are equal, and it sees changes that perplexity averages away: a model
  can lose probability on the right token at one place and gain it at another.
* **Top-1 agreement**: the fraction of positions where both models rank the same token first;
  with greedy decoding, that is the token they would write.
"""),
    ("code", r"""
print(inspect.getsource(ev.kl_per_token))
"""),
    ("md", r"""
A hand check: `p = (1/4, 3/4)`, `q = (1/2, 1/2)` gives `1/4 · ln(1/2) + 3/4 · ln(3/2) = 0.1308`
nats. KL is not symmetric: swapping them gives a different number.
"""),
    ("code", r"""
import torch

p_logits = torch.tensor([0.0, math.log(3)], dtype=torch.float64)   # softmax -> (1/4, 3/4)
q_logits = torch.tensor([0.0, 0.0], dtype=torch.float64)           # softmax -> (1/2, 1/2)
print(f"KL(p||q) = {ev.kl_per_token(q_logits, p_logits).item():.4f}   "
      f"KL(q||p) = {ev.kl_per_token(p_logits, q_logits).item():.4f}")
"""),
    ("md", r"""
* **Greedy-continuation match**: from the same prompt, both models decode greedily; how many
  tokens agree before the first difference? One early difference changes everything after it, so
  this is the user-visible version of top-1 agreement.
* **Task accuracy**: questions with a right answer, scored by
  [lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness) (`lm-eval`), the
  tool behind most published accuracy tables. Public tasks (HellaSwag, MMLU) are far beyond a
  5.8 M-parameter model trained on Python's standard library, so the course builds two tasks from
  the **test** split of its own corpus (`qcourse.tasks`, shipped in `data/tasks/` as JSONL with a
  task YAML each, `dataset_path: json`): which of four lines comes next in a function, and which
  of four words ends a sentence of documentation. Chance is 25 %.
"""),
    ("code", r"""
for name in tasks.TASKS:
    example = tasks.load(name, 1)[0]
    print(f"--- {name} ({len(tasks.load(name))} examples) ---")
    print("context:", repr(example["context"][-160:]))
    for i, choice in enumerate(example["choices"]):
        print(f"  {'*' if i == example['label'] else ' '} {choice!r}")
"""),
    ("md", r"""
The harness scores each choice by its log-likelihood after the context and counts how often the
best-scoring choice is the right one (`acc`; `acc_norm` divides by the choice's length first).
`qcourse.tasks` does the same from scratch; here both score the float model on the same first 12
questions of each task (`tests/test_tasks.py` checks the equality). For quantized models in
memory the harness's own `HFLM(pretrained=model, tokenizer=tok)` takes the model object; for GGUF
files, `qcourse.references.lm_eval` hands the harness llama.cpp's logits. The harness also
returns each question's answer (1 right, 0 wrong), which section 4's paired test needs.
"""),
    ("code", r"""
from qcourse import models
from qcourse.references import lm_eval

tiny_model, tiny_tokenizer = models.load("qcourse-tiny")
with contextlib.redirect_stderr(io.StringIO()):       # the harness's progress bars
    harness = lm_eval.evaluate(tiny_model, tiny_tokenizer, limit=12)
for name in tasks.TASKS:
    ours = tasks.evaluate(tiny_model, tiny_tokenizer, name, limit=12)
    print(f"{name:24s} lm-eval acc {harness[name]['acc']:.3f}, acc_norm {harness[name]['acc_norm']:.3f}"
          f" | qcourse.tasks acc {ours['acc']:.3f}, acc_norm {ours['acc_norm']:.3f}"
          f" | answers {''.join(str(int(c)) for c in harness[name]['correct'])}")
"""),
    ("md", r"""
## 2. A comparison, live

`qcourse.bench.compare` quantizes the embedded model with the methods you name, then measures
each. Here four of them, on only 4 test windows and without the task and speed measurements
(those take minutes on a CPU), so the numbers are rough (greedy match over 2 prompts is noise);
the next section has the full run.
"""),
    ("code", r"""
live = bench.compare(["fp32", "rtn-g128", "gguf-Q4_K_M", "gguf-Q2_K"], quick=True,
                     use_cache=False, progress=False, workdir=tempfile.mkdtemp(),
                     overrides={"windows": 4, "compare_windows": 4, "prompts": 2,
                                "new_tokens": 8, "task_limit": 0, "runtime": False})
print(bench.format_table(live))
"""),
    ("md", r"""
## 3. Every method (recorded)

The recorded runs quantize the model with every method of the course: round-to-nearest per
channel and with groups of 128, W8A8, LLM.int8(), NF4 (ours and bitsandbytes), GPTQ, AWQ, QAT,
and llama.cpp's Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K. The first table was made with

```bash
qcourse compare --quick --no-cache --json FILE   # every method recomputed: 7 min 13 s here
```

on a subset (the settings line above the table says which), and the second with

```bash
nice -n 10 python benchmarks/compare.py   # the whole test split, saved after every method
```

on the whole test split (228 windows of 512 tokens). Both reuse the rows of the per-method cache
when nothing a row depends on has changed, so a rerun only computes what is new; the file's
`note` and each row's `measured` time say when each row was measured. **The quick run's speed and
memory were recorded while other jobs shared the machine's two cores; the whole-split run ran
alone** (the load averages are printed above): compare `tok/s` between methods of one run. Size is what the artifact
stores: the tensors of a PyTorch model (its embeddings and head stay float32: 1 M of the 5.8 M
parameters) or the whole GGUF file (llama.cpp quantizes the tied embedding too, as Q6_K or
Q8_0). Speed and peak memory come from a fresh process of the runtime that serves the format:
the course's PyTorch layers, bitsandbytes, or llama.cpp, one thread.
"""),
    ("code", r"""
print(bench.format_table(RECORDED))
"""),
    ("code", r"""
print(bench.format_table(WHOLE))
fig = bench.plot(WHOLE)
plt.show()
"""),
    ("md", r"""
Reading the whole-split table (the observations below are checked by the next cell, which prints the numbers
they rest on):
"""),
    ("code", r"""
rows = {r["method"]: r for r in WHOLE["rows"] if r["status"] == "ok"}   # the quiet whole-split run
base = rows["fp32"]
order = sorted(rows, key=lambda m: rows[m]["kl_divergence"])
print(f"{'method':13s} {'MB':>6s} {'ΔPPL %':>7s} {'KL':>7s} {'top-1':>6s} {'greedy':>6s} "
      f"{'next-line':>9s} {'cloze':>6s}")
for m in order:
    r = rows[m]
    print(f"{m:13s} {r['size_bytes'] / 1e6:6.2f} {100 * (r['perplexity'] / base['perplexity'] - 1):7.2f} "
          f"{r['kl_divergence']:7.4f} {r['top1_agreement']:6.3f} {r['greedy_match']:6.1f} "
          f"{r['tasks']['qcourse_next_line']['acc']:9.3f} {r['tasks']['qcourse_docstring_cloze']['acc']:6.3f}")
for run in (RECORDED, WHOLE):
    first = run["rows"][0]["tasks"]
    for task, score in first.items():
        se = math.sqrt(score["acc"] * (1 - score["acc"]) / score["n"])
        print(f"{'quick' if run['quick'] else 'whole-split'} run, {task}: float accuracy "
              f"{score['acc']:.2f} on {score['n']} questions, standard error ±{se:.3f}")
"""),
    ("md", r"""
**On a real LLM.** The same comparison runs on SmolLM2-135M-Instruct
(`qcourse compare --model smollm2-135m`: RTN and GPTQ/AWQ at groups of 64, W8A8 per tensor and
per token, LLM.int8(), NF4 and llama.cpp's types). Its "fp32" is the released Q4_1 file
dequantized, so every 4-bit row is a re-quantization. A whole-split row takes 10 to 20 minutes
of a quiet CPU, and one fp32 copy of the model with a quantized copy needs about 2 GB: too much
for a live cell, so it is a recorded run, with per-window scores and per-question task answers
for the paired statistics. This cell reads the record if there is one:
"""),
    ("code", r"""
real_runs = sorted(RESULTS.glob("compare-smollm2-135m-x86_64-*.json"))
if real_runs:
    REAL_RUN = json.loads(real_runs[-1].read_text())
    print(f"recorded {REAL_RUN['date'][:10]}, {len(REAL_RUN['rows'])} methods"
          + (f", not run: {', '.join(REAL_RUN['not_run'])}" if REAL_RUN["not_run"] else ""))
    print(bench.format_table(REAL_RUN))
else:
    print("no recorded whole-split run on SmolLM2 yet; it is made (hours on a CPU) with\n"
          "    nice -n 10 python benchmarks/compare.py --model smollm2-135m\n"
          "so this notebook's quality comparisons are on qcourse-tiny only")
"""),
    ("md", r"""
## 4. Perplexity, KL, tasks: where they agree and where they do not

Rank the methods by each measure and compare the rankings (Spearman's rank correlation: 1 = the
same order, 0 = unrelated):
"""),
    ("code", r"""
def ranks(values):
    # rank 0 = smallest; tied values share the mean of their ranks
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2
        start = end + 1
    return out


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


quantized = [m for m in rows if m != "fp32"]
measures = {
    "ΔPPL": [rows[m]["perplexity"] for m in quantized],
    "KL": [rows[m]["kl_divergence"] for m in quantized],
    "1 - top-1": [1 - rows[m]["top1_agreement"] for m in quantized],
    "-greedy": [-rows[m]["greedy_match"] for m in quantized],
    "-tasks": [-(rows[m]["tasks"]["qcourse_next_line"]["acc"]
                 + rows[m]["tasks"]["qcourse_docstring_cloze"]["acc"]) for m in quantized],
}
names = list(measures)
print(" " * 10 + "".join(f"{n:>10s}" for n in names))
for a in names:
    print(f"{a:10s}" + "".join(f"{spearman(measures[a], measures[b]):10.2f}" for b in names))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, (label, values) in zip(axes, [("task accuracy (mean of the two)", [-v / 2 for v in measures["-tasks"]]),
                                      ("ΔPPL (%)", [100 * (v / base["perplexity"] - 1) for v in measures["ΔPPL"]])]):
    ax.scatter(measures["KL"], values)
    for m, x, y in zip(quantized, measures["KL"], values):
        ax.annotate(m, (x, y), fontsize=7)
    ax.set(xscale="log", xlabel="KL(float || method), log scale", ylabel=label)
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
The right yardstick for two models' task scores is a *paired* test: both answer the same
questions, so only the questions on which they disagree carry information. An example built for
this (not measured): A answers 58 of 100 questions right, B 54; B gets 3 right that A missed and
misses 7 that A got.
"""),
    ("code", r"""
a = [1] * 51 + [1] * 7 + [0] * 3 + [0] * 39       # A: 58 right
b = [1] * 51 + [0] * 7 + [1] * 3 + [0] * 39       # B: 54 right, the same 51 plus 3 others
test = tasks.paired_test(a, b)
se = math.sqrt(0.56 * 0.44 / 100)
print(f"A {sum(a)}/100, B {sum(b)}/100; discordant: A only {test['a_only']}, B only {test['b_only']}; "
      f"McNemar exact p = {test['p_value']:.2f}  (one score's standard error: ±{se:.3f})")
"""),
    ("md", r"""
What the whole-split run shows (see the printed tables and the correlations above; ties are
given the mean of their ranks):

* **KL is the sharpest of the measures.** Perplexity moves in the second or third significant
  digit between the 4-bit methods; their KL differs by factors (GPTQ's is about a third of RTN
  g128's, with the same bytes), and the 8-bit methods sit 5 to 40 times lower than the 4-bit
  ones. Perplexity and KL agree only loosely on the order (their rank correlation, printed
  above, is about 0.6 on the whole split), while KL, top-1 and greedy match agree closely
  (0.9 and above). Perplexity only looks at the probability of the one right token, so changes
  spread over the other tokens escape it; and here KL and top-1 are computed on the first 32
  windows while perplexity uses all 228, so the two columns do not even score the same tokens.
  Differences of a few hundredths of a point of perplexity (AWQ 29.31 against RTN g128 29.29,
  NF4 against RTN, the 8-bit rows against each other) are as small as the variation between
  test windows; this record predates the per-window scores that would put a paired interval on
  them (a new recording stores them: the closing note's command), so do not rank methods on them.
* **Task accuracy does not rank close methods.** The float model's next-line accuracy is 0.32 on
  100 questions, about 1.5 standard errors above the 25 % chance rate: a task the float model
  barely solves cannot show a quantized model losing it, and next-line accuracy moves by at most
  two questions across every method. Cloze (0.58) is clear of chance, but its standard error
  (about ±5 points on 100 questions, printed above) is larger than the spread of the methods.
  And the standard error of one score is the wrong yardstick anyway: both models answer the
  *same* questions, so what decides is on how many questions they disagree (a paired test,
  `tasks.paired_test`, McNemar's exact test; this recorded run predates the per-question answers
  it needs). A published "no accuracy loss on task X" can hide a real change, and a one-point
  "win" of one 4-bit method over another on a small task is noise.
* **Perplexity can mislead where the model was trained.** The QAT row is a model fine-tuned
  for 100 steps on the train split while it learned the rounding (20 steps in the quick run): on
  the whole split its perplexity is *below* the float model's, yet its KL and top-1 agreement
  are the worst of the table and its greedy outputs part from the float model's after about
  3 tokens. Perplexity measures how well a model fits the text; KL measures how faithfully it
  reproduces the model you quantized. After QAT (or any fine-tuning) the first can improve while
  the second says you now ship a different model: evaluate it on your task as a new model.
* **Greedy match is the most user-visible, and the noisiest**: one changed token changes
  everything after it, and a handful of prompts decides it (in the quick run's 4 prompts Q2_K
  even beats RTN g128). On the whole split only the 8-bit methods keep the float model's greedy
  output for about 30 of 32 tokens; the 4-bit ones diverge after 10 to 20.

## 5. Memory of real models at real contexts

The weights are only part of the memory. At inference every layer keeps the keys and values of
every position it has seen, the **KV cache**: `2 · layers · kv_heads · head_dim · context ·
batch · bytes per value`. Grouped-query attention (GQA) stores `kv_heads` < `heads`: Llama-3.1-8B
has 32 query heads but caches only 8.

**Exercise 09.1.** Write the fp16 KV-cache size for a Hugging Face config (a dict).
"""),
    ("code", r"""
def kv_cache_bytes(config, context, batch):
    return ...  # your code: bytes of an fp16 KV cache


ex09.kv_cache_bytes.check(kv_cache_bytes);
"""),
    ("code", r"""
print(inspect.getsource(cost.kv_cache_bytes))
"""),
    ("md", r"""
The configs of five real models ship in `data/configs/` (written from their published
`config.json`; the README there gives the sources). Weights in fp16 and in Q4_K_M against the KV
cache (fp16, one sequence) at 4k, 32k and 128k tokens, in GB:
"""),
    ("code", r"""
print(f"{'model':14s} {'params':>7s} {'fp16':>7s} {'Q4_K_M':>7s} {'KV 4k':>7s} {'KV 32k':>7s} "
      f"{'KV 128k':>8s}  heads/kv  max context")
for name in cost.shipped_configs():
    shape = cost.model_shape(name)
    kv = [f"{cost.kv_cache_bytes(name, n) / 1e9:.2f}" if n <= (shape.max_context or n) else "—"
          for n in (4096, 32768, 131072)]     # "—": past the model's maximum context
    window = f", sliding window {shape.sliding_window}" if shape.sliding_window else ""
    print(f"{name:14s} {shape.parameters / 1e9:6.2f}B {cost.weight_bytes(name, 'fp16') / 1e9:7.1f} "
          f"{cost.weight_bytes(name, 'Q4_K_M') / 1e9:7.2f} {kv[0]:>7s} {kv[1]:>7s} {kv[2]:>8s}  "
          f"{shape.heads:>3d}/{shape.kv_heads:<3d}   {shape.max_context:,}{window}")

contexts = [2**k for k in range(10, 18)]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for name, color in (("Llama-2-7B", "C0"), ("Llama-3.1-8B", "C1")):
    upto = [n for n in contexts if n <= cost.model_shape(name).max_context]   # its own maximum
    kv = [cost.kv_cache_bytes(name, n) / 1e9 for n in upto]
    ax.plot(upto, kv, color=color, marker="o", label=f"{name}: KV cache (fp16), up to its max context")
    ax.axhline(cost.weight_bytes(name, "Q4_K_M") / 1e9, color=color, ls="--", lw=1,
               label=f"{name}: Q4_K_M weights")
ax.set(xscale="log", yscale="log", xlabel="context (tokens, one sequence)", ylabel="GB")
ax.set_xticks(contexts[::2], [f"{n // 1024}k" for n in contexts[::2]])
ax.minorticks_off()
ax.legend(fontsize=7)
plt.show()
"""),
    ("md", r"""
"—" marks contexts past a model's `max_position_embeddings`: the model was not trained for
them, so their cache size answers no real question. Mistral-7B (v0.1) attends only to the last
4,096 tokens (its `sliding_window`), so a rolling-buffer cache (Mistral's reference code, vLLM)
stops growing at 4,096 positions; `cost.kv_cache_bytes` models that, and
`sliding_window=False` gives the cache of a runtime that keeps every position.

Count tokens *in the cache* (context × batch). Llama-2-7B caches all 32 of its 32 heads (no
GQA), 0.5 MB per token: its cache passes its Q4_K_M weights at about 7.8k cached tokens, more
than one sequence can hold (its maximum is 4k), i.e. at two full 4k sequences. Llama-3.1-8B's
GQA cache is 4 times smaller per token and passes its weights at about 37k tokens, within one
sequence of its 128k. Past that point quantizing the weights further buys little; the cache is
the problem (quantize it: `kv_cache="int8"` or `"int4"` are llama.cpp's Q8_0 / Q4_0 caches,
whose quality cost notebook 11 measures; or use fewer, shorter sequences).

**Is the calculator right?** Two checks. First, against GGUF files that llama.cpp made from
these models and whose sizes their repositories publish (`data/configs/published_gguf_sizes.csv`
lists them with the page each comes from): the mix rules of `qcourse.gguf.mixes` give the bytes
of every tensor. The file's metadata (mostly the tokenizer) is not counted: a few MB, nothing
next to a 7B model's gigabytes, but about 2 % (1.8 MB) of SmolLM2-135M's 98 MB file. Half of the published sizes are rounded to 10 MB
(±0.1 %), so differences below that mean nothing.
"""),
    ("code", r"""
worst = {}   # largest |difference| of the 7B-70B models, and of SmolLM2-135M's small file
print(f"{'model':14s} {'type':7s} {'published GB':>12s} {'computed GB':>11s} {'diff':>7s}")
for row in cost.published_gguf_sizes():
    computed = cost.weight_bytes(row["model"], row["ftype"])
    diff = computed / row["bytes"] - 1
    group = "SmolLM2-135M" if row["model"] == "SmolLM2-135M" else "7B-70B models"
    worst[group] = max(worst.get(group, 0.0), abs(diff))
    print(f"{row['model']:14s} {row['ftype']:7s} {row['bytes'] / 1e9:12.3f} {computed / 1e9:11.3f} {diff:+7.2%}")
print("largest difference: " + ", ".join(f"{g} {w:.2%}" for g, w in worst.items()))
"""),
    ("md", r"""
Second, against memory measured here: the recorded run loads each GGUF file of qcourse-tiny in a
fresh llama.cpp process, runs one full 512-token window and decodes, and records the peak growth
of resident memory. The calculator's weights + KV cache (fp16, 512 positions) + activation
allowance leave a remainder: llama.cpp's own overhead for this model.
"""),
    ("code", r"""
tiny = json.loads(pathlib.Path("../data/qcourse-tiny/config.json").read_text())
print(f"{'format':8s} {'measured MB':>11s} {'predicted MB':>12s} {'overhead MB':>11s}")
for m, r in rows.items():
    if not m.startswith("gguf-"):
        continue
    parts = cost.memory(tiny, weights=m.removeprefix("gguf-"), kv_cache="fp16", context=512)
    print(f"{m[5:]:8s} {r['peak_memory_bytes'] / 1e6:11.1f} {parts['total'] / 1e6:12.1f} "
          f"{(r['peak_memory_bytes'] - parts['total']) / 1e6:11.1f}")
"""),
    ("md", r"""
The overhead is about the same for every format (a fixed cost of llama.cpp's context for this
model: its graph, vocabulary and thread buffers), so the calculator tracks how memory changes with
the format; pass such a measured overhead as `runtime=` for your own runtime and machine. For a
7B model the same few tens of MB are noise; a GPU runtime adds its CUDA context, which you
measure once on your card.

**Exercise 09.2.** Llama-3.1-70B, one sequence of 8,192 tokens, fp16 KV cache, on a 24 GB card
(24 GiB). Which formats fit? Predict first, then use `cost.memory` or `cost.fits`.
"""),
    ("code", r"""
fits_24gb = ...  # your answer: a list of format names from ex09.CANDIDATES (empty if none)
ex09.formats_that_fit.check(fits_24gb);
"""),
    ("code", r"""
print(f"{'format':10s} {'weights':>8s} {'KV':>6s} {'act.':>6s} {'total GB':>9s}  24 GiB  2 x 24 GiB")
for fmt in ex09.CANDIDATES:
    m = cost.memory("Llama-3.1-70B", weights=fmt, kv_cache="fp16", context=8192)
    print(f"{fmt:10s} {m['weights'] / 1e9:8.1f} {m['kv_cache'] / 1e9:6.2f} {m['activations'] / 1e9:6.2f} "
          f"{m['total'] / 1e9:9.1f}  {'yes' if m['total'] <= ex09.CARD_BYTES else 'no':>6s}  "
          f"{'yes' if m['total'] <= 2 * ex09.CARD_BYTES else 'no':>10s}")
"""),
    ("md", r"""
None: even Q2_K's weights (26.4 GB, the published file is 26.375 GB) exceed a 24 GiB card
(25.8 GB). Two such cards (48 GiB) hold every format of the list from 4 bits down, cache
included. No shorter context changes that: the
weights alone do not fit. A claim that a "70B runs on one 24 GB card" needs a 2-bit type
smaller than the course's (llama.cpp's IQ2 family, not modelled here), with the cache then
limiting the context to what the weights leave free (`cost.max_context`), or layers offloaded to
the CPU. (`nf4-dq` in the list is QLoRA's NF4 with double quantization: its absmax scales are
themselves stored in 8 bits.)

## 6. Money

A machine rented by the hour that produces `tokens_per_second` tokens (all its requests
together) costs, per million tokens,

    USD / 1M tokens = usd_per_hour / (tokens_per_second · 3600) · 10^6

**Exercise 09.3.** Write it.
"""),
    ("code", r"""
def cost_per_million_tokens(usd_per_hour, tokens_per_second):
    return ...  # your code


ex09.cost_per_million_tokens.check(cost_per_million_tokens);
"""),
    ("code", r"""
print(inspect.getsource(cost.cost_per_million_tokens))
"""),
    ("md", r"""
Every input below is a `cost.Quote`: a value with its unit, its source and the date it was seen;
the package has no price or speed built in. Prices change monthly: replace them with today's.
"""),
    ("code", r"""
Q = cost.Quote
PRICES = "https://techbytes.app/posts/serverless-gpu-pricing-matrix-modal-replicate-lambda-2026/"
SPECS = hardware.GPUS   # memory, bandwidth and FP16 peak of each card, quoted from NVIDIA's sheets
GPUS = {   # Modal's A100 80GB is taken to be the SXM card (2,039 GB/s; the PCIe one has 1,935)
    "H100 SXM 80GB (Lambda)": cost.RentedGPU.from_spec(SPECS["H100"], Q(3.78, "USD/hour", PRICES, "2026-05-07")),
    "A100 80GB (Modal)": cost.RentedGPU.from_spec(SPECS["A100-SXM4-80GB"], Q(2.4984, "USD/hour", PRICES, "2026-05-07")),
    "L40S 48GB (Modal)": cost.RentedGPU.from_spec(SPECS["L40S"], Q(1.9512, "USD/hour", PRICES, "2026-05-07")),
}
for name, gpu in GPUS.items():
    print(f"{name:24s} {gpu.bandwidth.value / 1e9:6.0f} GB/s, {gpu.fp16_flops.value / 1e12:4.0f} TFLOPS "
          f"dense FP16, {gpu.memory_bytes / 2**30:.0f} GiB, ${gpu.price.value}/h")
# A measured throughput to calibrate the bandwidth bound: llama.cpp on an RTX 4090 (1,008 GB/s),
# Llama-7B, one sequence (tg128), from ggml-org/llama.cpp pull request 4766 (2024-01-10)
RTX4090 = Q(SPECS["RTX 4090"].bandwidth_gbs * 1e9, "bytes/s", SPECS["RTX 4090"].source,
            hardware.SPEC_SHEETS_READ)
MEASURED = {"F16": Q(61.03, "tokens/s", "https://github.com/ggml-org/llama.cpp/pull/4766", "2024-01-10"),
            "Q8_0": Q(98.13, "tokens/s", "https://github.com/ggml-org/llama.cpp/pull/4766", "2024-01-10")}
for ftype, speed in MEASURED.items():
    bound = cost.decode_tokens_per_second_bound(cost.weight_bytes("Llama-2-7B", ftype), RTX4090)
    print(f"RTX 4090, Llama-7B {ftype}: measured {speed.value:.1f} tokens/s, bandwidth bound "
          f"{bound:.1f}: {speed.value / bound:.0%} of it")
EFFICIENCY = 0.70   # the lower of the two measured fractions of the bound, rounded down
"""),
    ("md", r"""
Decoding one sequence reads every weight once per token, so `bandwidth / bytes` bounds its speed
(notebook 07's roofline); llama.cpp reached 70–82 % of that bound in the cited measurement. The
table below uses 70 % of the bound for one sequence. Serving many sequences at once (batching)
multiplies the tokens per second of the same card, so these costs are the *worst* case of a
card serving one user at a time:
"""),
    ("code", r"""
print(f"{'card':24s} {'format':8s} {'tokens/s':>8s} {'USD per 1M tokens':>18s}")
for gpu_name, gpu in GPUS.items():
    for fmt in ("fp16", "Q8_0", "Q4_K_M"):
        p = cost.plan("Llama-3.1-8B", gpu, weights=fmt, context=4096, tokens_per_month=1e8,
                      efficiency=EFFICIENCY, api_usd_per_million=1.0)
        print(f"{gpu_name:24s} {fmt:8s} {p['tokens_per_second']:8.0f} {p['usd_per_million']:18.2f}")
"""),
    ("md", r"""
**Tables that contradict themselves.** Figures like the ones below circulate in blog posts and
tutorials; each can be checked with one line:

* "Llama-2-7B fp16 perplexity on WikiText-2: 10.63". The AWQ paper (Lin et al., 2023, Table 4)
  reports 5.47 at 2,048 tokens of context, as do the GPTQ-family papers; 10.63 is not what that
  standard protocol (2,048-token windows, token-level) gives. Other windows, strides or a
  word-level perplexity give other numbers: a perplexity without its protocol cannot be
  compared (this course's own float model has 41.18 on the quick run's 16 windows and 29.20
  on the whole split).
* "a 7B Q4_K_M file is 1.8 GB": 1.8 GB for 6.74 B weights is 2.1 bits per weight, below the
  4 bits the name promises; the published file is 4.08 GB.
* "Llama-3.3-8B" in a table of open-weights models: the open-weights Llama 3.3 release
  (December 2024) is 70B only; an 8B appears only through Meta's own API. Whatever a row names,
  the calculator only computes models whose config it has, and refuses the others.
* A cost row gives a price, a speed and a cost per million tokens: the third follows from the
  first two, so a row can be checked against itself.
"""),
    ("code", r"""
print(f"1.8 GB for Llama-2-7B = {8 * 1.8e9 / cost.model_shape('Llama-2-7B').parameters:.2f} bits per weight; "
      f"Q4_K_M computed: {cost.weight_bytes('Llama-2-7B', 'Q4_K_M') / 1e9:.2f} GB")
try:
    cost.load_config("Llama-3.3-8B")
except FileNotFoundError as err:
    print("Llama-3.3-8B:", err)


def check_row(usd_per_hour, tokens_per_second, claimed_usd_per_million):
    # the cost a row's own price and speed imply, against what it claims
    implied = cost.cost_per_million_tokens(usd_per_hour, tokens_per_second)
    verdict = "consistent" if math.isclose(implied, claimed_usd_per_million, rel_tol=0.05) else "contradicts itself"
    return f"${usd_per_hour}/h at {tokens_per_second} tok/s -> ${implied:.2f} per 1M, claimed ${claimed_usd_per_million}: {verdict}"


# a row built for this check (not a quote): the kind of row the seed's tables had
print(check_row(3.78, 100, 0.10))
print(check_row(3.78, 100, 10.50))
"""),
    ("md", r"""
**Self-hosting against an API.** An always-on card costs `usd_per_hour · 730` a month whatever
the load; an API costs per token. A card can only beat the API if its own cost per token, busy
all the time, is below the API's price; only then is there a break-even load (where one card's
rent equals the API bill), and it lies below what the card can produce. The API price here is a
quote for Llama-3.1-8B-Instruct; the quantization effort is an assumption you should replace:
8 hours of an H100 to quantize and evaluate a model.

Two ways to serve: one sequence at a time (the table above), or batched, as many sequences at
once as the memory left after the weights holds (each cache allocated for the whole context).
`cost.batched_throughput` bounds the batched speed: every decoding step reads the weights once
and every sequence's cache, and computes for every sequence. **This is a model, not a
measurement**: 70 % of the bandwidth, 50 % of the card's dense FP16 tensor peak, caches half
full on average.
"""),
    ("code", r"""
API = Q(0.22, "USD per 1M tokens (input and output)",
        "https://cloudprice.net/models/friendliai/meta-llama-3.1-8b-instruct (Amazon Bedrock row; page undated)",
        "2026-11-30")
EFFORT = 8 * GPUS["H100 SXM 80GB (Lambda)"].price.value        # USD: an assumption, see above
gpu = GPUS["L40S 48GB (Modal)"]
print(f"Llama-3.1-8B on one L40S; API ${API.value} per 1M tokens")
print(f"{'serving':10s} {'format':7s} {'context':>7s} {'batch':>5s} {'bound':>7s} {'tokens/s':>8s} "
      f"{'USD/1M':>7s} {'B tokens/month/card':>19s}  break-even load")
for batch in (1, "max"):
    for context in (1024, 4096):
        for fmt in ("fp16", "Q4_K_M"):
            p = cost.plan("Llama-3.1-8B", gpu, weights=fmt, context=context, tokens_per_month=1e9,
                          efficiency=EFFICIENCY, api_usd_per_million=API, batch=batch)
            even = p["break_even_tokens_per_month"]
            print(f"{'one' if batch == 1 else 'batched':10s} {fmt:7s} {context:7d} {p['batch']:5d} "
                  f"{p['bound']:>7s} {p['tokens_per_second']:8.0f} {p['usd_per_million']:7.3f} "
                  f"{p['capacity_tokens_per_month'] / 1e9:19.2f}  "
                  + (f"{even / 1e9:.1f} B tokens/month" if even else "none: the API is cheaper at every load"))
print()
for load in (1e7, 1e8, 1e9, 1e10):
    p = cost.plan("Llama-3.1-8B", gpu, weights="Q4_K_M", context=1024, tokens_per_month=load,
                  efficiency=EFFICIENCY, api_usd_per_million=API, batch="max")
    print(f"{load:8.0e} tokens/month, batched Q4_K_M at 1k: self-host ${p['self_host_usd']:8,.0f} "
          f"({p['replicas']} card) vs API ${p['api_usd']:9,.0f} -> {p['cheaper']}")
for batch in (1, "max"):
    p = cost.plan("Llama-3.1-8B", gpu, weights="Q4_K_M", context=4096, tokens_per_month=1e9,
                  efficiency=EFFICIENCY, api_usd_per_million=API, one_time_usd=EFFORT, batch=batch)
    print(f"quantizing (${EFFORT:.0f}) pays back against fp16, {'one sequence' if batch == 1 else 'batched'} "
          f"at 4k, after {p['break_even_tokens'] / 1e6:.0f} M tokens")
"""),
    ("md", r"""
One sequence at a time, the card never beats this API: its cost per token is 20 to 70 times the
API's price at every load, so there is no break-even. Batched, the card makes 16 to 120 times
more tokens per second (the bound), and its cost per token drops below the API's only at short contexts (1k
tokens); at 4k the caches limit the batch, and the card stays above the API's price. There the
weights' format matters less than the cache (Q4_K_M against fp16: well under the 3.3× of their
weights), which is section 5's lesson again: quantize the cache. And even where a batched card
wins, it wins only once the load pays its rent: below the break-even load it costs its rent
regardless. That is the honest summary of most "self-host and save" tables: they assume a full,
batched card at short contexts.

**The cost panel.** In JupyterLab, pick a model, a format, a card, one sequence or batched, the
context and the monthly load; the panel prints the memory fit, the speed bound, the monthly cost
against the API and the break-even of quantizing. The context slider stops at the model's
maximum context. (On GitHub the widget does not render: the figure below draws the panel's
starting settings, Llama-3.1-8B on an L40S at 4k tokens, over a range of loads, for both ways
of serving.)
"""),
    ("code", r"""
panel = cost.panel(GPUS, efficiency=EFFICIENCY, api_usd_per_million=API, one_time_usd=EFFORT)
panel
"""),
    ("code", r"""
loads = [10 ** (k / 4) for k in range(24, 45)]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(loads, [n / 1e6 * API.value for n in loads], label="API (Llama-3.1-8B, quoted price)")
for fmt, style in (("fp16", "--"), ("Q4_K_M", "-")):
    for batch, color in ((1, "C1"), ("max", "C2")):
        costs = [cost.plan("Llama-3.1-8B", gpu, weights=fmt, context=4096, tokens_per_month=n,
                           efficiency=EFFICIENCY, api_usd_per_million=API,
                           batch=batch)["self_host_usd"] for n in loads]
        ax.plot(loads, costs, style, color=color, label=f"self-host on L40S, {fmt}, "
                + ("one sequence at a time" if batch == 1 else "batched"))
ax.set(xscale="log", yscale="log", xlabel="tokens per month", ylabel="USD per month")
ax.legend(fontsize=7)
plt.show()
"""),
    ("md", r"""
## 7. Hardware: which kernels exist for which formats

A format saves memory everywhere, but it is fast only where a kernel computes with it. Rebuilt
from the projects' own documentation (dates are when the page was published or seen):

| format | NVIDIA Ampere (A100, RTX 30) | Ada (L40S, RTX 40) | Hopper (H100/H200) | Blackwell (B200, RTX 50) | x86 CPU | Apple / ARM |
|---|---|---|---|---|---|---|
| int4 weights, fp16 act. (GPTQ, AWQ) | Marlin [1][2] | Marlin [1][2] | Marlin [2]; Machete [3] | Marlin (fallback) [6] | vLLM CPU [2]; llama.cpp after conversion [5] | llama.cpp (Metal, NEON) [5] |
| FP8 W8A8 | weight-only, FP8 Marlin [4] | native [4] | native [4] | native [4] | no [2] | n/l |
| INT8 W8A8 | yes [2] | yes [2] | yes [2] | n/l | vLLM CPU [2] | n/l |
| NVFP4 (W4A4) | n/l | n/l | as W4A16 through Marlin (no FP4 tensor cores) [6] | native FP4 tensor cores [6][7] | n/l | n/l |
| GGUF K-quants | llama.cpp CUDA [5] | llama.cpp CUDA [5] | llama.cpp CUDA [5] | llama.cpp CUDA [5] | AVX, AVX2, AVX-512, AMX [5] | Metal, NEON, Accelerate [5] |
| bitsandbytes NF4 / int8 | yes [2] | yes [2] | yes [2] | n/l | bitsandbytes' CPU backend (measured here) | n/l |

"n/l": not listed by the cited sources (which does not prove it is missing).

[1] IST-DASLab/marlin README (FP16×INT4 kernel, Ampere and newer). [2] vLLM documentation,
"Supported Hardware" for quantization (docs.vllm.ai, v0.9–v0.14): Marlin on Ampere/Ada/Hopper,
FP8 W8A8 on Ada/Hopper, INT8 W8A8 Turing–Hopper and x86 CPU, AWQ/GPTQ on x86 CPU.
[3] Machete, a mixed-input (w4a16) GEMM for Hopper built on CUTLASS with TMA and WGMMA (Neural
Magic; MIT Scale ML talk by L. Wilkinson, 2024-12-04). [4] vLLM docs, FP8 W8A8: "FP8 computation
is supported on NVIDIA GPUs with compute capability >= 8.9 (Ada Lovelace, Hopper, Blackwell).
FP8 models will run on compute capability >= 7.5 (Turing) as weight-only W8A16, utilizing FP8
Marlin." [5] llama.cpp README: "AVX, AVX2, AVX512 and AMX support for x86", "Apple silicon is a
first-class citizen — optimized via ARM NEON, Accelerate and Metal", custom CUDA kernels, Vulkan,
SYCL. [6] Hugging Face discussion on NVFP4 checkpoints (canada-quant/GLM-5.2-W4A16-MTP): on
Hopper, vLLM serves NVFP4 through the Marlin W4A16 path; native FP4 tensor cores are Blackwell's.
[7] NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision inference" (2025-06):
FP4/NVFP4 on fifth-generation Blackwell Tensor Cores.

**Measured by this course.** On this CPU (recorded run above): llama.cpp decodes its GGUF files
many times faster than the course's teaching layers, which unpack every weight at every step
(section 3's `tok/s`). On the H100 the course was lent (notebook 07,
`benchmarks/results/kernels-nvidia-h100-*.json`), its own Triton and CUDA W4A16 kernels were
*slower* than the fp16 matmul at batch 1: a 4-bit format is fast only with a production kernel
such as Marlin.
"""),
    ("code", r"""
kernels = json.loads(sorted(RESULTS.glob("kernels-nvidia-h100-*.json"))[-1].read_text())
print(f"recorded on {kernels['device']}, {kernels['date'][:10]} (notebook 07's kernels, N = K = 4096)")
for r in kernels["rows"]:
    if r["N"] == 4096 and r["K"] == 4096 and r["M"] in (1, 16):
        print(f"  {r['kernel']:13s} batch {r['M']:2d}: {r['ms'] * 1000:6.1f} µs, "
              f"{r['speedup_vs_fp16']:.2f}x fp16, {r['pct_peak_bandwidth']:.0f} % of peak bandwidth")
"""),
    ("md", r"""
## 8. A decision guide that follows from the measurements

Besides this notebook's runs, notebooks 04 and 05 recorded GPTQ and AWQ against RTN on the whole
test split (same model, groups of 128):
"""),
    ("code", r"""
gptq_run = json.loads(sorted(RESULTS.glob("gptq-2*.json"))[-1].read_text())
awq_run = json.loads(sorted(RESULTS.glob("awq-*.json"))[-1].read_text())
print(f"GPTQ benchmark ({gptq_run['date'][:10]}): " + ", ".join(
    f"{k} {v:.2f}" for k, v in gptq_run["perplexity"].items()))
print(f"AWQ benchmark ({awq_run['date'][:10]}): " + ", ".join(
    f"{k} {v['ppl']:.2f}" for k, v in awq_run["rows"].items() if "AutoAWQ" not in k))
"""),
    ("md", r"""

* **Start from memory, not from bits.** Compute weights + KV cache + activations for your model,
  context and batch (section 5). If fp16 fits with room for the cache, the quality question does
  not arise; if the KV cache dominates, quantize the cache before going below 4 bits.
* **8 bits are close to free.** W8A8, LLM.int8() and Q8_0 have the smallest KL of every method
  measured here and keep the float model's greedy outputs longest (29 to 30 of 32 tokens in the
  whole-split run, all 16 in the quick one); pick by runtime (llama.cpp on
  CPU/Apple, FP8 or INT8 W8A8 on Ada/Hopper GPUs; FP8 is not measured here, see notebook 11).
* **4 bits: calibrate, or use llama.cpp's mixes.** With the same bytes, GPTQ cuts the KL of RTN
  g128 to about a third; AWQ helps little on this model (its whole-split perplexity is at RTN's
  level, within the noise, its KL about 20 % lower); NF4 (2 % more bytes) lies between them. Q4_K_M is the smallest of the 4-bit
  artifacts (llama.cpp also quantizes the embedding) and has lower KL than RTN. Compare them by
  KL, not by task accuracy, whose noise is larger than their differences.
* **Below 4 bits, measure first.** Q2_K has the largest perplexity of the measured formats and,
  among the post-training methods, the largest KL (about 5 times RTN g128's), even on this small
  model; only the QAT model, trained into a different model, moves further from the float
  model's distribution. Check on your own task before shipping.
* **Speed needs a kernel.** Fewer bytes only speed things up where a kernel computes with them:
  in the recorded runs llama.cpp decodes its 2-to-8-bit files far faster than PyTorch runs the
  float model, while the course's teaching layers, which unpack every weight at every step, are
  slower than float (section 3's `tok/s`; section 7).
* **Money follows load and context.** With the quoted prices, one sequence at a time never beats
  the API; a batched card beats it only at short contexts and once the load pays the card's rent
  (section 6's model).

## Summary

* `qcourse compare` measures every method of the course on one model, one data set and one
  machine: size, perplexity, KL, top-1, greedy match, task accuracy (lm-eval), quantization
  time, speed and peak memory in the serving runtime; results are cached per method.
* KL divergence from the float model is the sharpest quality signal; perplexity agrees with it
  only loosely on the ranking (about 0.6 on the whole split); task accuracy needs a task the
  float model solves and a paired test, and on small tasks cannot separate close methods.
* `qcourse.cost` computes memory (weights in every format of the course, GGUF mixes by
  llama.cpp's rules, KV cache with GQA and sliding windows, activations) within 0.4 % of
  published GGUF sizes of 7B to 70B models, the decode bound of one sequence or a batch, and cost from dated,
  sourced quotes.

## Closing note: the commands that reproduce the records

The whole-split table is section 3's second table. To record it again (the load averages of the
machine are printed at the top of this notebook; speed and memory are only a quiet machine's
figures):

```bash
nice -n 10 python benchmarks/compare.py                # quality, every method, whole test split
nice -n 10 python benchmarks/compare.py --timings      # speed and memory alone, on a quiet machine
nice -n 10 python benchmarks/compare.py --model smollm2-135m   # the real model (hours on a CPU)
```
"""),
    ("md", r"""
## Sources

* KL divergence and top-1 agreement as quality measures: llama.cpp's `perplexity
  --kl-divergence`.
* lm-evaluation-harness: github.com/EleutherAI/lm-evaluation-harness (v0.4.13 here).
* Llama-2-7B WikiText-2 perplexity 5.47: Lin et al., "AWQ", arXiv 2306.00978, Table 4.
* QLoRA double quantization (NF4 with 8-bit absmax): Dettmers et al., arXiv 2305.14314.
* Model configs: `data/configs/README.md`. GGUF sizes: `data/configs/published_gguf_sizes.csv`.
* GPU prices: techbytes.app serverless GPU pricing matrix (verified 2026-05-07 from the vendors'
  pages); memory, bandwidths and FP16 peaks: NVIDIA's datasheets and architecture whitepapers,
  quoted in `qcourse.hardware.GPUS` (each entry names its sheet); RTX 4090 throughput:
  ggml-org/llama.cpp#4766. API price: cloudprice.net listing (seen 2026-11-30).
* Hardware table: references [1]–[7] in section 7.
"""),
]

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, EXTRAS)
