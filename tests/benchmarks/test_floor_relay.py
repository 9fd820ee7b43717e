"""The benchmark's bare relay (benchmarks/floor.py): bytes both ways, half-close and close, flow control.

Every test puts the relay between a client and a real upstream server on 127.0.0.1; the first runs it as the
benchmark does (``python -m benchmarks.floor``), the others in this event loop so that its state can be read.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks.floor import Relay
from benchmarks.processes import start_floor

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_LIMIT = 10.0  # generous bound for a hang; nothing here is timed


@asynccontextmanager
async def _upstream(handler: Handler) -> AsyncIterator[int]:
    """A real server on 127.0.0.1 running ``handler`` per connection; yields its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def _relay(upstream_port: int) -> AsyncIterator[tuple[Relay, int]]:
    relay = Relay("127.0.0.1", upstream_port)
    port = await relay.start()
    try:
        yield relay, port
    finally:
        await relay.stop()


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a condition the relay makes true in the background (checked every few ms; bounded: a hang fails,
    no timing is asserted)."""
    deadline = time.monotonic() + _LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.005)


def _pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks first, then answers each line upper-cased and echoes each length-prefixed blob back."""
    writer.write(b"hello\n")
    try:
        while line := await reader.readline():
            if line.startswith(b"blob "):
                blob = await reader.readexactly(int(line.split()[1]))
                writer.write(blob)
            else:
                writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()


async def test_the_relay_process_carries_bytes_both_ways(tmp_path: Path) -> None:
    async with _upstream(_echo_upper) as port:
        floor = await asyncio.to_thread(start_floor, tmp_path, f"http://127.0.0.1:{port}")
        try:
            assert floor.url.startswith("http://127.0.0.1:") and floor.port != port
            async with asyncio.timeout(_LIMIT):
                reader, writer = await asyncio.open_connection(floor.host, floor.port)
                assert await reader.readline() == b"hello\n"  # upstream → client
                writer.write(b"ping\n")  # client → upstream → client
                assert await reader.readline() == b"PING\n"
                blob = _pattern(1_000_003)
                writer.write(b"blob %d\n" % len(blob) + blob)
                assert await reader.readexactly(len(blob)) == blob
                writer.close()
                await writer.wait_closed()
        finally:
            floor.stop()
        assert floor.proc.returncode == 0, floor.log_tail()


async def test_bytes_sent_before_the_upstream_connection_opens_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    connect = loop.create_connection
    gate = asyncio.Event()

    async with _upstream(_echo_upper) as port, _relay(port) as (relay, relay_port):

        async def gated(factory: Any, host: str, port_: int, **kwargs: Any) -> Any:
            if port_ == port:  # the relay's connection to the upstream waits for the gate
                await gate.wait()
            return await connect(factory, host, port_, **kwargs)

        monkeypatch.setattr(loop, "create_connection", gated)
        async with asyncio.timeout(_LIMIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            writer.write(b"early\n")
        await _until(lambda: any(p.pending_size for p in relay.pairs), "the relay holds the early bytes")
        gate.set()
        async with asyncio.timeout(_LIMIT):
            assert await reader.readline() == b"hello\n"
            assert await reader.readline() == b"EARLY\n"
            writer.close()
            await writer.wait_closed()


async def test_a_half_close_is_passed_on_and_the_answer_still_comes_back() -> None:
    async def count_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the client's end of file
        writer.write(b"got %d" % len(received))
        await writer.drain()
        writer.close()

    async with _upstream(count_until_eof) as port, _relay(port) as (relay, relay_port):
        async with asyncio.timeout(_LIMIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            writer.write(_pattern(100_000))
            writer.write_eof()
            assert await reader.read() == b"got 100000"  # the answer, then the upstream's close as EOF
            writer.close()
            await writer.wait_closed()
        await _until(lambda: not relay.pairs, "both of the relay's connections are closed")


async def test_the_upstream_closing_closes_the_client_connection() -> None:
    async def say_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    async with _upstream(say_bye) as port, _relay(port) as (relay, relay_port):
        async with asyncio.timeout(_LIMIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            assert await reader.read() == b"bye"
            writer.close()
            await writer.wait_closed()
        await _until(lambda: not relay.pairs, "both of the relay's connections are closed")


async def test_a_client_reset_closes_the_upstream_connection() -> None:
    upstream_done = asyncio.get_running_loop().create_future()

    async def wait_for_the_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ready\n")
        await writer.drain()
        try:
            left = await reader.read()
        except ConnectionError as exc:
            left = repr(exc).encode()
        upstream_done.set_result(left)
        writer.close()

    async with _upstream(wait_for_the_end) as port, _relay(port) as (relay, relay_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        async with asyncio.timeout(_LIMIT):
            assert await reader.readline() == b"ready\n"
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, not an end of file: the relay sees the connection lost
        async with asyncio.timeout(_LIMIT):
            await upstream_done
        await _until(lambda: not relay.pairs, "both of the relay's connections are closed")


async def test_a_slow_reader_pauses_the_upstream_side() -> None:
    total = 64 * 1024 * 1024  # far more than the kernel's socket buffers on the way can hold
    chunk = 64 * 1024
    sent = 0
    all_sent = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        block = _pattern(chunk)
        while sent < total:
            writer.write(block)
            await writer.drain()  # blocks while the relay does not read
            sent += chunk
        all_sent.set()
        await reader.read()
        writer.close()

    async with _upstream(flood) as port, _relay(port) as (relay, relay_port):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", relay_port))
        reader, writer = await asyncio.open_connection(sock=client)
        await _until(lambda: bool(relay.pairs) and next(iter(relay.pairs)).up is not None, "upstream is open")
        pair = next(iter(relay.pairs))
        assert pair.up is not None and pair.up.transport is not None and pair.down.transport is not None
        up, down = pair.up.transport, pair.down.transport

        # the client reads nothing: the relay's buffer towards it fills, and it stops reading the upstream
        await _until(lambda: not up.is_reading() or all_sent.is_set(), "the relay pauses the upstream")
        assert not up.is_reading(), f"the relay read all {sent} bytes without pausing"
        assert not all_sent.is_set()
        buffered = down.get_write_buffer_size()
        assert buffered <= down.get_write_buffer_limits()[1] + 1024 * 1024, buffered

        # the client reads again: the relay resumes, and every byte arrives in order
        async with asyncio.timeout(_LIMIT * 3):
            received = await reader.readexactly(total)
        assert received == _pattern(chunk) * (total // chunk)
        assert all_sent.is_set()
        writer.close()
        await writer.wait_closed()
