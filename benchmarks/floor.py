"""A bare byte relay: the floor for any extra hop written in Python on this machine.

    python -m benchmarks.floor --upstream 127.0.0.1:PORT     # prints its URL on the first line of stdout

The benchmark puts it between its client and the mock upstream (the "floor" side): whatever it adds to a direct
connection — a scheduler wake-up and a read and a write per chunk — any Python gateway adds too, before it parses a
byte of HTTP. Headway's added figures are read against it.

asyncio protocols only, no parsing: for each accepted connection one connection to the upstream; bytes go both
ways as they arrive (what the client sends before the upstream connection is open is kept and sent first). An end
of file from one side is passed on as a half-close to the other (``write_eof``); once both directions have ended,
or either connection is lost, both are closed (``close`` sends what is still buffered first). Flow control: when
one side's write buffer passes its high-water mark, reading from the other side pauses until it drains.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

__all__ = ["Relay", "main"]

_PENDING_LIMIT = (
    64 * 1024
)  # bytes kept from the client before the upstream connection is open; then it pauses


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _End(asyncio.Protocol):
    """One connection of a relayed pair: what it reads is written to ``other``'s transport."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.other: _End | None = None
        self.read_eof = False  # this connection's peer has finished sending
        self.lost = False

    # --- reading: forward to the other end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.write(data)
        else:
            self.pair.keep(data)

    def eof_received(self) -> bool:
        self.read_eof = True
        other = self.other
        if other is not None and other.transport is not None:
            other.send_eof()
        self.pair.check_done()
        return True  # keep the transport open: the other direction may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pair.close()

    # --- writing: what the other end reads comes here

    def send_eof(self) -> None:
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.pair.close()

    def pause_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.resume_reading()


class _Pair:
    """An accepted connection and its upstream connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.down = _End(self)  # the client's connection
        self.up: _End | None = None
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.paused_pending = False
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False

    def accepted(self) -> None:
        self.relay.pairs.add(self)
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        up = _End(self)
        try:
            await loop.create_connection(lambda: up, self.relay.upstream_host, self.relay.upstream_port)
        except OSError:
            self.connecting = None
            self.close()
            return
        self.connecting = None
        assert up.transport is not None and self.down.transport is not None
        if self.closed:  # the client went away while the upstream connection was being made
            up.transport.close()
            return
        self.up = up
        up.other, self.down.other = self.down, up
        for data in self.pending:
            up.transport.write(data)
        self.pending.clear()
        if self.paused_pending:
            self.paused_pending = False
            self.down.transport.resume_reading()
        if self.down.read_eof:
            up.send_eof()
        self.check_done()

    def keep(self, data: bytes) -> None:
        """Client bytes that arrived before the upstream connection was open."""
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > _PENDING_LIMIT and not self.paused_pending and self.down.transport is not None:
            self.paused_pending = True
            self.down.transport.pause_reading()

    def check_done(self) -> None:
        if self.up is not None and self.down.read_eof and self.up.read_eof:
            self.close()

    def close(self) -> None:
        """Close both connections (each sends what it still has buffered first)."""
        if not self.closed:
            self.closed = True
            if self.connecting is not None:
                self.connecting.cancel()
        for end in (self.down, self.up):
            if end is not None and end.transport is not None and not end.transport.is_closing():
                end.transport.close()
        if self.down.lost and (self.up is None or self.up.lost):
            self.relay.pairs.discard(self)


class Relay:
    """The listening side: one :class:`_Pair` per accepted connection, kept until both its connections are lost."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None

    def _accept(self) -> _End:
        pair = _Pair(self)
        pair.accepted()
        return pair.down

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", port, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self.pairs):
            pair.close()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve(upstream: tuple[str, int], port: int) -> None:
    relay = Relay(*upstream)
    bound = await relay.start(port)
    print(f"http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await relay.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upstream", type=_host_port, required=True, metavar="HOST:PORT", help="where to relay to"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.upstream, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
