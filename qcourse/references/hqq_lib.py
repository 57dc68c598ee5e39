"""The ``hqq`` package (Mobius Labs, 0.2.8) on the CPU: the production HQQ that
:mod:`qcourse.hqq` is checked against, and the HQQ backend of transformers' quantized KV cache.

* :func:`quantize_weight`: ``hqq.core.quantize.Quantizer.quantize`` on one matrix (its
  half-quadratic solver with its defaults, float32 on the CPU), read back as codes, scale, zero.
* :func:`quantize_model`: every linear layer through ``HQQLinear`` with ``BaseQuantizeConfig``
  (hqq's own model path), replaced by an ``nn.Linear`` holding hqq's dequantized weight.
* :func:`quantized_cache`: ``transformers.QuantizedCache(backend="hqq")``, the KIVI-style cache
  (the newest ``residual_length`` tokens in float, the rest quantized by hqq without its
  optimizer, i.e. min-max with a float zero).

transformers imports ``hqq`` by itself when it is installed; importing :mod:`qcourse.hqq` does not.
"""
from __future__ import annotations

import torch
from torch import nn

from qcourse.models import linear_layers, set_module


def require_hqq():
    """Import hqq's quantizer, or say how to install it."""
    try:
        from hqq.core import quantize
    except ImportError as err:
        raise ImportError("hqq is not installed: pip install hqq==0.2.8.post1") from err
    return quantize


def quantize_weight(W: torch.Tensor, bits: int = 4, group_size: int = 64, *,
                    optimize: bool = True, round_zero: bool | None = None) -> dict[str, torch.Tensor]:
    """hqq's quantization of ``W [N, K]`` in groups of ``group_size`` inputs (axis 1):
    ``q [N, K]`` (uint8), ``scale`` and ``zero`` ``[N, K/g]`` (float32) and ``dequantized``
    (its ``Quantizer.dequantize``). ``round_zero`` defaults to hqq's ``BaseQuantizeConfig``
    (rounded start for 4 bits)."""
    hqq = require_hqq()
    round_zero = bits == 4 if round_zero is None else round_zero
    q, meta = hqq.Quantizer.quantize(W.detach().float(), nbits=bits, channel_wise=True,
                                     group_size=group_size, optimize=optimize,
                                     round_zero=round_zero, axis=1, bitpack=False, device="cpu")
    meta["compute_dtype"] = torch.float32
    n, k = W.shape
    return {"q": q.reshape(n, k).to(torch.uint8), "scale": meta["scale"].reshape(n, k // group_size),
            "zero": meta["zero"].reshape(n, k // group_size),
            "dequantized": hqq.Quantizer.dequantize(q, meta)}


def quantize_model(model: nn.Module, bits: int = 4, group_size: int = 64) -> nn.Module:
    """Quantize every linear layer (not the head) with hqq's ``HQQLinear`` and
    ``BaseQuantizeConfig(nbits, group_size)``, in place, keeping hqq's dequantized weights in
    plain ``nn.Linear`` layers (float32)."""
    hqq = require_hqq()
    config = hqq.BaseQuantizeConfig(nbits=bits, group_size=group_size)
    for name, linear in list(linear_layers(model).items()):
        layer = hqq.HQQLinear(linear, config, compute_dtype=torch.float32, device="cpu",
                              del_orig=False)
        plain = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        plain.weight.data = layer.dequantize().float().reshape(linear.weight.shape)
        if linear.bias is not None:
            plain.bias.data = linear.bias.data.clone()
        set_module(model, name, plain)
    return model


def quantized_cache(config, bits: int = 4, group_size: int = 64, residual_length: int = 128,
                    axis: int = 1):
    """transformers' ``QuantizedCache(backend="hqq")`` for a model ``config``: keys and values
    quantized by hqq in groups of ``group_size`` along ``axis`` (1: consecutive values of the
    flattened ``[batch, heads, tokens, head_dim]`` tensor, i.e. along head_dim = one group per
    token and head when ``group_size`` = head_dim), the newest ``residual_length`` tokens kept in
    float."""
    require_hqq()
    from transformers import QuantizedCache

    return QuantizedCache("hqq", config, nbits=bits, axis_key=axis, axis_value=axis,
                          q_group_size=group_size, residual_length=residual_length)
