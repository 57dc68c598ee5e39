"""GPTQ on the whole of qcourse-tiny: ours vs llm-compressor, time and test perplexity.

    python benchmarks/gptq.py [--samples 128] [--seq-len 512] [--max-windows N]

Both quantize the same model with the same calibration samples (4-bit, asymmetric, group 128,
no act-order, damp 0.01, block 128) in one process, one run each; the script prints the wall
times and their ratio, then the test perplexity (whole split unless ``--max-windows``) of the
float model, RTN, ours and llm-compressor at 4 bits, and RTN and ours at 3 bits. Results go to
``benchmarks/results/gptq-<machine>-<date>.json`` with the run's record (qcourse.bench.record:
CPU model, threads, load average at start and end, versions).
"""
from __future__ import annotations

import argparse
import copy
import os
import pathlib

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # its gguf.py is not the gguf library

import torch  # noqa: E402

from qcourse import data, evaluation, gptq, models, ptq  # noqa: E402
from qcourse.references import llm_compressor  # noqa: E402


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
    ppl = lambda m: evaluation.perplexity(m, tok, max_windows=args.max_windows)  # noqa: E731
    result = {**record.start(("llmcompressor",)), "samples": args.samples,
              "seq_len": args.seq_len, "bits": 4, "group_size": 128,
              "max_windows": args.max_windows}

    ours, result["ours_seconds"] = record.timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False))
    print(f"ours: {result['ours_seconds']:.1f} s")
    # the same without re-collecting Hessians inside a block (llm-compressor's schedule)
    _, result["ours_one_pass_seconds"] = record.timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False, true_sequential=False))
    print(f"ours, one calibration pass per block: {result['ours_one_pass_seconds']:.1f} s")
    reason = llm_compressor.unavailable_reason()
    reference = None
    if reason is None:
        reference, result["reference_seconds"] = record.timed(lambda: llm_compressor.quantize_model(
            copy.deepcopy(base), samples, 4, 128))
        result["time_ratio_ours_over_reference"] = \
            result["ours_seconds"] / result["reference_seconds"]
        print(f"llm-compressor: {result['reference_seconds']:.1f} s; ours / llm-compressor = "
              f"{result['time_ratio_ours_over_reference']:.2f}")
    else:
        result["reference_skipped"] = reason
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
    result["perplexity"] = table
    for name, value in table.items():
        print(f"{name:26s} {value:8.2f}")
    if "llmcompressor_4bit_g128" in table:
        gap = table["gptq_4bit_g128"] / table["llmcompressor_4bit_g128"] - 1
        result["ours_vs_reference_ppl"] = gap
        print(f"ours vs llm-compressor perplexity: {gap:+.2%}")

    out = record.write(record.finish(result), args.out or record.result_path("gptq"))
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
