"""Serving qcourse-tiny: throughput and latency against concurrency, and the runtimes side by side.

    python benchmarks/serve.py                  # about 10-20 minutes on 2 shared CPU cores
    python benchmarks/serve.py --quick          # fewer requests, 4 perplexity windows

1. **The llama.cpp server** (``qcourse.deploy.Server``: llama-cpp-python, Q4_K_M, 1 thread):
   ``--requests`` streaming greedy completions of ``--max-tokens`` tokens at each concurrency
   C in 1, 2, 4, 8, 16 (prompts from the test split): requests/s, output tokens/s, TTFT,
   inter-token and end-to-end latency p50/p90/p99. Then C = 4 and 16 again with llama-cpp-python's
   ``interrupt_requests`` on (its default), counting the answers cut short.
2. **Batching in a Python service** (transformers, float32): the same burst of requests served
   one at a time and in batches of 4 and 16 (``qcourse.deploy.runtimes.service_loop``).
3. **Runtimes** (each in a fresh process, 1 thread): PyTorch float32, transformers +
   bitsandbytes int8 and NF4, ONNX Runtime float32 / INT8 / INT4, llama.cpp Q8_0 and Q4_K_M:
   weight bytes, peak resident memory of the process (and its growth over the imports),
   generated tokens/s in the service loop, perplexity (whole test split unless
   ``--max-windows``), and logit agreement with PyTorch float32 on one 512-token window.

Writes benchmarks/results/serve-<machine>-<date>.json with the run's record (qcourse.bench.record:
CPU model, threads, the load average at start and end; the machine is shared: absolute times
move with it, ratios within a run are what to read). Bounded: every load test has a deadline, every runtime process a timeout, and
the whole run ``--budget-s`` seconds (default 1800): a part that would start past it is skipped
and recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # its gguf.py is not the gguf library

RUNTIMES = ("pytorch-fp32", "bnb-int8", "bnb-nf4", "onnx-fp32", "onnx-int8", "onnx-int4",
            "llama.cpp-Q8_0", "llama.cpp-Q4_K_M")
CONCURRENCY = (1, 2, 4, 8, 16)
LOADTEST_DEADLINE_S = 300          # one load test (one concurrency level)
CHILD_TIMEOUT_S = 900              # one runtime's process
DEADLINE = [float("inf")]          # time.monotonic() by which the whole run ends (--budget-s)


def seconds_left(cap: float) -> float:
    """min(cap, time left in the run's budget); 0 when the budget is spent."""
    return max(0.0, min(cap, DEADLINE[0] - time.monotonic()))


def trim(run: dict) -> dict:
    """A load-test result without the per-request texts."""
    return {k: v for k, v in run.items() if k != "texts"}


def serving(requests: int, max_tokens: int) -> dict:
    from qcourse.deploy import Server
    from qcourse.deploy.loadtest import loadtest

    out = {"quant": "Q4_K_M", "threads": 1, "requests": requests, "max_tokens": max_tokens}
    with Server(quant="Q4_K_M", threads=1) as server:
        loadtest(server.url, requests=4, concurrency=1, max_tokens=4)          # warm-up
        out["sweep"] = []
        for c in CONCURRENCY:
            if seconds_left(LOADTEST_DEADLINE_S) < 10:
                out["sweep"].append({"concurrency": c, "skipped": "out of time (--budget-s)"})
                continue
            run = loadtest(server.url, requests=requests, concurrency=c, max_tokens=max_tokens,
                           total_timeout_s=seconds_left(LOADTEST_DEADLINE_S))
            out["sweep"].append(trim(run))
            print(f"C={c:2d}: {run['requests_per_s']:6.2f} req/s {run['output_tokens_per_s']:7.1f} "
                  f"tok/s  TTFT p50 {run['ttft_s']['p50'] * 1e3:6.0f} ms  e2e p50 "
                  f"{run['latency_s']['p50'] * 1e3:6.0f} ms p99 {run['latency_s']['p99'] * 1e3:6.0f} ms"
                  f"  errors {run['errors']}", flush=True)
    out["interrupt_requests"] = []
    with Server(quant="Q4_K_M", threads=1, interrupt_requests=True) as server:
        for c in (4, 16):
            if seconds_left(LOADTEST_DEADLINE_S) < 10:
                out["interrupt_requests"].append({"concurrency": c,
                                                  "skipped": "out of time (--budget-s)"})
                continue
            run = loadtest(server.url, requests=requests, concurrency=c, max_tokens=max_tokens,
                           total_timeout_s=seconds_left(LOADTEST_DEADLINE_S))
            # a reply cut short ends with [DONE] but no finish_reason: the load generator
            # counts it as a "truncated_stream" error; complete replies have max_tokens tokens
            cut = run["errors"].get("truncated_stream", 0) + sum(
                n < max_tokens for n in run["raw"]["tokens"])
            out["interrupt_requests"].append({"concurrency": c, "answers_cut_short": cut,
                                              **trim(run)})
            print(f"interrupt_requests on, C={c}: {cut}/{run['requests']} answers cut short "
                  f"(errors {run['errors']})", flush=True)
    return out


def batching(requests: int, new_tokens: int) -> dict:
    import torch

    from qcourse import models
    from qcourse.deploy import runtimes

    torch.set_num_threads(1)
    model, tokenizer = models.load()
    runtime = runtimes.TorchRuntime(model, "pytorch-fp32")
    ids = tokenizer("def read_file(path):\n", add_special_tokens=False)["input_ids"]
    prompts = [ids] * requests
    out = []
    for batch in (1, 4, 16):
        loop = runtimes.service_loop(runtime, prompts, new_tokens, batch_size=batch)
        out.append({"batch_size": batch, "tokens_per_s": loop["tokens_per_s"],
                    "latency_s": loop["latency_s"], "wall_s": loop["wall_s"]})
        print(f"transformers batch {batch:2d}: {loop['tokens_per_s']:7.1f} tok/s, latency p50 "
              f"{loop['latency_s']['p50']:.2f} s", flush=True)
    return {"requests": requests, "new_tokens": new_tokens, "runs": out}


def build_runtime(name: str, model, tokenizer):
    from qcourse.deploy import runtimes

    if name == "pytorch-fp32":
        return runtimes.TorchRuntime(model, name)
    if name.startswith("bnb-"):
        from qcourse.references import bnb
        bnb.silence_int8_casts()
        return runtimes.TorchRuntime(bnb.load_bnb(name[4:]), name, bnb.size_bytes)
    if name.startswith("onnx-"):
        from qcourse.references import onnx_runtime
        return onnx_runtime.OrtRuntime(onnx_runtime.onnx_files()[name[5:]], model.config, name)
    from qcourse.deploy.model_file import gguf_for
    return runtimes.LlamaCppRuntime(gguf_for("qcourse-tiny", name.split("-", 1)[1]), name)


def one_runtime(name: str, max_windows: int | None, requests: int, new_tokens: int) -> dict:
    """Measure one runtime in this (fresh) process; print its row as JSON."""
    import torch

    from qcourse import data, models
    from qcourse.deploy import runtimes
    from qcourse.evaluation import current_rss, logit_agreement

    torch.set_num_threads(1)
    model, tokenizer = models.load()
    ids = tokenizer("def read_file(path):\n", add_special_tokens=False)["input_ids"]
    window = data.token_ids(tokenizer, "test")[:512]
    reference = runtimes.TorchRuntime(model, "pytorch-fp32")
    reference_logits = reference.logits(window)
    before = current_rss()
    runtime = build_runtime(name, model, tokenizer)
    row = runtimes.measure(runtime, tokenizer, [ids] * requests, new_tokens=new_tokens,
                           max_windows=max_windows)
    agreement = logit_agreement(runtime.logits(window), reference_logits)
    row.update(runtime=name, logits_max_abs=agreement["max_abs"], logits_top1=agreement["top1"],
               rss_before_runtime_bytes=before,
               peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    row.pop("outputs")
    return row


def runtime_table(max_windows: int | None, requests: int, new_tokens: int) -> list[dict]:
    rows = []
    for name in RUNTIMES:
        cmd = [sys.executable, __file__, "--child", name, "--requests", str(requests),
               "--new-tokens", str(new_tokens)]
        if max_windows is not None:
            cmd += ["--max-windows", str(max_windows)]
        start = time.perf_counter()
        if seconds_left(CHILD_TIMEOUT_S) < 30:
            rows.append({"runtime": name, "error": "skipped: out of time (--budget-s)"})
            continue
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=seconds_left(CHILD_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            rows.append({"runtime": name, "error": "timed out"})
            print(f"{name}: timed out", flush=True)
            continue
        if done.returncode != 0:
            rows.append({"runtime": name, "error": done.stderr[-1500:]})
            print(f"{name}: failed\n{done.stderr[-1500:]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:18s} {row['weight_bytes'] / 1e6:6.2f} MB  peak RSS "
              f"{row['peak_rss_bytes'] / 1e6:5.0f} MB  {row['tokens_per_s']:7.1f} tok/s  "
              f"ppl {row['perplexity']:.3f}  top-1 {row['logits_top1']:.3f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--budget-s", type=float, default=1800.0,
                        help="the whole run ends within about this many seconds")
    args = parser.parse_args()
    DEADLINE[0] = time.monotonic() + args.budget_s
    if args.child:
        row = one_runtime(args.child, args.max_windows, args.requests or 8, args.new_tokens)
        print(json.dumps(row))
        return
    requests = args.requests or (16 if args.quick else 32)
    max_windows = args.max_windows or (4 if args.quick else None)
    result = {**record.start(("llama_cpp", "bitsandbytes", "onnxruntime")),
              "settings": {"requests": requests, "max_tokens": args.max_tokens,
                           "new_tokens": args.new_tokens, "max_windows": max_windows,
                           "budget_s": args.budget_s}}
    result["serving"] = serving(requests, args.max_tokens)
    result["batching"] = batching(16, args.new_tokens)
    result["runtimes"] = runtime_table(max_windows, 8, args.new_tokens)
    out = record.write(record.finish(result), args.out or record.result_path("serve"))
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
