"""Files for the runtimes that cannot run on this machine (``qcourse export-deploy OUT``).

Ollama (a separate daemon), vLLM (GPUs; its CPU backend is built from source or installed from
separate wheels) and TensorRT-LLM (NVIDIA GPUs) are not installed here, so the course writes
what each one needs and tests the files instead of running them:

    OUT/ollama/Modelfile          FROM the GGUF (copied beside it), chat TEMPLATE, PARAMETERs
    OUT/vllm/serve.sh             `vllm serve CHECKPOINT --quantization METHOD ...`
    OUT/vllm/client.py            vLLM's offline Python API, and the OpenAI client of the server
    OUT/vllm/nginx.conf           two replicas behind one address (scale-out)
    OUT/vllm/README.md            what the flags do; tensor vs data parallel, with the commands
    OUT/tensorrt_llm/README.md    Triton model-repository layout, quantization modes by GPU
    OUT/MANIFEST.json             every file, the checkpoint's method, the sources

Every command and flag was checked against the project's own documentation, cited in the files
and in :data:`SOURCES`. ``vllm serve`` is vLLM's entry point; the
``python -m vllm.entrypoints.openai_compatible_server`` of some tutorials names no module of
vLLM (its server module is ``vllm.entrypoints.openai.api_server``).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil

from .model_file import check_gguf_file, gguf_for

SOURCES = {
    "ollama_modelfile": "https://github.com/ollama/ollama/blob/main/docs/modelfile.mdx",
    "ollama_template": "https://github.com/ollama/ollama/blob/main/docs/template.md",
    "vllm_serve": "https://github.com/vllm-project/vllm/blob/main/docs/configuration/serve_args.md",
    "vllm_quantization": "https://docs.vllm.ai/en/latest/features/quantization/",
    "vllm_methods": "https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/layers/"
                    "quantization/__init__.py",
    "vllm_parallel": "https://docs.vllm.ai/en/latest/serving/parallelism_scaling/",
    "vllm_cpu": "https://docs.vllm.ai/en/latest/getting_started/installation/cpu/",
    "llama_server": "https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
    "trtllm_quantization": "https://nvidia.github.io/TensorRT-LLM/features/quantization.html",
    "trtllm_serve": "https://nvidia.github.io/TensorRT-LLM/latest/commands/trtllm-serve.html",
    "modelopt_support_matrix": "https://nvidia.github.io/Model-Optimizer/guides/"
                               "0_support_matrix.html",
    "triton_trtllm_backend": "https://github.com/triton-inference-server/tensorrtllm_backend",
    "triton_model_config": "https://docs.nvidia.com/deeplearning/triton-inference-server/"
                           "user-guide/docs/tensorrtllm_backend/docs/model_config.html",
}

# qcourse-tiny's chat template (data/qcourse-tiny/tokenizer_config.json, also written into its
# GGUF) and the same template in Ollama's Go template syntax.
QCOURSE_CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: "
                         "{{ message['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
QCOURSE_OLLAMA_TEMPLATE = "{{- range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant:"

# Quantization modes of TensorRT-LLM / Model Optimizer and the oldest GPU generation that runs
# them (compute capability), from the Model Optimizer support matrix.
TRT_MODES = [
    ("FP8 (W8A8)", "fp8 e4m3 weights and activations", "Ada (SM 8.9), Hopper (SM 9.0)"),
    ("NVFP4 (W4A4)", "fp4 e2m1 weights and activations, fp8 scale per 16", "Blackwell (SM 10.0)"),
    ("INT4 AWQ (W4A16)", "int4 weights in blocks, fp16/bf16 activations", "Ampere (SM 8.0)"),
    ("W4A8 AWQ", "int4 weights, fp8 activations", "Ada (SM 8.9)"),
    ("INT8 SmoothQuant (W8A8)", "int8 weights per channel, int8 activations", "Ampere (SM 8.0)"),
]
VLLM_METHODS = {"gptq": "gptq", "compressed-tensors": "compressed-tensors", "awq": "awq"}


def ollama_modelfile(gguf_name: str, chat_template: str | None, eos: str, n_ctx: int) -> str:
    """An Ollama Modelfile for the GGUF ``gguf_name`` (a path relative to the Modelfile).
    A TEMPLATE is written when the model's chat template is qcourse-tiny's (translated to Go
    template syntax); any other template is left to Ollama, which reads the GGUF's metadata."""
    lines = ["# Ollama Modelfile written by `qcourse export-deploy`.",
             f"# Format: {SOURCES['ollama_modelfile']}",
             "# Use:    ollama create qcourse-tiny -f Modelfile && ollama run qcourse-tiny",
             f"FROM ./{gguf_name}"]
    if chat_template == QCOURSE_CHAT_TEMPLATE:
        lines += [f"# The chat template of the GGUF, in Go template syntax ({SOURCES['ollama_template']})",
                  f'TEMPLATE """{QCOURSE_OLLAMA_TEMPLATE}"""']
    else:
        lines.append("# No TEMPLATE: Ollama uses the chat template stored in the GGUF, if it knows it")
    lines += [f"PARAMETER stop {json.dumps(eos)}", f"PARAMETER num_ctx {n_ctx}",
              "PARAMETER temperature 0", "PARAMETER num_predict 128"]
    return "\n".join(lines) + "\n"


