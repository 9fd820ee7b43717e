from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest

from proxy.features.request_log import (
    SCHEMA_VERSION,
    RequestLog,
    RequestLogError,
    RequestRecord,
    format_summary,
)
from proxy.wire.usage import Usage
from tests.support.request_records import request_record

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


# the log's own defaults: a streamed, priced request in a session
_rec = partial(request_record, stream=True, cost_usd=0.01, session_id="sess-1", request_bytes=1234)


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "headway-request-log"]


def test_start_runs_one_named_writer_thread_and_stop_ends_it(db_path: Path) -> None:
    request_log = RequestLog(db_path)
    request_log.start()
    try:
        assert len(_writer_threads()) == 1
    finally:
        assert request_log.stop(timeout=5)
    assert _writer_threads() == []


def test_round_trip_keeps_every_field(log: RequestLog) -> None:
    rec = _rec(
        ts=1_700_000_123.5,
        route="/v1/responses",
        family="openai",
        account_kind="chatgpt",
        model="gpt-5-codex",
        status=429,
        ttfb_ms=None,
        stream=False,
        usage=Usage(
            input_tokens=1,
            output_tokens=2,
            cache_read_tokens=3,
            cache_write_tokens=4,
            cache_write_5m_tokens=1,
            cache_write_1h_tokens=3,
            reasoning_tokens=5,
        ),
        cost_usd=None,
        parent_session_id="sess-0",
        fallback_chain=["main:429", "backup:200"],
        error="rate_limit_error",
        purpose="keep-warm",
        request_bytes=99,
        upstream_request_id="req_011CSHoEeqs5C35K2UUqR7Fy",
    )
    log.record(rec)

    assert log.flush(timeout=5)
    assert log.query() == [rec]


def test_usage_none_stays_none(log: RequestLog) -> None:
    log.record(_rec(usage=None, status=502, error="connect timeout"))

    assert log.flush(timeout=5)
    [row] = log.query()
    assert row.usage is None
    assert row.error == "connect timeout"


