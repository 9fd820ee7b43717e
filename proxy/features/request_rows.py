"""The request log's rows: :class:`RequestRecord`, the table's columns, the versioned schema and its migrations,
and how a record becomes a row and back. :mod:`proxy.features.request_log` owns the database and its threads.

The schema version lives in ``PRAGMA user_version``; :data:`SCHEMA_VERSION` is the number of migrations in
``MIGRATIONS``, applied in order by :func:`migrate`. A database written by a newer Headway is refused.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.wire.usage import Usage
from proxy.wire.user_agent import agent_name

__all__ = [
    "COLUMNS",
    "INSERT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "RequestLogError",
    "RequestRecord",
    "damaged",
    "failing_text",
    "from_row",
    "migrate",
    "set_aside_text",
    "to_row",
    "transaction",
]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            route TEXT NOT NULL,
            family TEXT NOT NULL,
            account_id TEXT,
            account_label TEXT,
            account_kind TEXT,
            model TEXT,
            status INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            ttfb_ms REAL,
            stream INTEGER NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            cache_write_tokens INTEGER,
            cache_write_5m_tokens INTEGER,
            cache_write_1h_tokens INTEGER,
            reasoning_tokens INTEGER,
            cost_usd REAL,
            session_id TEXT,
            parent_session_id TEXT,
            fallback_chain TEXT NOT NULL,
            hops INTEGER NOT NULL,
            error TEXT,
            purpose TEXT NOT NULL,
            request_bytes INTEGER NOT NULL,
            upstream_request_id TEXT
        )
        """,
        "CREATE INDEX requests_ts ON requests (ts)",
        "CREATE INDEX requests_account_ts ON requests (account_id, ts)",
        "CREATE INDEX requests_session_ts ON requests (session_id, ts)",
    ),
    ("ALTER TABLE requests ADD COLUMN requested_model TEXT",),  # the alias the agent sent (models.aliases)
    (  # team mode: the member whose key the request carried (None: the local access key)
        "ALTER TABLE requests ADD COLUMN member TEXT",
        "CREATE INDEX requests_member_ts ON requests (member, ts)",
    ),
    (
        # who sent it: the agent's User-Agent (capped) and the agent's name read from it, for the page's filter
        "ALTER TABLE requests ADD COLUMN user_agent TEXT",
        "ALTER TABLE requests ADD COLUMN agent TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

USAGECOLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
COLUMNS = (
    "ts",
    "route",
    "family",
    "account_id",
    "account_label",
    "account_kind",
    "model",
    "status",
    "latency_ms",
    "ttfb_ms",
    "stream",
    *USAGECOLUMNS,
    "cost_usd",
    "session_id",
    "parent_session_id",
    "fallback_chain",
    "hops",
    "error",
    "purpose",
    "request_bytes",
    "upstream_request_id",
    "requested_model",
    "member",
    "user_agent",
    "agent",
)
USER_AGENT_MAX = 256
INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class RequestLogError(Exception):
    """The request log database cannot be opened or is from a newer Headway."""


def damaged(error: BaseException) -> bool:
    """Whether SQLite found the log's file not a database, or malformed (``SQLITE_NOTADB``, ``SQLITE_CORRUPT``): what
    no retry mends. Not a locked, full or unwritable file, not a log from a newer Headway. ``error`` is SQLite's
    error, or a :class:`RequestLogError` raised from it."""
    cause = error.__cause__ if isinstance(error, RequestLogError) else error
    return isinstance(cause, sqlite3.DatabaseError) and getattr(cause, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
    )


def failing_text(reason: str) -> str:
    """What to tell the user while the running gateway cannot write the request log."""
    return f"cannot be written ({reason}); requests are not being recorded"


def set_aside_text(path: str) -> str:
    """What to tell the user when the request log could not be read (at start, or while the gateway ran) and was kept
    aside at ``path``."""
    return f"the old one could not be read; it is kept as {path}, and a new one was started"


@dataclass(kw_only=True)
class RequestRecord:
    """One agent request as Headway saw it, from the first byte in to the last byte out."""

    ts: float
    route: str
    family: str
    account_id: str | None = None
    account_label: str | None = None
    account_kind: str | None = None
    model: str | None = None
    status: int
    latency_ms: float
    ttfb_ms: float | None = None
    stream: bool = False
    usage: Usage | None = None
    cost_usd: float | None = None
    session_id: str | None = None
    parent_session_id: str | None = None
    fallback_chain: list[str] = field(default_factory=list)
    """Each attempt as ``"<account>:<status>"``, in order; more than one entry means Headway fell back."""
    error: str | None = None
    purpose: str = "agent"
    request_bytes: int = 0
    upstream_request_id: str | None = None
    requested_model: str | None = None
    member: str | None = None
    """The model name the agent sent when it was an alias; ``model`` is the real one."""
    user_agent: str | None = None
    """The agent's User-Agent header, as it sent it (stored up to :data:`USER_AGENT_MAX` characters)."""
    price: Callable[[], float | None] | None = field(default=None, repr=False, compare=False)
    """Computes ``cost_usd`` on the writer thread, off the gateway's event loop (not stored)."""


def migrate(conn: sqlite3.Connection) -> None:
    try:
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RequestLogError(
                    f"the request log is schema version {version}, newer than this Headway understands "
                    f"({SCHEMA_VERSION}); move it aside or upgrade"
                )
            for target, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
    except sqlite3.Error as exc:
        raise RequestLogError(f"cannot prepare the request log schema: {exc}") from exc


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite has already rolled back after some errors (a full disk, I/O): a ROLLBACK then raises "no transaction
        # is active", which would hide the error that matters.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def to_row(rec: RequestRecord) -> tuple[Any, ...]:
    usage = rec.usage
    usage_values: tuple[int | None, ...] = (
        tuple(getattr(usage, name) for name in USAGECOLUMNS)
        if usage is not None
        else (None,) * len(USAGECOLUMNS)
    )
    return (
        rec.ts,
        rec.route,
        rec.family,
        rec.account_id,
        rec.account_label,
        rec.account_kind,
        rec.model,
        rec.status,
        rec.latency_ms,
        rec.ttfb_ms,
        int(rec.stream),
        *usage_values,
        rec.cost_usd,
        rec.session_id,
        rec.parent_session_id,
        json.dumps(list(rec.fallback_chain)),
        len(rec.fallback_chain),
        rec.error,
        rec.purpose,
        rec.request_bytes,
        rec.upstream_request_id,
        rec.requested_model,
        rec.member,
        rec.user_agent[:USER_AGENT_MAX] if rec.user_agent else None,
        agent_name(rec.user_agent),
    )


def from_row(row: Sequence[Any]) -> RequestRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    usage_values = [values.pop(name) for name in USAGECOLUMNS]
    usage = (
        None
        if usage_values[0] is None
        else Usage(**{name: value or 0 for name, value in zip(USAGECOLUMNS, usage_values, strict=True)})
    )
    chain = json.loads(values.pop("fallback_chain") or "[]")
    values.pop("hops")
    values.pop("agent", None)  # derived from user_agent (proxy/wire/user_agent.py)
    stream = bool(values.pop("stream"))
    return RequestRecord(
        **values,
        stream=stream,
        usage=usage,
        fallback_chain=[str(hop) for hop in chain] if isinstance(chain, list) else [],
    )
