"""The Llama block: which norm feeds which linear layers, in what order, and the shape of its
attention. Every method that needs to know the structure of a decoder block reads it here
(GPTQ's order, AWQ's and SmoothQuant's scale groups, ``with_outliers``, rotations, KV-cache
sizes), so it is written once. It holds for every ``LlamaForCausalLM`` (qcourse-tiny, SmolLM2,
Llama 2/3; Mistral and Qwen2 share the block):

    x ─ input_layernorm ──────────► q_proj, k_proj, v_proj ─ attention ─ o_proj ─(+x)─► h
    h ─ post_attention_layernorm ─► gate_proj, up_proj ─ silu(gate) ⊙ up ─ down_proj ─(+h)─►

Linear layers that read the same input form an :class:`InputGroup`: what produces that input
(``prev``: a norm, or the linear layer whose output feeds it elementwise), the layers, and the
part of the block whose output shows their error (``scope``). In forward order:

    input_layernorm           -> q, k, v       (scope: self_attn)
    v_proj                    -> o_proj        (only if every head has its own v: not under GQA)
    post_attention_layernorm  -> gate, up      (scope: mlp)
    up_proj                   -> down_proj

Attention: ``head_dim`` is the config's ``head_dim`` if it sets one, else
``hidden_size // num_attention_heads``; ``num_key_value_heads`` defaults to the number of heads
(no grouped-query attention). A KV cache holds ``2 · layers · kv_heads · head_dim`` numbers per
token and sequence.

RoPE layout: Hugging Face's Llama rotates the pairs (j, j + d/2) of each head, llama.cpp (and
Meta's original checkpoints) the pairs (2j, 2j + 1); a GGUF file stores q and k with their rows
permuted accordingly (:func:`permute_qk`; :func:`unpermute_qk` undoes it when reading one).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from .modules import decoder_layers

ATTENTION_INPUTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
MLP_INPUTS = ("mlp.gate_proj", "mlp.up_proj")
READS_STREAM = ATTENTION_INPUTS + MLP_INPUTS          # read the residual stream (after a norm)
WRITES_STREAM = ("self_attn.o_proj", "mlp.down_proj")  # write into it


@dataclasses.dataclass(frozen=True)
class InputGroup:
    """Linear ``layers`` that read the same input, the module ``prev`` producing that input, and
    the module ``scope`` whose output measures their quantization error (names relative to the
    block)."""

    prev: str
    layers: tuple[str, ...]
    scope: str

    @property
    def after_norm(self) -> bool:
        """True if ``prev`` is a norm (its weight can absorb a per-channel scale)."""
        return self.prev.endswith("layernorm")

    def modules(self, block: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
        """``(prev, [layers])`` as modules of ``block``."""
        return block.get_submodule(self.prev), [block.get_submodule(n) for n in self.layers]


ATTENTION_NORM = InputGroup("input_layernorm", ATTENTION_INPUTS, "self_attn")
VALUE_OUTPUT = InputGroup("self_attn.v_proj", ("self_attn.o_proj",), "self_attn.o_proj")
MLP_NORM = InputGroup("post_attention_layernorm", MLP_INPUTS, "mlp")
UP_DOWN = InputGroup("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj")
BLOCK_GROUPS = (ATTENTION_NORM, VALUE_OUTPUT, MLP_NORM, UP_DOWN)   # forward order
NORM_GROUPS = (ATTENTION_NORM, MLP_NORM)

LAYOUT = ("input_layernorm -> self_attn.q_proj/k_proj/v_proj -> o_proj, "
          "post_attention_layernorm -> mlp.gate_proj/up_proj -> down_proj")


def decoder_blocks(model: nn.Module, what: str = "this method") -> list[nn.Module]:
    """The decoder blocks of a Llama-family ``model``; a clear error naming ``what`` needs them
    if the model has none."""
    try:
        found = list(decoder_layers(model))
    except (AttributeError, TypeError):
        raise ValueError(f"{type(model).__name__} has no model.layers: {what} supports "
                         "Llama-family decoders") from None
    if not found:
        raise ValueError(f"{type(model).__name__} has no decoder layers for {what}")
    return found


def _expect(block: nn.Module, block_name: str, name: str, kind: str) -> nn.Module:
    """The submodule ``name`` of ``block``, checked to be an ``nn.Linear`` (``kind="linear"``), a
    norm with a weight (``"norm"``) or anything (``"any"``)."""
    try:
        module = block.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{block_name} has no {name!r}: expected a Llama-style block "
                         f"({LAYOUT})") from None
    if kind == "linear" and not isinstance(module, nn.Linear):
        raise ValueError(f"{block_name}.{name} is a {type(module).__name__}, not an nn.Linear")
    if kind == "norm" and not isinstance(getattr(module, "weight", None), nn.Parameter):
        raise ValueError(f"{block_name}.{name} ({type(module).__name__}) has no weight to fold "
                         "the scales into; expected an RMSNorm/LayerNorm there")
    return module


def input_groups(block: nn.Module, block_name: str = "block",
                 groups: tuple[InputGroup, ...] = BLOCK_GROUPS) -> list[InputGroup]:
    """The ``groups`` of a Llama block (default: all four, in forward order), checked: each
    ``prev`` is a norm with a weight or an ``nn.Linear``, each layer an ``nn.Linear`` as wide
    as its input; ``v_proj -> o_proj`` is left out under grouped-query attention (a row of v
    feeds several heads). A clear error names the offending module (``block_name`` in front)."""
    for group in groups:
        prev = _expect(block, block_name, group.prev, "norm" if group.after_norm else "linear")
        width = prev.out_features if isinstance(prev, nn.Linear) else prev.weight.shape[-1]
        for name in group.layers:
            layer = _expect(block, block_name, name, "linear")
            if layer.in_features != width and group is not VALUE_OUTPUT:
                raise ValueError(f"{block_name}.{name} takes {layer.in_features} inputs but "
                                 f"{block_name}.{group.prev} produces {width}")
        _expect(block, block_name, group.scope, "any")
    if VALUE_OUTPUT in groups and not every_head_has_its_own_values(block):
        groups = tuple(g for g in groups if g is not VALUE_OUTPUT)
    return list(groups)


def every_head_has_its_own_values(block: nn.Module) -> bool:
    """True unless grouped-query attention shares each row of ``v_proj`` among several query
    heads (then ``v_proj``'s outputs are fewer than ``o_proj``'s inputs)."""
    return block.self_attn.v_proj.out_features == block.self_attn.o_proj.in_features


def sequential_groups(block: nn.Module) -> list[list[str]]:
    """The block's linear layers (names relative to the block) in the order a block-by-block
    method quantizes them: the layers of :data:`BLOCK_GROUPS` that exist (q/k/v, o, gate/up,
    down), then any other linear layer, one group each."""
    linears = [name for name, m in block.named_modules() if isinstance(m, nn.Linear)]
    groups = [[name for name in group.layers if name in linears] for group in BLOCK_GROUPS]
    known = {name for group in groups for name in group}
    return [group for group in groups if group] + [[name] for name in linears
                                                   if name not in known]


# ---- the attention's shape, from a config ----------------------------------------------------

def config_value(config, key: str, default=None):
    """``config[key]`` of a ``config.json`` dict or ``config.key`` of a transformers config;
    ``default`` when it is missing or None."""
    value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
    return default if value is None else value


def head_dim(config) -> int:
    """Values per attention head: the config's ``head_dim``, else
    ``hidden_size // num_attention_heads``."""
    return config_value(config, "head_dim") or \
        config_value(config, "hidden_size") // config_value(config, "num_attention_heads")


def kv_heads(config) -> int:
    """Key/value heads: ``num_key_value_heads``, else one per attention head."""
    return config_value(config, "num_key_value_heads") or \
        config_value(config, "num_attention_heads")


def kv_cache_values(config, tokens: int, batch: int = 1) -> int:
    """Numbers a KV cache holds for ``batch`` sequences of ``tokens`` tokens:
    ``2 (K and V) · layers · kv_heads · head_dim · tokens · batch``."""
    return 2 * config_value(config, "num_hidden_layers") * kv_heads(config) * head_dim(config) \
        * tokens * batch


# ---- the RoPE layout of q and k: Hugging Face's and llama.cpp's ------------------------------

def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection from Hugging Face's RoPE layout to llama.cpp's.

    Per head, HF rotates pairs (j, j + d/2); llama.cpp rotates (2j, 2j + 1). Row r = 2j + s of a
    head in the output comes from row s·d/2 + j:
    view [heads, 2, d/2, in] -> swap the middle axes -> [heads, d/2, 2, in].
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of :func:`permute_qk` (llama.cpp's layout back to Hugging Face's)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
