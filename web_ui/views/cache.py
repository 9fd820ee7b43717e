"""The page's small time-limited cache, so polling ``/api/state`` and the usage chart stays cheap.

One per page (:meth:`~web_ui.app.WebContext.helper`), shared by the views: ``api`` reads key hints, dump and log
facts through it, ``relay`` whether the Worker's secret is in the keychain, ``usage`` the daily report; ``accounts``
and ``relay`` forget what they have just changed. Its own module so that no view imports another for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import ctx

__all__ = ["TtlCache", "ttl_cache"]

T = TypeVar("T")


class TtlCache:
    """Values by key, each reused for the ``ttl`` its reader asks for. ``compute`` runs outside the lock (it may be
    slow: a keychain read, a log query), so two callers can compute the same key at once; the later one wins."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, ttl: float, compute: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._values[key] = (now, value)
        return value

    def forget(self, prefix: str = "") -> None:
        """Drop every value whose key starts with ``prefix`` (all of them by default)."""
        with self._lock:
            for key in [k for k in self._values if k.startswith(prefix)]:
                del self._values[key]


def ttl_cache() -> TtlCache:
    """The page's one cache."""
    return ctx().helper("ttl", TtlCache)
