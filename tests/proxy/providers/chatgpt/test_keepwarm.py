"""ChatGPT keep-warm across a sleep: idle time is the wall clock's, because the backend evicts while a laptop sleeps.

A clock pair moved the way a sleep moves it (the wall clock on, the monotonic one standing still) drives the feature:
after a night nothing is replayed; after a short sleep the shadow comes in time for the eviction, counting the sleep.
"""

from __future__ import annotations

import asyncio
import time

from proxy.config.settings import Account, Settings
from proxy.providers.base import Incoming
from proxy.providers.chatgpt.keepwarm import KeepWarm
from proxy.providers.registry import provider_features
from proxy.routing.sessions import SessionInfo

WARM_AFTER = 270.0
ACCOUNT = Account(id="work", kind="chatgpt", label="work", chatgpt_account_id="acct-1")


class Wall:
    """The wall clock, moved by hand: time awake and time asleep alike (the monotonic clock would miss the sleep)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _settings() -> Settings:
    settings = Settings()
    settings.chatgpt.keep_warm = True
    settings.accounts.append(ACCOUNT)
    return settings


def _incoming() -> Incoming:
    body = {"model": "gpt-5", "input": [{"role": "user", "content": "long history"}], "stream": True}
    return Incoming(
        method="POST",
        path="/v1/responses",
        query="",
        headers={},
        body=b"{}",
        json=body,
        protocol="openai-responses",
        family="openai",
        session=SessionInfo(session_id="s-main"),
    )


def _feature(clock: Wall, sent: list[Incoming]) -> KeepWarm:
    settings = _settings()

    async def send(incoming: Incoming, account: Account) -> bool:
        sent.append(incoming)
        return True

    feature = KeepWarm(settings=lambda: settings, send=send, warm_after=WARM_AFTER, clock=clock)
    feature.on_success(_incoming(), ACCOUNT)
    return feature


def test_after_a_night_asleep_an_evicted_session_is_not_replayed() -> None:
    wall, sent = Wall(), []
    feature = _feature(wall, sent)
    wall.now += 120.0  # two minutes of work after the last turn, then the lid closes
    wall.now += 8 * 3600.0  # the night
    wall.now += 300.0  # five minutes awake
    assert asyncio.run(feature.tick()) == 0
    assert sent == []
    assert feature.due() == []  # forgotten for good: past the idle cap


def test_after_a_short_sleep_the_shadow_is_due_before_the_eviction_counting_the_sleep() -> None:
    # The backend evicts about 5 minutes after the last turn, sleep or not: the shadow is due 270 s after it in wall
    # time. On the monotonic clock it would come 3 minutes later, after the eviction it was meant to prevent.
    wall, sent = Wall(), []
    feature = _feature(wall, sent)
    wall.now += 60.0  # awake
    wall.now += 180.0  # asleep
    wall.now += 20.0  # awake again: 260 s since the turn
    assert asyncio.run(feature.tick()) == 0
    wall.now += 15.0  # 275 s
    assert asyncio.run(feature.tick()) == 1
    assert len(sent) == 1


def test_the_gateways_keep_warm_counts_wall_clock_time() -> None:
    # What the engine builds (providers/registry.py), with the default clock: the wall clock, which a sleep moves.
    (feature,) = provider_features(settings=_settings, send_shadow=_never, keep_warm_after=WARM_AFTER)
    assert isinstance(feature, KeepWarm)
    assert feature._clock is time.time


async def _never(incoming: Incoming, account: Account) -> bool:
    raise AssertionError("no shadow expected")
