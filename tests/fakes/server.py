"""The shared base of the fake upstreams: a real HTTP/1.1 server on 127.0.0.1, run in a thread.

A fake records every request, answers each routed request with the next scripted `Behavior` (FIFO) or, when the
queue is empty, with its default behaviour, and writes streamed events one by one (write + flush each), so timing,
keep-alive pooling, dropped connections and hangs are all real on the wire.

Order of checks for one request: record it → unknown route: 404 → `valid_keys` set and the key is not in it: 401
(neither consumes a behaviour) → the behaviour: `fault_for(request)` if set and not None, else the next queued one,
else the default → `hang` / `first_byte_delay` → `raw_stream` set: sent as an event stream → `body` set: sent
verbatim with `status` → `status >= 400`: the provider's error object → the route's handler.

Provider subclasses (`FakeAnthropic`, `FakeOpenAI`) supply the routes, the error-object shape, the request-id header
and where the API key comes from.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.http_base import LocalHTTPServer, read_request_body

__all__ = [
    "DEFAULT_TEXT",
    "Behavior",
    "EventStream",
    "Exchange",
    "FakeServer",
    "RecordedRequest",
    "Route",
    "ToolCall",
    "deep_merge",
    "split_text",
]

logger = logging.getLogger("tests.fakes")

DEFAULT_TEXT = "Hello from the fake"
HANG_LIMIT = 60.0


@dataclass(frozen=True)
class ToolCall:
    """Answer with one tool call instead of text."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Behavior:
    """How the fake answers one request. Every knob is optional; `Behavior()` is a plain successful answer.

    `body` (JSON-able, or bytes sent as is) replaces whatever the route would answer, with `status`; otherwise
    `status >= 400` answers with the provider's error object (`error_type`, `error_message`).
    Streaming knobs (`chunks`, `delay`, `in_stream_error*`, `drop_after_events`) apply when the request streams.
    A non-streamed request with `drop_after_events` set gets its connection closed without any response.
    `in_stream_error_raw` (OpenAI Responses only) sends a bare `error` event instead of `response.failed`.
    `usage` is deep-merged into the protocol's default usage object (so give it in that protocol's shape).
    `hang` holds the request before any byte of the answer; `hang_after_events` holds a stream after that many
    events (until the client gives up, the server stops or `HANG_LIMIT` seconds pass; then the connection drops).
    `raw_stream` answers 200 `text/event-stream` with exactly these bytes (malformed SSE), streamed or not.
    `content_gate(i)` is called before content event i (1-based: text or tool-call deltas) of a streamed answer and
    may block: a test paces the stream with it, e.g. until it has received event i-1 through the gateway.
    `one_write` sends a streamed answer's events in one write at its end, as one network read often delivers a short
    answer (the first content event and everything after it together).
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    body: Any = None
    text: str = DEFAULT_TEXT
    chunks: int = 3
    delay: float = 0.0
    first_byte_delay: float = 0.0
    in_stream_error: str | None = None
    in_stream_error_after_content: bool = False
    in_stream_error_raw: bool = False
    drop_after_events: int | None = None
    usage: Mapping[str, Any] | None = None
    tool_call: ToolCall | None = None
    hang: bool = False
    hang_after_events: int | None = None
    raw_stream: bytes | None = None
    content_gate: Callable[[int], None] | None = None
    one_write: bool = False

    def replace(self, **changes: Any) -> Behavior:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived. `headers` keys are lower-cased; repeated headers are joined with ", "."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any | None
    request_id: str

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True


class _Dropped(Exception):
    """Close the connection abruptly, without finishing the response."""


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into exactly `parts` pieces of near-equal length (pieces are empty when text is short)."""
    parts = max(1, parts)
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class EventStream:
    """A chunked `text/event-stream` response; each event is written and flushed on its own.

    Sleeps `behavior.delay` before every event after the first, and closes the connection abruptly once
    `behavior.drop_after_events` events have been written.
    """

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._handler = exchange.handler
        self._chunked = exchange.handler.request_version != "HTTP/1.0"
        self._pending: list[bytes] | None = [] if exchange.behavior.one_write else None
        self.count = 0

    def event(self, name: str | None, data: Any) -> None:
        """Write `event: name` + `data: json` (or only `data:` when name is None; a str is sent verbatim)."""
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        behavior = self._exchange.behavior
        if self.count and behavior.delay > 0:
            self._exchange.sleep(behavior.delay)
        self._write(frame.encode())
        self.count += 1
        if behavior.drop_after_events is not None and self.count >= behavior.drop_after_events:
            self._flush_pending()  # with one_write: the events, then the connection's end, in one go
            raise _Dropped
        if behavior.hang_after_events is not None and self.count >= behavior.hang_after_events:
            self._exchange.hang()

    def raw(self, data: bytes) -> None:
        """Write bytes as they are (malformed streams)."""
        self._write(data)

    def close(self) -> None:
        """End the response properly (the terminating chunk)."""
        self._flush_pending()
        if self._chunked:
            self._handler.wfile.write(b"0\r\n\r\n")
            self._handler.wfile.flush()
        else:
            self._handler.close_connection = True

    def _flush_pending(self) -> None:
        if self._pending:
            pending, self._pending = b"".join(self._pending), None
            self._write(pending)

    def _write(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.append(data)
            return
        wfile = self._handler.wfile
        if self._chunked:
            wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            wfile.write(data)
        wfile.flush()


class Exchange:
    """One request being answered: what arrived, which behaviour applies, and ways to write the answer."""

    def __init__(
        self, server: FakeServer, handler: _Handler, request: RecordedRequest, behavior: Behavior
    ) -> None:
        self.server = server
        self.handler = handler
        self.request = request
        self.behavior = behavior

    @property
    def number(self) -> str:
        """This request's ordinal ("7" for req_fake_7), for building ids that match the request id."""
        return self.request.request_id.removeprefix("req_fake_")

    @property
    def body(self) -> dict[str, Any]:
        """The request's JSON object ({} when the body was not a JSON object)."""
        return self.request.json if isinstance(self.request.json, dict) else {}

    def sleep(self, seconds: float) -> None:
        """Sleep, but give up (dropping the connection) as soon as the server stops."""
        if self.server._stopping.wait(seconds):
            raise _Dropped

    def hang(self) -> NoReturn:
        """Write nothing more until the client closes the connection or the server stops, then drop it."""
        connection = self.handler.connection
        deadline = time.monotonic() + HANG_LIMIT
        while not self.server._stopping.wait(0.05) and time.monotonic() < deadline:
            try:
                if connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    break  # the client closed its end
            except BlockingIOError:
                continue
            except OSError:
                break
        raise _Dropped

    def drop(self) -> NoReturn:
        """Close the connection abruptly, without answering."""
        raise _Dropped

    def send_json(self, payload: Any, status: int = 200) -> None:
        body = payload if isinstance(payload, bytes) else _dumps(payload)
        self._start(status, "application/json")
        self.handler.send_header("Content-Length", str(len(body)))
        self.handler.end_headers()
        if self.request.method != "HEAD":
            self.handler.wfile.write(body)
        self.handler.wfile.flush()

    def send_error(self, status: int, error_type: str | None = None, message: str | None = None) -> None:
        """The provider's error object."""
        error_type = error_type or self.server.default_error_type(status)
        message = message or f"Fake {error_type} (HTTP {status})"
        self.send_json(self.server.error_body(status, error_type, message), status)

    def open_stream(self) -> EventStream:
        if self.handler.request_version == "HTTP/1.0":
            self.handler.close_connection = True  # no chunked encoding: the end of the body is the close
        self._start(200, "text/event-stream; charset=utf-8")
        self.handler.send_header("Cache-Control", "no-cache")
        if self.handler.request_version != "HTTP/1.0":
            self.handler.send_header("Transfer-Encoding", "chunked")
        self.handler.end_headers()
        self.handler.wfile.flush()
        if self.behavior.drop_after_events == 0:
            raise _Dropped
        return EventStream(self)

    def _start(self, status: int, content_type: str) -> None:
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header(self.server.request_id_header, self.request.request_id)
        if self.behavior.retry_after is not None:
            handler.send_header("retry-after", _format_seconds(self.behavior.retry_after))
        for name, value in self.behavior.headers.items():
            handler.send_header(name, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")


Route = Callable[[Exchange], None]


class FakeServer:
    """Base of the fakes. Use as a context manager, or `start()` / `stop()`.

    `default` answers whenever the scripted queue (`enqueue`) is empty. `valid_keys`, when given, turns on the
    key check: a request whose key (see `api_key`) is not in it gets a 401 in the provider's shape.
    `keep_requests` bounds how many recorded requests are kept (long benchmark runs); None keeps all.
    """

    request_id_header: ClassVar[str] = "request-id"
    auth_error_type: ClassVar[str] = "authentication_error"
    thread_name: ClassVar[str] = "fake-upstream"

    def __init__(
        self,
        *,
        default: Behavior | None = None,
        valid_keys: Iterable[str] | None = None,
        port: int = 0,
        keep_requests: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.default = default or Behavior()
        self.tls = tls  # a server context: HTTPS (the handshake runs on the connection's own thread)
        self.valid_keys = frozenset(valid_keys) if valid_keys is not None else None
        self._port = port
        self._lock = threading.Lock()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=keep_requests)
        self._received = 0
        self._queue: collections.deque[Behavior] = collections.deque()
        self._recorded = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._routes: dict[tuple[str, str], Route] = {}
        # Per-request faults, checked before the queue: return a Behavior for this request, or None for the usual.
        self.fault_for: Callable[[RecordedRequest], Behavior | None] | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- provider hooks -------------------------------------------------------------------------------------

    def routes(self) -> Mapping[tuple[str, str], Route]:
        """(method, path) → handler. Subclasses answer here."""
        return {}

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def default_error_type(self, status: int) -> str:
        raise NotImplementedError

    def api_key(self, request: RecordedRequest) -> str | None:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._routes = dict(self.routes())
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, wake sleeping / hanging handlers, close every open connection, join — all bounded."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join(max(0.0, deadline - time.monotonic()))
        if not httpd.wait_idle(max(0.0, deadline - time.monotonic())):
            logger.warning("%s: connection threads still running after stop()", type(self).__name__)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- scripting and recording -----------------------------------------------------------------------------

    def enqueue(self, *behaviors: Behavior) -> None:
        """Script the next responses, first in first out; the default answers once they are used up."""
        with self._lock:
            self._queue.extend(behaviors)

    def reset(self) -> None:
        """Forget recorded requests and scripted behaviours (the default stays)."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("no request received")
            return self._requests[-1]

    @property
    def request_count(self) -> int:
        """How many requests were received since start (not reduced by `reset()` or `keep_requests`)."""
        with self._lock:
            return self._received

    @property
    def open_connections(self) -> int:
        """How many TCP connections are open now (a client that gave up on a stream closes its one)."""
        return self._httpd.open_connections if self._httpd is not None else 0

    @property
    def connection_count(self) -> int:
        """How many TCP connections were accepted (to check that a client pools and reuses them)."""
        return self._httpd.accepted if self._httpd is not None else 0

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests were received; raise TimeoutError otherwise."""
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} request(s) received, expected {count}")
            return list(self._requests)

    # -- request handling (handler threads) ----------------------------------------------------------------

    def upgrade(self, handler: _Handler) -> bool:
        """Serve a WebSocket upgrade request (the fakes with a WebSocket mode override it); False: not served."""
        return False

    def _handle(self, handler: _Handler) -> None:
        if handler.headers.get("upgrade", "").lower() == "websocket" and self.upgrade(handler):
            return
        request = self._record(handler)
        exchange = Exchange(self, handler, request, Behavior())
        if request.method == "HEAD" and request.path == "/":
            exchange.send_json(b"")
            return
        route = self._routes.get((request.method, request.path))
        if route is None:
            exchange.send_error(
                404, self.default_error_type(404), f"No route for {request.method} {request.path}"
            )
            return
        if self.valid_keys is not None and self.api_key(request) not in self.valid_keys:
            exchange.send_error(401, self.auth_error_type, "Invalid API key (fake)")
            return
        scripted = self.fault_for(request) if self.fault_for is not None else None
        with self._lock:
            if scripted is None:
                scripted = self._queue.popleft() if self._queue else self.default
            exchange.behavior = scripted
        behavior = exchange.behavior
        if behavior.hang:
            exchange.hang()
        if behavior.first_byte_delay > 0:
            exchange.sleep(behavior.first_byte_delay)
        if behavior.raw_stream is not None:
            stream = exchange.open_stream()
            stream.raw(behavior.raw_stream)
            stream.close()
            return
        if behavior.body is not None:
            exchange.send_json(behavior.body, behavior.status)
            return
        if behavior.status >= 400:
            exchange.send_error(behavior.status, behavior.error_type, behavior.error_message)
            return
        route(exchange)

    def _record(self, handler: _Handler) -> RecordedRequest:
        parts = urlsplit(handler.path)
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = read_request_body(handler)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            self._received += 1
            request = RecordedRequest(
                method=handler.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers=headers,
                body=body,
                json=parsed,
                request_id=f"req_fake_{self._received}",
            )
            self._requests.append(request)
            self._recorded.notify_all()
        return request


class _HTTPServer(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], fake: FakeServer) -> None:
        self.fake = fake
        self.accepted = 0
        self._connections: set[socket.socket] = set()
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.fake.tls is not None:
            conn = self.fake.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def track(self, conn: socket.socket) -> None:
        with self._idle:
            self.accepted += 1
            self._connections.add(conn)
            if self.fake._stopping.is_set():
                _shutdown(conn)

    @property
    def open_connections(self) -> int:
        with self._idle:
            return len(self._connections)

    def untrack(self, conn: socket.socket) -> None:
        with self._idle:
            self._connections.discard(conn)
            self._idle.notify_all()

    def close_connections(self) -> None:
        with self._idle:
            for conn in self._connections:
                _shutdown(conn)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug(
            "%s: error on connection from %s", type(self.fake).__name__, client_address, exc_info=True
        )


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Without it, Nagle + delayed ACK stall every small write that follows another by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _dispatch(self) -> None:
        try:
            self.server.fake._handle(self)
        except _Dropped:
            self.close_connection = True
            _shutdown(self.connection)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, type(self.server.fake).__name__, *args)
