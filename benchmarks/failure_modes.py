"""Failure modes of quantization, each broken and recovered: the recorded figures of notebook 10.

    python benchmarks/failure_modes.py [--model qcourse-tiny | smollm2-135m] [--sections a,b]
                                       [--windows N] [--threads 1] [--fresh] [--out FILE]
    python benchmarks/failure_modes.py --timings      # time and memory only: on a quiet machine

Every perplexity scores the whole test split (``evaluation.WHOLE``: every window of 512 tokens),
or its first ``--windows`` windows for a quick look. Each row keeps its per-window mean negative
log-likelihood (``nll``, nats per predicted token), so that two rows can be compared pairwise
(``evaluation.paired_difference``) and nothing is ranked inside the noise. Rows are cached in
``$QCOURSE_CACHE/failure_modes/<model>/`` under a key of what they depend on (model, section,
row, windows, calibration, and a hash of the float weights and test windows); a rerun recomputes
only missing rows (``--fresh``: recompute all).

qcourse-tiny (``--model qcourse-tiny``, the default):

outliers     qcourse-tiny and ``models.with_outliers(qcourse-tiny)`` (4 residual channels x100):
             perplexity, KL to the float model and top-1 agreement (every window), for W8
             weight-only, W8A8 per-tensor and per-token, SmoothQuant (alpha 0.5) + W8A8,
             LLM.int8(), RTN / AWQ / GPTQ at 4 and 3 bits (groups of 128); SmoothQuant's alpha
             sweep on the outlier model and on qcourse-tiny. SmoothQuant here (and for
             SmolLM2) smooths down_proj through up_proj too (``include_down=True``, the course's
             extension of the paper's mapping; the 2026-11-30 record was made that way).
minilm       all-MiniLM-L6-v2 on docstring retrieval over the test split
             (``qcourse.models.retrieval``): accuracy@1, agreement of the top-1 with the float
             model, and 1 - cosine of sentence embeddings, for W8A8, SmoothQuant (explicit
             scales), LLM.int8(), RTN and AWQ (explicit scales); SmoothQuant's alpha sweep.
twobit       2 bits on qcourse-tiny, with the bits per weight of the linear layers: RTN
             asymmetric and symmetric, the 4 most sensitive layers at 8 bits (RTN, and GPTQ at
             the same size), GPTQ, K-quants Q2_K through GGUF (embedding kept in float32 as in
             every PyTorch row, or quantized too), QAT at two learning rates with notebook 03's
             recipe.
calibration  GPTQ 3-bit calibrated on code only, prose only, or both, scored on each half of the
             test split; perplexity against the number of calibration windows, three draws each.
gguf         a correct GGUF, one with q/k not permuted for llama.cpp's RoPE, one with the wrong
             pre-tokenizer: llama.cpp's perplexity, its tokenization and bits per byte.
checkpoint   a GPTQ checkpoint read with the wrong zero-point convention, and without g_idx.
fp16         qcourse-tiny and an outlier model with channels x30000 in float16, bfloat16, float32.

SmolLM2-135M (``--model smollm2-135m``, the real model; its float weights are the released Q4_1
file dequantized, see ``qcourse.models.smollm2``):

outliers     its natural outlier channels (``diagnose`` on calibration windows: every linear
             layer's r_x, top channel, largest input and output), and W8A8 per-tensor and
             per-token, LLM.int8(), SmoothQuant (down_proj included) + W8A8.
twobit       the 2-bit collapse and its recoveries at equal size: RTN W3 g64, W2 g64, W2 g32;
             the sensitivity of every layer at W2 g64; W2 g64 with the most sensitive layers at
             8 bits up to the size of W2 g32 (RTN, and GPTQ with the same layers); GPTQ W2 g64
             and W2 g32. Bits per weight of the linear layers in every row.
fp16         the largest activation of every window in float32 (residual stream, every linear
             layer's input and output) against float16's 65504, and float16 scored on the
             windows that come closest.

``--timings`` (qcourse-tiny): a 4-bit model's forward pass through QuantLinear's own path, the
kernel path (``qcourse.kernels.use_kernels``) and the dequantized float model: time and the memory
its operations allocate (torch.profiler). Written to its own file; record it on a quiet machine.

Writes ``benchmarks/results/failure_modes[-smollm2-135m|-timings]-<arch>-<date>.json`` with the
run's record (``qcourse.bench.record``: CPU, threads, versions, load average at start and end).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import pathlib
import tempfile
import time
import warnings

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # its gguf.py, kernels.py: not the libraries

import torch  # noqa: E402

from qcourse import (awq, bench, calib, data, evaluation, gptq,  # noqa: E402
                     gptq_checkpoint, models, ptq, smoothquant)
from qcourse.diagnose import bits_per_weight, diagnose, mixed_precision  # noqa: E402
from qcourse.models import linear_layers  # noqa: E402
from qcourse.paths import cache_dir  # noqa: E402
from qcourse.quant import QuantScheme  # noqa: E402

TINY, REAL = "qcourse-tiny", "smollm2-135m"
SECTIONS = {TINY: ("outliers", "minilm", "twobit", "calibration", "gguf", "checkpoint", "fp16"),
            REAL: ("twobit", "outliers", "fp16")}
ALPHAS = (0.25, 0.5, 0.75, 1.0)
OVERFLOW_FACTOR = 30000.0     # channels x30000: inputs of ~1e5, beyond float16's 65504
FP16_MAX = 65504.0
SEQ_LEN = 512
CACHE_VERSION = 1
QAT_RECIPE = {"steps": 64, "batch_size": 8, "seq_len": 256}   # notebook 03's (131,072 tokens)
QAT_LRS = (1e-4, 5e-4)


def log(*args) -> None:
    print(*args, flush=True)


class Run:
    """The model, tokenizer, options, the windows every row scores, and the row cache."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model, self.tokenizer = models.load(args.model)
        self.protocol = (evaluation.WHOLE if args.windows is None
                         else evaluation.Protocol("quick look", args.windows))
        self.cache = cache_dir() / "failure_modes" / args.model
        self.batch_size = 8 if args.model == TINY else 1    # SmolLM2's logits: 100 MB a window
        self.fingerprint = self.inputs_fingerprint()

    def inputs_fingerprint(self) -> str:
        """sha1 of the float weights and the test windows: a cached row is only reused for the
        same model and the same windows."""
        digest = hashlib.sha1()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
        digest.update(self.windows().numpy().tobytes())
        return digest.hexdigest()[:16]

    def calibration(self, n: int | None = None, seq_len: int = SEQ_LEN,
                    domain: str | None = None, seed: int = 0) -> torch.Tensor:
        return data.calibration_samples(self.tokenizer, n or self.args.calib_samples, seq_len,
                                        seed, domain=domain)

    def windows(self, domain: str | None = None) -> torch.Tensor:
        """The test windows every row scores, ``[count, 512]`` (``domain``: half the split)."""
        found = evaluation.windows(data.token_ids(self.tokenizer, "test", domain), SEQ_LEN)
        return found[:self.args.windows] if self.args.windows else found

    def scored(self, model, reference=None, domain: str | None = None) -> dict:
        """``{"perplexity", "nll": [per window, nats per predicted token]}`` of ``model`` (its
        weight-only quantized layers dequantized in place first), and with ``reference`` the KL
        divergence from it and top-1 agreement over every predicted token."""
        if isinstance(model, torch.nn.Module):
            bench.dequantize_weights(model)
        call = evaluation.logits_fn(model)
        other = evaluation.logits_fn(reference) if reference is not None else None
        nll, kl, agree, tokens = [], 0.0, 0, 0
        for chunk in self.windows(domain).split(self.batch_size):
            logits = call(chunk)                                         # [b, T, V]
            nll += (evaluation.window_nll(logits, chunk) / (SEQ_LEN - 1)).tolist()
            if other is not None:
                expected = other(chunk)[:, :-1]
                kl += evaluation.kl_per_token(logits[:, :-1], expected).sum().item()
                agree += (logits[:, :-1].argmax(-1) == expected.argmax(-1)).sum().item()
                tokens += chunk[:, 1:].numel()
        row = {"perplexity": math.exp(sum(nll) / len(nll)), "nll": [round(v, 7) for v in nll]}
        if other is not None:
            row.update(kl=kl / tokens, top1=agree / tokens)
        return row

    def row(self, section: str, label: str, compute, **depends) -> dict:
        """``compute()`` (a JSON-able dict), or the cached row of the same key."""
        key = json.dumps([CACHE_VERSION, self.args.model, self.fingerprint, section, label,
                          self.args.windows, self.args.calib_samples, depends], sort_keys=True,
                         default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        path = self.cache / section / f"{digest}.json"
        if path.exists() and not self.args.fresh:
            found = json.loads(path.read_text())
            log(f"  {label}: cached")
            return found
        row, seconds = record.timed(compute)
        row["seconds"] = round(seconds, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row) + "\n")
        log(f"  {label}: {row.get('perplexity', '')} ({seconds:.0f} s)")
        return row

    def float_model(self):
        """A fresh float copy of the model (the run's own stays untouched)."""
        return copy.deepcopy(self.model)


