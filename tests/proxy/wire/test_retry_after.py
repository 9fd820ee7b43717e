"""Retry-After and numeric fields from upstreams: finite, sane values only."""

from __future__ import annotations

import email.utils

import pytest

from proxy.wire.retry_after import MAX_RETRY_AFTER, as_number, retry_after_seconds

NOW = 1_700_000_000.0


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400", float("inf"), float("nan")])
def test_non_finite_numbers_are_not_numbers(value: object) -> None:
    assert as_number(value) is None


@pytest.mark.parametrize(
    "value", ["inf", "+Infinity", "nan", "NaN", "1e400", "1e308", str(MAX_RETRY_AFTER + 1)]
)
def test_retry_after_rejects_non_finite_and_absurd_values(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}, NOW) is None


def test_retry_after_rejects_a_date_centuries_away() -> None:
    far = email.utils.formatdate(NOW + 400 * 86400 * 365, usegmt=True)
    assert retry_after_seconds({"retry-after": far}, NOW) is None


@pytest.mark.parametrize(("value", "expected"), [("30", 30.0), ("0", 0.0), ("-5", 0.0), ("1.5", 1.5)])
def test_retry_after_reads_delta_seconds(value: str, expected: float) -> None:
    assert retry_after_seconds({"retry-after": value}, NOW) == expected


def test_retry_after_reads_an_http_date() -> None:
    date = email.utils.formatdate(NOW + 120, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, NOW) == pytest.approx(120, abs=1)


def test_numbers_still_read() -> None:
    assert (
        as_number(3) == 3.0 and as_number("2.5") == 2.5 and as_number(True) is None and as_number("x") is None
    )


def test_quota_readings_ignore_non_finite_numbers() -> None:
    """Headers and the Codex usage body go through the same reading: inf / nan never become a reset or a window."""
    from proxy.providers.chatgpt.limits import parse_codex_usage
    from proxy.routing.quota import parse_openai_headers

    windows = parse_openai_headers(
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "inf",
        },
        NOW,
    )
    assert all(w.resets_at is None or w.resets_at < NOW + MAX_RETRY_AFTER for w in windows)
    body = {
        "rate_limit": {
            "primary_window": {
                "used_percent": 50,
                "limit_window_seconds": float("inf"),
                "reset_at": float("inf"),
            }
        }
    }
    windows, _ = parse_codex_usage(body, NOW)
    assert [(w.used_percent, w.resets_at, w.window_minutes) for w in windows] == [(50.0, None, None)]
