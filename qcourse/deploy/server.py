"""``Server``: start an OpenAI-compatible llama.cpp server from Python, and always stop it.

    with deploy.Server() as server:          # qcourse-tiny, exported to Q4_K_M, a free port
        client = openai.OpenAI(base_url=server.url, api_key="none")
        ...
    # here the server process is gone and its port is free

The server runs in its own process (:mod:`qcourse.deploy.llama_server`) and its own process
group, so stopping it (SIGTERM to the group, SIGKILL after a grace period) stops everything it
started. ``__exit__`` runs even when the ``with`` body raises, a notebook cell is interrupted
(KeyboardInterrupt) or the start itself is interrupted; a finalizer covers a Server that is
garbage-collected or left running at interpreter exit; and the server process exits by itself
when the Python process that started it dies (``--parent-pid``).

Every wait is bounded: startup by ``startup_timeout`` seconds, stopping by ``stop_timeout``.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref

from qcourse.gguf.mixes import check_ftype

from .llama_server import API_KEY_ENV, bind
from .model_file import check_gguf_file, gguf_for

POLL_SECONDS = 0.1


def kill_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL after ``timeout`` s.
    The leader is reaped while waiting (an unreaped, exited leader would keep the group
    "alive" as a zombie). Does nothing if the group is already gone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.poll()
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()                                  # reap the leader once it exits
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(POLL_SECONDS)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout)


def check_port(host: str, port: int | None) -> None:
    """OSError now if ``port`` is taken on ``host`` (None = any free port: nothing to check)."""
    if port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in [1, 65535] or None for a free one, got {port!r}")
    bind(host, port).close()


class Server:
    """A llama.cpp server for ``gguf`` (or, when None, for ``model`` exported to ``quant``).

    ``host``: where it listens (127.0.0.1 by default); ``port``: None picks a free port;
    ``n_ctx``: context in tokens; ``threads``: CPU threads; ``api_key``: if set, requests need
    ``Authorization: Bearer <api_key>``; ``interrupt_requests``: llama-cpp-python's option to
    cut a stream short when another request waits (off). Bad arguments, a missing or corrupt
    GGUF file and a taken port raise here, before any process starts.
    """

    def __init__(self, gguf: str | os.PathLike | None = None, *, model: str = "qcourse-tiny",
                 quant: str = "Q4_K_M", host: str = "127.0.0.1", port: int | None = None,
                 n_ctx: int = 512, threads: int = 1, api_key: str | None = None,
                 interrupt_requests: bool = False, startup_timeout: float = 120.0,
                 stop_timeout: float = 10.0) -> None:
        self.gguf = check_gguf_file(gguf) if gguf is not None else None
        if gguf is None:
            check_ftype(quant)
        if not isinstance(n_ctx, int) or n_ctx < 2 or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"n_ctx must be an int >= 2 and threads an int >= 1, got {n_ctx!r}, "
                             f"{threads!r}")
        check_port(host, port)
        self.model, self.quant, self.host, self.port = model, quant, host, port
        self.n_ctx, self.threads, self.api_key = n_ctx, threads, api_key
        self.interrupt_requests = interrupt_requests
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.alias = model if self.gguf is None else self.gguf.stem
        self.process: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._finalizer = None

    # ---- the address clients use --------------------------------------------------------
    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:40123/v1``."""
        if self.port is None:
            raise RuntimeError("the server is not running: use `with Server(...) as server:`")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def headers(self) -> dict[str, str]:
        """The headers a client sends (the bearer key when one is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log(self) -> str:
        """What the server process printed so far (stdout and stderr)."""
        if self._folder is None:
            return ""
        return (pathlib.Path(self._folder.name) / "server.log").read_text(errors="replace")

    # ---- start and stop -----------------------------------------------------------------
    def command(self, gguf: pathlib.Path, ready_file: pathlib.Path) -> list[str]:
        """The command line of the server process."""
        cmd = [sys.executable, "-m", "qcourse.deploy.llama_server", "--model", str(gguf),
               "--alias", self.alias, "--host", self.host, "--port", str(self.port or 0),
               "--n-ctx", str(self.n_ctx), "--threads", str(self.threads),
               "--ready-file", str(ready_file), "--parent-pid", str(os.getpid())]
        return cmd + (["--interrupt-requests"] if self.interrupt_requests else [])

    def start(self) -> Server:
        """Start the process and wait until it answers ``GET /v1/models``; on any failure or
        interruption the process is stopped before the error propagates."""
        if self.process is not None:
            raise RuntimeError("this Server is already running")
        gguf = self.gguf or gguf_for(self.model, self.quant)
        self._folder = tempfile.TemporaryDirectory(prefix="qcourse-server-")
        folder = pathlib.Path(self._folder.name)
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        if self.api_key:
            env[API_KEY_ENV] = self.api_key  # the environment, not argv: others can read argv
        try:
            with open(folder / "server.log", "wb") as log:
                self.process = subprocess.Popen(
                    self.command(gguf, folder / "ready.json"), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self._finalizer = weakref.finalize(self, kill_group, self.process,
                                               self.stop_timeout)
            self.wait_ready(folder / "ready.json")
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, ready_file: pathlib.Path) -> None:
        """Poll until the ready file names the port and ``/v1/models`` answers 200; RuntimeError
        with the server's output if it exits, TimeoutError after ``startup_timeout`` s."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}:\n"
                                   f"{self.log()[-2000:]}")
            if ready_file.exists():
                self.port = json.loads(ready_file.read_text())["port"]
                if self.answers():
                    return
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"the server did not answer within {self.startup_timeout:.0f} s:\n"
                           f"{self.log()[-2000:]}")

    def answers(self) -> bool:
        """Whether ``GET /v1/models`` answers 200 now (2 s timeout)."""
        request = urllib.request.Request(f"{self.url}/models", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the process group and wait for it (idempotent)."""
        if self.process is not None:
            kill_group(self.process, self.stop_timeout)
            if self._finalizer is not None:
                self._finalizer.detach()
        self.process = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"Server({self.alias!r}, {state})"
