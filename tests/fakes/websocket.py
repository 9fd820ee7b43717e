"""The Responses API's WebSocket mode for the fakes (FakeOpenAI on /v1/responses, FakeCodex on
/backend-api/codex/responses): a real RFC 6455 server (wsproto, the library Headway uses) on the fake's own socket.

Rules it keeps, as the reference describes the service (../shared/reference/chatgpt-codex.md):

- the upgrade is a GET on the Responses path with the same credentials as HTTP (a bad key: the HTTP 401 itself);
- each text frame ``{"type": "response.create", …}`` is one turn, answered with the same event objects the SSE
  endpoint sends, one per text frame; the fake's scripted Behaviors apply per turn, as per HTTP request;
- ``previous_response_id`` resolves only to a response made on the same connection (else a 400 error frame
  ``previous_response_not_found``); the fake records the whole conversation a turn stands for
  (:attr:`SocketTurn.conversation`), so a test sees what the model would have seen;
- an error is a frame ``{"type": "error", "status": N, "error": {…}}`` and the connection stays open;
- off until ``sockets.enabled = True`` (an upgrade gets 404 like an HTTP-only server's);
- ``max_connection_seconds`` caps a connection: the first turn after it gets ``websocket_connection_limit_reached``
  and the connection is closed;
- ``interlude(turn, connection, count)`` may add frames after a turn's ``count``-th event (``codex.rate_limits``
  when usage moved during the turn).
- ``preamble(turn)`` may add frames before a turn's events (the Codex backend's ``codex.rate_limits``), or answer
  the turn with an error instead (a usage limit).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

from tests.fakes.server import Behavior, EventStream, Exchange, RecordedRequest, _Dropped

if TYPE_CHECKING:
    from tests.fakes.server import FakeServer, Route, _Handler

__all__ = ["SocketConnection", "SocketTurn", "Sockets"]


@dataclass
class SocketTurn:
    """One response.create as it arrived, and what it stood for."""

    connection: int
    frame: dict[str, Any]
    conversation: list[Any]
    response_id: str | None = None
    error: str | None = None
    size: int = 0  # the frame's payload bytes (UTF-8, uncompressed)
    wire: int = 0  # the bytes it took on the socket (frame headers, masking, compression)

    @property
    def previous_response_id(self) -> str | None:
        value = self.frame.get("previous_response_id")
        return value if isinstance(value, str) else None


@dataclass
class SocketConnection:
    number: int
    path: str
    headers: dict[str, str]
    opened: float
    closed: bool = False
    compressed: bool = False  # permessage-deflate was agreed
    responses: dict[str, list[Any]] = field(default_factory=dict)


class _SocketStream(EventStream):
    """EventStream's interface, one text frame per event."""

    def __init__(self, exchange: _SocketExchange) -> None:
        super().__init__(exchange)
        self._socket = exchange

    def event(self, name: str | None, data: Any) -> None:
        behavior = self._exchange.behavior
        if self.count and behavior.delay > 0:
            self._exchange.sleep(behavior.delay)
        payload = data if isinstance(data, dict) else {"type": name, "data": data}
        self._socket.on_event(payload)
        self._socket.send_frame(payload)
        self.count += 1
        self._socket.after_event(self.count)
        if behavior.drop_after_events is not None and self.count >= behavior.drop_after_events:
            raise _Dropped
        if behavior.hang_after_events is not None and self.count >= behavior.hang_after_events:
            self._exchange.hang()

    def raw(self, data: bytes) -> None:
        self._socket.send_text(data.decode("utf-8", errors="replace"))

    def close(self) -> None:
        """A turn ends with its last event; the connection stays open."""


