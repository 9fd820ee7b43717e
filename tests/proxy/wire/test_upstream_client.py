"""The hot path's upstream client against real servers on 127.0.0.1: the fakes, a real forward proxy, a closed port."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from proxy.wire.upstream_client import Timeouts, UpstreamClient
from tests.fakes import Behavior, FakeAnthropic
from tests.support.http_proxy import HttpProxy

BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
)
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _client(environ: dict[str, str] | None = None, read: float = 10.0) -> UpstreamClient:
    return UpstreamClient(lambda: Timeouts(connect=5.0, read=read), environ=environ or {})


async def _post(client: UpstreamClient, url: str, body: str = BODY) -> httpx.Response:
    response = await client.send("POST", f"{url}/v1/messages", HEADERS, body.encode())
    await response.aread()
    await response.aclose()
    return response


async def test_a_request_and_its_answer(fake: FakeAnthropic) -> None:
    client = _client()
    try:
        response = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "Hello from the fake"
    assert response.headers["request-id"] == fake.requests[-1].request_id
    sent = fake.requests[-1]
    assert sent.json == json.loads(BODY)
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["accept-encoding"] == "gzip, deflate"
    assert "user-agent" not in sent.headers  # never aiohttp's: the adapters set Headway's own


async def test_a_gzip_answer_is_decoded(fake: FakeAnthropic) -> None:
    payload = {"id": "msg_1", "type": "message", "content": []}
    fake.enqueue(
        Behavior(body=gzip.compress(json.dumps(payload).encode()), headers={"content-encoding": "gzip"})
    )
    client = _client()
    try:
        response = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert response.json() == payload


async def test_cookies_are_never_sent_back(fake: FakeAnthropic) -> None:
    # One client serves every account: an upstream's cookie would link them.
    fake.enqueue(Behavior(headers={"set-cookie": "session=abc; Path=/"}))
    client = _client()
    try:
        await _post(client, fake.url)
        await _post(client, fake.url)
    finally:
        await client.aclose()
    assert "cookie" not in fake.requests[-1].headers


async def test_keep_alive_reuses_one_connection(fake: FakeAnthropic) -> None:
    client = _client()
    try:
        for _ in range(5):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert fake.connection_count == 1


async def test_a_stream_closed_early_does_not_leave_its_rest_for_the_next_request(
    fake: FakeAnthropic,
) -> None:
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    fake.enqueue(Behavior(chunks=20))
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        async for _ in response.aiter_bytes():
            break  # the agent went away after the first bytes
        await response.aclose()
        after = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert after.json()["type"] == "message"


async def test_the_proxy_from_the_environment_is_used(fake: FakeAnthropic) -> None:
    with HttpProxy() as proxy:
        client = _client({"HTTP_PROXY": proxy.url})
        try:
            response = await _post(client, fake.url)
        finally:
            await client.aclose()
    assert response.status_code == 200
    assert proxy.request_lines == [f"POST {fake.url}/v1/messages HTTP/1.1"]


async def test_no_proxy_goes_direct(fake: FakeAnthropic) -> None:
    with HttpProxy() as proxy:
        client = _client({"http_proxy": proxy.url, "no_proxy": "127.0.0.1"})
        try:
            response = await _post(client, fake.url)
        finally:
            await client.aclose()
    assert response.status_code == 200 and proxy.request_lines == []


async def test_an_unsupported_proxy_kind_is_a_clear_error(fake: FakeAnthropic) -> None:
    client = _client({"ALL_PROXY": "socks5://127.0.0.1:1080"})
    try:
        with pytest.raises(httpx.ProxyError, match=r"socks5:// .* not supported"):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert fake.requests == []


async def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        client = _client()
        try:
            with pytest.raises(httpx.ConnectError):
                await _post(client, f"http://127.0.0.1:{port}")
        finally:
            await client.aclose()


async def test_silence_beyond_the_read_timeout_is_a_read_timeout(fake: FakeAnthropic) -> None:
    fake.enqueue(Behavior(hang=True))
    client = _client(read=0.3)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await _post(client, fake.url)
    finally:
        await client.aclose()


async def test_a_stream_cut_mid_body_is_a_protocol_error(fake: FakeAnthropic) -> None:
    fake.enqueue(Behavior(chunks=10, drop_after_events=3))
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in response.aiter_bytes():
                pass
        await response.aclose()
    finally:
        await client.aclose()


async def _settle(fake: FakeAnthropic) -> None:
    """Give the loop time to take in what the fake sent and its close (the fake has answered when this returns)."""
    await asyncio.sleep(0.3)


async def test_bytes_that_arrived_with_a_broken_connection_come_before_the_error(fake: FakeAnthropic) -> None:
    # The events and the connection's end arrive together: aiohttp alone would raise first and drop them.
    fake.enqueue(Behavior(chunks=6, drop_after_events=5, one_write=True))
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    received = b""
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        await _settle(fake)  # both the bytes and the end are in before the first read
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.aiter_bytes():
                received += chunk
        await response.aclose()
    finally:
        await client.aclose()
    assert received.count(b"event: ") == 5
