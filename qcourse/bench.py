"""``qcourse compare``: every quantization method of the course, on the same model, the same data
and the same machine.

Each method (:class:`Method`, registered in :data:`METHODS`) quantizes the float model (timed)
into an :class:`Artifact`, which :func:`measure` then measures:

    size            bytes of the artifact: its stored tensors, or the GGUF file
    bits/weight     8 · size / parameters of the float model (embeddings and head included)
    perplexity      on the test windows of qcourse.eval.perplexity (all of them; --quick: few)
    KL, top-1       KL(p_float || q_method) per token and top-1 agreement on the same windows
    greedy match    mean number of leading tokens of greedy continuations equal to the float's
    task accuracy   lm-evaluation-harness on the course's tasks (qcourse.tasks)
    tokens/s, peak  decoding in the runtime that serves the format, from a fresh copy, and the
                    peak growth of resident memory while loading and decoding

Weight-only layers are evaluated through a float copy of their dequantized weights (the same
logits, bit for bit: :func:`dequantized_copy`); speed and memory always use the real layers.
Rows are cached per method, keyed by the method, its options, the evaluation settings and the
sources of the code it runs (:func:`cache_key`): a rerun recomputes only what changed. A method
that fails gets its error in its row and the run goes on; a method whose module is not in this
checkout (QAT, until notebook 03 lands) is skipped with the reason.

This module imports only the standard library at import time (``qcourse --help`` stays quick);
the work happens inside the functions.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import datetime
import hashlib
import importlib
import importlib.util
import io
import json
import math
import os
import pathlib
import platform
import sys
import time
import traceback
from collections.abc import Callable

from qcourse.paths import DATA_DIR, PACKAGE_DIR, cache_dir

CACHE_VERSION = 1
COMMON_MODULES = ("qcourse.bench", "qcourse.eval", "qcourse.data", "qcourse.tasks",
                  "qcourse.references.lm_eval")
TEST_WINDOWS_QUICK = 16


# ---- settings, methods, artifacts ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Settings:
    """What every method is measured on. :func:`settings` gives the full and the quick ones."""

    windows: int | None          # test windows of 512 tokens for PPL (None: all of them)
    compare_windows: int         # of those, the first ones on which KL and top-1 are measured
    prompts: int                 # greedy-continuation prompts (64 tokens each, test split)
    new_tokens: int              # tokens of each greedy continuation
    task_limit: int | None       # examples per task (None: all)
    decode_tokens: int           # tokens decoded to time the runtime
    gptq_samples: tuple[int, int]    # calibration windows (count, length)
    awq_samples: tuple[int, int]
    qat_steps: int
    threads: int = 1
    runtime: bool = True         # measure decode speed and peak memory (a fresh process each)

    def describe(self) -> str:
        windows = "all test windows" if self.windows is None else \
            f"the first {self.windows} test windows"
        tasks = "all examples" if self.task_limit is None else f"{self.task_limit} examples"
        speed = f"decode speed over {self.decode_tokens} tokens" if self.runtime else \
            "no speed or memory measurement"
        return (f"PPL on {windows} of 512 tokens, KL and top-1 on the first "
                f"{self.compare_windows}; greedy match over {self.prompts} prompts x "
                f"{self.new_tokens} tokens; tasks on {tasks} each; GPTQ calibration "
                f"{self.gptq_samples[0]}x{self.gptq_samples[1]}, AWQ {self.awq_samples[0]}x"
                f"{self.awq_samples[1]} tokens; {speed}; {self.threads} thread(s)")


def settings(quick: bool = False, threads: int = 1) -> Settings:
    """The full evaluation (the recorded run) or ``quick``: a subset of the test windows, of the
    prompts and of the task examples, and smaller calibration sets (stated in the output)."""
    if quick:
        return Settings(windows=TEST_WINDOWS_QUICK, compare_windows=TEST_WINDOWS_QUICK,
                        prompts=4, new_tokens=16, task_limit=25, decode_tokens=8,
                        gptq_samples=(16, 256), awq_samples=(8, 256), qat_steps=20,
                        threads=threads)
    return Settings(windows=None, compare_windows=32, prompts=16, new_tokens=32, task_limit=100,
                    decode_tokens=16, gptq_samples=(64, 512), awq_samples=(16, 512),
                    qat_steps=100, threads=threads)


@dataclasses.dataclass
class Artifact:
    """What a method produced. ``scorer``: what quality is measured on (a Hugging Face model or
    an ``ids -> logits`` callable); ``runtime`` and ``served``: how a fresh process loads it to
    decode (:func:`probe`): ``"torch"`` and the model, ``"bnb"`` and the mode, or ``"gguf"`` and
    the file."""

    scorer: object
    size_bytes: int
    runtime: str
    served: object


@dataclasses.dataclass(frozen=True)
class Method:
    """A row of the comparison: ``quantize(context) -> Artifact`` for the float model of the
    context. ``modules``: the qcourse modules it runs (their sources key the cache; the first
    one missing from this checkout skips the method)."""

    name: str
    label: str
    runtime: str
    quantize: Callable[[Context], Artifact]
    modules: tuple[str, ...]
    options: dict = dataclasses.field(default_factory=dict)
    libraries: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """Why this method cannot run in this checkout, or None."""
        for module in self.modules:
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return f"{module} is not in this checkout yet"
        return None


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a later chapter registers its method in one line)."""
    METHODS[method.name] = method
    return method


