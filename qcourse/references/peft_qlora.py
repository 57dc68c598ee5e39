"""QLoRA as people run it: peft's LoRA adapters on a bitsandbytes NF4 base, on the CPU.

    base  = from_pretrained(name, quantization_config=BitsAndBytesConfig(load_in_4bit=True,
                bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True))
    model = peft.get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=[...]))
    ... train (only the lora_A / lora_B weights require gradients) ...
    merged = model.merge_and_unload()

the production counterpart of :mod:`qcourse.qlora` (our LoRA over :class:`~qcourse.layers.NF4Linear`).
Two differences to keep in mind when comparing them: with double quantization bitsandbytes also
quantizes the per-block absmax values (to 8 bits, in blocks of 256), where ``NF4Linear`` keeps
them in float32; and merging into a 4-bit base re-quantizes the merged weight to NF4 (peft
warns that this can lose precision), where :func:`qcourse.qlora.merge` keeps it in float.

**Keep the model in training mode.** On a CPU with AVX512-BF16, bitsandbytes 0.50.2 repacks a
``Linear4bit`` weight into a CPU kernel layout at its first forward pass in eval mode without
gradients. After that its own ``dequantize_4bit`` (what the backward pass and peft's
``merge_and_unload`` call) reads the repacked bytes as if they were not: measured on
qcourse-tiny, a merge after one such pass changed the logits by up to 16. In training mode it
never repacks (LoRA dropout is 0 here, so training mode computes the same function):
:func:`load_qlora` and :func:`train` leave the model there, and :func:`merge` refuses a
repacked model.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from qcourse.training import fine_tune
from qcourse.references.bnb import load_bnb

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def require_peft():
    """Import peft, or say how to install it."""
    try:
        import peft
    except ImportError as err:
        raise ImportError("peft is not installed: pip install peft") from err
    return peft


def load_qlora(name: str = "qcourse-tiny", rank: int = 8, alpha: float = 16.0) -> nn.Module:
    """Model ``name`` loaded in NF4 with double quantization by bitsandbytes, with peft LoRA
    adapters of rank ``rank`` on every linear layer but the head (``PeftModel``)."""
    peft = require_peft()
    base = load_bnb("nf4", name, double_quant=True)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                             target_modules=list(TARGETS), task_type="CAUSAL_LM")
    return peft.get_peft_model(base, config).train()


def base_name(peft_name: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj`` -> ``model.layers.0.self_attn.q_proj``
    (the layer's name in the plain model)."""
    return peft_name.removeprefix("base_model.model.")


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """peft's LoRA layers of a ``PeftModel`` by their name in the plain model."""
    return {base_name(name): m for name, m in model.named_modules()
            if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}


def lora_weights(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer name: (A [r, K], B [N, r])}`` of a ``PeftModel`` (copies)."""
    return {name: (m.lora_A["default"].weight.detach().clone(),
                   m.lora_B["default"].weight.detach().clone())
            for name, m in lora_layers(model).items()}


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters peft left trainable (the adapters)."""
    return [p for p in model.parameters() if p.requires_grad]


def train(model: nn.Module, tokenizer, steps: int, *, lr: float = 2e-4, batch_size: int = 8,
          seq_len: int = 256, seed: int = 0, domain: str | None = None,
          progress: bool = True) -> dict:
    """Train the adapters of a ``PeftModel`` with :func:`qcourse.training.fine_tune` (the loop our
    QLoRA uses); the model is left in training mode (see the module docstring)."""
    log = fine_tune(model, tokenizer, steps, [{"params": trainable_parameters(model), "lr": lr}],
                    batch_size=batch_size, seq_len=seq_len, seed=seed, domain=domain,
                    progress=progress, desc="peft QLoRA")
    model.train()
    return log


def repacked_layers(model: nn.Module) -> list[str]:
    """Names of the ``Linear4bit`` weights bitsandbytes has repacked for its CPU kernel."""
    return [name for name, m in model.named_modules()
            if getattr(getattr(getattr(m, "weight", None), "quant_state", None),
                       "packing_format_for_cpu", False)]


def merge(model: nn.Module) -> nn.Module:
    """peft's ``merge_and_unload()``: the adapters added into the 4-bit base weights (which
    bitsandbytes re-quantizes to NF4); returns the plain model. Refuses a model whose weights
    bitsandbytes repacked (an eval-mode forward pass on the CPU), which it would merge wrongly."""
    repacked = repacked_layers(model)
    if repacked:
        raise RuntimeError(f"{len(repacked)} Linear4bit weights (e.g. {repacked[0]}) were "
                           "repacked for bitsandbytes' CPU kernel by a forward pass in eval "
                           "mode; merging them would read the wrong layout. Keep the model in "
                           "training mode (model.train()) before its forward passes.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # "Merge lora module to 4-bit linear may get different generations..."
        return model.merge_and_unload()
