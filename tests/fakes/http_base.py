"""The HTTP plumbing the fakes (tests/fakes/server.py) and the recording upstream (tests/support/recorder.py) share:
a threading server that binds without a host-name lookup, and reading a request's body."""

from __future__ import annotations

import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LocalHTTPServer", "read_request_body"]


class LocalHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with daemon handler threads whose bind skips the host-name lookup."""

    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can be slow; we never need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The whole body: the chunks of a chunked request (trailers skipped), else Content-Length bytes, else none."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""
