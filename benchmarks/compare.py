"""The recorded ``qcourse compare``: every method, full settings, one method at a time.

    nice -n 10 python benchmarks/compare.py [--methods a,b,...] [--budget SECONDS] [--quick]

Runs :func:`qcourse.bench.compare` one method after another (rows come from the per-method cache
of ``qcourse compare`` when nothing changed) and rewrites
``benchmarks/results/compare-<machine>-<date>.json`` (and a ``.csv`` and a Pareto ``.png``)
after every method, so a run cut short still leaves every finished row. ``--budget``: start no
new method after that many seconds; methods not started are listed under ``not_run``.

The JSON is the run's record (:mod:`qcourse.bench.record`: machine, threads, library versions,
date, the load average at the start and at the end): speed and memory columns measured while
other jobs ran are only comparable within the run.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import time

from qcourse.bench import record

# this folder's gguf.py would hide the `gguf` library that qcourse.gguf writes files with
record.leave_script_folder_off_sys_path(__file__)

from qcourse import bench  # noqa: E402

ORDER = ["fp32", "rtn-channel", "rtn-g128", "gptq", "awq", "nf4", "bnb-nf4", "w8a8", "llm-int8",
         "gguf-Q4_K_M", "gguf-Q8_0", "gguf-Q2_K", "gguf-Q6_K", "gguf-Q5_K_M", "gguf-Q3_K_M", "qat"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(ORDER))
    parser.add_argument("--budget", type=float, default=None, help="seconds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    names = bench.check_methods([n for n in args.methods.split(",") if n])
    out = args.out or record.result_path("compare-quick" if args.quick else "compare")
    start, this_run = time.perf_counter(), record.start(("lm_eval", "bitsandbytes", "llama_cpp"),
                                                        threads=args.threads)
    result, rows, not_run, cpu = None, {}, [], 0.0
    for name in names:
        if args.budget is not None and time.perf_counter() - start > args.budget:
            not_run.append(name)
            continue
        one = bench.compare([name], quick=args.quick, threads=args.threads, progress=False)
        rows[name] = one["rows"][0]
        cpu += one["cpu_seconds"]
        result = {**one, **record.finish(this_run),
                  "rows": [rows[n] for n in bench.METHODS if n in rows],
                  "not_run": [n for n in names if n not in rows],
                  "wall_seconds": time.perf_counter() - start, "cpu_seconds": cpu,
                  "command": "nice -n 10 python benchmarks/compare.py"
                             + (" --quick" if args.quick else "")}
        record.write(result, out)
        row = rows[name]
        print(f"{name}: {row['status']}"
              + (f", PPL {row['perplexity']:.3f}" if row["status"] == "ok" else
                 f" ({row.get('error', '')[:200]})")
              + (" (cached)" if row.get("cached") else ""), flush=True)
    if result is None:
        return 1
    result["not_run"] = not_run
    record.write(result, out)
    bench.write_csv(result, out.with_suffix(".csv"))
    bench.plot(result, out.with_suffix(".png"))
    print(bench.format_table(result))
    load = result["load_average"]
    print(f"load average at start {load['start']}, at end {load['end']}; wrote {out}")
    return 1 if any(r["status"] == "failed" for r in result["rows"]) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
