"""read_capped: the beginning of an answer body, from a real server on 127.0.0.1, never the whole of an endless one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.wire.response_body import read_capped

pytestmark = pytest.mark.timeout(30)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n")
    try:
        if b"GET /endless" in request:
            writer.write(b"transfer-encoding: chunked\r\n\r\n")
            while True:  # until the client hangs up
                writer.write(b"4000\r\n" + b"e" * 0x4000 + b"\r\n")
                await writer.drain()
        else:  # promises 100000 bytes, sends 10 and hangs up
            writer.write(b"content-length: 100000\r\n\r\n0123456789")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


async def test_an_endless_body_gives_its_first_bytes_and_is_closed(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.send(client.build_request("GET", base_url + "/endless"), stream=True)
        body = await read_capped(response, 50_000)
        assert body == b"e" * 50_000
        assert response.is_closed


async def test_a_body_cut_short_gives_what_arrived(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.send(client.build_request("GET", base_url + "/short"), stream=True)
        assert await read_capped(response, 64 * 1024) == b"0123456789"
        assert response.is_closed
