"""Writing a Hugging Face Llama model to a GGUF file, with gguf-py's ``GGUFWriter``.

A GGUF file is: a header (magic ``GGUF``, version, tensor and key-value counts), the key-value
metadata (architecture hyper-parameters, tokenizer), a table of tensors (name, shape, block type,
offset), then the tensor data, each tensor aligned to 32 bytes. What llama.cpp needs for a Llama:

- ``llama.*`` hyper-parameters (layers, widths, heads, RoPE base, RMSNorm epsilon);
- the tokenizer: every token string, its type, the BPE merges, and the special-token ids.
  A byte-level BPE tokenizer (GPT-2 style) is tokenizer model ``"gpt2"`` with pre-tokenizer
  ``"gpt-2"`` (the regex that splits text before BPE);
- the weights under llama.cpp's names (``blk.3.attn_q.weight``, ...). The q and k projections are
  stored with their rows permuted (:func:`permute_qk`): Hugging Face's RoPE rotates the two halves
  of each head, llama.cpp rotates adjacent pairs (the original Meta layout); llama.cpp's own
  converter applies the same permutation.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import torch
from torch import nn

from qcourse.models import llama
from qcourse.models.llama import permute_qk, unpermute_qk  # noqa: F401  (the Llama block's RoPE layout)

from .mixes import FLOAT_TYPES, FTYPES, check_ftype, tensor_types
from .quants import QTYPES, quantize

# Hugging Face parameter name (inside one decoder layer) -> llama.cpp's tensor name.
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for a Hugging Face Llama parameter, e.g.
    ``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight``."""
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    prefix, _, rest = hf_name.partition("model.layers.")
    layer, _, inner = rest.partition(".")
    if prefix or not layer.isdigit() or inner not in LAYER_TENSORS:
        raise ValueError(f"{hf_name!r} is not a parameter of a Llama model (expected "
                         f"model.layers.N.<{'|'.join(LAYER_TENSORS)}> or {list(GLOBAL_TENSORS)})")
    return f"blk.{layer}.{LAYER_TENSORS[inner]}"


def _check_llama(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        raise ValueError("export writes Llama-architecture models (config.model_type 'llama'), "
                         f"got {getattr(config, 'model_type', type(model).__name__)!r}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ValueError(f"RoPE scaling {rope.get('rope_type')!r} is not supported by this "
                         "exporter; only the plain RoPE of Llama/Llama-2 style models")


def gguf_tensors(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as float32 numpy arrays under llama.cpp's names, q/k permuted.

    With tied embeddings the output head is not written (llama.cpp then reuses ``token_embd``).
    Raises ValueError if a weight holds NaN or Inf.
    """
    config = model.config
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    tensors = {}
    for hf_name, param in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        if "rotary_emb" in hf_name:
            continue
        name = gguf_name(hf_name)
        w = param.detach().float().cpu()
        if not torch.isfinite(w).all():
            raise ValueError(f"weight {hf_name} holds NaN or Inf values: a GGUF file of it would be "
                             "garbage; fix the model first")
        if name.endswith("attn_q.weight"):
            w = permute_qk(w, config.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            w = permute_qk(w, config.num_key_value_heads)
        tensors[name] = w.numpy()
    return tensors


def _add_hparams(writer, config, ftype: str) -> None:
    head_dim = llama.head_dim(config)
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_name(pathlib.Path(getattr(config, "name_or_path", "") or "llama").name)
    writer.add_file_type(FTYPES[ftype][0])
    writer.add_quantization_version(2)  # GGML_QNT_VERSION
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def byte_level_bpe(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """(tokens in id order, their GGUF token types, merges as "a b" strings) of a byte-level BPE
    tokenizer; ValueError for any other kind of tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("export needs a fast (tokenizers-backed) Hugging Face tokenizer")
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer") or {}
    if spec["model"]["type"] != "BPE" or pre.get("type") != "ByteLevel":
        raise ValueError("export writes byte-level BPE tokenizers (GPT-2 style) as GGUF 'gpt2' "
                         f"tokenizers; got model {spec['model']['type']} with pre-tokenizer "
                         f"{pre.get('type')}")
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("the tokenizer's ids are not contiguous 0..n-1")
    special = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    tokens = [t for t, _ in by_id]
    types = [3 if t in special else 1 for t in tokens]  # 3 = CONTROL, 1 = NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, types, merges


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    tokens, types, merges = byte_level_bpe(tokenizer)
    if len(tokens) != vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens but the model's vocab_size is "
                         f"{vocab_size}; llama.cpp needs one token string per embedding row")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(False)  # our tokenizer adds no BOS; nor should llama.cpp
    writer.add_add_eos_token(False)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:  # the same Jinja template llama.cpp renders chats with
        writer.add_chat_template(template)


def export(model: nn.Module, tokenizer, path: str | os.PathLike, ftype: str = "F32", *,
           imatrix: dict[str, np.ndarray] | None = None, pure: bool = False,
           tensor_types_override: dict[str, str] | None = None) -> dict[str, str]:
    """Write ``model`` (a Hugging Face ``LlamaForCausalLM``) and its byte-level BPE ``tokenizer``
    to the GGUF file ``path``, weights as ``ftype`` ("F32", "F16", "BF16", "Q8_0", a legacy type,
    or a llama.cpp mix such as "Q4_K_M"; see :mod:`qcourse.gguf.mixes`).

    ``imatrix``: per-input-column importance of each weight by GGUF name (from
    :func:`qcourse.gguf.importance.imatrix`), used by the K-quants as llama.cpp uses it.
    ``pure``: one block type for every 2-D weight (llama.cpp's ``--pure``).
    ``tensor_types_override``: block types by GGUF tensor name that replace the chosen ones (as
    llama.cpp's ``--token-embedding-type`` / ``--tensor-type``), e.g.
    ``{"token_embd.weight": "F32"}`` to keep a tied embedding in float.
    Returns the block type of every tensor. The file appears only once complete.
    """
    import gguf

    check_ftype(ftype)
    _check_llama(model)
    tensors = gguf_tensors(model)
    config = model.config
    types = tensor_types({n: a.shape for n, a in tensors.items()}, ftype,
                         n_layers=config.num_hidden_layers, n_head=config.num_attention_heads,
                         n_head_kv=config.num_key_value_heads, pure=pure,
                         has_imatrix=imatrix is not None)
    unknown = set(tensor_types_override or {}) - set(types)
    if unknown:
        raise ValueError(f"tensor_types_override names tensors the file does not have: "
                         f"{sorted(unknown)} (e.g. 'token_embd.weight', 'blk.0.attn_v.weight')")
    for name, qtype in (tensor_types_override or {}).items():
        if qtype not in QTYPES:
            raise ValueError(f"unknown block type {qtype!r} for {name}: choose one of "
                             f"{', '.join(QTYPES)}")
        types[name] = qtype
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(partial, "llama")
    try:
        _add_hparams(writer, config, ftype)
        _add_tokenizer(writer, tokenizer, config.vocab_size)
        for name, array in tensors.items():
            qtype = types[name]
            importance = None if imatrix is None or qtype in FLOAT_TYPES else imatrix.get(name)
            blocks = quantize(np.ascontiguousarray(array, dtype=np.float32), qtype, importance)
            writer.add_tensor(name, blocks, raw_shape=blocks.shape,
                              raw_dtype=gguf.GGMLQuantizationType[qtype])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, path)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return types
