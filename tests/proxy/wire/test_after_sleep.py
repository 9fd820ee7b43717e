"""proxy.wire.sleep_watch.AfterSleep: the engine's httpx client (sign-ins, refreshes, quota polls, the relay) does not
reuse connections kept from before the machine slept.

A real httpx client, a real server behind a relay that forgets its connections silently (a router that lost its
state answers nothing), and a wall clock moved ahead of the monotonic one, as a night's sleep moves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.wire.sleep_watch import AfterSleep, SleepWatch, close_idle_connections
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt
from tests.support.forgetful_relay import ForgetfulRelay
from tests.support.gateway import start_gateway

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-api-key": "sk-ant-main", "anthropic-version": "2023-06-01"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


class Night:
    """A sleep watch whose wall clock a test moves ahead by ``slept`` seconds."""

    def __init__(self) -> None:
        self.slept = 0.0

    def watch(self) -> SleepWatch:
        return SleepWatch(wall=lambda: time.time() + self.slept, monotonic=time.monotonic)


def _client(hook: AfterSleep, **kwargs: object) -> httpx.AsyncClient:
    return hook.attach(
        httpx.AsyncClient(timeout=httpx.Timeout(3.0, connect=3.0), event_hooks={"request": [hook]}, **kwargs)  # type: ignore[arg-type]
    )


async def test_after_a_sleep_the_next_request_goes_on_a_new_connection(
    fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the request after the wake-up went out on the kept connection the relay forgot, and nothing answered
    # it until the read timeout (ReadTimeout after 3 s here; a real refresh or poll waits out its own).
    night = Night()
    hook = AfterSleep(night.watch())
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        async with _client(hook) as client:
            first = await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
            assert first.status_code == 200 and relay.connections == 1
            relay.forget(silently=True)
            night.slept = 8 * 3600.0
            with caplog.at_level(logging.INFO, logger="headway.upstream"):
                started = time.monotonic()
                after = await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
                took = time.monotonic() - started
            again = await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
    assert after.status_code == 200 and again.status_code == 200
    assert took < 2.0, took
    assert relay.swallowed == 0, "a request went out on a connection from before the sleep"
    assert relay.connections == 2  # one new connection, kept for the request after it
    assert "the machine slept (about 8h" in caplog.text and "1 kept connection(s)" in caplog.text


async def test_without_a_sleep_kept_connections_are_reused(fake: FakeAnthropic) -> None:
    hook = AfterSleep(Night().watch())
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        async with _client(hook) as client:
            for _ in range(3):
                assert (
                    await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
                ).status_code == 200
    assert relay.connections == 1


async def test_an_answer_still_streaming_across_the_sleep_is_not_cut(fake: FakeAnthropic) -> None:
    # Only idle connections are closed: one carrying an answer reads to its end.
    night = Night()
    hook = AfterSleep(night.watch())
    fake.enqueue(Behavior(chunks=6, delay=0.05))
    async with _client(hook) as client:
        request = client.build_request(
            "POST", f"{fake.url}/v1/messages", json={**BODY, "stream": True}, headers=HEADERS
        )
        streaming = await client.send(request, stream=True)
        night.slept = 3600.0
        other = await client.post(f"{fake.url}/v1/messages", json=BODY, headers=HEADERS)
        events = (await streaming.aread()).decode()
        await streaming.aclose()
    assert other.status_code == 200
    assert "message_stop" in events


async def test_idle_connections_of_mounted_transports_are_closed_too(fake: FakeAnthropic) -> None:
    # A proxy from the environment becomes a mounted transport with a pool of its own; it is closed alike.
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        mounts = {f"http://127.0.0.1:{relay.port}": httpx.AsyncHTTPTransport()}
        async with httpx.AsyncClient(mounts=mounts) as client:
            assert (
                await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
            ).status_code == 200
            assert await close_idle_connections(client) == 1
            assert await close_idle_connections(client) == 0
            assert (
                await client.post(f"{relay.url}/v1/messages", json=BODY, headers=HEADERS)
            ).status_code == 200
    assert relay.connections == 2


def test_a_quota_poll_after_a_sleep_does_not_wait_on_a_forgotten_connection(
    auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    # The engine's own client, end to end: `/status?refresh=1` polls the ChatGPT usage endpoint through a relay that
    # forgets silently. Before, the poll after the wake-up went out on the kept connection and nothing came back.
    with ForgetfulRelay("127.0.0.1", codex.port) as relay:
        env = {"HEADWAY_CHATGPT_BASE_URL": relay.url, "HEADWAY_OPENAI_AUTH_URL": auth.url}
        with start_gateway(env=env) as gw:
            add_chatgpt(gw, auth, "acct-1", "work")
            night = Night()
            gw.services.engine.after_sleep.sleep_watch = night.watch()
            headers = {"authorization": f"Bearer {gw.key}"}

            def polls() -> int:
                return sum(1 for r in codex.requests if r.path.endswith("/wham/usage"))

            assert httpx.get(f"{gw.url}/status?refresh=1", headers=headers, timeout=30).status_code == 200
            assert polls() == 1 and relay.connections == 1
            relay.forget(silently=True)
            night.slept = 8 * 3600.0
            started = time.monotonic()
            status = httpx.get(f"{gw.url}/status?refresh=1", headers=headers, timeout=30)
            took = time.monotonic() - started
    assert status.status_code == 200
    assert polls() == 2, "the poll after the sleep never reached the backend"
    assert relay.swallowed == 0 and relay.connections == 2
    assert took < 5.0, took
