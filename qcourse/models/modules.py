"""Looking inside a model and swapping its layers: the names every method uses to find the
linear layers of a decoder and to put quantized ones in their place."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn


def linear_layers(model: nn.Module, *, include_head: bool = False) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` of the model by its qualified name, in forward order.

    The output head (``lm_head``) is left out unless ``include_head``: with tied embeddings it
    shares its weight with the input embedding, and quantization methods usually skip it.
    """
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (include_head or not name.endswith("lm_head"))
    }


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (e.g. ``"model.layers.0.self_attn.q_proj"``)."""
    try:
        return model.get_submodule(name)
    except AttributeError as err:
        raise ValueError(f"model has no submodule {name!r}") from err


def set_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Replace the submodule ``name`` by ``new``; returns the module that was there."""
    parent_name, _, child = name.rpartition(".")
    parent = get_module(model, parent_name) if parent_name else model
    old = get_module(model, name)
    setattr(parent, child, new)
    return old


def swap_linears(
    model: nn.Module,
    make: Callable[[str, nn.Linear], nn.Module],
    *,
    include_head: bool = False,
) -> nn.Module:
    """Replace every linear layer by ``make(name, linear)``, in place; returns the model."""
    for name, linear in list(linear_layers(model, include_head=include_head).items()):
        set_module(model, name, make(name, linear))
    return model


def decoder_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The transformer blocks of a Llama-family model, in order."""
    return iter(model.model.layers)


def parameter_count(model: nn.Module) -> int:
    """Number of distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