def section_header(run: Run) -> dict:
    windows = run.windows()
    return {"protocol": run.protocol.label(len(windows)), "windows": len(windows)}


def planned(model, plan: dict, quantize) -> torch.nn.Module:
    """``model`` (in place) with each layer of ``plan`` replaced by ``quantize(name, linear,
    scheme)``."""
    for name, scheme in plan.items():
        models.set_module(model, name, quantize(name, models.get_module(model, name), scheme))
    return model


# ---- qcourse-tiny: outliers --------------------------------------------------------------------

def outlier_methods(run: Run) -> dict:
    samples = run.calibration()
    sq_samples = samples[:8]

    def smooth(m, alpha, activations):
        smoothquant.smooth_llama(m, calib.collect_activation_stats(m, sq_samples), alpha,
                                 include_down=True)
        return ptq.quantize_w8a8(m, activations)

    return {
        "float": lambda m: m,
        "W8 weight-only (RTN per channel)": lambda m: ptq.quantize_rtn(m, 8, "channel"),
        "W8A8 per-tensor": lambda m: ptq.quantize_w8a8(m, "tensor"),
        "W8A8 per-token": lambda m: ptq.quantize_w8a8(m, "token"),
        "SmoothQuant a=0.5 + W8A8 per-tensor": lambda m: smooth(m, 0.5, "tensor"),
        "SmoothQuant a=0.5 + W8A8 per-token": lambda m: smooth(m, 0.5, "token"),
        "LLM.int8() threshold 6": ptq.quantize_llm_int8,
        "RTN W4 g128": lambda m: ptq.quantize_rtn(m, 4, "group", 128),
        "AWQ W4 g128": lambda m: awq.quantize_model(m, samples, 4, 128, progress=False),
        "GPTQ W4 g128": lambda m: gptq.quantize_model(m, samples, 4, 128, progress=False),
        "RTN W3 g128": lambda m: ptq.quantize_rtn(m, 3, "group", 128),
        "AWQ W3 g128": lambda m: awq.quantize_model(m, samples, 3, 128, progress=False),
        "GPTQ W3 g128": lambda m: gptq.quantize_model(m, samples, 3, 128, progress=False),
    }


