"""A bounded load generator for any OpenAI-compatible server (``qcourse loadtest URL``).

N streaming completions (greedy, prompts from the test split), at most C in flight, with
asyncio and httpx (``chat=True``: chat completions, each prompt sent as one user message). For each request it records, from the server-sent events (SSE) it receives:

    TTFT   time to first token: request sent -> first chunk carrying text
    ITL    inter-token latency: the gaps between consecutive text chunks
    E2E    end-to-end latency: request sent -> ``data: [DONE]``
    tokens text chunks received (llama-cpp-python sends one per generated token, except that it
           holds back the bytes of an unfinished UTF-8 character or a possible stop string)

and for the run: requests/s and output tokens/s (completed requests and tokens over the wall
time), p50/p90/p99, min and max of each latency (:mod:`qcourse.deploy.latency`; a p99 from fewer
than 100 requests is an interpolation between the two largest), and errors by kind
(``http_<status>``, ``timeout``, ``connect``, ``truncated_stream``, ``malformed_stream``).

Everything is bounded: the number of requests and the concurrency are capped, every request has
a timeout, the whole run has a deadline after which unfinished requests are cancelled, and the
URL must be a loopback address unless ``allow_remote`` (a load test is a small denial-of-service
attack: aim it only at servers you own).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import ipaddress
import json
import random
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence

from .latency import summary

MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 256
MAX_TOKENS = 4096


@dataclasses.dataclass
class Result:
    """One request's outcome; times in seconds from the moment it was sent."""

    index: int
    ok: bool = False
    error: str | None = None
    status: int | None = None
    text: str = ""
    tokens: int = 0
    ttft: float | None = None
    itl: list[float] = dataclasses.field(default_factory=list)
    latency: float | None = None
    finish_reason: str | None = None

    def add_token(self, text: str, sent: float, last: list[float]) -> None:
        """Record ``text`` arriving now: the first token sets the TTFT (from ``sent``), each
        later one an inter-token gap (from ``last[0]``, the previous token's arrival, which this
        updates). Empty text (a role-only or final chunk) is not a token."""
        if not text:
            return
        now = time.perf_counter()
        if self.ttft is None:
            self.ttft = now - sent
        else:
            self.itl.append(now - last[0])
        last[0] = now
        self.text += text
        self.tokens += 1


