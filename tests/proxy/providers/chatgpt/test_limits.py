"""ChatGPT quota: usage-limit errors, x-codex headers, the usage endpoint's body (proxy.providers.chatgpt.limits)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from proxy.providers.chatgpt.limits import (
    UsageLimit,
    parse_codex_headers,
    parse_codex_usage,
    parse_usage_limit_error,
)
from proxy.routing.quota import Window

NOW = 1_750_000_000.0


def _by_name(windows: list[Window]) -> dict[str, Window]:
    return {w.name: w for w in windows}


# --- usage limits ------------------------------------------------------------------------------------------------


def test_usage_limit_with_resets_at_from_bytes() -> None:
    body = json.dumps(
        {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": 1761003600,
                "resets_in_seconds": 999,
            }
        }
    ).encode()
    assert parse_usage_limit_error(429, body, now=1761000000.0) == UsageLimit(
        kind="usage_limit_reached", resets_at=1761003600.0, plan_type="plus"
    )


def test_usage_limit_with_only_resets_in_seconds() -> None:
    body = {"error": {"type": "usage_limit_reached", "plan_type": "pro", "resets_in_seconds": 3600}}
    limit = parse_usage_limit_error(429, body, now=1000.0)
    assert limit == UsageLimit(kind="usage_limit_reached", resets_at=4600.0, plan_type="pro")


def test_usage_not_included_without_reset() -> None:
    limit = parse_usage_limit_error(
        429, {"error": {"type": "usage_not_included", "plan_type": "free"}}, now=0.0
    )
    assert limit == UsageLimit(kind="usage_not_included", resets_at=None, plan_type="free")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"error": {"type": "usage_limit_reached"}}),
        (429, {"error": {"type": "rate_limit_exceeded"}}),
        (429, b"not json"),
        (429, b"[]"),
        (429, {"detail": "Too many requests"}),
    ],
)
def test_other_errors_are_not_usage_limits(status: int, body: Any) -> None:
    assert parse_usage_limit_error(status, body, now=0.0) is None


# --- x-codex headers and the usage endpoint ----------------------------------------------------------------------


def test_codex_headers() -> None:
    headers = {
        "x-codex-primary-used-percent": "37.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(NOW + 3600)),
        "x-codex-secondary-used-percent": "80",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": "86400",
    }
    windows = _by_name(parse_codex_headers(httpx.Headers(headers), NOW))
    assert set(windows) == {"5h", "weekly"}
    assert windows["5h"].remaining_fraction == pytest.approx(0.625)
    assert windows["5h"].resets_at == NOW + 3600
    assert windows["5h"].window_minutes == 300
    assert windows["weekly"].remaining_fraction == pytest.approx(0.2)
    assert windows["weekly"].resets_at == NOW + 86400


@pytest.mark.parametrize(
    ("minutes", "name"), [("300", "5h"), ("10080", "weekly"), ("60", "1h"), ("90", "90m"), (None, "primary")]
)
def test_codex_window_names(minutes: str | None, name: str) -> None:
    headers = {"x-codex-primary-used-percent": "1"}
    if minutes is not None:
        headers["x-codex-primary-window-minutes"] = minutes
    assert [w.name for w in parse_codex_headers(headers, NOW)] == [name]


def test_codex_used_percent_over_100_clamps_to_nothing_left() -> None:
    (window,) = parse_codex_headers({"x-codex-primary-used-percent": "104"}, NOW)
    assert window.remaining_fraction == 0.0


def test_codex_usage_endpoint() -> None:
    windows, plan = parse_codex_usage(
        {
            "plan_type": "pro",
            "rate_limit": {
                "primary_window": {
                    "used_percent": 10,
                    "limit_window_seconds": 18000,
                    "reset_after_seconds": 600,
                },
                "secondary_window": {"used_percent": 50, "limit_window_seconds": 604800, "reset_at": NOW + 5},
            },
        },
        NOW,
    )
    assert plan == "pro"
    by = _by_name(windows)
    assert by["5h"].resets_at == NOW + 600 and by["5h"].remaining_fraction == pytest.approx(0.9)
    assert by["weekly"].resets_at == NOW + 5
    assert parse_codex_usage("nope", NOW) == ([], None)
    assert parse_codex_usage({"rate_limit": None}, NOW) == ([], None)
