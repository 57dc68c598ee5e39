"""One model, several runtimes, the same three questions: how good, how fast, how big.

A *runtime* is anything that can

* ``logits(ids)``: score a window, token ids ``[T]`` -> logits ``[T, V]`` (float32);
* ``generate(ids, n)``: greedily append exactly ``n`` tokens to a prompt, with its own KV cache
  (end-of-text is not a stop here, so every runtime does the same work);
* ``weight_bytes()``: the bytes its weights occupy (tensors in memory, or the model file).

:class:`TorchRuntime` wraps a transformers model (float32, or quantized by bitsandbytes),
:class:`LlamaCppRuntime` a GGUF file in llama.cpp; ONNX Runtime's lives with its library
(:mod:`qcourse.references.onnx_runtime`). Over any of them:

* :func:`perplexity`: :func:`qcourse.evaluation.perplexity` of the runtime (the same windows,
  the same scoring path);
* :func:`compare_logits`: max |Δlogit| and top-1 agreement against a reference runtime;
* :func:`service_loop`: a burst of requests served by one worker thread from a FIFO queue, the
  way a Python web service with one model in memory serves them: tokens/s and each request's
  latency (its wait in the queue plus its own generation).
"""
from __future__ import annotations

import os
import pathlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn

from qcourse import evaluation
from qcourse.evaluation import window_nll  # noqa: F401  (scores a runtime's logits)
from qcourse.gguf import llamacpp

from .latency import summary


class Runtime(Protocol):
    name: str

    def logits(self, ids: torch.Tensor) -> torch.Tensor: ...

    def generate(self, ids: list[int], new_tokens: int) -> list[int]: ...

    def weight_bytes(self) -> int: ...


class TorchRuntime:
    """A transformers causal LM (any dtype or quantization) as a runtime."""

    def __init__(self, model: nn.Module, name: str,
                 size: Callable[[nn.Module], int] = evaluation.model_size_bytes) -> None:
        self.model, self.name, self.size = model.eval(), name, size

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids[None]).logits[0].float()                   # [T, V]

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return self.generate_batch([ids], new_tokens)[0]

    @torch.no_grad()
    def generate_batch(self, prompts: Sequence[list[int]], new_tokens: int) -> list[list[int]]:
        """Greedy ``new_tokens`` for several prompts in one batch: each step is one forward pass
        over all of them (prompts left-padded to the longest, padding masked out)."""
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)              # [B, T]
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        out = self.model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        return out[:, width:].tolist()                                        # [B, new_tokens]

    def weight_bytes(self) -> int:
        return self.size(self.model)