class _SocketExchange(Exchange):
    def __init__(
        self, sockets: Sockets, link: _Link, request: RecordedRequest, behavior: Behavior, turn: SocketTurn
    ) -> None:
        super().__init__(sockets.fake, link.handler, request, behavior)
        self._sockets = sockets
        self._link = link
        self.turn = turn

    def after_event(self, count: int) -> None:
        interlude = self._sockets.interlude
        if interlude is not None:
            for extra in interlude(self.turn, self._link.state, count):
                self.send_frame(extra)

    def send_frame(self, payload: dict[str, Any]) -> None:
        self.send_text(json.dumps(payload, separators=(",", ":")))

    def send_text(self, text: str) -> None:
        self._link.send(TextMessage(data=text))

    def on_event(self, payload: dict[str, Any]) -> None:
        if payload.get("type") == "response.completed":
            response = payload.get("response") or {}
            response_id = str(response.get("id"))
            self.turn.response_id = response_id
            self._link.state.responses[response_id] = [
                *self.turn.conversation,
                *(response.get("output") or []),
            ]

    def open_stream(self) -> EventStream:
        if self.behavior.drop_after_events == 0:
            raise _Dropped
        return _SocketStream(self)

    def send_json(self, payload: Any, status: int = 200) -> None:
        if status < 400:
            self.send_frame({"type": "response.completed", "response": payload})
            return
        error = payload.get("error", payload) if isinstance(payload, dict) else {"message": str(payload)}
        self.turn.error = str(error.get("code") or error.get("type")) if isinstance(error, dict) else "error"
        self.send_frame({"type": "error", "status": status, "error": error})


class _Link:
    """The fake's end of one connection: wsproto on the handler's blocking socket."""

    def __init__(self, handler: _Handler, state: SocketConnection, extensions: list[Extension]) -> None:
        self.handler = handler
        self.state = state
        self._ws = Connection(ConnectionType.SERVER, extensions=extensions)
        self._write = threading.Lock()
        self.received = 0  # bytes read from the socket (frames as they travelled, compressed or not)
        self.counted = 0

    def send(self, event: Any) -> None:
        with self._write:
            self.handler.wfile.write(self._ws.send(event))
            self.handler.wfile.flush()

    def frames(self) -> Any:
        """Each text message (str), until the client closes or the connection drops."""
        parts: list[str] = []
        while True:
            try:
                data = self.handler.rfile.read1(65536)
            except OSError:
                return
            if not data:
                return
            self.received += len(data)
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        yield "".join(parts)
                        parts = []
                elif isinstance(event, BytesMessage):
                    yield event.data
                elif isinstance(event, Ping):
                    self.send(event.response())
                elif isinstance(event, CloseConnection):
                    try:
                        self.send(event.response())
                    except Exception:
                        pass
                    return

    def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            self.send(CloseConnection(code=code, reason=reason))
        except Exception:
            pass


Preamble = Callable[[SocketTurn, SocketConnection], tuple[list[dict[str, Any]], tuple[int, Any] | None]]
Interlude = Callable[[SocketTurn, SocketConnection, int], list[dict[str, Any]]]