def check_methods(names) -> list[str]:
    """``names`` if every one is registered, else ValueError listing the known ones."""
    names = list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(METHODS)}")
    if not names:
        raise ValueError("no method to compare")
    return names


class Context:
    """The float model and everything methods share: tokenizer, settings, calibration samples,
    the float model's GGUF export and its greedy continuations (each made once, on demand)."""

    def __init__(self, model, tokenizer, settings: Settings, workdir: pathlib.Path,
                 model_name: str = "qcourse-tiny", progress: bool = True) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.model_name, self.progress = model_name, progress
        self.workdir = workdir
        self._made: dict = {}

    def once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def calibration(self, count: int, length: int):
        from qcourse import data
        return self.once(("calib", count, length),
                         lambda: data.calibration_samples(self.tokenizer, count, length, seed=0))

    def float_gguf(self) -> pathlib.Path:
        """The float model written as an F32 GGUF file (llama.cpp quantizes from it)."""
        from qcourse import gguf

        def write():
            path = self.workdir / "qcourse-tiny-F32.gguf"
            gguf.export(self.model, self.tokenizer, path, "F32")
            return path
        return self.once("f32", write)

    def window(self) -> list[int]:
        """The first test window (512 tokens): what the runtime probe processes at once."""
        from qcourse import eval as qeval
        return self.once("window", lambda: qeval.evaluation_windows(
            self.tokenizer, max_windows=1)[0].tolist())

    def prompts(self):
        from qcourse import eval as qeval
        return self.once("prompts", lambda: qeval.continuation_prompts(
            self.tokenizer, self.settings.prompts))

    def float_continuations(self) -> list[list[int]]:
        from qcourse import eval as qeval
        return self.once("continuations", lambda: qeval.greedy_continuations(
            self.model, self.prompts(), self.settings.new_tokens))


# ---- the artifacts of each runtime -----------------------------------------------------------

def dequantized_copy(model):
    """A copy of ``model`` whose weight-only quantized layers (those computing
    ``x · weight()ᵀ + bias``, the base :class:`~qcourse.layers.QuantizedLinear` forward) are
    plain ``nn.Linear`` holding the dequantized weight: the same logits, without unpacking the
    weights at every call. Layers with their own forward (W8A8, LLM.int8()) stay as they are."""
    import torch
    from torch import nn

    from qcourse.layers import QuantizedLinear, quantized_layers
    from qcourse.models import set_module

    out = copy.deepcopy(model)
    for name, layer in quantized_layers(out).items():
        if type(layer).forward is not QuantizedLinear.forward:
            continue
        linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(layer.weight())
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
        set_module(out, name, linear)
    return out


def torch_artifact(ctx: Context, model) -> Artifact:
    """A model the course's PyTorch layers run: sized by its stored tensors."""
    from qcourse import eval as qeval

    return Artifact(scorer=dequantized_copy(model), size_bytes=qeval.model_size_bytes(model),
                    runtime="torch", served=model)


def llamacpp_logits(llm):
    """``ids [B, T] -> logits [B, T, V]`` from llama.cpp, one sequence at a time."""
    import numpy as np
    import torch

    def call(ids):
        rows = []
        for row in ids.tolist():
            llm.reset()
            llm.eval(row)
            rows.append(torch.from_numpy(np.array(llm.scores[: len(row)], dtype=np.float32)))
        return torch.stack(rows)
    return call


