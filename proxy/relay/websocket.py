"""The relay's WebSocket client: wsproto (sans-IO RFC 6455) on top of an httpx connection upgraded with ``101``.

wsproto owns the protocol (framing, masking, fragments, UTF-8 of text messages, ping/pong, the closing handshake,
protocol errors); this module owns the I/O. Connecting through the shared ``httpx.AsyncClient`` keeps its TLS
settings, proxies and timeouts: the upgrade request goes out through it, and httpcore hands over the raw stream as
the ``network_stream`` extension. No extensions are offered by default (the relay's envelope is compressed already);
``compress=True`` offers permessage-deflate with context takeover (the Responses API's upstream sockets: a turn
repeats the instructions and tools of the one before, which the shared window turns into back-references). The
same library serves WebSockets in uvicorn (``ws="wsproto"``), so one implementation covers both sides.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

import httpx
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError, generate_accept_token, generate_nonce

from proxy.wire.liveness import keep_checked

__all__ = ["MAX_MESSAGE", "WebSocket", "WebSocketClosed", "WebSocketError"]

#: The largest message ``recv()`` reassembles; a larger one closes the connection with an error.
MAX_MESSAGE = 64 * 1024 * 1024
_CLOSE_TIMEOUT = 2.0


class WebSocketError(Exception):
    """The handshake failed or the peer broke the protocol. ``status``/``body``: a refused handshake's answer."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class WebSocketClosed(WebSocketError):
    """The connection is closed (by either side, or it dropped)."""


class _NetworkStream(Protocol):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes: ...

    async def write(self, buffer: bytes, timeout: float | None = None) -> None: ...

    async def aclose(self) -> None: ...


class WebSocket:
    """One client connection. ``recv()`` from one task at a time; sends may come from any task."""

    def __init__(
        self,
        stream: _NetworkStream,
        response: httpx.Response,
        *,
        max_message: int = MAX_MESSAGE,
        extensions: list[Extension] | None = None,
    ) -> None:
        self._stream = stream
        self._response = response
        self._conn = Connection(ConnectionType.CLIENT, extensions=extensions)
        self._events: deque[Event] = deque()
        self._parts: list[Any] = []  # the fragments of the message being received (all str or all bytes)
        self._size = 0
        self._max = max_message
        self._write_lock = asyncio.Lock()
        self.closed = False
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls,
        client: httpx.AsyncClient,
        url: str,
        headers: dict[str, str],
        timeout: float | None = None,
        *,
        max_message: int = MAX_MESSAGE,
        compress: bool = False,
    ) -> WebSocket:
        """Open ``url`` (http/https, or ws/wss) through ``client``; WebSocketError when the server says no."""
        if url.startswith("ws"):
            url = "http" + url[2:]
        key = generate_nonce().decode()
        deflate = PerMessageDeflate() if compress else None
        if deflate is not None:
            headers = {**headers, "sec-websocket-extensions": f"{deflate.name}; {deflate.offer()}"}
        request = client.build_request(
            "GET",
            url,
            headers={
                **headers,
                "connection": "Upgrade",
                "upgrade": "websocket",
                "sec-websocket-key": key,
                "sec-websocket-version": "13",
            },
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        response = await client.send(request, stream=True)
        if response.status_code != 101:
            body = b""
            try:
                body = await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            raise WebSocketError(f"HTTP {response.status_code}", response.status_code, body[:2000])
        # a long-lived socket: a lost network must not leave it waiting for minutes
        await keep_checked(response)
        stream: Any = response.extensions.get("network_stream")
        expected = generate_accept_token(key.encode()).decode()
        if response.headers.get("sec-websocket-accept") != expected or stream is None:
            await response.aclose()
            raise WebSocketError("the server did not complete the WebSocket handshake")
        chosen = response.headers.get("sec-websocket-extensions", "")
        extensions: list[Extension] = []
        if chosen:
            name, _, params = chosen.partition(";")
            if deflate is None or name.strip().lower() != deflate.name or "," in chosen:
                await response.aclose()
                raise WebSocketError("the server chose a WebSocket extension that was not offered")
            deflate.finalize(params.strip())
            extensions.append(deflate)
        return cls(stream, response, max_message=max_message, extensions=extensions)

    async def _send(self, event: Event) -> None:
        if self.closed:
            raise WebSocketClosed("the WebSocket is closed")
        async with (
            self._write_lock
        ):  # encoding and writing in one step keeps frames in the order wsproto made them
            try:
                data = self._conn.send(event)
            except LocalProtocolError as exc:
                raise WebSocketClosed(f"the WebSocket is closing ({exc})") from exc
            try:
                await self._stream.write(data)
            except Exception as exc:
                await self._abort()
                raise WebSocketClosed(f"write failed: {exc}") from exc

    async def send_text(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def send_binary(self, data: bytes) -> None:
        await self._send(BytesMessage(data=data))

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next text (str) or binary (bytes) message; answers pings; WebSocketClosed at the end."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    self._size += len(event.data)
                    if self._size > self._max:
                        await self._fail(1009, "message too large")
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, CloseConnection):
                    await self._closed_by_peer(event)
            if self.closed:
                raise WebSocketClosed("the WebSocket is closed")
            try:
                data = await self._stream.read(65536, timeout)
            except Exception as exc:
                await self._abort()
                raise WebSocketClosed(f"read failed: {type(exc).__name__}: {exc}") from exc
            if not data:
                await self._abort()
                raise WebSocketClosed("the connection dropped")
            self._conn.receive_data(data)
            self._events.extend(self._conn.events())

    async def _closed_by_peer(self, event: CloseConnection) -> None:
        """A close frame from the server (answered), or a protocol error wsproto found (the connection is failed)."""
        self.close_code = int(event.code)
        broken = self._conn.state is not ConnectionState.REMOTE_CLOSING
        # wsproto reports what the server broke as a close event while the connection is still open.
        if broken and self._conn.state is not ConnectionState.OPEN:
            reply = None
        else:
            reply = CloseConnection(code=event.code) if broken else event.response()
        if reply is not None:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._send(reply)
            except (WebSocketClosed, TimeoutError):
                pass
        await self._abort()
        if broken:
            raise WebSocketError(
                f"the server broke the WebSocket protocol: {event.reason} ({self.close_code})"
            )
        raise WebSocketClosed(f"closed by the server ({self.close_code})")

    async def _fail(self, code: int, reason: str) -> None:
        self.close_code = code
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._send(CloseConnection(code=code, reason=reason))
        except (WebSocketClosed, TimeoutError):
            pass
        await self._abort()
        raise WebSocketError(reason)

    async def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        if self._conn.state is ConnectionState.OPEN:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._send(CloseConnection(code=code))
            except (WebSocketClosed, TimeoutError):
                pass
        await self._abort()

    async def _abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._stream.aclose()
        except Exception:
            pass
        try:
            await self._response.aclose()
        except Exception:
            pass
