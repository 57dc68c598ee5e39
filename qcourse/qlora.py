"""QLoRA (Dettmers et al., 2023): fine-tune a 4-bit model through low-rank adapters.

Every linear layer keeps its weight frozen in NF4 (:class:`~qcourse.layers.NF4Linear`) and gains
a trainable update of rank ``r`` (LoRA; Hu et al., 2021):

    y = x · W'ᵀ + (α / r) · (x · Aᵀ) · Bᵀ        W' [N, K] NF4 (frozen),  A [r, K],  B [N, r]

``A`` starts Kaiming-uniform and ``B`` at zero (as LoRA and peft do), so training starts from the
quantized model itself. Only ``A`` and ``B`` get gradients and optimizer state: ``r·(K + N)``
numbers per layer instead of ``N·K``. Afterwards the adapters can be merged into one float
weight, ``W' + (α/r)·B·A``, which computes the same function without the extra matmuls.

QAT trains *through* the quantizer, so the quantized weights themselves adapt; QLoRA trains
*around* it: the 4-bit weights never change, the adapters (kept in 16/32 bits) learn the task.

``prepare(model, base="float")`` keeps the frozen base in float instead (plain LoRA): the control
that says how much of a QLoRA result the 4-bit base costs.

**Double quantization.** NF4 keeps one float32 absmax per block of 64 weights: 4 + 32/64 = 4.5
bits per weight (what :class:`~qcourse.layers.NF4Linear` stores). QLoRA quantizes those
constants again, to 8 bits in blocks of 256 (after subtracting their mean), with one float32
constant per block of 256: 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per weight
(:func:`storage_bits`; bitsandbytes' ``bnb_4bit_use_double_quant``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qcourse.layers import NF4Linear, QuantizedLinear
from qcourse.nf4 import BLOCK_SIZE as NF4_BLOCK
from qcourse.models import linear_layers, set_module
from qcourse.training import fine_tune


class LoRALinear(nn.Module):
    """A frozen layer ``base`` (quantized, or float for plain LoRA) plus a trainable low-rank
    update ``(α/r)·B·A``."""

    def __init__(self, base: QuantizedLinear | nn.Linear, rank: int = 8, alpha: float = 16.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if rank > min(base.in_features, base.out_features):
            raise ValueError(f"rank {rank} exceeds the layer's smaller side "
                             f"({min(base.in_features, base.out_features)})")
        self.base, self.rank, self.scaling = base, rank, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        bound = 1 / math.sqrt(base.in_features)        # kaiming_uniform_(a=√5), as nn.Linear
        with torch.no_grad():
            self.lora_A.uniform_(-bound, bound, generator=generator)

    def delta(self) -> torch.Tensor:
        """The update ``(α/r)·B·A`` ``[N, K]``."""
        return self.scaling * self.lora_B @ self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)    # [..., r] -> [..., N]
        return self.base(x) + self.scaling * update

    def base_weight(self) -> torch.Tensor:
        """The frozen base weight ``W' [N, K]`` in float: dequantized (NF4), or the float
        weight itself (a plain ``nn.Linear`` base)."""
        weight = self.base.weight
        return (weight if isinstance(weight, torch.Tensor) else weight()).detach().float()

    def merged(self) -> nn.Linear:
        """One float ``nn.Linear`` with weight ``W' + (α/r)·B·A`` (and the base's bias)."""
        bias = self.base.bias
        linear = nn.Linear(self.base.in_features, self.base.out_features, bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.base_weight() + self.delta())
            if bias is not None:
                linear.bias.copy_(bias)
        return linear

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}"


BASES = ("nf4", "float")


def storage_bits(block_size: int = NF4_BLOCK, double_quant_block: int | None = None) -> float:
    """Bits per weight of an NF4 base: ``4 + 32/block_size`` (a float32 absmax per block), or
    with double quantization (8-bit absmax values, one float32 constant per
    ``double_quant_block`` of them) ``4 + 8/block_size + 32/(block_size·double_quant_block)``."""
    for name, value in (("block_size", block_size), ("double_quant_block", double_quant_block)):
        if value is None and name == "double_quant_block":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if double_quant_block is None:
        return 4 + 32 / block_size
    return 4 + 8 / block_size + 32 / (block_size * double_quant_block)


def prepare(model: nn.Module, rank: int = 8, alpha: float = 16.0, *, seed: int = 0,
            base: str = "nf4") -> nn.Module:
    """QLoRA's model: every linear layer (not the output head) stored in NF4 and wrapped in a
    :class:`LoRALinear`; every other parameter (embeddings, norms) frozen. In place; returns
    the model. ``seed`` draws the ``A`` matrices (the same for either base); ``base="float"``
    keeps each frozen linear layer in float (plain LoRA, the control)."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    linears = linear_layers(model)
    if not linears:
        raise ValueError("the model has no nn.Linear layer (besides an output head) to adapt")
    generator = torch.Generator().manual_seed(seed)
    model.requires_grad_(False)
    for name, linear in linears.items():
        frozen = NF4Linear.from_float(linear) if base == "nf4" else linear
        set_module(model, name, LoRALinear(frozen, rank, alpha, generator))
    return model


def adapters(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` of ``model`` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable ``A`` and ``B`` of every adapter."""
    return [p for layer in adapters(model).values() for p in (layer.lora_A, layer.lora_B)]


def train(model: nn.Module, tokenizer, steps: int, *, lr: float = 2e-4, batch_size: int = 8,
          seq_len: int = 256, seed: int = 0, domain: str | None = None,
          progress: bool = True) -> dict:
    """Train the adapters of a prepared model on the train split (``domain`` "prose" or
    "code": that half only); returns the log of :func:`qcourse.training.fine_tune`."""
    params = adapter_parameters(model)
    if not params:
        raise ValueError("the model has no LoRA adapters: call qlora.prepare(model) first")
    return fine_tune(model, tokenizer, steps, [{"params": params, "lr": lr}],
                     batch_size=batch_size, seq_len=seq_len, seed=seed, domain=domain,
                     progress=progress, desc="QLoRA")


def merge(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by its merged float ``nn.Linear``, in place; returns
    the model (the same function, one matmul per layer, float weights)."""
    layers = adapters(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to merge")
    for name, layer in layers.items():
        set_module(model, name, layer.merged())
    return model