def tiny_outliers(run: Run) -> dict:
    outlier = models.with_outliers(run.model)
    bases = {"qcourse-tiny": run.model, "outlier model": outlier}
    out = {**section_header(run), "channels": list(outlier.outlier_channels),
           "factor": outlier.outlier_factor, "calibration": [run.args.calib_samples, SEQ_LEN],
           "table": {}}
    for label, quantize in outlier_methods(run).items():
        out["table"][label] = {name: run.row("outliers", f"{label} / {name}", lambda: run.scored(
            quantize(copy.deepcopy(base)), base)) for name, base in bases.items()}
    sweep_samples = run.calibration()[:8]
    out["alpha_sweep"] = {}
    for name, base in bases.items():
        stats = calib.collect_activation_stats(base, sweep_samples)

        def smoothed(alpha, activations):
            m = copy.deepcopy(base)
            smoothquant.smooth_llama(m, stats, alpha, include_down=True)
            return run.scored(ptq.quantize_w8a8(m, activations))

        out["alpha_sweep"][name] = {
            f"per-{activations}": {str(alpha): run.row(
                "outliers", f"alpha {alpha} per-{activations} / {name}",
                lambda: smoothed(alpha, activations)) for alpha in ALPHAS}
            for activations in ("tensor", "token")}
    return out


# ---- qcourse-tiny: MiniLM ------------------------------------------------------------------------

