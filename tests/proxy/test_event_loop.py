"""The engine's event loop: uvloop where it exists, asyncio's own when asked (or on Windows)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import uvloop  # a dependency wherever the tests run (not on Windows)

from proxy.tasks import new_event_loop
from tests.fakes import FakeAnthropic
from tests.support.gateway import start_gateway


def _kind(environ: dict[str, str]) -> type[asyncio.AbstractEventLoop]:
    loop = new_event_loop(environ)
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_by_default_and_asyncio_when_asked() -> None:
    assert issubclass(_kind({}), uvloop.Loop)
    assert issubclass(_kind({"HEADWAY_EVENT_LOOP": "uvloop"}), uvloop.Loop)
    assert not issubclass(_kind({"HEADWAY_EVENT_LOOP": "asyncio"}), uvloop.Loop)


def test_an_unknown_value_is_said_and_the_default_used(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="headway.tasks"):
        assert issubclass(_kind({"HEADWAY_EVENT_LOOP": "trio"}), uvloop.Loop)
    assert "HEADWAY_EVENT_LOOP='trio'" in caplog.text


@pytest.mark.parametrize("choice", ["", "asyncio"])
def test_the_gateway_serves_on_either_loop(choice: str) -> None:
    with FakeAnthropic() as upstream:
        gw = start_gateway(anthropic_url=upstream.url, env={"HEADWAY_EVENT_LOOP": choice} if choice else {})
        try:
            gw.add("anthropic", "main", "sk-ant-main")
            answer = httpx.post(
                f"{gw.url}/v1/messages",
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers=gw.headers(),
                timeout=10,
            )
            loop = gw.services.engine._loop
        finally:
            gw.stop()
    assert answer.status_code == 200
    assert isinstance(loop, uvloop.Loop) is (choice != "asyncio")
