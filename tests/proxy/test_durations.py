"""proxy.durations: the one owner of how a length of time is written (status, icon, notifications, doctor, analyzer)."""

from __future__ import annotations

import pytest

from proxy.durations import compact_duration, format_duration, short_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (-3, "0s"),
        (30, "30s"),
        (59.4, "59s"),
        (89, "1m"),
        (45 * 60, "45m"),
        (3599, "1h"),
        (4320, "1h 12m"),
        (5 * 3600, "5h"),
        (5 * 3600 - 60, "4h 59m"),
        (86400, "1d"),
        (2 * 86400 + 4 * 3600, "2d 4h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0.2, "1s"),
        (61, "2m"),
        (3600, "1h"),
        (3601, "2h"),
        (2 * 86400 - 1, "48h"),
        (3 * 86400, "3d"),
    ],
)
def test_short_duration_is_one_unit_rounded_up(seconds: float | None, text: str) -> None:
    assert short_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (42, "42s"),
        (425, "7m05s"),
        (360, "6m00s"),
        (7380, "2h03m"),
        (7200, "2h00m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
    ],
)
def test_compact_duration_is_fixed_width(seconds: float, text: str) -> None:
    assert compact_duration(seconds) == text
