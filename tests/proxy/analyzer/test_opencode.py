"""The cache analyzer over a synthetic OpenCode database (OpenCode's `session` and `message` tables)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from proxy.analyzer import SourceError, analyze_opencode, default_opencode_db, format_report, load_opencode
from tests.support.gateway import run_cli

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
M = 1_000_000

_SCHEMA = (
    """CREATE TABLE `session` (
        `id` text PRIMARY KEY, `project_id` text NOT NULL, `parent_id` text, `slug` text NOT NULL,
        `directory` text NOT NULL, `title` text NOT NULL, `version` text NOT NULL,
        `cost` real DEFAULT 0 NOT NULL, `tokens_input` integer DEFAULT 0 NOT NULL,
        `tokens_output` integer DEFAULT 0 NOT NULL, `tokens_reasoning` integer DEFAULT 0 NOT NULL,
        `tokens_cache_read` integer DEFAULT 0 NOT NULL, `tokens_cache_write` integer DEFAULT 0 NOT NULL,
        `time_created` integer NOT NULL, `time_updated` integer NOT NULL)""",
    """CREATE TABLE `message` (
        `id` text PRIMARY KEY, `session_id` text NOT NULL, `time_created` integer NOT NULL,
        `time_updated` integer NOT NULL, `data` text NOT NULL)""",
)


class OpenCodeDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._n = 0
        with sqlite3.connect(path) as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def session(self, sid: str, *, title: str = "a task", parent: str | None = None) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "INSERT INTO session (id, project_id, parent_id, slug, directory, title, version, time_created, "
                "time_updated) VALUES (?, 'global', ?, 'slug', '/work', ?, '1.18.33', ?, ?)",
                (sid, parent, title, T0_MS, T0_MS),
            )

    def message(self, sid: str, at_s: float, data: dict[str, Any]) -> None:
        self._n += 1
        created = T0_MS + int(at_s * 1000)
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)",
                (f"msg_{self._n:04d}", sid, created, created, json.dumps(data)),
            )

    def user(self, sid: str, at_s: float) -> None:
        self.message(sid, at_s, {"role": "user", "time": {"created": T0_MS + int(at_s * 1000)}})

    def assistant(
        self,
        sid: str,
        at_s: float,
        *,
        input: int,
        read: int = 0,
        write: int = 0,
        output: int = 10,
        model: str = "claude-sonnet-4-5",
        provider: str = "anthropic",
        cost: float = 0.0,
    ) -> None:
        created = T0_MS + int(at_s * 1000)
        self.message(
            sid,
            at_s,
            {
                "role": "assistant",
                "parentID": "msg_user",
                "cost": cost,
                "tokens": {
                    "total": input + read + write + output,
                    "input": input,
                    "output": output,
                    "reasoning": 0,
                    "cache": {"read": read, "write": write},
                },
                "modelID": model,
                "providerID": provider,
                "time": {"created": created, "completed": created + 1500},
                "finish": "stop",
            },
        )


@pytest.fixture
def db(tmp_path: Path) -> OpenCodeDB:
    db = OpenCodeDB(tmp_path / "opencode.db")
    db.session("ses_main", title="fix the build")
    db.user("ses_main", 0)
    db.assistant("ses_main", 1, input=10, write=8_000, cost=0.0301)
    db.user("ses_main", 30)
    db.assistant("ses_main", 31, input=12, read=8_000, write=600)
    db.user("ses_main", 731)  # 12 minutes later: the 5-minute cache expired
    db.assistant("ses_main", 751, input=9_000, read=0, write=0)
    db.session("ses_child", title="explore", parent="ses_main")
    db.assistant("ses_child", 40, input=5, write=2_000, model="gpt-5", provider="openai")
    db.assistant("ses_child", 50, input=100, read=1_920, model="gpt-5", provider="openai")
    db.session("ses_old", title="last month")
    db.assistant("ses_old", -30 * 86400, input=10, write=5_000)
    return db


def test_turns_from_assistant_messages(db: OpenCodeDB) -> None:
    records = load_opencode(db.path)
    assert [(r.session_id, r.usage.total_input) for r in records] == [
        ("ses_old", 5_010),
        ("ses_main", 8_010),
        ("ses_main", 8_612),
        ("ses_child", 2_005),
        ("ses_child", 2_020),
        ("ses_main", 9_000),
    ]
    main = records[1]
    assert main.start == (T0_MS + 1000) / 1000 and main.end == (T0_MS + 2500) / 1000
    assert (
        main.provider == "anthropic"
        and main.recorded_cost == 0.0301
        and main.session_title == "fix the build"
    )
    assert records[3].parent_session_id == "ses_main" and records[3].provider == "openai"


def test_analysis_of_the_database(db: OpenCodeDB) -> None:
    report = analyze_opencode(db.path, days=None)
    assert report.source == "opencode" and report.stabilizer is None
    by_id = {s.session_id: s for s in report.sessions}
    main = by_id["ses_main"]
    assert main.title == "fix the build"
    t1, t2, t3 = main.turns
    assert (t2.uncached, t2.cache_read, t2.cache_write) == (12, 8_000, 600)
    assert t2.hit_ratio == pytest.approx(8_000 / 8_612)
    assert t3.gap_s == pytest.approx(720) and t3.idle == "5m"
    assert (
        t3.event is not None and t3.event.kind == "expiry"
    )  # no 1h writes recorded: the 5-minute TTL applies
    # costs: OpenCode records no TTL split, so writes are priced at the 5-minute rate
    out = 10 * 15 / M
    assert t1.costs.actual == pytest.approx(10 * 3 / M + 8_000 * 3.75 / M + out)
    assert t1.costs.recorded == 0.0301
    assert t3.costs.cache_1h == pytest.approx(8_612 * 0.3 / M + 388 * 6 / M + out)
    assert t3.costs.cache_5m == pytest.approx(9_000 * 3.75 / M + out)
    child = by_id["ses_child"]
    assert child.parent_session_id == "ses_main"
    assert child.turns[1].hit_ratio == pytest.approx(1_920 / 2_020)
    assert any("OpenCode keeps no request bodies" in note for note in main.notes)
    assert any("5-minute rate" in line for line in report.assumptions)
    text = format_report(report)
    assert "OpenCode database" in text and "“fix the build”" in text and "subagent of ses_main" in text


def test_a_break_in_opencode_data_cannot_say_where(tmp_path: Path) -> None:
    db = OpenCodeDB(tmp_path / "opencode.db")
    db.session("s")
    db.assistant("s", 0, input=10, write=8_000)
    db.assistant("s", 20, input=10, read=0, write=8_100)
    (session,) = analyze_opencode(db.path, days=None).sessions
    event = session.turns[1].event
    assert event is not None and event.kind == "break" and "OpenCode keeps no request bodies" in event.detail


def test_filters(db: OpenCodeDB) -> None:
    now = T0_MS / 1000 + 3600
    recent = analyze_opencode(db.path, days=1, now=now)
    assert {s.session_id for s in recent.sessions} == {"ses_main", "ses_child"}
    only = analyze_opencode(db.path, days=None, session_id="ses_child")
    assert [s.session_id for s in only.sessions] == ["ses_child"]


def test_messages_without_usage_are_skipped(tmp_path: Path) -> None:
    db = OpenCodeDB(tmp_path / "opencode.db")
    db.session("s")
    db.assistant("s", 0, input=0, output=0)  # aborted before the model answered
    db.message("s", 1, {"role": "assistant"})
    db.message("s", 2, {"not": "json?"})
    with sqlite3.connect(db.path) as conn:
        conn.execute("INSERT INTO message VALUES ('broken', 's', 1, 1, 'not json')")
    assert load_opencode(db.path) == []


def test_missing_or_foreign_database(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no OpenCode database"):
        load_opencode(tmp_path / "nope.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(SourceError, match="does not look like OpenCode's database"):
        load_opencode(other)


def test_default_location() -> None:
    assert default_opencode_db({"OPENCODE_DB": "/x/oc.db", "XDG_DATA_HOME": "/d"}) == Path("/x/oc.db")
    assert default_opencode_db({"XDG_DATA_HOME": "/d"}) == Path("/d/opencode/opencode.db")
    assert default_opencode_db({}) == Path.home() / ".local" / "share" / "opencode" / "opencode.db"


def test_cli(db: OpenCodeDB, tmp_path: Path) -> None:
    chart = tmp_path / "chart.svg"
    result = run_cli(
        "analyze", "cache", "--opencode-db", str(db.path), "--days", "3650", "--json", "--chart", str(chart)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == "opencode" and len(data["sessions"]) == 3
    assert chart.read_text().startswith("<svg")
    # without a PATH: $OPENCODE_DB
    default = run_cli(
        "analyze", "cache", "--opencode-db", "--days", "3650", env={"OPENCODE_DB": str(db.path)}
    )
    assert default.returncode == 0, default.stderr
    assert "Session ses_main “fix the build”" in default.stdout
