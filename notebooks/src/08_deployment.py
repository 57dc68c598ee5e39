"""Source of notebooks/08_deployment.ipynb (run this file to regenerate it)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nbbuild  # noqa: E402

CELLS = [
    ("md", r"""
# 08 · Deployment: from a quantized file to a service

Notebook 06 ended with a GGUF file. Here it becomes a **service**: an HTTP server that speaks
the OpenAI API, which any OpenAI client, LangChain app or `curl` can call. Then we load-test it,
see what a server that runs one request at a time does under load, run the same model in the
other runtimes people deploy with (transformers + bitsandbytes, ONNX Runtime), check that a
quantized checkpoint of the course loads in the loader vLLM uses, and write the files for the
runtimes that need a GPU (vLLM, Ollama, TensorRT-LLM).

**Learning goals.** After this notebook you can
1. start an OpenAI-compatible llama.cpp server from Python, call it with the `openai` client
   (streaming and not), and stop it so that nothing is left running;
2. list what a production server must do besides generating text, and check that it does it:
   client errors answered with 4xx, an API key, a client that disconnects, bounded waits;
3. load-test a server: time to first token, inter-token latency, end-to-end latency
   percentiles, throughput; and predict latency from throughput with Little's law;
4. explain why a server that serializes requests stops scaling, and what (continuous)
   batching changes;
5. compare runtimes on memory, speed and perplexity, and choose one for a deployment target.
"""),
    ("code", r"""
%matplotlib inline
import logging
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's notes at import time

import copy
import inspect
import json
import os
import pathlib
import socket
import tempfile
import time
import warnings

import httpx
import llama_cpp.server.app
import matplotlib.pyplot as plt
import openai
import torch

from qcourse import data, deploy, models
from qcourse.deploy import artifacts, compressed, guard, latency, loadtest, runtimes
from qcourse.deploy.model_file import gguf_for
from qcourse.exercises import ex08
from qcourse.gptq_checkpoint import save_gptq_checkpoint, load_gptq_checkpoint
from qcourse.layers import QuantLinear
from qcourse.references import bnb, checkpoint_loaders, onnx_runtime

torch.manual_seed(0)
torch.set_num_threads(1)              # every runtime below gets one thread: a fair comparison
warnings.filterwarnings("ignore")
for name in ("transformers", "bitsandbytes", "onnxruntime", "root", "compressed_tensors"):
    logging.getLogger(name).setLevel(logging.ERROR)
KEY = "course-key"                    # the server's API key (a real one comes from a secret store)
model, tokenizer = models.load()
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
print(server, f"ready in {time.perf_counter() - start:.0f} s")
print(httpx.get(f"{server.url}/models", headers=server.headers).json())
"""),
    ("md", r"""
## 2. Calling it with the `openai` client

The server speaks the OpenAI API, so the official client works with two changes: `base_url`
and the key. A completion first, then the same request **streamed**: the server sends each token
as a server-sent event (`data: {...}` lines) as soon as it is generated. The time to the first
one (**TTFT**) is what a user waits for before anything appears.
"""),
    ("code", r"""
client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)
prompt = "def read_file(path):\n"
reply = client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=24,
                                  temperature=0)
print(repr(prompt + reply.choices[0].text))
print(reply.usage)

sent = time.perf_counter()
arrivals = []
for chunk in client.completions.create(model="qcourse-tiny", prompt=prompt, max_tokens=24,
                                       temperature=0, stream=True):
    arrivals.append((time.perf_counter() - sent, chunk.choices[0].text))
text = "".join(t for _, t in arrivals)
print(f"{len(arrivals)} events; first token after {arrivals[0][0] * 1000:.0f} ms, "
      f"last after {arrivals[-1][0] * 1000:.0f} ms; same text as without streaming: "
      f"{text == reply.choices[0].text}")
"""),
    ("md", r"""
