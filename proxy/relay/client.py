"""The gateway's side of the relay: per-session base bodies, patches, transports, savings.

    RelayClient.send(client, out, session_id)
        relay off / no session id / body too small or too large ─► None (the caller sends directly)
        an upstream the Worker was not deployed for (relay.upstreams) ─► None: direct until setup runs again
        pick the session's lane (the base body this one shares most with) ─► patch, or full sync
        HTTP POST /v1/relay  or  the session's WebSocket (one per session, requests queued)
            409 (the Worker's base differs, or the hash does not match) ─► resend as a full sync, once
            any failure before the response starts ─► RelayUnavailable (the caller goes direct if it may)
        ─► the upstream's response, streaming, with RelayTrip facts in response.extensions["headway.relay"]

Memory is bounded three ways: sessions (LRU), total bytes of base bodies, and idle time. Nothing here blocks the
loop for long: the keychain is read in a thread and cached; large envelopes are compressed in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import hashlib
import json
import logging
import secrets as pysecrets
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import httpx

from proxy.config.settings import RelaySettings
from proxy.providers.base import Outgoing
from proxy.relay.channel import ACCEPT_TIMEOUT, WS_IDLE_CLOSE, Channel, ChannelBody, Item, describe
from proxy.relay.lanes import Lane, SessionBook
from proxy.relay.patch import diff, sha256_tag
from proxy.relay.protocol import (
    ERROR_HEADER,
    MARK_HEADER,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    RELAY_PATH,
    RELAY_SECRET,
    SESSION_HEADER,
    TOKEN_HEADER,
    WS_PATH,
    encode_envelope,
)
from proxy.relay.trips import Mode, RelayTrip, TripCounter, relay_stats
from proxy.relay.upstreams import origin_of
from proxy.relay.websocket import WebSocketError
from proxy.secrets.cache import KEYCHAIN_TTL, SecretCache
from proxy.tasks import TaskGroup
from proxy.wire.response_body import read_capped
from proxy.wire.sleep_watch import SleepWatch

__all__ = ["RelayClient", "RelayTrip", "RelayUnavailable"]

log = logging.getLogger("headway.relay")

_MAX_BODY = 32 * 1024 * 1024  # the Worker's MAX_BODY: larger bodies go direct
_PATCH_WORTH = 0.9  # a patch costing more than this share of the body is sent as a full sync instead
_THREAD_FROM = 256 * 1024  # compress envelopes at least this large in a thread
_WS_MAX_MESSAGE = 1024 * 1024  # Cloudflare's WebSocket message limit; larger envelopes go by HTTP
_ERROR_BODY_LIMIT = 16 * 1024
_RECENT = 50


class RelayUnavailable(Exception):
    """The relay failed before the response started. The caller may go direct when ``fallback_to_direct``.

    ``upstream_may_have_seen``: the failure came after the Worker may have called the provider (a timeout waiting
    for the answer, a socket lost after the Worker accepted the request); going direct may then send it twice.
    """

    def __init__(
        self,
        message: str,
        *,
        fallback_to_direct: bool = True,
        code: str | None = None,
        status: int | None = None,
        upstream_may_have_seen: bool = False,
    ) -> None:
        super().__init__(message)
        self.fallback_to_direct = fallback_to_direct
        self.code = code
        self.status = status
        self.upstream_may_have_seen = upstream_may_have_seen


class _Conflict(Exception):
    """The Worker answered 409: its base body differs from ours, or the rebuilt body's hash did not match."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class RelayClient:
    """Sends agent requests through the user's relay Worker. One per engine; call from the engine loop only."""

    def __init__(
        self,
        settings: Callable[[], RelaySettings],
        read_secret: Callable[[], str | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        secret_ttl: float = KEYCHAIN_TTL,
        sleep_watch: SleepWatch | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        # Sockets opened before the machine last slept are not used again (proxy/wire/sleep_watch.py): the first
        # request after a wake-up would otherwise go out on a socket a router forgot, and wait to learn it.
        self.sleep_watch = SleepWatch() if sleep_watch is None else sleep_watch
        # Read off the loop and kept 5 minutes (each read costs the user's keyring daemon a D-Bus connection;
        # docs/architecture.md, "The keychain is asked rarely"); a missing one is looked for again after a second,
        # then twice as long each time. A secret `headway relay setup` replaced is dropped at the Worker's first 401.
        self._secrets = SecretCache(lambda _name: read_secret(), ttl=secret_ttl, clock=clock)
        self._book = SessionBook(clock)
        self._channels: dict[str, Channel] = {}
        self._tasks = TaskGroup()
        self._config: tuple[str | None, str, str] | None = None
        self._totals = TripCounter()
        self._per_session: collections.OrderedDict[str, TripCounter] = collections.OrderedDict()
        self._recent: collections.deque[RelayTrip] = collections.deque(maxlen=_RECENT)
        self._last_error: str | None = None
        self._warned_no_secret = False
        self._warned_unbound: set[str] = set()
        self._bound: list[str] | None = None
        self._snapshot: dict[str, Any] = {}
        self._publish()

    # ------------------------------------------------------------------ the boundary

    async def send(
        self, client: httpx.AsyncClient, out: Outgoing, session_id: str | None
    ) -> httpx.Response | None:
        """The upstream's response through the relay (streaming), or None when the relay is not for this request.

        Raises RelayUnavailable when the relay failed before the response started; nothing reached the agent then.
        """
        settings = self._settings()
        if not settings.enabled or not settings.url or not session_id:
            return None
        if not settings.min_body_bytes <= len(out.content) <= _MAX_BODY:
            return None
        if settings.upstreams != self._bound:
            self._bound = settings.upstreams
            self._warned_unbound.clear()
        if settings.upstreams is not None and origin_of(out.url) not in {
            origin_of(url) for url in settings.upstreams
        }:
            self._note_unbound(out.url)
            return None
        secret = await self._secret()
        if not secret:
            if not self._warned_no_secret:
                log.warning(
                    "the relay is on but its secret is not in the keychain; run `headway relay setup`"
                )
                self._warned_no_secret = True
            return None
        await self._check_config(settings, secret)
        await self._sweep(settings)
        started = time.perf_counter()
        session = self._book.get(session_id)
        lane = self._book.choose(session, out.url, out.content)
        sent = 0
        resynced = False
        next_hash = sha256_tag(out.content)
        try:
            for attempt in range(2):
                mode, header, payload = self._plan(lane, out, next_hash, full=attempt > 0)
                envelope = await self._encode(header, payload)
                sent += len(envelope)
                try:
                    if settings.transport == "websocket":
                        response = await self._via_socket(
                            client, settings, secret, session.key, header["id"], envelope
                        )
                    else:
                        response = await self._via_http(client, settings, secret, session.key, envelope)
                except _Conflict as conflict:
                    log.info(
                        "relay: session %s lane %s out of sync (%s); full sync",
                        session_id[:12],
                        header["lane"],
                        conflict.code,
                    )
                    resynced = True
                    if lane is not None:
                        lane.reset()
                    if attempt == 0:
                        continue
                    message = f"the relay still disagreed after a full sync ({conflict.code})"
                    raise self._unavailable(settings, message, "conflict", 409) from None
                break
        except RelayUnavailable as exc:
            self._record_failure(session_id, sent, str(exc))
            self._publish()
            raise
        finally:
            if lane is not None:
                lane.busy = False
        if lane is not None and mode != "oneshot":
            lane.body, lane.hash, lane.revision = out.content, next_hash, int(header["revision"])
        trip = RelayTrip(
            session_id=session_id,
            mode=mode,
            transport=settings.transport,
            sent_bytes=sent,
            body_bytes=len(out.content),
            resynced=resynced,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        self._record(trip)
        response.extensions["headway.relay"] = trip
        await self._sweep(settings)
        self._publish()
        return response

    def _note_unbound(self, url: str) -> None:
        origin = origin_of(url) or "?"
        if origin not in self._warned_unbound:
            self._warned_unbound.add(origin)
            self._publish()
            log.warning(
                "the relay Worker was not deployed for %s: requests there go direct until `headway relay setup` "
                "runs again",
                origin,
            )

    def stats(self) -> dict[str, Any]:
        """Bytes sent to the relay vs full body bytes, per session and in total, for `headway status` and the page.

        Safe from any thread: the counters are published as a fresh snapshot after every request.
        """
        return relay_stats(self._settings(), copy.deepcopy(self._snapshot))

    def _publish(self) -> None:
        self._snapshot = {
            "totals": self._totals.as_dict(),
            "sessions": [
                {"session_id": sid, **c.as_dict()} for sid, c in reversed(self._per_session.items())
            ],
            "recent": [asdict(trip) for trip in reversed(self._recent)],
            "base_bodies": {"sessions": len(self._book.sessions), "bytes": self._book.size},
            "open_sockets": sum(1 for c in self._channels.values() if c.open),
            "last_error": self._last_error,
            "unbound_upstreams": sorted(self._warned_unbound),
        }

    def forget(self) -> None:
        """Drop every base body (the next request of each session is a full sync)."""
        self._book.sessions.clear()

    async def aclose(self, timeout: float = 2.0) -> None:
        for channel in list(self._channels.values()):
            with contextlib.suppress(Exception):
                await channel.drop()
        self._channels.clear()
        await self._tasks.close(timeout)

    # ------------------------------------------------------------------ planning

    def _plan(
        self, lane: Lane | None, out: Outgoing, next_hash: str, *, full: bool
    ) -> tuple[Mode, dict[str, Any], bytes]:
        header: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "request",
            "id": pysecrets.token_hex(8),
            "lane": lane.id if lane is not None else "oneshot",
            "next_hash": next_hash,
            "upstream": {
                "url": out.url,
                "method": out.method,
                "headers": [[k, v] for k, v in out.headers.items()],
            },
        }
        if lane is None:
            header.update(mode="oneshot", revision=0)
            return "oneshot", header, out.content
        if not full and lane.body is not None and lane.hash is not None:
            patch = diff(lane.body, out.content)
            if patch.cost < _PATCH_WORTH * len(out.content):
                header.update(
                    mode="patch",
                    revision=lane.revision + 1,
                    base_hash=lane.hash,
                    base_revision=lane.revision,
                    ops=[list(op) for op in patch.ops],
                )
                return "patch", header, patch.inserts
        header.update(mode="full_sync", revision=lane.revision + 1)
        return "full_sync", header, out.content

    @staticmethod
    async def _encode(header: dict[str, Any], payload: bytes) -> bytes:
        if len(payload) >= _THREAD_FROM:
            return await asyncio.to_thread(encode_envelope, header, payload)
        return encode_envelope(header, payload)

    # ------------------------------------------------------------------ transports

    def _unavailable(
        self,
        settings: RelaySettings,
        message: str,
        code: str | None = None,
        status: int | None = None,
        *,
        seen: bool = False,
    ) -> RelayUnavailable:
        return RelayUnavailable(
            message,
            fallback_to_direct=settings.fallback_to_direct,
            code=code,
            status=status,
            upstream_may_have_seen=seen,
        )

    async def _via_http(
        self, client: httpx.AsyncClient, settings: RelaySettings, secret: str, key: str, envelope: bytes
    ) -> httpx.Response:
        assert settings.url is not None
        request = client.build_request(
            "POST",
            f"{settings.url}{RELAY_PATH}",
            content=envelope,
            headers={
                TOKEN_HEADER: secret,
                PROTOCOL_HEADER: str(PROTOCOL_VERSION),
                SESSION_HEADER: key,
                "content-type": "application/octet-stream",
            },
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            seen = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise self._unavailable(
                settings, f"the relay did not answer in time ({type(exc).__name__})", "timeout", seen=seen
            ) from exc
        except httpx.HTTPError as exc:
            raise self._unavailable(settings, f"cannot reach the relay: {exc}", "unreachable") from exc
        if MARK_HEADER in response.headers:
            del response.headers[MARK_HEADER]
            return response
        await self._refuse(
            settings,
            response.status_code,
            response.headers.get(ERROR_HEADER),
            await read_capped(response, _ERROR_BODY_LIMIT),
        )
        raise AssertionError("unreachable")

    async def _refuse(self, settings: RelaySettings, status: int, code: str | None, body: bytes) -> None:
        """Turn the Worker's own error answer into _Conflict (409) or RelayUnavailable."""
        message = ""
        try:
            data = json.loads(body)
            message = str(data["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", errors="replace").strip()
        if code is None:
            raise self._unavailable(
                settings,
                f"the relay URL answered HTTP {status} without the relay's mark (not a Headway relay Worker, or "
                f"Cloudflare's own error page): {message[:200]}",
                "not_a_relay",
                status,
            )
        if status == 409:
            raise _Conflict(code)
        if status == 401:
            self._secrets.invalidate()
            message += (
                "; the relay secret in the keychain does not match the Worker's: run `headway relay setup`"
            )
        elif status == 426:
            message += "; run `headway relay setup` to upgrade the Worker"
        raise self._unavailable(
            settings, f"the relay refused the request ({status} {code}): {message}", code, status
        )

    async def _via_socket(
        self,
        client: httpx.AsyncClient,
        settings: RelaySettings,
        secret: str,
        key: str,
        request_id: str,
        envelope: bytes,
    ) -> httpx.Response:
        assert settings.url is not None
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = Channel(key, self._tasks, self._clock)
        await channel.lock.acquire()  # same-session requests queue here, one on the socket at a time
        handed_off = False
        try:
            channel.used = self._clock()
            # Asked on every request, whether or not this session's socket is open: a sleep is noticed once.
            awake_since = self.sleep_watch.awake_since(channel.used)
            if channel.open and channel.opened < awake_since:
                log.info(
                    "relay: the socket of session %s is from before the machine slept; opening a new one",
                    key[:8],
                )
                await channel.drop()
            if len(envelope) > _WS_MAX_MESSAGE:
                return await self._via_http(client, settings, secret, key, envelope)
            try:
                ws = await channel.ensure(client, settings.url, secret)
                await ws.send_binary(envelope)
            except WebSocketError as exc:
                await channel.drop()
                if exc.status is not None:
                    code = None
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        code = str(json.loads(exc.body)["error"]["code"])
                    await self._refuse(settings, exc.status, code, exc.body)
                raise self._unavailable(settings, f"the relay socket failed: {exc}", "socket") from exc
            except httpx.HTTPError as exc:
                await channel.drop()
                raise self._unavailable(settings, f"cannot reach the relay: {exc}", "unreachable") from exc
            accepted = await self._next_for(channel, request_id, ACCEPT_TIMEOUT)
            await self._check_frame(
                settings, channel, accepted, "accepted", seen=not isinstance(accepted, dict)
            )
            read_timeout = client.timeout.read
            start = await self._next_for(channel, request_id, read_timeout)
            await self._check_frame(settings, channel, start, "response_start", seen=True)
            assert isinstance(start, dict)
            response = httpx.Response(
                int(start["status"]),
                headers=[(str(k), str(v)) for k, v in start.get("headers", [])],
                stream=ChannelBody(channel, request_id, read_timeout),
                request=httpx.Request("POST", f"{settings.url}{WS_PATH}"),
            )
            handed_off = True
            return response
        finally:
            if not handed_off:
                channel.lock.release()

    @staticmethod
    async def _next_for(channel: Channel, request_id: str, timeout: float | None) -> Item:
        while True:
            item = await channel.next(timeout)
            if isinstance(item, dict) and item.get("id") not in (request_id, None):
                continue  # a leftover of an abandoned request
            return item

    async def _check_frame(
        self, settings: RelaySettings, channel: Channel, item: Item, expected: str, *, seen: bool
    ) -> None:
        if isinstance(item, dict) and item.get("t") == expected:
            return
        if isinstance(item, dict) and item.get("t") == "error":
            status = int(item.get("status") or 500)
            code = str(item.get("code") or "error")
            if status == 409:
                raise _Conflict(code)
            body = json.dumps({"error": {"code": code, "message": item.get("message", "")}}).encode()
            await self._refuse(settings, status, code, body)
        await channel.drop()
        raise self._unavailable(
            settings, f"the relay socket broke before the response: {describe(item)}", "socket", seen=seen
        )

    # ------------------------------------------------------------------ bookkeeping

    async def _secret(self) -> str | None:
        return await self._secrets.get(RELAY_SECRET)

    async def _check_config(self, settings: RelaySettings, secret: str) -> None:
        config = (settings.url, settings.transport, hashlib.sha256(secret.encode()).hexdigest())
        if config != self._config:
            if self._config is not None:
                log.info("relay configuration changed; forgetting session bodies")
            self._config = config
            self.forget()
            for channel in list(self._channels.values()):
                if not channel.lock.locked():
                    await channel.drop()
            self._channels = {k: c for k, c in self._channels.items() if c.lock.locked()}

    async def _sweep(self, settings: RelaySettings) -> None:
        dropped = self._book.sweep(
            settings.max_sessions, settings.max_memory_mb * 1024 * 1024, settings.ttl_minutes * 60
        )
        for session in dropped:
            channel = self._channels.get(session.key)
            if channel is not None and not channel.lock.locked():
                await channel.drop()
                del self._channels[session.key]
        for key, channel in list(self._channels.items()):
            if (
                not channel.open
                and not channel.lock.locked()
                and self._clock() - channel.used > WS_IDLE_CLOSE
            ):
                del self._channels[key]

    def _counter(self, session_id: str) -> TripCounter:
        counter = self._per_session.get(session_id)
        if counter is None:
            counter = self._per_session[session_id] = TripCounter()
            while len(self._per_session) > 100:
                self._per_session.popitem(last=False)
        self._per_session.move_to_end(session_id)
        return counter

    def _record(self, trip: RelayTrip) -> None:
        self._totals.add(trip)
        self._counter(trip.session_id).add(trip)
        self._recent.append(trip)
        log.debug(
            "relay %s %s: sent %d of %d bytes in %.0f ms",
            trip.session_id[:12],
            trip.mode,
            trip.sent_bytes,
            trip.body_bytes,
            trip.elapsed_ms,
        )

    def _record_failure(self, session_id: str, sent: int, message: str) -> None:
        self._last_error = message
        for counter in (self._totals, self._counter(session_id)):
            counter.failures += 1
            counter.sent_bytes += sent
        log.warning("relay failed for session %s: %s", session_id[:12], message)
