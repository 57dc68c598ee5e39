"""The server process: llama-cpp-python's OpenAI-compatible app, behind the course's guard.

    python -m qcourse.deploy.llama_server --model FILE.gguf [--port 0] [--ready-file F] ...

is what ``qcourse serve`` and :class:`qcourse.deploy.Server` run. It differs from
``python -m llama_cpp.server`` in four ways, each for a reason measured on this machine:

1. it checks the GGUF file and binds the port *before* loading anything, so a corrupt file or a
   port in use is a one-line error, and ``--port 0`` lets the OS pick a free port, which the
   process reports in ``--ready-file`` once the model is loaded and the socket listens (a
   socket made the way uvicorn makes its own, so that its connections have Nagle's algorithm
   off: :func:`bind`);
2. client errors get a 4xx with a clear message (:mod:`qcourse.deploy.guard`) instead of 500;
3. the model is loaded with llama.cpp's extra buffer types off (weights not repacked), because
   repacked AMX/AVX-512 kernels crash on multi-token batches of qcourse-tiny on this CPU
   (:mod:`qcourse.gguf.llamacpp`);
4. ``interrupt_requests`` is off unless asked for: llama-cpp-python's default cuts a streaming
   reply short (it sends ``[DONE]``) as soon as another request is waiting for the model lock,
   which makes a load test measure truncated answers.

llama-cpp-python runs one request at a time: every completion holds one lock around the model,
so concurrent requests queue. ``--parent-pid`` makes the process exit when the process that
started it dies, so a killed notebook kernel leaves no server behind.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from qcourse.deploy.guard import RequestGuard
from qcourse.deploy.model_file import check_gguf_file

API_KEY_ENV = "QCOURSE_API_KEY"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); OSError naming the port if
    it is taken.

    The socket is created with ``proto=IPPROTO_TCP``, as uvicorn's own ``Config.bind_socket``
    does: asyncio switches Nagle's algorithm off (``TCP_NODELAY``) only on connections whose
    socket says so (``asyncio.base_events._set_nodelay``), and accepted connections inherit the
    listener's ``proto``. With ``proto=0`` every response's second small write (the body after
    the headers, the next token's event) waits for the client's delayed ACK: about 40 ms on
    Linux, on every request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror} (is another "
                                 "server using that port? choose another with --port, or "
                                 "--port 0 for a free one)") from err
    sock.listen(128)
    return sock


def chat_formatter(metadata: dict):
    """llama-cpp-python's Jinja2 chat formatter for a GGUF file's ``metadata``: its
    ``tokenizer.chat_template`` with its BOS and EOS token texts, as ``Llama.__init__`` builds
    the one its server uses; None if the file has no chat template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = metadata.get("tokenizer.chat_template")
    if not template:
        return None
    tokens = metadata.get("tokenizer.ggml.tokens") or []

    def text(key: str) -> str:
        token = metadata.get(key)
        return tokens[token] if token is not None and 0 <= token < len(tokens) else ""

    return Jinja2ChatFormatter(template, eos_token=text("tokenizer.ggml.eos_token_id"),
                               bos_token=text("tokenizer.ggml.bos_token_id"))


def chat_prompt(path: str | os.PathLike, messages: list[dict]) -> str:
    """The prompt the server renders for a chat request with ``messages``: the GGUF's own chat
    template, ending with the assistant's turn. ValueError if the file has no chat template."""
    from qcourse.gguf import read_gguf

    formatter = chat_formatter(read_gguf(path).metadata)
    if formatter is None:
        raise ValueError(f"{path} has no tokenizer.chat_template")
    return formatter(messages=messages).prompt