def gguf_artifact(ctx: Context, path: pathlib.Path) -> Artifact:
    """A GGUF file run by llama.cpp (repacking off: :func:`qcourse.gguf.llamacpp.load`)."""
    from qcourse.gguf import llamacpp

    llm = llamacpp.load(path, n_ctx=512, n_threads=ctx.settings.threads)
    return Artifact(scorer=llamacpp_logits(llm), size_bytes=path.stat().st_size,
                    runtime="gguf", served=path)


# ---- the methods -----------------------------------------------------------------------------

def _float(ctx: Context) -> Artifact:
    return torch_artifact(ctx, ctx.model)


def _rtn(granularity: str, group_size: int | None):
    def run(ctx: Context) -> Artifact:
        from qcourse import ptq
        return torch_artifact(ctx, ptq.quantize_rtn(copy.deepcopy(ctx.model), 4, granularity,
                                                    group_size))
    return run


def _ptq(function: str):
    def run(ctx: Context) -> Artifact:
        from qcourse import ptq
        return torch_artifact(ctx, getattr(ptq, function)(copy.deepcopy(ctx.model)))
    return run


def _bnb_nf4(ctx: Context) -> Artifact:
    from qcourse.references import bnb

    model = bnb.load_bnb("nf4")
    return Artifact(scorer=model, size_bytes=bnb.size_bytes(model), runtime="bnb", served="nf4")


def _gptq(ctx: Context) -> Artifact:
    from qcourse import gptq
    samples = ctx.calibration(*ctx.settings.gptq_samples)
    return torch_artifact(ctx, gptq.quantize_model(copy.deepcopy(ctx.model), samples, 4, 128,
                                                   progress=False))


def _awq(ctx: Context) -> Artifact:
    from qcourse import awq
    samples = ctx.calibration(*ctx.settings.awq_samples)
    return torch_artifact(ctx, awq.quantize_model(copy.deepcopy(ctx.model), samples, 4, 128,
                                                  progress=False))


def _qat(ctx: Context) -> Artifact:
    """QAT per the DESIGN API: prepare (4-bit, groups of 128), train, convert to QuantLinear."""
    import inspect

    qat = importlib.import_module("qcourse.qat")
    model = qat.prepare(copy.deepcopy(ctx.model), 4, 128)
    quiet = {"progress": False} if "progress" in inspect.signature(qat.train).parameters else {}
    qat.train(model, ctx.tokenizer, ctx.settings.qat_steps, **quiet)
    return torch_artifact(ctx, qat.convert(model))


def _gguf(ftype: str):
    def run(ctx: Context) -> Artifact:
        from qcourse.gguf import llamacpp
        path = ctx.workdir / f"qcourse-tiny-{ftype}.gguf"
        llamacpp.quantize_file(ctx.float_gguf(), path, ftype, n_threads=ctx.settings.threads)
        return gguf_artifact(ctx, path)
    return run


PTQ_MODULES = ("qcourse.ptq", "qcourse.layers", "qcourse.quant", "qcourse.pack")
PYTORCH = "PyTorch (qcourse.layers)"

register(Method("fp32", "float32 (reference)", "PyTorch", _float, ("qcourse.models",)))
register(Method("rtn-channel", "RTN 4-bit per-channel", PYTORCH, _rtn("channel", None),
                PTQ_MODULES, {"bits": 4, "group_size": None}))
register(Method("rtn-g128", "RTN 4-bit g128", PYTORCH, _rtn("group", 128), PTQ_MODULES,
                {"bits": 4, "group_size": 128}))
register(Method("w8a8", "W8A8 (int8 weights and activations)", PYTORCH, _ptq("quantize_w8a8"),
                PTQ_MODULES))
register(Method("llm-int8", "LLM.int8() (threshold 6)", PYTORCH, _ptq("quantize_llm_int8"),
                PTQ_MODULES, {"threshold": 6.0}))
register(Method("nf4", "NF4 (ours, blocks of 64)", PYTORCH, _ptq("quantize_nf4_model"),
                PTQ_MODULES + ("qcourse.nf4",), {"block_size": 64}))
