"""Failure modes of quantization, each broken and recovered: the recorded figures of notebook 10.

    python benchmarks/failure_modes.py [--windows N] [--sections outliers,minilm,...]
                                       [--threads 1] [--out FILE]

Sections (all by default), each measured in this one run. The outlier table scores the whole
test split (or ``--windows``); every other section the first ``--subset-windows`` (32) windows.
AWQ and GPTQ calibrate on ``--calib-samples`` (8) windows of 512 train tokens.

outliers     qcourse-tiny and ``qcourse.models.with_outliers(qcourse-tiny)`` (4 residual channels
             x100): perplexity (whole test split unless ``--windows``), and KL to the float model
             and top-1 agreement on the first ``--kl-windows`` windows, for W8 weight-only, W8A8
             per-tensor and per-token, SmoothQuant (alpha 0.5) + W8A8, LLM.int8(), RTN / AWQ /
             GPTQ at 4 and 3 bits (groups of 128); SmoothQuant's alpha sweep on the outlier model
             (``--subset-windows`` windows).
minilm       all-MiniLM-L6-v2 on docstring retrieval over the test split
             (``qcourse.models.retrieval``): accuracy@1, agreement of the top-1 with the float
             model, and 1 - cosine of sentence embeddings, for W8A8, SmoothQuant (explicit
             scales), LLM.int8(), RTN and AWQ (explicit scales); SmoothQuant's alpha sweep.
twobit       2-bit collapse on qcourse-tiny: RTN asymmetric and symmetric, GPTQ, RTN with the most
             sensitive layers at 8 bits, K-quants Q2_K with and without an importance matrix
             (through GGUF), QAT.
calibration  GPTQ 3-bit calibrated on code only, prose only, or both, scored on each half of the
             test split; and perplexity against the number of calibration windows.
gguf         a correct GGUF, one with q/k not permuted for llama.cpp's RoPE, one with the wrong
             pre-tokenizer: llama.cpp's perplexity, its tokenization and bits per byte.
checkpoint   a GPTQ checkpoint read with the wrong zero-point convention, and without g_idx.
fp16         qcourse-tiny and an outlier model with channels x30000 in float16, bfloat16, float32.
kernel       a 4-bit model's forward pass: QuantLinear's own, the kernel path
             (``qcourse.kernels.use_kernels``), the dequantized float model: time, and the memory
             its operations allocate (torch.profiler).

Writes benchmarks/results/failure_modes-<machine>-<date>.json with the run's record
(qcourse.bench.record: CPU, threads, versions, the load average at start and end: on a shared
machine the kernel timings are not quiet-machine figures).
"""
from __future__ import annotations

import argparse
import copy
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
from qcourse.diagnose import diagnose  # noqa: E402
from qcourse.quant import QuantScheme  # noqa: E402

SECTIONS = ("outliers", "minilm", "twobit", "calibration", "gguf", "checkpoint", "fp16", "kernel")
ALPHAS = (0.25, 0.5, 0.75, 1.0)
OVERFLOW_FACTOR = 30000.0     # channels x30000: inputs of ~1e5, beyond float16's 65504


def log(*args) -> None:
    print(*args, flush=True)