**Chat.** `/v1/chat/completions` takes messages and turns them into one prompt with the model's
*chat template*. qcourse-tiny is a base model (trained on Python's documentation and source,
never on dialogues), so the course gave it a simple template, `role: content` per line then
`assistant:`, stored both in its Hugging Face tokenizer (`tokenizer_config.json`) and in the
GGUF file (`tokenizer.chat_template`). Both sides render the same prompt: the server counts
exactly the tokens transformers' `apply_chat_template` produces. (Its answers are continuations
of Python documentation, not conversation: the template gives the format, not the skill.)
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
## 3. A production checklist, checked

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
**A client that hangs up does not hold the model.** Browsers close tabs and phones lose signal
in the middle of a stream. The server notices the closed connection at its next token and
releases the model; the next request is served at once.
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
print(f"next request: {after.status_code} in {time.perf_counter() - start:.2f} s; "
      f"server running: {server.running}")
"""),
    ("md", r"""
The rest of the list is built in and tested (`tests/test_deploy_server.py`): the server listens
on `127.0.0.1` unless told otherwise; `--api-key` (here `api_key=`) protects every route, and
the key travels in the environment, not on the command line that other users can read; a taken
port, a missing or corrupt GGUF and an unknown quantization type are one-line errors before any
process starts; every wait (startup, shutdown, each request of a load test, the whole test) has a
deadline; and the last section shows the process gone and its port free.

## 4. Load-testing the server

`qcourse loadtest URL --requests N --concurrency C --json FILE` (here `loadtest.loadtest`) sends
N streaming greedy completions with at most C in flight (asyncio + httpx), prompts taken from
the test split. Per request it records **TTFT**, the **inter-token latencies** (gaps between
tokens) and the **end-to-end latency**; per run, completed requests per second and output
tokens per second, and errors by kind. Latencies are summarized by percentiles: the p99 is what
one request in a hundred exceeds, and what your busiest users notice. It refuses to target
anything but this machine (a load test is a small denial-of-service attack) unless told
`--allow-remote`.

