"""SharedState against a real redis-server: two links (two replicas' books) on one loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from proxy.routing.spend import SpendBook, utc_day
from proxy.routing.state import RuntimeState
from proxy.secrets.members import Member, MemberBook
from proxy.shared.admin import MemberAdmin
from proxy.shared.link import SharedState
from proxy.shared.records import Names
from proxy.tasks import TaskGroup
from tests.support.redis_server import RedisServer


@dataclass
class Replica:
    state: RuntimeState = field(default_factory=RuntimeState)
    members: MemberBook = field(default_factory=MemberBook)
    spend: SpendBook = field(default_factory=SpendBook)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    members_changed: asyncio.Event = field(default_factory=asyncio.Event)
    link: SharedState | None = None


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Await a condition the links make true in the background (bounded: a hang fails, no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[Replica, Replica]]:
    tasks = TaskGroup()
    pair = (Replica(), Replica())
    for index, replica in enumerate(pair):
        replica.link = SharedState(
            redis_server.url,
            Names("test"),
            replica.state,
            replica.members,
            replica.spend,
            pin_ttl=lambda: 3600.0,
            on_change=replica.changed.set,
            on_members=replica.members_changed.set,
            replica=f"r{index}",
            max_backoff=0.2,
        )
        replica.link.attach()
        tasks.spawn(replica.link.run(), name=f"link-{index}")
    for replica in pair:
        assert replica.link is not None
        await asyncio.wait_for(replica.link.connected_event.wait(), 10)
    try:
        yield pair
    finally:
        await tasks.close(timeout=3.0)


async def test_a_cooldown_on_one_replica_reaches_the_other(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    until = time.time() + 60
    a.state.health.cool_down("main", until, "429 from upstream")
    await asyncio.wait_for(b.changed.wait(), 5)
    block = b.state.health.block("main", time.time())
    assert block is not None and block.state == "cooling_down" and block.until == until
    assert b.state.dirty


async def test_quota_auth_and_pins_travel_and_nothing_is_told_back(replicas: tuple[Replica, Replica]) -> None:
    from proxy.routing.quota import Window

    a, b = replicas
    now = time.time()
    a.state.quota.update("main", [Window("tokens", limit=100, remaining=5, resets_at=now + 60)], now)
    a.state.health.fail_auth("backup", "401: invalid x-api-key", "fp1")
    a.state.router.pin("session-1", "main", now)
    await until(
        lambda: (
            b.state.quota.get("main") is not None
            and b.state.health.block("backup", now) is not None
            and b.state.router.pinned("session-1", now, 3600) == "main"
        )
    )
    window = b.state.quota.get("main").windows[0]  # type: ignore[union-attr]
    assert window.remaining == 5
    assert b.state.health.block("backup", now).state == "auth_failed"  # type: ignore[union-attr]
    # B took them in without telling them back: A published three changes, B none.
    assert a.link is not None and b.link is not None
    await until(lambda: a.link.published == 3)  # type: ignore[union-attr]
    assert b.link.published == 0
    # The key is fixed on B: the clearing travels back and lifts A's block.
    b.state.health.ok("backup", time.time())
    await until(lambda: a.state.health.block("backup", time.time()) is None)


async def test_members_and_spend(replicas: tuple[Replica, Replica], redis_server: RedisServer) -> None:
    a, b = replicas
    member, key = Member.create("alice", daily_usd=5)
    admin = MemberAdmin(redis_server.url, Names("test"))
    try:
        admin.put(member)
        await until(lambda: a.members.find(key) is not None and b.members.find(key) is not None)
        admin.remove("alice")
        await until(lambda: a.members.find(key) is None and b.members.find(key) is None)
    finally:
        admin.close()
    a.spend.add("bob", 1.5)
    b.spend.add("bob", 2.0)
    await until(lambda: a.spend.today("bob") == 3.5 and b.spend.today("bob") == 3.5)


async def test_redis_down_then_back_resyncs_both_ways(
    replicas: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, b = replicas
    assert a.link is not None and b.link is not None
    redis_server.kill()
    await until(lambda: not a.link.connected and not b.link.connected)  # type: ignore[union-attr]
    # Changes while Redis is away stay local, and are never lost.
    until_a = time.time() + 120
    a.state.health.cool_down("main", until_a, "429 while Redis was down")
    assert b.state.health.block("main", time.time()) is None
    redis_server.start()  # a fresh, empty Redis on the same port
    await until(lambda: b.state.health.block("main", time.time()) is not None, timeout=10)
    assert b.state.health.accounts["main"].cooldown_until == until_a
    assert a.link.last_error is None and a.link.resyncs >= 2


async def test_unreachable_redis_never_blocks_the_books(tmp_path: object) -> None:
    from tests.support.redis_server import free_port

    state = RuntimeState()
    link = SharedState(
        f"redis://127.0.0.1:{free_port()}/0",
        Names("test"),
        state,
        MemberBook(),
        SpendBook(),
        pin_ttl=lambda: 60.0,
        on_change=lambda: None,
        on_members=lambda: None,
        max_backoff=0.1,
    )
    link.attach()
    tasks = TaskGroup()
    tasks.spawn(link.run(), name="link")
    try:
        await until(lambda: link.last_error is not None)
        started = time.perf_counter()
        for i in range(1000):
            state.health.cool_down(f"a{i % 10}", time.time() + 60 + i, "429")
        assert time.perf_counter() - started < 5  # a generous bound for a hang: the books never wait on Redis
        assert link.stats()["pending"] == 10 and not link.connected
    finally:
        await tasks.close(timeout=2.0)


def test_spend_day_keys() -> None:
    assert utc_day(0) == "1970-01-01"


async def test_a_replica_that_connects_later_catches_up_from_redis(
    replicas: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, _ = replicas
    now = time.time()
    a.state.health.cool_down("main", now + 90, "429")
    for i in range(3):
        a.state.router.pin(f"session-{i}", "main", now)
    assert a.link is not None
    await until(lambda: a.link.published >= 4 and not a.link.stats()["pending"])  # type: ignore[union-attr]
    late = Replica()
    late.link = SharedState(
        redis_server.url,
        Names("test"),
        late.state,
        late.members,
        late.spend,
        pin_ttl=lambda: 3600.0,
        on_change=late.changed.set,
        on_members=late.members_changed.set,
        replica="late",
    )
    tasks = TaskGroup()
    tasks.spawn(late.link.run(), name="link-late")
    try:
        await asyncio.wait_for(late.link.connected_event.wait(), 10)
        assert late.state.health.block("main", time.time()) is not None
        assert [late.state.router.pinned(f"session-{i}", now, 3600) for i in range(3)] == ["main"] * 3
    finally:
        await tasks.close(timeout=3.0)
