"""Deployment: serving a quantized model behind an OpenAI-compatible API, load-testing it,
running it in other runtimes, and the files other runtimes need (notebook 08).

    server        Server: a llama.cpp server started and always stopped from Python
    llama_server  the server process (llama-cpp-python's app behind the guard)
    guard         client errors answered with 4xx and a clear message
    model_file    the GGUF a server loads: checked, or exported and cached
    latency       percentiles and Little's law for latency/throughput figures
    loadtest      a bounded asyncio load generator for any OpenAI-compatible URL
    runtimes      one model in several runtimes: logits, perplexity, a service loop
    compressed    writing a QuantLinear model as a compressed-tensors checkpoint (vLLM's format)
    artifacts     files for the runtimes that cannot run here (Ollama, vLLM, TensorRT-LLM)
    commands      `qcourse serve`, `qcourse loadtest`, `qcourse export-deploy`
"""


def __getattr__(name: str):
    """``deploy.Server`` on first use: importing a light module of the package (``guard``,
    ``latency``) does not import llama.cpp, torch or the GGUF code."""
    if name == "Server":
        from .server import Server
        return Server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
