"""The front door of the course's server: client errors answered with 4xx and a clear message.

llama-cpp-python's server answers a malformed JSON body or ``"max_tokens": -5`` with **500**
(its route handler catches request-validation errors with everything else), accepts any model
name, and fails a streamed request whose prompt is too long only after the ``200`` headers have
gone out. :class:`RequestGuard` is an ASGI middleware placed in front of it that checks every
request first and answers the way the OpenAI API does::

    {"error": {"message": "...", "type": "invalid_request_error", "param": ..., "code": ...}}

=====================================  ======  ============================
request                                status  code
=====================================  ======  ============================
no or wrong ``Authorization: Bearer``  401     ``invalid_api_key``
body larger than ``max_body_bytes``    413     ``request_too_large``
body that is not a JSON object         400     ``invalid_json``
schema error; chat without messages    400     ``invalid_request``
``max_tokens`` < 1                     400     ``invalid_max_tokens``
a model this server does not serve     404     ``model_not_found``
prompt + max_tokens > context          400     ``context_length_exceeded``
=====================================  ======  ============================

A request that passes is handed on unchanged (its body replayed), so the server behind never
sees a bad one. The guard is plain ASGI with injected checks (``schemas``, ``count_tokens``): it
imports no web framework and no model, and its tests need neither.
"""
from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

GUARDED = ("/v1/completions", "/v1/chat/completions")
MAX_BODY_BYTES = 1 << 20

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class ClientError(Exception):
    """A request the server refuses: HTTP ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param

    def body(self) -> bytes:
        error = {"message": self.message, "type": "invalid_request_error", "param": self.param,
                 "code": self.code}
        return json.dumps({"error": error}).encode()


def parse_json_object(raw: bytes) -> dict:
    """The request body as a dict, or ClientError 400 saying where the JSON breaks."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ClientError(400, "invalid_json", f"the request body is not UTF-8 text: {err}") from err
    except json.JSONDecodeError as err:
        raise ClientError(400, "invalid_json", f"the request body is not valid JSON: {err.msg} "
                          f"(line {err.lineno}, column {err.colno})") from err
    if not isinstance(body, dict):
        raise ClientError(400, "invalid_json", "the request body must be a JSON object, got "
                          f"{type(body).__name__}")
    return body


def check_max_tokens(body: Mapping) -> int | None:
    """``max_tokens`` if absent/None or a positive integer, else ClientError 400."""
    value = body.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError(400, "invalid_max_tokens", f"max_tokens must be a positive integer "
                          f"(the most tokens to generate), got {value!r}", "max_tokens")
    return value


def check_model(body: Mapping, served: str) -> None:
    """ClientError 404 unless ``model`` is absent or the one model this server serves."""
    model = body.get("model")
    if model is not None and model != served:
        raise ClientError(404, "model_not_found", f"the model {model!r} does not exist on this "
                          f"server; it serves {served!r} (GET /v1/models lists it)", "model")


def check_messages(body: Mapping) -> None:
    """ClientError 400 unless a chat body has a non-empty ``messages`` list (without one,
    llama-cpp-python renders an empty conversation and generates until the context is full)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ClientError(400, "invalid_request", "a chat request needs 'messages': a non-empty "
                          "list of {'role': ..., 'content': ...}", "messages")


def check_context(prompt_tokens: int, max_tokens: int | None, n_ctx: int,
                  param: str = "prompt") -> None:
    """ClientError 400 unless the prompt plus ``max_tokens`` (at least one token when not
    given) fits the context of ``n_ctx`` tokens."""
    wanted = prompt_tokens + (max_tokens or 1)
    if wanted > n_ctx:
        raise ClientError(400, "context_length_exceeded", f"this model's context is {n_ctx} "
                          f"tokens, but the request needs {wanted} ({prompt_tokens} in the prompt, "
                          f"{max_tokens or 1} to generate); shorten the prompt or max_tokens",
                          param)


def bearer_ok(headers: list[tuple[bytes, bytes]], api_key: str) -> bool:
    """Whether the headers carry ``Authorization: Bearer <api_key>`` (constant-time compare)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), api_key)
    return False


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; ClientError 413 past ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ClientError(413, "request_too_large", f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then defers to the real one (disconnects)."""
    sent = False

    async def again() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def as_json_request(scope: Scope) -> Scope:
    """``scope`` with its content-type set to JSON: the body was just parsed as JSON, and the
    framework behind reads a body as JSON only when the header says so (curl's default
    ``application/x-www-form-urlencoded`` would otherwise reach it as bytes, a 500)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
    return dict(scope, headers=headers + [(b"content-type", b"application/json")])


def describe_invalid(err: ValueError) -> str:
    """A one-line reason from a validation error (pydantic's ``errors()`` when present)."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                         for e in errors())
    return str(err)


async def send_error(send: Send, error: ClientError) -> None:
    body = error.body()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: checks each request (see the module docstring), then calls ``app``.

    ``model``: the one model id served; ``n_ctx``: the context in tokens; ``count_tokens(path,
    body)``: prompt tokens of a completion or chat body; ``schemas``: path -> a callable that
    raises ``ValueError`` (pydantic's ``ValidationError`` is one) for a body the server's schema
    rejects; ``api_key``: if set, every request needs ``Authorization: Bearer <api_key>``.
    """

    def __init__(self, app, *, model: str, n_ctx: int,
                 count_tokens: Callable[[str, dict], int] | None = None,
                 schemas: Mapping[str, Callable[[dict], Any]] | None = None,
                 api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES):
        self.app, self.model, self.n_ctx = app, model, n_ctx
        self.count_tokens, self.schemas = count_tokens, dict(schemas or {})
        self.api_key, self.max_body_bytes = api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            if self.api_key is not None and not bearer_ok(scope.get("headers", []), self.api_key):
                raise ClientError(401, "invalid_api_key", "missing or wrong API key: send the "
                                  "header 'Authorization: Bearer <key>'")
            if scope.get("method") == "POST" and scope.get("path") in GUARDED:
                raw = await read_body(receive, self.max_body_bytes)
                self.check(scope["path"], parse_json_object(raw))
                scope, receive = as_json_request(scope), replay(raw, receive)
        except ClientError as error:
            return await send_error(send, error)
        await self.app(scope, receive, send)

    def check(self, path: str, body: dict) -> None:
        """Every check of one completion/chat body; ClientError at the first that fails."""
        max_tokens = check_max_tokens(body)
        check_model(body, self.model)
        if path.endswith("/chat/completions"):
            check_messages(body)
        schema = self.schemas.get(path)
        if schema is not None:
            try:
                schema(body)
            except ValueError as err:
                raise ClientError(400, "invalid_request",
                                  f"invalid request: {describe_invalid(err)}") from err
        if self.count_tokens is not None:
            check_context(self.count_tokens(path, body), max_tokens, self.n_ctx,
                          "messages" if path.endswith("/chat/completions") else "prompt")