def tiny_minilm(run: Run) -> dict:
    from qcourse.models import minilm, retrieval

    bert, tok = minilm.load()
    pairs = retrieval.docstring_pairs("test")
    calib_ids = minilm.token_ids(tok, minilm.sentences(32, split="train"))
    stats = calib.collect_activation_stats(bert, calib_ids)
    texts = minilm.sentences(64)
    reference_top1 = retrieval.rankings(bert, tok, pairs)
    reference_emb = minilm.embed(bert, tok, texts)

    def smooth(m, alpha, activations):
        smoothquant.smooth_explicit(m, stats, alpha)
        return ptq.quantize_w8a8(m, activations)

    variants = {
        "float": lambda m: m,
        "W8A8 per-token": ptq.quantize_w8a8,
        "W8A8 per-tensor": lambda m: ptq.quantize_w8a8(m, "tensor"),
        "SmoothQuant a=0.5 (explicit) + W8A8 per-token": lambda m: smooth(m, 0.5, "token"),
        "SmoothQuant a=0.5 (explicit) + W8A8 per-tensor": lambda m: smooth(m, 0.5, "tensor"),
        "SmoothQuant a=0.75 (explicit) + W8A8 per-tensor": lambda m: smooth(m, 0.75, "tensor"),
        "LLM.int8() threshold 6": ptq.quantize_llm_int8,
        "RTN W8 per channel": lambda m: ptq.quantize_rtn(m, 8, "channel"),
        "RTN W4 g128": lambda m: ptq.quantize_rtn(m, 4, "group", 128),
        "AWQ W4 g128 (explicit)": lambda m: awq.quantize_explicit(m, calib_ids, 4, 128),
        "RTN W3 g128": lambda m: ptq.quantize_rtn(m, 3, "group", 128),
        "AWQ W3 g128 (explicit)": lambda m: awq.quantize_explicit(m, calib_ids, 3, 128),
    }
    fc1 = stats["encoder.layer.0.intermediate.dense"].absmax
    out = {"pairs": len(pairs), "embedding_texts": len(texts), "calibration_sentences": 32,
           "outlier_channel": int(fc1.argmax()), "outlier_max": fc1.max().item(),
           "median_channel_max": fc1.median().item(), "table": {}}

    def measure(quantize):
        m = quantize(copy.deepcopy(bert))
        top1 = retrieval.rankings(m, tok, pairs)
        return {"accuracy": retrieval.accuracy(top1),
                "agreement": retrieval.agreement(top1, reference_top1),
                "one_minus_cosine": 1 - minilm.cosine_quality(reference_emb,
                                                              minilm.embed(m, tok, texts))}

    for label, quantize in variants.items():
        out["table"][label] = run.row("minilm", label, lambda: measure(quantize))
    out["alpha_sweep"] = {"metric": "1 - cosine", "per-tensor": {}, "per-token": {}}
    for alpha in ALPHAS:
        for activations in ("tensor", "token"):
            row = run.row("minilm", f"alpha {alpha} per-{activations}", lambda: measure(
                lambda m: smooth(m, alpha, activations)))
            out["alpha_sweep"][f"per-{activations}"][str(alpha)] = row["one_minus_cosine"]
    return out


# ---- qcourse-tiny: 2 bits --------------------------------------------------------------------

def tiny_twobit(run: Run) -> dict:
    from qcourse import qat
    from qcourse.gguf import importance, quants, reader, writer

    m, samples = run.model, run.calibration()
    scheme, high = QuantScheme(2, 128), QuantScheme(8, 128)
    layers = linear_layers(m)
    found = diagnose(m, run.tokenizer, quantize=scheme, n=4, seq_len=128)
    top = [layer.name for layer in found.most_sensitive(4)]
    plan = {name: high for name in top}
    sizes = {"uniform": bits_per_weight(layers, dict.fromkeys(layers, scheme)),
             "4 layers at 8 bits": bits_per_weight(layers, {**dict.fromkeys(layers, scheme),
                                                             **plan})}

    def gptq2(model):
        return gptq.quantize_model(model, samples, 2, 128, progress=False)

    def qat_row(lr):
        model = qat.prepare(copy.deepcopy(m), 2, 128)
        qat.train(model, run.tokenizer, lr=lr, progress=False, **QAT_RECIPE)
        return run.scored(qat.convert(model))

    variants = {   # label: (make a model, bits per weight of the linear layers, embedding)
        "float": (lambda: copy.deepcopy(m), 32.0, "float32"),
        "RTN W2 g128 asymmetric": (lambda: ptq.quantize_rtn(copy.deepcopy(m), 2, "group", 128),
                                   sizes["uniform"], "float32"),
        "RTN W2 g128 symmetric": (lambda: ptq.quantize_rtn(copy.deepcopy(m), 2, "group", 128,
                                                           symmetric=True),
                                  sizes["uniform"], "float32"),
        "RTN W2 g128, 4 most sensitive layers W8": (
            lambda: planned(ptq.quantize_rtn(copy.deepcopy(m), 2, "group", 128), plan,
                            lambda n, q, s: ptq.rtn_layer(models.get_module(m, n), s)),
            sizes["4 layers at 8 bits"], "float32"),
        "GPTQ W2 g128": (lambda: gptq2(copy.deepcopy(m)), sizes["uniform"], "float32"),
        "GPTQ W2 g128, the same 4 layers W8": (
            lambda: planned(gptq2(copy.deepcopy(m)), plan,
                            lambda n, q, s: ptq.rtn_layer(models.get_module(m, n), s)),
            sizes["4 layers at 8 bits"], "float32"),
    }
    out = {**section_header(run), "most_sensitive_layers": top, "bits_per_weight": sizes,
           "table": {}}
    for label, (make, bits, embedding) in variants.items():
        row = run.row("twobit", label, lambda: run.scored(make()), plan=top)
        out["table"][label] = {**row, "bits_per_weight": bits, "embedding": embedding}
    with tempfile.TemporaryDirectory() as folder:
        matrix = importance.imatrix(m, samples)
        float_embedding = {"token_embd.weight": "F32"}
        ggufs = {"Q2_K": (None, float_embedding), "Q2_K + imatrix": (matrix, float_embedding),
                 "Q2_K + imatrix, embedding Q2_K too": (matrix, None)}
        for label, (matrix_used, override) in ggufs.items():
            def make(matrix_used=matrix_used, override=override, label=label):
                path = pathlib.Path(folder) / "q2k.gguf"
                writer.export(m, run.tokenizer, path, "Q2_K", pure=True, imatrix=matrix_used,
                              tensor_types_override=override)
                return run.scored(reader.load_gguf(path)[0])
            row = run.row("twobit", label, make)
            out["table"][label] = {**row, "bits_per_weight": quants.bits_per_weight("Q2_K"),
                                   "embedding": "float32" if override else "Q2_K"}
    for lr in QAT_LRS:
        label = (f"QAT W2 g128, lr {lr:g} ({QAT_RECIPE['steps']} steps of "
                 f"{QAT_RECIPE['batch_size']}x{QAT_RECIPE['seq_len']} tokens)")
        row = run.row("twobit", label, lambda: qat_row(lr))
        out["table"][label] = {**row, "bits_per_weight": sizes["uniform"], "embedding": "float32"}
    out["qat_recipe"] = {**QAT_RECIPE, "lrs": list(QAT_LRS), "group_size": 128}
    return out


