"""Memory: what a decoder-only transformer needs at inference, from its Hugging Face
``config.json``:

    weights      Σ over tensors of the bytes of the tensor in its format (:data:`WEIGHT_FORMATS`,
                 or a llama.cpp file type, whose mix of block types :mod:`qcourse.gguf.mixes`
                 decides tensor by tensor)
    kv_cache     2 · layers · kv_heads · head_dim · positions · batch · bytes per element
                 (:func:`qcourse.models.llama.kv_cache_values`: K and V for every layer and
                 cached position; grouped-query attention stores kv_heads < heads), where
                 positions = min(context, sliding_window) for a model whose attention only
                 looks back ``sliding_window`` tokens (Mistral-7B-v0.1: 4096) and whose
                 runtime keeps a rolling buffer of that many positions, else the context
    activations  an allowance for one prefill chunk of ``chunk`` tokens, in fp32:
                 batch · chunk · (vocab + 3·ffn + 4·hidden) · 4            (logits, MLP, residuals)
                 + batch · heads · chunk · context · 4                     (attention scores,
                                                                           0 with flash attention)
    runtime      what you pass: the runtime's own overhead (CUDA context, allocator slack)
    total        the sum
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from collections.abc import Mapping

from qcourse.gguf import mixes
from qcourse.gguf.quants import BLOCK_SIZE, TYPE_SIZE
from qcourse.models import llama
from qcourse.paths import DATA_DIR

from .quotes import positive

CONFIG_DIR = DATA_DIR / "configs"
REQUIRED_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "vocab_size")


# ---- the model's shape ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the calculators need from a config. ``kv_heads`` defaults to ``heads`` (no GQA),
    ``head_dim`` to ``hidden // heads``, ``tied`` to False; ``qkv_bias`` is True for Qwen2;
    ``sliding_window`` is the config's when its attention uses one (None otherwise)."""

    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    max_context: int | None
    qkv_bias: bool
    sliding_window: int | None = None

    @property
    def parameters(self) -> int:
        """Number of weights, each tensor counted once (a tied head is the embedding)."""
        return sum(math.prod(s) for s in gguf_shapes(self).values())