def check_url(url: str, allow_remote: bool = False) -> str:
    """The OpenAI base URL (``.../v1``) of ``url``; ValueError unless it is http(s) on a
    loopback host (localhost, 127.0.0.0/8, ::1) or ``allow_remote`` is set."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected a URL like http://127.0.0.1:8000/v1, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: not resolved, so not known to be local
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(f"{host} is not a loopback address: a load test floods its target, so "
                         "it only targets this machine (localhost, 127.x.x.x, ::1) unless you "
                         "pass allow_remote=True (--allow-remote) for a server you own")
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path if path else "/v1", "", ""))


def check_limits(requests: int, concurrency: int, max_tokens: int) -> None:
    """ValueError unless 1 <= requests <= 10,000, 1 <= concurrency <= 256 and
    1 <= max_tokens <= 4096 (integers)."""
    for name, value, top in (("requests", requests, MAX_REQUESTS),
                             ("concurrency", concurrency, MAX_CONCURRENCY),
                             ("max_tokens", max_tokens, MAX_TOKENS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"{name} must be an integer in [1, {top}], got {value!r}")


def test_prompts(n: int, seed: int = 0, min_chars: int = 40, max_chars: int = 300) -> list[str]:
    """``n`` prompts from the test split: paragraphs of ``min_chars``..``max_chars`` characters,
    drawn with ``seed`` (the same list on every run), repeated if the split has fewer."""
    from qcourse import data

    paragraphs = [p.strip() for p in data.corpus("test").split("\n\n")]
    pool = sorted({p for p in paragraphs if min_chars <= len(p) <= max_chars})
    rng = random.Random(seed)
    chosen = rng.sample(pool, min(n, len(pool)))
    return [chosen[i % len(chosen)] for i in range(n)]


def parse_event(line: str, result: Result, sent: float, last: list[float]) -> bool:
    """Fold one SSE line into ``result``; True at ``data: [DONE]``. Raises ValueError for a
    data line that is not a completion chunk."""
    if not line.startswith("data:"):
        return False  # blank separators, ": ping" comments
    payload = line[5:].strip()
    if payload == "[DONE]":
        return True
    chunk = json.loads(payload)
    choice = chunk["choices"][0]
    result.add_token(choice.get("text") or (choice.get("delta") or {}).get("content") or "",
                     sent, last)
    result.finish_reason = choice.get("finish_reason") or result.finish_reason
    return False


def request_body(prompt: str, *, model: str | None, max_tokens: int, chat: bool
                 ) -> tuple[str, dict]:
    """``(route, body)`` of one streaming greedy request: ``/completions`` with the prompt, or
    ``/chat/completions`` with the prompt as one user message."""
    body = {"max_tokens": max_tokens, "temperature": 0, "stream": True}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if model:
        body["model"] = model
    return ("/chat/completions" if chat else "/completions"), body


async def stream_completion(client, url: str, index: int, prompt: str, *, model: str | None,
                            max_tokens: int, chat: bool = False) -> Result:
    """One streaming greedy completion (or chat completion); the Result says how it went (never
    raises for a server or network failure)."""
    import httpx

    result = Result(index)
    route, body = request_body(prompt, model=model, max_tokens=max_tokens, chat=chat)
    sent = time.perf_counter()
    last = [sent]
    done = False
    try:
        async with client.stream("POST", f"{url}{route}", json=body) as response:
            result.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                result.error = f"http_{response.status_code}"
                return result
            async for line in response.aiter_lines():
                done = parse_event(line, result, sent, last) or done
    except (ValueError, KeyError, IndexError, TypeError):
        result.error = "malformed_stream"
        return result
    except httpx.TimeoutException:
        result.error = "timeout"
        return result
    except httpx.ConnectError:
        result.error = "connect"
        return result
    except httpx.HTTPError:
        result.error = "truncated_stream"
        return result
    result.latency = time.perf_counter() - sent
    result.ok = done and result.finish_reason is not None
    result.error = None if result.ok else "truncated_stream"
    return result


async def probe(client, url: str) -> str:
    """The first model id ``GET {url}/models`` lists; ConnectionError with a hint if the server
    cannot be reached, PermissionError if it wants an API key."""
    import httpx

    try:
        response = await client.get(f"{url}/models", timeout=5.0)
    except httpx.HTTPError as err:
        raise ConnectionError(f"cannot reach {url}: {type(err).__name__}: {err or 'no answer'}. "
                              "Is the server running (qcourse serve)?") from err
    if response.status_code == 401:
        raise PermissionError(f"{url} wants an API key: pass api_key (--api-key)")
    if response.status_code != 200:
        raise ConnectionError(f"GET {url}/models answered {response.status_code}: "
                              f"{response.text[:200]}")
    return response.json()["data"][0]["id"]


async def run(url: str, prompts: Sequence[str], *, concurrency: int, max_tokens: int,
              model: str | None = None, api_key: str | None = None, timeout_s: float = 60.0,
              total_timeout_s: float = 600.0, progress: bool = False, chat: bool = False
              ) -> tuple[list[Result], float, str]:
    """Send every prompt, at most ``concurrency`` at a time; returns (results in prompt order,
    wall seconds, model id). Requests still running after ``total_timeout_s`` are cancelled and
    reported as errors of kind ``deadline``."""
    import httpx
    from tqdm.auto import tqdm

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    queue = list(enumerate(prompts))[::-1]              # popped from the end: prompt order
    results: list[Result | None] = [None] * len(prompts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(timeout_s, connect=5.0)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        model = model or await probe(client, url)
        bar = tqdm(total=len(prompts), desc=f"concurrency {concurrency}", disable=not progress,
                   file=sys.stderr, leave=False)

        async def worker() -> None:
            while queue:                                 # each pass takes one prompt: bounded
                index, prompt = queue.pop()
                try:
                    results[index] = await asyncio.wait_for(stream_completion(
                        client, url, index, prompt, model=model, max_tokens=max_tokens,
                        chat=chat), timeout_s)
                except asyncio.TimeoutError:
                    results[index] = Result(index, error="timeout")
                bar.update()

        start = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=total_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - start
        bar.close()
    return [r or Result(i, error="deadline") for i, r in enumerate(results)], wall, model


def report(results: Sequence[Result], wall_s: float) -> dict:
    """The run's figures (see the module docstring) plus the raw per-request numbers."""
    done = [r for r in results if r.ok]
    tokens = sum(r.tokens for r in done)
    itl = [gap for r in done for gap in r.itl]
    return {
        "requests": len(results), "completed": len(done),
        "errors": dict(Counter(r.error for r in results if not r.ok)),
        "wall_s": wall_s,
        "requests_per_s": len(done) / wall_s if wall_s > 0 else 0.0,
        "output_tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
        "output_tokens": tokens,
        "ttft_s": summary([r.ttft for r in done if r.ttft is not None]),
        "itl_s": summary(itl),
        "latency_s": summary([r.latency for r in done]),
        "raw": {"latency_s": [r.latency for r in done], "ttft_s": [r.ttft for r in done],
                "tokens": [r.tokens for r in done]},
        "texts": [r.text for r in results],
    }


def run_sync(coroutine):
    """Run a coroutine to completion from synchronous code, also inside a running event loop
    (a Jupyter kernel has one): then it runs on a fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def loadtest(url: str, *, requests: int = 32, concurrency: int = 4, max_tokens: int = 32,
             prompts: Sequence[str] | None = None, model: str | None = None,
             api_key: str | None = None, allow_remote: bool = False, timeout_s: float = 60.0,
             total_timeout_s: float = 600.0, progress: bool = False, seed: int = 0,
             chat: bool = False) -> dict:
    """Load-test the OpenAI-compatible server at ``url``: ``requests`` streaming greedy
    completions of at most ``max_tokens`` tokens, ``concurrency`` at a time, prompts from the
    test split (or ``prompts``; ``chat``: chat completions, each prompt one user message).
    Returns :func:`report`'s dict with the settings added.
    ValueError for a non-loopback URL (unless ``allow_remote``) or limits out of range,
    ConnectionError if nothing answers at ``url`` (after at most 5 s)."""
    base = check_url(url, allow_remote)
    check_limits(requests, concurrency, max_tokens)
    prompts = list(prompts) if prompts is not None else test_prompts(requests, seed)
    if len(prompts) != requests:
        raise ValueError(f"got {len(prompts)} prompts for {requests} requests")
    results, wall, model = run_sync(run(
        base, prompts, concurrency=concurrency, max_tokens=max_tokens, model=model,
        api_key=api_key, timeout_s=timeout_s, total_timeout_s=total_timeout_s, progress=progress,
        chat=chat))
    out = {"url": base, "model": model, "concurrency": concurrency, "max_tokens": max_tokens,
           "chat": chat}
    out.update(report(results, wall))
    return out
