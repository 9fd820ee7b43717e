"""Team mode's link to Redis: every replica sees the others' cooldowns, quota, pins, members and spend.

Local state stays the truth on the hot path: a request reads only the engine's own books, and a change to them
costs one dict write here (the books' listeners). In the background, one task per connection publishes what
changed (pipelined: the keys that let a late replica catch up, then a message on the channel) and another takes in
what the other replicas publish. Redis being slow or gone never fails or delays a request: the link logs it once,
keeps collecting changes, reconnects with backoff, and on every (re)connect first subscribes, then reads
everything kept in Redis, then publishes what it holds itself — so state resyncs both ways when Redis returns.

The engine owns one :class:`SharedState` and runs :meth:`SharedState.run` as a named task; every method runs on the
engine loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.routing.health import AccountHealth
from proxy.routing.quota import QuotaSnapshot
from proxy.routing.spend import SpendBook
from proxy.routing.state import RuntimeState
from proxy.secrets.members import Member, MemberBook, MembersError
from proxy.shared.records import (
    Names,
    apply_health,
    apply_member,
    apply_pin,
    apply_quota,
    apply_spend,
    encode_message,
    health_record,
    parse_message,
    redacted_url,
)
from proxy.tasks import TaskGroup

__all__ = ["SharedState"]

log = logging.getLogger("headway.shared")

_SPEND_DAYS_KEPT = 3 * 86400
_MAX_PINS_READ = 10_000


def connect(url: str) -> aioredis.Redis:
    """An asyncio client that fails fast and never retries on its own (the link reconnects and resyncs)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name="headway",
    )


