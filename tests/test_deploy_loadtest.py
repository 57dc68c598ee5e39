"""The load generator without a server: URL and limit checks, SSE parsing, the report, and a
clear, quick error when nothing listens. (Against a real server: tests/test_deploy_server.py.)"""
import socket
import time

import pytest

from qcourse.deploy import commands
from qcourse.deploy.loadtest import (Result, check_limits, check_url, loadtest, parse_event,
                                     report)


@pytest.mark.parametrize("url, base", [
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("http://localhost:9/v1", "http://localhost:9/v1"),
    ("http://127.8.9.10:1/v1", "http://127.8.9.10:1/v1"),
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
])
def test_loopback_urls_are_accepted(url, base):
    assert check_url(url) == base


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/v1", "http://example.com/v1",
                                 "http://localhost.example.com/v1", "http://0.0.0.0:8000/v1"])
def test_other_hosts_are_refused_unless_allowed(url):
    with pytest.raises(ValueError, match="not a loopback address"):
        check_url(url)
    assert check_url(url, allow_remote=True).startswith("http://")


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1/v1", "http:///v1"])
def test_malformed_urls_are_refused(url):
    with pytest.raises(ValueError, match="expected a URL"):
        check_url(url)


@pytest.mark.parametrize("args", [(0, 1, 1), (10_001, 1, 1), (1, 0, 1), (1, 257, 1), (1, 1, 0),
                                  (1, 1, 5000), (1.5, 1, 1), (True, 1, 1)])
def test_limits(args):
    with pytest.raises(ValueError, match="must be an integer"):
        check_limits(*args)
    check_limits(10_000, 256, 4096)


def events(*texts, finish="length", done=True):
    chunks = [f'data: {{"choices": [{{"text": "{t}", "finish_reason": null}}]}}' for t in texts]
    chunks.append(f'data: {{"choices": [{{"text": "", "finish_reason": "{finish}"}}]}}')
    return chunks + (["data: [DONE]"] if done else [])


def test_parse_event_folds_a_stream_into_a_result():
    result, sent = Result(0), time.perf_counter()
    last = [sent]
    lines = [": ping", ""] + events("def", " f", "(")
    finished = [parse_event(line, result, sent, last) for line in lines]
    assert finished == [False] * (len(lines) - 1) + [True]
    assert result.text == "def f(" and result.tokens == 3 and result.finish_reason == "length"
    assert result.ttft is not None and len(result.itl) == 2 and all(g >= 0 for g in result.itl)


def test_parse_event_reads_chat_deltas_and_rejects_garbage():
    result = Result(0)
    parse_event('data: {"choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}',
                result, 0.0, [0.0])
    assert result.text == "hi"
    with pytest.raises(ValueError):
        parse_event("data: {not json", Result(0), 0.0, [0.0])
    with pytest.raises(KeyError):
        parse_event('data: {"no": "choices"}', Result(0), 0.0, [0.0])


def test_report_by_hand():
    results = [Result(0, ok=True, tokens=4, ttft=0.1, itl=[0.1, 0.1, 0.1], latency=0.4, text="a"),
               Result(1, ok=True, tokens=2, ttft=0.3, itl=[0.2], latency=0.6, text="b"),
               Result(2, error="http_400"), Result(3, error="timeout")]
    r = report(results, wall_s=2.0)
    assert (r["requests"], r["completed"]) == (4, 2)
    assert r["errors"] == {"http_400": 1, "timeout": 1}
    assert r["requests_per_s"] == 1.0 and r["output_tokens_per_s"] == 3.0
    assert r["latency_s"]["p50"] == pytest.approx(0.5) and r["ttft_s"]["mean"] == pytest.approx(0.2)
    assert r["itl_s"]["p50"] == pytest.approx(0.1) and r["texts"] == ["a", "b", "", ""]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_url_is_a_quick_clear_error():
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot reach .* Is the server running"):
        loadtest(f"http://127.0.0.1:{free_port()}/v1", requests=2, prompts=["a", "b"])
    assert time.perf_counter() - start < 10


def test_loadtest_checks_before_sending_anything():
    with pytest.raises(ValueError, match="loopback"):
        loadtest("http://192.0.2.1:8000/v1", requests=1, prompts=["a"])
    with pytest.raises(ValueError, match="2 prompts for 3 requests"):
        loadtest("http://127.0.0.1:9/v1", requests=3, prompts=["a", "b"])


def test_the_cli_reports_errors_in_one_line(capsys):
    from qcourse.cli import main

    assert main(["loadtest", "http://example.com/v1", "--requests", "2"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main(["loadtest", f"http://127.0.0.1:{free_port()}/v1", "--requests", "1"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_format_report_lists_the_percentiles():
    r = report([Result(0, ok=True, tokens=2, ttft=0.01, itl=[0.002], latency=0.02)], 0.5)
    r.update(url="http://127.0.0.1:1/v1", model="m", concurrency=1, max_tokens=2)
    text = commands.format_report(r)
    assert "completed 1/1" in text and "time to first token" in text
    assert "p99 needs >= 100 values, got 1" in text and "max" in text        # 1 request: no p99
    many = report([Result(i, ok=True, tokens=2, ttft=0.01, itl=[0.002], latency=0.02 + i / 1e4)
                   for i in range(100)], 0.5)
    many.update(url="http://127.0.0.1:1/v1", model="m", concurrency=1, max_tokens=2)
    text = commands.format_report(many)
    assert "p99" in text and "p99 needs" not in text
