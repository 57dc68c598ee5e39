"""torchao 0.18's quantization-aware training on the CPU: the maintained PyTorch QAT that
:mod:`qcourse.qat` is checked against.

    quantize_(model, QATConfig(base, step="prepare"))    # nn.Linear -> FakeQuantizedLinear
    ... train ...                                          # (here: qcourse.training.fine_tune)
    quantize_(model, QATConfig(base, step="convert"))    # -> real int weights (IntxUnpackedToInt8Tensor)

with ``base`` either ``IntxWeightOnlyConfig(weight_dtype=torch.intB, granularity=PerGroup(g))``
(weight-only) or ``Int8DynamicActivationIntxWeightConfig`` (plus int8 activations per token).
On the CPU these two convert; ``Int4WeightOnlyConfig`` and the float8 configs do not.

What torchao computes, next to :mod:`qcourse.qat` (``tests/test_torchao_qat.py`` checks it):

* weights: a **symmetric** grid ``q ∈ [-2^(b-1), 2^(b-1) - 1]`` (``QATConfig`` from an
  ``IntxWeightOnlyConfig`` accepts no other in 0.18; its fake quantizer alone,
  ``IntxFakeQuantizeConfig``, also has ``is_symmetric=False`` and ``range_learning``, with a
  convert step of your own),
  recomputed from the current weights at every step, ``s = max|w| / ((qmax - qmin)/2)``
  (``/7.5`` at 4 bits, where :class:`~qcourse.quant.QuantScheme` divides by ``qmax = 7``), a
  float32 scale (ours is stored as fp16), ``round`` half to even with a straight-through
  gradient (``_Round``) and ``clamp``: on one shared scale the two grids are the same, except
  that torchao computes ``u = w·(1/s)`` where we compute ``w/s`` (they can round differently at
  an exact tie: the group's absmax weight, at ``u = ±7.5``);
* its backward pass clamps *after* rounding, so the gradient passes wherever ``round(u)`` is on
  the grid, up to half a step beyond its ends; our clipped STE (LSQ's rule) passes it only for
  ``qmin <= u <= qmax``. On torchao's own grid that differs for the weights with
  ``7 < u < 7.5`` (4 bits); on ours nothing lies beyond the grid;
* activations: asymmetric int8 per token, min-max: the same grid as
  :func:`qcourse.qat.fake_quantize_tokens`.

Importing torchao on a CPU-only machine prints that its CUDA extensions could not be loaded;
harmless here.
"""
from __future__ import annotations

import torch
from torch import nn

MODES = ("weight-only", "int8-activations")


def require_torchao():
    """Import torchao's quantization API, or say how to install it."""
    try:
        import torchao.quantization
    except ImportError as err:
        raise ImportError("torchao is not installed: pip install torchao==0.18.0") from err
    return torchao.quantization


def base_config(bits: int, group_size: int, mode: str = "weight-only"):
    """The torchao base config for ``bits``-bit symmetric weights in groups of ``group_size``:
    ``IntxWeightOnlyConfig`` or, for ``mode="int8-activations"``,
    ``Int8DynamicActivationIntxWeightConfig``."""
    quantization = require_torchao()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(bits, bool) or bits not in range(2, 9):
        raise ValueError(f"bits must be an integer from 2 to 8, got {bits!r}")
    dtype = getattr(torch, f"int{bits}")
    if mode == "weight-only":
        return quantization.IntxWeightOnlyConfig(weight_dtype=dtype,
                                                 granularity=quantization.PerGroup(group_size))
    return quantization.Int8DynamicActivationIntxWeightConfig(
        weight_dtype=dtype, weight_granularity=quantization.PerGroup(group_size))


def not_the_head(module: nn.Module, name: str) -> bool:
    """torchao's ``filter_fn``: every linear layer but the output head (as qcourse quantizes)."""
    return isinstance(module, nn.Linear) and not name.endswith("lm_head")


def qat_step(model: nn.Module, step: str, bits: int, group_size: int,
             mode: str = "weight-only") -> nn.Module:
    """``quantize_(model, QATConfig(base_config(...), step=step))`` on every linear layer but
    the head, in place; returns the model. ``step``: "prepare" or "convert"."""
    quantization = require_torchao()
    from torchao.quantization.qat import QATConfig

    config = QATConfig(base_config(bits, group_size, mode), step=step)
    quantization.quantize_(model, config, filter_fn=not_the_head)
    return model


def prepare(model: nn.Module, bits: int, group_size: int, mode: str = "weight-only") -> nn.Module:
    """torchao's QAT prepare step: every linear layer (not the head) becomes a
    ``FakeQuantizedLinear``."""
    return qat_step(model, "prepare", bits, group_size, mode)


def convert(model: nn.Module, bits: int, group_size: int, mode: str = "weight-only") -> nn.Module:
    """torchao's QAT convert step: fake-quantized layers become linear layers holding torchao's
    quantized weight tensors. Pass the same ``bits``, ``group_size``, ``mode`` as to prepare."""
    return qat_step(model, "convert", bits, group_size, mode).eval()


def fake_quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """torchao's ``FakeQuantizedLinear`` layers of ``model`` by name."""
    require_torchao()
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantizedLinear)}


@torch.no_grad()
def fake_quantized_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ŵ [N, K], scale [N, K/g])``: torchao's fake-quantized weight of a
    ``FakeQuantizedLinear`` and the per-group scale it used."""
    quantizer = layer.weight_fake_quantizer
    w = quantizer(layer.weight)
    return w, quantizer.scale.reshape(layer.out_features, -1).float()


@torch.no_grad()
def fake_quantized_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchao's per-token int8 fake quantization of ``x`` by a ``FakeQuantizedLinear``
    prepared with ``Int8DynamicActivationIntxWeightConfig``."""
    return layer.activation_fake_quantizer(x)


def converted_weight(layer: nn.Module) -> torch.Tensor:
    """The float weight a converted torchao linear layer computes with (its quantized tensor,
    dequantized)."""
    return layer.weight.dequantize().float()
