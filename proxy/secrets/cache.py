"""Secrets read from the keychain off the loop and kept a few minutes; fingerprints that notice a replaced key."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable

from proxy.config.settings import Account

__all__ = ["KEYCHAIN_TTL", "SecretCache", "fingerprint"]

log = logging.getLogger("headway.secrets")

#: how long a secret read from the keychain is reused (the gateway's, the relay client's, the settings page's): each
#: read is a D-Bus connection to the user's keyring daemon (docs/architecture.md, "The keychain is asked rarely")
KEYCHAIN_TTL = 300.0


@functools.lru_cache(maxsize=256)
def fingerprint(secret: str) -> str:
    """A short hash that tells a replaced secret from the old one (asked on every request: remembered)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class SecretCache:
    """Secrets read from the keychain off the loop, and kept a few minutes.

    Every request asks for the secrets of its account family (to notice a replaced key), so the cache decides how
    often the keychain is asked. Each read is a D-Bus round trip on a connection of its own (keyring's Secret Service
    backend) and costs the user's keyring daemon more than the call: gnome-keyring 42 keeps about 0.6 KB of locked
    memory per read, and now and then aborts when a client's connection closes under it (docs/architecture.md,
    "The keychain is asked rarely"). With a 15 s lifetime three accounts in steady use meant about 700 reads an hour.

    - A present secret lives ``ttl`` (5 minutes). Headway's own changes do not wait for it: a settings change empties
      the cache (the engine's ``_apply``; replacing a key records ``key_updated_at`` in the settings for that reason)
      and saving refreshed tokens drops the account's entry. Only a key changed behind Headway's back (in Passwords
      and Keys, say) waits up to ``ttl``.
    - A secret that is not there is looked up again after ``missing_ttl`` (a second), then after twice as long each
      time it is still missing, up to ``missing_max`` (a minute): an account added by another process writes its key
      just after its settings, so the first look-up may come in between; an account whose key is gone for good is
      not looked up on every request.
    """

    def __init__(
        self,
        read: Callable[[str], str | None],
        ttl: float = KEYCHAIN_TTL,
        clock: Callable[[], float] = time.monotonic,
        missing_ttl: float = 1.0,
        missing_max: float = 60.0,
    ):
        self._read = read
        self._ttl = ttl
        self._missing_ttl = missing_ttl
        self._missing_max = missing_max
        self._clock = clock
        #: account id -> (secret or None, when it was read, how long the entry lives)
        self._cache: dict[str, tuple[str | None, float, float]] = {}

    async def get(self, account_id: str) -> str | None:
        hit = self._cache.get(account_id)
        if hit is not None and self._clock() - hit[1] < hit[2]:
            return hit[0]
        try:
            value = await asyncio.to_thread(self._read, account_id)
        except Exception as exc:
            log.error("cannot read the secret of account %s: %s", account_id, exc)
            value = hit[0] if hit else None
        if value:
            lifetime = self._ttl
        elif hit is not None and not hit[0]:  # missing again: wait twice as long
            lifetime = min(hit[2] * 2, self._missing_max)
        else:
            lifetime = self._missing_ttl
        self._cache[account_id] = (value, self._clock(), lifetime)
        return value

    def fingerprints(self) -> dict[str, str]:
        return {k: fingerprint(v) for k, (v, _, _) in self._cache.items() if v}

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
        return {k for k, (v, _, _) in self._cache.items() if not v}

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._cache.clear()
        else:
            self._cache.pop(account_id, None)
