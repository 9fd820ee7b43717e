"""A small WebSocket client (RFC 6455) on top of an httpx connection upgraded with ``101 Switching Protocols``.

Only what the relay needs: masked client frames, text and binary messages (fragmented ones reassembled), ping/pong,
close. No extensions (the envelope is compressed already). Connecting through the shared ``httpx.AsyncClient`` keeps
its TLS settings, proxies and timeouts; httpcore hands over the raw stream as the ``network_stream`` extension.

The frame codec (:func:`encode_frame`, :class:`FrameDecoder`) is sans-IO; :class:`WebSocket` owns the stream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from typing import Any, Protocol

import httpx

__all__ = ["FrameDecoder", "WebSocket", "WebSocketClosed", "WebSocketError", "encode_frame"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_MESSAGE = 64 * 1024 * 1024


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


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


class FrameDecoder:
    """Feed bytes; get complete messages back as (opcode, payload), control frames included."""

    def __init__(self, max_message: int = _MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._opcode: int | None = None
        self._size = 0
        self._max = max_message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._frame()
            if frame is None:
                return out
            fin, opcode, payload = frame
            if opcode >= 0x8:
                if not fin or len(payload) > 125:
                    raise WebSocketError("malformed control frame")
                out.append((opcode, payload))
                continue
            if opcode == OP_CONT:
                if self._opcode is None:
                    raise WebSocketError("continuation frame without a message")
            else:
                if self._opcode is not None:
                    raise WebSocketError("new message inside a fragmented one")
                self._opcode = opcode
            self._parts.append(payload)
            self._size += len(payload)
            if self._size > self._max:
                raise WebSocketError("message too large")
            if fin:
                out.append((self._opcode, b"".join(self._parts)))
                self._parts, self._opcode, self._size = [], None, 0

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin = bool(buf[0] & 0x80)
        if buf[0] & 0x70:
            raise WebSocketError("reserved bits set (no extension was negotiated)")
        opcode = buf[0] & 0x0F
        masked = bool(buf[1] & 0x80)
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if n > self._max:
            raise WebSocketError("frame too large")
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        return fin, opcode, _mask(payload, key) if masked else payload


class WebSocket:
    """One client connection. ``recv()`` from one task at a time; sends may come from any task."""

    def __init__(self, stream: _NetworkStream, response: httpx.Response) -> None:
        self._stream = stream
        self._response = response
        self._decoder = FrameDecoder()
        self._pending: list[tuple[int, bytes]] = []
        self._write_lock = asyncio.Lock()
        self.closed = False
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, client: httpx.AsyncClient, url: str, headers: dict[str, str], timeout: float | None = None
    ) -> WebSocket:
        """Open ``url`` (http/https, or ws/wss) through ``client``; WebSocketError when the server says no."""
        if url.startswith("ws"):
            url = "http" + url[2:]
        key = base64.b64encode(os.urandom(16)).decode()
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
        expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        stream: Any = response.extensions.get("network_stream")
        if response.headers.get("sec-websocket-accept") != expected or stream is None:
            await response.aclose()
            raise WebSocketError("the server did not complete the WebSocket handshake")
        return cls(stream, response)

    async def _write(self, data: bytes) -> None:
        if self.closed:
            raise WebSocketClosed("the WebSocket is closed")
        async with self._write_lock:
            try:
                await self._stream.write(data)
            except Exception as exc:
                await self._abort()
                raise WebSocketClosed(f"write failed: {exc}") from exc

    async def send_text(self, text: str) -> None:
        await self._write(encode_frame(OP_TEXT, text.encode()))

    async def send_binary(self, data: bytes) -> None:
        await self._write(encode_frame(OP_BINARY, data))

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next text (str) or binary (bytes) message; answers pings; WebSocketClosed at the end."""
        while True:
            while self._pending:
                opcode, payload = self._pending.pop(0)
                if opcode == OP_TEXT:
                    return payload.decode("utf-8", errors="replace")
                if opcode == OP_BINARY:
                    return payload
                if opcode == OP_PING:
                    await self._write(encode_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    if not self.closed:
                        try:
                            await self._write(encode_frame(OP_CLOSE, payload[:2]))
                        except WebSocketClosed:
                            pass
                    await self._abort()
                    raise WebSocketClosed(f"closed by the server ({self.close_code})")
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
            try:
                self._pending.extend(self._decoder.feed(data))
            except WebSocketError:
                await self._abort()
                raise

    async def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        try:
            async with asyncio.timeout(2.0):
                async with self._write_lock:
                    await self._stream.write(encode_frame(OP_CLOSE, struct.pack("!H", code)))
        except Exception:
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
