"""Noticing that the machine slept: the wall clock moved on while the monotonic one stood still.

Connection pools age their idle connections on the monotonic clock (aiohttp's, httpx's, the upstream WebSocket's
sessions), and on Linux and macOS that clock stops while the machine sleeps. After a night's sleep a pooled
connection still looks a few seconds old, although the upstream, a NAT or a firewall forgot it hours ago. Where the
forgetting side answers with a reset, the upstream client sends the request once more; where it drops the packets
without a word (a router that discards what it has no state for), the request would wait out its read timeout
instead — up to two minutes for each kept connection it tried. So the pools ask, before each use, whether the machine
slept since the last one, and start afresh when it did.

The difference between the wall clock and the monotonic one stays put while the machine runs (NTP slews the wall clock
by at most half a millisecond a second), and grows by the time slept. A wall clock set forward by hand looks like a
sleep too: that costs one new connection. On Windows the monotonic clock counts sleep as well, so nothing is noticed,
and nothing needs to be: the pools' idle clocks count it too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.durations import format_duration

if TYPE_CHECKING:
    import httpx

__all__ = ["SLEEP_NOTICED_SECONDS", "AfterSleep", "SleepWatch"]

log = logging.getLogger("headway.upstream")

#: a sleep this long or longer makes the pools start afresh (shorter ones leave a kept connection alive on both ends)
SLEEP_NOTICED_SECONDS = 30.0


class SleepWatch:
    """:meth:`slept` says how long the machine slept since it was last asked (0.0: it did not, or not noticeably)."""

    def __init__(
        self,
        threshold: float = SLEEP_NOTICED_SECONDS,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._wall = wall
        self._monotonic = monotonic
        self._gap = wall() - monotonic()
        self._awake_since = -math.inf

    def slept(self) -> float:
        gap = self._wall() - self._monotonic()
        slept, self._gap = gap - self._gap, gap
        return slept if slept >= self._threshold else 0.0

    def awake_since(self, now: float) -> float:
        """When the machine last woke up, on the caller's clock (``now`` is its reading at this call); -inf before the
        first noticed sleep. Something opened before that moment is from before the sleep."""
        if self.slept():
            self._awake_since = now
        return self._awake_since


class AfterSleep:
    """An httpx request hook: once the machine slept, the client's idle kept connections are closed before the request
    picks one, so it goes out on a new connection.

    For the engine's httpx client (sign-ins, token refreshes, quota polls, the relay). httpx has no public way to let
    go of its kept connections, so this reaches its pools (``_transport``, ``_mounts``, httpcore's pool behind each)
    and closes only the idle connections through httpcore's own connection interface (``is_idle``, ``aclose``): the
    pool drops closed ones when it next assigns a request, and answers still streaming are not touched. Should httpx
    change that layout, nothing is closed and a dead connection still fails within seconds (proxy/wire/liveness.py).
    """

    def __init__(self, sleep_watch: SleepWatch | None = None) -> None:
        self.sleep_watch = SleepWatch() if sleep_watch is None else sleep_watch
        self._client: httpx.AsyncClient | None = None

    def attach(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        self._client = client
        return client

    async def __call__(self, request: httpx.Request) -> None:
        slept = self.sleep_watch.slept()
        if not slept or self._client is None:
            return
        closed = await close_idle_connections(self._client)
        if closed:
            log.info(
                "the machine slept (about %s): %d kept connection(s) of the sign-in and polling client not used again",
                format_duration(slept),
                closed,
            )


async def close_idle_connections(client: httpx.AsyncClient) -> int:
    """Close every idle kept connection of ``client``'s pools; how many were closed."""
    transports: list[Any] = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    closed = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        for connection in list(getattr(pool, "connections", ())):
            if connection.is_idle():
                await connection.aclose()
                closed += 1
    return closed
