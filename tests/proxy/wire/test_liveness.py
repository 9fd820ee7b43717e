"""Every upstream socket gets the liveness options (proxy/wire/liveness.py) — the upstream client's, and httpx's
(logins, token refreshes, polling, WebSocket upgrades) through the engine's response hook. What the kernel then does
with them is tested for real in test_lost_network.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from proxy.wire.liveness import LIVENESS
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import start_gateway

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _options(sock: socket.socket) -> tuple[int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


WANTED = (1, round(LIVENESS.idle), round(LIVENESS.unacked * 1000))


def test_the_engines_httpx_connections_get_them_before_the_pool_keeps_them(fake: FakeAnthropic) -> None:
    """Before, a token refresh or a WebSocket upgrade on a kept connection that a changed network left dead waited
    for its read timeout."""
    with start_gateway(anthropic_url=fake.url) as gw:
        engine = gw.services.engine

        async def fetch() -> tuple[int, int, int]:
            client = engine._client
            assert client is not None
            response = await client.get(f"{fake.url}/v1/models", headers={"x-api-key": "sk-ant-x"})
            return _options(response.extensions["network_stream"].get_extra_info("socket"))

        assert engine.call(fetch()) == WANTED


def test_the_upstream_clients_connections_get_them(fake: FakeAnthropic) -> None:
    with start_gateway(anthropic_url=fake.url) as gw:
        gw.add("anthropic", "work", "sk-ant-api03-" + "w" * 40)
        engine = gw.services.engine

        fake.enqueue(Behavior(delay=0.2))  # a stream still running while its connection is looked at
        body = b'{"model": "claude-sonnet-4-5", "max_tokens": 5, "stream": true, "messages": []}'

        async def fetch() -> tuple[int, int, int]:
            response = await engine._upstream.send(
                "POST", f"{fake.url}/v1/messages", {"x-api-key": "sk-ant-x"}, body
            )
            try:
                answer = response.stream._answer  # type: ignore[attr-defined]
                return _options(answer.connection.transport.get_extra_info("socket"))
            finally:
                await response.aclose()

        assert engine.call(fetch()) == WANTED
