"""Per-account health: cooldowns after rate limits, exhaustion until a quota reset, failing auth, needing login.

Owned by the engine loop; other threads read the status the engine publishes, never the book. Everything here is
bounded in time except auth failures, which last until the account's secret changes (the fingerprint of the secret
that failed is kept, so a replaced key lifts the block at once and :meth:`HealthBook.tidy` clears it for good).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AccountHealth", "Block", "HealthBook"]


@dataclass
class AccountHealth:
    cooldown_until: float | None = None
    cooldown_reason: str | None = None
    cooldown_kind: str = "cooling_down"
    auth_failed: str | None = None
    auth_failed_fingerprint: str | None = None
    needs_login: str | None = None
    last_error: str | None = None
    last_ok_at: float | None = None
    last_used_at: float | None = None


@dataclass(frozen=True)
class Block:
    """Why an account cannot take requests now, and until when (None: until the user acts)."""

    state: str  # "cooling_down" | "exhausted" | "auth_failed" | "needs_login" | "disabled" | "no_secret" | "killswitch"
    reason: str
    until: float | None = None


@dataclass
class HealthBook:
    accounts: dict[str, AccountHealth] = field(default_factory=dict)
    # Told of every change other replicas must see (a cooldown, an auth failure, its clearing): team mode's
    # shared state (proxy.shared) publishes them. Must be quick and never raise; None on a lone gateway.
    listener: Callable[[str, AccountHealth], None] | None = field(default=None, repr=False, compare=False)

    def of(self, account_id: str) -> AccountHealth:
        return self.accounts.setdefault(account_id, AccountHealth())

    def cool_down(self, account_id: str, until: float, reason: str, *, exhausted: bool = False) -> None:
        """Skip the account until ``until``: rate-limited (``cooling_down``) or out of quota (``exhausted``)."""
        health = self.of(account_id)
        if health.cooldown_until is None or until > health.cooldown_until:
            health.cooldown_until = until
            health.cooldown_reason = reason
            health.cooldown_kind = "exhausted" if exhausted else "cooling_down"
            if self.listener is not None:
                self.listener(account_id, health)
        health.last_error = reason

    def fail_auth(
        self, account_id: str, reason: str, fingerprint: str | None, *, needs_login: bool = False
    ) -> None:
        """Skip the account until its secret changes: a rejected key, or a login that can no longer refresh."""
        health = self.of(account_id)
        if needs_login:
            health.needs_login = reason
        else:
            health.auth_failed = reason
        health.auth_failed_fingerprint = fingerprint
        health.last_error = reason
        if self.listener is not None:
            self.listener(account_id, health)

    def ok(self, account_id: str, now: float) -> None:
        health = self.of(account_id)
        cleared = bool(health.auth_failed or health.needs_login)
        health.auth_failed = None
        health.needs_login = None
        health.auth_failed_fingerprint = None
        health.last_ok_at = now
        health.last_used_at = now
        if cleared and self.listener is not None:
            self.listener(account_id, health)

    def block(self, account_id: str, now: float, fingerprint: str | None = None) -> Block | None:
        """Why the account cannot take requests at ``now``, or None. A pure read: :meth:`tidy` does the clearing."""
        health = self.accounts.get(account_id)
        if health is None:
            return None
        if (health.needs_login or health.auth_failed) and not _secret_replaced(health, fingerprint):
            if health.needs_login:
                return Block("needs_login", health.needs_login)
            if health.auth_failed:
                return Block("auth_failed", health.auth_failed)
        if health.cooldown_until is not None and health.cooldown_until > now:
            return Block(
                health.cooldown_kind, health.cooldown_reason or "rate limited", health.cooldown_until
            )
        return None

    def tidy(self, now: float, fingerprints: Mapping[str, str]) -> bool:
        """Clear cooldowns that have expired and auth failures whose secret was replaced since. True if changed.

        Only the owner of the book (the engine loop) calls this; readers use :meth:`block`, which never writes.
        """
        changed = False
        for account_id, health in self.accounts.items():
            if (health.needs_login or health.auth_failed) and _secret_replaced(
                health, fingerprints.get(account_id)
            ):
                health.needs_login = health.auth_failed = None
                health.auth_failed_fingerprint = None
                changed = True
            if health.cooldown_until is not None and health.cooldown_until <= now:
                health.cooldown_until = None
                health.cooldown_reason = None
                health.cooldown_kind = "cooling_down"
                changed = True
        return changed

    def forget(self, keep: set[str]) -> None:
        for account_id in list(self.accounts):
            if account_id not in keep:
                del self.accounts[account_id]

    def to_json(self) -> dict[str, Any]:
        return {k: asdict(v) for k, v in self.accounts.items()}

    @classmethod
    def from_json(cls, data: Any) -> HealthBook:
        book = cls()
        if isinstance(data, dict):
            for key, value in data.items():
                try:
                    book.accounts[str(key)] = AccountHealth(**value)
                except TypeError:
                    continue
        return book


def _secret_replaced(health: AccountHealth, fingerprint: str | None) -> bool:
    """The account's secret is known and differs from the one that failed (the user replaced the key or logged in)."""
    return fingerprint is not None and health.auth_failed_fingerprint not in (None, fingerprint)
