"""Source of notebooks/00_welcome_and_tour.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 00 · Welcome: a tour of the course and of its model

Large language models are big: a 7-billion-parameter model stored in 16-bit floats needs 14 GB just
for its weights. **Quantization** stores those weights (and sometimes the activations) with fewer
bits (8, 4, even 2) while keeping the model's answers almost unchanged. This course shows how,
with every method written from scratch in the small package `qcourse` and checked against the
libraries people deploy with.

**Learning goals.** After this notebook you can
1. load the course's own language model, `qcourse-tiny`, and make it write text;
2. compute how much memory a model needs at FP32, FP16/BF16, INT8 and INT4, for this model and for a 7B model;
3. explain perplexity, the quality measure used in every notebook, and compute it from token log-likelihoods;
4. see, in one experiment, what rounding weights to fewer bits does to quality.
"""),
    ("code", r"""
# What this machine can run: the same report as `qcourse doctor` in a terminal
from qcourse import doctor

print(doctor.format_report(doctor.collect()))
"""),
    ("md", r"""
**Before you start.** The report above says where you are (Colab, Binder or your own machine),
which Python and PyTorch run the course and on which device, how much memory is free (each
notebook needs at most 1.5 GB, except notebook 10, whose real-model cells peak near 2 GB), and which optional libraries ("extras") are installed. Its
`notebooks` list says, for each notebook, whether it runs fully here or which sections will not
run, and which `pip install` adds what they need. The last line sums it up: `ready` means every
notebook runs, at most without the sections listed. On Colab the first cell of each notebook
installs that notebook's extras for you.
"""),
    ("md", r"""
## The course map

| # | notebook | the question it answers |
|---|---|---|
| 00 | welcome and tour | what are we compressing, and how do we measure the damage? |
| 01 | number formats and formulas | what are FP16, BF16, FP8, INT4, NF4; what are a scale and a zero point? |
| 02 | post-training quantization | how far does plain rounding go; what do outliers, LLM.int8() and SmoothQuant do? |
| 03 | quantization-aware training | can training make a model robust to rounding? |
| 04 | GPTQ | how can second-order information fix rounding errors? |
| 05 | AWQ | why do a few weight channels matter more, and how does scaling protect them? |
| 06 | GGUF and llama.cpp | how do K-quants pack weights, bit for bit as llama.cpp does? |
| 07 | kernels | when can a 4-bit matmul beat fp16, what does the kernel look like, and why are ours slower? |
| 08 | deployment | how do people serve quantized models? |
| 09 | benchmarks and cost | which method to choose, and what it saves |
| 10 | failure modes | what goes wrong and how to recover |
| 11 | frontier formats | what do FP8, MXFP4/NVFP4, KV-cache quantization, HQQ and rotations buy? |

Everything runs offline on a laptop CPU (the one GPU measurement, in notebook 07, is shown from
its recorded run when no GPU is present). Let's start with the model.
"""),
    ("code", r"""
import inspect

import matplotlib.pyplot as plt
import torch

from qcourse import data, evaluation as qeval, formats, models, paths

torch.manual_seed(0)
torch.set_num_threads(2)
"""),
    ("md", r"""
## 1. The model: `qcourse-tiny`

Real LLMs are too big for a free notebook, so the course trains its own: `qcourse-tiny` is a
miniature **Llama** (`LlamaForCausalLM`, the architecture of Llama 3 and SmolLM2), just narrow and
shallow. It was trained from scratch on a CPU (`qcourse train-tiny`, 35 minutes on two cores: its
model card, `data/qcourse-tiny/MODEL_CARD.md`, records how) on text that every Python installation
carries: the standard library's documentation and its source code. The methods of the course run
on it unchanged, because its layers have the names and kinds of shapes of the big models; what
does not transfer is how hard a model is to quantize: large LLMs develop a few huge activation
outliers that this one lacks (notebook 02 measures them and adds some on purpose).
"""),
    ("code", r"""
model, tokenizer = models.load()          # the default is "qcourse-tiny", loaded from data/
config = model.config
n_params = models.parameter_count(model)
print(f"{type(model).__name__}: {config.num_hidden_layers} layers, hidden size {config.hidden_size}, "
      f"{config.num_attention_heads} query heads / {config.num_key_value_heads} key-value heads, "
      f"MLP {config.intermediate_size}, vocabulary {config.vocab_size}")
print(f"{n_params:,} parameters")
"""),
    ("md", r"""
Where do the parameters live? Almost all of them sit in the **linear layers** of the transformer
blocks (the attention projections `q/k/v/o_proj` and the MLP's `gate/up/down_proj`) and in the
token embedding. The linear layers are what quantization methods compress.
"""),
    ("code", r"""
linears = models.linear_layers(model)
print(f"{len(linears)} linear layers; those of the first block:")
for name, layer in list(linears.items())[:7]:
    print(f"  {name:<36} weight {layer.out_features:>4} x {layer.in_features:<4} = {layer.weight.numel():>7,}")
in_linears = sum(l.weight.numel() for l in linears.values())
embedding = model.model.embed_tokens.weight.numel()
print(f"linear layers: {in_linears / n_params:.0%} of the parameters, token embedding "
      f"(shared with the output head): {embedding / n_params:.0%}, norms: the rest")
"""),
    ("md", r"""
### Let it write

Greedy decoding picks the most likely next token again and again. Give it the start of a docstring
or of a function and it continues in the style of the standard library it was trained on.
"""),
    ("code", r"""
for prompt in ["Return the number of", "def read_config(path):\n", "class Stack:\n    \"\"\""]:
    print("-" * 60)
    print(prompt + qeval.generate(model, tokenizer, prompt, max_new_tokens=40))
"""),
    ("md", r"""
A model of under 6 million parameters will not write correct programs, but it has learned the shape of Python
and of English documentation. That is all we need: a real language model whose quality we can measure
and watch degrade as we quantize it.

## 2. Memory math

How many bytes do the weights of a model take, if each of its $N$ weights is stored with $b$ bits
and nothing else is stored?

**Exercise 00.1.** Work it out and write it as a function, before the package shows its version.
Mind the counts that are not a whole number of bytes: a file holds whole bytes. Each exercise has
a `check()` that runs hidden cases and tells you *correct*, *wrong* (with the first failing case)
or *not attempted*. Replace the `...` and run the cell. Stuck? `ex00.weight_bytes.hint()` gives a
first hint, calling it again the next one; really stuck, `.solution()`.
"""),
    ("code", r"""
from qcourse.exercises import ex00

# n_params weights of `bits` bits each, no scales: how many bytes?
def weight_bytes(n_params, bits):
    return ...  # your code here

ex00.weight_bytes.check(weight_bytes);
"""),
    ("md", r"""
The answer: $N \cdot b$ bits, i.e. $\text{bytes} = \lceil N \cdot b / 8 \rceil$.
Quantized formats also store, for every **group** of $g$ weights, a scale (and often a zero
point). That adds $(\text{scale bits} + \text{zero bits}) / g$ bits per weight, and the layouts
differ:

* **GPTQ and AWQ checkpoints** (notebooks 04 and 05) store an fp16 scale and a zero point packed in
  4 bits like the codes: $4 + (16 + 4)/128 \approx 4.16$ bits per weight at $g = 128$;
* torchao's int4 **"tinygemm" layout** (`Int4WeightOnlyConfig(group_size=128,
  int4_packing_format="tile_packed_to_4d")`, the layout gpt-fast also uses) stores a **bfloat16
  scale and a bfloat16 zero** per group; the zero is a float offset added after scaling, not an
  integer code, $w = (q - 8) \cdot \text{scale} + \text{zero}$: $4 + (16 + 16)/128 = 4.25$ bits. torchao 0.18 accepts only bfloat16 weights for
  it and keeps scale and zero in the weight's dtype.

The package computes both with `qcourse.formats`:
"""),
    ("code", r"""
print(inspect.getsource(formats.bits_per_weight))
print(inspect.getsource(formats.memory_bytes))
"""),
    ("code", r"""
precisions = [("FP32", 32, None, 0), ("FP16 / BF16", 16, None, 0), ("INT8", 8, None, 0),
              ("INT4 g128, GPTQ/AWQ layout", 4, 128, 4),    # fp16 scale, 4-bit zero
              ("INT4 g128, bf16 scale+zero", 4, 128, 16)]   # torchao's tinygemm layout
seven_b = 7_000_000_000
print(f"{'precision':<30}{'bits/weight':>12}{'qcourse-tiny':>15}{'a 7B model':>14}")
sizes = {}
for name, bits, group, zero_bits in precisions:
    bpw = formats.bits_per_weight(bits, group, 16, zero_bits)
    tiny_size = formats.memory_bytes(n_params, bits, group, 16, zero_bits)
    big_size = formats.memory_bytes(seven_b, bits, group, 16, zero_bits)
    sizes[name] = big_size
    print(f"{name:<30}{bpw:>12.2f}{formats.human_bytes(tiny_size):>15}{formats.human_bytes(big_size):>14}")
"""),
    ("code", r"""
fig, ax = plt.subplots(figsize=(7, 2.9))
ax.barh(list(sizes), [s / 1e9 for s in sizes.values()],
        color=["#888", "#4c72b0", "#55a868", "#c44e52", "#dd8452"])
for y, s in enumerate(sizes.values()):
    ax.text(s / 1e9 + 0.3, y, formats.human_bytes(s), va="center")
ax.axvline(16, ls="--", c="k", lw=1)
ax.text(16.3, 4.3, "a 16 GB GPU", fontsize=8)
ax.set_xlabel("GB for the weights of a 7B model")
ax.invert_yaxis()
ax.set_xlim(0, 34)
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
Two things to notice:

* Going from FP16 to 4 bits shrinks the weights about 3.8×: a 7B model fits in 3.6 to 3.7 GB
  (depending on how the zero points are stored), on a laptop or a small GPU. That is the whole
  appeal.
* These are the **weights** only, in one uniform format. At run time you also need the KV cache
  and activations, and real 4-bit files keep some tensors at higher precision: llama.cpp's own
  `quantize` tool lists its popular `Q4_K_M` mix at "3.80G" for the 7B LLaMA (its 2023 option
  table) and "4.58G" for Llama-3-8B (today's `tools/quantize/quantize.cpp`), more than the
  3.6–3.7 GB above (notebook 06 builds such mixes and measures them).

Memory is not just about fitting: during token-by-token generation the processor must read every
weight once per token, so fewer bytes *can* mean faster generation, if the code that multiplies
with the packed weights streams them efficiently; notebook 07 measures when it does and when it
does not.

## 3. Measuring quality: perplexity

A language model assigns a probability $p(x_t \mid x_{<t})$ to each next token. On a text of $N$
predicted tokens, its **perplexity** is the geometric mean of the inverse probabilities,

$$\mathrm{PPL} = \Big(\prod_{t=1}^{N} \frac{1}{p(x_t \mid x_{<t})}\Big)^{1/N}.$$

It reads as "the model is, on average, as unsure as if it picked uniformly among PPL tokens": a
model guessing uniformly over our 4,096-token vocabulary gives every token $p = 1/4096$ and scores
4,096; lower is better.

Why perplexity for quantization? It is cheap and deterministic, it scores the probability the
model gives to every actual next token (not one sampled answer), and a change of a fraction of a
percent is measurable on a few thousand tokens, where a task score needs many questions to
separate two models (notebook 09 measures both). Every notebook compares methods by the
perplexity on the held-out **test split** of the corpus (modules whose names were never seen in
training), on windows named in section 3b.

**Exercise 00.2.** The code gets per-token *negative log-likelihoods*, $\ell_t = -\log p(x_t
\mid x_{<t})$, not probabilities (a product of thousands of probabilities underflows to 0 in
floating point). Derive the perplexity from the $\ell_t$ and write it before reading the package's
version below.
"""),
    ("code", r"""
# per-token negative log-likelihoods (a 1-D tensor, natural log) -> perplexity (a float)
def perplexity_from_nll(nll):
    return ...  # your code here

ex00.perplexity_from_nll.check(perplexity_from_nll);
"""),
    ("md", r"""
The logarithm turns the product into a sum: $\log \mathrm{PPL} = \frac{1}{N}\sum_t \ell_t$, the
average negative log-likelihood (the cross-entropy loss), so
$\mathrm{PPL} = \exp\big(\frac{1}{N}\sum_t \ell_t\big)$. The package's version sums the
$\ell_t$ over windows of 512 tokens and divides by the number of predicted tokens (511 per window:
a window's first token has no context):
"""),
    ("code", r"""
print(inspect.getsource(qeval.perplexity))
"""),
    ("md", r"""
Here we score the whole test split once, keeping each window's negative log-likelihood
(`qeval.score`, the same number as `qeval.perplexity(model, tokenizer, "test")`): the rest of the
notebook reuses these windows. The model card (`data/qcourse-tiny/MODEL_CARD.md`) recorded the
same measurement when the model was trained, and also on the documentation and the source code of
the test split alone; those two rows are read from the card, not recomputed, to keep the notebook
quick (together they cost about as much as the whole split; `qeval.perplexity(model, tokenizer,
"test", domain="prose")` re-measures one).
"""),
    ("code", r"""
whole = qeval.score(model, tokenizer, qeval.WHOLE)   # per window: mean NLL per predicted token
unigram = qeval.unigram_perplexity(tokenizer)
print(f"test split: {len(data.token_ids(tokenizer, 'test')):,} tokens")
print(f"qcourse-tiny                       {whole}")
print(f"unigram baseline (token counts)    {unigram:.2f}")
print(f"uniform guess over the vocabulary  {len(tokenizer)}")
card = (paths.TINY_DIR / "MODEL_CARD.md").read_text()
print("\nrecorded in the model card (whole test split, or its documentation / source code only):")
print("\n".join(line for line in card.splitlines() if line.startswith("| test")))
"""),
    ("md", r"""
The live figure equals the card's. The model is far better than counting token frequencies (the
unigram baseline): it uses context. Code is easier to predict than prose (the card's two domain
rows): it is repetitive (indentation, `self.`, keywords).

### 3b. Which windows? The course's evaluation protocols

Scoring the whole split took most of this notebook's run time, and a quantized copy costs as
much again. So the course names its **protocols** once, here, in `qcourse.evaluation.protocol`,
and every perplexity it prints says which one it used:

* **whole test split** (`qeval.WHOLE`): every window of 512 tokens of the test split, 228 for
  qcourse-tiny's tokenizer. The model card and most recorded benchmark runs in
  `benchmarks/results/` use it (each record says which windows it scored).
* **quick** (`qeval.QUICK`): the first 8 test windows, 4,088 predicted tokens. Live cells on
  qcourse-tiny use it; a notebook whose live cells need fewer or more windows says how many.
* **real-model quick** (`qeval.REAL_QUICK`): the first 4 test windows, for live cells on the real
  model SmolLM2-135M (notebook 10), whose forward pass costs ~25 times qcourse-tiny's.
* `qcourse compare --quick`, the benchmark command's quick run, scores the first 16 windows
  (`bench.TEST_WINDOWS_QUICK`); its output says so.

A perplexity depends on the windows it scores, a lot (section 4 shows how much), so two numbers
are only compared on the same windows. And two models scored on the same windows are compared
**pairwise**: per window, the difference of their mean negative log-likelihoods; the mean
difference gives the perplexity ratio, and a Student's t interval over the windows says how much
of it the choice of windows could explain (`qeval.paired_difference`). A difference whose 95 %
interval contains 0 is *inside the noise*, and the course does not rank it.
"""),
    ("code", r"""
from qcourse import bench

quick = qeval.Score(qeval.QUICK, whole.nll[:qeval.QUICK.windows])   # the same windows, no rescoring
n_windows = len(whole.nll)
for protocol in (qeval.WHOLE, qeval.QUICK, qeval.REAL_QUICK):
    print(f"{protocol.name:17} -> {protocol.label(n_windows)}")
print(f"{'compare --quick':17} -> first {bench.TEST_WINDOWS_QUICK} test windows of 512 tokens")
print(f"\nfloat qcourse-tiny: {whole}\n                    {quick}")
"""),
    ("md", r"""
## 4. A first taste of quantization

Let us do the crudest thing possible: round every weight of every linear layer to a
**symmetric** grid, `round(w / s) · s` with one scale per output row, `s = max|w| / (2^(b-1) - 1)`
(**round-to-nearest**, per-channel), and measure perplexity again. Notebook 01 derives the
formulas; here we just call them. Each rounded copy is scored with the quick protocol, and
compared pairwise with the float model on the same 8 windows (the float row reuses the first 8
windows of section 3's scoring).

Predict first: the checks record your answers, the next cell measures.
"""),
    ("code", r"""
two_bit_levels = ...      # how many different values can a weight take after symmetric 2-bit rounding?
ex00.two_bit_levels.check(two_bit_levels);
"""),
    ("code", r"""
ex00.two_bit_perplexity.show()
two_bit_perplexity = ...  # a letter
ex00.two_bit_perplexity.check(two_bit_perplexity);
"""),
    ("code", r"""
from qcourse import quant

def rounded_copy(bits):
    copy, _ = models.load()
    with torch.no_grad():
        for layer in models.linear_layers(copy).values():
            layer.weight.copy_(quant.fake_quantize(layer.weight, bits, symmetric=True, granularity="channel"))
    return copy

rounded = {bits: qeval.score(rounded_copy(bits), tokenizer, qeval.QUICK) for bits in (8, 4, 3, 2)}
print(f"perplexity on {quick.label}; change against fp32, 95 % paired interval over the windows")
print(f"  fp32: {quick.perplexity:8.2f}")
for bits, score in rounded.items():
    print(f"{bits:>2}-bit: {score.perplexity:8.2f}  {qeval.paired_difference(quick, score)}")
"""),
    ("md", r"""
Read the table from the top: at 8 bits the change is inside the noise (and a hundredth of a
percent); at 4 bits it is about 1 %; at 3 bits about 5 %; at 2 bits the model breaks (its
perplexity roughly triples). Why so abrupt? Symmetric 2-bit rounding with `s = max|w| / 1` leaves
each weight only **three** values, `-s, 0, +s`: every weight smaller than half of its row's
largest becomes exactly 0. Notebook 02 rounds to 2 bits *asymmetrically* (four levels, and a zero
point that follows the row's range) and loses far less. Where exactly each step lands also
depends on the model: this one is small and was trained briefly, and large LLMs develop a few
huge activation outliers that make them harder to quantize (Dettmers et al., 2022; notebook 02
measures outliers). The rest of the course is about pushing the breaking point down: better grids
(01), calibration and outlier handling (02), training with quantization (03), smarter rounding
(GPTQ, 04), protecting important channels (AWQ, 05), and the formats and kernels that run the
result (06, 07).

**Why is fp32 at 64.61 here and 29.20 in section 3?** Section 3 scored the whole test split (228
windows), this table its first 8, and a window's perplexity depends a lot on what it holds. The
plot below shows each window's: the quick windows are among the harder ones, and a long run of
windows starting at window 62 is almost perfectly predictable (perplexity below 4, as the cell
prints): the character-mapping tables of the codec modules in `encodings`, long and repetitive
(the cell prints the start of one). They pull the whole-split average down. Every row of a table
is scored on the same windows, so the *differences* between rows stay meaningful; the absolute
values depend on the windows, which is why every perplexity in the course names its protocol.
"""),
    ("code", r"""
window_ppl = torch.exp(whole.nll)
print(f"fp32 perplexity: {quick}; {whole}")
print(f"window perplexities: median {window_ppl.median():.1f}, the 8 quick windows' median "
      f"{window_ppl[:qeval.QUICK.windows].median():.1f}")
fig, ax = plt.subplots(figsize=(7, 2.4))
ax.plot(window_ppl.numpy(), lw=0.8)
ax.axvspan(0, qeval.QUICK.windows, color="C1", alpha=0.25, label="the quick protocol's 8 windows")
ax.set(yscale="log", xlabel="window of the test split", ylabel="perplexity")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
easy = (window_ppl < 4).nonzero().flatten()
print(f"{len(easy)} windows with perplexity below 4, from window {easy.min().item()} to "
      f"{easy.max().item()}; the start of window {easy[len(easy) // 2].item()}:")
test_windows = qeval.evaluation_windows(tokenizer, "test", 512)
print(tokenizer.decode(test_windows[easy[len(easy) // 2]][:60]))
"""),
    ("md", r"""
Stuck on an exercise above? Every question has progressive hints, e.g. `ex00.weight_bytes.hint()`
then `ex00.weight_bytes.hint(2)`, and `ex00.weight_bytes.solution()` (withheld in a graded
workshop).
"""),
    ("md", r"""
## Summary

* `qcourse-tiny` is a real (if small) Llama-architecture language model, trained by this project
  offline, with the layer names and kinds of shapes of the big ones.
* Weight memory is $\lceil N \cdot b / 8 \rceil$ bytes, plus the scale and zero of each group:
  4-bit in groups of 128 costs 4.16 bits per weight in the GPTQ/AWQ layout (fp16 scale, 4-bit
  zero) and 4.25 with a bfloat16 scale and a bfloat16 zero (torchao's tinygemm layout). A 7B
  model's weights: 28 GB in FP32, 14 GB in FP16, 3.6–3.7 GB at 4 bits (real 4-bit files keep some
  tensors wider).
* Perplexity, $\exp$ of the mean negative log-likelihood on held-out text, is our quality measure.
  Every perplexity names its windows: the **whole test split** (228 windows of 512 tokens:
  recorded runs, 29.20 for the float model) or the **quick** protocol (the first 8 windows: live
  cells, 64.61 for the float model, harder windows than average). Two models are compared on the
  same windows, pairwise, and a difference inside its 95 % interval is not ranked.
* Naive symmetric per-channel rounding of `qcourse-tiny` (quick protocol) costs nothing
  measurable at 8 bits, about 1 % at 4 bits, about 5 % at 3, and breaks at 2 bits, where a weight
  has only three values left. The next notebooks explain why and what to do about it.

**Next:** [01 · number formats and the quantization formulas](01_number_formats_and_formulas.ipynb).

**Sources.** Llama architecture: Touvron et al., *LLaMA* (2023). Perplexity as the standard
quantization metric: Frantar et al., *GPTQ* (2022), Dettmers et al., *LLM.int8()* (2022). Group-wise
4-bit storage cost: the GPTQ and AWQ checkpoint formats (an fp16 scale and a 4-bit packed zero per group
of 128; notebook 04 writes one) and torchao's int4 tinygemm layout (scale and zero in bfloat16 per
group: `Int4TilePackedTo4dTensor` in torchao 0.18, `pack_scales_and_zeros` in pytorch-labs/gpt-fast's
`quantize.py`). Q4_K_M sizes: the option table of llama.cpp's `quantize` tool
(`examples/quantize/quantize.cpp` in 2023, `tools/quantize/quantize.cpp` today). The pairwise
interval: Student's t over the windows (`qcourse/evaluation/protocol.py`).
"""),
]

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS)
