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
itself, and runs the result.

**Learning goals.** After this notebook you can
1. read the layout of a GGUF file: header, key-value metadata, tensor table, aligned data;
2. decode a legacy block (Q8_0, Q4_0, ...) and a K-quant super-block by hand, and compute the
   bits per weight of each type from its layout;
3. explain the *mixes* (`Q4_K_M`, `Q3_K_M`, ...): why some tensors get more bits;
4. say what an importance matrix (imatrix) is and how it changes the rounding;
5. turn bits per weight into correct file sizes for 7B/8B models;
6. run a GGUF file in llama.cpp from Python (generation, perplexity, speed) and from its command
   line or Ollama.
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

from qcourse import data, evaluation, models
from qcourse.bench import record as bench_record
from qcourse.exercises import ex06
from qcourse.gguf import (BLOCK_SIZE, TYPE_SIZE, export, imatrix, kquants, legacy, llamacpp,
                          load_gguf, mixes, quantize, dequantize, read_gguf, reader, scale_search)
from qcourse.gguf.quants import bits_per_weight
from qcourse.gguf.writer import permute_qk

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

## 7. Sizes of real models

File size = Σ over tensors of (weights / block size) × bytes per block. Two traps when turning
bits per weight into gigabytes: a mix is not its base type (`Q4_K_M` puts `Q6_K` in the head and
in half the `attn_v`/`ffn_down`), and the embedding and head of models with large vocabularies
are big (Llama-3-8B: 2 × 128,256 × 4,096 = 1.05B of its 8.03B parameters). Parameter counts from
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

## 8. Running the file in llama.cpp from Python

`qcourse.gguf.llamacpp` wraps llama-cpp-python (the Python binding of llama.cpp) so that each
result compares one to one with `qcourse.evaluation`: the same greedy decoding, the same
perplexity windows, tokens per second measured the same way. The speeds below are measured as
`benchmarks/gguf.py` measures them (1 thread, 64 new tokens after `"def "`, best of 3), next to
the machine they ran on.
"""),
    ("code", r"""
llm = llamacpp.load(f32_path)
prompt = "def read_config(path):\n"
print("llama.cpp :", repr(llamacpp.generate(llm, prompt, 30)))
print("PyTorch   :", repr(evaluation.generate(model, tok, prompt, 30)))
ours = evaluation.score(model, tok, PROTOCOL)
print(f"perplexity ({ours.label}): PyTorch {ours.perplexity:.3f}, "
      f"llama.cpp {results['F32']['score'].perplexity:.3f}")
here = bench_record.machine()
print(f"live, on {here['cpu']} ({here['cores']} cores), load average "
      f"{bench_record.load_average()} (1, 5, 15 min) at the start:")
for ftype in ["F16", "Q8_0", "Q4_K_M"]:
    speed = llamacpp.tokens_per_second(llamacpp.load(workdir / f"tiny-{ftype}.gguf"), new_tokens=64,
                                       repeats=3)
    print(f"  {ftype:7s} {speed:5.0f} tokens/s in llama.cpp (1 thread)")
print(f"load average at the end: {bench_record.load_average()}")
"""),
    ("md", r"""
Speeds depend on the machine and on what else runs on it: the lines above name this machine's
CPU and its load average while the cell ran. `benchmarks/gguf.py` recorded one run with the same
measurement (read below), before the course's benchmarks recorded their machine: its CPU model
and load are unknown, only "a shared 2-core x86_64 CPU". The live speeds and the recorded ones
therefore do not compare, and the live ones are no benchmark: when the load average exceeds the
number of cores, llama.cpp's one thread waits its turn for a core, and the speeds fall (and vary
from run to run). Read the ratios within one run: in the recorded one, Q8_0 and Q4_K_M decode
1.8× and 2.1× as fast as F16.

Why would the quantized file be faster? Not because of memory bandwidth: the whole F16 file is
11.7 MB, which fits in the last-level cache of a server CPU (this machine's is printed below; a
virtual machine, as this one is, reports its host's cache, shared with the other guests), so
decoding need not stream it from DRAM, and the bytes saved are not what limits the speed. The differences come from the work per token inside llama.cpp's CPU kernels (how each
format's weights are unpacked and multiplied; we did not profile them). The roofline argument
of notebook 07 applies to files larger than the caches: for a 7B model, decoding reads the whole
13.5 GB F16 file once per token, against 4.08 GB for Q4_K_M: at most 3.3× more tokens per second
from the smaller file.
"""),
    ("code", r"""
record_path = sorted(bench_record.RESULTS_DIR.glob("gguf-*.json"))[-1]
record = bench_record.read(record_path)
machine = record["machine"]
print(f"{record_path.name}: recorded {record['date']} on {machine['cpu'] or 'an unrecorded CPU model'} "
      f"({machine['arch']}, {machine['cores']} cores; {record.get('note', '')}); load average: "
      f"{record['load_average']['start'] or 'not recorded'}")
for row in record["decode"]:
    print(f"  {row['ftype']:7s} {row['tokens_per_s']:7.0f} tokens/s   file {row['file_bytes'] / 1e6:5.1f} MB")
l3 = pathlib.Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
print(f"last-level cache of this machine: {l3.read_text().strip() if l3.exists() else 'unknown'}")
"""),
    ("md", r"""
## 9. How people run GGUF files

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
"""),
]

EXTRAS = "llamacpp"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
