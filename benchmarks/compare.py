"""The recorded ``qcourse compare``: every method, full settings, one method at a time.

    nice -n 10 python benchmarks/compare.py [--methods a,b,...] [--budget SECONDS] [--quick]

Runs :func:`qcourse.bench.compare` one method after another (rows come from the per-method cache
of ``qcourse compare`` when nothing changed) and rewrites
``benchmarks/results/compare-<machine>-<date>.json`` (and a ``.csv`` and a Pareto ``.png``)
after every method, so a run cut short still leaves every finished row. ``--budget``: start no
new method after that many seconds; methods not started are listed under ``not_run``.

The JSON records the machine (CPU model, cores, threads used), the library versions, the date
and the load average of the machine at the start and at the end (``os.getloadavg()``): speed and
memory columns measured while other jobs ran are only comparable within the run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

# Run as a script, this folder comes first on sys.path, and its gguf.py would hide the `gguf`
# library that qcourse.gguf writes files with.
sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).parent.resolve()]

from qcourse import bench  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
ORDER = ["fp32", "rtn-channel", "rtn-g128", "gptq", "awq", "nf4", "bnb-nf4", "w8a8", "llm-int8",
         "gguf-Q4_K_M", "gguf-Q8_0", "gguf-Q2_K", "gguf-Q6_K", "gguf-Q5_K_M", "gguf-Q3_K_M", "qat"]


def output_path(quick: bool) -> pathlib.Path:
    node = platform.machine() or "cpu"
    date = datetime.date.today().isoformat()
    return RESULTS / f"compare{'-quick' if quick else ''}-{node}-{date}.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(ORDER))
    parser.add_argument("--budget", type=float, default=None, help="seconds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    names = bench.check_methods([n for n in args.methods.split(",") if n])
    out = args.out or output_path(args.quick)
    RESULTS.mkdir(exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()
    record, rows, not_run, cpu = None, {}, [], 0.0
    for name in names:
        if args.budget is not None and time.perf_counter() - start > args.budget:
            not_run.append(name)
            continue
        result = bench.compare([name], quick=args.quick, threads=args.threads, progress=False)
        rows[name] = result["rows"][0]
        cpu += result["cpu_seconds"]
        record = {**result, "rows": [rows[n] for n in bench.METHODS if n in rows],
                  "not_run": [n for n in names if n not in rows],
                  "threads": args.threads, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                  "wall_seconds": time.perf_counter() - start, "cpu_seconds": cpu,
                  "command": "nice -n 10 python benchmarks/compare.py"
                             + (" --quick" if args.quick else "")}
        out.write_text(json.dumps(record, indent=1) + "\n")
        row = rows[name]
        print(f"{name}: {row['status']}"
              + (f", PPL {row['perplexity']:.3f}" if row["status"] == "ok" else
                 f" ({row.get('error', '')[:200]})")
              + (" (cached)" if row.get("cached") else ""), flush=True)
    if record is None:
        return 1
    record["not_run"] = not_run
    out.write_text(json.dumps(record, indent=1) + "\n")
    bench.write_csv(record, out.with_suffix(".csv"))
    bench.plot(record, out.with_suffix(".png"))
    print(bench.format_table(record))
    print(f"load average at start {load_start}, at end {record['loadavg_end']}; wrote {out}")
    return 1 if any(r["status"] == "failed" for r in record["rows"]) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