def test_writes_from_many_threads_all_land(log: RequestLog) -> None:
    threads_count, per_thread = 8, 250

    def produce(n: int) -> None:
        for i in range(per_thread):
            log.record(_rec(ts=1_700_000_000.0 + i, session_id=f"thread-{n}"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert log.flush(timeout=10)
    assert len(log.query(limit=10_000)) == threads_count * per_thread
    assert len(log.query(session_id="thread-3", limit=10_000)) == per_thread
    assert log.dropped == 0


def test_query_filters_and_orders_newest_first(log: RequestLog) -> None:
    log.record(_rec(ts=100.0, account_id="a", session_id="s1"))
    log.record(_rec(ts=200.0, account_id="b", session_id="s1"))
    log.record(_rec(ts=300.0, account_id="a", session_id="s2"))
    assert log.flush(timeout=5)

    assert [r.ts for r in log.query()] == [300.0, 200.0, 100.0]
    assert [r.ts for r in log.query(since=150.0)] == [300.0, 200.0]
    assert [r.ts for r in log.query(account_id="a")] == [300.0, 100.0]
    assert [r.ts for r in log.query(session_id="s1")] == [200.0, 100.0]
    assert [r.ts for r in log.query(account_id="a", session_id="s1")] == [100.0]
    assert [r.ts for r in log.query(limit=1)] == [300.0]


def test_summary_groups_by_account_and_model(log: RequestLog) -> None:
    main = {"account_id": "acct-main", "account_label": "Main"}
    log.record(_rec(ts=50.0, latency_ms=9999.0, **main))  # before `since`: not counted
    log.record(_rec(ts=100.0, latency_ms=100.0, ttfb_ms=10.0, cost_usd=0.5, **main))
    log.record(_rec(ts=101.0, latency_ms=300.0, ttfb_ms=30.0, cost_usd=0.25, **main))
    log.record(
        _rec(
            ts=102.0,
            latency_ms=200.0,
            ttfb_ms=None,
            status=200,
            error="overloaded_error",
            usage=None,
            cost_usd=None,
            **main,
        )
    )
    log.record(_rec(ts=103.0, status=529, usage=None, cost_usd=None, ttfb_ms=None, **main))
    log.record(_rec(ts=104.0, model="claude-opus-4-1", cost_usd=2.0, **main))
    log.record(
        _rec(
            ts=105.0,
            account_id="acct-backup",
            account_label="Backup",
            fallback_chain=["main:429", "backup:200"],
            usage=Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4),
            cost_usd=None,
        )
    )
    assert log.flush(timeout=5)

    rows = {(r["account_id"], r["model"]): r for r in log.summary(since=100.0)}

    assert set(rows) == {
        ("acct-main", "claude-sonnet-4-5"),
        ("acct-main", "claude-opus-4-1"),
        ("acct-backup", "claude-sonnet-4-5"),
    }
    sonnet = rows[("acct-main", "claude-sonnet-4-5")]
    assert sonnet["account_label"] == "Main"
    assert sonnet["requests"] == 4
    assert sonnet["errors"] == 2
    assert sonnet["fallbacks"] == 0
    assert sonnet["input_tokens"] == 20
    assert sonnet["output_tokens"] == 40
    assert sonnet["cache_read_tokens"] == 600
    assert sonnet["cache_write_tokens"] == 80
    assert sonnet["cost_usd"] == pytest.approx(0.75)
    assert sonnet["p50_latency_ms"] == pytest.approx(150.0)  # 100, 200, 300, 100 (default)
    assert sonnet["p50_ttfb_ms"] == pytest.approx(20.0)  # 10, 30
    backup = rows[("acct-backup", "claude-sonnet-4-5")]
    assert backup["fallbacks"] == 1
    assert backup["cost_usd"] is None
    assert backup["input_tokens"] == 1
    assert rows[("acct-main", "claude-opus-4-1")]["cost_usd"] == pytest.approx(2.0)


def test_summary_label_is_the_latest(log: RequestLog) -> None:
    log.record(_rec(ts=1.0, account_label="Old name"))
    log.record(_rec(ts=2.0, account_label="New name"))
    assert log.flush(timeout=5)

    [row] = log.summary(since=0.0)
    assert row["account_label"] == "New name"
    assert row["requests"] == 2


def test_format_summary_is_a_readable_table(log: RequestLog) -> None:
    log.record(_rec(ts=1.0, cost_usd=1.5, usage=Usage(input_tokens=1_234_567, output_tokens=10)))
    log.record(_rec(ts=2.0, account_id="acct-b", account_label="Backup", cost_usd=0.25))
    assert log.flush(timeout=5)

    text = format_summary(log.summary(since=0.0))
    lines = text.splitlines()

    assert lines[0].split()[:3] == ["account", "model", "reqs"]
    assert any(line.startswith("Main") and "1,234,567" in line and "1.5000" in line for line in lines)
    assert any(line.startswith("Backup") for line in lines)
    assert lines[-1].startswith("total") and "1.7500" in lines[-1]
    assert format_summary([]) == "No requests in this period."


@posix_only
def test_database_is_owner_only(log: RequestLog, db_path: Path) -> None:
    log.record(_rec())
    assert log.flush(timeout=5)

    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


@posix_only
def test_existing_database_is_tightened_to_owner_only(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o644)
    os.chmod(db_path, 0o644)
    request_log = RequestLog(db_path)
    request_log.start()
    try:
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    finally:
        assert request_log.stop(timeout=5)


def test_schema_version_and_wal(log: RequestLog, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_restart_keeps_rows_and_version(db_path: Path) -> None:
    first = RequestLog(db_path)
    first.start()
    first.record(_rec(ts=1.0))
    assert first.stop(timeout=5)

    second = RequestLog(db_path)
    second.start()
    second.record(_rec(ts=2.0))
    assert second.stop(timeout=5)

    assert [r.ts for r in RequestLog(db_path).query()] == [2.0, 1.0]


def test_database_from_a_newer_headway_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    request_log = RequestLog(db_path)
    with pytest.raises(RequestLogError, match="newer"):
        request_log.start()
    assert _writer_threads() == []
    with pytest.raises(RequestLogError, match="newer"):
        request_log.query()


def _version_1_database(db_path: Path) -> None:
    """A request log as Headway wrote it before ``requested_model`` (schema version 1), with one row."""
    from proxy.features.request_rows import MIGRATIONS as _MIGRATIONS

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO requests (ts, route, family, account_id, model, status, latency_ms, stream, cost_usd,"
        " fallback_chain, hops, purpose, request_bytes) VALUES (5.0, '/v1/messages', 'anthropic', 'main',"
        " 'claude-sonnet-4-5', 200, 1.0, 0, 0.25, '[]', 1, 'agent', 10)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_version_1_log_is_migrated_by_the_writer_and_keeps_its_rows(db_path: Path) -> None:
    _version_1_database(db_path)
    request_log = RequestLog(db_path)
    request_log.start()
    request_log.record(_rec(ts=6.0, requested_model="fast"))
    assert request_log.stop(timeout=5)
    rows = RequestLog(db_path).query()
    assert [(r.ts, r.requested_model) for r in rows] == [(6.0, "fast"), (5.0, None)]


def test_a_version_1_log_can_be_read_before_the_new_headway_ever_wrote_to_it(db_path: Path) -> None:
    """`headway usage` (or the budgets' seed) right after an upgrade, before the gateway started once."""
    _version_1_database(db_path)
    reader = RequestLog(db_path)
    assert [(r.ts, r.requested_model) for r in reader.query()] == [(5.0, None)]
    assert reader.spend(month_start=0.0, day_start=0.0, before=10.0) == [
        ("main", "month", 0.25, 0),
        ("main", "day", 0.25, 0),
    ]


def test_reading_without_a_database_returns_nothing_and_creates_nothing(db_path: Path) -> None:
    reader = RequestLog(db_path)

    assert reader.query() == []
    assert reader.summary(since=0.0) == []
    assert not db_path.exists()


def test_reader_in_another_connection_sees_rows_while_writer_keeps_writing(
    log: RequestLog, db_path: Path
) -> None:
    reader = RequestLog(db_path)  # never started: the CLI's view
    stop = threading.Event()
    written = 0

    def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            log.record(_rec(ts=float(written)))
            written += 1
            time.sleep(0.0005)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (len(seen) < 5 or seen[-1] == 0):
            seen.append(len(reader.query(limit=100_000)))
            assert reader.summary(since=0.0) is not None
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(timeout=5)

    assert seen == sorted(seen)
    assert seen[-1] > 0
    assert log.flush(timeout=5)
    assert len(reader.query(limit=100_000)) == written


def test_reader_in_another_process(log: RequestLog, db_path: Path) -> None:
    log.record(_rec(ts=1.0, account_id="from-gateway"))
    assert log.flush(timeout=5)
    script = (
        "import sys; from pathlib import Path; from proxy.features.request_log import RequestLog; "
        "rows = RequestLog(Path(sys.argv[1])).summary(since=0.0); "
        "print(rows[0]['account_id'], rows[0]['requests'])"
    )

    result = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )

    assert result.stdout.split() == ["from-gateway", "1"]


def test_record_never_blocks_and_counts_drops_when_full(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    request_log = RequestLog(db_path, queue_size=3)
    original_write = RequestLog._write

    def stuck_write(self: RequestLog, batch: Sequence[RequestRecord]) -> None:
        release.wait(10)
        original_write(self, batch)

    monkeypatch.setattr(RequestLog, "_write", stuck_write)
    request_log.start()
    try:
        with caplog.at_level(logging.WARNING, logger="headway.request_log"):
            started = time.monotonic()
            for i in range(50):
                request_log.record(_rec(ts=float(i)))
            elapsed = time.monotonic() - started

        assert elapsed < 1.0
        assert 40 <= request_log.dropped < 50  # a few in the writer's hands, three queued, the rest dropped
        assert "dropped" in caplog.text
    finally:
        release.set()
        assert request_log.stop(timeout=5)
    assert len(request_log.query()) == 50 - request_log.dropped


def test_stop_is_bounded_when_the_writer_hangs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    original_write = RequestLog._write

    def stuck_write(self: RequestLog, batch: Sequence[RequestRecord]) -> None:
        release.wait(10)
        original_write(self, batch)

    monkeypatch.setattr(RequestLog, "_write", stuck_write)
    request_log = RequestLog(db_path)
    request_log.start()
    request_log.record(_rec())
    try:
        started = time.monotonic()
        assert request_log.flush(timeout=0.2) is False
        assert request_log.stop(timeout=0.3) is False
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
    for thread in _writer_threads():
        thread.join(timeout=5)
    assert _writer_threads() == []
    assert len(request_log.query()) == 1


def test_records_after_stop_are_dropped_not_queued(db_path: Path) -> None:
    request_log = RequestLog(db_path)
    request_log.start()
    assert request_log.stop(timeout=5)

    request_log.record(_rec())

    assert request_log.dropped == 1
    assert request_log.query() == []


def _count_commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every COMMIT the writer's connection runs, recorded through SQLite's statement trace."""
    commits: list[str] = []
    original_open = RequestLog._open_writer

    def traced_open(self: RequestLog) -> sqlite3.Connection:
        conn = original_open(self)
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        return conn

    monkeypatch.setattr(RequestLog, "_open_writer", traced_open)
    return commits


def test_rows_arriving_together_are_committed_together(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One commit per request cost a third of the gateway's CPU at 400 requests/s: rows that arrive within the linger
    # share one transaction.
    commits = _count_commits(monkeypatch)
    request_log = RequestLog(db_path, linger=1.0)
    request_log.start()
    migrations = len(commits)
    try:
        for i in range(20):
            request_log.record(_rec(ts=float(i)))
            time.sleep(0.002)  # the writer is woken by the first row; the others come while it lingers
        assert request_log.flush(timeout=5)
    finally:
        assert request_log.stop(timeout=5)
    assert len(request_log.query(limit=100)) == 20
    assert len(commits) - migrations == 1


def test_flush_and_stop_do_not_wait_out_the_linger(db_path: Path) -> None:
    request_log = RequestLog(db_path, linger=60.0)
    request_log.start()
    try:
        request_log.record(_rec(ts=1.0))
        started = time.monotonic()
        assert request_log.flush(timeout=10)
        assert [r.ts for r in request_log.query()] == [1.0]
        request_log.record(_rec(ts=2.0))
        assert request_log.stop(timeout=10)
        assert time.monotonic() - started < 10  # far below the linger: both cut it short
    finally:
        request_log.stop(timeout=1)
    assert sorted(r.ts for r in request_log.query()) == [1.0, 2.0]


# --------------------------------------------------------------------------- a log that cannot be read


def _garbage(db_path: Path, size: int = 8192) -> bytes:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    junk = bytes((i * 131 + 17) % 256 for i in range(size))
    db_path.write_bytes(junk)
    return junk


def _corrupt_schema(db_path: Path) -> bytes:
    """A real log whose first page (the schema, after SQLite's 100-byte header) is overwritten: "malformed"."""
    request_log = RequestLog(db_path)
    request_log.start()
    request_log.record(_rec(ts=1.0))
    assert request_log.stop(timeout=5)
    data = bytearray(db_path.read_bytes())
    data[100:4096] = bytes((i * 7 + 3) % 256 for i in range(3996))
    db_path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("damage", [_garbage, _corrupt_schema], ids=["not a database", "malformed"])
def test_a_log_that_cannot_be_read_is_kept_aside_and_a_new_one_started(
    db_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `headway serve` stopped with "unexpected error: RequestLogError … file is not a database": a broken
    history file kept the gateway from serving agents at all."""
    damaged = damage(db_path)  # type: ignore[operator]
    request_log = RequestLog(db_path)
    with caplog.at_level(logging.WARNING):
        request_log.start()
    try:
        request_log.record(_rec(ts=7.0))
        assert request_log.flush(timeout=5)
        assert [r.ts for r in request_log.query()] == [7.0]
    finally:
        assert request_log.stop(timeout=5)
    aside = request_log.set_aside
    assert aside is not None and aside.name.startswith("requests.sqlite3.unreadable-")  # (db_path's name)
    assert aside.read_bytes() == damaged  # kept as it was: nothing lost
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    warning = next(r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage())
    assert str(aside) in warning and "started a new one" in warning


def test_a_log_that_cannot_be_moved_aside_stops_the_start(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = _garbage(db_path)

    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "replace", refuse)
    request_log = RequestLog(db_path)
    with pytest.raises(RequestLogError, match=r"nor move it aside: .*Permission denied"):
        request_log.start()
    assert db_path.read_bytes() == junk and request_log.set_aside is None
    assert _writer_threads() == []


def test_a_log_that_is_only_busy_is_not_set_aside(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only "not a database" and "malformed" move the file: a locked or unwritable one is an error to report."""
    first = RequestLog(db_path)
    first.start()
    assert first.stop(timeout=5)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        import proxy.features.request_log as module

        monkeypatch.setattr(module, "_BUSY_TIMEOUT_MS", 50)
        with pytest.raises(RequestLogError, match="locked"):
            RequestLog(db_path).start()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert not list(db_path.parent.glob("*.unreadable-*"))


# -- while it runs: retention, a damaged file, a full disk --------------------------------------------------------

_DAY = 86400.0


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _timestamps(db_path: Path) -> list[float]:
    with sqlite3.connect(db_path) as conn:
        return [ts for (ts,) in conn.execute("SELECT ts FROM requests ORDER BY ts")]


def _log_with_rows(db_path: Path, timestamps: Sequence[float]) -> None:
    request_log = RequestLog(db_path, linger=0)
    request_log.start()
    for ts in timestamps:
        request_log.record(_rec(ts=ts))
    assert request_log.stop(timeout=5)


def test_rows_older_than_keep_days_are_deleted_when_the_writer_starts(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, nothing was ever deleted: about 300 bytes a request, half a gigabyte a year for a busy agent user."""
    now = 1_800_000_000.0
    _log_with_rows(db_path, [now - 400 * _DAY, now - 366 * _DAY, now - 364 * _DAY, now - 1])
    request_log = RequestLog(db_path, linger=0, keep_days=365, clock=_Clock(now))
    with caplog.at_level(logging.INFO):
        request_log.start()
        try:
            assert request_log.flush(timeout=5)
            assert _timestamps(db_path) == [now - 364 * _DAY, now - 1]
        finally:
            assert request_log.stop(timeout=5)
    assert any("removed 2 requests older than 365 days" in r.getMessage() for r in caplog.records)


def test_pruning_goes_on_once_a_day_and_in_chunks(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import proxy.features.request_log as module

    monkeypatch.setattr(module, "_PRUNE_CHUNK", 3)  # several transactions for the 7 old rows
    clock = _Clock(1_800_000_000.0)
    request_log = RequestLog(db_path, linger=0, keep_days=40, clock=clock)
    request_log.start()
    try:
        day_one = clock.now
        for ts in [day_one - 10 * _DAY] * 7 + [day_one]:
            request_log.record(_rec(ts=ts))
        assert request_log.flush(timeout=5)
        assert len(_timestamps(db_path)) == 8  # pruned at start, before these arrived: nothing was old then
        clock.now = (
            day_one + 31 * _DAY
        )  # the ten-day-old rows are now 41 days old; the next batch is a day later
        request_log.record(_rec(ts=clock.now))
        assert request_log.flush(timeout=5)
        assert _timestamps(db_path) == [day_one, clock.now]
    finally:
        assert request_log.stop(timeout=5)


def test_a_shorter_keep_applies_at_once(db_path: Path) -> None:
    now = 1_800_000_000.0
    _log_with_rows(db_path, [now - 100 * _DAY, now - 50 * _DAY, now - 1])
    request_log = RequestLog(db_path, linger=0, keep_days=365, clock=_Clock(now))
    request_log.start()
    try:
        assert request_log.flush(timeout=5)
        assert len(_timestamps(db_path)) == 3
        request_log.keep(60)  # no request needed: the writer wakes for it
        assert wait_for(lambda: _timestamps(db_path) == [now - 50 * _DAY, now - 1])
        request_log.keep(None)  # for ever: nothing more goes
        request_log.record(_rec(ts=now - 1000 * _DAY))
        assert request_log.flush(timeout=5)
        assert len(_timestamps(db_path)) == 3
    finally:
        assert request_log.stop(timeout=5)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_log_damaged_while_it_runs_is_kept_aside_and_a_new_one_started(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, every later batch failed with a logged traceback ("file is not a database") until a restart, and
    every request in between went unrecorded."""
    request_log = RequestLog(db_path, linger=0)
    request_log.start()
    try:
        request_log.record(_rec(ts=1.0))
        assert request_log.flush(timeout=5)
        with sqlite3.connect(db_path) as conn:  # everything into the main file, then overwrite all of it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        junk = _garbage(db_path, size=db_path.stat().st_size)
        with caplog.at_level(logging.WARNING):
            request_log.record(_rec(ts=2.0))
            assert request_log.flush(timeout=5)
        assert [r.ts for r in request_log.query()] == [2.0]  # the batch that found the damage is not lost
        assert request_log.failing is None
    finally:
        assert request_log.stop(timeout=5)
    aside = request_log.set_aside
    assert aside is not None and aside.read_bytes() == junk
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # one line, no traceback
    assert "damaged while Headway ran" in caplog.records[0].getMessage() and not caplog.records[0].exc_info


class _SmallDisk(RequestLog):
    """A request log whose database may hold only ``pages`` pages: SQLite's real "database or disk is full"."""

    pages = 0

    def _open_writer(self) -> sqlite3.Connection:
        conn = super()._open_writer()
        conn.execute(f"PRAGMA max_page_count = {self.pages}")
        return conn


def test_a_full_disk_loses_rows_says_so_once_and_recovers(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, each failed batch logged a traceback (several a second on a busy gateway) and nothing told the
    status; the ROLLBACK after SQLite's own rollback also replaced the real reason with "no transaction is active"."""
    _log_with_rows(db_path, [1.0])
    pages = sqlite3.connect(db_path).execute("PRAGMA page_count").fetchone()[0]
    request_log = _SmallDisk(db_path, linger=0)
    request_log.pages = pages  # full already: any new page fails
    request_log.start()
    big = "x" * 20_000  # a row larger than a page
    try:
        with caplog.at_level(logging.INFO):
            for n in range(3):
                request_log.record(_rec(ts=10.0 + n, error=big))
                assert request_log.flush(timeout=5)
            assert request_log.failing is not None and "full" in request_log.failing
            assert [r.ts for r in request_log.query()] == [1.0]
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1 and not warnings[0].exc_info
            assert "database or disk is full" in warnings[0].getMessage()
            assert "1 requests not recorded" in warnings[0].getMessage()
            # space again (the user cleaned up): the next write lands and the status clears
            with sqlite3.connect(db_path) as conn:
                conn.execute("DELETE FROM requests")
            request_log.record(_rec(ts=20.0))
            assert request_log.flush(timeout=5)
        assert request_log.failing is None
        assert [r.ts for r in request_log.query()] == [20.0]
        assert any("is written again" in r.getMessage() for r in caplog.records)
    finally:
        assert request_log.stop(timeout=5)
