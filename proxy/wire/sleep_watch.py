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

import time
from collections.abc import Callable

__all__ = ["SLEEP_NOTICED_SECONDS", "SleepWatch"]

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

    def slept(self) -> float:
        gap = self._wall() - self._monotonic()
        slept, self._gap = gap - self._gap, gap
        return slept if slept >= self._threshold else 0.0
