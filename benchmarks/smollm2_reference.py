"""The real model's float reference: SmolLM2-135M-Instruct as released (its Q4_1/Q8_0 weights
dequantized to float32) scored on every window of the test split, kept per window.

    nice python benchmarks/smollm2_reference.py [--windows N] [--threads 2] [--out FILE]

Writes benchmarks/results/smollm2_reference-<machine>-<date>.json with the run's record
(qcourse.bench.record) and ``float``: the GGUF file's key, the key of the windows' token ids, and
the mean NLL per predicted token of each window. ``qcourse.models.smollm2.reference_score`` reads
it: the quick protocols' windows are the first windows of the whole split, so this one run is the
float baseline of every chapter (paired intervals need the per-window values). Quality numbers
only: the seconds it took are recorded but are not a quiet-machine timing.
"""
from __future__ import annotations

import argparse
import json
import time

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)

import torch  # noqa: E402

from qcourse.evaluation import WHOLE, Protocol, score  # noqa: E402
from qcourse.evaluation.scoring import evaluation_windows  # noqa: E402
from qcourse.models import smollm2  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=None, help="first N windows (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = record.start()
    model, tokenizer = smollm2.load()
    protocol = WHOLE if args.windows is None else Protocol(f"first {args.windows}", args.windows)
    begin = time.perf_counter()
    float_score = score(model, tokenizer, protocol)
    every = evaluation_windows(tokenizer, protocol.split, protocol.seq_len)
    result.update(seconds=round(time.perf_counter() - begin, 1), float={
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf dequantized to float32",
        "gguf_key": smollm2.file_key(smollm2.gguf_path()), "windows_key": smollm2.windows_key(every),
        "protocol": float_score.label, "split": protocol.split, "seq_len": protocol.seq_len,
        "perplexity": round(float_score.perplexity, 4), "nll": float_score.nll.tolist()})
    out = args.out or record.result_path("smollm2_reference")
    record.write(record.finish(result), out)
    print(f"{float_score} -> {out}")


if __name__ == "__main__":
    main()
