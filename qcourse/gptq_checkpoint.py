"""Saving and loading a quantized model in the GPTQ checkpoint layout (AutoGPTQ / GPTQModel).

A folder holds ``config.json`` (the model's config plus a ``quantization_config``), the same
dictionary again as ``quantize_config.json`` (AutoGPTQ's file), ``model.safetensors`` and the
tokenizer. Every quantized linear layer ``<name>`` is stored as four tensors:

    <name>.qweight  int32   [K·b/32, N]    b-bit integers packed along the input dimension
                                           (8 four-bit values per word, value 0 in the low bits)
    <name>.qzeros   int32   [K/g, N·b/32]  zero points packed along the output dimension
    <name>.scales   float16 [K/g, N]
    <name>.g_idx    int32   [K]            group of each input column (act-order permutes it)

    W[n, k] = (q[k, n] - zero[g_idx[k], n]) · scale[g_idx[k], n]

These are exactly the buffers of :class:`qcourse.layers.QuantLinear`, except for one historic
convention. The original GPTQ kernels add 1 to every unpacked zero point, so the ``"gptq"``
checkpoint format (``checkpoint_format: "gptq"``, what AutoGPTQ wrote and GPTQModel still writes
by default, sometimes called v1) stores ``zero - 1``. GPTQModel's ``"gptq_v2"`` format stores the
true zero points. Like GPTQModel's ``convert_gptq_v2_to_v1_format``, we convert by subtracting
1 from every packed value *as one 32-bit word* (``0x11111111`` for 4 bits), so the round trip is
exact; but a group whose zero point is 0 (possible with ``sym=False``) borrows from its
neighbour, and readers that unpack first and then add 1 per value decode it wrongly. Saving such
a model as ``"gptq"`` warns; ``"gptq_v2"`` has no such limit.
"""
from __future__ import annotations

import importlib.metadata
import json
import pathlib
import warnings

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from qcourse.layers import QuantLinear
from qcourse.models import set_module
from qcourse.pack import pack_int32

FORMATS = ("gptq", "gptq_v2")
WEIGHTS_NAME = "model.safetensors"


def quant_linears(model: nn.Module) -> dict[str, QuantLinear]:
    """Every :class:`QuantLinear` of the model by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}


def _zero_offset(qzeros: torch.Tensor, bits: int) -> torch.Tensor:
    """The packed words of an all-ones zero-point tensor shaped like ``qzeros`` (int64)."""
    groups, words = qzeros.shape
    ones = torch.ones(groups, words * 32 // bits, dtype=torch.long)
    return pack_int32(ones, bits, dim=1).long() & 0xFFFFFFFF


def _wrap_int32(words: torch.Tensor) -> torch.Tensor:
    words = words % 2**32
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def zeros_to_v1(qzeros: torch.Tensor, bits: int) -> torch.Tensor:
    """True packed zero points -> the "gptq" format's ``zero - 1``, word by word mod 2^32."""
    return _wrap_int32((qzeros.long() & 0xFFFFFFFF) - _zero_offset(qzeros, bits))