def load_config(config: Mapping | str | os.PathLike) -> dict:
    """A config as a dict: ``config`` itself, a ``config.json`` path, a folder holding one, or
    the name of a shipped config (``"Llama-2-7B"``, see :func:`shipped_configs`)."""
    if isinstance(config, Mapping):
        return dict(config)
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"config must be a dict, a path to config.json or a shipped config name, "
                        f"got {type(config).__name__}")
    path = pathlib.Path(config)
    if not path.exists() and (CONFIG_DIR / f"{config}.json").exists():
        path = CONFIG_DIR / f"{config}.json"
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config at {path}; shipped configs: {shipped_configs()}")
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_configs() -> list[str]:
    """Names of the real models' configs shipped in ``data/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def published_gguf_sizes() -> list[dict]:
    """``data/configs/published_gguf_sizes.csv``: GGUF files llama.cpp made from the shipped
    models, ``{"model", "ftype", "bytes", "source"}`` (their published size, GB = 10^9 bytes)."""
    import csv

    with open(CONFIG_DIR / "published_gguf_sizes.csv", newline="", encoding="utf-8") as f:
        return [{"model": r["model"], "ftype": r["ftype"], "bytes": round(float(r["gb"]) * 1e9),
                 "source": r["source"]} for r in csv.DictReader(f)]


def _positive_int(config: dict, key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config field {key!r} must be a positive integer, got {value!r}")
    return value


def model_shape(config) -> ModelShape:
    """The :class:`ModelShape` of a config (see :func:`load_config`); a config without the
    fields the calculators need raises ValueError naming them."""
    config = load_config(config)
    missing = [key for key in REQUIRED_FIELDS if key not in config]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}: the memory calculator needs "
                         f"{', '.join(REQUIRED_FIELDS)} (num_key_value_heads, head_dim, "
                         "tie_word_embeddings and max_position_embeddings are optional)")
    for key in REQUIRED_FIELDS + tuple(k for k in ("num_key_value_heads", "head_dim")
                                       if config.get(k)):
        _positive_int(config, key)
    heads, kv_heads = config["num_attention_heads"], llama.kv_heads(config)
    if heads % kv_heads:
        raise ValueError(f"num_attention_heads ({heads}) must be a multiple of "
                         f"num_key_value_heads ({kv_heads})")
    max_context = config.get("max_position_embeddings")
    window = config.get("sliding_window")
    if config.get("use_sliding_window") is False or not isinstance(window, int) or window < 1:
        window = None                      # Qwen2 lists a window it does not use
    return ModelShape(
        name=config.get("_name_or_path") or config.get("model_type", "model"),
        layers=config["num_hidden_layers"], hidden=config["hidden_size"],
        ffn=config["intermediate_size"], heads=heads, kv_heads=kv_heads,
        head_dim=llama.head_dim(config), vocab=config["vocab_size"],
        tied=bool(config.get("tie_word_embeddings", False)),
        max_context=max_context if isinstance(max_context, int) and max_context > 0 else None,
        qkv_bias=bool(config.get("attention_bias", False)) or config.get("model_type") == "qwen2",
        sliding_window=window)


def gguf_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Every tensor of the model by its GGUF name (:func:`qcourse.gguf.mixes.llama_shapes`),
    plus the q/k/v biases of models that have them."""
    shapes = mixes.llama_shapes(n_layers=shape.layers, hidden=shape.hidden, ffn=shape.ffn,
                                n_head=shape.heads, n_head_kv=shape.kv_heads, vocab=shape.vocab,
                                tied=shape.tied, head_dim=shape.head_dim)
    if shape.qkv_bias:
        q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        for i in range(shape.layers):
            shapes.update({f"blk.{i}.attn_q.bias": (q,), f"blk.{i}.attn_k.bias": (kv,),
                           f"blk.{i}.attn_v.bias": (kv,)})
    return shapes


# ---- weights --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WeightFormat:
    """A weight format: ``bits`` per weight for the codes, plus per group of ``group`` weights
    along a row (None: one per row) a scale of ``scale_bits`` and a zero point of ``zero_bits``,
    plus ``extra_bits`` per weight (NF4's second-level constants)."""

    name: str
    bits: float
    group: int | None = None
    scale_bits: int = 0
    zero_bits: int = 0
    extra_bits: float = 0.0
    note: str = ""

    def tensor_bytes(self, rows: int, cols: int) -> int:
        """Bytes of a ``[rows, cols]`` matrix: ``ceil(rows·cols·bits/8)`` for the codes plus
        ``rows · ceil(cols/group) · (scale_bits + zero_bits) / 8`` for the scales and zeros."""
        groups = 1 if self.group is None else math.ceil(cols / self.group)
        metadata = rows * groups * (self.scale_bits + self.zero_bits)
        return math.ceil((rows * cols * (self.bits + self.extra_bits) + metadata) / 8)

    def bits_per_weight(self, cols: int = 4096) -> float:
        """Average bits per weight of a row of ``cols`` weights."""
        return 8 * self.tensor_bytes(1, cols) / cols


