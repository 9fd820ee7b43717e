"""Budgets with an injected clock: the cap skips the account until local midnight / the month's first, spend is
seeded from the request log after a restart, unknown prices count tokens and no dollars, 80 % warns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from proxy.config.settings import Settings
from proxy.features.base import Completed
from proxy.features.budgets import Budgets
from proxy.features.request_log import RequestLog, RequestRecord
from proxy.providers.base import Incoming
from proxy.wire.usage import Usage

# claude-sonnet-4-5 is $3 / $15 per million input / output tokens: 100k output tokens cost $1.50.
DOLLAR_AND_A_HALF = Usage(output_tokens=100_000)


@pytest.fixture(autouse=True)
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time that is not UTC (and has DST), so local midnight is not the UTC one."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def local(*args: int) -> float:
    return datetime(*args).timestamp()  # type: ignore[arg-type]


def settings(daily: float | None = 2.0, monthly: float | None = None) -> Settings:
    budget = {k: v for k, v in (("daily_usd", daily), ("monthly_usd", monthly)) if v is not None}
    return Settings.model_validate(
        {
            "accounts": [
                {"id": "main", "kind": "anthropic-api-key", "label": "main", "budget": budget},
                {"id": "spare", "kind": "anthropic-api-key", "label": "spare"},
            ]
        }
    )


REQUEST = Incoming(
    method="POST",
    path="/v1/messages",
    query="",
    headers={},
    body=b"{}",
    json={},
    protocol="anthropic",
    family="anthropic",
)


def done(
    s: Settings, at: float, usage: Usage = DOLLAR_AND_A_HALF, model: str = "claude-sonnet-4-5"
) -> Completed:
    return Completed(
        request=REQUEST,
        account=s.accounts[0],
        status=200,
        usage=usage,
        model=model,
        finished_at=at,
        latency_ms=1.0,
        ttfb_ms=1.0,
        billing="metered",
    )


def budgets(s: Settings, now: float, log: RequestLog | None = None, tmp: Path | None = None) -> Budgets:
    feature = Budgets(log or RequestLog((tmp or Path("/nonexistent")) / "r.sqlite3"), clock=lambda: now)
    feature.configure(s)
    return feature


def test_the_daily_cap_skips_the_account_until_local_midnight(tmp_path: Path) -> None:
    s = settings(daily=2.0)
    now = local(2026, 3, 14, 22, 0)
    b = budgets(s, now, tmp=tmp_path)
    b.on_complete(done(s, now))
    assert b.allows(REQUEST, s.accounts[0], now) is None  # $1.50 of $2
    b.on_complete(done(s, now + 60))
    block = b.allows(REQUEST, s.accounts[0], now + 120)
    assert block is not None and block.state == "over_budget"
    assert block.until == local(2026, 3, 15, 0, 0)
    assert "daily budget $2 reached ($3.00 today)" in block.reason and "local midnight" in block.reason
    assert b.allows(REQUEST, s.accounts[1], now + 120) is None  # the spare has no budget
    assert b.allows(REQUEST, s.accounts[0], local(2026, 3, 14, 23, 59, 59)) is not None
    assert b.allows(REQUEST, s.accounts[0], local(2026, 3, 15, 0, 0)) is None  # a new local day


def test_the_monthly_cap_holds_across_days_until_the_first_of_the_next_month(tmp_path: Path) -> None:
    s = settings(daily=None, monthly=4.0)
    b = budgets(s, local(2026, 12, 30, 9), tmp=tmp_path)
    for day in (29, 30, 31):
        b.on_complete(done(s, local(2026, 12, day, 9)))
    block = b.allows(REQUEST, s.accounts[0], local(2026, 12, 31, 10))
    assert block is not None and block.until == local(2027, 1, 1)
    assert (
        "monthly budget $4 reached ($4.50 this month)" in block.reason and "1st of next month" in block.reason
    )
    assert b.allows(REQUEST, s.accounts[0], local(2027, 1, 1, 0, 0, 1)) is None


def test_a_model_without_a_price_counts_tokens_and_never_dollars(tmp_path: Path) -> None:
    s = settings(daily=2.0)
    now = local(2026, 5, 2, 12)
    b = budgets(s, now, tmp=tmp_path)
    for _ in range(5):
        b.on_complete(
            done(s, now, usage=Usage(input_tokens=1000, output_tokens=500), model="claude-mystery-9")
        )
    assert b.allows(REQUEST, s.accounts[0], now) is None
    state = b.snapshot(now)["main"]
    assert state["spent_today_usd"] == 0.0
    assert state["unpriced_tokens"] == 7500 and state["unpriced_models"] == ["claude-mystery-9"]


def test_80_percent_of_a_cap_is_a_warning_and_the_cap_is_over_budget(tmp_path: Path) -> None:
    s = settings(daily=1.8)
    now = local(2026, 5, 2, 12)
    b = budgets(s, now, tmp=tmp_path)
    assert b.snapshot(now)["main"]["state"] == "ok"
    assert "spare" not in b.snapshot(now)
    b.on_complete(done(s, now))  # $1.50 of $1.80: 83 %
    state = b.snapshot(now)["main"]
    assert state["state"] == "warning" and state["used_percent"] == 83.3
    assert state["day_resets_at"] == local(2026, 5, 3)
    b.on_complete(done(s, now))
    state = b.snapshot(now)["main"]
    assert state["state"] == "over_budget" and state["blocked_until"] == local(2026, 5, 3)


def test_spend_survives_a_restart_from_the_request_log(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.sqlite3")
    log.start()
    now = local(2026, 7, 20, 15)

    def row(ts: float, cost: float | None, account: str = "main", tokens: int = 0) -> RequestRecord:
        return RequestRecord(
            ts=ts,
            route="/v1/messages",
            family="anthropic",
            account_id=account,
            status=200,
            latency_ms=1.0,
            usage=Usage(input_tokens=tokens),
            cost_usd=cost,
        )

    try:
        for rec in (
            row(local(2026, 6, 30, 23, 59), 100.0),  # last month: not counted
            row(local(2026, 7, 19, 23, 0), 5.0),  # yesterday: the month only
            row(local(2026, 7, 20, 0, 30), 1.25),  # today
            row(local(2026, 7, 20, 9, 0), 0.5),
            row(local(2026, 7, 20, 9, 5), None, tokens=4000),  # price unknown
            row(local(2026, 7, 20, 9, 0), 9.0, account="spare"),
            row(now + 10, 50.0),  # after this run started: on_complete counts it, not the seed
        ):
            log.record(rec)
        assert log.flush(5.0)
        s = settings(daily=2.0, monthly=6.0)
        b = budgets(s, now, log=log)
        asyncio.run(b.run())
        assert b.seeded.is_set()
        state = b.snapshot(now)["main"]
        assert state["spent_today_usd"] == 1.75 and state["spent_month_usd"] == 6.75
        assert state["unpriced_tokens"] == 4000
        block = b.allows(REQUEST, s.accounts[0], now)
        assert block is not None and block.until == local(2026, 8, 1)  # the monthly cap, the later reset
        assert "daily" not in block.reason

        fresh = settings(daily=2.0)
        b2 = budgets(fresh, now, log=log)
        asyncio.run(b2.run())
        assert b2.allows(REQUEST, fresh.accounts[0], now) is None  # $1.75 of $2 today
        b2.on_complete(done(fresh, now + 1, usage=Usage(output_tokens=20_000)))  # + $0.30
        assert b2.allows(REQUEST, fresh.accounts[0], now + 2) is not None
    finally:
        log.stop(5.0)


def test_a_missing_request_log_seeds_nothing(tmp_path: Path) -> None:
    s = settings()
    b = budgets(s, local(2026, 1, 1, 12), tmp=tmp_path)
    asyncio.run(b.run())
    assert b.seeded.is_set() and b.snapshot(local(2026, 1, 1, 12))["main"]["spent_month_usd"] == 0.0


def test_a_subscription_or_an_unanswered_request_costs_nothing(tmp_path: Path) -> None:
    s = settings(daily=0.01)
    now = local(2026, 1, 1, 12)
    b = budgets(s, now, tmp=tmp_path)
    b.on_complete(
        Completed(
            request=REQUEST,
            account=None,
            status=503,
            usage=None,
            model=None,
            finished_at=now,
            latency_ms=1,
            ttfb_ms=None,
        )
    )
    sub = done(s, now)
    b.on_complete(Completed(**{**sub.__dict__, "billing": "subscription"}))
    assert b.allows(REQUEST, s.accounts[0], now) is None
