"""The relay's WebSocket client against a real server on 127.0.0.1: handshake through httpx, messages of every length
encoding, fragments with a ping between, the closing handshake, and what a misbehaving server gets.

The server is an asyncio TCP server speaking wsproto's server side; scripts choose what it sends, raw bytes
included (for protocol violations).
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from proxy.relay.websocket import WebSocket, WebSocketClosed, WebSocketError
from proxy.wire.liveness import LIVENESS

pytestmark = pytest.mark.timeout(30)


@dataclass
class Peer:
    """The server's side of one connection, for a script."""

    conn: WSConnection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    async def send(self, event: Event) -> None:
        self.writer.write(self.conn.send(event))
        await self.writer.drain()

    async def raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next(self, kind: type[Event]) -> Event:
        """The next event of ``kind`` from the client (others are skipped)."""
        while True:
            event = await self.events.get()
            if isinstance(event, kind):
                return event


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class Server:
    url: str
    script: Script | None = None
    reject: tuple[int, bytes] | None = None
    wrong_accept: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failures: list[BaseException] = field(default_factory=list)


async def _serve(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = WSConnection(ConnectionType.SERVER)
    peer = Peer(conn, reader, writer)
    try:
        requested = False
        while not requested:
            data = await reader.read(65536)
            if not data:
                return
            conn.receive_data(data)
            requested = any(isinstance(event, Request) for event in conn.events())
        if server.reject is not None:
            status, body = server.reject
            await peer.send(
                RejectConnection(
                    status_code=status, headers=[(b"content-length", str(len(body)).encode())], has_body=True
                )
            )
            await peer.send(RejectData(data=body))
            return
        if server.wrong_accept:
            await peer.raw(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                           b"sec-websocket-accept: d3Jvbmc=\r\n\r\n")  # fmt: skip
            await reader.read(65536)
            return

        async def pump() -> None:
            while data := await reader.read(65536):
                conn.receive_data(data)
                for event in conn.events():
                    peer.events.put_nowait(event)

        await peer.send(AcceptConnection())
        async with asyncio.TaskGroup() as group:
            pumping = group.create_task(pump())
            try:
                assert server.script is not None
                await server.script(peer)
            finally:
                pumping.cancel()
    except BaseException as exc:  # a script's failed assert fails the test through server.failures
        server.failures.append(exc)
    finally:
        server.done.set()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    box: list[Server] = []
    tcp = await asyncio.start_server(lambda r, w: _serve(box[0], r, w), "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    box.append(Server(f"ws://127.0.0.1:{port}/v1/relay/ws"))
    async with tcp:
        yield box[0]
        tcp.close()
    assert not box[0].failures, box[0].failures


async def _connect(server: Server, **kwargs: int) -> tuple[WebSocket, httpx.AsyncClient]:
    client = httpx.AsyncClient(timeout=10)
    try:
        return await WebSocket.connect(client, server.url, {"authorization": "Bearer x"}, **kwargs), client
    except BaseException:
        await client.aclose()
        raise


async def _echo(peer: Peer) -> None:
    parts: list[Message[bytes] | Message[str]] = []
    while True:
        event = await peer.events.get()
        if isinstance(event, Message):
            parts.append(event)  # wsproto hands over a large message in parts, as the bytes arrive
            if event.message_finished:
                data = (
                    b"".join(p.data for p in parts)
                    if isinstance(event, BytesMessage)
                    else "".join(p.data for p in parts)
                )
                parts = []
                await peer.send(type(event)(data=data))
        elif isinstance(event, CloseConnection):
            await peer.send(event.response())
            return


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
async def test_messages_of_every_length_encoding_round_trip(server: Server, size: int) -> None:
    server.script = _echo
    ws, client = await _connect(server)
    payload = random.Random(size).randbytes(size)
    text = payload.hex()[: size or 1]
    await ws.send_binary(payload)
    assert await ws.recv() == payload
    await ws.send_text(text)
    assert await ws.recv() == text
    await ws.close()
    await asyncio.wait_for(server.done.wait(), 10)
    assert ws.closed
    await client.aclose()


async def test_fragments_are_reassembled_and_a_ping_between_them_is_answered(server: Server) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(TextMessage(data='{"t":', message_finished=False))
        await peer.send(Ping(payload=b"hi"))
        await peer.send(TextMessage(data='"done"}', message_finished=True))
        await peer.send(BytesMessage(data=b"\x00", message_finished=False))
        await peer.send(BytesMessage(data=b"\x01", message_finished=True))
        pong = await peer.next(Pong)
        assert isinstance(pong, Pong) and pong.payload == b"hi"
        await peer.next(CloseConnection)

    server.script = script
    ws, client = await _connect(server)
    assert await ws.recv() == '{"t":"done"}'
    assert await ws.recv() == b"\x00\x01"
    await ws.close()
    await asyncio.wait_for(server.done.wait(), 10)
    await client.aclose()


async def test_a_close_from_the_server_is_answered_and_ends_recv(server: Server) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(CloseConnection(code=1001, reason="going away"))
        reply = await peer.next(CloseConnection)
        assert isinstance(reply, CloseConnection) and reply.code == 1001

    server.script = script
    ws, client = await _connect(server)
    with pytest.raises(WebSocketClosed, match="1001"):
        await ws.recv()
    assert ws.closed and ws.close_code == 1001
    with pytest.raises(WebSocketClosed):
        await ws.send_text("after the close")
    await asyncio.wait_for(server.done.wait(), 10)
    await client.aclose()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0xC2, 0x00]), 1002),  # RSV1 without a negotiated extension
        (bytes([0x80, 0x01, 0x78]), 1002),  # a continuation frame without a message
        (bytes([0x81, 0x02, 0xFF, 0xFE]), 1007),  # a text message that is not UTF-8
        (bytes([0x89, 0x7E, 0x00, 0x7E]) + b"x" * 126, 1002),  # a control frame over 125 bytes
    ],
)
async def test_a_server_that_breaks_the_protocol_gets_the_connection_failed(
    server: Server, frame: bytes, code: int
) -> None:
    async def script(peer: Peer) -> None:
        await peer.raw(frame)
        close = await peer.next(CloseConnection)
        assert isinstance(close, CloseConnection) and close.code == code

    server.script = script
    ws, client = await _connect(server)
    with pytest.raises(WebSocketError, match="protocol"):
        await ws.recv()
    assert ws.closed and ws.close_code == code
    await asyncio.wait_for(server.done.wait(), 10)
    await client.aclose()