WEIGHT_FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    WeightFormat("fp32", 32),
    WeightFormat("fp16", 16),
    WeightFormat("bf16", 16),
    WeightFormat("fp8", 8, None, 32, 0, note="FP8 E4M3 codes, one fp32 scale per output row"),
    WeightFormat("int8", 8, None, 32, 0,
                 note="int8 codes, one fp32 scale per output row (W8A8Linear, LLM.int8())"),
    WeightFormat("int4-g128", 4, 128, 16, 4,
                 note="4-bit codes, fp16 scale and packed 4-bit zero per 128 inputs "
                      "(QuantLinear: RTN, GPTQ, AWQ; the GPTQ/AWQ checkpoint layout)"),
    WeightFormat("nf4", 4, 64, 32, 0,
                 note="NF4 codes, one fp32 absmax per block of 64 (NF4Linear, bitsandbytes)"),
    WeightFormat("nf4-dq", 4, 64, 8, 0, extra_bits=32 / (64 * 256),
                 note="NF4 with double quantization: the absmax of each block of 64 stored in "
                      "8 bits, plus one fp32 constant per 256 blocks (QLoRA, Dettmers et al. 2023)"),
)}
FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def weight_formats() -> list[str]:
    """Every format name :func:`weight_bytes` knows: the formats of :data:`WEIGHT_FORMATS` and
    llama.cpp's file types (``"Q4_K_M"``, ...)."""
    return list(WEIGHT_FORMATS) + [f for f in mixes.FTYPES if f not in ("F32", "F16", "BF16")]


def _check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
    return value


def weight_bytes(config, weights: str = "fp16", *, embedding: str = "fp16",
                 norms: str = "fp16") -> int:
    """Bytes of the model's weights in format ``weights``.

    A llama.cpp file type (``"Q4_K_M"``) sizes every tensor by llama.cpp's own rules, the
    embedding and head included (the tensor data of the ``.gguf`` file; its header adds under
    1 %). Any other format applies to the linear layers of the decoder blocks; the token
    embedding and the output head stay in ``embedding`` and the norms and biases in ``norms``
    (``"fp16"``: what GPTQ, AWQ and bitsandbytes checkpoints keep unquantized).
    """
    shape = model_shape(config)
    shapes = gguf_shapes(shape)
    if weights in mixes.FTYPES:
        types = mixes.tensor_types(shapes, weights, n_layers=shape.layers, n_head=shape.heads,
                                   n_head_kv=shape.kv_heads)
        return mixes.file_size(shapes, types)
    fmt = WEIGHT_FORMATS[_check_choice(weights, weight_formats(), "weight format")]
    outer = WEIGHT_FORMATS[_check_choice(embedding, list(FLOAT_BYTES), "embedding dtype")]
    norm_bytes = FLOAT_BYTES[_check_choice(norms, list(FLOAT_BYTES), "norm dtype")]
    total = 0
    for name, dims in shapes.items():
        if len(dims) == 1:
            total += dims[0] * norm_bytes
        elif name.startswith("blk."):
            total += fmt.tensor_bytes(*dims)
        else:                                          # token_embd, output
            total += outer.tensor_bytes(*dims)
    return total


# ---- KV cache and activations ------------------------------------------------------------------

KV_DTYPES: dict[str, float] = {
    "fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0,
    # llama.cpp's quantized caches (--cache-type-k/-v): Q8_0 and Q4_0 blocks of 32 values
    "int8": TYPE_SIZE["Q8_0"] / BLOCK_SIZE["Q8_0"],           # 34 bytes per 32 = 8.5 bits
    "int4": TYPE_SIZE["Q4_0"] / BLOCK_SIZE["Q4_0"],           # 18 bytes per 32 = 4.5 bits
}


def _check_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_context(shape: ModelShape, context) -> int:
    context = _check_count(context, "context")
    if shape.max_context is not None and context > shape.max_context:
        warnings.warn(f"context {context:,} exceeds {shape.name}'s maximum of "
                      f"{shape.max_context:,} positions (max_position_embeddings); computing "
                      "anyway", stacklevel=3)
    return context


def cached_positions(config, context: int, sliding_window: bool = True) -> int:
    """Positions a KV cache holds per sequence after ``context`` tokens: ``context``, or at most
    the config's ``sliding_window`` when ``sliding_window`` is True and the model has one (its
    attention never looks further back, so a rolling-buffer cache, as in Mistral's reference
    code and vLLM, keeps only that many; a runtime that keeps every position: pass False)."""
    shape = model_shape(config)
    context = _check_context(shape, context)
    if sliding_window and shape.sliding_window is not None:
        return min(context, shape.sliding_window)
    return context


