"""Quota windows from Anthropic and OpenAI headers (ChatGPT's: tests/proxy/providers/chatgpt/test_limits.py); staleness after a reset; the QuotaBook and its
persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from proxy.routing.health import HealthBook
from proxy.routing.quota import (
    QuotaBook,
    QuotaSnapshot,
    Window,
    parse_anthropic_headers,
    parse_duration,
    parse_openai_headers,
)
from proxy.routing.router import Router
from proxy.routing.state import RuntimeState
from tests.fakes import anthropic_ratelimit_headers, openai_duration, openai_ratelimit_headers

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z


def _by_name(windows: list[Window]) -> dict[str, Window]:
    return {w.name: w for w in windows}


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("20ms", 0.02),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("59m59s", 3599.0),
        ("2h", 7200.0),
        ("1m20ms", 60.02),
        ("0s", 0.0),
        ("30", 30.0),
        ("0.25", 0.25),
        (" 6m0s ", 360.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "6m0", "1x", "m", "1h 2m", "-1s", "6m0sx"])
def test_parse_duration_rejects_what_it_cannot_read(text: str | None) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("seconds", [0.02, 0.12, 1.0, 6.0, 59.5, 360.0, 3723.5, 86399.0])
def test_parse_duration_reads_what_the_fake_openai_writes(seconds: float) -> None:
    assert parse_duration(openai_duration(seconds)) == pytest.approx(seconds, abs=0.001)


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_headers() -> None:
    headers = anthropic_ratelimit_headers(
        requests_limit=50,
        requests_remaining=10,
        tokens_limit=100_000,
        tokens_remaining=25_000,
        input_tokens_limit=80_000,
        input_tokens_remaining=80_000,
        output_tokens_limit=20_000,
        output_tokens_remaining=0,
        reset_in=60,
        now=datetime.fromtimestamp(NOW, UTC),
    )
    windows = _by_name(parse_anthropic_headers(httpx.Headers(headers), NOW))
    assert set(windows) == {"requests", "tokens", "input-tokens", "output-tokens"}
    assert windows["requests"].remaining_fraction == pytest.approx(0.2)
    assert windows["tokens"].remaining_fraction == pytest.approx(0.25)
    assert windows["input-tokens"].remaining_fraction == 1.0
    assert windows["output-tokens"].remaining_fraction == 0.0
    assert windows["tokens"].resets_at == NOW + 60
    assert (windows["tokens"].limit, windows["tokens"].remaining) == (100_000, 25_000)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("2025-06-15T15:07:40Z", NOW + 60),
        ("2025-06-15T17:07:40+02:00", NOW + 60),
        ("2025-06-15T15:07:40.500Z", NOW + 60.5),
        ("2025-06-15T15:07:40.123456789Z", NOW + 60.123456),  # nanoseconds, as Go servers write them
        ("tomorrow", None),
        ("", None),
    ],
)
def test_anthropic_rfc3339_resets(reset: str, expected: float | None) -> None:
    headers = {
        "anthropic-ratelimit-tokens-limit": "100",
        "anthropic-ratelimit-tokens-remaining": "50",
        "anthropic-ratelimit-tokens-reset": reset,
    }
    (window,) = parse_anthropic_headers(headers, NOW)
    if expected is None:
        assert window.resets_at is None
    else:
        assert window.resets_at == pytest.approx(expected)
    assert window.remaining_fraction == 0.5


def test_anthropic_headers_absent_or_garbled() -> None:
    assert parse_anthropic_headers({}, NOW) == []
    assert parse_anthropic_headers({"anthropic-ratelimit-tokens-reset": "2025-06-15T15:07:40Z"}, NOW) == []
    (window,) = parse_anthropic_headers(
        {"anthropic-ratelimit-requests-limit": "lots", "anthropic-ratelimit-requests-remaining": "3"}, NOW
    )
    assert window.limit is None and window.remaining == 3 and window.remaining_fraction is None


# --------------------------------------------------------------------------- OpenAI


def test_openai_headers() -> None:
    headers = openai_ratelimit_headers(
        requests_limit=500, requests_remaining=499, requests_reset=0.12,
        tokens_limit=200_000, tokens_remaining=50_000, tokens_reset=360.0,
    )  # fmt: skip
    windows = _by_name(parse_openai_headers(httpx.Headers(headers), NOW))
    assert set(windows) == {"requests", "tokens"}
    assert windows["tokens"].remaining_fraction == pytest.approx(0.25)
    assert windows["tokens"].resets_at == pytest.approx(NOW + 360)
    assert windows["requests"].resets_at == pytest.approx(NOW + 0.12)


def test_openai_headers_with_an_unreadable_reset_keep_the_numbers() -> None:
    (window,) = parse_openai_headers(
        {
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "10",
            "x-ratelimit-reset-tokens": "?",
        },
        NOW,
    )
    assert window.remaining_fraction == pytest.approx(0.01) and window.resets_at is None


# --------------------------------------------------------------------------- windows and snapshots


def test_remaining_fraction_clamps_and_prefers_limit_over_percent() -> None:
    assert Window("t", limit=100, remaining=150).remaining_fraction == 1.0
    assert Window("t", limit=100, remaining=-5).remaining_fraction == 0.0
    assert Window("t", limit=100, remaining=40, used_percent=90).remaining_fraction == pytest.approx(0.4)
    assert Window("t", limit=0, remaining=0).remaining_fraction is None
    assert Window("t").remaining_fraction is None


def test_a_window_is_stale_once_its_reset_passed() -> None:
    w = Window("tokens", limit=100, remaining=1, resets_at=NOW + 10)
    assert w.is_current(NOW) and w.is_current(NOW + 9.9)
    assert not w.is_current(NOW + 10) and not w.is_current(NOW + 3600)
    assert Window("tokens", limit=100, remaining=1).is_current(NOW + 10**9)  # no reset given: never stale


def _snapshot() -> QuotaSnapshot:
    return QuotaSnapshot(
        account_id="a",
        updated_at=NOW,
        windows=(
            Window("requests", limit=50, remaining=45, resets_at=NOW + 60),  # 90%
            Window("tokens", limit=100, remaining=5, resets_at=NOW + 30),  # 5%, resets first
            Window("5h", used_percent=70, resets_at=NOW + 3600),  # 30%
            Window("unknown"),  # nothing known
        ),
    )


def test_a_window_past_its_reset_is_no_longer_current() -> None:
    snapshot = _snapshot()
    assert [w.name for w in snapshot.current_windows(NOW)] == ["requests", "tokens", "5h", "unknown"]
    # after the tokens window reset, its 5% says nothing any more
    assert [w.name for w in snapshot.current_windows(NOW + 31)] == ["requests", "5h", "unknown"]


def test_below_minimum() -> None:
    book = QuotaBook({"a": _snapshot()})
    assert book.below_minimum("a", 0, NOW) is None  # 0 turns the check off
    assert book.below_minimum("a", 5, NOW) is None  # 5% left is not below 5%
    assert book.below_minimum("a", 5.1, NOW).name == "tokens"  # type: ignore[union-attr]
    assert book.below_minimum("a", 5.1, NOW + 31) is None  # the low window reset
    assert book.below_minimum("a", 31, NOW + 31).name == "5h"  # type: ignore[union-attr]
    assert book.below_minimum("nobody", 50, NOW) is None


def test_below_killswitch_only_for_named_windows() -> None:
    book = QuotaBook({"a": _snapshot()})
    assert book.below_killswitch("a", None, NOW) is None
    assert book.below_killswitch("a", {"requests": 50}, NOW) is None
    assert book.below_killswitch("a", {"tokens": 10}, NOW).name == "tokens"  # type: ignore[union-attr]
    assert book.below_killswitch("a", {"tokens": 10}, NOW + 31) is None


def test_book_update_merges_windows_by_name_and_keeps_the_plan() -> None:
    book = QuotaBook()
    assert book.update("a", [], NOW) is False and book.get("a") is None
    assert book.update("a", [Window("5h", used_percent=10), Window("weekly", used_percent=20)], NOW, "plus")
    assert book.update("a", [Window("5h", used_percent=15)], NOW + 5)
    snapshot = book.get("a")
    assert snapshot is not None
    assert _by_name(list(snapshot.windows))["5h"].used_percent == 15
    assert _by_name(list(snapshot.windows))["weekly"].used_percent == 20
    assert snapshot.updated_at == NOW + 5 and snapshot.plan_type == "plus"
    book.forget({"b"})
    assert book.get("a") is None


# --------------------------------------------------------------------------- persistence


def test_quota_book_round_trips_through_json() -> None:
    book = QuotaBook()
    book.update("a", [Window("tokens", limit=100, remaining=5, resets_at=NOW + 30)], NOW)
    book.update("c", [Window("5h", used_percent=70, resets_at=NOW + 3600, window_minutes=300)], NOW, "pro")
    again = QuotaBook.from_json(json.loads(json.dumps(book.to_json())))
    assert again.snapshots == book.snapshots


def test_quota_book_skips_corrupt_entries() -> None:
    good = QuotaSnapshot("a", (Window("x", used_percent=1),), NOW).to_json()
    data = [
        good,
        {"windows": []},
        {"account_id": "b", "updated_at": "x"},
        {"account_id": "c", "updated_at": 1, "windows": [{"bogus": 1}]},
        7,
    ]
    assert list(QuotaBook.from_json(data).snapshots) == ["a"]
    assert QuotaBook.from_json(None).snapshots == {}
    assert QuotaBook.from_json({"a": 1}).snapshots == {}


def test_runtime_state_round_trips_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.json"
    state = RuntimeState()
    state.quota.update("a", [Window("tokens", limit=100, remaining=5, resets_at=NOW + 30)], NOW, "plan")
    state.health.cool_down("a", NOW + 60, "429 from upstream")
    state.router.pin("sess", "a", NOW)
    state.dirty = True
    state.save(path)
    assert not state.dirty
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = RuntimeState.load(path)
    assert loaded.quota.snapshots == state.quota.snapshots
    assert loaded.health.accounts == state.health.accounts
    assert loaded.router.pinned("sess", NOW + 1, 60) == "a"


def test_runtime_state_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{ not json")
    assert RuntimeState.load(path).quota.snapshots == {}
    path.write_text('{"quota": {"x": 1}, "health": [], "pins": 3}')
    state = RuntimeState.load(path)
    assert (state.quota.snapshots, state.health.accounts) == ({}, {})
    assert RuntimeState.load(tmp_path / "missing.json").quota.snapshots == {}
    assert isinstance(RuntimeState().health, HealthBook) and isinstance(RuntimeState().router, Router)
