"""A lean mock of Anthropic's Messages API for the benchmark: one asyncio process, no framework.

    python -m benchmarks.mock_upstream --port 0     # prints its URL on the first line of stdout

``tests.fakes`` serves each connection from a thread and formats every event through several layers, which is
right for tests but would put milliseconds of its own into figures measured in tenths of a millisecond. This mock
parses just enough HTTP/1.1 (keep-alive, Content-Length bodies) and writes each SSE event as one chunked write.

Each request says how to answer in a ``"bench"`` object in its JSON body (the gateway forwards bodies unchanged):

    {"events": 20, "gap_ms": 15, "pre_gap_ms": 15}

The same object may instead end the last message's text, after ``bench=``, for gateways that drop unknown fields.

Faults, for the soak run: ``"status": 429`` (or 500, 529, …) answers with Anthropic's error object and that status
(``"retry_after": 1`` adds the header); ``"drop_after_events": 3`` closes the connection mid-stream.

A streamed answer is Anthropic's event sequence — ``message_start``, (``pre_gap_ms``), ``content_block_start``,
``ping``, ``events`` x ``content_block_delta``, ``content_block_stop``, ``message_delta``, ``message_stop`` — with
``gap_ms`` before every event after ``content_block_start``. Every event carries ``id: <seq>.<sent_ns>`` where
``sent_ns`` is ``time.monotonic_ns()`` taken just before the write; ``CLOCK_MONOTONIC`` is system-wide on Linux, so
the client in another process can subtract it from its own arrival time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MockUpstream", "main"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024
_MAX_EVENTS = 10_000
_MAX_GAP_MS = 5_000.0
_BENCH_MARK = "bench="


def _ratelimit_headers() -> bytes:
    reset = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        b"anthropic-ratelimit-requests-limit: 4000\r\n"
        b"anthropic-ratelimit-requests-remaining: 3999\r\n"
        b"anthropic-ratelimit-requests-reset: %s\r\n"
        b"anthropic-ratelimit-tokens-limit: 400000\r\n"
        b"anthropic-ratelimit-tokens-remaining: 399000\r\n"
        b"anthropic-ratelimit-tokens-reset: %s\r\n"
    ) % (reset.encode(), reset.encode())


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _number(value: Any, default: float, limit: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= limit:
        return float(value)
    return default


def _bench_in_text(request: dict[str, Any]) -> dict[str, Any]:
    """The ``bench`` object written after ``bench=`` in the last message's text: gateways that rebuild the
    request (LiteLLM) drop unknown fields but keep the text."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return {}
    text = messages[-1].get("content")
    if not isinstance(text, str) or _BENCH_MARK not in text:
        return {}
    try:
        found = json.loads(text.rsplit(_BENCH_MARK, 1)[1])
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class _Dropped(Exception):
    """The stream was cut on purpose (``drop_after_events``)."""


