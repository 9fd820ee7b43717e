"""Reading numbers and ``Retry-After`` values from what upstreams send: one reading for every caller."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any

__all__ = ["as_number", "retry_after_seconds"]


def as_number(value: Any) -> float | None:
    """A JSON number or a numeric string as a float; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), never negative; None if absent."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = as_number(value)
    if seconds is None:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds)