def checkpoint_method(checkpoint: pathlib.Path) -> str:
    """The ``quant_method`` of a checkpoint folder's config.json, if vLLM serves it."""
    config = checkpoint / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{checkpoint} holds no config.json: not a checkpoint folder")
    method = json.loads(config.read_text()).get("quantization_config", {}).get("quant_method")
    if method not in VLLM_METHODS:
        raise ValueError(f"{checkpoint} has quant_method {method!r}; the vLLM files are written "
                         f"for {sorted(VLLM_METHODS)} checkpoints")
    return method


def vllm_serve_script(method: str, n_ctx: int) -> str:
    """``vllm/serve.sh``: serve the checkpoint given as $1 (default ./checkpoint)."""
    return f"""#!/bin/sh
# Serve a quantized checkpoint with vLLM's OpenAI-compatible server (a GPU machine with vLLM).
# `vllm serve` is vLLM's command ({SOURCES['vllm_serve']}); the quantization method
# is one of vLLM's ({SOURCES['vllm_methods']}) and must match the checkpoint's
# config.json (vLLM also reads it from there when --quantization is left out).
set -e
CHECKPOINT="${{1:-$(dirname "$0")/checkpoint}}"
exec vllm serve "$CHECKPOINT" --quantization {VLLM_METHODS[method]} --max-model-len {n_ctx} \\
    --host 127.0.0.1 --port 8000
"""


def vllm_client(method: str, n_ctx: int) -> str:
    """``vllm/client.py``: vLLM's offline API, then a request to the server of serve.sh."""
    return f'''"""vLLM from Python: offline generation, then the OpenAI client of `serve.sh`'s server."""
import sys

CHECKPOINT = sys.argv[1] if len(sys.argv) > 1 else "checkpoint"
PROMPT = "def read_file(path):\\n"

if "--server" not in sys.argv:
    from vllm import LLM, SamplingParams

    llm = LLM(model=CHECKPOINT, quantization="{VLLM_METHODS[method]}", max_model_len={n_ctx})
    out = llm.generate([PROMPT], SamplingParams(temperature=0, max_tokens=32))
    print(out[0].outputs[0].text)
else:
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")
    reply = client.completions.create(model=CHECKPOINT, prompt=PROMPT, max_tokens=32,
                                      temperature=0)
    print(reply.choices[0].text)
'''


NGINX_CONF = """# Two vLLM replicas (one GPU each) behind one address: start them with
#   CUDA_VISIBLE_DEVICES=0 vllm serve checkpoint --port 8001
#   CUDA_VISIBLE_DEVICES=1 vllm serve checkpoint --port 8002
# then run nginx with this file. Streaming (SSE) needs proxy_buffering off.
events {}
http {
    upstream vllm_replicas {
        least_conn;
        server 127.0.0.1:8001;
        server 127.0.0.1:8002;
    }
    server {
        listen 127.0.0.1:8000;
        location /v1/ {
            proxy_pass http://vllm_replicas;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
"""


def vllm_readme(method: str) -> str:
    return f"""# vLLM files for this checkpoint (`quant_method: {method}`)

* `serve.sh [CHECKPOINT]`: `vllm serve ... --quantization {VLLM_METHODS[method]}`, the
  OpenAI-compatible server ({SOURCES['vllm_serve']}). Which hardware (GPUs, and x86 / ARM
  CPUs through vLLM's CPU backend) runs which method: {SOURCES['vllm_quantization']}; the CPU
  backend's installation: {SOURCES['vllm_cpu']}.
* `client.py [CHECKPOINT]`: vLLM's offline `LLM(...).generate`; `--server` asks the server instead.

vLLM batches continuously: each forward pass serves every running request, and a new request
joins at the next step instead of waiting for the batch to finish (PagedAttention keeps each
request's KV cache in fixed-size blocks). llama-cpp-python's server, measured in notebook 08,
runs one request at a time; llama.cpp's own `llama-server` has parallel slots (`-np, --parallel`)
with continuous batching on by default ({SOURCES['llama_server']}).

## When one GPU is not enough ({SOURCES['vllm_parallel']})

* The model does not fit on one GPU: **tensor parallel**, each layer split over N GPUs of one
  machine, one replica: `vllm serve CHECKPOINT --tensor-parallel-size 2`.
* The model fits but traffic does not: **more replicas**. Either vLLM's data parallel
  (`vllm serve CHECKPOINT --data-parallel-size 4`, one endpoint, four engines) or independent
  servers behind a load balancer: `nginx.conf` puts two of them (ports 8001, 8002) behind
  127.0.0.1:8000.
"""


