"""The recorded ``qcourse compare``: every method, full settings, one method at a time.

    nice -n 10 python benchmarks/compare.py [--model NAME] [--methods a,b,...] [--budget SECONDS]
                                            [--quick] [--timings]

Runs :func:`qcourse.bench.compare` one method after another and rewrites the record after every
method, so a run cut short still leaves every finished row (``not_run`` lists the methods not
started within ``--budget`` seconds). Two kinds of run, recorded apart:

* quality (the default): perplexity with every test window's NLL, KL and top-1 per window, greedy
  match per prompt, task answers per question. Deterministic: recorded on any machine, from the
  caches of ``qcourse compare`` when nothing it depends on changed (a row, or the quality of
  bit-identical weights: :mod:`qcourse.bench.caching`). Written to
  ``benchmarks/results/compare[-MODEL]-<arch>-<date>.json`` (with a ``.csv`` and a Pareto
  ``.png``).
* ``--timings``: quantization time, decode speed and peak memory of every method, never from a
  cache. A timing is only a quiet machine's figure: record these with nothing else running.
  Written to ``compare[-MODEL]-timings-<arch>-<date>.json``; notebook 09 joins them to the
  quality run (:func:`qcourse.bench.report.merge_timings`) and prints both load averages.

``--model``: ``qcourse-tiny`` (default) or ``smollm2-135m`` (the real model; its default methods
are ``bench.registry.DEFAULT_METHODS["smollm2-135m"]``, most telling first).
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


def output_path(model: str, quick: bool, timings: bool) -> pathlib.Path:
    """``compare[-quick][-MODEL][-timings]``, then the machine and date (record.result_path)."""
    name = "compare" + ("-quick" if quick else "") \
        + ("" if model == "qcourse-tiny" else f"-{model}") + ("-timings" if timings else "")
    return record.result_path(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qcourse-tiny")
    parser.add_argument("--methods", default=None, help="comma separated (default: the model's)")
    parser.add_argument("--budget", type=float, default=None, help="seconds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timings", action="store_true",
                        help="speed and memory only, never cached (for a quiet machine)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    names = bench.check_methods([n for n in args.methods.split(",") if n] if args.methods
                                else bench.registry.default_methods(args.model))
    out = args.out or output_path(args.model, args.quick, args.timings)
    overrides = {"quality": False, "runtime": True} if args.timings else {"runtime": False}
    command = " ".join(["nice -n 10 python benchmarks/compare.py"]
                       + ([f"--model {args.model}"] if args.model != "qcourse-tiny" else [])
                       + (["--quick"] if args.quick else []) + (["--timings"] if args.timings else [])
                       + ([f"--methods {args.methods}"] if args.methods else []))
    start, this_run = time.perf_counter(), record.start(("lm_eval", "bitsandbytes", "llama_cpp"),
                                                        threads=args.threads)
    result, rows, not_run, cpu = None, {}, [], 0.0
    for name in names:
        if args.budget is not None and time.perf_counter() - start > args.budget:
            not_run.append(name)
            continue
        one = bench.compare([name], quick=args.quick, threads=args.threads, progress=False,
                            model_name=args.model, overrides=overrides,
                            use_cache=not args.timings)
        rows[name] = one["rows"][0]
        cpu += one["cpu_seconds"]
        result = {**one, **record.finish(this_run),
                  "rows": [rows[n] for n in names if n in rows],
                  "not_run": [n for n in names if n not in rows],
                  "wall_seconds": time.perf_counter() - start, "cpu_seconds": cpu,
                  "command": command}
        record.write(result, out)
        row = rows[name]
        print(f"{name}: {row['status']}"
              + (f", PPL {row['perplexity']:.3f}" if "perplexity" in row else "")
              + (f", {row['tokens_per_second']:.1f} tok/s" if "tokens_per_second" in row else "")
              + ("" if row["status"] == "ok" else f" ({row.get('error', '')[:200]})")
              + (" (row cached)" if row.get("cached") else
                 " (quality cached)" if row.get("quality_cached") else ""), flush=True)
    if result is None:
        return 1
    result["not_run"] = not_run
    record.write(result, out)
    if not args.timings:
        bench.write_csv(result, out.with_suffix(".csv"))
        bench.plot(result, out.with_suffix(".png"))
    print(bench.format_table(result))
    load = result["load_average"]
    print(f"load average at start {load['start']}, at end {load['end']}; wrote {out}")
    return 1 if any(r["status"] == "failed" for r in result["rows"]) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
