"""GPTQ on the whole of qcourse-tiny: ours vs llm-compressor, time and test perplexity.

    python benchmarks/gptq.py [--samples 128] [--seq-len 512] [--max-windows N]

Both quantize the same model with the same calibration samples (4-bit, asymmetric, group 128,
no act-order, damp 0.01, block 128) in one process, one run each; the script prints the wall
times and their ratio, then the test perplexity (whole split unless ``--max-windows``) of the
float model, RTN, ours and llm-compressor at 4 bits, and RTN and ours at 3 bits. Results go to
``benchmarks/results/gptq-<date>.json`` with the machine's name.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import pathlib
import platform
import time

import torch

from qcourse import data, eval as qeval, gptq, models, ptq
from qcourse.references import llm_compressor

RESULTS = pathlib.Path(__file__).parent / "results"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    base, tok = models.load()
    samples = data.calibration_samples(tok, args.samples, args.seq_len, seed=0)
    ppl = lambda m: qeval.perplexity(m, tok, max_windows=args.max_windows)  # noqa: E731
    record = {"samples": args.samples, "seq_len": args.seq_len, "bits": 4, "group_size": 128,
              "max_windows": args.max_windows, "machine": platform.node(),
              "processor": cpu_name(),
              "torch_threads": torch.get_num_threads(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    ours, record["ours_seconds"] = timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False))
    print(f"ours: {record['ours_seconds']:.1f} s")
    # the same without re-collecting Hessians inside a block (llm-compressor's schedule)
    _, record["ours_one_pass_seconds"] = timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False, true_sequential=False))
    print(f"ours, one calibration pass per block: {record['ours_one_pass_seconds']:.1f} s")
    reason = llm_compressor.unavailable_reason()
    reference = None
    if reason is None:
        reference, record["reference_seconds"] = timed(lambda: llm_compressor.quantize_model(
            copy.deepcopy(base), samples, 4, 128))
        record["time_ratio_ours_over_reference"] = record["ours_seconds"] / record["reference_seconds"]
        print(f"llm-compressor: {record['reference_seconds']:.1f} s; ours / llm-compressor = "
              f"{record['time_ratio_ours_over_reference']:.2f}")
    else:
        record["reference_skipped"] = reason
        print(f"llm-compressor skipped: {reason}")

    table = {"float": ppl(base),
             "rtn_4bit_g128": ppl(ptq.quantize_rtn(copy.deepcopy(base), 4, "group", 128)),
             "gptq_4bit_g128": ppl(ours)}
    if reference is not None:
        table["llmcompressor_4bit_g128"] = ppl(reference)
    del ours, reference
    table["rtn_3bit_g128"] = ppl(ptq.quantize_rtn(copy.deepcopy(base), 3, "group", 128))
    table["gptq_3bit_g128"] = ppl(gptq.quantize_model(copy.deepcopy(base), samples, 3, 128,
                                                      progress=False))
    record["perplexity"] = table
    for name, value in table.items():
        print(f"{name:26s} {value:8.2f}")
    if "llmcompressor_4bit_g128" in table:
        gap = table["gptq_4bit_g128"] / table["llmcompressor_4bit_g128"] - 1
        record["ours_vs_reference_ppl"] = gap
        print(f"ours vs llm-compressor perplexity: {gap:+.2%}")

    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"gptq-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
