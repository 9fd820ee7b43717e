"""How a length of time is written for people: the one place that owns it.

Three forms, because their readers differ:

- :func:`format_duration` — in sentences and lines (status, tooltips, notifications, doctor): ``1h 12m``, ``45m``,
  ``2d 4h``, ``30s``.
- :func:`short_duration` — one unit, rounded up, where a few characters fit (the tray icon): ``45s``, ``12m``, ``3h``,
  ``2d``. Rounded up so that it never promises a reset earlier than it comes.
- :func:`compact_duration` — fixed-width columns (the cache analyzer's tables): ``42s``, ``7m05s``, ``2h03m``,
  ``3d04h``.
"""

from __future__ import annotations

import math

__all__ = ["compact_duration", "format_duration", "short_duration"]


def format_duration(seconds: float | None) -> str:
    """``1h 12m``, ``45m``, ``2d 4h``, ``30s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s}s"
    minutes = (s + 30) // 60 if s < 3600 else s // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def short_duration(seconds: float | None) -> str:
    """One unit, rounded up: ``45s``, ``12m``, ``3h``, ``2d``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0.0, seconds)
    if s < 60:
        return f"{math.ceil(s)}s"
    if s < 3600:
        return f"{math.ceil(s / 60)}m"
    if s < 86400 * 2:
        return f"{math.ceil(s / 3600)}h"
    return f"{math.ceil(s / 86400)}d"


def compact_duration(seconds: float) -> str:
    """Two zero-padded units, no spaces: ``42s``, ``7m05s``, ``2h03m``, ``3d04h``."""
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    minutes, secs = divmod(s, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
