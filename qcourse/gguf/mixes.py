"""Which block type each tensor gets: llama.cpp's file types ("ftypes") and its quantization mixes.

A GGUF file type such as ``Q4_K_M`` is not one block type but a recipe. Every 2-D weight starts
from the ftype's *default* type (``Q4_K`` for ``Q4_K_M``) and some tensors are bumped up because
quantization hurts them more (what ``llama_tensor_get_type`` in llama.cpp's
``src/llama-quant.cpp`` decides, followed here for Llama-family models):

- the output head, and the token embedding when it doubles as the head (tied embeddings), get
  ``Q6_K`` (``Q8_0`` if the row length is not a multiple of the default type's block);
- ``attn_v`` (the value projection: few heads share it under grouped-query attention) and
  ``ffn_down`` get more bits in the first eighth and last eighth of the layers and in every third
  layer between (``use_more_bits``), e.g. ``Q6_K`` instead of ``Q4_K`` in ``Q4_K_M``;
- ``Q2_K``/``Q3_K_*`` raise ``attn_v``, ``attn_output`` and ``ffn_down`` by one or two levels.

Norm vectors (1-D) are never quantized: they stay F32. A row length that is not a multiple of the
chosen type's block size falls back to a type with 32-weight blocks, or F16 (``tensor_type_fallback``).
``pure=True`` (llama.cpp's ``--pure``) skips the mix rules: one type for every 2-D weight.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .quants import BLOCK_SIZE, TYPE_SIZE

# llama.cpp's enum llama_ftype (include/llama.h) -> (its number, the default block type).
FTYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q8_0": (7, "Q8_0"), "Q5_0": (8, "Q5_0"),
    "Q5_1": (9, "Q5_1"),
    "Q2_K": (10, "Q2_K"), "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"), "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"),
}
# ggml's enum ggml_type (ggml/include/ggml.h): the type ids written into a GGUF tensor table.
GGML_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
    "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30,
}
GGML_TYPE_NAMES: dict[int, str] = {v: k for k, v in GGML_TYPES.items()}
FLOAT_TYPES = ("F32", "F16", "BF16")

# tensor_type_fallback: a row length the block does not divide falls back to a 32-block type.
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def check_ftype(ftype: str) -> str:
    """``ftype`` if llama.cpp knows it (and we implement it), else ValueError listing the choices."""
    if ftype not in FTYPES:
        raise ValueError(f"unknown GGUF file type {ftype!r}: choose one of {', '.join(FTYPES)}")
    return ftype


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: first and last eighth of the layers, and every third between."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def fallback(qtype: str, row_length: int) -> str:
    """The type llama.cpp uses when ``row_length`` is not a multiple of ``qtype``'s block."""
    if row_length % BLOCK_SIZE[qtype] == 0:
        return qtype
    smaller = FALLBACK.get(qtype, qtype)
    return smaller if row_length % BLOCK_SIZE[smaller] == 0 else "F16"


def llama_order(names: Sequence[str]) -> list[str]:
    """Tensor names in the order llama.cpp's loader walks them (``weight_name_comparer``): tensors
    outside blocks first, then block by block (numerically), by name within a block. The layer
    counters of the mix rules advance in this order."""
    def key(name: str) -> tuple[int, str]:
        match = re.match(r"blk\.(\d+)\.", name)
        return (int(match.group(1)) if match else -1, name)
    return sorted(names, key=key)


def _category(name: str) -> str:
    """The tensor's role, as llama.cpp's ``tensor_get_category`` sees it."""
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for part in ("attn_v.weight", "attn_k.weight", "attn_q.weight", "attn_output.weight",
                 "ffn_up", "ffn_gate", "ffn_down"):
        if part in name:
            return part.removesuffix(".weight")
    return "other"


