"""The frontier formats on a whole model: weight formats, W4A4, KV caches, HQQ, rotations.

    python benchmarks/frontier.py [--model qcourse-tiny|smollm2-135m] [--sections ...]
                                  [--max-windows N] [--threads 2]
    python benchmarks/frontier.py --timings [--model ...]      # speeds only: on a quiet machine

Quality (deterministic; recorded on the whole test split unless ``--max-windows``, each row's
per-window negative log-likelihood kept so that any two rows compare pairwise,
:func:`qcourse.evaluation.paired_difference`):

* ``weights``: every linear layer's weight (the embedding and output head stay float32) through
  FP8 (cast, per channel, blocks), MXFP8/MXFP6/MXFP4, NVFP4, INT4/INT3 (RTN), NF4, the K-quants,
  HQQ and GPTQ: bits per weight, relative weight error ``Σ‖W - W'‖² / Σ‖W‖²`` and perplexity;
* ``activations``: W8A8-FP8 (per channel / per token), W4A4 in MXFP4 and NVFP4, W4A16 MXFP4;
* ``kv``: perplexity and greedy agreement over long generations for int8/int4/int2/FP8 caches
  per token, with a float residual and KIVI (keys per channel); on qcourse-tiny also
  transformers' ``QuantizedCache`` (HQQ backend) and llama.cpp's ``type_k``/``type_v``;
* ``rotation``: W16A4 (activations alone) and W4A4 for plain / norms folded / rotated (full
  width Hadamard, blocks of 64, random orthogonal) models; on qcourse-tiny also notebook 10's
  outlier model and the channel peak-to-RMS of every linear input.

Each finished row is cached (``$QCOURSE_CACHE/frontier/<model>-<windows>/``): a rerun, or a run
of other sections, recomputes only what is missing (``--fresh`` ignores the cache). Results go
to ``benchmarks/results/frontier-<model>-<arch>-<date>.json`` with the run's record
(:mod:`qcourse.bench.record`).

``--timings`` records only speeds (``frontier-timings-<model>-...``): seconds to quantize the
model with RTN, HQQ and GPTQ (the HQQ-versus-GPTQ claim), and the throughput of the fake
quantizers against one matmul. Timings need a quiet machine; the quality run does not.
"""
from __future__ import annotations

from qcourse.bench import record

# benchmarks/gguf.py would shadow gguf-py (which qcourse.gguf's export imports)
record.leave_script_folder_off_sys_path(__file__)

import argparse  # noqa: E402
import copy  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qcourse import calib, data, gguf, gptq, hqq, kvcache, models, mx, nf4, ptq, rotate  # noqa: E402
from qcourse.evaluation import protocol  # noqa: E402
from qcourse.experiments import rotation  # noqa: E402
from qcourse.formats import bits_per_weight  # noqa: E402
from qcourse.gguf import cache_types, llamacpp  # noqa: E402
from qcourse.gguf.quants import bits_per_weight as gguf_bits_per_weight  # noqa: E402
from qcourse.layers import fake_quantize_weights, quantize_inputs  # noqa: E402
from qcourse.models import linear_layers  # noqa: E402
from qcourse.paths import cache_dir  # noqa: E402
from qcourse.quant import fake_quantize  # noqa: E402
from qcourse.references import hqq_lib  # noqa: E402

LIBRARIES = ("torchao", "hqq", "llama_cpp")
SECTIONS = ("weights", "activations", "kv", "rotation")
TINY, REAL = "qcourse-tiny", "smollm2-135m"


# ---- the rows ---------------------------------------------------------------------------------

def kquant(W: torch.Tensor, qtype: str) -> torch.Tensor:
    """llama.cpp's ``qtype`` round trip of ``W`` (our bit-exact codec, :mod:`qcourse.gguf`)."""
    blocks = gguf.quantize(W.numpy().astype(np.float32), qtype)
    return torch.from_numpy(gguf.dequantize(blocks, qtype, tuple(W.shape)).copy())


