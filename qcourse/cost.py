"""Memory and money: what a model needs to run, and what its tokens cost.

**Memory** of a decoder-only transformer at inference, from its Hugging Face ``config.json``:

    weights      Σ over tensors of the bytes of the tensor in its format (:data:`WEIGHT_FORMATS`,
                 or a llama.cpp file type, whose mix of block types :mod:`qcourse.gguf.mixes`
                 decides tensor by tensor)
    kv_cache     2 · layers · kv_heads · head_dim · context · batch · bytes per element
                 (K and V for every layer and position; grouped-query attention stores
                 kv_heads < heads)
    activations  an allowance for one prefill chunk of ``chunk`` tokens, in fp32:
                 batch · chunk · (vocab + 3·ffn + 4·hidden) · 4            (logits, MLP, residuals)
                 + batch · heads · chunk · context · 4                     (attention scores,
                                                                           0 with flash attention)
    runtime      what you pass: the runtime's own overhead (CUDA context, allocator slack)
    total        the sum

**Money**, from inputs that each carry a value, a source and a date (:class:`Quote`), none built in:

    USD per 1M tokens  = usd_per_hour / (tokens_per_second · 3600) · 10^6
    cost per month     = usd_per_hour · 730 hours      (730 = 365 · 24 / 12)
    break-even tokens  = one-time cost / (USD per token before − USD per token after)
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import warnings
from collections.abc import Mapping

from qcourse.gguf import mixes
from qcourse.models import llama
from qcourse.gguf.quants import BLOCK_SIZE, TYPE_SIZE
from qcourse.paths import DATA_DIR

CONFIG_DIR = DATA_DIR / "configs"
REQUIRED_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "vocab_size")
HOURS_PER_MONTH = 365 * 24 / 12          # 730: a definition, not a measurement
MILLION = 1_000_000


# ---- the model's shape ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the calculators need from a config. ``kv_heads`` defaults to ``heads`` (no GQA),
    ``head_dim`` to ``hidden // heads``, ``tied`` to False; ``qkv_bias`` is True for Qwen2."""

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
    return ModelShape(
        name=config.get("_name_or_path") or config.get("model_type", "model"),
        layers=config["num_hidden_layers"], hidden=config["hidden_size"],
        ffn=config["intermediate_size"], heads=heads, kv_heads=kv_heads,
        head_dim=llama.head_dim(config), vocab=config["vocab_size"],
        tied=bool(config.get("tie_word_embeddings", False)),
        max_context=max_context if isinstance(max_context, int) and max_context > 0 else None,
        qkv_bias=bool(config.get("attention_bias", False)) or config.get("model_type") == "qwen2")


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


def kv_cache_bytes(config, context: int, batch: int = 1, dtype: str = "fp16") -> int:
    """Bytes of the KV cache for ``batch`` sequences of ``context`` tokens:
    ``2 · layers · kv_heads · head_dim · context · batch · bytes per element``
    (:func:`qcourse.models.llama.kv_cache_values`; ``dtype`` one of :data:`KV_DTYPES`;
    "int8"/"int4" are llama.cpp's Q8_0/Q4_0 caches, scales included)."""
    config = load_config(config)
    shape = model_shape(config)
    context, batch = _check_context(shape, context), _check_count(batch, "batch")
    per_element = KV_DTYPES[_check_choice(dtype, list(KV_DTYPES), "KV-cache dtype")]
    return math.ceil(llama.kv_cache_values(config, context, batch) * per_element)


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
           flash_attention: bool = False, runtime: int = 0) -> dict[str, int]:
    """Bytes needed to serve the model: ``{"weights", "kv_cache", "activations", "runtime",
    "total"}`` (see the module docstring). ``config``: a Hugging Face config dict, a path to its
    ``config.json``, or a shipped config name; a context beyond the model's maximum warns."""
    if isinstance(runtime, bool) or not isinstance(runtime, int) or runtime < 0:
        raise ValueError(f"runtime must be a number of bytes >= 0, got {runtime!r}")
    config = load_config(config)
    parts = {
        "weights": weight_bytes(config, weights, embedding=embedding),
        "kv_cache": kv_cache_bytes(config, context, batch, kv_cache),
        "activations": activation_bytes(config, context, batch, chunk=chunk,
                                        flash_attention=flash_attention),
        "runtime": runtime,
    }
    parts["total"] = sum(parts.values())
    return parts


def fits(config, device_bytes: int, **options) -> bool:
    """Whether :func:`memory` ``(config, **options)["total"]`` fits in ``device_bytes``."""
    return memory(config, **options)["total"] <= _positive(device_bytes, "device_bytes")


