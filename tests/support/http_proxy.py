"""A real HTTP forward proxy on 127.0.0.1 for tests: it reads absolute-form requests (``POST http://host:port/path
HTTP/1.1``), records each request line, and relays the request to the target and the answer back, byte for byte.

``CONNECT host:port`` opens a tunnel (``200 Connection established``, then bytes both ways until either side
closes): how a client reaches an HTTPS upstream through a company's proxy. What is tested is that the client goes
through the proxy the environment names. One thread runs an asyncio loop; use it as a context manager.

``HttpProxy(credentials=("user", "password"))`` asks for them as a company's proxy does: a request without the
matching ``Proxy-Authorization: Basic …`` gets ``407 Proxy Authentication Required`` and is not relayed.
``authorizations`` records the header of each request (None: none sent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import quote, urlsplit

from tests.support.loop_server import LoopServer

__all__ = ["HttpProxy"]


class HttpProxy(LoopServer):
    name = "test-http-proxy"

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.request_lines: list[str] = []
        self.authorizations: list[str | None] = []
        self._wanted = (
            None
            if credentials is None
            else "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        )

    def url_with(self, user: str, password: str) -> str:
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer):
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                line, headers = head
                self.request_lines.append(line)
                authorization = _header(headers, "proxy-authorization")
                self.authorizations.append(authorization)
                method, target, version = line.split(" ", 2)
                if self._wanted is not None and authorization != self._wanted:
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
                    )
                    await writer.drain()
                    return
                if method == "CONNECT":
                    await _tunnel(target, reader, writer)
                    return
                parts = urlsplit(target)
                length = int(_header(headers, "content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname, parts.port)
                with contextlib.closing(upstream_writer):
                    path = parts.path + (f"?{parts.query}" if parts.query else "")
                    kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
                    upstream_writer.write(
                        "\r\n".join(
                            [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
                        ).encode()
                        + body
                    )
                    await upstream_writer.drain()
                    answer = await upstream_reader.read()  # until the target closes (Connection: close)
                writer.write(_without_keepalive(answer))
                await writer.drain()
                return  # one request per client connection: the answer ends with the close


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[str]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    return lines[0], [line for line in lines[1:] if line]


def _header(headers: list[str], name: str) -> str | None:
    for line in headers:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _without_keepalive(answer: bytes) -> bytes:
    """The answer with ``Connection: close`` (the proxy closes after it), so the client does not reuse the socket."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


async def _tunnel(target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host, _, port = target.rpartition(":")
    upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()

    with contextlib.closing(upstream_writer):
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
