"""SecretCache: a key that is there is cached for a while; a key that is not there is looked up again soon; and a key
replaced with `headway accounts set-key` (another process) is used by a running gateway on the next request."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import httpx
import pytest

from proxy.secrets.cache import SecretCache
from tests.fakes import FakeAnthropic
from tests.support.gateway import RunningGateway, e2e_keychain, run_cli, start_gateway, wait_until

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
OLD_KEY = "sk-ant-api03-" + "o" * 40
NEW_KEY = "sk-ant-api03-" + "n" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keychain:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads = 0

    def read(self, account_id: str) -> str | None:
        self.reads += 1
        return self.values.get(account_id)


def test_a_missing_secret_is_looked_up_again_within_a_couple_of_seconds() -> None:
    clock, keychain = Clock(), Keychain()
    cache = SecretCache(keychain.read, clock=clock)

    async def scenario() -> None:
        assert await cache.get("a") is None  # the account's settings landed before its key
        keychain.values["a"] = "sk-1"  # … and the key a moment later
        clock.now += 2.0
        assert await cache.get("a") == "sk-1", "a missing key stayed 'missing' for longer than 2 s"
        assert cache.missing() == set()

    asyncio.run(scenario())


def test_a_missing_secret_is_not_read_on_every_request() -> None:
    clock, keychain = Clock(), Keychain()
    cache = SecretCache(keychain.read, clock=clock)

    async def scenario() -> None:
        for _ in range(5):
            assert await cache.get("a") is None
            clock.now += 0.1
        assert keychain.reads == 1
        assert cache.missing() == {"a"}

    asyncio.run(scenario())


def test_a_present_secret_keeps_the_longer_ttl() -> None:
    clock, keychain = Clock(), Keychain()
    keychain.values["a"] = "sk-1"
    cache = SecretCache(keychain.read, clock=clock)

    async def scenario() -> None:
        assert await cache.get("a") == "sk-1"
        keychain.values["a"] = "sk-2"  # changed behind Headway's back
        clock.now += 299.0
        assert await cache.get("a") == "sk-1" and keychain.reads == 1
        clock.now += 2.0
        assert await cache.get("a") == "sk-2"
        cache.invalidate("a")  # what a settings change or saved tokens do
        keychain.values["a"] = "sk-3"
        assert await cache.get("a") == "sk-3"

    asyncio.run(scenario())


def test_an_hour_of_steady_requests_reads_a_secret_twelve_times() -> None:
    """Each read opens a D-Bus connection to the user's keyring daemon; with a 15 s lifetime it was 240 an hour."""
    clock, keychain = Clock(), Keychain()
    keychain.values["a"] = "sk-1"
    cache = SecretCache(keychain.read, clock=clock)

    async def scenario() -> None:
        for _ in range(7200):  # a request every half second
            assert await cache.get("a") == "sk-1"
            clock.now += 0.5

    asyncio.run(scenario())
    assert keychain.reads == 12


def test_a_missing_secret_is_looked_up_ever_less_often_and_found_once_it_comes() -> None:
    clock, keychain = Clock(), Keychain()
    cache = SecretCache(keychain.read, clock=clock)

    async def scenario() -> list[float]:
        read_at = []
        for _ in range(6000):  # ten minutes, a request every 0.1 s
            reads = keychain.reads
            assert await cache.get("a") is None
            if keychain.reads != reads:
                read_at.append(clock.now)
            clock.now += 0.1
        return read_at

    read_at = asyncio.run(scenario())
    gaps = [round(b - a) for a, b in itertools.pairwise(read_at)]
    assert gaps[:7] == [1, 2, 4, 8, 16, 32, 60] and set(gaps[7:]) == {60}  # it was every second: 600 reads
    assert len(read_at) == 15

    async def it_comes() -> None:
        keychain.values["a"] = "sk-late"
        clock.now += 60.0
        assert await cache.get("a") == "sk-late"
        cache.invalidate("a")  # a settings change starts over at one second
        keychain.values.pop("a")
        assert await cache.get("a") is None
        keychain.values["a"] = "sk-again"
        clock.now += 1.0
        assert await cache.get("a") == "sk-again"

    asyncio.run(it_comes())


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.mark.keychain
@pytest.mark.timeout(120)
def test_set_key_from_the_cli_is_used_by_a_running_gateway_on_the_next_request(
    anthropic: FakeAnthropic,
) -> None:
    from proxy.config.paths import Paths

    e2e_keychain(Paths.from_env())  # the real Secret Service (scripts/test), shared with the CLI subprocess
    gw: RunningGateway = start_gateway(anthropic_url=anthropic.url)
    try:
        account = gw.add("anthropic", "main", OLD_KEY)
        with httpx.Client(timeout=10) as client:
            r = client.post(f"{gw.url}/v1/messages", json=MESSAGE, headers=gw.headers())
            assert r.status_code == 200, r.text
            assert anthropic.api_key(anthropic.last_request) == OLD_KEY

            before = gw.services.engine.settings
            done = run_cli("accounts", "set-key", account.id, "--api-key-stdin", input=NEW_KEY + "\n")
            assert done.returncode == 0, done.stderr
            # set-key records the replacement in the settings file; the engine applies that change (the watcher,
            # within a second or so) and reads the key again. Waiting for it is bounded well below the cache's 15 s.
            wait_until(lambda: gw.services.engine.settings != before, timeout=8)
            r = client.post(f"{gw.url}/v1/messages", json=MESSAGE, headers=gw.headers())
            assert r.status_code == 200, r.text
            assert anthropic.api_key(anthropic.last_request) == NEW_KEY, "the gateway used its cached old key"
    finally:
        gw.stop()
