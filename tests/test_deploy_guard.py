"""The request guard in front of the server: client errors get a 4xx and a clear message, good
requests reach the app unchanged. Runs the ASGI middleware on a recording app (no model)."""
import asyncio
import json

import httpx
import pytest

from qcourse.deploy.guard import (ClientError, RequestGuard, check_context, check_max_tokens,
                                  check_model, parse_json_object)


class Recorder:
    """An ASGI app that answers 200 with what it received."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        self.calls.append((scope["path"], body, headers.get(b"content-type")))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


def schema(body):
    if not isinstance(body.get("prompt", ""), (str, list)):
        raise ValueError("prompt must be a string")


def post(app, path, content, headers=None):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=content, headers=headers or {})
    return asyncio.run(go())


def get(app, path, headers=None):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers or {})
    return asyncio.run(go())


def guarded(api_key=None, n_ctx=32, limit=1 << 20):
    inner = Recorder()
    count = lambda path, body: len(str(body.get("prompt", "")).split())  # noqa: E731 one token/word
    return RequestGuard(inner, model="tiny", n_ctx=n_ctx, count_tokens=count,
                        schemas={"/v1/completions": schema}, api_key=api_key,
                        max_body_bytes=limit), inner


def error(response):
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.parametrize("content, status, code", [
    (b'{"prompt": "a b", ', 400, "invalid_json"),                  # malformed JSON
    (b"[1, 2]", 400, "invalid_json"),                             # not an object
    (b"\xff\xfe", 400, "invalid_json"),                           # not UTF-8
    (b'{"prompt": "a", "max_tokens": -5}', 400, "invalid_max_tokens"),
    (b'{"prompt": "a", "max_tokens": 0}', 400, "invalid_max_tokens"),
    (b'{"prompt": "a", "max_tokens": "8"}', 400, "invalid_max_tokens"),
    (b'{"prompt": "a", "max_tokens": true}', 400, "invalid_max_tokens"),
    (b'{"prompt": "a", "model": "gpt-4"}', 404, "model_not_found"),
    (b'{"prompt": 5}', 400, "invalid_request"),                   # the schema says no
    (json.dumps({"prompt": "w " * 40}).encode(), 400, "context_length_exceeded"),
    (json.dumps({"prompt": "w " * 20, "max_tokens": 13}).encode(), 400, "context_length_exceeded"),
])
def test_bad_completion_requests_get_a_4xx_and_never_reach_the_app(content, status, code):
    app, inner = guarded()
    response = post(app, "/v1/completions", content)
    assert error(response) == (status, code)
    assert response.json()["error"]["message"]            # says what was wrong
    assert inner.calls == []


@pytest.mark.parametrize("content", [b'{"max_tokens": 4}', b'{"messages": []}',
                                     b'{"messages": "hi"}'])
def test_a_chat_request_needs_messages(content):
    app, inner = guarded()
    assert error(post(app, "/v1/chat/completions", content)) == (400, "invalid_request")
    ok = post(app, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}]}')
    assert ok.status_code == 200 and len(inner.calls) == 1


def test_a_good_request_reaches_the_app_with_its_body_and_a_json_content_type():
    app, inner = guarded()
    body = b'{"prompt": "a b c", "max_tokens": 4, "model": "tiny"}'
    response = post(app, "/v1/completions", body)       # httpx sends no content-type for bytes
    assert response.status_code == 200
    assert inner.calls == [("/v1/completions", body, b"application/json")]


def test_the_prompt_may_fill_the_context_exactly():
    app, inner = guarded(n_ctx=32)
    assert post(app, "/v1/completions", json.dumps({"prompt": "w " * 28, "max_tokens": 4}).encode()
                ).status_code == 200                                       # 28 + 4 = 32


def test_the_api_key_is_required_on_every_path_when_set():
    app, inner = guarded(api_key="s3cret")
    good = {"Authorization": "Bearer s3cret"}
    assert error(get(app, "/v1/models")) == (401, "invalid_api_key")
    assert error(get(app, "/v1/models", {"Authorization": "Bearer wrong"})) == (401, "invalid_api_key")
    assert error(get(app, "/v1/models", {"Authorization": "s3cret"})) == (401, "invalid_api_key")
    assert error(post(app, "/v1/completions", b'{"prompt": "a"}')) == (401, "invalid_api_key")
    assert get(app, "/v1/models", good).status_code == 200
    assert post(app, "/v1/completions", b'{"prompt": "a"}', good).status_code == 200
    assert len(inner.calls) == 2


def test_an_oversized_body_is_refused():
    app, inner = guarded(limit=100)
    response = post(app, "/v1/completions", json.dumps({"prompt": "x" * 200}).encode())
    assert error(response) == (413, "request_too_large") and inner.calls == []


def test_other_paths_pass_through_unchecked():
    app, inner = guarded()
    assert post(app, "/extras/tokenize", b"not json").status_code == 200
    assert inner.calls[0][1] == b"not json"


def test_the_checks_alone():
    assert parse_json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ClientError, match="line 1, column 7"):
        parse_json_object(b'{"a": }')
    assert check_max_tokens({}) is None and check_max_tokens({"max_tokens": 7}) == 7
    check_model({"model": "tiny"}, "tiny")
    check_model({}, "tiny")
    check_context(31, None, 32)                           # 31 + 1 generated token = 32
    with pytest.raises(ClientError) as info:
        check_context(30, 5, 32)
    assert info.value.status == 400 and "35" in info.value.message and "32" in info.value.message
    assert json.loads(info.value.body())["error"]["type"] == "invalid_request_error"
