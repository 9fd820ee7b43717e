"""Estimated spend per member per UTC day, for member daily caps (``headway keys add NAME --daily-usd 5``).

Owned by the engine loop. In team mode every replica adds its own requests' cost and the shared state
(:mod:`proxy.shared`) sums them in Redis and tells each replica the day's total, which is taken when larger than
what the replica knows (totals only grow within a day, so applying one twice or late is harmless).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["SpendBook", "utc_day"]


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


class SpendBook:
    """Dollars per member for the current UTC day; yesterday's totals are dropped when the day turns."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._day = utc_day(clock())
        self._spent: dict[str, float] = {}
        # Told of each addition (day, member, dollars): team mode adds it up in Redis. Quick, never raises.
        self.listener: Callable[[str, str, float], None] | None = None

    def _roll(self) -> str:
        day = utc_day(self._clock())
        if day != self._day:
            self._day = day
            self._spent = {}
        return day

    def add(self, member: str, usd: float) -> None:
        if usd <= 0:
            return
        day = self._roll()
        self._spent[member] = self._spent.get(member, 0.0) + usd
        if self.listener is not None:
            self.listener(day, member, usd)

    def today(self, member: str) -> float:
        self._roll()
        return self._spent.get(member, 0.0)

    def adopt(self, day: str, member: str, total: float) -> bool:
        """A day's total from the shared state: taken when it is today's and larger than ours. True if taken."""
        if day != self._roll() or total <= self._spent.get(member, 0.0):
            return False
        self._spent[member] = total
        return True

    def totals(self) -> tuple[str, dict[str, float]]:
        return self._roll(), dict(self._spent)
