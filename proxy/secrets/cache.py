"""Secrets read from the keychain off the loop, cached briefly; fingerprints that notice a replaced key."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable

from proxy.config.settings import Account

__all__ = ["SecretCache", "fingerprint"]

log = logging.getLogger("headway.secrets")


@functools.lru_cache(maxsize=256)
def fingerprint(secret: str) -> str:
    """A short hash that tells a replaced secret from the old one (asked on every request: remembered)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class SecretCache:
    """Secrets read from the keychain off the loop, cached briefly so a replaced key is picked up within seconds.

    A secret that is not there is cached for ``missing_ttl`` only (a second): an account added by another process
    writes its key just after its settings, and the first look-up may come in between. A settings change empties the
    cache (the engine's ``_apply``); replacing a key records ``key_updated_at`` in the settings for that reason.
    """

    def __init__(
        self,
        read: Callable[[str], str | None],
        ttl: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        missing_ttl: float = 1.0,
    ):
        self._read = read
        self._ttl = ttl
        self._missing_ttl = missing_ttl
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def get(self, account_id: str) -> str | None:
        hit = self._cache.get(account_id)
        if hit is not None and self._clock() - hit[1] < (self._ttl if hit[0] else self._missing_ttl):
            return hit[0]
        try:
            value = await asyncio.to_thread(self._read, account_id)
        except Exception as exc:
            log.error("cannot read the secret of account %s: %s", account_id, exc)
            value = hit[0] if hit else None
        self._cache[account_id] = (value, self._clock())
        return value

    def fingerprints(self) -> dict[str, str]:
        return {k: fingerprint(v) for k, (v, _) in self._cache.items() if v}

    async def fingerprints_of(self, accounts: list[Account]) -> dict[str, str]:
        """Fingerprints of these accounts' current secrets (read through the cache), to notice replaced keys."""
        out = {}
        for account in accounts:
            value = await self.get(account.id)
            if value:
                out[account.id] = fingerprint(value)
        return out

    def missing(self) -> set[str]:
        """Accounts whose secret was looked up and is not in the keychain."""
        return {k for k, (v, _) in self._cache.items() if not v}

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._cache.clear()
        else:
            self._cache.pop(account_id, None)
