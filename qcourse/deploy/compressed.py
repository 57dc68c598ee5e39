"""Writing a quantized model as a compressed-tensors checkpoint: the format vLLM serves.

llm-compressor (the vLLM project's quantizer) saves GPTQ and AWQ results in the
*compressed-tensors* format, which vLLM and transformers load. Its ``pack-quantized`` layout
stores, for every quantized linear layer ``<name>`` with weight ``W [N, K]``, ``b`` bits and
groups of ``g`` inputs (compressed-tensors 0.19, ``PackedQuantizationCompressor``)::

    <name>.weight_packed      int32 [N, K·b/32]   codes packed along the input dimension
    <name>.weight_scale       fp16  [N, K/g]
    <name>.weight_zero_point  int32 [N·b/32, K/g] zero points packed along the output dimension
                                                  (asymmetric schemes only)
    <name>.weight_shape       int64 [2]           (N, K)

    W[n, k] = (q[n, k] − z[n, k // g]) · s[n, k // g]

Codes are signed in compressed-tensors (``q − 2^(b−1)``) but packed with ``2^(b−1)`` added back,
so the packed words hold exactly the unsigned codes of :class:`qcourse.layers.QuantLinear`, in
the same little-endian bit stream as :func:`qcourse.pack.pack_int32` (value j at bits
``[j·b, (j+1)·b)``): only the axis differs from the GPTQ layout (rows of W here, columns
there). ``config.json`` carries the scheme as ``quantization_config`` (``quant_method
"compressed-tensors"``, ``format "pack-quantized"``), the output head stays float (``ignore``).

:func:`gptq_to_compressed` turns a GPTQ checkpoint written by
:func:`qcourse.gptq_checkpoint.save_gptq_checkpoint` into this format, integers unchanged.
"""
from __future__ import annotations

import json
import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

from qcourse.gptq_checkpoint import load_gptq_checkpoint, quant_linears
from qcourse.layers import QuantLinear
from qcourse.pack import pack_int32

WEIGHTS_NAME = "model.safetensors"


def layer_tensors(layer: QuantLinear, symmetric: bool) -> dict[str, torch.Tensor]:
    """The compressed-tensors tensors of one layer (names without the layer prefix)."""
    q, zero = layer.integers()                                   # [N, K], [N, K/g] unsigned
    if not torch.equal(layer.g_idx.long(), torch.arange(layer.in_features) // layer.group_size):
        raise ValueError("this layer's input columns are not in natural group order (GPTQ "
                         "act-order with a g_idx): compressed-tensors 0.19 removed that layout "
                         "(actorder 'group'); quantize without act-order, or with act-order and "
                         "static groups (llm-compressor's actorder 'weight')")
    out = {"weight_packed": pack_int32(q.long(), layer.bits, dim=1).contiguous(),
           "weight_scale": layer.scales.t().contiguous(),
           "weight_shape": torch.tensor([layer.out_features, layer.in_features])}
    if not symmetric:
        out["weight_zero_point"] = pack_int32(zero.long(), layer.bits, dim=0).contiguous()
    if layer.bias is not None:
        out["bias"] = layer.bias.detach().contiguous()
    return out


def quantization_config(layers: dict[str, QuantLinear]) -> dict:
    """The ``quantization_config`` of a model whose quantized layers are ``layers`` (one bit
    width and group size for all; symmetric when every zero point is ``2^(b−1)``)."""
    if not layers:
        raise ValueError("the model has no QuantLinear layers: quantize it first")
    schemes = {(m.bits, m.group_size if not m.per_channel else None) for m in layers.values()}
    if len(schemes) != 1:
        raise ValueError(f"one scheme per checkpoint is written here, the layers use {schemes}")
    (bits, group_size), = schemes
    symmetric = all(bool((m.integers()[1] == 2 ** (bits - 1)).all()) for m in layers.values())
    weights = {"num_bits": bits, "type": "int", "symmetric": symmetric,
               "strategy": "group" if group_size else "channel", "group_size": group_size,
               "dynamic": False, "actorder": None}
    return {"quant_method": "compressed-tensors", "format": "pack-quantized",
            "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": None, "output_activations": None,
                                          "format": "pack-quantized"}},
            "ignore": ["lm_head"], "kv_cache_scheme": None}


def save_compressed(model: nn.Module, path: str | pathlib.Path, tokenizer=None) -> pathlib.Path:
    """Write ``model`` (linear layers :class:`QuantLinear`) to the folder ``path`` as a
    compressed-tensors pack-quantized checkpoint; returns the folder."""
    layers = quant_linears(model)
    config = quantization_config(layers)
    symmetric = config["config_groups"]["group_0"]["weights"]["symmetric"]
    tied = getattr(model.config, "tie_word_embeddings", False)
    tensors = {}
    for name, t in model.state_dict().items():
        owner = name.rsplit(".", 1)[0]
        if owner in layers or (name == "lm_head.weight" and tied):
            continue                         # written below / tied to the embedding
        tensors[name] = t.detach().contiguous()
    for name, layer in layers.items():
        tensors.update({f"{name}.{k}": v for k, v in layer_tensors(layer, symmetric).items()})
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    model_config = model.config.to_dict()
    model_config["quantization_config"] = config
    (path / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def gptq_to_compressed(src: str | pathlib.Path, dst: str | pathlib.Path) -> pathlib.Path:
    """Rewrite the GPTQ checkpoint folder ``src`` as a compressed-tensors folder ``dst``."""
    model, tokenizer = load_gptq_checkpoint(src)
    return save_compressed(model, dst, tokenizer)