def zeros_from_v1(qzeros: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`zeros_to_v1`."""
    return _wrap_int32((qzeros.long() & 0xFFFFFFFF) + _zero_offset(qzeros, bits))


def _version() -> str:
    try:
        return importlib.metadata.version("qcourse")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _uniform(layers: dict[str, QuantLinear], attr: str):
    values = {getattr(m, attr) for m in layers.values()}
    if len(values) != 1:
        raise ValueError(f"the GPTQ format has one {attr} per model, the model's quantized "
                         f"layers use {sorted(values, key=str)}")
    return values.pop()


def quantization_config(model: nn.Module, checkpoint_format: str = "gptq",
                        meta: dict | None = None) -> dict:
    """The ``quantization_config`` of a model whose linear layers are QuantLinear, as
    GPTQModel writes it. ``sym`` is true when every zero point is ``2^(b-1)``; ``desc_act``
    when some ``g_idx`` is not ``k // group_size``."""
    layers = quant_linears(model)
    if not layers:
        raise ValueError("the model has no QuantLinear layers: quantize it first "
                         "(qcourse.gptq.quantize_model)")
    bits = _uniform(layers, "bits")
    group_size = -1 if _uniform(layers, "per_channel") else _uniform(layers, "group_size")
    sym = all(bool((m.integers()[1] == 2 ** (bits - 1)).all()) for m in layers.values())
    desc_act = any(
        not torch.equal(m.g_idx.long(), torch.arange(m.in_features) // m.group_size)
        for m in layers.values())
    return {"bits": bits, "group_size": group_size,
            "desc_act": desc_act, "sym": sym, "lm_head": False, "quant_method": "gptq",
            "checkpoint_format": checkpoint_format, "pack_dtype": "int32",
            "meta": {"quantizer": [f"qcourse:{_version()}"],
                     **(meta or {})}}


def save_gptq_checkpoint(model: nn.Module, path: str | pathlib.Path, tokenizer=None, *,
                         checkpoint_format: str = "gptq", meta: dict | None = None
                         ) -> pathlib.Path:
    """Write ``model`` (linear layers already :class:`QuantLinear`) to the folder ``path``
    in the GPTQ layout; ``checkpoint_format`` "gptq" (zero - 1, the default of AutoGPTQ and
    GPTQModel) or "gptq_v2" (true zeros). ``meta`` (e.g. ``{"damp_percent": 0.01}``) is added
    to ``quantization_config.meta``. Returns the folder."""
    if checkpoint_format not in FORMATS:
        raise ValueError(f"checkpoint_format must be one of {FORMATS}, got {checkpoint_format!r}")
    config = quantization_config(model, checkpoint_format, meta)
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and getattr(model.config, "tie_word_embeddings", False):
            continue  # tied to the embedding: stored once, as transformers does
        tensors[name] = t.detach().contiguous()
    for name, layer in quant_linears(model).items():
        if checkpoint_format == "gptq":
            if (layer.integers()[1] == 0).any():
                warnings.warn(f"{name} has zero points equal to 0, which the 'gptq' format "
                              "stores as -1: this loader reads them back exactly, but kernels "
                              "that add 1 per unpacked value will not; prefer "
                              "checkpoint_format='gptq_v2'", stacklevel=2)
            tensors[f"{name}.qzeros"] = zeros_to_v1(layer.qzeros, layer.bits)
    save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    model_config = model.config.to_dict()
    model_config["quantization_config"] = config
    (path / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    (path / "quantize_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def load_gptq_checkpoint(path: str | pathlib.Path):
    """Read a folder written by :func:`save_gptq_checkpoint` (or in the same layout) back into
    ``(model, tokenizer)``: every layer with a ``qweight`` becomes a :class:`QuantLinear`
    holding the same integers, scales and ``g_idx``; the tokenizer is None if the folder has
    none."""
    path = pathlib.Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{path} holds no config.json: not a checkpoint folder")
    raw = json.loads(config_file.read_text())
    quant = raw.get("quantization_config")
    if not quant or quant.get("quant_method") != "gptq":
        raise ValueError(f"{config_file} has no GPTQ quantization_config")
    checkpoint_format = quant.get("checkpoint_format", "gptq")
    if checkpoint_format not in FORMATS:
        raise ValueError(f"unsupported checkpoint_format {checkpoint_format!r}; this loader "
                         f"reads {FORMATS}")
    bits = quant["bits"]
    group_size = None if quant["group_size"] in (-1, None) else quant["group_size"]
    config = AutoConfig.from_pretrained(path)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # build a float model; we swap the layers ourselves
    model = AutoModelForCausalLM.from_config(config)
    tensors = load_file(str(path / WEIGHTS_NAME))
    for key in [k for k in tensors if k.endswith(".qweight")]:
        name = key[: -len(".qweight")]
        packed_in, out_features = tensors[key].shape
        layer = QuantLinear(packed_in * 32 // bits, out_features, bits, group_size,
                            bias=f"{name}.bias" in tensors)
        set_module(model, name, layer)
        if checkpoint_format == "gptq":
            tensors[f"{name}.qzeros"] = zeros_from_v1(tensors[f"{name}.qzeros"], bits)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{path / WEIGHTS_NAME} does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    model.tie_weights()
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path) if (path / "tokenizer_config.json").exists() \
        else None
    return model, tokenizer
