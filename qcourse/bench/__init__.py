"""``qcourse compare``: every quantization method of the course, on the same model, the same data
and the same machine.

Each method (:class:`Method`, registered in :data:`METHODS`) quantizes the float model (timed)
into an :class:`Artifact`, which :func:`measure` then measures:

    size            bytes of the artifact: its stored tensors, or the GGUF file
    bits/weight     8 · size / parameters of the float model (embeddings and head included)
    perplexity      on the test windows of qcourse.evaluation.perplexity (all; --quick: few),
                    with every window's NLL (paired intervals between methods)
    KL, top-1       KL(p_float || q_method) per token and top-1 agreement on the first windows,
                    per window too
    greedy match    mean number of leading tokens of greedy continuations equal to the float's
                    (and per prompt)
    task accuracy   lm-evaluation-harness on the course's tasks (qcourse.tasks), with which
                    questions each method got right (paired tests: qcourse.tasks.paired_test)
    tokens/s, peak  decoding in the runtime that serves the format, from a fresh copy, and the
                    peak growth of resident memory while loading and decoding

Weight-only layers are evaluated through a float copy of their dequantized weights (the same
logits, bit for bit: :func:`dequantized_copy`); speed and memory always use the real layers.
Rows are cached per method (:func:`cache_key`), and the quality of an artifact per fingerprint of
its weights (:func:`quality_key`): a rerun recomputes only what changed. A method that fails gets
its error in its row and the run goes on. ``--model smollm2-135m`` compares on the real model;
``--timings`` measures only time, speed and memory (for a quiet machine).

One idea per module:

    registry       Settings, Method, the METHODS registry, Artifact, Context
    methods        the course's methods, registered, and the artifact of each runtime
    comparison     measure, run_method (cached rows), compare
    caching        the cache keys: a row (method, options, settings, code, versions, model and
                   data) and an artifact's quality (the fingerprint of its weights)
    runtime_probe  decoding speed and peak memory, in a fresh process
    report         table, CSV, Pareto plot; a quality run joined with a --timings run
    command        ``qcourse compare``
    record         what every recorded benchmark run says about itself (machine, threads, load
                   average, versions, date), and reading the runs recorded before

The package imports only the standard library at import time (``qcourse --help`` stays quick);
the work happens inside the functions.
"""
from . import methods  # noqa: F401  (registers the course's methods)
from .caching import (CACHE_VERSION, COMMON_MODULES, cache_key, fingerprint, quality_key,
                      source_hash)
from .command import add_commands, main
from .comparison import compare, cpu_seconds, measure, quality, run_method
from .methods import dequantize_weights, dequantized_copy, gguf_artifact, torch_artifact
from .record import machine
from .registry import (DEFAULT_METHODS, METHODS, TEST_WINDOWS_QUICK, Artifact, Context, Method,
                       Settings, check_methods, default_methods, register, settings)
from .report import (COLUMNS, format_table, merge_timings, pareto_front, plot, table_rows,
                     write_csv)
from .runtime_probe import probe, probe_main, serve

__all__ = ["METHODS", "DEFAULT_METHODS", "TEST_WINDOWS_QUICK", "Artifact", "Context", "Method",
           "Settings", "check_methods", "default_methods", "register", "settings",
           "dequantized_copy", "dequantize_weights", "torch_artifact", "gguf_artifact", "compare",
           "measure", "quality", "run_method", "cpu_seconds", "cache_key", "quality_key", "fingerprint",
           "source_hash", "CACHE_VERSION", "COMMON_MODULES", "probe", "probe_main", "serve",
           "COLUMNS", "table_rows", "format_table", "merge_timings", "write_csv", "pareto_front",
           "plot", "main", "add_commands", "machine"]