# ---- money ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Quote:
    """A number that comes from somewhere: ``value`` in ``unit``, with its ``source`` (a URL or a
    file of this repository) and the ``date`` it was seen or measured (ISO, ``YYYY-MM-DD``)."""

    value: float
    unit: str
    source: str
    date: str

    def __post_init__(self) -> None:
        _positive(self.value, f"the value of a quote in {self.unit}")
        if not self.source.strip():
            raise ValueError("a quote needs its source (a URL or a file)")
        try:
            datetime.date.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise ValueError(f"a quote needs its date as YYYY-MM-DD, got {self.date!r}") from None

    def __float__(self) -> float:
        return float(self.value)


def _positive(value, what: str) -> float:
    """``value`` (a number or a :class:`Quote`) as a float > 0, else a clear error."""
    if isinstance(value, Quote):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number, got {value!r}")
    return float(value)


def cost_per_million_tokens(usd_per_hour, tokens_per_second) -> float:
    """USD per million generated tokens of a machine rented at ``usd_per_hour`` that produces
    ``tokens_per_second`` (all its concurrent requests together), busy all the time:
    ``usd_per_hour / (tokens_per_second · 3600) · 10^6``."""
    price = _positive(usd_per_hour, "usd_per_hour")
    speed = _positive(tokens_per_second, "tokens_per_second")
    return price / (speed * 3600) * MILLION


def monthly_cost(usd_per_hour, hours: float = HOURS_PER_MONTH) -> float:
    """USD per month of a machine kept running ``hours`` a month (730 = always on)."""
    return _positive(usd_per_hour, "usd_per_hour") * _positive(hours, "hours")


def replicas(tokens_per_month, tokens_per_second, utilization: float = 1.0) -> int:
    """Machines needed to produce ``tokens_per_month`` when each makes ``tokens_per_second``
    for a fraction ``utilization`` (0–1] of the time."""
    load = _positive(tokens_per_month, "tokens_per_month")
    capacity = _positive(tokens_per_second, "tokens_per_second") * 3600 * HOURS_PER_MONTH
    share = _positive(utilization, "utilization")
    if share > 1:
        raise ValueError(f"utilization is a fraction of the time, at most 1, got {utilization}")
    return math.ceil(load / (capacity * share))


def self_host_vs_api(tokens_per_month, *, usd_per_hour, tokens_per_second,
                     api_usd_per_million, utilization: float = 1.0) -> dict:
    """Monthly cost of serving ``tokens_per_month`` on always-on rented machines against a
    per-token API: ``{"replicas", "self_host_usd", "api_usd", "cheaper",
    "break_even_tokens_per_month"}`` (the load above which one machine costs less than the API)."""
    count = replicas(tokens_per_month, tokens_per_second, utilization)
    self_host = count * monthly_cost(usd_per_hour)
    api = _positive(tokens_per_month, "tokens_per_month") / MILLION \
        * _positive(api_usd_per_million, "api_usd_per_million")
    return {"replicas": count, "self_host_usd": self_host, "api_usd": api,
            "cheaper": "self-host" if self_host < api else "api",
            "break_even_tokens_per_month":
                monthly_cost(usd_per_hour) / _positive(api_usd_per_million, "api price") * MILLION}


def break_even_tokens(one_time_usd, usd_per_million_before, usd_per_million_after) -> float:
    """Tokens after which a one-time cost (the GPU hours and engineering to quantize and
    validate a model) is paid back by a lower cost per token:
    ``one_time / (before − after) · 10^6``. ValueError if the cost per token does not drop."""
    one_time = _positive(one_time_usd, "one_time_usd")
    before = _positive(usd_per_million_before, "usd_per_million_before")
    after = _positive(usd_per_million_after, "usd_per_million_after")
    if after >= before:
        raise ValueError(f"the cost per million tokens must drop to break even: before "
                         f"{before:.4g}, after {after:.4g}")
    return one_time / (before - after) * MILLION


# ---- a deployment plan: memory, speed bound, money ------------------------------------------

@dataclasses.dataclass(frozen=True)
class GPU:
    """A card to rent: its memory in bytes, and quotes for its memory bandwidth (bytes/s) and
    its price (USD/hour), each with source and date."""

    name: str
    memory_bytes: int
    bandwidth: Quote
    price: Quote


def decode_tokens_per_second_bound(read_bytes_per_token: int, bandwidth) -> float:
    """Upper bound of single-sequence decoding speed when every generated token reads
    ``read_bytes_per_token`` (the weights, plus the KV cache so far) at ``bandwidth`` bytes/s:
    ``bandwidth / bytes`` (the memory-bound roofline of notebook 07)."""
    return _positive(bandwidth, "bandwidth") / _positive(read_bytes_per_token, "bytes per token")


