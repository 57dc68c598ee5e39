"""Post-training quantization of the real model, SmolLM2-135M, on the whole test split.

    python benchmarks/ptq.py [--max-windows N] [--only ROW ...] [--list]
    python benchmarks/ptq.py --timings [--only ROW ...]    # seconds per window: a quiet machine

Every row of notebook 02 on the real model: the model as released (its Q4_1 weights dequantized
to float32), W8A8 with three kinds of activation scale (dynamic per tensor, static per tensor
from calibration, dynamic per token), LLM.int8(), SmoothQuant (α = 0.5; the paper's mapping and
the course's extension that also smooths ``down_proj``) followed by W8A8, round-to-nearest
weight-only at 8, 4 and 3 bits, our NF4, and bitsandbytes' LLM.int8() and NF4.

Each row keeps the mean negative log-likelihood per predicted token of every window, so that
notebook 02 can compute paired intervals between any two rows. Windows are scored one at a time
(batch size 1): a dynamic per-tensor scale and LLM.int8()'s outlier features are then decided per
window of 512 tokens, as for one request, and do not depend on which windows share a batch.
Calibration (SmoothQuant's scales, static scales): ``CALIBRATION`` windows of the train split.

Perplexities are deterministic: the machine's load does not change them, so this run may be
recorded on a busy machine. Each finished row is also cached in the course cache, so an
interrupted run resumes where it stopped (delete ``<cache>/ptq-rows`` after changing a method).
``--timings`` measures the seconds per window of each row instead (median of 3 after a warm-up)
and writes ``ptq-timings-...json``: record it on a quiet machine. Our W8A8 layers multiply int8
values exactly in float32, over chunks of 1024 inputs (``layers.int8_matmul``): their time says
nothing about int8 hardware.

Results: ``benchmarks/results/ptq-smollm2-<arch>-<date>.json`` with the run's record
(:mod:`qcourse.bench.record`: CPU, threads, load average at start and end, versions).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
from collections.abc import Callable

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)

import torch  # noqa: E402

from qcourse import calib, data, evaluation, models, paths, ptq, smoothquant  # noqa: E402
from qcourse.models import smollm2  # noqa: E402

MODEL = "smollm2-135m"
CALIBRATION = {"samples": 8, "seq_len": 256, "seed": 0}   # 2,048 tokens of the train split
ALPHA = 0.5
BATCH_SIZE = 1


def calibration_stats(model, tokenizer) -> dict:
    """Per-input-channel activation statistics of ``model`` on the calibration windows."""
    samples = data.calibration_samples(tokenizer, CALIBRATION["samples"], CALIBRATION["seq_len"],
                                       seed=CALIBRATION["seed"])
    return calib.collect_activation_stats(model, samples, batch_size=2)


def w8a8(activations: str, *, smooth: str | None = None) -> Callable:
    """W8A8 with ``activations`` scales, after SmoothQuant's migration if ``smooth`` is "paper"
    (q/k/v and gate/up, through the norms) or "down" (also down_proj, through up_proj)."""
    def build(model, tokenizer):
        if smooth is not None:
            smoothquant.smooth_llama(model, calibration_stats(model, tokenizer), ALPHA,
                                     include_down=smooth == "down")
        stats = calibration_stats(model, tokenizer) if activations == "static" else None
        return ptq.quantize_w8a8(model, activations, stats)
    return build


def rtn(bits: int, group_size: int | None) -> Callable:
    granularity = "channel" if group_size is None else "group"
    return lambda model, tokenizer: ptq.quantize_rtn(model, bits, granularity, group_size)


def bitsandbytes(mode: str) -> Callable:
    def build(model, tokenizer):
        from qcourse.references import bnb

        bnb.require_bitsandbytes()
        bnb.silence_int8_casts()
        return bnb.load_bnb(mode, MODEL)
    return build


# name -> (label, build(float model, tokenizer) -> model to score); in the order they run
ROWS: dict[str, tuple[str, Callable]] = {
    "float": ("as released (Q4_1 weights dequantized to float32)", lambda m, t: m),
    "w8a8_tensor": ("W8A8, activations per tensor, dynamic", w8a8("tensor")),
    "w8a8_token": ("W8A8, activations per token, dynamic", w8a8("token")),
    "llm_int8": ("LLM.int8(), threshold 6", lambda m, t: ptq.quantize_llm_int8(m)),
    "sq_tensor": ("SmoothQuant (paper's mapping) + W8A8 per tensor", w8a8("tensor", smooth="paper")),
    "sq_down_tensor": ("SmoothQuant + down_proj + W8A8 per tensor", w8a8("tensor", smooth="down")),
    "sq_token": ("SmoothQuant (paper's mapping) + W8A8 per token", w8a8("token", smooth="paper")),
    "sq_down_token": ("SmoothQuant + down_proj + W8A8 per token", w8a8("token", smooth="down")),
    "w8a8_static": ("W8A8, activations per tensor, static", w8a8("static")),
    "sq_static": ("SmoothQuant (paper's mapping) + W8A8 static", w8a8("static", smooth="paper")),
    "sq_down_static": ("SmoothQuant + down_proj + W8A8 static", w8a8("static", smooth="down")),
    "rtn_w4_g32": ("RTN W4 asymmetric, groups of 32", rtn(4, 32)),
    "rtn_w4_g64": ("RTN W4 asymmetric, groups of 64", rtn(4, 64)),
    "rtn_w4_channel": ("RTN W4 asymmetric, per channel", rtn(4, None)),
    "nf4": ("NF4 (ours), blocks of 64", lambda m, t: ptq.quantize_nf4_model(m)),
    "rtn_w8_channel": ("RTN W8 asymmetric, per channel", rtn(8, None)),
    "rtn_w3_g32": ("RTN W3 asymmetric, groups of 32", rtn(3, 32)),
    "rtn_w3_g64": ("RTN W3 asymmetric, groups of 64", rtn(3, 64)),
    "bnb_int8": ("bitsandbytes LLM.int8(), threshold 6", bitsandbytes("int8")),
    "bnb_nf4": ("bitsandbytes NF4, blocks of 64", bitsandbytes("nf4")),
}


def cache_path(name: str, windows: int | None) -> pathlib.Path:
    folder = paths.cache_dir() / "ptq-rows"
    folder.mkdir(exist_ok=True)
    spec = f"{MODEL}-{name}-{windows or 'all'}-cal{CALIBRATION['samples']}x{CALIBRATION['seq_len']}"
    return folder / f"{spec}-seed{CALIBRATION['seed']}-a{ALPHA}-b{BATCH_SIZE}.json"


def size_bytes(model) -> int:
    """Real bytes of ``model``'s tensors (bitsandbytes' scales kept outside them included)."""
    if any(type(m).__module__.startswith("bitsandbytes") for m in model.modules()):
        from qcourse.references import bnb
        return bnb.size_bytes(model)
    return evaluation.model_size_bytes(model)


def score_row(name: str, protocol: evaluation.Protocol) -> dict:
    """One row: build it from a freshly loaded model, score every window of ``protocol``."""
    cached = cache_path(name, protocol.windows)
    if cached.exists():
        return json.loads(cached.read_text())
    label, build = ROWS[name]
    model, tokenizer = models.load(MODEL)
    with torch.no_grad():
        quantized = build(model, tokenizer)
    size = size_bytes(quantized)
    if name == "float":        # the course's one float baseline: recorded, cached or computed
        score = smollm2.reference_score(tokenizer, protocol, model=model)
    else:
        score = evaluation.score(quantized, tokenizer, protocol, BATCH_SIZE)
    row = {"label": label, "perplexity": score.perplexity, "windows": len(score.nll),
           "bytes": size, "nll": [round(v, 6) for v in score.nll.tolist()]}
    cached.write_text(json.dumps(row))
    return row


def time_row(name: str, windows: int = 3) -> dict:
    """Median seconds to score one window of 512 tokens (after one warm-up window)."""
    label, build = ROWS[name]
    model, tokenizer = models.load(MODEL)
    with torch.no_grad():
        quantized = build(model, tokenizer)
    batches = evaluation.evaluation_windows(tokenizer, max_windows=windows + 1)
    call = evaluation.logits_fn(quantized)
    times = [record.timed(lambda: call(batches[i:i + 1]))[1] for i in range(windows + 1)][1:]
    return {"label": label, "seconds_per_window": statistics.median(times),
            "all_seconds": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-windows", type=int, default=None,
                        help="score only the first N test windows (default: the whole split)")
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=None)
    parser.add_argument("--list", action="store_true", help="print the rows and stop")
    parser.add_argument("--timings", action="store_true",
                        help="seconds per window instead of perplexities (quiet machine)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if args.list:
        for name, (label, _) in ROWS.items():
            print(f"{name:16} {label}")
        return

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    names = args.only or list(ROWS)
    result = {**record.start(("bitsandbytes",)), "model": MODEL, "batch_size": BATCH_SIZE,
              "calibration": {**CALIBRATION, "split": "train"}, "alpha": ALPHA}
    if args.timings:
        result["timings"] = {}
        for name in names:
            result["timings"][name] = time_row(name)
            print(f"{name:16} {result['timings'][name]['seconds_per_window']:.2f} s per window")
        out = args.out or record.result_path("ptq-timings-smollm2")
        print(f"wrote {record.write(record.finish(result), out)}")
        return

    protocol = evaluation.WHOLE if args.max_windows is None else \
        evaluation.Protocol(f"first {args.max_windows} test windows", args.max_windows)
    result["protocol"] = {"name": protocol.name, "windows": protocol.windows,
                          "seq_len": protocol.seq_len, "split": protocol.split}
    result["rows"], skipped = {}, {}
    out = args.out or record.result_path("ptq-smollm2")
    for name in names:
        try:
            row = score_row(name, protocol)
        except (ImportError, ModuleNotFoundError) as err:   # bitsandbytes absent: say so
            skipped[name] = str(err)
            print(f"{name:16} skipped: {err}")
            continue
        result["rows"][name] = row
        print(f"{name:16} {row['perplexity']:8.3f}  {row['bytes'] / 1e6:7.1f} MB  {row['label']}")
        result["skipped"] = skipped
        record.write(result, out)                            # progress survives an interruption
    print(f"wrote {record.write(record.finish(result), out)}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
