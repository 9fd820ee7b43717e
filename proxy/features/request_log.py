"""The request log: one SQLite row per agent request, written off the engine loop.

The engine calls :meth:`RequestLog.record`, which only puts the row on a bounded queue; one writer thread
(``headway-request-log``) drains the queue in batches, one transaction per batch. After the first row of a batch the
writer waits up to ``linger`` seconds (0.2 s) for more, so a busy gateway commits a few times a second instead of once
per request (a commit per request cost about a third of the gateway's CPU at 400 requests/s); :meth:`flush` and
:meth:`stop` cut the wait short. If the disk falls behind and the queue fills, rows are dropped and counted rather than
ever making a request wait.

Retention: with ``keep_days`` set (the engine sets ``request_log.keep_days``, 365 by default), the writer deletes
older rows when it starts and then once a day, a few thousand rows per transaction so that it never holds the write
lock for long. SQLite reuses the freed pages, so the file stops growing once it holds that many days.

A write that fails never stops the gateway: a full disk or an unwritable file loses that batch's rows, says so in
the log (at most once a minute) and in the status (:attr:`RequestLog.failing`) until a write succeeds again; a file
SQLite finds damaged while Headway runs is kept aside and a new log started, as :meth:`RequestLog.start` does.

Reading (:meth:`RequestLog.query`, :meth:`RequestLog.summary`) opens a connection of its own per call, so it is safe
from any thread, and from another process (``headway usage``) while the gateway writes: the database is in WAL mode,
where readers and the writer do not block each other.

The rows, the schema and its migrations are :mod:`proxy.features.request_rows`; :meth:`RequestLog.start` migrates, a
reader brings a log from an older Headway up to date, and a database written by a newer Headway is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from proxy.config.paths import ensure_private_dir
from proxy.config.settings import Settings
from proxy.features.base import Completed, Feature
from proxy.features.pricing import estimate_cost
from proxy.features.request_rows import (
    COLUMNS,
    INSERT,
    SCHEMA_VERSION,
    RequestLogError,
    RequestRecord,
    damaged,
    from_row,
    migrate,
    to_row,
    transaction,
)

__all__ = [
    "SCHEMA_VERSION",
    "RequestLog",
    "RequestLogError",
    "RequestLogger",
    "RequestRecord",
    "SummaryRow",
    "format_summary",
]

_log = logging.getLogger("headway.request_log")

THREAD_NAME = "headway-request-log"
_BATCH_MAX = 500
_LINGER_S = 0.2  # after a batch's first row, how long the writer waits for more before it commits
_BUSY_TIMEOUT_MS = 5000
_DROP_WARN_INTERVAL_S = 10.0
_FAILURE_WARN_INTERVAL_S = 60.0
_PRUNE_INTERVAL_S = 24 * 3600.0
_PRUNE_CHUNK = 5000  # rows deleted per transaction
_DAY_S = 24 * 3600.0


class SummaryRow(TypedDict):
    """Totals for one (account, model) pair. ``errors`` counts status ≥ 400 or an error noted in the stream."""

    account_id: str | None
    account_label: str | None
    account_kind: str | None
    model: str | None
    requests: int
    errors: int
    fallbacks: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    p50_latency_ms: float | None
    p50_ttfb_ms: float | None


@dataclass
class _Barrier:
    done: threading.Event = field(default_factory=threading.Event)


_Item = RequestRecord | _Barrier | None  # None asks the writer to finish


class RequestLog:
    """The SQLite request log at ``path``: a writer thread after :meth:`start`, readers any time."""

    def __init__(
        self,
        path: Path,
        *,
        queue_size: int = 10_000,
        linger: float = _LINGER_S,
        keep_days: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.linger = linger
        self._keep_days = keep_days
        self._clock = clock
        self._next_prune = 0.0  # the writer thread's: when it next deletes rows older than keep_days
        self._prune_now = threading.Event()  # keep_days changed: prune at the writer's next turn
        self._failing: str | None = None
        self._conn: sqlite3.Connection | None = None  # the writer thread's
        self._failed_rows = 0  # rows lost to failed writes since the last warning
        self._last_failure_warning = 0.0
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        # Set by flush() and stop(): the writer stops lingering and commits now. record() never touches it, so a
        # row costs the engine loop one queue put and no thread wake-up while the writer lingers.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._lock = threading.Lock()
        self._dropped = 0
        self._last_drop_warning = 0.0
        #: Where :meth:`start` kept a log it could not read, if it had to.
        self.set_aside: Path | None = None

    @property
    def dropped(self) -> int:
        """Rows dropped because the queue was full or the log was not running."""
        with self._lock:
            return self._dropped

    @property
    def failing(self) -> str | None:
        """Why the last write failed (SQLite's message), until a write succeeds again; None while rows are written."""
        return self._failing

    def keep(self, days: int | None) -> None:
        """Keep rows ``days`` days (None: for ever). A change is applied by the writer at once: it deletes what is
        now too old, then goes on once a day."""
        if days == self._keep_days:
            return
        self._keep_days = days
        self._prune_now.set()
        if self._accepting:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_Barrier())  # nobody waits for it: it only wakes the writer

    # -- writing -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open (or create and migrate) the database and start the writer thread. Raises :class:`RequestLogError`.

        A file that SQLite says is not a database, or is corrupt, is kept aside (:attr:`set_aside`, with its WAL
        files) and a new log started: the request log is history, and the gateway must not stop serving agents for
        it. Anything else — a log written by a newer Headway, a folder Headway cannot write — is raised."""
        if self._thread is not None:
            raise RuntimeError("request log already started")
        try:
            conn = self._open_migrated()
        except RequestLogError as exc:
            if not damaged(exc):
                raise
            conn = self._start_afresh(
                f"cannot be read ({exc.__cause__})",
                ". Requests and spend recorded before are in that file; today's spend for budgets counts from now",
            )
        self._thread = threading.Thread(target=self._run, args=(conn,), name=THREAD_NAME, daemon=True)
        self._accepting = True
        self._thread.start()

    def record(self, rec: RequestRecord) -> None:
        """Queue ``rec`` for writing. Never blocks; drops (and counts) the row if the queue is full."""
        if self._accepting:
            try:
                self._queue.put_nowait(rec)
            except queue.Full:
                pass
            else:
                return
        self._note_drop()

    def flush(self, timeout: float) -> bool:
        """Wait until every row queued before this call is committed. False if that took longer than ``timeout``."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return self._queue.empty()
        deadline = time.monotonic() + timeout
        barrier = _Barrier()
        try:
            self._queue.put(barrier, timeout=max(timeout, 0.0))
        except queue.Full:
            return False
        self._hurry.set()
        return barrier.done.wait(max(deadline - time.monotonic(), 0.0))

    def stop(self, timeout: float) -> bool:
        """Stop accepting rows, write what is queued and join the writer, all within ``timeout`` seconds.

        Returns False (and logs) if the writer did not finish in time; it is a daemon thread, so it cannot keep the
        process alive.
        """
        thread = self._thread
        if thread is None:
            return True
        self._accepting = False
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=max(timeout, 0.0))
        except queue.Full:
            pass
        self._hurry.set()
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            _log.warning(
                "request log writer did not finish within %.1fs; about %d rows unwritten",
                timeout,
                self._queue.qsize(),
            )
            return False
        self._thread = None
        if self.dropped:
            _log.info("request log dropped %d rows in this run", self.dropped)
        return True

    def _note_drop(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            dropped = self._dropped
            warn = now - self._last_drop_warning >= _DROP_WARN_INTERVAL_S
            if warn:
                self._last_drop_warning = now
        if warn:
            _log.warning("request log is not keeping up; dropped a row (%d dropped so far)", dropped)

    def _open_migrated(self) -> sqlite3.Connection:
        conn = self._open_writer()
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _start_afresh(self, problem: str, consequence: str = "") -> sqlite3.Connection:
        """Keep the damaged log aside (:attr:`set_aside`) and open a new one, at start or while the writer runs.
        Raises :class:`RequestLogError` when the move or the new log fails (nothing is deleted)."""
        aside = self._move_aside()
        conn = self._open_migrated()
        self.set_aside = aside
        _log.warning(
            "the request log %s %s: kept it as %s and started a new one%s",
            self.path,
            problem,
            aside,
            consequence,
        )
        return conn

    def _move_aside(self) -> Path:
        """Move the database and its WAL files to ``<name>.unreadable-<time>`` (a stale WAL must never be applied to
        the new database). Raises :class:`RequestLogError` when the move fails: nothing is deleted."""
        aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
        try:
            for suffix in ("-wal", "-shm", ""):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.replace(aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise RequestLogError(
                f"cannot read the request log {self.path}, nor move it aside: {exc}"
            ) from exc
        return aside

    def _open_writer(self) -> sqlite3.Connection:
        ensure_private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            if os.name == "posix":
                os.chmod(self.path, 0o600)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise RequestLogError(f"cannot open the request log {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise RequestLogError(f"cannot open the request log {self.path}: {exc}") from exc
        return conn

    def _run(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        try:
            finished = False
            while not finished:
                batch: list[RequestRecord] = []
                barriers: list[_Barrier] = []
                self._prune_if_due()
                try:
                    item: _Item = self._queue.get(timeout=self._until_prune())
                except queue.Empty:
                    continue
                if isinstance(item, RequestRecord) and self.linger > 0:
                    self._hurry.wait(self.linger)  # let more rows arrive: one commit for all of them
                self._hurry.clear()
                while True:
                    if item is None:
                        finished = True
                    elif isinstance(item, _Barrier):
                        barriers.append(item)
                    else:
                        batch.append(item)
                    if finished or len(batch) >= _BATCH_MAX:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write(batch)
                self._prune_if_due()
                for barrier in barriers:
                    barrier.done.set()
        except Exception:
            _log.exception("request log writer failed; no more rows will be written")
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _write(self, batch: Sequence[RequestRecord]) -> None:
        for rec in batch:
            if rec.price is not None and rec.cost_usd is None:
                try:
                    rec.cost_usd = rec.price()
                except Exception:
                    _log.exception("pricing failed for model %s", rec.model)
        rows = [to_row(rec) for rec in batch]
        self._attempt(lambda conn: conn.executemany(INSERT, rows), rows=len(rows))

    def _attempt(self, work: Callable[[sqlite3.Connection], object], *, rows: int) -> bool:
        """Run ``work`` in one transaction on the writer's connection. A damaged file is kept aside and ``work``
        runs once more in a new log; any other failure loses ``rows`` rows, and is told (:meth:`_failed`)."""
        for _attempt in range(2):
            conn = self._conn
            if conn is None:
                break
            try:
                with transaction(conn):
                    work(conn)
            except sqlite3.Error as exc:
                if damaged(exc) and self._replace_damaged(exc):
                    continue
                self._failed(str(exc), rows)
                return False
            if self._failing is not None:
                _log.info("the request log %s is written again", self.path)
                self._failing = None
            return True
        self._failed("the request log could not be replaced", rows)
        return False

    def _replace_damaged(self, exc: sqlite3.Error) -> bool:
        """SQLite found the open log damaged: keep it aside and go on in a new one (False if that failed)."""
        assert self._conn is not None
        self._conn.close()
        self._conn = None
        try:
            self._conn = self._start_afresh(f"was damaged while Headway ran ({exc})")
        except RequestLogError as err:
            _log.error(
                "the request log %s is damaged (%s) and could not be replaced: %s", self.path, exc, err
            )
            return False
        return True

    def _failed(self, reason: str, rows: int) -> None:
        self._failing = reason
        self._failed_rows += rows
        now = time.monotonic()
        if self._last_failure_warning and now - self._last_failure_warning < _FAILURE_WARN_INTERVAL_S:
            return
        self._last_failure_warning = now
        lost, self._failed_rows = self._failed_rows, 0
        _log.warning(
            "the request log %s cannot be written (%s): %s; Headway goes on serving",
            self.path,
            reason,
            f"{lost} requests not recorded{'' if rows == lost else ' since the last warning'}"
            if lost
            else "old requests not removed",
        )

    def _until_prune(self) -> float | None:
        """Seconds until the writer should prune (None: never)."""
        if self._keep_days is None:
            return None
        return max(self._next_prune - self._clock(), 0.0) + 0.001  # (+1 ms: the clock is then surely past it)

    def _prune_if_due(self) -> None:
        now = self._clock()
        if now < self._next_prune and not self._prune_now.is_set():
            return
        self._prune_now.clear()  # before reading keep_days: a change from now on sets it again
        days = self._keep_days
        if days is None:
            return
        self._next_prune = now + _PRUNE_INTERVAL_S
        cutoff = now - days * _DAY_S
        deleted: list[int] = []

        def delete(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts < ? LIMIT ?)",
                (cutoff, _PRUNE_CHUNK),
            )
            deleted.append(cursor.rowcount)

        while self._attempt(delete, rows=0) and deleted[-1] == _PRUNE_CHUNK:
            pass
        removed = sum(deleted)
        if removed:
            _log.info(
                "request log: removed %d requests older than %d days (request_log.keep_days)", removed, days
            )

    # -- reading -------------------------------------------------------------------------------------------------

    def query(
        self,
        *,
        since: float | None = None,
        account_id: str | None = None,
        session_id: str | None = None,
        limit: int = 1000,
    ) -> list[RequestRecord]:
        """Rows matching every given filter, newest first, at most ``limit``."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if account_id is not None:
            clauses.append("account_id = ?")
            params.append(account_id)
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(COLUMNS)} FROM requests {where} ORDER BY ts DESC, id DESC LIMIT ?"
        params.append(limit)
        with self._reader() as conn:
            if conn is None:
                return []
            return [from_row(row) for row in conn.execute(sql, params)]

    def summary(self, *, since: float) -> list[SummaryRow]:
        """Totals per (account, model) for rows at or after ``since``; the label is the account's latest."""
        totals_sql = """
            SELECT account_id, account_label, account_kind, model, MAX(ts),
                   COUNT(*),
                   SUM(status >= 400 OR error IS NOT NULL),
                   SUM(hops > 1),
                   TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cache_read_tokens),
                   TOTAL(cache_write_tokens), TOTAL(reasoning_tokens),
                   SUM(cost_usd)
            FROM requests WHERE ts >= ?
            GROUP BY account_id, model
        """
        timings_sql = "SELECT account_id, model, latency_ms, ttfb_ms FROM requests WHERE ts >= ?"
        with self._reader() as conn:
            if conn is None:
                return []
            conn.execute("BEGIN")  # one snapshot for both queries
            totals = conn.execute(totals_sql, (since,)).fetchall()
            latencies: dict[tuple[str | None, str | None], list[float]] = {}
            ttfbs: dict[tuple[str | None, str | None], list[float]] = {}
            for account_id, model, latency, ttfb in conn.execute(timings_sql, (since,)):
                latencies.setdefault((account_id, model), []).append(latency)
                if ttfb is not None:
                    ttfbs.setdefault((account_id, model), []).append(ttfb)
            conn.execute("COMMIT")
        rows: list[SummaryRow] = []
        for (
            account_id,
            label,
            kind,
            model,
            _latest,
            requests,
            errors,
            fallbacks,
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            reasoning,
            cost,
        ) in totals:
            key = (account_id, model)
            rows.append(
                SummaryRow(
                    account_id=account_id,
                    account_label=label,
                    account_kind=kind,
                    model=model,
                    requests=requests,
                    errors=errors or 0,
                    fallbacks=fallbacks or 0,
                    input_tokens=int(input_tokens),
                    output_tokens=int(output_tokens),
                    cache_read_tokens=int(cache_read),
                    cache_write_tokens=int(cache_write),
                    reasoning_tokens=int(reasoning),
                    cost_usd=cost,
                    p50_latency_ms=_median(latencies.get(key)),
                    p50_ttfb_ms=_median(ttfbs.get(key)),
                )
            )
        rows.sort(
            key=lambda r: (r["account_label"] or r["account_id"] or "", -r["requests"], r["model"] or "")
        )
        return rows

    def spend(
        self, *, month_start: float, day_start: float, before: float
    ) -> list[tuple[str, str, float, int]]:
        """Per account since ``month_start`` (and since ``day_start``) until ``before``: ``(account_id, period,
        priced cost in USD, tokens of requests whose price is unknown)``, period ``"month"`` or ``"day"``."""
        sql = """
            SELECT account_id, ts >= ?, TOTAL(cost_usd),
                   TOTAL(CASE WHEN cost_usd IS NULL THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)
                         + COALESCE(cache_read_tokens, 0) + COALESCE(cache_write_tokens, 0) ELSE 0 END)
            FROM requests WHERE ts >= ? AND ts < ? AND account_id IS NOT NULL GROUP BY account_id, ts >= ?
        """
        totals: dict[tuple[str, str], tuple[float, int]] = {}
        with self._reader() as conn:
            if conn is None:
                return []
            for account_id, today, cost, tokens in conn.execute(
                sql, (day_start, month_start, before, day_start)
            ):
                month = totals.get((account_id, "month"), (0.0, 0))
                totals[(account_id, "month")] = (month[0] + cost, month[1] + int(tokens))
                if today:
                    totals[(account_id, "day")] = (cost, int(tokens))
        return [(account_id, period, cost, tokens) for (account_id, period), (cost, tokens) in totals.items()]

    def connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection | None]:
        """A read connection for the other readers (proxy/features/request_history.py), or None while there is no
        log yet; an older log is brought up to date first."""
        return self._reader()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        """A read connection, or None while there is no log yet (nothing written, or an older empty file)."""
        if not self.path.exists():
            yield None
            return
        uri = f"{self.path.resolve().as_uri()}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise RequestLogError(f"cannot read the request log {self.path}: {exc}") from exc
        try:
            try:
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if 0 < version < SCHEMA_VERSION:  # written by an older Headway: bring it up to date first
                    migrate(conn)
                    version = SCHEMA_VERSION
            except sqlite3.Error as exc:  # not a database, or a damaged one
                raise RequestLogError(f"cannot read the request log {self.path}: {exc}") from exc
            if version == 0:
                yield None
            elif version > SCHEMA_VERSION:
                raise RequestLogError(
                    f"the request log {self.path} is schema version {version}, newer than this Headway "
                    f"understands ({SCHEMA_VERSION})"
                )
            else:
                yield conn
        finally:
            conn.close()


def format_summary(rows: Sequence[SummaryRow]) -> str:
    """A plain-text table of :meth:`RequestLog.summary` rows, with a total line when there is more than one."""
    if not rows:
        return "No requests in this period."
    headers = (
        "account",
        "model",
        "reqs",
        "errors",
        "fallbk",
        "input",
        "output",
        "cache rd",
        "cache wr",
        "cost $",
        "p50 ms",
        "p50 ttfb",
    )
    numeric_from = 2
    table: list[tuple[str, ...]] = [headers]
    for row in rows:
        table.append(
            (
                row["account_label"] or row["account_id"] or "-",
                row["model"] or "-",
                _count(row["requests"]),
                _count(row["errors"]),
                _count(row["fallbacks"]),
                _count(row["input_tokens"]),
                _count(row["output_tokens"]),
                _count(row["cache_read_tokens"]),
                _count(row["cache_write_tokens"]),
                _money(row["cost_usd"]),
                _ms(row["p50_latency_ms"]),
                _ms(row["p50_ttfb_ms"]),
            )
        )
    if len(rows) > 1:
        costs = [row["cost_usd"] for row in rows if row["cost_usd"] is not None]
        table.append(
            (
                "total",
                "",
                _count(sum(row["requests"] for row in rows)),
                _count(sum(row["errors"] for row in rows)),
                _count(sum(row["fallbacks"] for row in rows)),
                _count(sum(row["input_tokens"] for row in rows)),
                _count(sum(row["output_tokens"] for row in rows)),
                _count(sum(row["cache_read_tokens"] for row in rows)),
                _count(sum(row["cache_write_tokens"] for row in rows)),
                _money(sum(costs) if costs else None),
                "",
                "",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]

    def render(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i >= numeric_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    lines = [render(table[0]), "  ".join("-" * width for width in widths)]
    lines.extend(render(line) for line in table[1:-1])
    if len(rows) > 1:
        lines.append("  ".join("-" * width for width in widths))
    lines.append(render(table[-1]))
    return "\n".join(lines)


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _count(value: int) -> str:
    return f"{value:,}"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.4f}" if value < 100 else f"{value:,.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


class RequestLogger(Feature):
    """Every finished request as a row of the request log, its cost estimated on the writer thread."""

    name = "request_log"

    def __init__(self, log: RequestLog) -> None:
        self.log = log

    def configure(self, settings: Settings) -> None:
        self.log.keep(settings.request_log.keep_days)

    def on_complete(self, done: Completed) -> None:
        request, account, tokens, model = done.request, done.account, done.usage, done.model
        price = None
        if tokens is not None and model and account is not None and done.billing is not None:
            provider = "anthropic" if account.family == "anthropic" else "openai"
            billing = done.billing
            price = lambda: estimate_cost(provider, model, tokens, billing=billing)  # noqa: E731
        self.log.record(
            RequestRecord(
                ts=done.finished_at,
                route=request.path,
                family=request.family,
                account_id=account.id if account else None,
                account_label=account.label if account else None,
                account_kind=account.kind if account else None,
                model=model,
                status=done.status,
                latency_ms=done.latency_ms,
                ttfb_ms=done.ttfb_ms,
                stream=request.stream,
                usage=tokens,
                price=price,
                session_id=request.session.session_id,
                parent_session_id=request.session.parent_session_id,
                fallback_chain=list(done.chain),
                error=done.error,
                purpose=request.purpose,
                request_bytes=len(request.body),
                upstream_request_id=done.upstream_request_id,
                user_agent=request.headers.get("user-agent"),
                requested_model=request.requested_model,
                member=request.member,
            )
        )