class SharedState:
    def __init__(
        self,
        url: str,
        names: Names,
        state: RuntimeState,
        members: MemberBook,
        spend: SpendBook,
        *,
        pin_ttl: Callable[[], float],
        on_change: Callable[[], None],
        on_members: Callable[[], None],
        replica: str | None = None,
        max_backoff: float = 2.0,
        linger: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.names = names
        self._state = state
        self._members = members
        self._spend = spend
        self._pin_ttl = pin_ttl
        self._on_change = on_change
        self._on_members = on_members
        self.replica = replica or uuid.uuid4().hex[:12]
        self._max_backoff = max_backoff
        self._clock = clock
        self._pending: dict[tuple[str, str], Any] = {}
        self._wake = asyncio.Event()
        self._linger = linger
        self._flush_timer: asyncio.TimerHandle | None = None
        self._auth_seen: dict[str, float] = {}
        self.connected = False
        self.connected_event = asyncio.Event()  # set while connected and in sync (tests and status await it)
        self.last_error: str | None = None
        self.published = 0
        self.applied = 0
        self.resyncs = 0

    # ------------------------------------------------------------- the books' listeners (hot path: O(1), no I/O)

    def attach(self) -> None:
        self._state.health.listener = self._health_changed
        self._state.quota.listener = self._quota_changed
        self._state.router.listener = self._pinned
        self._spend.listener = self._spent

    def detach(self) -> None:
        self._state.health.listener = None
        self._state.quota.listener = None
        self._state.router.listener = None
        self._spend.listener = None

    def _queue(self, key: tuple[str, str], value: Any) -> None:
        """A change the other replicas should see at once (health, pins): the writer wakes now."""
        self._pending[key] = value
        self._wake.set()

    def _queue_soon(self, key: tuple[str, str], value: Any) -> None:
        """A change that may wait up to ``linger`` seconds (quota snapshots, spend): one publish per account per
        ``linger`` however many requests — a quota snapshot changes with every answer, routing needs its trend."""
        self._pending[key] = value
        if self._flush_timer is None and not self._wake.is_set():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._wake.set()
                return
            self._flush_timer = loop.call_later(self._linger, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_timer = None
        self._wake.set()

    def _health_changed(self, account_id: str, health: AccountHealth) -> None:
        now = self._clock()
        self._auth_seen[account_id] = now
        self._queue(("health", account_id), health_record(health, now))

    def _quota_changed(self, snapshot: QuotaSnapshot) -> None:
        self._queue_soon(("quota", snapshot.account_id), snapshot)  # frozen: serialized by the writer

    def _pinned(self, session_id: str, account_id: str, at: float) -> None:
        self._queue(("pin", session_id), [account_id, at])

    def _spent(self, day: str, member: str, usd: float) -> None:
        key = ("spend", f"{day}|{member}")
        self._queue_soon(key, float(self._pending.get(key, 0.0)) + usd)

    # ------------------------------------------------------------- background

    def stats(self) -> dict[str, Any]:
        return {
            "url": redacted_url(self.url),
            "namespace": self.names.namespace,
            "replica": self.replica,
            "connected": self.connected,
            "last_error": self.last_error,
            "pending": len(self._pending),
            "published": self.published,
            "applied": self.applied,
            "resyncs": self.resyncs,
        }

    async def run(self) -> None:
        """Stay connected for good: connect, resync, publish and listen; on any failure log, back off, retry."""
        backoff = 0.1
        sessions = self.resyncs
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not end team mode for good: log it, reconnect
                log.exception("shared state link failed unexpectedly")
                problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = "the connection ended"
            if self.connected or problem != self.last_error:
                log.warning(
                    "shared state at %s unreachable (%s); serving from local state, reconnecting",
                    redacted_url(self.url),
                    problem,
                )
            self.connected = False
            self.connected_event.clear()
            self.last_error = problem
            if self.resyncs != sessions:  # it had connected: start again from a short wait
                sessions, backoff = self.resyncs, 0.1
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)

    async def _session(self) -> None:
        client = connect(self.url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        tasks = TaskGroup()
        try:
            await pubsub.subscribe(self.names.channel)  # first: nothing published from now on is missed
            await self._resync(client)
            was = self.last_error
            self.connected = True
            self.last_error = None
            self.connected_event.set()
            self.resyncs += 1
            if was is not None:
                log.info("shared state at %s is back; resynced", redacted_url(self.url))
            else:
                log.info("shared state at %s connected", redacted_url(self.url))
            reader = tasks.spawn(_until_lost(self._read(pubsub)), name="headway-shared-read")
            writer = tasks.spawn(_until_lost(self._write(client)), name="headway-shared-write")
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                lost = task.result()  # a bug re-raises here; a lost connection is returned
                if lost is not None:
                    raise lost
        finally:
            self.connected = False
            self.connected_event.clear()
            await tasks.close(timeout=1.0)
            for closing in (pubsub.aclose(), client.aclose()):
                try:
                    await asyncio.wait_for(closing, 2.0)
                except (RedisError, OSError, TimeoutError):
                    pass

    async def _resync(self, client: aioredis.Redis) -> None:
        """Take in everything kept in Redis, then publish everything this replica holds."""
        names = self.names
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(names.health)
        pipe.hgetall(names.quota)
        pipe.hgetall(names.members)
        pipe.exists(names.members_written)
        pipe.hgetall(names.spend(self._spend.totals()[0]))
        health, quota, members, members_written, spend = await pipe.execute()
        keys: list[Any] = []
        async for key in client.scan_iter(match=names.pin_pattern, count=500):
            keys.append(key)
            if len(keys) >= _MAX_PINS_READ:
                break
        pins: list[tuple[str, Any]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for key, value in zip(chunk, await client.mget(chunk), strict=True):
                if value is not None:
                    pins.append((_text(key).removeprefix(names.pin("")), _json(value)))
        changed = False
        for account_id, value in health.items():
            changed |= apply_health(self._state.health, _text(account_id), _json(value), self._auth_seen)
        for value in quota.values():
            changed |= apply_quota(self._state.quota, _json(value))
        for session_id, value in pins:
            apply_pin(self._state.router, session_id, value)
        day = self._spend.totals()[0]
        for member, value in spend.items():
            apply_spend(self._spend, f"{day}|{_text(member)}", _text(value))
        if members_written:
            before = {m.name: m for m in self._members.all()}
            self._members.replace(
                m
                for m in (_member(v) for v in members.values())
                if m is not None  # an entry this version cannot read is left out, not fatal
            )
            if {m.name: m for m in self._members.all()} != before:
                self._on_members()
        elif len(self._members):
            # A fresh Redis (or one that lost its data): this replica's members seed it.
            seed = client.pipeline(transaction=False)
            for member in self._members.all():
                seed.hset(names.members, member.name, _dumps(member.to_json()))
            seed.set(names.members_written, str(self._clock()))
            await seed.execute()
            log.info("shared state had no members; seeded it with this replica's %d", len(self._members))
        if changed:
            self._state.dirty = True
            self._on_change()
        # Publish what this replica holds (changes made while Redis was away included).
        now = self._clock()
        for account_id, record in self._state.health.accounts.items():
            if record.cooldown_until is not None and record.cooldown_until > now:
                self._pending.setdefault(("health", account_id), health_record(record, now))
            elif record.auth_failed or record.needs_login:
                at = self._auth_seen.get(account_id, now)
                self._pending.setdefault(("health", account_id), health_record(record, at))
        for snapshot in self._state.quota.snapshots.values():
            self._pending.setdefault(("quota", snapshot.account_id), snapshot)
        self._wake.set()

    async def _write(self, client: aioredis.Redis) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            batch, self._pending = self._pending, {}
            if not batch:
                continue
            try:
                await self._publish(client, batch)
            except BaseException:
                for key, value in batch.items():  # newer changes made meanwhile win; spend adds up
                    if key[0] == "spend":
                        self._pending[key] = float(self._pending.get(key, 0.0)) + float(value)
                    else:
                        self._pending.setdefault(key, value)
                raise

    async def _publish(self, client: aioredis.Redis, batch: dict[tuple[str, str], Any]) -> None:
        names = self.names
        pipe = client.pipeline(transaction=False)
        spends: dict[int, str] = {}  # index of an HINCRBYFLOAT's result → its "day|member"
        commands = 0
        for (kind, key), value in batch.items():
            if kind == "health":
                pipe.hset(names.health, key, _dumps(value))
            elif kind == "quota":
                value = value.to_json() if isinstance(value, QuotaSnapshot) else value
                pipe.hset(names.quota, key, _dumps(value))
            elif kind == "pin":
                pipe.set(names.pin(key), _dumps(value), ex=max(60, int(self._pin_ttl())))
            elif kind == "spend":
                day, _, member = key.partition("|")
                pipe.hincrbyfloat(names.spend(day), member, float(value))
                pipe.expire(names.spend(day), _SPEND_DAYS_KEPT)
                spends[commands] = key
                commands += 2
                continue
            pipe.publish(names.channel, encode_message(self.replica, kind, key, value))
            commands += 2
        results = await pipe.execute()
        if spends:
            tell = client.pipeline(transaction=False)
            for index, key in spends.items():
                total = float(results[index])
                apply_spend(self._spend, key, total)  # the other replicas' share, added up in Redis
                tell.publish(names.channel, encode_message(self.replica, "spend", key, total))
            await tell.execute()
        self.published += len(batch)

    async def _read(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            self.take(message.get("data", b""))

    def take(self, data: bytes | str) -> bool:
        """Apply one channel message from another replica; True when something local changed."""
        message = parse_message(data)
        if message is None or message.replica == self.replica:
            return False
        changed = False
        if message.kind == "health":
            changed = apply_health(self._state.health, message.key, message.value, self._auth_seen)
        elif message.kind == "quota":
            changed = apply_quota(self._state.quota, message.value)
        elif message.kind == "pin":
            apply_pin(self._state.router, message.key, message.value)
        elif message.kind == "spend":
            apply_spend(self._spend, message.key, message.value)
        elif message.kind == "member":
            if apply_member(self._members, message.key, message.value):
                self.applied += 1
                self._on_members()
            return True
        self.applied += 1
        if changed:
            self._state.dirty = True
            self._on_change()
        return changed


async def _until_lost(work: Coroutine[Any, Any, None]) -> RedisError | OSError | None:
    """Run a session's reader or writer; a lost connection is returned (the session ends and reconnects), not
    raised, so the task group does not log an expected outage as a failed task."""
    try:
        await work
    except (RedisError, OSError) as exc:
        return exc
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json(value: Any) -> Any:
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _member(value: Any) -> Member | None:
    try:
        return Member.from_json(_json(value))
    except MembersError:
        return None
