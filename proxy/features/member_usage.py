"""Usage per team member from the request log (`headway usage --by key`).

Requests that carried the local access key are shown as ``(local key)``. A log written before member keys
existed (schema 1) has no member column: all its rows are the local key's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from proxy.features.request_log import RequestLogError

__all__ = ["LOCAL_KEY", "MemberRow", "format_member_summary", "member_summary"]

LOCAL_KEY = "(local key)"


class MemberRow(TypedDict):
    member: str | None  # None: the local access key
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def member_summary(path: Path, *, since: float) -> list[MemberRow]:
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise RequestLogError(f"cannot read the request log {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        if not columns:
            return []
        member = "member" if "member" in columns else "NULL"
        rows = conn.execute(
            f"""
            SELECT {member}, COUNT(*), SUM(status >= 400 OR error IS NOT NULL),
                   TOTAL(input_tokens), TOTAL(output_tokens), SUM(cost_usd)
            FROM requests WHERE ts >= ? GROUP BY {member}
            """,
            (since,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise RequestLogError(f"cannot read the request log {path}: {exc}") from exc
    finally:
        conn.close()
    found = [
        MemberRow(
            member=name,
            requests=count,
            errors=errors or 0,
            input_tokens=int(tokens_in),
            output_tokens=int(tokens_out),
            cost_usd=cost,
        )
        for name, count, errors, tokens_in, tokens_out, cost in rows
    ]
    found.sort(key=lambda r: (r["member"] is None, r["member"] or ""))
    return found


def format_member_summary(rows: Sequence[MemberRow]) -> str:
    headers = ("member", "reqs", "errors", "input", "output", "cost $")
    table = [headers] + [
        (
            row["member"] or LOCAL_KEY,
            f"{row['requests']:,}",
            f"{row['errors']:,}",
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            "-" if row["cost_usd"] is None else f"{row['cost_usd']:.4f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    )