class Run:
    """The model, tokenizer, options and the record being written."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model, self.tokenizer = models.load()
        self.outlier = models.with_outliers(self.model)
        self.record: dict = {}

    def calibration(self, n: int | None = None, seq_len: int = 512, domain: str | None = None,
                    seed: int = 0) -> torch.Tensor:
        return data.calibration_samples(self.tokenizer, n or self.args.calib_samples, seq_len,
                                        seed, domain=domain)

    def ppl(self, model, windows: int | None = None, domain: str | None = None) -> float:
        windows = windows if windows is not None else self.args.windows
        return evaluation.perplexity(bench.dequantized_copy(model), self.tokenizer, domain=domain,
                             max_windows=windows)

    def scores(self, model, reference) -> dict:
        """Perplexity (``--windows``), KL to ``reference`` and top-1 agreement (``--kl-windows``)."""
        scorer = bench.dequantized_copy(model)
        found = evaluation.divergence(scorer, reference, self.tokenizer,
                              max_windows=self.args.kl_windows)
        return {"perplexity": self.ppl(scorer), "kl": found["kl_divergence"],
                "top1": found["top1_agreement"]}


def logged(label: str, fn):
    """``fn()``, saying how long it took."""
    out, seconds = record.timed(fn)
    log(f"  {label}: {seconds:.0f} s")
    return out


# ---- outliers -------------------------------------------------------------------------------

def outlier_methods(run: Run) -> dict:
    samples = run.calibration()
    sq_samples = samples[:8]

    def smooth(m, alpha, activations):
        smoothquant.smooth_llama(m, calib.collect_activation_stats(m, sq_samples), alpha)
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


def section_outliers(run: Run) -> dict:
    out = {"channels": list(run.outlier.outlier_channels), "factor": run.outlier.outlier_factor,
           "calibration": [run.args.calib_samples, 512], "table": {}}
    for label, quantize in outlier_methods(run).items():
        row = {}
        for name, base in (("qcourse-tiny", run.model), ("outlier model", run.outlier)):
            row[name] = logged(f"{label}, {name}", lambda: run.scores(
                quantize(copy.deepcopy(base)), base))
        out["table"][label] = row
        log(f"{label:40s} " + "   ".join(f"{k} ppl {v['perplexity']:.2f} KL {v['kl']:.4f}"
                                          for k, v in row.items()))
    sweep_samples = run.calibration()[:8]
    stats = calib.collect_activation_stats(run.outlier, sweep_samples)
    out["alpha_sweep"] = {"windows": run.args.subset_windows, "per-tensor": {}, "per-token": {}}
    for alpha in ALPHAS:
        for activations in ("tensor", "token"):
            m = copy.deepcopy(run.outlier)
            smoothquant.smooth_llama(m, stats, alpha)
            out["alpha_sweep"][f"per-{activations}"][str(alpha)] = run.ppl(
                ptq.quantize_w8a8(m, activations), run.args.subset_windows)
        log(f"alpha {alpha}: {out['alpha_sweep']['per-tensor'][str(alpha)]:.2f} (tensor) "
            f"{out['alpha_sweep']['per-token'][str(alpha)]:.2f} (token)")
    return out


# ---- MiniLM ---------------------------------------------------------------------------------

def section_minilm(run: Run) -> dict:
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
    for label, quantize in variants.items():
        m = quantize(copy.deepcopy(bert))
        top1 = retrieval.rankings(m, tok, pairs)
        out["table"][label] = {
            "accuracy": retrieval.accuracy(top1),
            "agreement": retrieval.agreement(top1, reference_top1),
            "one_minus_cosine": 1 - minilm.cosine_quality(reference_emb, minilm.embed(m, tok, texts))}
        log(f"{label:48s} " + " ".join(f"{k} {v:.4f}" for k, v in out["table"][label].items()))
    out["alpha_sweep"] = {"metric": "1 - cosine", "per-tensor": {}, "per-token": {}}
    for alpha in ALPHAS:
        for activations in ("tensor", "token"):
            m = smooth(copy.deepcopy(bert), alpha, activations)
            out["alpha_sweep"][f"per-{activations}"][str(alpha)] = 1 - minilm.cosine_quality(
                reference_emb, minilm.embed(m, tok, texts))
        log(f"MiniLM alpha {alpha}: " + " ".join(
            f"{k} {v[str(alpha)]:.4f}" for k, v in out["alpha_sweep"].items() if k != "metric"))
    return out


# ---- 2-bit collapse -------------------------------------------------------------------------

def section_twobit(run: Run) -> dict:
    from qcourse.gguf import importance, reader, writer

    m, windows, samples = run.model, run.args.subset_windows, run.calibration()
    found = diagnose(m, run.tokenizer, quantize=QuantScheme(2, 128), n=4, seq_len=128)
    top = [layer.name for layer in found.most_sensitive(4)]

    def rtn_except(model):
        ptq.quantize_rtn(model, 2, "group", 128)
        for name in top:   # the most sensitive layers at 8 bits instead
            models.set_module(model, name, ptq.rtn_layer(models.get_module(run.model, name),
                                                         QuantScheme(8, 128)))
        return model

    out = {"most_sensitive_layers": top, "windows": windows, "table": {}}
    variants = {
        "float": lambda: m,
        "RTN W2 g128 asymmetric": lambda: ptq.quantize_rtn(copy.deepcopy(m), 2, "group", 128),
        "RTN W2 g128 symmetric": lambda: ptq.quantize_rtn(copy.deepcopy(m), 2, "group", 128,
                                                          symmetric=True),
        "RTN W2 g128, 4 most sensitive layers W8": lambda: rtn_except(copy.deepcopy(m)),
        "GPTQ W2 g128": lambda: gptq.quantize_model(copy.deepcopy(m), samples, 2, 128,
                                                    progress=False),
        "GPTQ W2 g128 act-order": lambda: gptq.quantize_model(copy.deepcopy(m), samples, 2, 128,
                                                              act_order=True, progress=False),
    }
    with tempfile.TemporaryDirectory() as folder:
        matrix = importance.imatrix(m, samples)
        for use in (False, True):
            path = pathlib.Path(folder) / f"q2k-{use}.gguf"
            writer.export(m, run.tokenizer, path, "Q2_K", pure=True,
                          imatrix=matrix if use else None)
            label = f"Q2_K (pure){' + imatrix' if use else ''}"
            variants[label] = lambda path=path: reader.load_gguf(path)[0]
        for label, make in variants.items():
            out["table"][label] = logged(label, lambda: run.ppl(make(), windows))
            log(f"{label:40s} {out['table'][label]:.2f}")
    if run.args.qat_steps:
        from qcourse import qat
        model = qat.prepare(copy.deepcopy(m), 2, 128)
        qat.train(model, run.tokenizer, run.args.qat_steps, lr=run.args.qat_lr, batch_size=4,
                  seq_len=256, progress=False)
        label = f"QAT W2 g128 ({run.args.qat_steps} steps of 4x256 tokens, lr {run.args.qat_lr:g})"
        out["table"][label] = run.ppl(qat.convert(model), windows)
        log(f"{label:40s} {out['table'][label]:.2f}")
    return out


# ---- calibration mismatch --------------------------------------------------------------------

def section_calibration(run: Run) -> dict:
    n, windows = run.args.calib_samples, run.args.subset_windows
    out = {"bits": 3, "group_size": 128, "samples": [n, 512], "windows": windows,
           "domains": {}, "curve": {}}
    for calibrated in ("code", "prose", None):
        samples = run.calibration(n, domain=calibrated)
        model = gptq.quantize_model(copy.deepcopy(run.model), samples, 3, 128, progress=False)
        row = {domain: run.ppl(model, windows, domain) for domain in ("code", "prose")}
        out["domains"][calibrated or "mixed"] = row
        log(f"GPTQ W3 calibrated on {calibrated or 'mixed'}: {row}")
    out["domains"]["float"] = {d: run.ppl(run.model, windows, d) for d in ("code", "prose")}
    out["domains"]["RTN W3 g128"] = {d: run.ppl(ptq.quantize_rtn(
        copy.deepcopy(run.model), 3, "group", 128), windows, d) for d in ("code", "prose")}
    out["curve_windows"] = run.args.subset_windows
    out["curve_float"] = run.ppl(run.model, run.args.subset_windows)
    out["curve_rtn"] = run.ppl(ptq.quantize_rtn(copy.deepcopy(run.model), 3, "group", 128),
                               run.args.subset_windows)
    for count in (1, 2, 4, 8, 16, 32):
        samples = run.calibration(count, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # few tokens: the rank warning is the point
            model = gptq.quantize_model(copy.deepcopy(run.model), samples, 3, 128,
                                        progress=False)
        out["curve"][str(count)] = run.ppl(model, run.args.subset_windows)
        log(f"GPTQ W3 with {count} x 512 calibration tokens: {out['curve'][str(count)]:.2f}")
    return out


# ---- GGUF metadata and layout ----------------------------------------------------------------

def corrupted_gguf_files(model, tokenizer, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """A correct F32 GGUF, one whose q/k rows are not permuted for llama.cpp's RoPE, and one
    whose pre-tokenizer says "qwen2" instead of "gpt-2"."""
    from qcourse.gguf import writer

    files = {name: folder / f"{name}.gguf" for name in ("correct", "rope", "pretokenizer")}
    writer.export(model, tokenizer, files["correct"], "F32")
    unpermuted = copy.deepcopy(model)
    config = model.config
    with torch.no_grad():
        for block in unpermuted.model.layers:   # export permutes again: the file holds HF rows
            q, k = block.self_attn.q_proj.weight, block.self_attn.k_proj.weight
            q.copy_(writer.unpermute_qk(q, config.num_attention_heads))
            k.copy_(writer.unpermute_qk(k, config.num_key_value_heads))
    writer.export(unpermuted, tokenizer, files["rope"], "F32")
    raw = files["correct"].read_bytes()
    files["pretokenizer"].write_bytes(raw.replace(b"gpt-2", b"qwen2", 1))
    return files


def section_gguf(run: Run) -> dict:
    from qcourse.gguf import llamacpp

    windows = run.args.subset_windows
    text = data.corpus("test")
    hf_ids = run.tokenizer(text, add_special_tokens=False)["input_ids"]
    out = {"windows": windows, "files": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in corrupted_gguf_files(run.model, run.tokenizer,
                                               pathlib.Path(folder)).items():
            llm = llamacpp.load(path)
            ids = llamacpp.tokenize(llm, text)
            own = evaluation.windows(torch.tensor(ids), 512)[:windows]
            nll = evaluation.nll_per_window(llamacpp.logits_fn(llm), own, 1).sum().item()
            row = {"perplexity_on_hf_tokens": llamacpp.perplexity(llm, run.tokenizer,
                                                                  max_windows=windows),
                   "tokens": len(ids), "hf_tokens": len(hf_ids),
                   "same_tokens_prefix": evaluation.match_length(ids, hf_ids),
                   "bits_per_byte_own_tokens": nll / math.log(2) / len(
                       run.tokenizer.decode(own.flatten().tolist()).encode("utf-8"))}
            out["files"][name] = row
            log(f"{name}: {row}")
            del llm
    return out


# ---- GPTQ checkpoint conventions ----------------------------------------------------------------

def section_checkpoint(run: Run) -> dict:
    from safetensors.torch import load_file, save_file

    samples, windows = run.calibration(), run.args.subset_windows
    model = gptq.quantize_model(copy.deepcopy(run.model), samples, 4, 128, act_order=True,
                                progress=False)
    out = {"bits": 4, "group_size": 128, "act_order": True, "windows": windows, "table": {}}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = gptq_checkpoint.save_gptq_checkpoint(model, pathlib.Path(folder) / "ckpt",
                                                    checkpoint_format="gptq")
        out["table"]["read as written (gptq, zeros - 1)"] = run.ppl(
            gptq_checkpoint.load_gptq_checkpoint(path)[0], windows)
        config = json.loads((path / "config.json").read_text())
        config["quantization_config"]["checkpoint_format"] = "gptq_v2"
        (path / "config.json").write_text(json.dumps(config))
        out["table"]["read as gptq_v2 (zeros off by one)"] = run.ppl(
            gptq_checkpoint.load_gptq_checkpoint(path)[0], windows)
        config["quantization_config"]["checkpoint_format"] = "gptq"
        (path / "config.json").write_text(json.dumps(config))
        tensors = load_file(str(path / gptq_checkpoint.WEIGHTS_NAME))
        for key in [k for k in tensors if k.endswith(".g_idx")]:
            tensors[key] = torch.arange(len(tensors[key]), dtype=torch.int32) // 128
        save_file(tensors, str(path / gptq_checkpoint.WEIGHTS_NAME))
        out["table"]["act-order read without g_idx"] = run.ppl(
            gptq_checkpoint.load_gptq_checkpoint(path)[0], windows)
    out["table"]["float"] = run.ppl(run.model, windows)
    log(out["table"])
    return out


# ---- float16 overflow ----------------------------------------------------------------------

def section_fp16(run: Run) -> dict:
    windows = run.args.subset_windows
    hot = models.with_outliers(run.model, factor=OVERFLOW_FACTOR)
    out = {"factor": OVERFLOW_FACTOR, "windows": windows, "table": {}}
    for name, base in (("qcourse-tiny", run.model), (f"outliers x{OVERFLOW_FACTOR:g}", hot)):
        row = {}
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            row[str(dtype).replace("torch.", "")] = evaluation.perplexity(
                copy.deepcopy(base).to(dtype), run.tokenizer, max_windows=windows)
        out["table"][name] = row
        log(name, row)
    return out


# ---- a missing kernel ----------------------------------------------------------------------

def section_kernel(run: Run) -> dict:
    from qcourse import kernels

    ids = evaluation.evaluation_windows(run.tokenizer, max_windows=1)            # [1, 512]
    four = ptq.quantize_rtn(copy.deepcopy(run.model), 4, "group", 128)
    three = ptq.quantize_rtn(copy.deepcopy(run.model), 3, "group", 128)

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
    parser.add_argument("--windows", type=int, default=None, help="test windows (default: all)")
    parser.add_argument("--kl-windows", type=int, default=16)
    parser.add_argument("--subset-windows", type=int, default=32,
                        help="test windows of every section but the outlier table")
    parser.add_argument("--calib-samples", type=int, default=8)
    parser.add_argument("--qat-steps", type=int, default=100)
    parser.add_argument("--qat-lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    run = Run(args)
    started = time.perf_counter()
    result = {**record.start(), "windows": args.windows or "whole test split",
              "options": {k: v for k, v in vars(args).items() if k != "out"}}
    out = args.out or record.result_path("failure_modes")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")     # each section saved as soon as it is done
    for name in sections:
        log(f"== {name}")
        start = time.perf_counter()
        result[name] = globals()[f"section_{name}"](run)
        result[name]["seconds"] = time.perf_counter() - start
        partial.write_text(json.dumps(result, indent=1, default=str) + "\n")
    result["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(record.finish(result), indent=1, default=str) + "\n")
    partial.unlink()
    log(f"wrote {out} ({result['seconds'] / 60:.0f} min)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
