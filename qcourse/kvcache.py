"""KV-cache quantization: store the keys and values of past tokens in int8, int4, int2 or FP8.

While generating, a decoder keeps the keys and values of every past token and layer:

    bytes = 2 (K and V) · layers · kv_heads · head_dim · tokens · batch · bytes per value

which grows with the context and, for long contexts and large batches, outgrows the weights.
Quantizing them shrinks it; attention then reads dequantized keys and values.

**Grids.** A grid (scale, and zero point if asymmetric) is fitted to each group of values:

* symmetric int (llama.cpp's ``q8_0`` / ``q4_0`` cache types work this way, in blocks of 32):
  ``s = max|x| / (2^(b-1) - 1)``, ``q = round(x / s)`` (:class:`qcourse.quant.QuantScheme`);
* asymmetric int with a float zero point: ``s = (2^b - 1) / (max - min)``, ``z = -min · s``,
  ``q = round(x·s + z)``, ``x' = (q - z) / s``; with ``hqq=True`` the zero points are then
  optimized by HQQ (:func:`qcourse.hqq.hqq_quantize`), as the HQQ backend of transformers'
  ``QuantizedCache`` does (its early stopping looks at all the values that arrive together);
* FP8 (E4M3 or E5M2), a plain cast with scale 1 (vLLM's ``kv_cache_dtype="fp8"`` default).

**Axis.** By default each **token and head** gets its own grids over its ``head_dim`` values (or
groups of ``group_size`` of them), so a token is quantized on arrival, once. KIVI (Liu et al.,
ICML 2024) observed that keys have *outlier channels* (a few of the head_dim coordinates are
large in every token) while values do not: it quantizes **keys per channel** (a grid per channel
over ``group_size`` consecutive tokens) and **values per token** (``key_axis="channel"``).

**Float residual.** A per-channel grid needs its ``group_size`` tokens first, so the newest tokens
wait in float (``residual`` R, a multiple of the group size): keys until R of them have gathered,
then those R are quantized together; values stay in float until R newer ones have arrived (a
sliding window). As in KIVI's own code, the query of token t reads

    keys   j <  R·floor(t / R)  quantized,   the rest float
    values j <  t - R           quantized,   the rest float

and the prompt's own attention (the prefill) reads everything in float. ``residual=0`` quantizes
every token on arrival, prompt included: what llama.cpp's quantized cache does.

Codes are packed (two int4 per byte); scales and zero points are stored in fp16; the residual in
fp16.

:class:`QuantizedKVCache` is a transformers ``Cache`` (one :class:`QuantizedKVLayer` per decoder
layer), so ``model.generate(..., past_key_values=cache)`` uses it unchanged: the model's own
attention reads whatever the cache returns. Scoring a whole window in one forward pass
(:class:`WithQuantizedCache`, for perplexity) must show each query the cache *as it was when
that query was generated*: with a residual, each past token is read in one of three states (key
and value quantized; key quantized and value float; both float), so the window's keys and values
are handed to attention in all three and a mask (:func:`residual_mask`) lets each query see
exactly one: the same numbers as feeding the window one token at a time (tested).

transformers' own ``QuantizedCache`` differs again: it quantizes the prompt at prefill (the
prefill's attention reads float), keeps up to ``residual_length`` new tokens in float, and when
that buffer fills re-quantizes everything together (prompt included, from its dequantized values).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from qcourse.evaluation import token_agreement
from qcourse.hqq import hqq_quantize
from qcourse.layers import to_unsigned
from qcourse.models import llama
from qcourse.mx import decode, encode, get_format
from qcourse.pack import pack_bytes, unpack_bytes
from qcourse.quant import QuantScheme, dequantize

KINDS = ("int", "fp8_e4m3", "fp8_e5m2")
INT_BITS = (2, 4, 8)
AXES = ("token", "channel")


@dataclasses.dataclass(frozen=True)
class KVScheme:
    """How keys and values are stored: ``kind`` "int" (``bits`` 2, 4 or 8, ``symmetric`` or
    with a float zero point, optimized by HQQ if ``hqq``; one grid per ``group_size`` values,
    None: all of head_dim) or "fp8_e4m3"/"fp8_e5m2" (8 bits, no scale); scales and zeros stored
    in ``meta_dtype``. ``key_axis="channel"`` groups the keys along tokens (KIVI), which needs a
    float ``residual`` of R newest tokens, a multiple of ``group_size`` (module docstring).
    Checked once, here."""

    kind: str = "int"
    bits: int = 8
    group_size: int | None = None
    symmetric: bool = True
    hqq: bool = False
    meta_dtype: torch.dtype = torch.float16
    key_axis: str = "token"
    residual: int = 0
    grid: QuantScheme = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "int" and self.bits not in INT_BITS:
            raise ValueError(f"int KV caches here store {INT_BITS} bits, got {self.bits!r}")
        if self.kind != "int" and self.bits != 8:
            raise ValueError(f"{self.kind} stores 8 bits, got bits={self.bits!r}")
        object.__setattr__(self, "grid", QuantScheme(self.bits, self.group_size, self.symmetric))
        if self.hqq and (self.kind != "int" or self.symmetric):
            raise ValueError("hqq=True optimizes the float zero points of an asymmetric int cache")
        if self.key_axis not in AXES:
            raise ValueError(f"key_axis must be one of {AXES}, got {self.key_axis!r}")
        if isinstance(self.residual, bool) or not isinstance(self.residual, int) or self.residual < 0:
            raise ValueError(f"residual must be a number of tokens >= 0, got {self.residual!r}")
        if self.hqq and self.residual:
            raise ValueError("hqq=True quantizes what arrives together; use residual=0 with it")
        if self.key_axis == "channel" and (self.kind != "int" or self.group_size is None or
                                           self.residual == 0 or self.residual % self.group_size):
            raise ValueError("keys per channel need an int kind, a group_size (tokens per group) "
                             "and a float residual that is a multiple of it, got "
                             f"kind={self.kind!r}, group_size={self.group_size!r}, "
                             f"residual={self.residual!r}")

    @property
    def name(self) -> str:
        if self.kind != "int":
            name = self.kind
        else:
            zero = "sym" if self.symmetric else "hqq" if self.hqq else "asym"
            name = f"int{self.bits} {zero}" + (f" g{self.group_size}" if self.group_size else "")
        if self.key_axis == "channel":
            name += " keys/channel"
        return name + (f" +{self.residual} float" if self.residual else "")

    def group_for(self, head_dim: int) -> int:
        """Values per scale in a head of ``head_dim`` values (all of them if no group size)."""
        return self.grid.group_size_for(head_dim, "head_dim")

    def bytes_per_value(self, head_dim: int) -> float:
        """Storage per quantized number: ``bits/8`` plus the scale (and zero) of its group (the
        float residual aside: :func:`cache_bytes` counts it)."""
        if self.kind != "int":
            return 1.0
        meta = torch.finfo(self.meta_dtype).bits // 8 * (1 if self.symmetric else 2)
        return self.bits / 8 + meta / self.group_for(head_dim)

    def quantize(self, x: torch.Tensor, axis: str = "token") -> dict[str, torch.Tensor]:
        """``x [batch, heads, tokens, head_dim]`` -> stored tensors. ``axis="token"``: grids
        along head_dim, each ``[b, h, t, ·]``; ``"channel"``: grids along the tokens (keys,
        KIVI), each ``[b, h, head_dim, ·]``."""
        if axis == "channel":
            x = x.transpose(-1, -2)                                    # [b, h, D, t]
        if self.kind != "int":
            return {"codes": encode(x, get_format(self.kind).element)}
        g = self.group_size if axis == "channel" else self.group_for(x.shape[-1])
        if self.symmetric:
            q, scale, zero = self.grid.resolved(x.shape[-1]).quantize(x)  # scale [..., ·/g]
            codes, _ = to_unsigned(q, zero, self.bits)                  # q + 2^(b-1), zero 2^(b-1)
            return {"codes": pack_bytes(codes, self.bits), "scale": scale.to(self.meta_dtype)}
        rows = x.reshape(-1, x.shape[-1])                              # [b·h·t, D] (or [b·h·D, t])
        result = hqq_quantize(rows, self.bits, g, round_zero=False, optimize=self.hqq)
        shape = (*x.shape[:-1], -1)
        return {"codes": pack_bytes(result.q.reshape(x.shape), self.bits),
                "scale": result.scale.reshape(shape).to(self.meta_dtype),
                "zero": result.zero.reshape(shape).to(self.meta_dtype)}

    def dequantize(self, stored: dict[str, torch.Tensor], axis: str = "token") -> torch.Tensor:
        """Back to float32 ``[batch, heads, tokens, head_dim]``."""
        if self.kind != "int":
            x = decode(stored["codes"], get_format(self.kind).element)
        else:
            q = unpack_bytes(stored["codes"], self.bits)                # [b, h, t, D] (or [b, h, D, t])
            scale = stored["scale"].float()
            zero = stored["zero"].float() if "zero" in stored else torch.full_like(scale, 2.0 ** (self.bits - 1))
            x = dequantize(q, scale, zero, group_size=q.shape[-1] // scale.shape[-1])
        return x.transpose(-1, -2) if axis == "channel" else x

    def float_tokens(self, tokens: int, what: str) -> int:
        """How many of ``tokens`` cached keys or values (``what``) stay in float once the newest
        token has been read: keys ``tokens mod R``, values ``min(tokens, R)``."""
        if self.residual == 0:
            return 0
        return tokens % self.residual if what == "keys" else min(tokens, self.residual)


def KIVI(bits: int = 2, group_size: int = 32, residual: int = 128) -> KVScheme:
    """KIVI's recipe (Liu et al., 2024): asymmetric ``bits``-bit keys per channel and values per
    token, groups of ``group_size``, the newest ``residual`` tokens in float (its paper's
    KIVI-2 and KIVI-4 use G = 32, R = 128)."""
    return KVScheme("int", bits, group_size, symmetric=False, key_axis="channel",
                    residual=residual)


class QuantizedStream:
    """One layer's keys (or values) as the cache holds them: the quantized tokens as stored (and,
    for attention, their dequantized values) and the newest tokens in float."""

    def __init__(self, scheme: KVScheme, what: str) -> None:
        self.scheme, self.what = scheme, what
        self.axis = scheme.key_axis if what == "keys" else "token"
        self.stored: list[dict[str, torch.Tensor]] = []
        self.read: torch.Tensor | None = None          # dequantized [b, h, t_quantized, D]
        self.recent: torch.Tensor | None = None        # float [b, h, t_float, D]

    def _store(self, x: torch.Tensor) -> None:
        stored = self.scheme.quantize(x, self.axis)
        self.stored.append(stored)
        back = self.scheme.dequantize(stored, self.axis)
        self.read = back if self.read is None else torch.cat([self.read, back], dim=-2)

    def append(self, new: torch.Tensor) -> torch.Tensor:
        """Add ``new [b, h, t_new, D]`` and return everything a query of the newest token reads
        (float32 ``[b, h, t, D]``). Tokens the previous query read in float and that leave the
        residual now are quantized first (module docstring)."""
        if self.scheme.residual == 0:
            self._store(new)
            return self.read
        if self.recent is not None:
            keep = self.scheme.float_tokens(self.recent.shape[-2], self.what)
            leaving, self.recent = self.recent.split([self.recent.shape[-2] - keep, keep], dim=-2)
            if leaving.shape[-2]:
                self._store(leaving)
        new = new.float()
        self.recent = new if self.recent is None else torch.cat([self.recent, new], dim=-2)
        return self.recent if self.read is None else torch.cat([self.read, self.recent], dim=-2)

    def nbytes(self) -> int:
        """Bytes held once the pending flush is done: codes, scales and zeros, and the float
        residual in fp16."""
        quantized = sum(t.numel() * t.element_size() for stored in self.stored for t in stored.values())
        if self.recent is None:
            return quantized
        total = self.recent.shape[-2]
        keep = self.scheme.float_tokens(total, self.what)
        per_token = self.recent[..., :1, :].numel()
        leaving = (total - keep) * per_token * self.scheme.bytes_per_value(self.recent.shape[-1])
        return quantized + round(leaving) + keep * per_token * 2


class QuantizedKVLayer(DynamicLayer):
    """One decoder layer's cache: arriving keys and values go through a :class:`QuantizedStream`
    each; attention gets what the newest query reads (in the keys' dtype)."""

    def __init__(self, scheme: KVScheme) -> None:
        super().__init__()
        self.scheme = scheme
        self.streams = {what: QuantizedStream(scheme, what) for what in ("keys", "values")}
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.length += key_states.shape[-2]
        dtype = key_states.dtype
        return (self.streams["keys"].append(key_states).to(dtype),
                self.streams["values"].append(value_states).to(dtype))

    def get_seq_length(self) -> int:
        return self.length

    def nbytes(self) -> int:
        """Bytes held: codes, scales and zero points of the keys and values, and the residual."""
        return sum(stream.nbytes() for stream in self.streams.values())


class QuantizedKVCache(Cache):
    """A transformers ``Cache`` whose layers quantize keys and values with ``scheme``."""

    def __init__(self, config, scheme: KVScheme) -> None:
        config = config.get_text_config(decoder=True)
        super().__init__(layers=[QuantizedKVLayer(scheme) for _ in range(config.num_hidden_layers)])
        self.scheme = scheme

    def nbytes(self) -> int:
        """Bytes the cache holds now (all layers)."""
        return sum(layer.nbytes() for layer in self.layers)


def cache_bytes(config, tokens: int, scheme: KVScheme | None = None, batch: int = 1) -> float:
    """Bytes of a KV cache of ``tokens`` tokens for a model ``config`` (a transformers config):
    :func:`qcourse.models.llama.kv_cache_values` (``2 · layers · kv_heads · head_dim · tokens ·
    batch``) at ``bytes_per_value`` each, except the float residual's tokens at 2 bytes;
    ``scheme`` None: fp16 (2 bytes per value)."""
    config = config.get_text_config(decoder=True)
    per_token = llama.kv_cache_values(config, 1, batch) / 2                  # keys (or values) of one token
    if scheme is None:
        return 2 * tokens * per_token * 2.0
    per_value = scheme.bytes_per_value(llama.head_dim(config))
    total = 0.0
    for what in ("keys", "values"):
        kept = scheme.float_tokens(tokens, what)
        total += per_token * ((tokens - kept) * per_value + kept * 2.0)
    return total


def residual_mask(tokens: int, residual: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive attention mask ``[1, 1, T, 3T]`` (0: read, -inf: not) that lets the query of
    token t read each past token j <= t in exactly one of three copies of the window's keys and
    values, the one the cache held when t was generated (module docstring, R = ``residual``):

        copy 0 (key and value quantized):   j < t - R
        copy 1 (key quantized, value float): t - R <= j < R·floor(t / R)
        copy 2 (both float):                 R·floor(t / R) <= j <= t
    """
    t = torch.arange(tokens)[:, None]                                    # queries [T, 1]
    j = torch.arange(tokens)[None, :]                                    # keys    [1, T]
    flushed = residual * torch.div(t, residual, rounding_mode="floor")   # R·floor(t/R)
    copies = [j < t - residual, (t - residual <= j) & (j < flushed), (flushed <= j) & (j <= t)]
    allowed = torch.cat(copies, dim=1)                                   # [T, 3T]
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))
    return mask[None, None]


class PerQueryKVLayer(DynamicLayer):
    """A layer for scoring a whole window in one pass with a residual scheme: ``update`` gets
    the window's keys and values and returns the three copies of :func:`residual_mask`, keys
    ``[quantized, quantized, float]`` and values ``[quantized, float, float]`` along the tokens."""

    def __init__(self, scheme: KVScheme) -> None:
        super().__init__()
        self.scheme, self.length = scheme, 0

    def _quantized(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """What the cache reads back for ``x [b, h, T, D]`` once tokens are quantized (keys per
        channel: only whole blocks of R tokens are ever quantized; the rest stay as they are)."""
        axis = self.scheme.key_axis if what == "keys" else "token"
        done = x.shape[-2] - self.scheme.float_tokens(x.shape[-2], "keys") if axis == "channel" \
            else x.shape[-2]
        head, tail = x.float().split([done, x.shape[-2] - done], dim=-2)
        back = self.scheme.dequantize(self.scheme.quantize(head, axis), axis) if done else head
        return torch.cat([back, tail], dim=-2)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.length:
            raise RuntimeError("PerQueryKVLayer scores one window in one call")
        self.length = key_states.shape[-2]
        k, v = key_states, value_states
        kq, vq = self._quantized(k, "keys").to(k.dtype), self._quantized(v, "values").to(v.dtype)
        return torch.cat([kq, kq, k], dim=-2), torch.cat([vq, v, v], dim=-2)

    def get_seq_length(self) -> int:
        return self.length


class WithQuantizedCache(nn.Module):
    """``model`` whose every forward pass starts a fresh quantized cache: scoring a window then
    attends over quantized keys and values as generation would (``qcourse.evaluation.perplexity``
    takes it). With a float residual, one pass shows each query the cache as it was when that
    query's token was generated (:func:`residual_mask`)."""

    def __init__(self, model: nn.Module, scheme: KVScheme) -> None:
        super().__init__()
        self.model, self.scheme = model, scheme

    def forward(self, input_ids: torch.Tensor, **kwargs):
        if self.scheme.residual == 0:
            cache = QuantizedKVCache(self.model.config, self.scheme)
            return self.model(input_ids, past_key_values=cache, use_cache=True, **kwargs)
        config = self.model.config.get_text_config(decoder=True)
        cache = Cache(layers=[PerQueryKVLayer(self.scheme) for _ in range(config.num_hidden_layers)])
        mask = residual_mask(input_ids.shape[1], self.scheme.residual, self.model.dtype)
        return self.model(input_ids, attention_mask=mask, past_key_values=cache, use_cache=True,
                          **kwargs)


@torch.no_grad()
def greedy(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int,
           scheme: KVScheme | None = None) -> torch.Tensor:
    """Greedy continuation ``[batch, new_tokens]`` of ``prompt_ids [batch, T]`` (exactly
    ``new_tokens``), with a float cache (``scheme`` None) or a quantized one."""
    cache = None if scheme is None else QuantizedKVCache(model.config, scheme)
    out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids),
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         past_key_values=cache, pad_token_id=model.config.eos_token_id)
    return out[:, prompt_ids.shape[1]:]


agreement = token_agreement   # how far two greedy continuations [batch, n] agree (notebook 11)