def trt_readme() -> str:
    rows = "\n".join(f"| {mode} | {what} | {gpu} or later |" for mode, what, gpu in TRT_MODES)
    return f"""# TensorRT-LLM and Triton: layout and requirements

TensorRT-LLM needs an NVIDIA GPU; nothing here runs on a CPU.

## Quantization modes and the GPUs that run them

| mode | what is quantized | oldest GPU generation |
|---|---|---|
{rows}

Source: NVIDIA Model Optimizer support matrix ({SOURCES['modelopt_support_matrix']}); the
recipes TensorRT-LLM runs are listed at {SOURCES['trtllm_quantization']}.

## Serving

* `trtllm-serve CHECKPOINT --host 127.0.0.1 --port 8000 --tp_size 1`: an OpenAI-compatible
  server (`/v1/models`, `/v1/completions`, `/v1/chat/completions`) on the PyTorch backend,
  from a Hugging Face or Model Optimizer checkpoint ({SOURCES['trtllm_serve']}).
* Quantize with Model Optimizer first when the checkpoint is float, e.g.
  `python examples/quantization/quantize.py --model_dir HF_MODEL --qformat int4_awq --output_dir CKPT`
  (`--qformat fp8`, `nvfp4`, ... as in the table).

## Triton Inference Server model repository

The TensorRT-LLM backend ({SOURCES['triton_trtllm_backend']}) ships a template repository,
copied with `cp -r tensorrt_llm/triton_backend/all_models/inflight_batcher_llm/ model_repo`:

```
model_repo/
  ensemble/          config.pbtxt, 1/            preprocessing -> tensorrt_llm -> postprocessing
  preprocessing/     config.pbtxt, 1/model.py    tokenizer (text -> ids)
  tensorrt_llm/      config.pbtxt, 1/            the engine: in-flight batching, paged KV cache
  postprocessing/    config.pbtxt, 1/model.py    detokenizer (ids -> text)
  tensorrt_llm_bls/  config.pbtxt, 1/model.py    optional business-logic-scripting entry point
```

Each `config.pbtxt` is a template filled with `tensorrt_llm/triton_backend/tools/fill_template.py
-i model_repo/<model>/config.pbtxt key:value,...` (`tokenizer_dir`, `triton_max_batch_size`,
`engine_dir`, ...: {SOURCES['triton_model_config']}).
"""


def export_deploy(out: str | os.PathLike, *, gguf: str | os.PathLike | None = None,
                  model: str = "qcourse-tiny", quant: str = "Q4_K_M",
                  checkpoint: str | os.PathLike | None = None, n_ctx: int = 512
                  ) -> list[pathlib.Path]:
    """Write the deployment files (module docstring) into ``out``; returns their paths.
    ``gguf``: the file for Ollama (default: ``model`` exported to ``quant``, cached);
    ``checkpoint``: a GPTQ or compressed-tensors folder for vLLM, copied to
    ``out/vllm/checkpoint`` (without one, the vLLM files are written for a GPTQ checkpoint
    passed as their first argument)."""
    from qcourse.gguf import read_gguf

    gguf = check_gguf_file(gguf) if gguf is not None else gguf_for(model, quant)
    method = "gptq"
    if checkpoint is not None:
        checkpoint = pathlib.Path(checkpoint)
        method = checkpoint_method(checkpoint)
    out = pathlib.Path(out)
    meta = read_gguf(gguf).metadata
    tokens, eos_id = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.eos_token_id")
    eos = tokens[eos_id] if tokens is not None and eos_id is not None else "</s>"
    files = {
        "ollama/Modelfile": ollama_modelfile(gguf.name, meta.get("tokenizer.chat_template"), eos,
                                             n_ctx),
        "vllm/serve.sh": vllm_serve_script(method, n_ctx),
        "vllm/client.py": vllm_client(method, n_ctx),
        "vllm/nginx.conf": NGINX_CONF,
        "vllm/README.md": vllm_readme(method),
        "tensorrt_llm/README.md": trt_readme(),
    }
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    (out / "vllm" / "serve.sh").chmod(0o755)
    shutil.copyfile(gguf, out / "ollama" / gguf.name)
    written.append(out / "ollama" / gguf.name)
    if checkpoint is not None:
        shutil.copytree(checkpoint, out / "vllm" / "checkpoint", dirs_exist_ok=True)
        written.append(out / "vllm" / "checkpoint")
    manifest = {"files": [str(p.relative_to(out)) for p in written], "gguf": gguf.name,
                "vllm_quantization": method, "sources": SOURCES}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return written + [out / "MANIFEST.json"]