class Sockets:
    """The WebSocket side of one fake: its connections and turns (thread-safe snapshots)."""

    def __init__(
        self,
        fake: FakeServer,
        routes: dict[str, Route],
        preamble: Preamble | None = None,
        interlude: Interlude | None = None,
    ) -> None:
        self.fake = fake
        self._routes = routes
        self._preamble = preamble
        self.interlude = interlude
        self._lock = threading.Lock()
        self._connections: list[SocketConnection] = []
        self._turns: list[SocketTurn] = []
        self._turned = threading.Condition(self._lock)
        #: Connections older than this get ``websocket_connection_limit_reached`` on their next turn.
        self.max_connection_seconds: float | None = None
        #: Off by default, like an HTTP-only server (a GET upgrade gets 404): Headway then uses HTTP, as every
        #: test written before the WebSocket mode expects. Tests of the WebSocket path turn it on.
        self.enabled = False
        #: Agree to permessage-deflate when the client offers it (the service does).
        self.deflate = True
        #: Refuse upgrades with this status even when enabled; None accepts them.
        self.refuse_status: int | None = None

    @property
    def connections(self) -> list[SocketConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def turns(self) -> list[SocketTurn]:
        with self._lock:
            return list(self._turns)

    def expire(self) -> None:
        """Make every open connection as old as the service's cap (the next turn on it is refused)."""
        with self._lock:
            for connection in self._connections:
                connection.opened = float("-inf")

    def wait_for_turns(self, count: int, timeout: float = 5.0) -> list[SocketTurn]:
        with self._turned:
            if not self._turned.wait_for(lambda: len(self._turns) >= count, timeout):
                raise TimeoutError(f"{len(self._turns)} turn(s) received, expected {count}")
            return list(self._turns)

    # -- the handler thread -------------------------------------------------------------------------------

    def accept(self, handler: _Handler, path: str, headers: dict[str, str], key_ok: bool) -> bool:
        """Serve an upgrade request on ``path``; False when the path has no WebSocket mode."""
        route = self._routes.get(path)
        if route is None:
            return False
        refusal = None if self.enabled else 404
        refusal = self.refuse_status if refusal is None else refusal
        if not key_ok or refusal is not None:
            status = 401 if not key_ok else refusal or 400
            body = json.dumps(
                {"error": {"message": "refused (fake)", "type": "invalid_request_error", "code": None}}
            ).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
            return True
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header(
            "Sec-WebSocket-Accept", generate_accept_token(headers["sec-websocket-key"].encode()).decode()
        )
        extensions: list[Extension] = []
        name, _, offer = headers.get("sec-websocket-extensions", "").partition(";")
        if self.deflate and name.strip().lower() == "permessage-deflate":
            deflate = PerMessageDeflate()
            accepted = deflate.accept(offer.strip())
            if accepted is not None and accepted is not False:
                params = "" if accepted is True else f"; {accepted}"
                handler.send_header("Sec-WebSocket-Extensions", f"permessage-deflate{params}")
                extensions.append(deflate)
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        with self._lock:
            state = SocketConnection(len(self._connections) + 1, path, headers, time.monotonic())
            self._connections.append(state)
        link = _Link(handler, state, extensions)
        state.compressed = bool(extensions)
        try:
            for frame in link.frames():
                if not self._turn(link, route, frame):
                    return True
        except _Dropped:
            pass
        finally:
            state.closed = True
        return True

    def _turn(self, link: _Link, route: Route, frame: str | bytes) -> bool:
        state = link.state
        try:
            data = json.loads(frame)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("type") != "response.create":
            link.send(TextMessage(data=_error(400, "invalid_request_error", "expected response.create")))
            return True
        body = {k: v for k, v in data.items() if k != "type"}
        new_input = body.get("input")
        items = [_user(new_input)] if isinstance(new_input, str) else list(new_input or [])
        previous = body.get("previous_response_id")
        known = state.responses.get(previous) if isinstance(previous, str) else []
        with self._lock:
            number = len(self._turns) + 1
            raw_size = len(frame.encode()) if isinstance(frame, str) else len(frame)
            turn = SocketTurn(
                state.number, body, [*(known or []), *items], size=raw_size, wire=link.received - link.counted
            )
            link.counted = link.received
            self._turns.append(turn)
            self._turned.notify_all()
        if (
            self.max_connection_seconds is not None
            and time.monotonic() - state.opened > self.max_connection_seconds
        ):
            turn.error = "websocket_connection_limit_reached"
            message = "Responses websocket connection limit reached (60 minutes). Create a new websocket connection."
            link.send(TextMessage(data=_error(400, "invalid_request_error", message, turn.error)))
            link.close(1000)
            return False
        if known is None:
            turn.error = "previous_response_not_found"
            message = f"Previous response with id '{previous}' not found."
            link.send(TextMessage(data=_error(400, "invalid_request_error", message, turn.error)))
            return True
        request = RecordedRequest(
            method="WS",
            path=state.path,
            query={},
            headers=state.headers,
            body=frame.encode() if isinstance(frame, str) else frame,
            json={**body, "stream": True},
            request_id=f"req_fake_ws{number}",
        )
        fake = self.fake
        scripted = fake.fault_for(request) if fake.fault_for is not None else None
        with fake._lock:
            behavior = scripted or (fake._queue.popleft() if fake._queue else fake.default)
        exchange = _SocketExchange(self, link, request, behavior, turn)
        if self._preamble is not None:
            frames, refusal = self._preamble(turn, state)
            for extra in frames:
                exchange.send_frame(extra)
            if refusal is not None:
                exchange.send_json(refusal[1], refusal[0])
                return True
        if behavior.hang:
            exchange.hang()
        if behavior.first_byte_delay > 0:
            exchange.sleep(behavior.first_byte_delay)
        if behavior.body is not None:
            exchange.send_json(behavior.body, behavior.status)
        elif behavior.status >= 400:
            exchange.send_error(behavior.status, behavior.error_type, behavior.error_message)
        else:
            route(exchange)
        return True


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _error(status: int, kind: str, message: str, code: str | None = None) -> str:
    error = {"type": kind, "code": code, "message": message, "param": None}
    return json.dumps({"type": "error", "status": status, "error": error})
