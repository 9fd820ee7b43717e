"""How a ChatGPT account's quota shows: ``x-codex-*`` response headers, the usage endpoint's body, and a 429 usage-limit
error (exhausted until it resets). Pure; the usage poll itself is :mod:`.usage_poll`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.routing.quota import Window
from proxy.wire.retry_after import as_number

__all__ = [
    "UsageLimit",
    "parse_codex_headers",
    "parse_codex_usage",
    "parse_usage_limit_error",
    "rate_limit_frame_headers",
]


@dataclass(frozen=True, slots=True)
class UsageLimit:
    """A ChatGPT account out of quota: exhausted until ``resets_at`` (unix seconds) when known."""

    kind: Literal["usage_limit_reached", "usage_not_included"]
    resets_at: float | None
    plan_type: str | None


def parse_usage_limit_error(status: int, body: bytes | Mapping[str, Any], *, now: float) -> UsageLimit | None:
    """A 429 usage-limit body → :class:`UsageLimit`; anything else → None.

    ``resets_at`` (unix seconds) wins; otherwise it is ``now + resets_in_seconds``; None when neither is given.
    """
    if status != 429:
        return None
    parsed: Any = body
    if isinstance(body, bytes):
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
    if not isinstance(parsed, Mapping):
        return None
    error = parsed.get("error")
    if not isinstance(error, Mapping):
        return None
    kind = error.get("type") or error.get("code")
    if kind not in ("usage_limit_reached", "usage_not_included"):
        return None
    resets_at = as_number(error.get("resets_at"))
    if resets_at is None:
        resets_in = as_number(error.get("resets_in_seconds"))
        resets_at = now + resets_in if resets_in is not None else None
    plan_type = error.get("plan_type")
    return UsageLimit(
        kind=kind, resets_at=resets_at, plan_type=plan_type if isinstance(plan_type, str) else None
    )


def _window_name(minutes: int | None, fallback: str) -> str:
    if minutes == 300:
        return "5h"
    if minutes == 10080:
        return "weekly"
    if minutes:
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    return fallback


def parse_codex_headers(headers: Mapping[str, str], now: float) -> list[Window]:
    """The ``x-codex-{primary,secondary}-*`` headers of a backend answer → used-percent windows."""
    windows = []
    for slot in ("primary", "secondary"):
        prefix = f"x-codex-{slot}-"
        used = as_number(headers.get(prefix + "used-percent"))
        if used is None:
            continue
        minutes_f = as_number(headers.get(prefix + "window-minutes"))
        minutes = int(minutes_f) if minutes_f is not None else None
        resets_at = as_number(headers.get(prefix + "reset-at"))
        if resets_at is None:
            after = as_number(headers.get(prefix + "reset-after-seconds"))
            resets_at = None if after is None else now + after
        windows.append(
            Window(
                name=_window_name(minutes, slot),
                used_percent=used,
                resets_at=resets_at,
                window_minutes=minutes,
            )
        )
    return windows


def parse_codex_usage(data: Any, now: float) -> tuple[list[Window], str | None]:
    """The Codex usage endpoint (``/backend-api/wham/usage``) → windows and plan type."""
    if not isinstance(data, dict):
        return [], None
    limits = data.get("rate_limit") or {}
    windows = []
    for slot, key in (("primary", "primary_window"), ("secondary", "secondary_window")):
        raw = limits.get(key) if isinstance(limits, dict) else None
        used = as_number(raw.get("used_percent")) if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or used is None:
            continue
        seconds = as_number(raw.get("limit_window_seconds"))  # finite only: 1e999 in JSON reads as inf
        minutes = int(seconds) // 60 if seconds is not None else None
        resets_at = as_number(raw.get("reset_at"))
        if resets_at is None:
            after = as_number(raw.get("reset_after_seconds"))
            resets_at = now + after if after is not None else None
        windows.append(
            Window(
                name=_window_name(minutes, slot),
                used_percent=used,
                resets_at=resets_at,
                window_minutes=minutes,
            )
        )
    plan = data.get("plan_type")
    return windows, plan if isinstance(plan, str) else None


def rate_limit_frame_headers(frame: Mapping[str, Any]) -> dict[str, str]:
    """A ``codex.rate_limits`` WebSocket frame as the ``x-codex-*`` headers the same facts arrive in over HTTP, so
    one parser (:func:`parse_codex_headers`) reads both."""
    headers: dict[str, str] = {}
    limits = frame.get("rate_limits")
    for slot in ("primary", "secondary"):
        window = limits.get(slot) if isinstance(limits, Mapping) else None
        if not isinstance(window, Mapping):
            continue
        for key, name in (
            ("used_percent", "used-percent"),
            ("window_minutes", "window-minutes"),
            ("reset_at", "reset-at"),
            ("reset_after_seconds", "reset-after-seconds"),
        ):
            value = as_number(window.get(key))
            if value is not None:
                headers[f"x-codex-{slot}-{name}"] = f"{value:g}" if key == "used_percent" else str(int(value))
    plan = frame.get("plan_type")
    if isinstance(plan, str) and plan:
        headers["x-codex-plan-type"] = plan
    return headers