def token_counter(path: str | os.PathLike, metadata: dict) -> Callable[[str, dict], int]:
    """``count(route, body)``: prompt tokens of a completion or chat request, from a vocab-only
    llama.cpp load of ``path`` (independent of the serving context, so safe to call while it
    generates), chats rendered with the GGUF's own chat template (in ``metadata``) as the
    server renders them."""
    import llama_cpp

    from qcourse.gguf.llamacpp import extra_buffer_types

    with extra_buffer_types(False):
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    formatter = chat_formatter(metadata)

    def count(route: str, body: dict) -> int:
        if route.endswith("/chat/completions"):
            messages = body.get("messages") or []
            text = formatter(messages=messages).prompt if formatter else \
                "".join(str(m.get("content", "")) for m in messages)
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        prompt = body.get("prompt", "")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return max((len(vocab.tokenize(str(p).encode("utf-8"), special=True)) for p in prompts),
                   default=0)

    return count


def build_app(gguf: pathlib.Path, *, alias: str, n_ctx: int, threads: int,
              api_key: str | None, interrupt_requests: bool):
    """The guarded ASGI app serving ``gguf`` as model ``alias`` (the model is loaded here)."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings
    from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest

    from qcourse.gguf import read_gguf
    from qcourse.gguf.llamacpp import extra_buffer_types

    server = ServerSettings(api_key=None, interrupt_requests=interrupt_requests)
    model = ModelSettings(model=str(gguf), model_alias=alias, n_ctx=n_ctx, n_batch=n_ctx,
                          n_threads=threads, n_threads_batch=threads, logits_all=False,
                          verbose=False)
    with extra_buffer_types(False):
        app = create_app(server_settings=server, model_settings=[model])
    metadata = read_gguf(gguf).metadata
    schemas = {"/v1/completions": CreateCompletionRequest.model_validate,
               "/v1/chat/completions": CreateChatCompletionRequest.model_validate}
    return RequestGuard(app, model=alias, n_ctx=n_ctx, schemas=schemas, api_key=api_key,
                        count_tokens=token_counter(gguf, metadata))


def write_ready(path: pathlib.Path, host: str, port: int) -> None:
    """Announce the listening address atomically (a reader never sees half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}))
    os.replace(partial, path)


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Start a daemon thread that ends this process (SIGTERM, then hard exit after 5 s) once
    ``parent_pid`` is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m qcourse.deploy.llama_server",
                                description="Serve a GGUF file through an OpenAI-compatible API.")
    p.add_argument("--model", required=True, help="the GGUF file")
    p.add_argument("--alias", default=None, help="the model id clients send (default: file stem)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--n-ctx", type=int, default=512, help="context length in tokens")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--interrupt-requests", action="store_true",
                   help="cut a streaming reply short when another request waits (llama-cpp-"
                        "python's default; off here so load tests measure whole answers)")
    p.add_argument("--ready-file", type=pathlib.Path, default=None,
                   help="write {host, port, pid} here once the server accepts requests")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process dies")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; exit status 2 with one line on stderr for bad input.
    The API key comes from the environment variable ``QCOURSE_API_KEY`` (not the command
    line, which other users of the machine can read)."""
    args = parse_args(argv)
    try:
        gguf = check_gguf_file(args.model)
        if args.n_ctx < 2 or args.threads < 1 or not 0 <= args.port < 65536:
            raise ValueError("--n-ctx must be >= 2, --threads >= 1 and --port in [0, 65535]")
        sock = bind(args.host, args.port)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    import uvicorn

    try:
        app = build_app(gguf, alias=args.alias or gguf.stem, n_ctx=args.n_ctx,
                        threads=args.threads, api_key=os.environ.get(API_KEY_ENV) or None,
                        interrupt_requests=args.interrupt_requests)
    except ValueError as err:               # llama.cpp could not load the file
        print(f"error: {err}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    if args.ready_file is not None:
        write_ready(args.ready_file, args.host, port)
    print(f"serving {gguf.name} as {args.alias or gguf.stem!r} on http://{args.host}:{port}/v1",
          file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:               # uvicorn shut down, then re-raised the Ctrl-C
        pass
    print("server stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