def _mixed_type(ftype: str, default: str, category: str, row_length: int, i_layer: int,
                n_layers: int, n_gqa: int, has_imatrix: bool) -> str:
    """``llama_tensor_get_type_impl`` for a dense Llama (no experts, not Falcon)."""
    if category in ("output", "tied_embd"):
        if row_length % BLOCK_SIZE[default] != 0:
            return "Q8_0"
        return default if default == "Q8_0" else "Q6_K"
    if category == "attn_v":
        new = default
        if ftype == "Q2_K":
            new = "Q4_K" if n_gqa >= 4 else "Q3_K"
        elif ftype == "Q3_K_M":
            new = "Q5_K" if i_layer < 2 else "Q4_K"
        elif ftype == "Q3_K_L":
            new = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_layer, n_layers):
            new = "Q6_K"
        elif ftype == "Q4_K_S" and i_layer < 4:
            new = "Q5_K"
        if n_layers == 80 and new in ("Q3_K", "Q4_K"):  # llama.cpp's LLM_TYPE_70B rule
            new = "Q5_K"
        return new
    if category == "ffn_down":
        if ftype == "Q2_K":
            return "Q3_K"
        if ftype == "Q3_K_M":
            return "Q5_K" if i_layer < n_layers // 16 else "Q4_K"
        if ftype == "Q3_K_L":
            return "Q5_K"
        if ftype == "Q4_K_M":
            return "Q6_K" if use_more_bits(i_layer, n_layers) else default
        if ftype == "Q5_K_M" and use_more_bits(i_layer, n_layers):
            return "Q6_K"
        if ftype == "Q4_K_S" and i_layer < n_layers // 8:
            return "Q5_K"
        if ftype in ("Q4_0", "Q5_0") and has_imatrix and i_layer < n_layers // 8:
            return "Q4_1" if ftype == "Q4_0" else "Q5_1"
        return default
    if category == "attn_output":
        return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ftype, default)
    return default


def tensor_types(shapes: Mapping[str, Sequence[int]], ftype: str, *, n_layers: int, n_head: int,
                 n_head_kv: int, pure: bool = False, has_imatrix: bool = False) -> dict[str, str]:
    """The block type of every tensor of a Llama GGUF written as ``ftype``.

    ``shapes``: GGUF tensor name -> PyTorch shape (rows, row_length) or (length,) for norms.
    Returns name -> type name ("F32", "Q6_K", ...), as llama.cpp's quantize chooses it when it
    converts an F32 file of the same model to ``ftype`` (``pure``: no mix rules).
    """
    default = FTYPES[check_ftype(ftype)][1]
    tied = "output.weight" not in shapes
    n_gqa = n_head // n_head_kv
    counters = {"attn_v": 0, "ffn_down": 0}
    types = {}
    for name in llama_order(list(shapes)):
        shape = tuple(shapes[name])
        if len(shape) < 2 or not name.endswith("weight") or "_norm.weight" in name:
            types[name] = "F32"  # 1-D tensors stay as they are in the F32 source
            continue
        if default in FLOAT_TYPES:
            types[name] = default
            continue
        category = _category(name)
        if category == "token_embd" and tied:
            category = "tied_embd"
        row_length = shape[-1]
        if pure:
            new = default
        else:
            i_layer = counters.get(category, 0)
            new = _mixed_type(ftype, default, category, row_length, i_layer, n_layers, n_gqa,
                              has_imatrix)
            if category in counters:
                counters[category] += 1
        types[name] = fallback(new, row_length)
    return types


def llama_shapes(*, n_layers: int, hidden: int, ffn: int, n_head: int, n_head_kv: int, vocab: int,
                 tied: bool, head_dim: int | None = None) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> shape of every tensor of a Llama with these hyper-parameters
    (to size a model's file without having its weights)."""
    head_dim = head_dim or hidden // n_head
    q, kv = n_head * head_dim, n_head_kv * head_dim
    per_layer = {"attn_norm.weight": (hidden,), "attn_q.weight": (q, hidden),
                 "attn_k.weight": (kv, hidden), "attn_v.weight": (kv, hidden),
                 "attn_output.weight": (hidden, q), "ffn_norm.weight": (hidden,),
                 "ffn_gate.weight": (ffn, hidden), "ffn_up.weight": (ffn, hidden),
                 "ffn_down.weight": (hidden, ffn)}
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    if not tied:
        shapes["output.weight"] = (vocab, hidden)
    for i in range(n_layers):
        shapes.update({f"blk.{i}.{name}": shape for name, shape in per_layer.items()})
    return shapes


def tensor_size(shape: Sequence[int], qtype: str) -> int:
    """Bytes of one tensor stored as ``qtype``: (weights / block size) x bytes per block."""
    count = 1
    for d in shape:
        count *= int(d)
    return count // BLOCK_SIZE[qtype] * TYPE_SIZE[qtype]


def file_size(shapes: Mapping[str, Sequence[int]], types: Mapping[str, str]) -> int:
    """Bytes of tensor data of a GGUF file (the header and 32-byte padding add a little)."""
    return sum(tensor_size(shapes[name], types[name]) for name in shapes)
