"""KV-cache quantization: store the keys and values of past tokens in int8, int4 or FP8.

While generating, a decoder keeps the keys and values of every past token and layer:

    bytes = 2 (K and V) · layers · kv_heads · head_dim · tokens · batch · bytes per value

which grows with the context and, for long contexts and large batches, outgrows the weights.
Quantizing them shrinks it; attention then reads dequantized keys and values.

Here every **token and head** gets its own grid over its ``head_dim`` values (or over groups of
``group_size`` of them), so a new token is quantized on arrival and never re-quantized:

* symmetric int (llama.cpp's ``q8_0`` / ``q4_0`` cache types work this way, in blocks of 32):
  ``s = max|x| / (2^(b-1) - 1)``, ``q = round(x / s)`` (:class:`qcourse.quant.QuantScheme`);
* asymmetric int with a float zero point (KIVI): ``s = (2^b - 1) / (max - min)``,
  ``z = -min · s``, ``q = round(x·s + z)``, ``x' = (q - z) / s``; with ``hqq=True`` the zero
  points are then optimized by HQQ (:func:`qcourse.hqq.hqq_quantize`), as the HQQ backend of
  transformers' ``QuantizedCache`` does (its early stopping looks at all the values that arrive
  together: the prompt at once, then each new token);
* FP8 (E4M3 or E5M2), a plain cast with scale 1 (vLLM's ``kv_cache_dtype="fp8"`` default).

Codes are packed (two int4 per byte); scales and zero points are stored in fp16.

:class:`QuantizedKVCache` is a transformers ``Cache`` (one :class:`QuantizedKVLayer` per decoder
layer), so ``model(ids, past_key_values=cache)`` and ``model.generate(..., past_key_values=cache)``
use it unchanged: the model's own attention reads whatever the cache returns. Unlike transformers'
``QuantizedCache``, which keeps the newest ``residual_length`` tokens (and the whole prompt) in
float and re-quantizes everything when that buffer fills, this cache quantizes every token,
prompt included, once.
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


@dataclasses.dataclass(frozen=True)
class KVScheme:
    """How keys and values are stored: ``kind`` "int" (``bits`` 2, 4 or 8, ``symmetric`` or
    with a float zero point, optimized by HQQ if ``hqq``; one grid per ``group_size`` values of
    a head, None: all of head_dim) or "fp8_e4m3"/"fp8_e5m2" (8 bits, no scale); scales and zeros
    stored in ``meta_dtype``. Checked once, here."""

    kind: str = "int"
    bits: int = 8
    group_size: int | None = None
    symmetric: bool = True
    hqq: bool = False
    meta_dtype: torch.dtype = torch.float16
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

    @property
    def name(self) -> str:
        if self.kind != "int":
            return self.kind
        zero = "sym" if self.symmetric else "hqq" if self.hqq else "asym"
        return f"int{self.bits} {zero}" + (f" g{self.group_size}" if self.group_size else "")

    def group_for(self, head_dim: int) -> int:
        """Values per scale in a head of ``head_dim`` values (all of them if no group size)."""
        return self.grid.group_size_for(head_dim, "head_dim")

    def bytes_per_value(self, head_dim: int) -> float:
        """Storage per cached number: ``bits/8`` plus the scale (and zero) of its group."""
        if self.kind != "int":
            return 1.0
        meta = torch.finfo(self.meta_dtype).bits // 8 * (1 if self.symmetric else 2)
        return self.bits / 8 + meta / self.group_for(head_dim)

    def quantize(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x [batch, heads, tokens, head_dim]`` -> stored tensors, each ``[b, h, t, ·]``."""
        if self.kind != "int":
            return {"codes": encode(x, get_format(self.kind).element)}
        g = self.group_for(x.shape[-1])
        if self.symmetric:
            q, scale, zero = self.grid.resolved(x.shape[-1]).quantize(x)  # scale [b, h, t, D/g]
            codes, _ = to_unsigned(q, zero, self.bits)                  # q + 2^(b-1), zero 2^(b-1)
            return {"codes": pack_bytes(codes, self.bits), "scale": scale.to(self.meta_dtype)}
        rows = x.reshape(-1, x.shape[-1])                              # [b·h·t, D]
        result = hqq_quantize(rows, self.bits, g, round_zero=False, optimize=self.hqq)
        shape = (*x.shape[:-1], -1)
        return {"codes": pack_bytes(result.q.reshape(x.shape), self.bits),
                "scale": result.scale.reshape(shape).to(self.meta_dtype),
                "zero": result.zero.reshape(shape).to(self.meta_dtype)}

    def dequantize(self, stored: dict[str, torch.Tensor]) -> torch.Tensor:
        """Back to float32 ``[batch, heads, tokens, head_dim]``."""
        if self.kind != "int":
            return decode(stored["codes"], get_format(self.kind).element)
        q = unpack_bytes(stored["codes"], self.bits)                    # [b, h, t, D]
        scale = stored["scale"].float()                                  # [b, h, t, D/g]
        zero = stored["zero"].float() if "zero" in stored else torch.full_like(scale, 2.0 ** (self.bits - 1))
        return dequantize(q, scale, zero, group_size=q.shape[-1] // scale.shape[-1])


class QuantizedKVLayer(DynamicLayer):
    """One decoder layer's cache: every arriving token's keys and values are quantized with
    ``scheme`` and appended; attention gets all of them back dequantized (in the keys' dtype)."""

    def __init__(self, scheme: KVScheme) -> None:
        super().__init__()
        self.scheme = scheme
        self.stored: dict[str, dict[str, torch.Tensor]] = {}
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        for name, new in (("keys", key_states), ("values", value_states)):
            fresh = self.scheme.quantize(new)                          # [b, h, t_new, ·] each
            old = self.stored.get(name)
            self.stored[name] = fresh if old is None else {
                k: torch.cat([old[k], fresh[k]], dim=-2) for k in fresh}
        self.length += key_states.shape[-2]
        dtype = key_states.dtype
        return (self.scheme.dequantize(self.stored["keys"]).to(dtype),
                self.scheme.dequantize(self.stored["values"]).to(dtype))

    def get_seq_length(self) -> int:
        return self.length

    def nbytes(self) -> int:
        """Bytes held: codes, scales and zero points of the keys and values."""
        return sum(t.numel() * t.element_size() for stored in self.stored.values()
                   for t in stored.values())


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
    batch``) times ``bytes_per_value``; ``scheme`` None: fp16 (2 bytes per value)."""
    config = config.get_text_config(decoder=True)
    per_value = 2.0 if scheme is None else scheme.bytes_per_value(llama.head_dim(config))
    return llama.kv_cache_values(config, tokens, batch) * per_value


class WithQuantizedCache(nn.Module):
    """``model`` whose every forward pass starts a fresh :class:`QuantizedKVCache`: scoring a
    window then attends over quantized keys and values (``qcourse.evaluation.perplexity`` takes it)."""

    def __init__(self, model: nn.Module, scheme: KVScheme) -> None:
        super().__init__()
        self.model, self.scheme = model, scheme

    def forward(self, input_ids: torch.Tensor, **kwargs):
        cache = QuantizedKVCache(self.model.config, self.scheme)
        return self.model(input_ids, past_key_values=cache, use_cache=True, **kwargs)


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