register(Method("bnb-nf4", "NF4 (bitsandbytes)", "bitsandbytes", _bnb_nf4,
                ("qcourse.references.bnb",), {"block_size": 64}, ("bitsandbytes",)))
register(Method("gptq", "GPTQ 4-bit g128", PYTORCH, _gptq,
                PTQ_MODULES + ("qcourse.gptq", "qcourse.blocks"), {"bits": 4, "group_size": 128}))
register(Method("awq", "AWQ 4-bit g128", PYTORCH, _awq,
                PTQ_MODULES + ("qcourse.awq", "qcourse.blocks", "qcourse.transforms",
                               "qcourse.calib"), {"bits": 4, "group_size": 128}))
# QAT (notebook 03): skipped, with the reason, until qcourse.qat is in the checkout
register(Method("qat", "QAT 4-bit g128", PYTORCH, _qat, ("qcourse.qat",) + PTQ_MODULES,
                {"bits": 4, "group_size": 128}))
for _ftype in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"):
    register(Method(f"gguf-{_ftype}", f"GGUF {_ftype}", "llama.cpp", _gguf(_ftype),
                    ("qcourse.gguf",), {"ftype": _ftype}, ("llama_cpp",)))


# ---- measuring ------------------------------------------------------------------------------

def measure(ctx: Context, artifact: Artifact) -> dict:
    """Every metric of the module docstring for one artifact."""
    from qcourse import eval as qeval, models
    from qcourse.references import lm_eval

    s, row, seconds = ctx.settings, {}, {}
    params = models.parameter_count(ctx.model)
    row["size_bytes"] = artifact.size_bytes
    row["bits_per_weight"] = 8 * artifact.size_bytes / params

    start = time.perf_counter()
    row.update(qeval.divergence(artifact.scorer, ctx.model, ctx.tokenizer, max_windows=s.windows,
                                compare_windows=s.compare_windows, progress=ctx.progress))
    ours = qeval.greedy_continuations(artifact.scorer, ctx.prompts(), s.new_tokens)
    row["greedy_match"] = sum(qeval.match_length(a, b) for a, b in
                              zip(ours, ctx.float_continuations())) / len(ours)
    seconds["quality"] = time.perf_counter() - start

    if s.task_limit != 0:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            row["tasks"] = lm_eval.evaluate(artifact.scorer, ctx.tokenizer, limit=s.task_limit)
        seconds["tasks"] = time.perf_counter() - start

    if s.runtime:
        start = time.perf_counter()
        row.update(serve(ctx, artifact))
        seconds["runtime"] = time.perf_counter() - start
    row["stage_seconds"] = seconds
    return row


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
    moment the libraries are imported (:func:`qcourse.eval.reset_peak_rss`) minus the resident
    memory then: the model, the runtime's buffers and what decoding allocates."""
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

    from qcourse import eval as qeval

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
    qeval.reset_peak_rss()
    baseline = qeval.current_rss()
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
        speed = qeval.tokens_per_second(model, tokenizer, new_tokens=spec["tokens"], repeats=1)
    return {"tokens_per_second": speed, "load_seconds": loaded,
            "peak_memory_bytes": max(0, qeval.peak_rss() - baseline)}


def source_hash(modules) -> str:
    """sha1 of the source files of ``modules`` (every file of a package)."""
    digest = hashlib.sha1()
    for module in sorted(set(modules)):
        relative = pathlib.Path(*module.split(".")[1:])
        folder, file = PACKAGE_DIR / relative, (PACKAGE_DIR / relative).with_suffix(".py")
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [file] if file.exists() else []
        for path in files:
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _versions(libraries) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("torch", "transformers", "lm_eval") + tuple(libraries):
        distribution = {"lm_eval": "lm-eval", "llama_cpp": "llama-cpp-python"}.get(name, name)
        try:
            found[name] = version(distribution)
        except PackageNotFoundError:
            found[name] = None
    return found


