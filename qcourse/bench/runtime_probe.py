"""Decoding speed and peak memory in the runtime that serves a format, measured in a fresh Python
process (``python -m qcourse.bench --probe SPEC``), so that nothing else this process loaded counts.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time

from .registry import Artifact, Context


def serve(ctx: Context, artifact: Artifact) -> dict:
    """Decode with the artifact in the runtime that serves its format, in a fresh process
    (:func:`probe`); a PyTorch model travels there as a pickled file, deleted afterwards."""
    served = artifact.served
    if artifact.runtime == "torch":
        import tempfile

        import torch
        handle, path = tempfile.mkstemp(suffix=".pt", dir=ctx.workdir)
        os.close(handle)
        torch.save(artifact.served, path)
        served = path
    try:
        return probe({"runtime": artifact.runtime, "served": str(served),
                      "model": ctx.model_name, "tokens": ctx.settings.decode_tokens,
                      "threads": ctx.settings.threads, "window": ctx.window()})
    finally:
        if artifact.runtime == "torch":
            pathlib.Path(served).unlink(missing_ok=True)


def probe(spec: dict, timeout: float = 900) -> dict:
    """Run :func:`probe_main` in a fresh Python process: ``{"tokens_per_second",
    "peak_memory_bytes", "load_seconds"}``. Peak memory is the peak resident memory from the
    moment the libraries are imported (:func:`qcourse.evaluation.reset_peak_rss`) minus the
    resident memory then: the model, the runtime's buffers and what decoding allocates."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "qcourse.bench", "--probe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the {spec['runtime']} runtime probe failed "
                           f"(exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe_main(spec: dict) -> dict:
    """Inside the fresh process: import the runtime, restart the peak-memory count, load the
    artifact, process one full window (``spec["window"]``, the longest request the context
    allows), decode ``spec["tokens"]`` tokens greedily; report speed and peak memory."""
    import torch

    from qcourse import evaluation

    torch.set_num_threads(spec["threads"])
    if spec["runtime"] == "gguf":
        from qcourse.gguf import llamacpp
        llamacpp.require()
    else:
        from transformers import AutoTokenizer

        import qcourse.layers  # noqa: F401  (the classes a pickled model refers to)
        from qcourse.models import resolve
        from qcourse.references import bnb
        tokenizer = AutoTokenizer.from_pretrained(resolve(spec["model"]))
        if spec["runtime"] == "bnb":
            bnb.require_bitsandbytes()
    evaluation.reset_peak_rss()
    baseline = evaluation.current_rss()
    start = time.perf_counter()
    window = spec["window"]                          # one full context of test tokens
    if spec["runtime"] == "gguf":
        llm = llamacpp.load(spec["served"], n_ctx=len(window), n_threads=spec["threads"])
        loaded = time.perf_counter() - start
        llm.eval(window)
        speed = llamacpp.tokens_per_second(llm, new_tokens=spec["tokens"], repeats=1)
    else:
        model = bnb.load_bnb(spec["served"], spec["model"]) if spec["runtime"] == "bnb" else \
            torch.load(spec["served"], weights_only=False)
        loaded = time.perf_counter() - start
        with torch.no_grad():
            model(torch.tensor([window]))
        speed = evaluation.tokens_per_second(model, tokenizer, new_tokens=spec["tokens"],
                                             repeats=1)
    return {"tokens_per_second": speed, "load_seconds": loaded,
            "peak_memory_bytes": max(0, evaluation.peak_rss() - baseline)}
