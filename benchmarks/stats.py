"""Distribution figures: percentiles, and the 'added' difference between two distributions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["added", "percentile", "summary"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p99, mean and max of ``values`` (milliseconds, rounded to microseconds)."""
    return {
        "n": len(values),
        "p50": _round(percentile(values, 50)),
        "p99": _round(percentile(values, 99)),
        "mean": _round(sum(values) / len(values)) if values else None,
        "max": _round(max(values)) if values else None,
    }


def added(via: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    """Via-gateway minus direct, quantile by quantile (a difference of distributions, not of paired samples)."""
    out: dict[str, Any] = {}
    for key in ("p50", "p99"):
        a, b = via.get(key), direct.get(key)
        out[key] = None if a is None or b is None else round(a - b, 3)
    return out
