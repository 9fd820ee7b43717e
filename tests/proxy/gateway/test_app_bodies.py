"""Request bodies and slow clients at the gateway's edge: every bad body is a 400 in the route's protocol shape, a
body over the cap a 413, an unhandled error a JSON 500 with the traceback in the log file, and a client that sends
its request head or body too slowly is disconnected — without touching long streaming responses."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from proxy.gateway.protocol import GatewayHttpProtocol
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import RunningGateway

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "gpt-5", "input": "hi"}


def send(gw: RunningGateway, path: str, content: bytes, protocol: str = "anthropic") -> httpx.Response:
    headers = {**gw.headers(protocol), "content-type": "application/json"}
    return httpx.post(f"{gw.url}{path}", content=content, headers=headers, timeout=20)


def assert_shape(response: httpx.Response, path: str, status: int) -> str:
    """The error is JSON in the route's protocol shape; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return str(body["error"]["message"])
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["message"])


def log_text(gw: RunningGateway) -> str:
    for handler in logging.getLogger("headway").handlers:
        handler.flush()
    return gw.services.logs.log_file.read_text()


# ---------------------------------------------------------------- bad bodies


@pytest.mark.parametrize("path,protocol", [("/v1/messages", "anthropic"), ("/v1/responses", "openai")])
def test_deeply_nested_json_is_a_400_in_protocol_shape(gw: RunningGateway, path: str, protocol: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    message = assert_shape(send(gw, path, deep, protocol), path, 400)
    assert "nested too deeply" in message
    deep_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert "nested too deeply" in assert_shape(send(gw, path, deep_object, protocol), path, 400)
    assert (
        send(
            gw, path, json.dumps(MESSAGE if protocol == "anthropic" else RESPONSES).encode(), protocol
        ).status_code
        == 200
    )


def test_json_deep_enough_for_the_transforms_but_not_the_parser_is_a_400(gw: RunningGateway) -> None:
    # Parses (below the parser's recursion limit), then meets code that walks the body.
    gw.edit(lambda s: setattr(s.cache, "anthropic_mode", "hybrid"))
    for depth in (200, 500, 900, 990):
        nested = "[" * depth + '"x"' + "]" * depth
        body = json.dumps(
            {**MESSAGE, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        )
        body = body.replace('"text": "hi"', f'"text": "hi", "x": {nested}')
        response = send(gw, "/v1/messages", body.encode())
        assert response.status_code in (200, 400), (depth, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("path,protocol", [("/v1/messages", "anthropic"), ("/v1/chat/completions", "openai")])
def test_invalid_utf8_is_a_400(gw: RunningGateway, path: str, protocol: str) -> None:
    message = assert_shape(send(gw, path, b'{"model": "\xff\xfe"}', protocol), path, 400)
    assert "not UTF-8" in message
    assert f"refused POST {path}: bad_request — the request body is not UTF-8" in log_text(gw)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"[]", "not an array"),
        (b"1", "not a number"),
        (b'"hi"', "not a string"),
        (b"null", "not null"),
        (b"true", "not a boolean"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"a": 1} trailing', "not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_a_400(
    gw: RunningGateway, content: bytes, expected: str
) -> None:
    for path, protocol in (("/v1/messages", "anthropic"), ("/v1/responses", "openai")):
        message = assert_shape(send(gw, path, content, protocol), path, 400)
        assert expected.replace("not ", "") in message


def test_lone_surrogate_escape_is_a_400_when_the_body_is_rewritten(gw: RunningGateway) -> None:
    # Found by tests/reliability/test_bad_input.py: the cache-mode rewrite could not encode it (plain 500 before).
    gw.edit(lambda s: setattr(s.cache, "anthropic_mode", "hybrid"))
    body = json.dumps({**MESSAGE, "system": "\ud800"}).encode()
    message = assert_shape(send(gw, "/v1/messages", body), "/v1/messages", 400)
    assert "surrogate" in message
    paired = json.dumps({**MESSAGE, "system": "😀"}).encode()  # an escaped pair is fine: b'"\\ud83d\\ude00"'
    assert b"\\ud83d" in paired and send(gw, "/v1/messages", paired).status_code == 200


def test_non_ascii_header_value_is_a_400_naming_the_header(gw: RunningGateway) -> None:
    # Found by tests/reliability/test_bad_input.py: the upstream request could not be built (plain 500 before).
    headers = {**gw.headers(), "content-type": "application/json", "x-session-id": "caf\u00e9".encode()}
    response = httpx.post(f"{gw.url}/v1/messages", content=json.dumps(MESSAGE).encode(), headers=headers)
    message = assert_shape(response, "/v1/messages", 400)
    assert "'x-session-id'" in message and "not ASCII" in message


def test_chunked_body_over_the_cap_is_a_413(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.edit(lambda s: setattr(s.gateway, "max_body_mb", 1))

    def chunks() -> Iterator[bytes]:  # no content-length: the cap is enforced while reading
        yield b'{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}]}'

    refused = httpx.post(f"{gw.url}/v1/messages", content=chunks(), headers=gw.headers(), timeout=20)
    message = assert_shape(refused, "/v1/messages", 413)
    assert refused.json()["error"]["type"] == "request_too_large"
    assert "1 MB" in message and "gateway.max_body_mb" in message
    assert anthropic.requests == []
    declared = send(gw, "/v1/responses", b"x" * (1024 * 1024 + 1), "openai")
    assert assert_shape(declared, "/v1/responses", 413)
    assert send(gw, "/v1/messages", json.dumps(MESSAGE).encode()).status_code == 200


# ---------------------------------------------------------------- unhandled errors


def test_an_unhandled_error_is_a_json_500_with_the_traceback_in_the_log(
    gw: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(incoming: object) -> object:
        raise RuntimeError("boom near sk-ant-api03-" + "S" * 30)

    forwarder = gw.services.engine._forwarder
    assert forwarder is not None
    monkeypatch.setattr(forwarder, "handle", broken)
    failed = send(gw, "/v1/messages", json.dumps(MESSAGE).encode())
    message = assert_shape(failed, "/v1/messages", 500)
    assert "internal error" in message and "boom" not in message  # details stay in the log
    assert failed.headers["x-headway-error"] == "internal_error"
    openai_failed = send(gw, "/v1/responses", json.dumps(RESPONSES).encode(), "openai")
    assert assert_shape(openai_failed, "/v1/responses", 500)
    text = log_text(gw)
    assert "unhandled error answering POST /v1/messages" in text
    assert "Traceback" in text and "RuntimeError: boom near" in text
    assert "S" * 30 not in text  # the log is redacted
    monkeypatch.undo()
    assert send(gw, "/v1/messages", json.dumps(MESSAGE).encode()).status_code == 200


def test_an_error_mid_stream_is_logged_and_breaks_the_stream(
    gw: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.responses import StreamingResponse

    async def events() -> AsyncIterator[bytes]:
        yield b"event: message_start\ndata: {}\n\n"
        raise RuntimeError("broke after the first event")

    async def streaming(incoming: object) -> object:
        return StreamingResponse(events(), media_type="text/event-stream")

    forwarder = gw.services.engine._forwarder
    assert forwarder is not None
    monkeypatch.setattr(forwarder, "handle", streaming)
    with pytest.raises(httpx.RemoteProtocolError):  # a broken stream, never a clean (truncated) end
        with httpx.stream(
            "POST", f"{gw.url}/v1/messages", json=MESSAGE, headers=gw.headers(), timeout=10
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_bytes():
                pass
    assert "RuntimeError: broke after the first event" in log_text(gw)
    monkeypatch.undo()
    assert send(gw, "/v1/messages", json.dumps(MESSAGE).encode()).status_code == 200


def test_an_error_in_the_guard_is_a_json_500(gw: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise KeyError("keychain went away")

    guard = gw.services.engine._server._server.config.loaded_app  # type: ignore[union-attr]
    while not hasattr(guard, "hooks"):
        guard = guard.app
    monkeypatch.setattr(guard.hooks, "access_key", broken)
    failed = send(
        gw, "/v1/chat/completions", json.dumps({"model": "gpt-5", "messages": []}).encode(), "openai"
    )
    assert assert_shape(failed, "/v1/chat/completions", 500)
    assert "KeyError: 'keychain went away'" in log_text(gw)


# ---------------------------------------------------------------- slow clients


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GatewayHttpProtocol, "head_timeout", 0.5)
    monkeypatch.setattr(GatewayHttpProtocol, "body_timeout", 1.0)


def connect(gw: RunningGateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closed ``sock`` (read returns EOF or reset), failing after ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit}s")
    return time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length (a response may arrive in several reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        body += chunk
    assert len(body) == length, "more bytes than the response announced"
    return head + b"\r\n\r\n" + body


def test_silent_and_slow_request_heads_are_closed(gw: RunningGateway, short_deadlines: None) -> None:
    silent = connect(gw)
    slow = connect(gw)
    slow.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    try:
        for _ in range(3):  # a header line now and then resets nothing
            time.sleep(0.2)
            slow.sendall(b"X-Slow: 1\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # already closed: a slow machine let the deadline pass early
    assert closed_after(slow, 5.0) + (time.monotonic() - started) >= 0.4
    assert closed_after(silent, 5.0) < 5.0
    silent.close()
    slow.close()
    assert httpx.get(f"{gw.url}/health").status_code == 200


def test_a_slow_head_on_a_kept_alive_connection_is_closed(gw: RunningGateway, short_deadlines: None) -> None:
    sock = connect(gw)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(0.8)  # idle between requests is the keep-alive timeout's business, not the head deadline's
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")  # still open after idling past the head deadline
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    assert closed_after(sock, 5.0) < 5.0
    sock.close()


def test_a_trickling_body_is_closed(
    gw: RunningGateway, short_deadlines: None, anthropic: FakeAnthropic
) -> None:
    sock = connect(gw)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {gw.key}\r\n"
        "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    sock.sendall(head.encode())
    started = time.monotonic()
    try:
        for _ in range(40):
            sock.sendall(b" ")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed_after(sock, 5.0) + (time.monotonic() - started) >= 0.9
    sock.close()
    assert anthropic.requests == []
    assert "the request body did not arrive within" in log_text(gw)


def test_long_streams_and_pipelined_requests_outlive_the_deadlines(
    gw: RunningGateway, short_deadlines: None, anthropic: FakeAnthropic
) -> None:
    anthropic.enqueue(Behavior(chunks=8, delay=0.35))  # about 3 s, several times both deadlines
    streamed = httpx.post(
        f"{gw.url}/v1/messages", json={**MESSAGE, "stream": True}, headers=gw.headers(), timeout=20
    )
    assert streamed.status_code == 200
    assert "event: message_stop" in streamed.text and streamed.text.count("content_block_delta") >= 8

    anthropic.enqueue(Behavior(first_byte_delay=2.0))
    body = json.dumps(MESSAGE).encode()
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {gw.key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = connect(gw)
    sock.sendall(request + request + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    received = b""
    sock.settimeout(15)
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert received.count(b"HTTP/1.1 200") == 3, received[:2000]
    assert json.loads(received.rsplit(b"\r\n\r\n", 1)[1])["status"] == "ok"  # in order, the health check last
    assert len(anthropic.requests) == 3


def test_a_huge_request_head_is_a_431(gw: RunningGateway) -> None:
    sock = connect(gw)
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        for _ in range(20):
            sock.sendall(b"X-Filler: " + b"a" * 8000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(5)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["type"] == "error" and "request line and headers" in body["error"]["message"]
    assert httpx.get(f"{gw.url}/health").status_code == 200


def test_http_1_0_request_is_served_and_closed(gw: RunningGateway) -> None:
    sock = connect(gw)
    sock.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer
