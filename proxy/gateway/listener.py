"""The gateway's listening socket: bound by us (so a busy port is known before anything is given up) and handed to
the server.

:class:`PortInUse` is what ``Engine.start()`` raises when the address is taken, and what a live port change reports;
any other failure to bind is a :class:`CannotBind` (no such local address, a privileged port). Both are ``OSError``s
carrying ``host`` and ``port``, so that a caller can tell them from the other errors of a start.
"""

from __future__ import annotations

import errno
import os
import socket

__all__ = ["CannotBind", "PortInUse", "bind_listener", "format_address"]


def format_address(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"{shown}:{port}"


class PortInUse(OSError):
    """The gateway's address is already taken (another Headway, or another program)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is in use")
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return f"port {self.port} on {self.host} is in use"


class CannotBind(OSError):
    """The gateway's address cannot be bound for another reason than being taken; the system's error and reason."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host = host
        self.port = port


def bind_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port``; :class:`PortInUse` when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for such sockets, and
    # without it Nagle's algorithm holds small SSE writes back ~40 ms (measured by the benchmark).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise PortInUse(host, port) from exc
            raise CannotBind(host, port, exc) from exc
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
