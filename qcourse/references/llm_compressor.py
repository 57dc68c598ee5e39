"""llm-compressor (vLLM project): the same GPTQ jobs run by its ``GPTQModifier``.

Used by the cross-check tests, ``benchmarks/gptq.py`` and notebook 04. llm-compressor (vLLM
project) is the maintained successor of AutoGPTQ for producing GPTQ-style checkpoints; version
0.14 runs its GPTQ on the CPU. Two differences from the original GPTQ matter when comparing:

* its scales and zero points come from the *original* weight (min-max per group, computed
  before any column is quantized) -- what :func:`qcourse.gptq.gptq` calls ``static_groups``;
  GPTQ/AutoGPTQ/GPTQModel recompute them from the updated weights at every group boundary.
* its activation ordering ("weight", alias "static") keeps those natural groups, so the
  checkpoint needs no ``g_idx`` reordering at inference.

Only asymmetric integer schemes are wrapped here: its symmetric grid (``scale = absmax / 7.5``
at 4 bits) differs from the course's (``absmax / 7``).
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from qcourse.layers import QuantLinear
from qcourse.models import decoder_layers, set_module
from qcourse.quant import QuantScheme


def unavailable_reason() -> str | None:
    """Why llm-compressor cannot be used here, or None if it can."""
    for module in ("llmcompressor", "compressed_tensors", "datasets"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install llmcompressor)"
    try:
        from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight  # noqa: F401
    except Exception as err:  # an import error of the installed versions
        return f"llmcompressor does not import: {type(err).__name__}: {err}"
    return None


def _args(bits: int, group_size: int, act_order: bool):
    from compressed_tensors.quantization import QuantizationArgs
    return QuantizationArgs(num_bits=bits, type="int", symmetric=False, strategy="group",
                            group_size=group_size, actorder="weight" if act_order else None)


def quantize_layer(W: torch.Tensor, H: torch.Tensor, bits: int, group_size: int, *,
                   act_order: bool = False, block_size: int = 128, damp: float = 0.01,
                   ) -> torch.Tensor:
    """llm-compressor's GPTQ (``quantize_weight``) on one weight ``W [N, K]`` with Hessian
    ``H [K, K]``, asymmetric ``bits``-bit groups; returns its dequantized weight ``[N, K]``.
    The grid comes from compressed-tensors' min-max ``calculate_qparams``, as its observer does."""
    from compressed_tensors.quantization.utils import calculate_qparams
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    args = _args(bits, group_size, act_order)
    grouped = W.float().reshape(W.shape[0], -1, group_size)
    scale, zero = calculate_qparams(grouped.amin(-1), grouped.amax(-1), args)
    Q, _, _ = quantize_weight(W.float()[None].clone(), H.float()[None].clone(), scale[None],
                              zero[None], None, args, blocksize=block_size, percdamp=damp)
    return Q[0]


def quantize_model(model: nn.Module, samples: torch.Tensor, bits: int = 4, group_size: int = 128,
                   *, act_order: bool = False, block_size: int = 128, damp: float = 0.01,
                   ) -> nn.Module:
    """llm-compressor's ``oneshot`` with a ``GPTQModifier`` on ``model`` (in place) with the
    calibration ``samples [n, T]``; then every quantized linear layer is stored as a
    :class:`QuantLinear` from its ``weight_scale``/``weight_zero_point``, so that size and
    perplexity are measured exactly as for the course's own methods. Returns the model."""
    from compressed_tensors.quantization import QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier

    scheme = QuantizationScheme(targets=["Linear"], weights=_args(bits, group_size, False))
    recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"],
                          block_size=block_size, dampening_frac=damp,
                          actorder="weight" if act_order else None)
    dataset = Dataset.from_dict({"input_ids": samples.tolist(),
                                 "attention_mask": torch.ones_like(samples).tolist()})
    oneshot(model=model, dataset=dataset, recipe=recipe, num_calibration_samples=len(samples),
            max_seq_length=samples.shape[1])
    return store_as_quant_linear(model, bits, group_size)


def store_as_quant_linear(model: nn.Module, bits: int, group_size: int) -> nn.Module:
    """Replace each linear layer that llm-compressor quantized (it has ``weight_scale`` and
    ``weight_zero_point``, signed zero points in ``[-2^(b-1), 2^(b-1))``) by a QuantLinear
    holding the same integers on the unsigned grid: zero ``z + 2^(b-1)``,
    ``q = clamp(round(W / s + z + 2^(b-1)), 0, 2^b - 1)``."""
    grid = QuantScheme(bits, group_size)
    for index, block in enumerate(decoder_layers(model)):
        for name, module in list(block.named_modules()):
            if not isinstance(module, nn.Linear) or not hasattr(module, "weight_scale"):
                continue
            scale = module.weight_scale.detach().float()
            zero = module.weight_zero_point.detach().float() + 2 ** (bits - 1)
            W = module.weight.detach().float()
            g = grid.group_size_for(W.shape[1])
            q = grid.apply_grid(W, scale.repeat_interleave(g, 1), zero.repeat_interleave(g, 1))
            layer = QuantLinear.from_quantized(q.to(torch.uint8), scale, zero, bits, group_size)
            set_module(model, f"model.layers.{index}.{name}", layer)
    return model
