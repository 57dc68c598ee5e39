"""Timing kernels on a GPU, and picking the fastest of several launches (autotuning).

A decode-sized kernel runs for a few microseconds, about as long as Python takes to launch it.
Timed as a plain call, the launch overhead is measured as much as the kernel. So
:func:`graph_ms` captures the call once in a CUDA graph and times replays of the graph (GPU time
alone, as a serving engine's decode loop runs kernels); :func:`eager_ms` times the plain call a
user makes. Both report the median of ``triton.testing.do_bench``, which flushes the L2 cache
before each run: an 8 MB 4-bit weight would otherwise stay in an H100's 50 MB L2 and be read at
L2 speed, not at the DRAM bandwidth the roofline counts.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def eager_ms(fn: Callable[[], object], rep_ms: int = 100) -> float:
    """Median time of one call of ``fn`` in milliseconds (CUDA only)."""
    import triton.testing
    result = triton.testing.do_bench(fn, warmup=25, rep=rep_ms, quantiles=[0.5])
    return float(result[0] if isinstance(result, (list, tuple)) else result)


def graph_ms(fn: Callable[[], object], rep_ms: int = 100) -> float:
    """Median time of ``fn`` replayed from a CUDA graph, in milliseconds (CUDA only)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):                      # warm-up outside the graph (compiles, allocates)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return eager_ms(graph.replay, rep_ms)


def fastest(candidates: dict, timer: Callable[[Callable[[], object]], float],
            ) -> tuple[object, dict[object, float | str]]:
    """Time every candidate (``{key: fn}``) with ``timer`` and return the fastest key and every
    result: a time in ms, or the error a candidate raised (it is skipped, not fatal)."""
    if not candidates:
        raise ValueError("no candidates to time")
    results: dict[object, float | str] = {}
    for key, fn in candidates.items():
        try:
            results[key] = float(timer(fn))
        except Exception as err:  # a launch that does not compile or fit: report, go on
            results[key] = f"{type(err).__name__}: {err}"[:300]
    timed = {key: ms for key, ms in results.items() if isinstance(ms, float)}
    if not timed:
        raise RuntimeError(f"every candidate failed: {next(iter(results.values()))}")
    return min(timed, key=timed.get), results