**Exercise 8.1** first: the percentile, from raw latencies.
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
    ("code", r"""
sweep = {}
for concurrency in (1, 4, 16):
    sweep[concurrency] = loadtest.loadtest(server.url, requests=16, concurrency=concurrency,
                                           max_tokens=16, api_key=KEY)
print(f"{'C':>3} {'done':>5} {'req/s':>6} {'tok/s':>6} {'TTFT p50':>9} {'ITL p50':>8} "
      f"{'e2e p50':>8} {'e2e p90':>8} {'e2e p99':>8}   (ms)")
for c, r in sweep.items():
    ms = lambda key, p: r[key][p] * 1000  # noqa: E731
    print(f"{c:3d} {r['completed']:5d} {r['requests_per_s']:6.1f} {r['output_tokens_per_s']:6.0f} "
          f"{ms('ttft_s', 'p50'):9.0f} {ms('itl_s', 'p50'):8.1f} {ms('latency_s', 'p50'):8.0f} "
          f"{ms('latency_s', 'p90'):8.0f} {ms('latency_s', 'p99'):8.0f}")
same = all(sweep[c]["texts"] == sweep[1]["texts"] for c in sweep)
print(f"every request completed: {all(r['completed'] == 16 for r in sweep.values())}; "
      f"greedy answers identical at every concurrency: {same}")
"""),
    ("code", r"""
cs = list(sweep)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
for p in ("p50", "p90"):
    ax1.plot(cs, [sweep[c]["latency_s"][p] * 1000 for c in cs], "o-", label=f"end-to-end {p}")
ax1.plot(cs, [sweep[c]["ttft_s"]["p50"] * 1000 for c in cs], "s--", label="TTFT p50")
ax1.set(xscale="log", xticks=cs, xticklabels=cs, xlabel="concurrent clients", ylabel="ms",
        title="latency")
ax1.legend()
ax2.plot(cs, [sweep[c]["output_tokens_per_s"] for c in cs], "o-")
ax2.set(xscale="log", xticks=cs, xticklabels=cs, xlabel="concurrent clients",
        ylabel="output tokens / s", title="throughput", ylim=(0, None))
plt.tight_layout()
"""),
    ("md", r"""
**What the lock means.** llama-cpp-python holds one `Llama` object, and every request takes a
lock around it (two locks, in fact, so a streaming request can see that another one waits):
"""),
    ("code", r"""
print(inspect.getsource(llama_cpp.server.app.get_llama_proxy))
"""),
    ("md", r"""
So requests are generated **one at a time**. Adding clients adds no generation capacity: 16
clients get no more tokens per second than one (beyond the noise of this shared machine, whose
other jobs move every row). What grows is latency: every extra client waits in line, and TTFT becomes most of the latency, because a
request spends its time waiting for the lock and then streams its tokens quickly. That is what
Little's law predicts for a saturated server.

**Little's law** (1961): in a steady system, requests in flight = throughput × time in the
system, `N = X · R`. A server that completes `X` requests per second holds `N = X · R` requests
at latency `R`; users who think `Z` seconds between a reply and their next request add `X · Z`.

**Exercise 8.2**: how many users does a measured server hold?
"""),
    ("code", r"""
print(ex08.users.prompt)

def users(X, R, Z):
    return ...  # your code here

ex08.users.check(users);
"""),
    ("code", r"""
for c, r in sweep.items():
    X_c, R_c = r["requests_per_s"], r["latency_s"]["mean"]
    # one request at a time: in service slot k, min(C, requests not yet finished) are in flight
    queue = sum(min(c, r["requests"] - k) for k in range(r["requests"])) / r["requests"]
    print(f"C = {c:2d}: X = {X_c:4.1f} requests/s, mean latency R = {R_c * 1000:5.0f} ms, "
          f"X · R = {X_c * R_c:4.1f} in flight on average (a one-at-a-time queue: {queue:.2f})")
X = sweep[16]["requests_per_s"]                       # throughput with a queue, requests/s
for target in (0.5, 2.0):
    print(f"X = {X:.1f}/s, latency {target:.1f} s: clients sending back to back "
          f"{latency.users_at_latency(X, target)}, users who read for 10 s between requests "
          f"{latency.users_at_latency(X, target, 10.0)}")
"""),
    ("md", r"""
Over a test that starts and ends empty, Little's law is exact: `X · R` is the average number of
requests in flight. With C clients it would be C in a steady state, but each level here is a
short test of 16 requests that drains at the end: at C = 4 the last three requests run with
fewer clients waiting, and at C = 16 the test is a single *burst* (all 16 arrive at once, the
first is served at once and the last waits for all the others), so on average only
(16 + 15 + ... + 1) / 16 = 8.5 are in flight, not 16. The measured `X · R` is near that queue
arithmetic whatever the load of the machine, because X and R are measured in the same run; it
is not equal to it, because real service times are not all the same (the arithmetic assumes they
are).
The recorded benchmark below runs 32 requests per level.

**What continuous batching changes.** Generating one token for one sequence reads every weight
once to do one multiply-add per weight: on any hardware, a memory-bound matrix-*vector* product.
Generating one token for 16 sequences in the same forward pass reads the weights once for 16
rows: a matrix-*matrix* product that costs little more. Servers built for throughput therefore
**batch**: vLLM schedules every running request into each forward pass and lets new requests join
at the next step instead of waiting for the batch to finish (*continuous* or in-flight batching,
with the KV cache in fixed-size pages, PagedAttention); llama.cpp's own `llama-server` does the
same with parallel slots (`-np, --parallel N`; continuous batching is on by default). Neither runs
here (vLLM needs a GPU; llama-cpp-python ships the library, not `llama-server`), but the effect
of batching can be measured with transformers in a service loop: a burst of 16 requests (8 new
tokens each) served one at a time, or taken from the queue 4 or 16 at a time.
"""),
    ("code", r"""
torch_rt = runtimes.TorchRuntime(model, "PyTorch fp32")
burst = [tokenizer("def read_file(path):\n", add_special_tokens=False)["input_ids"]] * 16
for batch_size in (1, 4, 16):
    loop = runtimes.service_loop(torch_rt, burst, 8, batch_size=batch_size)
    print(f"batch {batch_size:2d}: {loop['tokens_per_s']:6.0f} tokens/s, latency p50 "
          f"{loop['latency_s']['p50']:.2f} s, p99 {loop['latency_s']['p99']:.2f} s")
"""),
    ("md", r"""
Batching multiplies throughput on the same core, and every request finishes sooner than in the
one-at-a-time queue. *Static* batching (this loop) still makes a request that arrives during a
batch wait for the whole batch; continuous batching removes that wait too.

Two more things the recorded run (`benchmarks/serve.py`, below) shows: the same sweep up to 16
clients with more requests per level, and llama-cpp-python's `interrupt_requests` option. It is
**on** by default: a streaming reply is cut short (the server sends `[DONE]`) as soon as another
request waits for the lock, so under load clients receive truncated answers that look complete.
The course's server turns it off (`Server(interrupt_requests=True)` or `qcourse serve
--interrupt-requests` restores it).
"""),
    ("code", r"""
recorded = sorted(pathlib.Path("../benchmarks/results").glob("serve-*.json"))
if recorded:
    record = json.loads(recorded[-1].read_text())
    m, s = record["machine"], record["serving"]
    print(f"recorded {m['date']} on {m['processor']} ({m['cpus']} cores, shared; load average "
          f"{m['load_average'][0]:.1f}), llama.cpp {s['quant']}, {s['threads']} thread, "
          f"{s['requests']} requests of {s['max_tokens']} tokens per level")
    for r in s["sweep"]:
        if "skipped" in r:
            print(f"  C={r['concurrency']:2d}: skipped ({r['skipped']})")
            continue
        print(f"  C={r['concurrency']:2d}: {r['requests_per_s']:5.1f} req/s "
              f"{r['output_tokens_per_s']:5.0f} tok/s  TTFT p50 {r['ttft_s']['p50'] * 1e3:5.0f} ms"
              f"  e2e p50 {r['latency_s']['p50'] * 1e3:5.0f} ms  p99 {r['latency_s']['p99'] * 1e3:5.0f} ms")
    for r in s["interrupt_requests"]:
        if "skipped" in r:
            continue
        print(f"  interrupt_requests on, C={r['concurrency']:2d}: {r['answers_cut_short']} of "
              f"{r['requests']} answers cut short")
else:
    print("no recorded run: python benchmarks/serve.py")
"""),
    ("md", r"""
## 5. The same model in other runtimes

Many Python shops first try **transformers + bitsandbytes** (`BitsAndBytesConfig`: LLM.int8()
or NF4, notebook 02) behind a web framework; others export to **ONNX Runtime**, which runs on any
CPU and in many languages. Both are measured here against PyTorch float32 and llama.cpp, with
the same questions: how big (bytes of weights), how fast (generated tokens per second in the
one-at-a-time service loop, 4 requests of 16 tokens, one thread), how good (perplexity on the
first 2 test windows, and agreement of the logits with float32 on one window).

ONNX export goes through `torch.onnx.export(dynamo=True)` (optimum-onnx, the usual route, does
not support transformers 5). To generate token by token, the graph takes the KV cache as an
input and returns it extended, so ONNX Runtime does the same work per token as the others:
"""),
    ("code", r"""
print(inspect.getsource(onnx_runtime.CachedCausalLM.forward))
"""),
    ("code", r"""
bnb.silence_int8_casts()
onnx_files = onnx_runtime.onnx_files()     # exported and quantized once (in a child process), cached
contenders = {                             # built one at a time, dropped after their row
    "PyTorch fp32": lambda name: torch_rt,
    "transformers + bnb int8": lambda name: runtimes.TorchRuntime(bnb.load_bnb("int8"), name,
                                                                  bnb.size_bytes),
    "transformers + bnb NF4": lambda name: runtimes.TorchRuntime(bnb.load_bnb("nf4"), name,
                                                                 bnb.size_bytes),
    "ONNX Runtime fp32": lambda name: onnx_runtime.OrtRuntime(onnx_files["fp32"], model.config, name),
    "ONNX Runtime INT8": lambda name: onnx_runtime.OrtRuntime(onnx_files["int8"], model.config, name),
    "ONNX Runtime INT4 (b32)": lambda name: onnx_runtime.OrtRuntime(onnx_files["int4"],
                                                                    model.config, name),
    "llama.cpp Q4_K_M": lambda name: runtimes.LlamaCppRuntime(gguf_for("qcourse-tiny", "Q4_K_M"),
                                                              name),
}
window = data.token_ids(tokenizer, "test")[:512]
requests = [burst[0]] * 4
rows = [runtimes.measure(build(name), tokenizer, requests, new_tokens=16, max_windows=2,
                         reference=torch_rt, check_ids=window) for name, build in contenders.items()]
print(f"{'runtime':26s} {'weights':>8} {'tok/s':>6} {'ppl':>7} {'max|Δlogit|':>11} {'top-1':>6}")
for r in rows:
    print(f"{r['runtime']:26s} {r['weight_bytes'] / 1e6:6.1f}MB {r['tokens_per_s']:6.0f} "
          f"{r['perplexity']:7.2f} {r['logits_max_abs']:11.3f} {r['logits_top1']:6.3f}")
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
names = [r["runtime"] for r in rows]
for ax, key, label in zip(axes, ("weight_bytes", "tokens_per_s", "perplexity"),
                          ("weights (MB)", "tokens / s (1 thread)", "perplexity (2 windows)")):
    values = [r[key] / 1e6 if key == "weight_bytes" else r[key] for r in rows]
    ax.barh(names, values, color=["grey", "C0", "C0", "C1", "C1", "C1", "C2"])
    ax.set(xlabel=label)
axes[2].set_xlim(min(r["perplexity"] for r in rows) * 0.99, max(r["perplexity"] for r in rows) * 1.01)
axes[0].invert_yaxis()
plt.tight_layout()
"""),
    ("md", r"""
Read the table with the model's size in mind: qcourse-tiny has 5.8 M parameters, so a forward
pass is tiny and each runtime's fixed cost per token (Python, the `generate` loop, kernel
dispatch) dominates. That is why PyTorch float32 through transformers' `generate` is slower
than ONNX Runtime float32, though both do the same arithmetic. bitsandbytes buys memory, not
speed, on a CPU: its int8 path (LLM.int8() splits every matmul into an int8 part and a float part
for outlier columns) is clearly slower than float32, and NF4 (each block of weights dequantized
before its matmul) is no clear win either. ONNX Runtime and llama.cpp run the
whole token step in native code. A 7B model is different: each generated token reads gigabytes
of weights, decoding is limited by memory bandwidth (notebook 07's roofline), and that is where
fewer bytes per weight pay off in speed as well as memory.

Quality follows the bits: 8-bit runtimes stay within a hair of float32, the 4-bit ones lose a
little (NF4, INT4 with blocks of 32, Q4_K_M). ONNX Runtime's INT8 file is smaller than its INT4
one here because `quantize_dynamic` also stores the tied embedding/output matrix (a quarter of
the model) in 8 bits, while `MatMulNBitsQuantizer` only quantizes the `MatMul`s and leaves that
shared matrix in float32.

Perplexity on more test windows and each runtime's peak memory in a fresh process, from the
recorded run (its settings are printed with it; its speed figures move with the machine's load):
"""),
    ("code", r"""
if recorded:
    print(f"recorded {m['date']} on {m['processor']} (load average {m['load_average'][0]:.1f}), "
          f"one thread; perplexity on "
          f"{'the whole test split' if record['settings']['max_windows'] is None else str(record['settings']['max_windows']) + ' windows of 512 tokens'}")
    print(f"  {'runtime':18s} {'weights':>8} {'peak RSS':>9} {'runtime +':>10} {'tok/s':>6} "
          f"{'ppl':>7} {'top-1':>6}")
    for r in record["runtimes"]:
        if "error" in r:
            print(f"  {r['runtime']:18s} not measured: {r['error'].strip().splitlines()[-1][:60]}")
            continue
        growth = r["peak_rss_bytes"] - r["rss_before_runtime_bytes"]
        print(f"  {r['runtime']:18s} {r['weight_bytes'] / 1e6:6.1f}MB {r['peak_rss_bytes'] / 1e6:7.0f}MB "
              f"{growth / 1e6:8.0f}MB {r['tokens_per_s']:6.0f} {r['perplexity']:7.2f} "
              f"{r['logits_top1']:6.3f}")
"""),
    ("md", r"""
Each measuring process also holds Python, PyTorch, transformers and the float32 model (the
reference for the logits), about 0.7 GB before the runtime is built; the *runtime +* column is
what building and running the runtime added on top, its perplexity run included.
For a model of a few megabytes the weights are a rounding error in either column. For a 7B model
in 4 bits (about 4 GB of weights) it is the weights column that decides which machine you need.

## 6. A quantized checkpoint in the loader vLLM uses

Notebook 04 saved GPTQ results in the GPTQ checkpoint layout. To serve such a file, production
loads it with someone else's code: transformers' GPTQ loader (it needs GPTQModel and optimum,
and GPTQModel needs a CUDA build of PyTorch, so it cannot run here) or vLLM, whose own format is
**compressed-tensors** (what llm-compressor writes). `qcourse.deploy.compressed` writes the same
integers in compressed-tensors' `pack-quantized` layout, and transformers + compressed-tensors
load it on the CPU with *their* decoder. Here with a quick round-to-nearest 4-bit model (the
same writer handles notebook 04's GPTQ checkpoints and notebook 05's AWQ models, which is how
llm-compressor saves its AWQ results; `tests/test_deploy_compressed.py` runs both):
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
## 7. The deployment matrix

Where each runtime fits, and the command that starts it today. The commands were checked against
each project's documentation (cited in the written files); what runs on this machine was measured
above.

| runtime | file it serves | hardware | serves with | here |
|---|---|---|---|---|
| llama.cpp (llama-cpp-python) | GGUF | CPU, Apple, CUDA | `qcourse serve` / `python -m llama_cpp.server --model F` | measured, sections 1-4 |
| llama.cpp `llama-server` | GGUF | CPU, Apple, CUDA | `llama-server -m F --parallel 4` | not installed (cited) |
| Ollama | GGUF + Modelfile | CPU, Apple, CUDA | `ollama create NAME -f Modelfile && ollama run NAME` | Modelfile written |
| transformers + bitsandbytes | HF folder | CPU, CUDA | your web framework around `generate` | measured, section 5 |
| ONNX Runtime | `.onnx` | CPU, many | `InferenceSession` in your service | measured, section 5 |
| vLLM | GPTQ, AWQ, compressed-tensors, FP8 | NVIDIA, AMD GPUs | `vllm serve DIR --quantization gptq` | files written |
| TensorRT-LLM | HF / Model Optimizer checkpoint | NVIDIA GPUs | `trtllm-serve DIR`, or Triton | layout note written |

Many older tutorials start vLLM with `python -m vllm.entrypoints.openai_compatible_server`:
no such module exists in vLLM (its server module is `vllm.entrypoints.openai.api_server`, and
the documented command is `vllm serve`). `qcourse export-deploy OUT` writes the files for the
runtimes that cannot run here:
"""),
    ("code", r"""
written = artifacts.export_deploy(workdir / "deploy", checkpoint=workdir / "gptq")
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

## 8. Stopping the server

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
print(f"server process {pid} alive: {alive}; port {port} free again: {free}")
"""),
    ("md", r"""
## Summary

* An OpenAI-compatible server turns a quantized file into a service any OpenAI client can use.
  `deploy.Server` starts llama-cpp-python's in its own process group, waits for it to answer, and
  always stops it; the guard in front answers client errors with 4xx and a clear message.
* Load tests measure TTFT, inter-token and end-to-end latency percentiles and throughput, with
  every loop bounded, against loopback servers only by default.
* llama-cpp-python generates one request at a time: more clients do not raise throughput, and
  latency grows with the queue, as Little's law (`N = X · R`) predicts. Batching
  (continuous in vLLM and `llama-server`) is how servers turn concurrency into throughput.
* On a model this small, runtime overhead decides speed (ONNX Runtime and llama.cpp lead) and
  bitsandbytes saves memory, not time, on a CPU; 4-bit formats cost a little perplexity in every
  runtime.
* The course's quantized checkpoints load in production loaders (compressed-tensors through
  transformers, vLLM's format); for GPU runtimes `qcourse export-deploy` writes checked files.

## Reproduce

* This notebook: `python notebooks/src/08_deployment.py --execute`.
* A server and a load test from a shell: `qcourse serve` (qcourse-tiny in Q4_K_M at
  `http://127.0.0.1:8000/v1`; a GGUF path, `--quant`, `--port`, `--n-ctx`, `--threads`,
  `--api-key KEY`, `--interrupt-requests`), then in another shell
  `qcourse loadtest http://127.0.0.1:8000/v1 --requests 32 --concurrency 4 --json run.json`.
* The recorded sweep, the `interrupt_requests` run, batching and the runtime table:
  `python benchmarks/serve.py` (`--quick` for a short run).
* The files for Ollama, vLLM and TensorRT-LLM: `qcourse export-deploy deploy/ --checkpoint DIR`.
* The checks behind every claim here: `pytest tests/test_deploy_*.py` (the server tests start
  their own server on a free loopback port, and stop it).

## Sources

* llama-cpp-python 0.3.36, `llama_cpp/server/app.py` (the locks, `interrupt_requests`) and
  `errors.py` (validation errors mapped to 500).
* OpenAI API reference, error codes and the completions/chat endpoints:
  https://platform.openai.com/docs/api-reference.
* J. D. C. Little, *A proof for the queuing formula L = λW*, Operations Research 9(3), 1961.
* Kwon et al., *Efficient Memory Management for Large Language Model Serving with
  PagedAttention* (vLLM), SOSP 2023. arXiv:2309.06180. Yu et al., *Orca: A Distributed Serving
  System for Transformer-Based Generative Models* (iteration-level scheduling), OSDI 2022.
* llama.cpp server: https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
* vLLM: `docs/configuration/serve_args.md`, https://docs.vllm.ai/en/latest/features/quantization/,
  https://docs.vllm.ai/en/latest/serving/parallelism_scaling/
* Ollama: https://github.com/ollama/ollama/blob/main/docs/modelfile.mdx and `docs/template.md`
* TensorRT-LLM: https://nvidia.github.io/TensorRT-LLM/features/quantization.html; Model
  Optimizer support matrix: https://nvidia.github.io/Model-Optimizer/guides/0_support_matrix.html
* ONNX Runtime quantization (`quantize_dynamic`, `MatMulNBitsQuantizer`):
  https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
* compressed-tensors 0.19 (`PackedQuantizationCompressor`), transformers' compressed-tensors
  integration: https://huggingface.co/docs/transformers/quantization/compressed_tensors
"""),
]

EXTRAS = "deploy"  # installed by the Colab cell; qcourse.doctor.NOTEBOOKS says why

if __name__ == "__main__":
    nbbuild.main(__file__, CELLS, extras=EXTRAS)