class _Connection(asyncio.Protocol):
    def __init__(self, server: MockUpstream) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.stream_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.stream_task is not None:
            self.stream_task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _MAX_HEAD + _MAX_BODY:
            self._close()
            return
        if not self.busy:
            self._next_request()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self._close()
            return
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, path, _ = lines[0].split(" ", 2)
        except ValueError:
            self._close()
            return
        length = 0
        keep_alive = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip() or 0)
            elif name == "connection" and value.strip().lower() == "close":
                keep_alive = False
            elif name == "transfer-encoding":
                self._close()  # the gateway and the benchmark client always send Content-Length
                return
        if length > _MAX_BODY:
            self._close()
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.server.requests += 1
        self._answer(method, path.split("?", 1)[0], body, keep_alive)

    def _answer(self, method: str, path: str, body: bytes, keep_alive: bool) -> None:
        if method != "POST" or path != "/v1/messages":
            self._send_json(
                404, {"type": "error", "error": {"type": "not_found_error", "message": path}}, keep_alive
            )
            return
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._send_json(
                400,
                {"type": "error", "error": {"type": "invalid_request_error", "message": "JSON"}},
                keep_alive,
            )
            return
        found = request.get("bench")
        bench: dict[str, Any] = found if isinstance(found, dict) else _bench_in_text(request)
        model = str(request.get("model", "claude-sonnet-4-5"))
        number = self.server.requests
        status = bench.get("status")
        if isinstance(status, int) and 400 <= status <= 599:
            after = _number(bench.get("retry_after"), -1.0, 3600.0)
            extra = b"retry-after: %s\r\n" % f"{after:g}".encode() if after >= 0 else b""
            error = {
                "type": "error",
                "error": {
                    "type": "rate_limit_error" if status == 429 else "api_error",
                    "message": "mock fault",
                },
            }
            self._send_json(status, error, keep_alive, extra)
            return
        if request.get("stream") is True:
            self.busy = True
            self.stream_task = asyncio.get_running_loop().create_task(
                self._stream(bench, model, number, keep_alive), name=f"mock-stream-{number}"
            )
            return
        message = self._message(model, number, [{"type": "text", "text": "Hello from the mock upstream."}])
        self._send_json(200, message, keep_alive)

    @staticmethod
    def _message(model: str, number: int, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": f"msg_bench_{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 8,
            },
        }

    def _send_json(self, status: int, obj: Any, keep_alive: bool, extra_headers: bytes = b"") -> None:
        if self.transport is None:
            return
        payload = _dumps(obj)
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nrequest-id: req_bench_%d\r\n%s%s%s\r\n"
            % (
                status,
                reason,
                len(payload),
                self.server.requests,
                self.server.ratelimit,
                extra_headers,
                b"" if keep_alive else b"connection: close\r\n",
            )
        )
        self.transport.write(head + payload)
        if not keep_alive:
            self._close()

    async def _stream(self, bench: dict[str, Any], model: str, number: int, keep_alive: bool) -> None:
        events = int(_number(bench.get("events"), 3, _MAX_EVENTS))
        gap = _number(bench.get("gap_ms"), 0.0, _MAX_GAP_MS) / 1000
        pre_gap = _number(bench.get("pre_gap_ms"), 0.0, _MAX_GAP_MS) / 1000
        drop_after = int(_number(bench.get("drop_after_events"), -1, _MAX_EVENTS))
        transport = self.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nrequest-id: req_bench_%d\r\n%s%s\r\n"
            % (number, self.server.ratelimit, b"" if keep_alive else b"connection: close\r\n")
        )
        seq = 0

        def send(name: bytes, data: bytes) -> None:
            nonlocal seq
            if seq == drop_after:
                transport.abort()  # a connection lost mid-stream
                raise _Dropped
            frame = b"event: %s\nid: %d.%d\ndata: %s\n\n" % (name, seq, time.monotonic_ns(), data)
            transport.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            seq += 1

        start = self._message(model, number, [])
        start["stop_reason"] = None
        start["usage"]["output_tokens"] = 1
        try:
            send(b"message_start", _dumps({"type": "message_start", "message": start}))
            if pre_gap:
                await asyncio.sleep(pre_gap)
            send(
                b"content_block_start",
                b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
            )
            tail: list[tuple[bytes, bytes]] = [(b"ping", b'{"type":"ping"}')]
            tail += [
                (
                    b"content_block_delta",
                    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token %d "}}'
                    % i,
                )
                for i in range(events)
            ]
            tail += [
                (b"content_block_stop", b'{"type":"content_block_stop","index":0}'),
                (
                    b"message_delta",
                    b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
                    b'"usage":{"output_tokens":%d}}' % max(1, events),
                ),
                (b"message_stop", b'{"type":"message_stop"}'),
            ]
            for name, data in tail:
                if gap:
                    await asyncio.sleep(gap)
                if self.transport is None:
                    return
                send(name, data)
            transport.write(b"0\r\n\r\n")
        except _Dropped:
            return
        finally:
            self.stream_task = None
            self.busy = False
        if not keep_alive:
            self._close()
        elif self.buffer:
            self._next_request()


class MockUpstream:
    """The server: counts requests, keeps its open connections so it can close them on the way out."""

    def __init__(self) -> None:
        self.connections: set[_Connection] = set()
        self.requests = 0
        self.ratelimit = _ratelimit_headers()
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", port, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection._close()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)


async def _serve(port: int) -> None:
    upstream = MockUpstream()
    bound = await upstream.start(port)
    print(f"http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await upstream.stop()
    print(f"mock upstream stopped after {upstream.requests} request(s)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mock_upstream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
