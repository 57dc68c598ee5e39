"""Loading models, and small helpers to look inside them and swap their layers.

``load("qcourse-tiny")`` gives the embedded default model, shipped in ``data/qcourse-tiny`` and
usable offline. Any other name is a local folder or a Hugging Face Hub id (e.g.
``"HuggingFaceTB/SmolLM2-135M"``), which needs the network unless it is already cached.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig
from transformers.utils import logging as hf_logging

from qcourse.paths import TINY_DIR

DEFAULT_MODEL = "qcourse-tiny"


def tiny_config() -> LlamaConfig:
    """The shape of ``qcourse-tiny``: a 6-layer Llama, hidden 256, 4 query / 2 key-value heads."""
    return LlamaConfig(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve(name: str) -> pathlib.Path | str:
    """The folder (for the embedded model or a local path) or hub id that ``name`` refers to."""
    if name == DEFAULT_MODEL:
        if not (TINY_DIR / "config.json").exists():
            raise FileNotFoundError(
                f"the embedded model is missing from {TINY_DIR}; run `qcourse train-tiny` "
                "or restore data/qcourse-tiny from the repository"
            )
        return TINY_DIR
    path = pathlib.Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ValueError(f"{path} exists but holds no config.json: not a model folder")
        return path
    return name


def load(name: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32):
    """Load ``(model, tokenizer)``; the model is in eval mode on the CPU.

    ``name``: ``"qcourse-tiny"`` (default, offline), a local model folder, or a Hub id.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    source = resolve(name)
    hf_logging.disable_progress_bar()  # a 56-tensor model needs no progress bar in every cell
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as err:
        if isinstance(source, pathlib.Path):
            raise
        hint = " (HF_HUB_OFFLINE is set)" if _offline() else ""
        raise ValueError(
            f"could not load {name!r} from the Hugging Face Hub{hint}: it is not a local folder "
            f"and is not in the local cache. Offline, use the embedded model "
            f"{DEFAULT_MODEL!r} (the default), or pass a local model folder."
        ) from err
    model.eval()
    return model, tokenizer


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
