"""Quota windows from upstream response headers, per account.

Each provider reports headroom differently — Anthropic as limit/remaining/reset per resource, OpenAI API keys the
same with Go-style durations, ChatGPT accounts as used-percent per time window (parsed by
:mod:`proxy.providers.chatgpt.limits`). All become :class:`Window`s with a
remaining fraction and a reset time, so routing, ``headway status`` and the tray read one shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from proxy.wire.retry_after import as_number

__all__ = [
    "QuotaBook",
    "QuotaSnapshot",
    "Window",
    "parse_anthropic_headers",
    "parse_duration",
    "parse_openai_headers",
]


@dataclass(frozen=True)
class Window:
    """One quota window: e.g. Anthropic ``tokens`` per minute or the Codex 5-hour window."""

    name: str
    limit: float | None = None
    remaining: float | None = None
    used_percent: float | None = None
    resets_at: float | None = None
    window_minutes: int | None = None

    @property
    def remaining_fraction(self) -> float | None:
        if self.limit and self.remaining is not None:
            return max(0.0, min(1.0, self.remaining / self.limit))
        if self.used_percent is not None:
            return max(0.0, min(1.0, 1 - self.used_percent / 100))
        return None

    def is_current(self, now: float) -> bool:
        """A window whose reset time has passed no longer says anything about headroom."""
        return self.resets_at is None or self.resets_at > now


@dataclass(frozen=True)
class QuotaSnapshot:
    account_id: str
    windows: tuple[Window, ...]
    updated_at: float
    plan_type: str | None = None

    def current_windows(self, now: float) -> list[Window]:
        return [w for w in self.windows if w.is_current(now)]

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "updated_at": self.updated_at,
            "plan_type": self.plan_type,
            "windows": [asdict(w) for w in self.windows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuotaSnapshot:
        return cls(
            account_id=str(data["account_id"]),
            updated_at=float(data["updated_at"]),
            plan_type=data.get("plan_type"),
            windows=tuple(Window(**w) for w in data.get("windows", [])),
        )


def _float(value: str | None) -> float | None:
    """A header's number; None when absent or not a finite number (``inf`` would block an account for good)."""
    return None if value is None else as_number(value)


def _rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str | None) -> float | None:
    """OpenAI's reset durations: ``6m0s``, ``1s``, ``20ms``, ``1h2m3.5s``; a bare number is seconds."""
    if not value:
        return None
    value = value.strip()
    plain = _float(value)
    if plain is not None:
        return plain
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


_ANTHROPIC_RESOURCES = ("requests", "tokens", "input-tokens", "output-tokens")


def parse_anthropic_headers(headers: Mapping[str, str], now: float) -> list[Window]:
    windows = []
    for resource in _ANTHROPIC_RESOURCES:
        prefix = f"anthropic-ratelimit-{resource}-"
        limit = _float(headers.get(prefix + "limit"))
        remaining = _float(headers.get(prefix + "remaining"))
        if limit is None and remaining is None:
            continue
        windows.append(
            Window(
                name=resource,
                limit=limit,
                remaining=remaining,
                resets_at=_rfc3339(headers.get(prefix + "reset")),
            )
        )
    return windows


def parse_openai_headers(headers: Mapping[str, str], now: float) -> list[Window]:
    windows = []
    for resource in ("requests", "tokens"):
        limit = _float(headers.get(f"x-ratelimit-limit-{resource}"))
        remaining = _float(headers.get(f"x-ratelimit-remaining-{resource}"))
        if limit is None and remaining is None:
            continue
        after = parse_duration(headers.get(f"x-ratelimit-reset-{resource}"))
        windows.append(
            Window(
                name=resource,
                limit=limit,
                remaining=remaining,
                resets_at=None if after is None else now + after,
            )
        )
    return windows


@dataclass
class QuotaBook:
    """The latest snapshot per account. Owned by the engine loop; read copies elsewhere."""

    snapshots: dict[str, QuotaSnapshot] = field(default_factory=dict)
    # Told of every new snapshot (team mode publishes it to the other replicas); quick, never raises.
    listener: Callable[[QuotaSnapshot], None] | None = field(default=None, repr=False, compare=False)

    def update(
        self, account_id: str, windows: list[Window], now: float, plan_type: str | None = None
    ) -> bool:
        if not windows:
            return False
        previous = self.snapshots.get(account_id)
        merged = {w.name: w for w in (previous.windows if previous else ())}
        merged.update({w.name: w for w in windows})
        snapshot = self.snapshots[account_id] = QuotaSnapshot(
            account_id=account_id,
            windows=tuple(merged.values()),
            updated_at=now,
            plan_type=plan_type or (previous.plan_type if previous else None),
        )
        if self.listener is not None:
            self.listener(snapshot)
        return True

    def get(self, account_id: str) -> QuotaSnapshot | None:
        return self.snapshots.get(account_id)

    def below_minimum(self, account_id: str, minimum_percent: float, now: float) -> Window | None:
        """The window whose remaining share is below ``minimum_percent``, if any."""
        snapshot = self.snapshots.get(account_id)
        if snapshot is None or minimum_percent <= 0:
            return None
        for window in snapshot.current_windows(now):
            fraction = window.remaining_fraction
            if fraction is not None and fraction * 100 < minimum_percent:
                return window
        return None

    def below_killswitch(
        self, account_id: str, thresholds: Mapping[str, float] | None, now: float
    ) -> Window | None:
        """The window that is below its killswitch threshold, if any (a hard block until it resets)."""
        snapshot = self.snapshots.get(account_id)
        if snapshot is None or not thresholds:
            return None
        for window in snapshot.current_windows(now):
            limit = thresholds.get(window.name)
            fraction = window.remaining_fraction
            if limit is not None and fraction is not None and fraction * 100 < limit:
                return window
        return None

    def forget(self, keep: set[str]) -> None:
        for account_id in list(self.snapshots):
            if account_id not in keep:
                del self.snapshots[account_id]

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.snapshots.values()]

    @classmethod
    def from_json(cls, data: Any) -> QuotaBook:
        book = cls()
        for item in data if isinstance(data, list) else []:
            try:
                snapshot = QuotaSnapshot.from_json(item)
            except (KeyError, TypeError, ValueError):
                continue
            book.snapshots[snapshot.account_id] = snapshot
        return book