# ---- qcourse-tiny: calibration mismatch --------------------------------------------------------

def tiny_calibration(run: Run) -> dict:
    n = run.args.calib_samples
    out = {**section_header(run), "bits": 3, "group_size": 128, "samples": [n, SEQ_LEN],
           "domains": {}, "curve": {}}
    halves = ("code", "prose")
    for calibrated in ("code", "prose", None):
        def make(calibrated=calibrated):
            model = gptq.quantize_model(run.float_model(), run.calibration(n, domain=calibrated),
                                        3, 128, progress=False)
            bench.dequantize_weights(model)
            return {half: run.scored(model, domain=half) for half in halves}
        out["domains"][calibrated or "mixed"] = run.row("calibration", f"domain {calibrated}",
                                                        make)
    out["domains"]["float"] = run.row("calibration", "domain float", lambda: {
        half: run.scored(run.model, domain=half) for half in halves})
    out["domains"]["RTN W3 g128"] = run.row("calibration", "domain RTN", lambda: {
        half: run.scored(ptq.quantize_rtn(run.float_model(), 3, "group", 128), domain=half)
        for half in halves})
    out["curve_float"] = run.row("calibration", "float", lambda: run.scored(run.model))
    out["curve_rtn"] = run.row("calibration", "RTN W3 g128", lambda: run.scored(
        ptq.quantize_rtn(run.float_model(), 3, "group", 128)))
    out["seeds"] = [1, 2, 3]
    for count in (1, 2, 4, 8, 16, 32):
        out["curve"][str(count)] = {}
        for seed in out["seeds"]:
            def make(count=count, seed=seed):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # few tokens: the rank warning is the point
                    return run.scored(gptq.quantize_model(
                        run.float_model(), run.calibration(count, seed=seed), 3, 128,
                        progress=False))
            out["curve"][str(count)][str(seed)] = run.row(
                "calibration", f"curve {count} seed {seed}", make)
    return out


# ---- qcourse-tiny: GGUF metadata and layout ----------------------------------------------------