def cache_key(method: Method, s: Settings) -> str:
    """What a cached row depends on: the method, its options, the settings, the sources of the
    code it runs, the library versions, the model's weights and the task files."""
    weights = DATA_DIR / "qcourse-tiny" / "model.safetensors"
    task_files = sorted((DATA_DIR / "tasks").glob("*.jsonl"))
    payload = {
        "version": CACHE_VERSION, "method": method.name, "options": method.options,
        "settings": dataclasses.asdict(s),
        "code": source_hash(method.modules + COMMON_MODULES),
        "libraries": _versions(method.libraries),
        "data": [hashlib.sha1(p.read_bytes()).hexdigest() for p in [weights] + task_files
                 if p.exists()],
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_method(ctx: Context, method: Method, use_cache: bool = True) -> dict:
    """One row: from the cache if nothing it depends on changed, else quantized and measured.
    A failure is reported in the row (``status: failed``), never raised."""
    row = {"method": method.name, "label": method.label, "runtime": method.runtime,
           "options": method.options}
    reason = method.unavailable()
    if reason:
        return {**row, "status": "skipped", "error": reason}
    key = cache_key(method, ctx.settings)
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
    row["measured"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps(row, indent=1) + "\n")
    return {**row, "cached": False}


def machine() -> dict:
    """The machine, as recorded with every run."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "node": platform.node()}


def compare(methods=None, *, quick: bool = False, threads: int = 1, use_cache: bool = True,
            model_name: str = "qcourse-tiny", workdir: str | os.PathLike | None = None,
            progress: bool = True, overrides: dict | None = None) -> dict:
    """Quantize ``model_name`` with each of ``methods`` (default: all of :data:`METHODS`) and
    measure every row (see the module docstring). ``overrides``: fields of :class:`Settings` to
    change (e.g. ``{"windows": 4, "runtime": False}`` for a notebook). Returns ``{"settings",
    "machine", "versions", "date", "rows", "wall_seconds", "cpu_seconds"}``; rows of failed
    methods carry their error."""
    names = check_methods(METHODS if methods is None else methods)
    import torch
    from tqdm.auto import tqdm

    from qcourse import models

    s = dataclasses.replace(settings(quick, threads), **(overrides or {}))
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
            rows.append(run_method(ctx, METHODS[name], use_cache))
    finally:
        torch.set_num_threads(previous_threads)
    return {"model": model_name, "quick": quick, "settings": dataclasses.asdict(s),
            "settings_text": s.describe(), "machine": machine(),
            "versions": _versions(("bitsandbytes", "llama_cpp")),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rows": rows, "wall_seconds": time.perf_counter() - wall,
            "cpu_seconds": cpu_seconds() - cpu}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the runtime probes it has waited for."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ---- reporting ------------------------------------------------------------------------------

COLUMNS = [  # (heading, row -> value, format)
    ("method", lambda r: r["method"], "{}"),
    ("runtime", lambda r: r["runtime"], "{}"),
    ("size MB", lambda r: r["size_bytes"] / 1e6, "{:.2f}"),
    ("bits/w", lambda r: r["bits_per_weight"], "{:.2f}"),
    ("PPL", lambda r: r["perplexity"], "{:.2f}"),
    ("KL", lambda r: r["kl_divergence"], "{:.4f}"),
    ("top-1", lambda r: r["top1_agreement"], "{:.3f}"),
    ("greedy", lambda r: r["greedy_match"], "{:.1f}"),
    ("next-line", lambda r: r.get("tasks", {}).get("qcourse_next_line", {}).get("acc", math.nan),
     "{:.3f}"),
    ("cloze", lambda r: r.get("tasks", {}).get("qcourse_docstring_cloze", {}).get("acc",
                                                                                math.nan),
     "{:.3f}"),
    ("quant s", lambda r: r["quantize_seconds"], "{:.1f}"),
    ("tok/s", lambda r: r.get("tokens_per_second", math.nan), "{:.1f}"),
    ("peak MB", lambda r: r.get("peak_memory_bytes", math.nan) / 1e6, "{:.0f}"),
]


def table_rows(result: dict) -> list[list[str]]:
    """The comparison as text cells, one list per method (failed and skipped rows say why)."""
    out = []
    for row in result["rows"]:
        if row["status"] != "ok":
            out.append([row["method"], row["runtime"], f"{row['status']}: {row['error']}"])
            continue
        out.append([fmt.format(get(row)) for _, get, fmt in COLUMNS])
    return out


def format_table(result: dict) -> str:
    """The comparison as a Markdown table, with the settings and machine above it."""
    heading = [h for h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(heading) + " |", "|" + "---|" * len(heading)]
    for cells in table_rows(result):
        lines.append("| " + " | ".join(cells) + " |")
    m = result["machine"]
    return (f"{'quick' if result['quick'] else 'full'} comparison of {result['model']}: "
            f"{result['settings_text']}\nmachine: {m['cpu']}, {m['cores']} cores; "
            f"{result['date']}\n\n" + "\n".join(lines))


def write_csv(result: dict, path: str | os.PathLike) -> None:
    """One line per method: every measured field (task scores flattened)."""
    fields = ["method", "label", "runtime", "status", "size_bytes", "bits_per_weight",
              "perplexity", "kl_divergence", "top1_agreement", "greedy_match",
              "quantize_seconds", "tokens_per_second", "peak_memory_bytes", "error"]
    tasks = sorted({t for r in result["rows"] for t in r.get("tasks", {})})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields + [f"{t}_{m}" for t in tasks for m in ("acc", "acc_norm")])
        for row in result["rows"]:
            scores = row.get("tasks", {})
            writer.writerow([row.get(k, "") for k in fields]
                            + [scores.get(t, {}).get(m, "") for t in tasks
                               for m in ("acc", "acc_norm")])


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both coordinates (both lower is better):
    ``{"a": (1, 5), "b": (2, 3), "c": (3, 4)}`` -> ``["a", "b"]``, sorted by the first."""
    front = [name for name, (x, y) in points.items()
             if not any((x2 <= x and y2 <= y) and (x2, y2) != (x, y)
                        for other, (x2, y2) in points.items() if other != name)]
    return sorted(front, key=lambda n: points[n])


def plot(result: dict, path: str | os.PathLike | None = None):
    """Pareto plot: size against perplexity and against KL divergence, the front joined."""
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "perplexity", "test perplexity (lower is better)"),
                           (axes[1], "kl_divergence", "KL(float || method) per token")):
        points = {r["method"]: (r["size_bytes"] / 1e6, r[key]) for r in rows}
        front = pareto_front(points)
        for name, (x, y) in points.items():
            ax.scatter(x, y, color="C3" if name in front else "C0", zorder=3)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot(*zip(*(points[n] for n in front)), color="C3", lw=1, label="Pareto front")
        ax.set(xscale="log", xlabel="size of the artifact (MB, log scale)", ylabel=label)
        if key == "kl_divergence":
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{result['model']}, {'quick subset' if result['quick'] else 'whole test split'}"
                 f" — {m['cpu']}, {result['date'][:10]}", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# ---- the command line -----------------------------------------------------------------------