def plan(config, gpu: GPU, *, weights: str, context: int, tokens_per_month, efficiency,
         api_usd_per_million, one_time_usd=None, kv_cache: str = "fp16",
         baseline_weights: str = "fp16") -> dict:
    """Everything the cost panel shows, for one model, format, card and load:

    ``memory`` (:func:`memory`), ``fits``; ``tokens_per_second`` = ``efficiency`` × the decode
    bound of the weights plus a full KV cache (one sequence; ``efficiency``, 0–1, is what a
    measured runtime reaches of its bound); ``usd_per_million``; the monthly cost of self-hosting
    on as many cards as the load needs against the API (:func:`self_host_vs_api`); and, when
    ``one_time_usd`` (the cost of quantizing) is given, the tokens after which it is paid back
    against serving ``baseline_weights`` on the same card."""
    share = _positive(efficiency, "efficiency")
    if share > 1:
        raise ValueError(f"efficiency is a fraction of the bound, at most 1, got {efficiency}")

    def speed(fmt: str) -> float:
        parts = memory(config, weights=fmt, kv_cache=kv_cache, context=context)
        return share * decode_tokens_per_second_bound(parts["weights"] + parts["kv_cache"],
                                                      gpu.bandwidth)

    parts = memory(config, weights=weights, kv_cache=kv_cache, context=context)
    tps = speed(weights)
    out = {"memory": parts, "fits": parts["total"] <= gpu.memory_bytes, "tokens_per_second": tps,
           "usd_per_million": cost_per_million_tokens(gpu.price, tps),
           **self_host_vs_api(tokens_per_month, usd_per_hour=gpu.price, tokens_per_second=tps,
                              api_usd_per_million=api_usd_per_million)}
    if one_time_usd is not None:
        before = cost_per_million_tokens(gpu.price, speed(baseline_weights))
        out["break_even_tokens"] = break_even_tokens(one_time_usd, before, out["usd_per_million"]) \
            if out["usd_per_million"] < before else None
    return out


def panel(gpus: Mapping[str, GPU], *, efficiency, api_usd_per_million, one_time_usd,
          models=None, formats=("fp16", "int8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "int4-g128",
                                "nf4-dq", "Q3_K_M", "Q2_K")):
    """An ipywidgets panel (JupyterLab): pick the model, format, card, context and monthly load;
    it shows :func:`plan`'s memory fit, speed, cost per month against the API and break-even.
    Every price and throughput comes in through the arguments (quotes with source and date)."""
    import ipywidgets as w

    models = list(models or shipped_configs())
    pick_model = w.Dropdown(options=models, value=models[0], description="model")
    pick_format = w.Dropdown(options=list(formats), value="Q4_K_M", description="format")
    pick_gpu = w.Dropdown(options=list(gpus), description="GPU")
    context = w.IntSlider(value=8192, min=512, max=131072, step=512, description="context")
    load = w.FloatLogSlider(value=1e8, base=10, min=6, max=11, description="tokens/month")
    out = w.Output()

    def show(*_):
        out.clear_output()
        with out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gpu = gpus[pick_gpu.value]
            p = plan(pick_model.value, gpu, weights=pick_format.value, context=context.value,
                     tokens_per_month=load.value, efficiency=efficiency,
                     api_usd_per_million=api_usd_per_million, one_time_usd=one_time_usd)
            m = p["memory"]
            print(f"memory {m['total'] / 1e9:.1f} GB (weights {m['weights'] / 1e9:.1f}, KV cache "
                  f"{m['kv_cache'] / 1e9:.1f}, activations {m['activations'] / 1e9:.1f}) on "
                  f"{gpu.memory_bytes / 2**30:.0f} GiB: {'fits' if p['fits'] else 'does NOT fit'}")
            print(f"decode ≈ {p['tokens_per_second']:.0f} tokens/s per sequence "
                  f"({efficiency:.0%} of the bandwidth bound); ${p['usd_per_million']:.2f} per "
                  f"1M tokens")
            print(f"per month: self-host ${p['self_host_usd']:,.0f} on {p['replicas']} card(s) "
                  f"vs API ${p['api_usd']:,.0f} -> {p['cheaper']} is cheaper")
            if p.get("break_even_tokens"):
                print(f"quantizing (${float(one_time_usd):,.0f}) pays back after "
                      f"{p['break_even_tokens'] / 1e6:,.0f} M tokens against fp16")

    for control in (pick_model, pick_format, pick_gpu, context, load):
        control.observe(show, names="value")
    show()
    return w.VBox([w.HBox([pick_model, pick_format, pick_gpu]), w.HBox([context, load]), out])
