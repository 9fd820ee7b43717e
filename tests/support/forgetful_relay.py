"""A TCP relay on 127.0.0.1 in front of a real server, that can *forget* its open connections the way an upstream
does across a laptop's sleep or a network change: the server side is gone, but the client is not told. The client's
next bytes on such a connection are answered with a reset (RST), before any answer — what a kept-alive connection
from the pool meets after the machine wakes up.

``forget(silently=True)`` forgets them the way a router or firewall that lost its state does instead: the client's
next bytes go nowhere, and nothing answers them (no reset, no close) — the client waits until its own timeout.

One thread runs an asyncio loop; use it as a context manager. ``forget()`` applies to the connections open at that
moment; new ones are relayed as usual. ``connections`` counts those accepted; ``resets`` the resets sent and
``swallowed`` the connections whose bytes went nowhere; ``peers`` the client's port of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

from tests.support.loop_server import LoopServer

__all__ = ["ForgetfulRelay"]


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    forgotten: bool = False
    silent: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class ForgetfulRelay(LoopServer):
    name = "test-forgetful-relay"

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__()
        self._target = (target_host, target_port)
        self._pairs: list[_Pair] = []
        self.connections = 0
        self.resets = 0
        self.swallowed = 0
        self.peers: list[int] = []  # the client's port of each connection accepted, in order

    async def _stop(self) -> None:
        for pair in self._pairs:
            pair.client.close()
            pair.server.close()

    def forget(self, *, silently: bool = False) -> None:
        """The server side of every open connection goes away; the clients are not told until they send (and, with
        ``silently``, not even then)."""

        async def forget() -> None:
            for pair in self._pairs:
                if not pair.forgotten:
                    pair.forgotten = True
                    pair.silent = silently
                    pair.server.close()

        self.call(forget())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[1])
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        pair = _Pair(writer, server_writer)
        self._pairs.append(pair)
        pair.tasks = [
            asyncio.ensure_future(self._to_server(pair, reader)),
            asyncio.ensure_future(self._to_client(pair, server_reader)),
        ]

    async def _to_server(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if pair.forgotten and pair.silent:
                    self.swallowed += 1
                    continue  # into the void: no answer, no reset, no close
                if pair.forgotten:
                    self._reset(pair.client)
                    return
                pair.server.write(data)
                await pair.server.drain()
        if not pair.forgotten:
            pair.server.close()

    async def _to_client(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if pair.forgotten:
                    return
                pair.client.write(data)
                await pair.client.drain()
        if not pair.forgotten:  # the server closed it: tell the client (a forgotten one is not told)
            pair.client.close()

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if (
            sock is not None
        ):  # close with SO_LINGER 0: the kernel answers with RST, as for an unknown connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        self.resets += 1
