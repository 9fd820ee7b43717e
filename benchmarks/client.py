"""A lean HTTP/1.1 client that timestamps every socket read, so the benchmark can see coalescing.

An ``asyncio.Protocol`` gets one ``data_received`` call per ``recv()``: each call is stamped with
``time.monotonic_ns()`` and numbered. The response is decoded incrementally (Content-Length or chunked), and each
SSE event is recorded with the stamp and number of the read that completed it, plus the ``id: <seq>.<sent_ns>``
the mock upstream wrote. Two events completed by the same read arrived together, whatever the sender intended.

A :class:`Connection` is kept alive across requests, like an agent's pooled client; it sends one request at a time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Arrival", "Connection", "HTTPError", "Response"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class HTTPError(Exception):
    """The server answered something this client cannot read, or the connection ended early."""


@dataclass(slots=True)
class Arrival:
    """One SSE event as it arrived: its name, the sender's sequence number and clock, and the read it came in."""

    name: bytes
    seq: int
    sent_ns: int
    arrived_ns: int
    read_no: int


@dataclass(slots=True)
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    started_ns: int = 0
    first_body_ns: int = 0
    done_ns: int = 0
    body_bytes: int = 0
    reads: int = 0
    events: list[Arrival] = field(default_factory=list)
    keep_alive: bool = True


class _Parser:
    """Incremental response decoder: head, then a Content-Length or chunked body, with SSE framing on the side."""

    def __init__(
        self, response: Response, done: asyncio.Future[Response], on_first_body: Callable[[], None] | None
    ) -> None:
        self.r = response
        self.done = done
        self.on_first_body = on_first_body
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.chunked = False
        self.sse = False
        self.sse_buf = bytearray()

    def feed(self, data: bytes, now: int, read_no: int) -> None:
        self.r.reads += 1
        self.buf += data
        try:
            self._run(now, read_no)
        except (ValueError, HTTPError) as exc:
            if not self.done.done():
                self.done.set_exception(HTTPError(str(exc)))

    def _run(self, now: int, read_no: int) -> None:
        buf = self.buf
        while not self.done.done():
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise HTTPError("response head too large")
                    return
                self._head(bytes(buf[:end]).decode("latin-1"))
                del buf[: end + 4]
            elif self.state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining = size
                    self.state = "data"
            elif self.state == "data":
                if not buf:
                    return
                take = min(self.remaining, len(buf))
                self._body(bytes(buf[:take]), now, read_no)
                del buf[:take]
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "data-end" if self.chunked else "finish"
            elif self.state == "data-end":
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = "size"
            elif self.state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    self.state = "finish"
            else:  # finish
                self.r.done_ns = now
                self.done.set_result(self.r)
                return

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HTTPError(f"not an HTTP/1.x response: {lines[0]!r}")
        self.r.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.r.headers[name.strip().lower()] = value.strip()
        headers = self.r.headers
        self.r.keep_alive = headers.get("connection", "").lower() != "close"
        self.sse = headers.get("content-type", "").startswith("text/event-stream")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
            self.state = "size"
        elif "content-length" in headers:
            self.remaining = int(headers["content-length"])
            if self.remaining > _MAX_BODY:
                raise HTTPError("response body too large")
            self.state = "data" if self.remaining else "finish"
        else:
            raise HTTPError("responses without a length are not supported")

    def _body(self, data: bytes, now: int, read_no: int) -> None:
        r = self.r
        if not r.first_body_ns:
            r.first_body_ns = now
            if self.on_first_body is not None:
                self.on_first_body()
        r.body_bytes += len(data)
        if r.body_bytes > _MAX_BODY:
            raise HTTPError("response body too large")
        if not self.sse:
            return
        sse = self.sse_buf
        sse += data
        start = 0
        while True:
            end = sse.find(b"\n\n", start)
            if end < 0:
                break
            self._event(bytes(sse[start:end]), now, read_no)
            start = end + 2
        if start:
            del sse[:start]

    def _event(self, block: bytes, now: int, read_no: int) -> None:
        name = b""
        seq, sent = -1, 0
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"id:"):
                left, _, right = line[3:].strip().partition(b".")
                if left.isdigit() and right.isdigit():
                    seq, sent = int(left), int(right)
        self.r.events.append(Arrival(name, seq, sent, now, read_no))


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: _Parser | None = None
        self.read_no = 0
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.read_no += 1
        if self.parser is not None:
            self.parser.feed(data, now, self.read_no)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost = exc or HTTPError("connection closed")
        parser = self.parser
        if parser is not None and not parser.done.done():
            parser.done.set_exception(HTTPError(f"connection closed mid-response: {self.lost}"))


class Connection:
    """One keep-alive connection to ``host:port``; reconnects when the server closed it between requests."""

    def __init__(self, host: str, port: int, default_headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self._head_prefix = "".join(
            f"{k}: {v}\r\n" for k, v in {"host": f"{host}:{port}", **default_headers}.items()
        )
        self._protocol: _Protocol | None = None
        self.connects = 0

    async def _connect(self, timeout: float) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(loop.create_connection(_Protocol, self.host, self.port), timeout)
        assert protocol.transport is not None
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1
        return protocol

    async def request(
        self,
        method: str,
        path: str,
        body: bytes,
        timeout: float,
        on_first_body: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request and read the whole response, within ``timeout`` seconds (connect included).

        ``on_first_body`` is called (on the loop, from the read) when the first byte of the body arrives.
        """
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            protocol = self._protocol = await self._connect(timeout)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Response] = loop.create_future()
        response = Response()
        protocol.parser = _Parser(response, done, on_first_body)
        head = f"{method} {path} HTTP/1.1\r\n{self._head_prefix}content-length: {len(body)}\r\n\r\n".encode()
        transport = protocol.transport
        assert transport is not None
        response.started_ns = time.monotonic_ns()
        transport.write(head + body)
        try:
            await asyncio.wait_for(done, timeout)
        except BaseException:
            self.close()
            raise
        finally:
            protocol.parser = None
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
