"""Layer-by-layer ("true sequential") processing of a decoder, as GPTQ and AWQ do it.

Quantizing block ``i`` needs the inputs that block really sees *after* blocks ``0..i-1`` have been
quantized. So instead of one forward pass with hooks everywhere, we

1. run the calibration samples up to the first decoder block and keep what it receives
   (hidden states and the keyword arguments the model passes: position embeddings, mask, ...),
2. for each block in order: hand the block and its inputs to a callback (which collects statistics
   and quantizes the block in place), then run the *quantized* block on the inputs to get the next
   block's inputs.

Only one block's activations are held at a time: ``n × seq_len × hidden`` floats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from qcourse.calib import check_samples
from qcourse.models import decoder_layers


class _StopForward(Exception):
    """Raised by the capture hook once the first block's inputs are recorded."""


@dataclass
class BlockInputs:
    """What a decoder block receives: one hidden-state tensor [b, T, d] per batch, and the keyword
    arguments (position embeddings, attention mask, ...) that go with each batch."""
    hidden: list[torch.Tensor] = field(default_factory=list)
    kwargs: list[dict] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)


def _block_kwargs(kwargs: dict) -> dict:
    """The keyword arguments worth replaying: no KV cache, nothing that accumulates state."""
    drop = {"past_key_values", "past_key_value", "use_cache", "hidden_states"}
    return {k: v for k, v in kwargs.items() if k not in drop}


@torch.no_grad()
def capture_block_inputs(model: nn.Module, samples, *, batch_size: int = 8) -> BlockInputs:
    """Run ``samples`` (token ids [n, T] or a list of [b, T] tensors) through the embeddings and
    record the inputs of the first decoder block, without running the blocks."""
    batches = check_samples(samples)
    first = next(decoder_layers(model))
    captured = BlockInputs()

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.hidden.append(hidden.detach())
        captured.kwargs.append(_block_kwargs(kwargs))
        raise _StopForward

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            for chunk in batch.split(batch_size):
                try:
                    model(chunk.long(), use_cache=False)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return captured


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> list[torch.Tensor]:
    """The block's output hidden states for every batch of ``inputs``."""
    outputs = []
    for hidden, kwargs in zip(inputs.hidden, inputs.kwargs):
        out = block(hidden, **kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs


def sequential(model: nn.Module, samples, process: Callable[[int, nn.Module, BlockInputs], None],
               *, batch_size: int = 8, desc: str = "blocks", progress: bool = True) -> nn.Module:
    """Call ``process(index, block, inputs)`` for every decoder block in order, where ``inputs``
    are what the block sees given the already-processed blocks before it; ``process`` may modify
    the block in place (e.g. replace its linear layers by quantized ones). Returns the model."""
    inputs = capture_block_inputs(model, samples, batch_size=batch_size)
    blocks = list(decoder_layers(model))
    for index, block in enumerate(tqdm(blocks, desc=desc, disable=not progress)):
        process(index, block, inputs)
        inputs = BlockInputs(run_block(block, inputs), inputs.kwargs)
    return model
