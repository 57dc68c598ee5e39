"""Memory-mapped weights: give a checkpoint's pages back to the operating system.

transformers loads a safetensors checkpoint by mapping the file into memory: each weight is a
view of the file, and a page of it takes memory only once something reads it. A forward pass
reads every weight, so after one pass the whole file is resident (SmolLM2-135M in float32:
0.54 GB) although each decoder block needs its weights only while it runs. Large-model runtimes
live with this the same way (llama.cpp maps its GGUF file; accelerate offloads blocks to disk).

:func:`release` asks the kernel to reclaim the resident pages of the file behind a model's
weights now (``madvise(MADV_PAGEOUT)``, Linux 5.4 and later). A page the program never wrote is
dropped and read back from the file the next time it is touched; a page it wrote (a weight
rounded in place is a private copy) is never discarded, so no value changes, only where it
lives. :func:`streaming` releases after every decoder block, so a forward pass holds one block
and the embedding instead of the whole model, at the price of reading the file again on each
pass. Where the call is not available (another OS, an older kernel, weights not mapped from a
file) both do nothing and say so through their return value.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Iterator

import torch
from torch import nn

from .modules import decoder_layers

MADV_PAGEOUT = 21        # linux/mman.h: reclaim these pages now (Linux 5.4+)


def mapping_of(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds ``tensor``'s data (from ``/proc/self/maps``), or None
    (an ordinary tensor in anonymous memory, or not Linux)."""
    if not sys.platform.startswith("linux") or tensor.numel() == 0:
        return None
    address = tensor.data_ptr()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end and len(fields) == 6 and fields[5].startswith("/"):
                return fields[5].strip()
    return None


def mapped_ranges(path: str) -> list[tuple[int, int]]:
    """``(start, end)`` addresses of every mapping of the file ``path`` in this process."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == path:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def weights_file(model: nn.Module) -> str | None:
    """The file ``model``'s first weight is mapped from (a checkpoint transformers mapped), or None."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    first = next(model.parameters(), None)
    return None if first is None else mapping_of(first.detach())


def release(model: nn.Module) -> int:
    """Ask the kernel to reclaim the resident pages of the file ``model``'s weights are mapped
    from; returns the bytes of mapping advised (0: nothing mapped, or the call is unavailable).
    Values never change: pages are read back from the file when next touched."""
    path = weights_file(model)
    if path is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for start, end in mapped_ranges(path):
        if libc.madvise(start, end - start, MADV_PAGEOUT) != 0:
            return 0            # EINVAL: a kernel before 5.4 does not know MADV_PAGEOUT
        advised += end - start
    return advised


@contextlib.contextmanager
def streaming(model: nn.Module) -> Iterator[bool]:
    """Within the block, :func:`release` ``model``'s mapped weights after each decoder block's
    forward pass (and once on entry): a pass then holds about one block of weights at a time.
    Yields whether releasing works here (False: the model runs as usual, holding every page)."""
    def after_block(*_) -> None:          # a forward hook's return value would replace the output
        release(model)

    works = release(model) > 0
    hooks = [block.register_forward_hook(after_block) for block in decoder_layers(model)] if works else []
    try:
        yield works
    finally:
        for hook in hooks:
            hook.remove()
