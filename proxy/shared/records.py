"""What replicas tell each other, as JSON, and how a replica takes what it is told into its local books.

Every change travels as one message on the channel ``<ns>:events`` — ``{"r": replica, "k": kind, "id": key,
"v": value, "at": epoch}`` — and is also kept in Redis for a replica that (re)connects later:

=========  ======================================  =========================================================
kind       kept in                                 taken when
=========  ======================================  =========================================================
health     hash ``<ns>:health`` (account → JSON)   cooldown: the later end wins; auth failure / needs login:
                                                   the newer change (``at``) wins
quota      hash ``<ns>:quota`` (account → JSON)    the snapshot with the later ``updated_at``
pin        key ``<ns>:pin:<session>`` (expiring)   the later use
member     hash ``<ns>:members`` (name → JSON)     always (Redis is the members' authority; null = revoked)
spend      hash ``<ns>:spend:<day>`` (name → USD)  the larger total for today
=========  ======================================  =========================================================

Taking a change in never calls the books' listeners, so nothing told is told back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proxy.routing.health import AccountHealth, HealthBook
from proxy.routing.quota import QuotaBook, QuotaSnapshot
from proxy.routing.router import Router
from proxy.routing.spend import SpendBook
from proxy.secrets.members import Member, MemberBook, MembersError

__all__ = [
    "Names",
    "apply_health",
    "apply_pin",
    "apply_quota",
    "health_record",
    "parse_message",
    "redacted_url",
]


@dataclass(frozen=True)
class Names:
    """Every Redis key and channel of one deployment, under its namespace."""

    namespace: str

    @property
    def channel(self) -> str:
        return f"{self.namespace}:events"

    @property
    def health(self) -> str:
        return f"{self.namespace}:health"

    @property
    def quota(self) -> str:
        return f"{self.namespace}:quota"

    @property
    def members(self) -> str:
        return f"{self.namespace}:members"

    @property
    def members_written(self) -> str:
        """Set whenever members change: from then on Redis, not a replica's copy, says who the members are."""
        return f"{self.namespace}:members:written"

    def pin(self, session_id: str) -> str:
        return f"{self.namespace}:pin:{session_id}"

    @property
    def pin_pattern(self) -> str:
        return f"{self.namespace}:pin:*"

    def spend(self, day: str) -> str:
        return f"{self.namespace}:spend:{day}"


def health_record(health: AccountHealth, at: float) -> dict[str, Any]:
    return {
        "cooldown_until": health.cooldown_until,
        "cooldown_reason": health.cooldown_reason,
        "cooldown_kind": health.cooldown_kind,
        "auth_failed": health.auth_failed,
        "auth_failed_fingerprint": health.auth_failed_fingerprint,
        "needs_login": health.needs_login,
        "at": at,
    }


def _text(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def apply_health(book: HealthBook, account_id: str, record: Any, auth_seen: dict[str, float]) -> bool:
    """Take another replica's health record for ``account_id``; True when the local book changed.

    ``auth_seen`` holds, per account, when the auth state this replica holds was decided (here or elsewhere).
    """
    if not isinstance(record, dict):
        return False
    health = book.accounts.get(account_id) or AccountHealth()
    changed = False
    until = _number(record.get("cooldown_until"))
    if until is not None and (health.cooldown_until is None or until > health.cooldown_until):
        health.cooldown_until = until
        health.cooldown_reason = _text(record.get("cooldown_reason")) or "rate limited (another replica)"
        health.cooldown_kind = "exhausted" if record.get("cooldown_kind") == "exhausted" else "cooling_down"
        health.last_error = health.cooldown_reason
        changed = True
    at = _number(record.get("at")) or 0.0
    if at > auth_seen.get(account_id, 0.0):
        auth_seen[account_id] = at
        auth = (
            _text(record.get("auth_failed")),
            _text(record.get("needs_login")),
            _text(record.get("auth_failed_fingerprint")),
        )
        if auth != (health.auth_failed, health.needs_login, health.auth_failed_fingerprint):
            health.auth_failed, health.needs_login, health.auth_failed_fingerprint = auth
            changed = True
    if changed:
        book.accounts[account_id] = health
    return changed


def apply_quota(book: QuotaBook, record: Any) -> bool:
    try:
        snapshot = QuotaSnapshot.from_json(record)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    mine = book.snapshots.get(snapshot.account_id)
    if mine is not None and mine.updated_at >= snapshot.updated_at:
        return False
    book.snapshots[snapshot.account_id] = snapshot
    return True


def apply_pin(router: Router, session_id: str, record: Any) -> bool:
    if not (isinstance(record, list) and len(record) == 2 and isinstance(record[0], str)):
        return False
    at = _number(record[1])
    if at is None:
        return False
    router.adopt(session_id, record[0], at)
    return True


def apply_member(book: MemberBook, name: str, record: Any) -> bool:
    if record is None:
        return book.remove(name) is not None
    try:
        member = Member.from_json(record)
    except MembersError:
        return False
    if book.get(member.name) == member:
        return False
    book.put(member)
    return True


def apply_spend(book: SpendBook, key: str, total: Any) -> bool:
    day, _, member = key.partition("|")
    value = _number(total)
    if value is None and isinstance(total, str | bytes):
        try:
            value = float(total)
        except ValueError:
            return False
    return value is not None and bool(member) and book.adopt(day, member, value)


@dataclass(frozen=True)
class Message:
    replica: str
    kind: str
    key: str
    value: Any


def parse_message(data: bytes | str) -> Message | None:
    """A channel message, or None when it is not one of ours (another program on the same channel)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    replica, kind, key = raw.get("r"), raw.get("k"), raw.get("id")
    if not (isinstance(replica, str) and isinstance(kind, str) and isinstance(key, str)):
        return None
    return Message(replica, kind, key, raw.get("v"))


def encode_message(replica: str, kind: str, key: str, value: Any) -> str:
    return json.dumps({"r": replica, "k": kind, "id": key, "v": value}, separators=(",", ":"))


def redacted_url(url: str) -> str:
    """The URL without its password, for logs and status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