class LlamaCppRuntime:
    """A GGUF file run by llama.cpp (llama-cpp-python), weights not repacked
    (:func:`qcourse.gguf.llamacpp.load`)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, *, n_ctx: int = 512,
                 threads: int = 1) -> None:
        self.path = pathlib.Path(path)
        self.name = name or f"llama.cpp {self.path.stem}"
        self.llm = llamacpp.load(self.path, n_ctx=n_ctx, n_threads=threads)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return llamacpp.window_logits(self.llm, ids.tolist())

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return llamacpp.greedy(self.llm, ids, new_tokens)

    def weight_bytes(self) -> int:
        return self.path.stat().st_size


def perplexity(runtime: Runtime, tokenizer, split: str = "test", seq_len: int = 512, *,
               max_windows: int | None = None) -> float:
    """The runtime's perplexity on the same windows, through the same scoring path, as
    :func:`qcourse.evaluation.perplexity` (which takes a runtime itself)."""
    return evaluation.perplexity(runtime, tokenizer, split, seq_len, max_windows=max_windows,
                                 batch_size=1)


def compare_logits(runtime: Runtime, reference: Runtime, ids: torch.Tensor) -> dict[str, float]:
    """``max_abs`` and ``mean_abs`` of ``logits − reference logits`` on ``ids [T]``, and
    ``top1``: the fraction of positions whose argmax token agrees
    (:func:`qcourse.evaluation.logit_agreement`)."""
    return evaluation.logit_agreement(runtime.logits(ids), reference.logits(ids))


def service_loop(runtime: Runtime, prompts: Sequence[list[int]], new_tokens: int, *,
                 batch_size: int = 1, timeout_s: float = 300.0) -> dict:
    """Serve ``prompts`` (token ids), all arriving at once, with one worker thread taking them
    from a FIFO queue; each gets ``new_tokens`` greedy tokens. ``batch_size`` > 1: the worker
    takes up to that many waiting requests and generates them together (static batching;
    the runtime needs ``generate_batch``). Returns the outputs, each request's latency (arrival
    to reply), the wall time and the generated tokens/s. TimeoutError if the worker is not done
    after ``timeout_s`` seconds (it is told to stop after its current batch)."""
    if batch_size > 1 and not hasattr(runtime, "generate_batch"):
        raise ValueError(f"{runtime.name} cannot generate a batch; use batch_size=1")
    requests: queue.Queue = queue.Queue()
    replies: dict[int, tuple[list[int], float]] = {}
    stop = threading.Event()
    start = time.perf_counter()
    for index, ids in enumerate(prompts):
        requests.put((index, list(ids)))

    failures: list[Exception] = []

    def worker() -> None:
        while not stop.is_set():                     # each pass serves at least one request
            batch = []
            while len(batch) < batch_size and not requests.empty():
                batch.append(requests.get_nowait())
            if not batch:
                return
            try:
                if batch_size == 1:
                    outputs = [runtime.generate(batch[0][1], new_tokens)]
                else:
                    outputs = runtime.generate_batch([ids for _, ids in batch], new_tokens)
            except Exception as err:                 # reported in the caller's thread
                failures.append(err)
                return
            done = time.perf_counter() - start
            for (index, _), output in zip(batch, outputs):
                replies[index] = (output, done)

    thread = threading.Thread(target=worker, name=f"service {runtime.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        stop.set()
        raise TimeoutError(f"{runtime.name}: {len(replies)}/{len(prompts)} requests served in "
                           f"{timeout_s:.0f} s")
    if failures:
        raise failures[0]
    wall = time.perf_counter() - start
    latencies = [replies[i][1] for i in range(len(prompts))]
    return {"outputs": [replies[i][0] for i in range(len(prompts))], "latency_s": summary(latencies),
            "wall_s": wall, "tokens_per_s": len(prompts) * new_tokens / wall}


def measure(runtime: Runtime, tokenizer, prompts: Sequence[list[int]], *, new_tokens: int = 32,
            protocol: evaluation.Protocol = evaluation.QUICK, reference: Runtime | None = None,
            check_ids: torch.Tensor | None = None, timings: bool = True) -> dict:
    """One row of a runtime comparison: weight bytes; generated tokens/s in
    :func:`service_loop` (after one warm-up request; ``timings=False`` skips it); the
    :class:`qcourse.evaluation.Score` on ``protocol``'s windows (``score``, per window, for
    paired comparisons) and its ``perplexity``; and, given a ``reference`` and ``check_ids``,
    :func:`compare_logits`."""
    row = {"runtime": runtime.name, "weight_bytes": runtime.weight_bytes()}
    if timings:
        runtime.generate(list(prompts[0]), 2)                               # warm-up
        loop = service_loop(runtime, prompts, new_tokens)
        row.update(tokens_per_s=loop["tokens_per_s"], latency_s=loop["latency_s"],
                   outputs=loop["outputs"])
    row["score"] = evaluation.score(runtime, tokenizer, protocol, batch_size=1)
    row["perplexity"] = row["score"].perplexity
    if reference is not None and check_ids is not None:
        row.update({f"logits_{k}": v for k, v in compare_logits(runtime, reference,
                                                                 check_ids).items()})
    return row