def kv_cache_bytes(config, context: int, batch: int = 1, dtype: str = "fp16", *,
                   sliding_window: bool = True) -> int:
    """Bytes of the KV cache for ``batch`` sequences of ``context`` tokens:
    ``2 · layers · kv_heads · head_dim · positions · batch · bytes per element``
    (:func:`qcourse.models.llama.kv_cache_values`; positions: :func:`cached_positions`, the
    context or a sliding window; ``dtype`` one of :data:`KV_DTYPES`; "int8"/"int4" are
    llama.cpp's Q8_0/Q4_0 caches, scales included)."""
    config = load_config(config)
    positions = cached_positions(config, context, sliding_window)
    batch = _check_count(batch, "batch")
    per_element = KV_DTYPES[_check_choice(dtype, list(KV_DTYPES), "KV-cache dtype")]
    return math.ceil(llama.kv_cache_values(config, positions, batch) * per_element)


def activation_bytes(config, context: int, batch: int = 1, *, chunk: int = 512,
                     flash_attention: bool = False) -> int:
    """The activation allowance of the module docstring: the largest buffers alive while one
    chunk of ``min(chunk, context)`` tokens is processed, in fp32 (llama.cpp's default chunk,
    ``n_ubatch``, is 512)."""
    shape = model_shape(config)
    context, batch = _check_context(shape, context), _check_count(batch, "batch")
    tokens = min(_check_count(chunk, "chunk"), context)
    per_token = shape.vocab + 3 * shape.ffn + 4 * shape.hidden
    scores = 0 if flash_attention else shape.heads * tokens * context
    return 4 * batch * (tokens * per_token + scores)


def memory(config, *, weights: str = "fp16", kv_cache: str = "fp16", context: int,
           batch: int = 1, embedding: str = "fp16", chunk: int = 512,
           flash_attention: bool = False, runtime: int = 0,
           sliding_window: bool = True) -> dict[str, int]:
    """Bytes needed to serve the model: ``{"weights", "kv_cache", "activations", "runtime",
    "total"}`` (see the module docstring). ``config``: a Hugging Face config dict, a path to its
    ``config.json``, or a shipped config name; a context beyond the model's maximum warns."""
    if isinstance(runtime, bool) or not isinstance(runtime, int) or runtime < 0:
        raise ValueError(f"runtime must be a number of bytes >= 0, got {runtime!r}")
    config = load_config(config)
    parts = {
        "weights": weight_bytes(config, weights, embedding=embedding),
        "kv_cache": kv_cache_bytes(config, context, batch, kv_cache,
                                   sliding_window=sliding_window),
        "activations": activation_bytes(config, context, batch, chunk=chunk,
                                        flash_attention=flash_attention),
        "runtime": runtime,
    }
    parts["total"] = sum(parts.values())
    return parts


def fits(config, device_bytes: int, **options) -> bool:
    """Whether :func:`memory` ``(config, **options)["total"]`` fits in ``device_bytes``."""
    return memory(config, **options)["total"] <= positive(device_bytes, "device_bytes")


def max_context(config, free_bytes: int, *, kv_cache: str = "fp16", batch: int = 1,
                chunk: int = 512, flash_attention: bool = False,
                sliding_window: bool = True) -> int:
    """The longest context (at most the model's ``max_position_embeddings``) whose KV cache and
    activations for ``batch`` sequences fit in ``free_bytes``: the memory a card has left after
    the weights and the runtime. Found by bisection (both grow with the context); 0 if not even
    one token fits."""
    shape = model_shape(config)
    free = positive(free_bytes, "free_bytes")

    def need(context: int) -> int:
        return kv_cache_bytes(config, context, batch, kv_cache, sliding_window=sliding_window) \
            + activation_bytes(config, context, batch, chunk=chunk,
                               flash_attention=flash_attention)

    low, high = 0, shape.max_context or 2**24          # need(low) fits, need(high + 1) does not
    if need(high) <= free:
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if need(mid) <= free else (low, mid)
    return low
