"""Reading the request log: the viewer's filters and paging, one row by id, the filter choices, activity per hour and
day, and a database written by the previous schema (no user agent yet) migrated in place."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from proxy.features.request_history import RequestFilter, RequestHistory
from proxy.features.request_log import RequestLog
from proxy.features.request_rows import MIGRATIONS, SCHEMA_VERSION, RequestRecord
from proxy.wire.user_agent import agent_name
from tests.support.request_records import request_record

CLAUDE = "claude-cli/2.1.330 (external, sdk-cli)"
OPENCODE = "opencode/1.18.33 ai-sdk/provider-utils/4.0.46 runtime/bun/1.3.14"


# Claude Code on the "work" API key
_rec = partial(
    request_record,
    account_id="work",
    account_label="Work",
    account_kind="anthropic-api-key",
    latency_ms=800.0,
    ttfb_ms=120.0,
    fallback_chain=["work:200"],
    user_agent=CLAUDE,
)


def _write(log: RequestLog, *records: RequestRecord) -> None:
    for rec in records:
        log.record(rec)
    assert log.flush(5)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (CLAUDE, "Claude Code"),
        (OPENCODE, "OpenCode"),
        ("codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)", "Codex"),
        ("codex_cli_rs/0.40.0 (Mac OS 15.0; arm64)", "Codex"),
        ("Anthropic/JS 0.91.1", "Anthropic SDK (JS)"),
        ("OpenAI/Python 1.99.0", "OpenAI SDK (Python)"),
        ("curl/8.5.0", "curl"),
        ("MyTool/2.0 (linux)", "MyTool"),
        ("", None),
        (None, None),
    ],
)
def test_agent_names_from_user_agents(header: str | None, name: str | None) -> None:
    assert agent_name(header) == name


def test_filters_by_account_agent_and_status_newest_first(log: RequestLog, db_path: Path) -> None:
    _write(
        log,
        _rec(100.0),
        _rec(200.0, account_id="team", account_label="Team", user_agent=OPENCODE),
        _rec(300.0, status=429, error="rate limited", fallback_chain=["work:429", "personal:200"]),
        _rec(400.0, status=200, error="stream broke"),
        _rec(500.0, user_agent=None),
    )
    history = RequestHistory(db_path)

    def ts(**wanted: object) -> list[float]:
        return [r.record.ts for r in history.recent(RequestFilter(**wanted))]  # type: ignore[arg-type]

    assert ts() == [500.0, 400.0, 300.0, 200.0, 100.0]
    assert ts(account_id="team") == [200.0]
    assert ts(agent="OpenCode") == [200.0]
    assert ts(agent="") == [500.0]  # no User-Agent at all
    assert ts(status="error") == [400.0, 300.0]
    assert ts(status="ok") == [500.0, 200.0, 100.0]
    assert ts(status="fallback") == [300.0]
    assert ts(status=429) == [300.0]
    assert ts(since=250.0, account_id="work") == [500.0, 400.0, 300.0]
    first = history.recent(RequestFilter(limit=2))
    assert [r.record.ts for r in first] == [500.0, 400.0]
    assert ts(before_id=first[-1].id, limit=2) == [300.0, 200.0]

    row = history.recent(RequestFilter(status=429))[0]
    assert row.agent == "Claude Code" and row.failed
    assert row.record.user_agent == CLAUDE
    assert row.record.fallback_chain == ["work:429", "personal:200"]
    assert history.get(row.id) == row
    assert history.get(10_000) is None
    assert history.choices(since=0.0) == {
        "accounts": [{"id": "team", "label": "Team"}, {"id": "work", "label": "Work"}],
        "agents": ["Claude Code", "OpenCode"],
    }


def test_a_long_user_agent_is_capped(log: RequestLog, db_path: Path) -> None:
    _write(log, _rec(1.0, user_agent="curl/8 " + "x" * 5000))
    [row] = RequestHistory(db_path).recent(RequestFilter())
    assert row.record.user_agent is not None and len(row.record.user_agent) == 256
    assert row.agent == "curl"


def test_activity_per_hour_and_day_has_every_bucket(log: RequestLog, db_path: Path) -> None:
    now = datetime(2026, 3, 10, 15, 30).timestamp()
    hour = 3600.0
    _write(
        log,
        _rec(now - 60),  # this hour
        _rec(now - 120, status=500),  # this hour, failed
        _rec(now - 2 * hour),  # two hours ago
        _rec(now - 3 * 86400),  # three days ago
        _rec(now - 60, account_id="team"),  # another account
        _rec(now - 40 * 86400),  # outside 30 days
    )
    history = RequestHistory(db_path)
    hours = history.activity(account_id="work", unit="hour", count=24, now=now)
    assert len(hours) == 24
    assert hours[-1].start == datetime(2026, 3, 10, 15)
    assert hours[0].start == datetime(2026, 3, 9, 16)
    assert (hours[-1].requests, hours[-1].errors, hours[-1].tokens) == (2, 1, 2 * 370)
    assert hours[-3].requests == 1 and hours[-2].requests == 0
    assert sum(h.requests for h in hours) == 3

    days = history.activity(account_id="work", unit="day", count=30, now=now)
    assert len(days) == 30 and days[-1].start == datetime(2026, 3, 10)
    assert days[-1].requests == 3
    assert days[-4].start == datetime(2026, 3, 10) - timedelta(days=3) and days[-4].requests == 1
    assert sum(d.requests for d in days) == 4


def test_reading_before_anything_was_written(db_path: Path) -> None:
    history = RequestHistory(db_path)
    assert history.recent(RequestFilter()) == []
    assert history.get(1) is None
    assert history.choices(since=0.0) == {"accounts": [], "agents": []}
    assert [a.requests for a in history.activity(account_id="x", unit="day", count=3, now=1e9)] == [0, 0, 0]
    assert not db_path.exists()


def test_a_log_from_the_first_schema_gains_the_later_columns(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO requests (ts, route, family, status, latency_ms, stream, fallback_chain, hops, purpose, "
        "request_bytes) VALUES (1.0, '/v1/messages', 'anthropic', 200, 5.0, 0, '[]', 0, 'agent', 10)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    log = RequestLog(db_path)
    log.start()
    try:
        _write(log, _rec(2.0, user_agent=OPENCODE))
    finally:
        log.stop(5)
    with sqlite3.connect(db_path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    check.close()
    rows = RequestHistory(db_path).recent(RequestFilter())
    assert [(r.record.ts, r.agent, r.record.user_agent) for r in rows] == [
        (2.0, "OpenCode", OPENCODE),
        (1.0, None, None),
    ]
