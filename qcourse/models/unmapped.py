"""Changing a memory-mapped model in place without keeping the file's pages.

:mod:`qcourse.models.mapped` gives a memory-mapped checkpoint's pages back to the operating
system block by block, but only the pages the program never wrote. A method that changes weights
in place before quantizing them (AWQ folds its scales into the norms and linear layers,
SmoothQuant into the norms) turns every page it writes into a private copy that stays in memory
until the model is dropped: for SmolLM2, most of its 0.54 GB of float32 weights, although each
written layer is replaced by a quantized one a moment later.

:func:`copied_when_run` copies each decoder block's parameters into ordinary memory just before
the block first runs, and gives the file's pages back (:func:`~qcourse.models.mapped.release`).
A block-by-block method (:func:`qcourse.blocks.sequential` runs each block before changing it)
then writes into memory that is freed with the layer it replaces: the process holds one block's
float copy at a time, besides what the method keeps.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .mapped import release
from .modules import decoder_layers


@contextlib.contextmanager
def copied_when_run(model: nn.Module) -> Iterator[None]:
    """Within the block, a decoder block of ``model`` that runs for the first time first gets
    its parameters copied out of the memory-mapped file (same values, ordinary memory), and the
    model's mapped pages are released. Blocks that never run stay as they are; the hooks are
    removed on exit."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pending: dict[int, torch.utils.hooks.RemovableHandle] = {}

    def copy_out(block: nn.Module, args) -> None:
        handle = pending.pop(id(block), None)
        if handle is None:
            return
        handle.remove()
        with torch.no_grad():
            for parameter in block.parameters():
                parameter.data = parameter.data.clone()
        release(model)

    for block in decoder_layers(model):
        pending[id(block)] = block.register_forward_pre_hook(copy_out)
    try:
        yield
    finally:
        for handle in pending.values():
            handle.remove()
