"""Reading numbers and ``Retry-After`` values from what upstreams send: one reading for every caller.

Upstream text is untrusted: ``inf``, ``nan`` and ``1e308`` parse as floats, and a cooldown of infinity would block an
account for good. Non-finite numbers are no numbers here, and a ``Retry-After`` beyond :data:`MAX_RETRY_AFTER` (longer
than any provider's longest quota window) is ignored, so the caller falls back to its own default.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_RETRY_AFTER", "as_number", "retry_after_seconds"]

MAX_RETRY_AFTER = 8 * 86400.0


def as_number(value: Any) -> float | None:
    """A finite JSON number or numeric string as a float; None for anything else (booleans, inf and nan included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), never negative.

    None if absent, unreadable, not finite or longer than :data:`MAX_RETRY_AFTER`.
    """
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = as_number(value)
    if seconds is None:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds) or seconds > MAX_RETRY_AFTER:
        return None
    return max(0.0, seconds)
