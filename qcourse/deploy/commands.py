"""The deployment commands of the ``qcourse`` CLI: ``serve``, ``loadtest``, ``export-deploy``.

Each checks its input before doing anything slow and reports a bad input as one line on stderr
with exit status 2. Heavy modules are imported inside the command functions, so
``qcourse --help`` stays quick.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from .latency import percentile_supported

DEFAULT_PORT = 8000


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    """Check the GGUF (or export ``--model`` to ``--quant``), then run the server in this
    process until Ctrl-C."""
    from qcourse.gguf.mixes import check_ftype

    from . import llama_server
    from .model_file import check_gguf_file, gguf_for
    from .server import check_port

    try:
        if args.gguf is None:
            check_ftype(args.quant)
        gguf = check_gguf_file(args.gguf) if args.gguf is not None else None
        check_port(args.host, args.port)
        if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
            print(f"warning: listening on {args.host} without --api-key: anyone who can reach "
                  "this machine can use the server", file=sys.stderr)
        gguf = gguf or gguf_for(args.model, args.quant)
    except (OSError, ValueError) as err:
        return fail(str(err))
    argv = ["--model", str(gguf), "--alias", args.model if args.gguf is None else gguf.stem,
            "--host", args.host, "--port", str(args.port), "--n-ctx", str(args.n_ctx),
            "--threads", str(args.threads)] + (["--interrupt-requests"] if args.interrupt_requests
                                              else [])
    if args.api_key:
        os.environ[llama_server.API_KEY_ENV] = args.api_key
    return llama_server.main(argv)


def loadtest(args: argparse.Namespace) -> int:
    """Run the load test and print its table (and write ``--json``)."""
    from .loadtest import loadtest as run

    try:
        result = run(args.url, requests=args.requests, concurrency=args.concurrency,
                     max_tokens=args.max_tokens, api_key=args.api_key, model=args.model,
                     allow_remote=args.allow_remote, timeout_s=args.timeout,
                     total_timeout_s=args.deadline, progress=not args.no_progress,
                     chat=args.chat)
    except (ValueError, ConnectionError, PermissionError) as err:
        return fail(str(err))
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if result["completed"] == result["requests"] else 1


def format_report(result: dict) -> str:
    """The load test's figures as a few aligned lines."""
    lines = [f"{result['url']}  model {result['model']}  {result['requests']} requests at "
             f"concurrency {result['concurrency']}, max_tokens {result['max_tokens']}",
             f"completed {result['completed']}/{result['requests']}  errors {result['errors'] or 'none'}",
             f"throughput {result['requests_per_s']:.2f} requests/s, "
             f"{result['output_tokens_per_s']:.1f} output tokens/s  (wall {result['wall_s']:.2f} s)"]
    for key, name in (("ttft_s", "time to first token"), ("itl_s", "inter-token latency"),
                      ("latency_s", "end-to-end latency")):
        s = result[key]
        if s:
            tail = f"p99 {s['p99'] * 1000:8.1f} ms" if percentile_supported(s["n"], 99) else \
                f"max {s['max'] * 1000:8.1f} ms (p99 needs >= 100 values, got {s['n']})"
            lines.append(f"{name:>22}: p50 {s['p50'] * 1000:8.1f} ms  p90 {s['p90'] * 1000:8.1f} ms"
                         f"  {tail}")
    return "\n".join(lines)


def export_deploy(args: argparse.Namespace) -> int:
    """Write the deployment artifacts for Ollama, vLLM and TensorRT-LLM."""
    from .artifacts import export_deploy as export

    try:
        written = export(args.out, gguf=args.gguf, model=args.model, quant=args.quant,
                         checkpoint=args.checkpoint)
    except (OSError, ValueError) as err:
        return fail(str(err))
    for path in written:
        print(path)
    return 0


def add_commands(subparsers) -> None:
    """Register ``serve``, ``loadtest`` and ``export-deploy`` on the ``qcourse`` parser."""
    p = subparsers.add_parser("serve", help="serve a GGUF (default: qcourse-tiny in Q4_K_M) "
                                            "through an OpenAI-compatible API")
    p.add_argument("gguf", nargs="?", type=pathlib.Path, default=None,
                   help="a GGUF file (default: export --model to --quant, cached)")
    p.add_argument("--model", default="qcourse-tiny", help="model to export when no GGUF is given")
    p.add_argument("--quant", default="Q4_K_M", help="llama.cpp file type (Q4_K_M, Q8_0, F32, ...)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--n-ctx", type=int, default=512, help="context length in tokens")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--interrupt-requests", action="store_true",
                   help="let a waiting request cut a streaming reply short (llama-cpp-python's "
                        "default; off here for fair load tests)")
    p.set_defaults(func=serve)

    p = subparsers.add_parser("loadtest", help="load-test an OpenAI-compatible server")
    p.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--chat", action="store_true",
                   help="send chat completions (each prompt one user message)")
    p.add_argument("--model", default=None, help="model id (default: the first GET /models lists)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the results here")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback URL (only for servers you own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=loadtest)

    p = subparsers.add_parser("export-deploy", help="write Ollama / vLLM / TensorRT-LLM "
                                                    "deployment files")
    p.add_argument("out", type=pathlib.Path, help="folder to write into")
    p.add_argument("--gguf", type=pathlib.Path, default=None,
                   help="GGUF for the Ollama Modelfile (default: export --model to --quant)")
    p.add_argument("--model", default="qcourse-tiny")
    p.add_argument("--quant", default="Q4_K_M")
    p.add_argument("--checkpoint", type=pathlib.Path, default=None,
                   help="a GPTQ or compressed-tensors checkpoint folder for the vLLM files")
    p.set_defaults(func=export_deploy)