def corrupted_gguf_files(model, tokenizer, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """A correct F32 GGUF, one whose q/k rows are not permuted for llama.cpp's RoPE, and one
    whose pre-tokenizer says "qwen2" instead of "gpt-2"."""
    from qcourse.exercises import ex10
    from qcourse.gguf import writer

    files = {name: folder / f"{name}.gguf" for name in ("correct", "rope", "pretokenizer")}
    writer.export(model, tokenizer, files["correct"], "F32")
    writer.export(ex10.unpermuted_copy(model), tokenizer, files["rope"], "F32")
    ex10.with_wrong_pretokenizer(files["correct"], files["pretokenizer"])
    return files


def tiny_gguf(run: Run) -> dict:
    from qcourse.gguf import llamacpp

    text = data.corpus("test")
    hf_ids = run.tokenizer(text, add_special_tokens=False)["input_ids"]
    out = {**section_header(run), "files": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in corrupted_gguf_files(run.model, run.tokenizer,
                                               pathlib.Path(folder)).items():
            def measure(path=path):
                llm = llamacpp.load(path)
                try:
                    ids = llamacpp.tokenize(llm, text)
                    own = evaluation.windows(torch.tensor(ids), SEQ_LEN)
                    own = own[:run.args.windows] if run.args.windows else own
                    nll = evaluation.nll_per_window(llamacpp.logits_fn(llm), own, 1).sum().item()
                    row = run.scored(llamacpp.logits_fn(llm))
                finally:
                    llm.close()
                return {**row, "tokens": len(ids), "hf_tokens": len(hf_ids),
                        "same_tokens_prefix": evaluation.match_length(ids, hf_ids),
                        "bits_per_byte_own_tokens": nll / math.log(2) / len(
                            run.tokenizer.decode(own.flatten().tolist()).encode("utf-8"))}
            out["files"][name] = run.row("gguf", name, measure)
    return out


# ---- qcourse-tiny: GPTQ checkpoint conventions ---------------------------------------------------

def tiny_checkpoint(run: Run) -> dict:
    from safetensors.torch import load_file, save_file

    out = {**section_header(run), "bits": 4, "group_size": 128, "act_order": True, "table": {}}

    def measure() -> dict:
        model = gptq.quantize_model(run.float_model(), run.calibration(), 4, 128, act_order=True,
                                    progress=False)
        table = {}
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")   # zero points of 0 exist: v1's known wrinkle
            path = gptq_checkpoint.save_gptq_checkpoint(model, pathlib.Path(folder) / "ckpt",
                                                        checkpoint_format="gptq")
            table["read as written (gptq, zeros - 1)"] = run.scored(
                gptq_checkpoint.load_gptq_checkpoint(path)[0])
            config = json.loads((path / "config.json").read_text())
            config["quantization_config"]["checkpoint_format"] = "gptq_v2"
            (path / "config.json").write_text(json.dumps(config))
            table["read as gptq_v2 (zeros off by one)"] = run.scored(
                gptq_checkpoint.load_gptq_checkpoint(path)[0])
            config["quantization_config"]["checkpoint_format"] = "gptq"
            (path / "config.json").write_text(json.dumps(config))
            tensors = load_file(str(path / gptq_checkpoint.WEIGHTS_NAME))
            for key in [k for k in tensors if k.endswith(".g_idx")]:
                tensors[key] = torch.arange(len(tensors[key]), dtype=torch.int32) // 128
            save_file(tensors, str(path / gptq_checkpoint.WEIGHTS_NAME))
            table["act-order read without g_idx"] = run.scored(
                gptq_checkpoint.load_gptq_checkpoint(path)[0])
        table["float"] = run.scored(run.model)
        return table

    out["table"] = run.row("checkpoint", "table", measure)
    out["table"].pop("seconds", None)
    return out


# ---- qcourse-tiny: float16 overflow ------------------------------------------------------------

def tiny_fp16(run: Run) -> dict:
    hot = models.with_outliers(run.model, factor=OVERFLOW_FACTOR)
    out = {**section_header(run), "factor": OVERFLOW_FACTOR, "table": {}}
    for name, base in (("qcourse-tiny", run.model), (f"outliers x{OVERFLOW_FACTOR:g}", hot)):
        out["table"][name] = {
            str(dtype).replace("torch.", ""): run.row(
                "fp16", f"{name} {dtype}", lambda: run.scored(copy.deepcopy(base).to(dtype)))
            for dtype in (torch.float16, torch.bfloat16, torch.float32)}
    return out


# ---- SmolLM2: 2 bits, and the recoveries at equal size -------------------------------------------

def real_twobit(run: Run) -> dict:
    m = run.model
    layers = linear_layers(m)
    w3, w2, w2_small, w8 = (QuantScheme(3, 64), QuantScheme(2, 64), QuantScheme(2, 32),
                            QuantScheme(8, 64))
    uniform = {s: bits_per_weight(layers, dict.fromkeys(layers, s)) for s in (w3, w2, w2_small)}
    sensitivity = run.row("twobit", "sensitivity W2 g64", lambda: {"layers": [
        {"name": layer.name, "kl": layer.sensitivity}
        for layer in diagnose(m, run.tokenizer, quantize=w2, n=4, seq_len=128).layers]})
    order = [row["name"] for row in sorted(sensitivity["layers"], key=lambda r: -r["kl"])]
    plan = mixed_precision(order, layers, w2, w8, budget=uniform[w2_small])
    kept = [name for name, s in plan.items() if s == w8]
    samples = run.calibration()

    def gptq_model(scheme):
        return gptq.quantize_model(run.float_model(), samples, scheme.bits, scheme.group_size,
                                   progress=False)

    def rtn_model(scheme):
        return ptq.quantize_rtn(run.float_model(), scheme.bits, "group", scheme.group_size)

    def keep_w8(model):
        return planned(model, {name: w8 for name in kept},
                       lambda n, q, s: ptq.rtn_layer(models.get_module(m, n), s))

    variants = {   # label: (make, bits per weight of the linear layers)
        "float": (run.float_model, 32.0),
        "RTN W3 g64": (lambda: rtn_model(w3), uniform[w3]),
        "RTN W2 g64": (lambda: rtn_model(w2), uniform[w2]),
        "RTN W2 g32": (lambda: rtn_model(w2_small), uniform[w2_small]),
        "RTN W2 g64, most sensitive layers W8": (lambda: keep_w8(rtn_model(w2)),
                                                 bits_per_weight(layers, plan)),
        "GPTQ W2 g64": (lambda: gptq_model(w2), uniform[w2]),
        "GPTQ W2 g32": (lambda: gptq_model(w2_small), uniform[w2_small]),
        "GPTQ W2 g64, the same layers W8": (lambda: keep_w8(gptq_model(w2)),
                                            bits_per_weight(layers, plan)),
    }
    out = {**section_header(run), "sensitivity": sensitivity["layers"], "kept_at_8_bits": kept,
           "budget_bits_per_weight": uniform[w2_small], "calibration": [len(samples), SEQ_LEN],
           "table": {}}
    for label, (make, bits) in variants.items():
        row = run.row("twobit", label, lambda: run.scored(make()), kept=kept)
        out["table"][label] = {**row, "bits_per_weight": bits, "embedding": "float32"}
    return out


# ---- SmolLM2: natural outliers and W8A8 ----------------------------------------------------------

def real_outliers(run: Run) -> dict:
    samples = run.calibration()
    found = diagnose(run.model, samples=samples[:4], sensitivity=False, batch_size=1)
    stats = calib.collect_activation_stats(run.model, samples, batch_size=1)

    def smoothed(alpha, activations):
        model = run.float_model()
        smoothquant.smooth_llama(model, stats, alpha, include_down=True)
        return ptq.quantize_w8a8(model, activations)

    variants = {
        "float": run.float_model,
        "W8A8 per-tensor": lambda: ptq.quantize_w8a8(run.float_model(), "tensor"),
        "W8A8 per-token": lambda: ptq.quantize_w8a8(run.float_model(), "token"),
        "LLM.int8() threshold 6": lambda: ptq.quantize_llm_int8(run.float_model()),
        "SmoothQuant a=0.5 + W8A8 per-tensor": lambda: smoothed(0.5, "tensor"),
        "SmoothQuant a=0.8 + W8A8 per-tensor": lambda: smoothed(0.8, "tensor"),
        "SmoothQuant a=0.5 + W8A8 per-token": lambda: smoothed(0.5, "token"),
    }
    out = {**section_header(run), "calibration": [len(samples), SEQ_LEN],
           "layers": [{"name": layer.name, "act_ratio": layer.act_ratio,
                       "top_channel": layer.top_channels[0], "act_absmax": layer.act_absmax,
                       "output_absmax": layer.output_absmax, "weight_ratio": layer.weight_ratio}
                      for layer in found.layers],
           "table": {}}
    for label, make in variants.items():
        out["table"][label] = run.row("outliers", label, lambda: run.scored(make()))
    return out


# ---- SmolLM2: float16's range ------------------------------------------------------------------

@torch.no_grad()
def largest_activations(model, windows: torch.Tensor) -> list[dict]:
    """Per window: the largest |value| of the residual stream (every block's output) and of
    every linear layer's input and output, in float32, and where it occurs."""
    from qcourse.diagnose import diagnosed_layers

    peaks: dict[str, float] = {}

    def watch(name):
        def hook(module, inputs, output):
            peaks[f"{name} input"] = max(peaks.get(f"{name} input", 0.0),
                                         inputs[0].abs().max().item())
            peaks[f"{name} output"] = max(peaks.get(f"{name} output", 0.0),
                                          output.abs().max().item())
        return hook

    handles = [layer.register_forward_hook(watch(name))
               for name, layer in diagnosed_layers(model).items()]
    rows = []
    try:
        for window in windows:
            peaks.clear()
            hidden = model(window[None], output_hidden_states=True).hidden_states
            for i, h in enumerate(hidden[1:-1]):    # the last one is the final norm's output
                peaks[f"residual after block {i}"] = h.abs().max().item()
            where = max(peaks, key=peaks.get)
            rows.append({"max": peaks[where], "where": where,
                         "residual": max(v for k, v in peaks.items() if k.startswith("residual"))})
    finally:
        for handle in handles:
            handle.remove()
    return rows


def real_fp16(run: Run) -> dict:
    windows = run.windows()
    peaks = run.row("fp16", "largest activations", lambda: {
        "windows": largest_activations(run.model, windows)})["windows"]
    order = sorted(range(len(peaks)), key=lambda i: -peaks[i]["max"])
    closest = sorted(order[:run.args.fp16_windows])

    def in_dtype(dtype):
        model = run.float_model().to(dtype)
        call = evaluation.logits_fn(model)
        nll = [(evaluation.window_nll(call(windows[i:i + 1]), windows[i:i + 1]) /
                (SEQ_LEN - 1)).item() for i in closest]
        return {"windows": closest, "nll": [round(v, 7) if math.isfinite(v) else None
                                            for v in nll]}

    out = {**section_header(run), "float16_max": FP16_MAX, "peaks": peaks,
           "closest_windows": closest, "table": {}}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        out["table"][str(dtype).replace("torch.", "")] = run.row(
            "fp16", f"closest windows {dtype}", lambda: in_dtype(dtype), windows=closest)
    return out


# ---- timings: a missing kernel (quiet machine) -------------------------------------------------

def timings(run: Run) -> dict:
    from qcourse import kernels

    ids = evaluation.evaluation_windows(run.tokenizer, max_windows=1)            # [1, 512]
    four = ptq.quantize_rtn(run.float_model(), 4, "group", 128)
    three = ptq.quantize_rtn(run.float_model(), 3, "group", 128)

    def forward_cost(m, repeats: int = 5) -> dict:
        """Best wall time of a forward pass, and the bytes the ops allocate during one
        (torch.profiler's CPU memory accounting: every temporary, freed or not)."""
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad():
            m(ids)
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                m(ids)
                best = min(best, time.perf_counter() - start)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                m(ids)
        allocated = sum(e.self_cpu_memory_usage for e in prof.key_averages()
                        if e.self_cpu_memory_usage > 0)
        return {"seconds": best, "allocated_bytes": allocated}

    out = {"tokens": int(ids.numel()), "table": {}}
    out["table"]["float32 model"] = forward_cost(run.model)
    out["table"]["W4 QuantLinear (unpacks every call)"] = forward_cost(four)
    out["routed_w4"] = len(kernels.use_kernels(four, "reference"))
    out["table"]["W4 through use_kernels('reference')"] = forward_cost(four)
    kernels.use_kernels(four, None)
    out["table"]["W4 dequantized once (float weights)"] = forward_cost(bench.dequantized_copy(four))
    out["routed_w3"] = len(kernels.use_kernels(three, "reference"))
    out["table"]["W3 QuantLinear (no kernel: fallback)"] = forward_cost(three)
    out["model_bytes"] = {"float32": evaluation.model_size_bytes(run.model),
                          "W4": evaluation.model_size_bytes(four)}
    log(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(SECTIONS), default=TINY)
    parser.add_argument("--windows", type=int, default=None,
                        help="score only the first N test windows (default: all, the record)")
    parser.add_argument("--calib-samples", type=int, default=8)
    parser.add_argument("--fp16-windows", type=int, default=8,
                        help="SmolLM2: windows scored in float16 (those closest to overflow)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sections", default=None, help="comma-separated (default: all)")
    parser.add_argument("--timings", action="store_true",
                        help="time and memory of the kernel paths only (a quiet machine)")
    parser.add_argument("--fresh", action="store_true", help="ignore the cached rows")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if args.timings and args.model != TINY:
        parser.error("--timings measures qcourse-tiny")
    sections = ["timings"] if args.timings else (
        args.sections.split(",") if args.sections else list(SECTIONS[args.model]))
    unknown = set(sections) - set(SECTIONS[args.model]) - ({"timings"} if args.timings else set())
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)} for {args.model}; choose from "
                     f"{SECTIONS[args.model]}")

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    run = Run(args)
    started = time.perf_counter()
    result = {**record.start(), "model": args.model, "kind": "timings" if args.timings else
              "quality", "options": {k: v for k, v in vars(args).items() if k != "out"}}
    name = "failure_modes" + ("-timings" if args.timings else
                              "" if args.model == TINY else f"-{args.model}")
    out = args.out or record.result_path(name)
    partial = out.with_name(out.name + ".partial")     # each section saved as soon as it is done
    for section in sections:
        log(f"== {section}")
        start = time.perf_counter()
        prefix = "" if section == "timings" else ("tiny_" if args.model == TINY else "real_")
        result[section] = globals()[prefix + section](run)
        result[section]["seconds"] = time.perf_counter() - start
        record.write(result, partial)
    result["seconds"] = time.perf_counter() - started
    record.write(record.finish(result), out)
    partial.unlink()
    log(f"wrote {out} ({result['seconds'] / 60:.0f} min)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
