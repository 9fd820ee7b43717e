"""The request log as the settings page reads it: the request viewer's rows (filters, paging, one row by id, the dump
written for a row) and one account's activity per hour or day.

:class:`~proxy.features.request_log.RequestLog` owns the database (its writer thread, ``query``, ``summary``,
``spend`` for the CLI and the budgets); this module reads through its :meth:`~RequestLog.connection`, a connection of
its own per call, safe from any thread or process (WAL: readers and the writer do not block each other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from proxy.features.request_log import RequestLog
from proxy.features.request_rows import COLUMNS, RequestRecord, from_row

__all__ = [
    "DUMP_MATCH_SECONDS",
    "Activity",
    "LoggedRequest",
    "RequestFilter",
    "RequestHistory",
    "find_dump",
]

DUMP_MATCH_SECONDS = 3.0
_FIELDS = ("id", *COLUMNS)
_ERROR = "(status >= 400 OR error IS NOT NULL)"

StatusFilter = Literal["ok", "error", "fallback"] | int


@dataclass(frozen=True)
class LoggedRequest:
    """One row of the log as the page shows it: its id (to ask for its dump) and the agent named from its User-Agent."""

    id: int
    record: RequestRecord
    agent: str | None

    @property
    def failed(self) -> bool:
        return self.record.status >= 400 or self.record.error is not None


@dataclass(frozen=True)
class RequestFilter:
    """What the request viewer asks for; every given field must match."""

    since: float | None = None
    account_id: str | None = None
    agent: str | None = None
    status: StatusFilter | None = None
    purpose: str | None = None  # "agent", "test", "keep-warm"
    before_id: int | None = None  # paging: rows older than this one
    limit: int = 100


@dataclass(frozen=True)
class Activity:
    """Requests, failures and tokens (all input and output) in one hour or day, labelled by its local start."""

    start: datetime
    requests: int
    errors: int
    tokens: int


class RequestHistory:
    """Reads the request log at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def recent(self, wanted: RequestFilter) -> list[LoggedRequest]:
        """Rows matching ``wanted``, newest first, with their ids and agent names."""
        clauses: list[str] = []
        params: list[Any] = []
        if wanted.since is not None:
            clauses.append("ts >= ?")
            params.append(wanted.since)
        if wanted.account_id is not None:
            clauses.append("account_id IS ?" if wanted.account_id else "account_id IS NULL")
            if wanted.account_id:
                params.append(wanted.account_id)
        if wanted.agent is not None:
            clauses.append("agent IS ?" if wanted.agent else "agent IS NULL")
            if wanted.agent:
                params.append(wanted.agent)
        if wanted.status == "ok":
            clauses.append(f"NOT {_ERROR}")
        elif wanted.status == "error":
            clauses.append(_ERROR)
        elif wanted.status == "fallback":
            clauses.append("hops > 1")
        elif isinstance(wanted.status, int):
            clauses.append("status = ?")
            params.append(wanted.status)
        if wanted.purpose is not None:
            clauses.append("purpose = ?")
            params.append(wanted.purpose)
        if wanted.before_id is not None:
            clauses.append("id < ?")
            params.append(wanted.before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(_FIELDS)} FROM requests {where} ORDER BY id DESC LIMIT ?"
        params.append(max(1, wanted.limit))
        with RequestLog(self.path).connection() as conn:
            if conn is None:
                return []
            return [_logged(row) for row in conn.execute(sql, params)]

    def get(self, row_id: int) -> LoggedRequest | None:
        """One row by its id."""
        with RequestLog(self.path).connection() as conn:
            if conn is None:
                return None
            row = conn.execute(
                f"SELECT {', '.join(_FIELDS)} FROM requests WHERE id = ?", (row_id,)
            ).fetchone()
        return None if row is None else _logged(row)

    def choices(self, *, since: float) -> dict[str, list[Any]]:
        """What the viewer's filters can offer: the accounts (id, latest label) and agents seen since ``since``."""
        with RequestLog(self.path).connection() as conn:
            if conn is None:
                return {"accounts": [], "agents": []}
            accounts = conn.execute(
                "SELECT account_id, account_label, MAX(ts) FROM requests WHERE ts >= ? AND account_id IS NOT NULL "
                "GROUP BY account_id ORDER BY account_label",
                (since,),
            ).fetchall()
            agents = conn.execute(
                "SELECT DISTINCT agent FROM requests WHERE ts >= ? AND agent IS NOT NULL ORDER BY agent",
                (since,),
            ).fetchall()
        return {
            "accounts": [{"id": a, "label": label or a} for a, label, _ in accounts],
            "agents": [a for (a,) in agents],
        }

    def activity(
        self, *, account_id: str, unit: Literal["hour", "day"], count: int, now: float
    ) -> list[Activity]:
        """The last ``count`` hours or local calendar days up to ``now`` (the current one included), oldest first;
        empty ones too, so a chart has a bar for each."""
        current = datetime.fromtimestamp(now)
        if unit == "hour":
            last = current.replace(minute=0, second=0, microsecond=0)
            starts = [last - timedelta(hours=i) for i in range(count - 1, -1, -1)]
            key_format = "%Y-%m-%d %H"
        else:
            last = current.replace(hour=0, minute=0, second=0, microsecond=0)
            starts = [last - timedelta(days=i) for i in range(count - 1, -1, -1)]
            key_format = "%Y-%m-%d"
        sql = f"""
            SELECT strftime('{key_format}', ts, 'unixepoch', 'localtime') AS bucket,
                   COUNT(*), SUM({_ERROR}),
                   TOTAL(input_tokens) + TOTAL(cache_read_tokens) + TOTAL(cache_write_tokens) + TOTAL(output_tokens)
            FROM requests WHERE account_id = ? AND ts >= ? GROUP BY bucket
        """
        found: dict[str, tuple[int, int, int]] = {}
        with RequestLog(self.path).connection() as conn:
            if conn is not None:
                for bucket, requests, errors, tokens in conn.execute(
                    sql, (account_id, starts[0].timestamp())
                ):
                    found[bucket] = (requests, errors or 0, int(tokens))
        out = []
        for start in starts:
            requests, errors, tokens = found.get(start.strftime(key_format), (0, 0, 0))
            out.append(Activity(start=start, requests=requests, errors=errors, tokens=tokens))
        return out