def rtn(W: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    return fake_quantize(W, bits, symmetric=False, granularity="group", group_size=group_size)


def weight_formats(model_name: str) -> dict[str, tuple[float, object]]:
    """name -> (bits per weight as stored, the round trip of a weight [N, K]). SmolLM2's widths
    (576, 1536) take groups of 32 or 64, not 128 or K-quant blocks of 256: it gets the rows that
    fit, the 4-bit ones first."""
    mxf = lambda fmt: (mx.get_format(fmt).bits_per_weight, functools.partial(mx.fake_quantize, fmt=fmt))  # noqa: E731
    hqq_row = lambda b, g: (bits_per_weight(b, g, 16, 16), lambda W: hqq.hqq_quantize(W, b, g).weight)  # noqa: E731
    if model_name == REAL:
        return {"MXFP4": mxf("mxfp4"), "NVFP4": mxf("nvfp4"),
                "INT4 g64 (RTN)": (bits_per_weight(4, 64, 16, 4), functools.partial(rtn, bits=4, group_size=64)),
                "HQQ 4-bit g64": hqq_row(4, 64),
                "NF4 (block 64)": (4.5, nf4.fake_nf4),
                "Q4_0": (gguf_bits_per_weight("Q4_0"), functools.partial(kquant, qtype="Q4_0"))}
    table = {
        "FP8 E4M3 (cast)": (8.0, functools.partial(mx.fake_quantize, fmt="fp8_e4m3")),
        "FP8 E4M3 per channel": (8.0, functools.partial(mx.fake_quantize_fp8, granularity="channel")),
        "FP8 E5M2 per channel": (8.0, functools.partial(mx.fake_quantize_fp8, fmt="fp8_e5m2",
                                                        granularity="channel")),
        "FP8 E4M3 128x128": (8.0, functools.partial(mx.fake_quantize_fp8, granularity="block")),
    }
    for fmt in ("mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "nvfp4"):
        table[fmt.upper()] = mxf(fmt)
    table["INT8 per channel"] = (8.0, lambda W: fake_quantize(W, 8, symmetric=True, granularity="channel"))
    for bits in (4, 3):
        table[f"INT{bits} g128 (RTN)"] = (bits_per_weight(bits, 128, 16, bits),
                                          functools.partial(rtn, bits=bits, group_size=128))
    table["NF4 (block 64)"] = (4.5, nf4.fake_nf4)
    for qtype in ("Q8_0", "Q6_K", "Q4_K", "Q4_0", "Q3_K"):
        table[qtype] = (gguf_bits_per_weight(qtype), functools.partial(kquant, qtype=qtype))
    for bits in (4, 3):
        table[f"HQQ {bits}-bit g128"] = hqq_row(bits, 128)
        table[f"HQQ {bits}-bit g64"] = hqq_row(bits, 64)
    return table


def gptq_rows(model_name: str) -> dict[str, tuple[int, int]]:
    """name -> (bits, group size) of the GPTQ rows (calibrated on the run's samples)."""
    if model_name == REAL:
        return {"GPTQ 4-bit g64": (4, 64)}
    return {"GPTQ 4-bit g128": (4, 128), "GPTQ 3-bit g128": (3, 128)}


ACTIVATION_ROWS = {   # name -> (weight round trip, activation round trip per token, or None)
    "W4A4 NVFP4": ("nvfp4", "nvfp4"), "W4A4 MXFP4": ("mxfp4", "mxfp4"),
    "W4A16 MXFP4": ("mxfp4", None), "W8A8 FP8 E4M3 (channel / token)": ("fp8", "fp8")}


def activation_quantizer(name: str | None):
    if name is None:
        return None
    if name == "fp8":
        return functools.partial(mx.fake_quantize_fp8, granularity="channel")
    return functools.partial(mx.fake_quantize, fmt=name)


def kv_schemes(model_name: str) -> list[kvcache.KVScheme]:
    """The caches compared, in order: per token without a residual, the same with a float
    residual of 128 (to separate the residual from the axis), KIVI (keys per channel)."""
    K = kvcache.KVScheme
    asym = functools.partial(K, "int", symmetric=False)
    core = [asym(2), kvcache.KIVI(2), asym(2, 32, residual=128), K("int", 4, 32), kvcache.KIVI(4),
            asym(4), K("int", 8), K("fp8_e4m3")]
    if model_name == REAL:
        return core
    return core + [K("int", 8, 32), K("int", 4), asym(4, hqq=True), asym(2, 32), K("fp8_e5m2"),
                   asym(4, 32, residual=128)]


ROTATION_KINDS = ("plain", "norms folded", "rotated", "rotated, blocks of 64", "rotated, orthogonal")


def rotation_rows(model_name: str) -> list[tuple[str, str, int | None, int | None]]:
    """(model prefix, kind, w_bits, a_bits) of each rotation row, the most telling first:
    W16A4 (activations alone) and W4A4 for every kind; on qcourse-tiny also W4A8 and W4A16, and
    notebook 10's outlier model."""
    if model_name == REAL:
        return ([("", kind, None, 4) for kind in ROTATION_KINDS]
                + [("", kind, 4, 4) for kind in ROTATION_KINDS[:4]])
    settings = ((None, 4), (4, 4), (4, 8), (4, None))
    return [(prefix, kind, w, a) for prefix in ("", "outlier model ") for kind in ROTATION_KINDS
            for w, a in settings]


# ---- running and caching rows -----------------------------------------------------------------

class Rows:
    """Each row computed once: its result is cached as JSON under ``folder`` (by name)."""

    def __init__(self, folder: pathlib.Path, fresh: bool) -> None:
        self.folder, self.fresh = folder, fresh
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, compute) -> dict:
        path = self.folder / (re.sub(r"[^\w.+-]+", "_", name) + ".json")
        if path.exists() and not self.fresh:
            return json.loads(path.read_text())
        start = time.perf_counter()
        row = compute()
        path.write_text(json.dumps(row))
        ppl = f"ppl {row['perplexity']:.3f}" if "perplexity" in row else ""
        print(f"{name:48s} {ppl} ({time.perf_counter() - start:.0f} s)", flush=True)
        return row


class Run:
    """The model (reloaded for each row: nothing is deep-copied, one copy in memory), its
    tokenizer, the protocol and calibration samples of one run."""

    def __init__(self, model_name: str, windows: int | None, samples: int, prompts: int,
                 new_tokens: int) -> None:
        self.model_name = model_name
        self.protocol = protocol.WHOLE if windows is None else protocol.Protocol(
            f"first {windows} test windows", windows)
        _, self.tok = self.load()
        self.samples = data.calibration_samples(self.tok, samples, 512, seed=0)
        self.prompts = data.calibration_samples(self.tok, prompts, 512 - new_tokens, seed=1)
        self.new_tokens = new_tokens
        self.batch_size = 2 if model_name == REAL else 8

    def load(self):
        return models.load(self.model_name)

    def score(self, model) -> dict:
        s = protocol.score(model, self.tok, self.protocol, batch_size=self.batch_size)
        return {"perplexity": s.perplexity, "nll": s.nll.tolist()}


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


def weights_section(run: Run, rows: Rows) -> dict:
    reference, _ = run.load()
    out = {}

    def weight_row(bpw, quantize):
        model, _ = run.load()
        quantize(model)
        return {"bits_per_weight": bpw, "relative_error": relative_error(reference, model),
                **run.score(model)}

    for name, (bpw, fn) in weight_formats(run.model_name).items():
        out[name] = rows.get(name, lambda: weight_row(bpw, lambda m: fake_quantize_weights(m, fn)))
    for name, (bits, group) in gptq_rows(run.model_name).items():
        out[name] = rows.get(name, lambda: weight_row(
            bits_per_weight(bits, group, 16, bits),
            lambda m: gptq.quantize_model(m, run.samples, bits, group, progress=False)))
    if run.model_name == TINY:
        out["hqq package 4-bit g64"] = rows.get("hqq package 4-bit g64", lambda: weight_row(
            bits_per_weight(4, 64, 16, 16), lambda m: hqq_lib.quantize_model(m, 4, 64)))
    return out


def activations_section(run: Run, rows: Rows) -> dict:
    def row(weights, inputs):
        model, _ = run.load()
        fake_quantize_weights(model, activation_quantizer(weights))
        if inputs is not None:
            quantize_inputs(model, activation_quantizer(inputs))
        return run.score(model)

    return {name: rows.get(name, lambda: row(*setup)) for name, setup in ACTIVATION_ROWS.items()}


def kv_section(run: Run, rows: Rows) -> dict:
    model, _ = run.load()
    head_dim = model.config.head_dim
    reference = rows.get("greedy float", lambda: {
        "tokens": kvcache.greedy(model, run.prompts, run.new_tokens).tolist()})
    reference = torch.tensor(reference["tokens"])

    def row(scheme):
        generated = kvcache.greedy(model, run.prompts, run.new_tokens, scheme)
        return {"bits_per_value": 8 * scheme.bytes_per_value(head_dim),
                "cache_bytes_512": kvcache.cache_bytes(model.config, 512, scheme),
                **run.score(kvcache.WithQuantizedCache(model, scheme)),
                **kvcache.agreement(reference, generated)}

    out = {scheme.name: rows.get("kv " + scheme.name, lambda: row(scheme))
           for scheme in kv_schemes(run.model_name)}
    if run.model_name == TINY:
        def transformers_row():
            with torch.no_grad():
                generated = model.generate(
                    run.prompts, attention_mask=torch.ones_like(run.prompts),
                    max_new_tokens=run.new_tokens, min_new_tokens=run.new_tokens, do_sample=False,
                    past_key_values=hqq_lib.quantized_cache(model.config, 4, 64, 128),
                    pad_token_id=model.config.eos_token_id)
            return kvcache.agreement(reference, generated[:, run.prompts.shape[1]:])
        out["transformers QuantizedCache hqq 4-bit (residual 128)"] = rows.get(
            "kv transformers QuantizedCache", transformers_row)
    return out


LLAMACPP_CACHES = (("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q4_0", "f16"),
                   ("f16", "q4_0"))


def llamacpp_kv_section(run: Run, rows: Rows) -> dict:
    """llama.cpp's own quantized cache on a GGUF (F32) export of the model; keys and values
    quantized together and each alone (is q4_0's larger loss in the keys or the values?)."""
    model, tok = run.load()
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "model-f32.gguf"
        exported = False
        for type_k, type_v in LLAMACPP_CACHES:
            name = type_k if type_k == type_v else f"keys {type_k}, values {type_v}"

            def row():
                nonlocal exported
                if not exported:
                    gguf.export(model, tok, path, "F32")
                    exported = True
                llm = cache_types.load_with_cache(path, type_k, type_v)
                bits = (cache_types.CACHE_TYPES[type_k][1] + cache_types.CACHE_TYPES[type_v][1]) / 2
                return {"bits_per_value": bits, "perplexity": llamacpp.perplexity(
                    llm, tok, max_windows=run.protocol.windows)}
            out[name] = rows.get("llama.cpp kv " + name, row)
    return out


def rotation_section(run: Run, rows: Rows) -> dict:
    def row(kind, w_bits, a_bits, outliers=False):
        model, _ = run.load()
        if outliers:
            model = models.with_outliers(model)
        return run.score(rotation.prepare(model, kind, w_bits, a_bits))

    out: dict = {}
    for prefix, kind, w_bits, a_bits in rotation_rows(run.model_name):
        setting = rotation.setting_name(w_bits, a_bits)
        out.setdefault(prefix + kind, {})[setting] = rows.get(
            f"{prefix}{kind} {setting}", lambda: row(kind, w_bits, a_bits, bool(prefix)))
    out["channel_peak_to_rms"] = rows.get("channel peak-to-RMS", lambda: peaks(run))
    return out


def peaks(run: Run) -> dict:
    """max over channels of each linear input's absmax / its RMS, before and after rotating."""
    found = {}
    for kind in ("plain", "rotated", "rotated, blocks of 64"):
        model, _ = run.load()
        stats = calib.collect_activation_stats(rotation.prepare(model, kind), run.samples[:8])
        found[kind] = {name: (s.absmax.max() / s.mean_sq.mean().sqrt()).item()
                       for name, s in stats.items()}
    return found


# ---- timings ----------------------------------------------------------------------------------

def timings(run: Run) -> dict:
    """Seconds to quantize the whole model (RTN, HQQ, GPTQ at 4 bits, groups of 64), and the
    fake quantizers' throughput next to one matmul of the same activations."""
    out = {}
    for name, quantize in (("RTN 4-bit g64", lambda m: ptq.quantize_rtn(m, 4, "group", 64)),
                           ("HQQ 4-bit g64", lambda m: hqq.quantize_model(m, 4, 64)),
                           ("GPTQ 4-bit g64", lambda m: gptq.quantize_model(
                               m, run.samples, 4, 64, progress=False))):
        model, _ = run.load()
        _, out[f"quantize model: {name} (s)"] = record.timed(lambda: quantize(model))
        del model
    x = torch.randn(8 * 512, 1536, generator=torch.Generator().manual_seed(0))
    W = torch.randn(576, 1536, generator=torch.Generator().manual_seed(1))
    for name, fn in (("matmul x @ W.T [4096, 1536] x [1536, 576]", lambda: x @ W.t()),
                     ("mx.fake_quantize mxfp4", lambda: mx.fake_quantize(x, "mxfp4")),
                     ("mx.fake_quantize nvfp4", lambda: mx.fake_quantize(x, "nvfp4")),
                     ("int4 per token", lambda: fake_quantize(x, 4, symmetric=True,
                                                              granularity="channel", axis=0))):
        fn()
        out[f"{name} (ms, best of 5)"] = 1000 * min(record.timed(fn)[1] for _ in range(5))
    return out


# ---- main -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=(TINY, REAL), default=TINY)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, among {SECTIONS}")
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timings", action="store_true", help="record speeds only")
    parser.add_argument("--fresh", action="store_true", help="ignore cached rows")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    sections = args.sections.split(",")
    if not set(sections) <= set(SECTIONS):
        parser.error(f"--sections must be among {SECTIONS}, got {args.sections!r}")

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    run = Run(args.model, args.max_windows, args.samples, args.prompts, args.new_tokens)
    result = {**record.start(LIBRARIES, threads=args.threads), "model": args.model}
    if args.timings:
        result["calibration"] = [args.samples, 512]          # GPTQ's samples, part of its time
        result["timings"] = timings(run)
        out = record.write(record.finish(result), args.out or record.result_path(
            f"frontier-timings-{args.model}"))
        print(f"wrote {out}")
        return
    rows = Rows(cache_dir() / "frontier" / f"{args.model}-{args.max_windows or 'whole'}", args.fresh)
    result.update({"protocol": {"name": run.protocol.name, "windows": args.max_windows,
                                "seq_len": run.protocol.seq_len},
                   "calibration": [args.samples, 512],
                   "greedy": {"prompts": args.prompts, "prompt_tokens": run.prompts.shape[1],
                              "new_tokens": args.new_tokens}})
    result["float"] = rows.get("float", lambda: run.score(run.load()[0]))
    for section in sections:                  # in the order asked: rows finish one by one
        if section == "activations":
            result["activations"] = activations_section(run, rows)
        elif section == "kv":
            result["kv_cache"] = kv_section(run, rows)
            if args.model == TINY:
                result["llamacpp_kv_cache"] = llamacpp_kv_section(run, rows)
        elif section == "rotation":
            result["rotation"] = rotation_section(run, rows)
        else:
            result["weights"] = weights_section(run, rows)
    out = record.write(record.finish(result), args.out or record.result_path(f"frontier-{args.model}"))
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
