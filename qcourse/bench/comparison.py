"""Running the comparison: every method quantizes the float model into an artifact, which is
measured (quality in this process, speed and memory in a fresh one) and cached."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import time
import traceback

from qcourse.paths import cache_dir

from . import record, registry
from .caching import cache_key, quality_key
from .registry import Artifact, Context, Method, check_methods, settings
from .runtime_probe import serve


def quality(ctx: Context, artifact: Artifact) -> dict:
    """The quality columns of one artifact, from the quality cache when an artifact with the
    same fingerprint was measured against the same float model and data before
    (:func:`~qcourse.bench.caching.quality_key`):

    ``perplexity``, ``tokens``, ``nll_per_window`` (nats per predicted token, every test window
    of the settings); ``kl_divergence``, ``top1_agreement``, ``compared_tokens`` and their
    ``kl_per_window``, ``top1_per_window`` (the first ``compare_windows``); ``greedy_match`` and
    ``greedy_per_prompt``; ``tasks`` (lm-evaluation-harness: accuracy and which questions were
    right, per task; left out when ``task_limit`` is 0)."""
    from qcourse import evaluation
    from qcourse.references import lm_eval

    s = ctx.settings
    key = quality_key(artifact.fingerprint, ctx.model_key(), s) if artifact.fingerprint else None
    path = ctx.workdir / "quality" / f"{key}.json"
    if key and path.exists():
        return {**json.loads(path.read_text()), "quality_cached": True}
    row, seconds = {}, {}
    start = time.perf_counter()
    row.update(evaluation.divergence(artifact.scorer, ctx.model, ctx.tokenizer,
                                     max_windows=s.windows, compare_windows=s.compare_windows,
                                     progress=ctx.progress, per_window=True))
    ours = evaluation.greedy_continuations(artifact.scorer, ctx.prompts(), s.new_tokens)
    row["greedy_per_prompt"] = [evaluation.match_length(a, b)
                                for a, b in zip(ours, ctx.float_continuations())]
    row["greedy_match"] = sum(row["greedy_per_prompt"]) / len(row["greedy_per_prompt"])
    seconds["quality"] = time.perf_counter() - start
    if s.task_limit != 0:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            row["tasks"] = lm_eval.evaluate(artifact.scorer, ctx.tokenizer, limit=s.task_limit,
                                            backend="cached")
        seconds["tasks"] = time.perf_counter() - start
    row["quality_seconds"] = seconds
    if key:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**row, "measured": record.now()}) + "\n")
    return {**row, "quality_cached": False}


def measure(ctx: Context, artifact: Artifact) -> dict:
    """Every metric of the package docstring for one artifact: size, :func:`quality` (if the
    settings ask for it) and decoding speed and memory in a fresh process (if they ask for
    it)."""
    from qcourse import models

    s, row = ctx.settings, {}
    params = models.parameter_count(ctx.model)
    row["size_bytes"] = artifact.size_bytes
    row["bits_per_weight"] = 8 * artifact.size_bytes / params
    if s.quality:
        row.update(quality(ctx, artifact))
    if s.runtime:
        start = time.perf_counter()
        row.update(serve(ctx, artifact))
        row["runtime_seconds"] = time.perf_counter() - start
    return row


def run_method(ctx: Context, method: Method, use_cache: bool = True) -> dict:
    """One row: from the cache if nothing it depends on changed, else quantized and measured.
    A failure is reported in the row (``status: failed``), never raised."""
    row = {"method": method.name, "label": method.label, "runtime": method.runtime,
           "options": method.options}
    key = cache_key(method, ctx.settings, ctx.model_key())
    path = ctx.workdir / f"{method.name}-{key}.json"
    if use_cache and path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    try:
        start = time.perf_counter()
        artifact = method.quantize(ctx)
        row["quantize_seconds"] = time.perf_counter() - start
        row.update(measure(ctx, artifact))
        row["status"] = "ok"
    except Exception as err:  # one broken method must not stop the comparison
        return {**row, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=4)}
    row["measured"] = record.now()
    path.write_text(json.dumps(row, indent=1) + "\n")
    return {**row, "cached": False}


def compare(methods=None, *, quick: bool = False, threads: int = 1, use_cache: bool = True,
            model_name: str = "qcourse-tiny", workdir: str | os.PathLike | None = None,
            progress: bool = True, overrides: dict | None = None) -> dict:
    """Quantize ``model_name`` with each of ``methods`` (default: the model's list,
    :func:`~qcourse.bench.registry.default_methods`) and measure every row (see the package
    docstring). ``overrides``: fields of :class:`Settings` to change (e.g. ``{"windows": 4,
    "runtime": False}`` for a notebook; ``{"quality": False}`` for speed and memory only).
    Returns the run's :mod:`~qcourse.bench.record` (date, machine, threads, load average,
    versions) with ``{"model", "quick", "settings", "settings_text", "rows", "wall_seconds",
    "cpu_seconds"}``; rows of failed methods carry their error."""
    names = check_methods(registry.default_methods(model_name) if methods is None else methods)
    import torch
    from tqdm.auto import tqdm

    from qcourse import models

    s = dataclasses.replace(settings(quick, threads), **(overrides or {}))
    run = record.start(("lm_eval", "bitsandbytes", "llama_cpp"), threads=threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        torch.manual_seed(0)
        model, tokenizer = models.load(model_name)
        folder = pathlib.Path(workdir) if workdir else cache_dir() / "compare"
        folder.mkdir(parents=True, exist_ok=True)
        ctx = Context(model, tokenizer, s, folder, model_name, progress)
        rows = []
        bar = tqdm(names, desc="compare", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            rows.append(run_method(ctx, registry.METHODS[name], use_cache))
    finally:
        torch.set_num_threads(previous_threads)
    return {**record.finish(run), "model": model_name, "quick": quick,
            "settings": dataclasses.asdict(s), "settings_text": s.describe(), "rows": rows,
            "wall_seconds": time.perf_counter() - wall, "cpu_seconds": cpu_seconds() - cpu}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the runtime probes it has waited for."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
