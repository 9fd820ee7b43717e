"""The gateway's HTTP/1.1 connections: uvicorn's httptools protocol, with deadlines and a size cap for the client's
side of a request.

uvicorn bounds only the idle time *between* requests (``timeout_keep_alive``). A client that opens a socket and sends
nothing, or sends a request head or body a byte at a time (slowloris), holds a connection — and its buffers —
forever, and the httptools parser accepts request heads of any size. uvicorn has no option for either, and an ASGI
app cannot see a request before its head is complete, so the fix belongs in the connection protocol (``http=`` in
``uvicorn.Config`` accepts a protocol class):

- **head deadline** (:data:`REQUEST_HEAD_TIMEOUT`): from the connection opening, or from the first byte of a
  later request on a kept-alive connection, to the end of the request head. Agents on loopback send the head in
  one packet; past the deadline the connection is closed without an answer (there is no request to answer yet).
- **body deadline** (:data:`REQUEST_BODY_TIMEOUT`): from the end of the head to the end of the body, whatever
  the pace. 64 MB (the largest body accepted) takes well under a second on loopback and about 50 s at 10 Mbit/s.
  Past the deadline the connection is closed; the route sees a disconnect.
- **head size** (:data:`MAX_REQUEST_HEAD_BYTES`): request line plus headers; larger gets 431 in the JSON error shape.
- **unparseable HTTP** gets uvicorn's 400, but in the JSON error shape too.

Upgrades to WebSocket (the Responses API's socket, ``proxy/gateway/websocket.py``) go to uvicorn's wsproto protocol,
which :class:`WSProtocolOnUpgrade` imports (wsproto with it) on the first upgrade, not when the server starts.

Neither deadline runs while the gateway itself is the slow side: the body deadline ends when the body is complete,
before any response is streamed, so long-lived streaming responses are untouched; a pipelined request waiting
behind a response still being served gets its deadline postponed, not enforced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE as _STATUS_LINE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.gateway.errors import Protocol, error_body
from proxy.wire.errors import BadRequest, HeadwayError, RequestHeadTooLarge

__all__ = [
    "MAX_REQUEST_HEAD_BYTES",
    "REQUEST_BODY_TIMEOUT",
    "REQUEST_HEAD_TIMEOUT",
    "GatewayHttpProtocol",
    "WSProtocolOnUpgrade",
]

log = logging.getLogger("headway.gateway")

REQUEST_HEAD_TIMEOUT = 10.0
REQUEST_BODY_TIMEOUT = 60.0
MAX_REQUEST_HEAD_BYTES = 64 * 1024


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the deadlines and head cap above (class attributes, so tests can shorten
    them)."""

    head_timeout: float = REQUEST_HEAD_TIMEOUT
    body_timeout: float = REQUEST_BODY_TIMEOUT
    max_head_bytes: int = MAX_REQUEST_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_too_large = False

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_too_large and not self.transport.is_closing():
            self._refuse_head()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_deadline is None:
            self._arm_head()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        if not self._head_too_large:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if not self._head_too_large:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head()
        if self._head_too_large:
            return  # never start the app for it; data_received answers 431
        before = self.cycle
        super().on_headers_complete()
        if (
            self.cycle is not before
        ):  # a request to serve (not a protocol upgrade, which hands the socket over)
            self._arm_body()

    def on_body(self, body: bytes) -> None:
        if self._head_too_large:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body()
        if self._head_too_large:
            return
        super().on_message_complete()

    # ------------------------------------------------------------ deadlines

    def _arm_head(self) -> None:
        self._cancel_head()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_expired)

    def _cancel_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _arm_body(self) -> None:
        self._cancel_body()
        self._body_deadline = self.loop.call_later(self.body_timeout, self._body_expired)

    def _cancel_body(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _head_expired(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head()  # the partial head belongs to a pipelined request behind a response still streaming
            return
        log.info(
            "closed a connection from %s: no complete request head within %.0fs",
            self._peer(),
            self.head_timeout,
        )
        self.transport.close()

    def _body_expired(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing():
            return
        if self.pipeline:
            self._arm_body()  # the body belongs to a request queued behind an earlier response
            return
        log.info(
            "closed a connection from %s: the request body did not arrive within %.0fs",
            self._peer(),
            self.body_timeout,
        )
        self.transport.close()

    # ------------------------------------------------------------ head size

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large = True

    def _refuse_head(self) -> None:
        log.info("refused a request from %s: request head over %d bytes", self._peer(), self.max_head_bytes)
        self._answer_and_close(
            RequestHeadTooLarge(
                f"the request line and headers are larger than the gateway's limit of {self.max_head_bytes // 1024} KB"
            )
        )

    def send_400_response(self, msg: str) -> None:
        """Unparseable HTTP: the same JSON error shape as every other refusal, instead of uvicorn's plain text."""
        log.info("refused a request from %s: %s", self._peer(), msg)
        self._answer_and_close(BadRequest("the request is not valid HTTP/1.1"))

    def _answer_and_close(self, error: HeadwayError) -> None:
        """Answer ``error`` in the JSON shape of the route asked for (as far as it was read) and close."""
        self._cancel_head()
        self._cancel_body()
        path = (getattr(self, "url", b"") or b"").split(b"?", 1)[0]
        protocol: Protocol = "anthropic" if path.startswith(b"/v1/messages") else "openai"
        body = json.dumps(
            error_body(protocol, error.status, f"Headway: {error.message}", error.code)
        ).encode()
        self.transport.write(
            b"".join(
                [
                    _STATUS_LINE[error.status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"x-headway-error: " + error.code.encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown peer"


class WSProtocolOnUpgrade(asyncio.Protocol):
    """``ws=`` for ``uvicorn.Config``: uvicorn's wsproto protocol, imported when a connection first upgrades (a class
    given as ``ws`` is used as it is; uvicorn instantiates it per upgrade with keyword arguments)."""

    def __new__(
        cls, *args: Any, **kwargs: Any
    ) -> Any:  # the real protocol (not an instance of cls: no __init__)
        from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

        return WSProtocol(*args, **kwargs)
