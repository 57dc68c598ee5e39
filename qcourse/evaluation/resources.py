"""What a model costs the machine it runs on: the bytes of its tensors and the resident memory
(RSS) of the process, now and at its peak (Linux ``/proc``; ``getrusage`` elsewhere)."""
from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Callable

import torch
from torch import nn


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor occupies: ``numel · element_size``."""
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Real storage of the model's parameters and buffers, in bytes, each tensor counted once.

    Quantized layers keep their packed integers, scales and zeros as buffers, so they are counted
    at their true size. Tied weights (shared by embedding and output head) count once.
    """
    seen: dict[int, torch.Tensor] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(t.data_ptr() if t.numel() else id(t), t)
    return sum(tensor_bytes(t) for t in seen.values())


def current_rss() -> int:
    """Resident memory of this process now, in bytes (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_memory(fn: Callable[[], object], interval: float = 0.002) -> tuple[object, int]:
    """Run ``fn()``; return its result and the peak growth of resident memory while it ran, in
    bytes, sampled every ``interval`` seconds by a watcher thread (Linux only)."""
    baseline = current_rss()
    peak = baseline
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, current_rss())
            time.sleep(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = fn()
    finally:
        done.set()
        watcher.join()
    peak = max(peak, current_rss())
    return result, peak - baseline


def process_peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Make the peak resident memory start again from the current one (Linux: writing 5 to
    ``/proc/self/clear_refs`` resets ``VmHWM``); False where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak resident memory of this process since it started or since :func:`reset_peak_rss`,
    in bytes (``VmHWM``; :func:`process_peak_rss` where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process_peak_rss()
