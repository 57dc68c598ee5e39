"""The frontier formats on the whole of qcourse-tiny: weight formats, KV caches, HQQ, rotations.

    python benchmarks/frontier.py [--max-windows N] [--samples 128] [--new-tokens 448]

One run measures, on the test split (whole unless ``--max-windows``):

* **weights**: every linear layer (not the embeddings/head) in FP8 (plain cast and per channel),
  MXFP8/MXFP6/MXFP4, NVFP4, INT4 g128, NF4, the K-quants, HQQ, RTN and GPTQ at 4 and 3 bits:
  bits per weight, relative weight error ``Σ‖W - W'‖² / Σ‖W‖²`` and perplexity;
* **weights and activations**: W8A8-FP8 (per channel / per token) and W4A4 in MXFP4 and NVFP4;
* **KV cache**: perplexity, bytes per token and greedy agreement over long generations for int8 /
  int4 / int2 / FP8 caches, transformers' ``QuantizedCache`` (HQQ backend) and llama.cpp's
  ``type_k``/``type_v`` (f16, q8_0, q4_0);
* **rotations**: W4A16 / W4A8 / W4A4 with and without the Hadamard rotation, on qcourse-tiny and
  on notebook 10's outlier model (``qcourse.models.with_outliers``), and the peak-to-RMS of every
  linear layer's input before and after.

Results go to ``benchmarks/results/frontier-<machine>-<date>.json`` with the run's record
(:mod:`qcourse.bench.record`: CPU model, threads, versions, date, the load average at start and
end: the machine may be shared). Only errors and
perplexities are recorded, no speeds.
"""
from __future__ import annotations

from qcourse.bench import record

# benchmarks/gguf.py would shadow gguf-py (which qcourse.gguf's export imports)
record.leave_script_folder_off_sys_path(__file__)

import argparse  # noqa: E402
import copy  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qcourse import (calib, data, evaluation, gguf, gptq, hqq, kvcache, models,  # noqa: E402
                     mx, nf4, rotate)
from qcourse.experiments import rotation  # noqa: E402
from qcourse.formats import bits_per_weight
from qcourse.gguf import cache_types, llamacpp
from qcourse.gguf.quants import bits_per_weight as gguf_bits_per_weight
from qcourse.layers import fake_quantize_weights, quantize_inputs
from qcourse.models import linear_layers
from qcourse.quant import fake_quantize
from qcourse.references import hqq_lib

LIBRARIES = ("torchao", "hqq", "llama_cpp")


def kquant(W: torch.Tensor, qtype: str) -> torch.Tensor:
    """llama.cpp's ``qtype`` round trip of ``W`` (our bit-exact codec, :mod:`qcourse.gguf`)."""
    blocks = gguf.quantize(W.numpy().astype(np.float32), qtype)
    return torch.from_numpy(gguf.dequantize(blocks, qtype, tuple(W.shape)).copy())