def find_dump(record: RequestRecord, folder: Path) -> Path | None:
    """The ``.meta.json`` of the dump written for ``record`` (proxy/features/dumps.py), or None.

    A dump is written as the request finishes, from the same request: same session and account, its time within
    :data:`DUMP_MATCH_SECONDS` of the row's. Dump names start with their UTC time (``20260310T153000123Z-…``), so
    only the files of the row's hour (and the next, near its end) are opened; the nearest in time wins.
    """
    hours = {
        datetime.fromtimestamp(record.ts + shift, tz=UTC).strftime("%Y%m%dT%H")
        for shift in (-DUMP_MATCH_SECONDS, DUMP_MATCH_SECONDS)
    }
    best: tuple[float, Path] | None = None
    for hour in sorted(hours):
        try:
            candidates = sorted(folder.glob(f"{hour}*.meta.json"))
        except OSError:
            return None
        for path in candidates:
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
                when = datetime.fromisoformat(str(meta["time"])).timestamp()
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not isinstance(meta, dict):
                continue
            if meta.get("session_id") != record.session_id or meta.get("account_id") != record.account_id:
                continue
            gap = abs(when - record.ts)
            if gap <= DUMP_MATCH_SECONDS and (best is None or gap < best[0]):
                best = (gap, path)
    return None if best is None else best[1]


def _logged(row: tuple[Any, ...] | list[Any]) -> LoggedRequest:
    row_id, values = row[0], row[1:]
    agent = values[COLUMNS.index("agent")]
    return LoggedRequest(id=int(row_id), record=from_row(values), agent=agent)