def _method_list(values: list[str]) -> list[str]:
    return [n for v in values for n in v.split(",") if n]


def main(args: argparse.Namespace) -> int:
    """``qcourse compare``: run, print the table, write the files; 1 if a method failed."""
    if args.list:
        for method in METHODS.values():
            reason = method.unavailable()
            print(f"{method.name:14s} {method.label}" + (f"  (skipped: {reason})" if reason else ""))
        return 0
    try:
        names = check_methods(_method_list(args.methods) if args.methods else METHODS)
    except ValueError as err:
        args.parser.error(str(err))
    result = compare(names, quick=args.quick, threads=args.threads, use_cache=not args.no_cache)
    print(format_table(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s, CPU time {result['cpu_seconds']:.0f} s "
          "(this process and its runtime probes)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.csv:
        write_csv(result, args.csv)
    if args.plot:
        plot(result, args.plot)
    failed = [r["method"] for r in result["rows"] if r["status"] == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)} (see their rows)", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers) -> None:
    """Register ``qcourse compare`` on the ``qcourse`` command line."""
    p = subparsers.add_parser("compare", help="every quantization method on the same model, "
                              "data and machine: size, quality, speed, memory")
    p.add_argument("--quick", action="store_true",
                   help=f"a subset: the first {TEST_WINDOWS_QUICK} test windows, fewer prompts "
                        "and task examples, smaller calibration sets (stated in the output)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="methods to run (space or comma separated; default: all; --list)")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument("--json", metavar="FILE", help="write the whole result as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one line per method")
    p.add_argument("--plot", metavar="FILE", help="write the Pareto plot (size vs quality)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--no-cache", action="store_true", help="recompute every method")
    p.set_defaults(func=main, parser=p)


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    print(json.dumps(probe_main(json.loads(sys.argv[2]))))