async def test_a_message_over_the_limit_fails_the_connection_with_1009(server: Server) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(BytesMessage(data=b"x" * 6, message_finished=False))
        await peer.send(BytesMessage(data=b"x" * 5, message_finished=True))
        close = await peer.next(CloseConnection)
        assert isinstance(close, CloseConnection) and close.code == 1009

    server.script = script
    ws, client = await _connect(server, max_message=10)
    with pytest.raises(WebSocketError, match="too large"):
        await ws.recv()
    assert ws.closed
    await asyncio.wait_for(server.done.wait(), 10)
    await client.aclose()


async def test_a_dropped_connection_ends_recv(server: Server) -> None:
    async def script(peer: Peer) -> None:
        peer.writer.transport.abort()

    server.script = script
    ws, client = await _connect(server)
    with pytest.raises(WebSocketClosed):
        await ws.recv()
    assert ws.closed
    await client.aclose()


async def test_a_refused_handshake_reports_status_and_body(server: Server) -> None:
    server.reject = (403, b'{"error":"wrong secret"}')
    with pytest.raises(WebSocketError) as refused:
        await _connect(server)
    assert refused.value.status == 403 and refused.value.body == b'{"error":"wrong secret"}'


async def test_a_wrong_accept_token_is_refused(server: Server) -> None:
    server.wrong_accept = True
    with pytest.raises(WebSocketError, match="handshake"):
        await _connect(server)


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
async def test_the_socket_notices_a_peer_gone_silent_for_good(server: Server) -> None:
    """A long-lived socket (an upstream WebSocket, the relay's) on a network that lost it fails in seconds, not after
    the read timeout: the kernel's own mechanisms (unacknowledged bytes, keep-alive probes), tested for real in
    tests/proxy/wire/test_lost_network.py."""
    server.script = _echo
    ws, client = await _connect(server)
    try:
        sock = ws._stream.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == LIVENESS.unacked * 1000
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == LIVENESS.idle
    finally:
        await ws.close()
        await client.aclose()
