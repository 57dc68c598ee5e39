"""Where one request's time goes: the model alone, the server around it, the network stack.

The same greedy requests (prompts, ``max_tokens``) are timed three ways, one at a time:

    model      llama.cpp in this process, built as the server builds it (same file, context,
               threads, weights not repacked, logits of the last position only), streaming
    server     the same requests streamed through the server's ``/v1/completions`` by a plain
               synchronous client on one keep-alive connection
    no model   ``GET /v1/models``: HTTP, the guard and the route, no model

and each streamed request gives ``first`` (request sent -> first token: the prompt's forward
pass plus one token), ``per_token`` (the gaps between the next tokens) and ``done`` (request
sent -> the end of the answer). Medians over the requests (:func:`anatomy`). The differences
are the server's own cost: ``server.first − model.first`` is HTTP, JSON, the guard's checks and
handing the request to the model's thread; ``server.per_token − model.per_token`` is one
server-sent event per token (a hop from the model's thread to the event loop, JSON, a write).

:func:`round_trip_ms` times a trivial HTTP app that answers in two writes (headers, then body,
as every ASGI response does) on a listening socket you give it: on Linux, a socket whose
connections keep Nagle's algorithm on holds the second write until the client's delayed ACK,
about 40 ms later (RFC 896, RFC 1122 §4.2.3.2).
"""
from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterable, Sequence

from .loadtest import Result, check_url, parse_event, request_body


def arrivals(chunks: Iterable[dict], sent: float) -> Result:
    """Fold llama-cpp-python's completion chunks (as they arrive) into a :class:`Result`:
    TTFT, inter-token gaps and the time of the last chunk, all from ``sent``."""
    result, last = Result(0), [sent]
    for chunk in chunks:
        result.add_token(chunk["choices"][0].get("text") or "", sent, last)
    result.latency = time.perf_counter() - sent
    result.ok = True
    return result


def model_timings(llm, prompts: Sequence[str], max_tokens: int) -> list[Result]:
    """Each prompt streamed by the ``llama_cpp.Llama`` ``llm`` in this process."""
    out = []
    for prompt in prompts:
        sent = time.perf_counter()
        out.append(arrivals(llm.create_completion(prompt, max_tokens=max_tokens, temperature=0,
                                                  stream=True), sent))
    return out


def server_timings(url: str, prompts: Sequence[str], max_tokens: int,
                   headers: dict[str, str] | None = None, timeout_s: float = 60.0
                   ) -> list[Result]:
    """Each prompt streamed through the server at ``url`` (one at a time, one connection)."""
    import httpx

    out = []
    with httpx.Client(headers=headers or {}, timeout=timeout_s) as client:
        for prompt in prompts:
            route, body = request_body(prompt, model=None, max_tokens=max_tokens, chat=False)
            result, sent = Result(0), time.perf_counter()
            last = [sent]
            with client.stream("POST", url + route, json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if parse_event(line, result, sent, last):
                        break
            result.latency = time.perf_counter() - sent
            result.ok = True
            out.append(result)
    return out


def get_seconds(url: str, headers: dict[str, str] | None = None, n: int = 10) -> list[float]:
    """Wall times of ``n`` GETs of ``url`` on one keep-alive connection (after one to connect)."""
    import httpx

    times = []
    with httpx.Client(headers=headers or {}, timeout=10) as client:
        client.get(url).raise_for_status()
        for _ in range(n):
            start = time.perf_counter()
            client.get(url).raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def medians(results: Sequence[Result]) -> dict[str, float]:
    """``{"first", "per_token", "done"}``: median TTFT, median gap, median end, in seconds."""
    return {"first": statistics.median(r.ttft for r in results),
            "per_token": statistics.median(gap for r in results for gap in r.itl),
            "done": statistics.median(r.latency for r in results)}


def anatomy(url: str, gguf: str | os.PathLike, prompts: Sequence[str], *, max_tokens: int = 16,
            n_ctx: int = 512, threads: int = 1, api_key: str | None = None) -> dict:
    """Time ``prompts`` through the server at ``url`` (serving ``gguf`` with ``n_ctx`` and
    ``threads``) and in this process (module docstring). Returns ``{"model": medians,
    "server": medians, "no_model": median GET /v1/models, "prompt_tokens": [...],
    "max_tokens": n}`` (seconds). Each prompt is sent once to each side, so neither reuses a
    cached prompt of the other's run; one request of each side warms it up first."""
    from qcourse.gguf import llamacpp

    base = check_url(url)
    if not prompts:
        raise ValueError("anatomy needs at least one prompt")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    server_timings(base, ["import os\n"], 2, headers)                        # warm-up
    server = server_timings(base, prompts, max_tokens, headers)
    no_model = statistics.median(get_seconds(f"{base}/models", headers))
    llm = llamacpp.load(gguf, n_ctx=n_ctx, n_threads=threads, logits_all=False)
    try:
        model_timings(llm, ["import os\n"], 2)                                # warm-up
        model = model_timings(llm, prompts, max_tokens)
        prompt_tokens = [len(llm.tokenize(p.encode("utf-8"))) for p in prompts]
    finally:
        llm.close()
    return {"model": medians(model), "server": medians(server), "no_model": no_model,
            "prompt_tokens": prompt_tokens, "max_tokens": max_tokens}


async def _two_writes(scope, receive, send) -> None:
    """An ASGI app that answers every HTTP request with headers, then a small body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def round_trip_ms(sock: socket.socket, n: int = 10) -> float:
    """Median ms of ``n`` GETs of a two-write app served by uvicorn on the listening ``sock``
    (module docstring). The server runs in a thread and is stopped before this returns."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(_two_writes, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="round-trip")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        return statistics.median(get_seconds(f"http://{host}:{port}/", n=n)) * 1000
    finally:
        server.should_exit = True
        thread.join(10)