def rtn(W: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    return fake_quantize(W, bits, symmetric=False, granularity="group", group_size=group_size)


def weight_formats() -> dict[str, tuple[float, object]]:
    """name -> (bits per weight as stored, the round trip of a weight [N, K])."""
    table = {
        "FP8 E4M3 (cast)": (8.0, functools.partial(mx.fake_quantize, fmt="fp8_e4m3")),
        "FP8 E4M3 per channel": (8.0, functools.partial(mx.fake_quantize_fp8, granularity="channel")),
        "FP8 E5M2 per channel": (8.0, functools.partial(mx.fake_quantize_fp8, fmt="fp8_e5m2",
                                                        granularity="channel")),
        "FP8 E4M3 128x128": (8.0, functools.partial(mx.fake_quantize_fp8, granularity="block")),
    }
    for fmt in ("mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "nvfp4"):
        table[fmt.upper()] = (mx.get_format(fmt).bits_per_weight,
                              functools.partial(mx.fake_quantize, fmt=fmt))
    table["INT8 per channel"] = (8.0, lambda W: fake_quantize(W, 8, symmetric=True, granularity="channel"))
    table["INT4 g128 (RTN)"] = (bits_per_weight(4, 128, 16, 4), functools.partial(rtn, bits=4, group_size=128))
    table["INT3 g128 (RTN)"] = (bits_per_weight(3, 128, 16, 3), functools.partial(rtn, bits=3, group_size=128))
    table["NF4 (block 64)"] = (4.5, nf4.fake_nf4)
    for qtype in ("Q8_0", "Q6_K", "Q4_K", "Q4_0", "Q3_K"):
        table[qtype] = (gguf_bits_per_weight(qtype), functools.partial(kquant, qtype=qtype))
    for bits in (4, 3):
        table[f"HQQ {bits}-bit g128"] = (bits_per_weight(bits, 128, 16, 16),
                                         lambda W, b=bits: hqq.hqq_quantize(W, b, 128).weight)
        table[f"HQQ {bits}-bit g64"] = (bits_per_weight(bits, 64, 16, 16),
                                        lambda W, b=bits: hqq.hqq_quantize(W, b, 64).weight)
    return table


def relative_error(model: torch.nn.Module, quantized: torch.nn.Module) -> float:
    """``Σ‖W - W'‖² / Σ‖W‖²`` over the linear layers (quantized ones through ``weight()``)."""
    num = den = 0.0
    for name, linear in linear_layers(model).items():
        W = linear.weight.detach().double()
        other = quantized.get_submodule(name)
        W_hat = (other.weight() if callable(other.weight) else other.weight).detach().double()
        num += (W - W_hat).pow(2).sum().item()
        den += W.pow(2).sum().item()
    return num / den


def weights_section(model, tok, samples, ppl) -> dict:
    rows = {}
    for name, (bpw, fn) in weight_formats().items():
        start = time.perf_counter()
        quantized = fake_quantize_weights(copy.deepcopy(model), fn)
        rows[name] = {"bits_per_weight": bpw, "relative_error": relative_error(model, quantized),
                      "perplexity": ppl(quantized)}
        print(f"{name:24s} {bpw:6.3f} bpw  err {rows[name]['relative_error']:.2e}  "
              f"ppl {rows[name]['perplexity']:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    for bits in (4, 3):
        start = time.perf_counter()
        quantized = gptq.quantize_model(copy.deepcopy(model), samples, bits, 128, progress=False)
        name = f"GPTQ {bits}-bit g128"
        rows[name] = {"bits_per_weight": bits_per_weight(bits, 128, 16, bits),
                      "relative_error": relative_error(model, quantized), "perplexity": ppl(quantized),
                      "seconds": time.perf_counter() - start}
        print(f"{name:24s} ppl {rows[name]['perplexity']:.3f}", flush=True)
    theirs = hqq_lib.quantize_model(copy.deepcopy(model), 4, 64)
    rows["hqq package 4-bit g64"] = {"bits_per_weight": bits_per_weight(4, 64, 16, 16),
                                     "relative_error": relative_error(model, theirs),
                                     "perplexity": ppl(theirs)}
    return rows


def activations_section(model, ppl) -> dict:
    per_channel = functools.partial(mx.fake_quantize_fp8, granularity="channel")
    setups = {"W8A8 FP8 E4M3 (channel / token)": (per_channel, per_channel),
              "W4A4 MXFP4": (functools.partial(mx.fake_quantize, fmt="mxfp4"),) * 2,
              "W4A4 NVFP4": (functools.partial(mx.fake_quantize, fmt="nvfp4"),) * 2,
              "W4A16 MXFP4": (functools.partial(mx.fake_quantize, fmt="mxfp4"), None)}
    rows = {}
    for name, (weights, inputs) in setups.items():
        quantized = fake_quantize_weights(copy.deepcopy(model), weights)
        if inputs is not None:
            quantize_inputs(quantized, inputs)
        rows[name] = ppl(quantized)
        print(f"{name:34s} ppl {rows[name]:.3f}", flush=True)
    return rows


KV_SCHEMES = (kvcache.KVScheme("int", 8), kvcache.KVScheme("int", 8, 32), kvcache.KVScheme("int", 4, 32),
              kvcache.KVScheme("int", 4), kvcache.KVScheme("int", 4, symmetric=False),
              kvcache.KVScheme("int", 4, symmetric=False, hqq=True),
              kvcache.KVScheme("int", 2, symmetric=False), kvcache.KVScheme("int", 2, 32, symmetric=False),
              kvcache.KVScheme("fp8_e4m3"), kvcache.KVScheme("fp8_e5m2"))


def kv_section(model, ppl, float_ppl: float, prompts: torch.Tensor, new_tokens: int) -> dict:
    head_dim = model.config.head_dim
    reference = kvcache.greedy(model, prompts, new_tokens)
    rows = {"float (fp16 storage)": {"bits_per_value": 16.0, "perplexity": float_ppl}}
    for scheme in KV_SCHEMES:
        start = time.perf_counter()
        rows[scheme.name] = {"bits_per_value": 8 * scheme.bytes_per_value(head_dim),
                             "perplexity": ppl(kvcache.WithQuantizedCache(model, scheme)),
                             **kvcache.agreement(reference, kvcache.greedy(model, prompts, new_tokens,
                                                                           scheme))}
        print(f"KV {scheme.name:16s} {rows[scheme.name]} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    with torch.no_grad():
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             past_key_values=hqq_lib.quantized_cache(model.config, 4, 64, 128),
                             pad_token_id=model.config.eos_token_id)
    rows["transformers QuantizedCache hqq 4-bit (residual 128)"] = kvcache.agreement(
        reference, out[:, prompts.shape[1]:])
    print(rows["transformers QuantizedCache hqq 4-bit (residual 128)"], flush=True)
    return rows


def llamacpp_kv_section(model, tok, max_windows) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "qcourse-tiny-f32.gguf"
        gguf.export(model, tok, path, "F32")
        for name, (_, bits) in cache_types.CACHE_TYPES.items():
            llm = cache_types.load_with_cache(path, name, name)
            rows[name] = {"bits_per_value": bits,
                          "perplexity": llamacpp.perplexity(llm, tok, max_windows=max_windows)}
            del llm
            print(f"llama.cpp KV {name}: {rows[name]}", flush=True)
    return rows


def rotation_section(model, tok, samples, max_windows) -> dict:
    results = rotation.rotation_experiment(model, tok, max_windows=max_windows)
    print(results, flush=True)
    outlier_model = models.with_outliers(model)        # notebook 10's outlier channels
    results["outlier model"] = {
        f"{kind}": row for kind, row in rotation.rotation_experiment(
            outlier_model, tok, max_windows=max_windows).items()}
    print(results["outlier model"], flush=True)
    peaks = {}
    for kind, m in (("plain", model), ("rotated", rotate.rotate_model(copy.deepcopy(model)))):
        stats = calib.collect_activation_stats(m, samples[:8])
        peaks[kind] = {name: (s.absmax.max() / s.mean_sq.mean().sqrt()).item()
                       for name, s in stats.items()}
    results["channel_peak_to_rms"] = peaks
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=448)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, tok = models.load()
    samples = data.calibration_samples(tok, args.samples, 512, seed=0)
    prompts = data.calibration_samples(tok, args.prompts, 512 - args.new_tokens, seed=1)
    ppl = functools.partial(evaluation.perplexity, tokenizer=tok, max_windows=args.max_windows)
    result = {**record.start(LIBRARIES), "max_windows": args.max_windows,
              "calibration": [args.samples, 512],
              "greedy": {"prompts": args.prompts, "prompt_tokens": prompts.shape[1],
                         "new_tokens": args.new_tokens}}
    start = time.perf_counter()
    result["float_perplexity"] = ppl(model)
    result["weights"] = weights_section(model, tok, samples, ppl)
    result["activations"] = activations_section(model, ppl)
    result["kv_cache"] = kv_section(model, ppl, result["float_perplexity"], prompts,
                                    args.new_tokens)
    result["llamacpp_kv_cache"] = llamacpp_kv_section(model, tok, args.max_windows)
    result["rotation"] = rotation_section(model, tok, samples, args.max_windows)
    result["seconds"] = time.perf_counter() - start
    out = record.write(record.finish(result), args.out or record.result_path("frontier"))
    print(f"wrote {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
