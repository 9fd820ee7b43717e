"""Where the analysis' turns come from: Headway's request log (with its dumps), or OpenCode's own database.

Headway. One turn per logged request that reported usage (``count_tokens`` calls are skipped). The log's ``ts`` is
when the request finished; the turn starts ``latency_ms`` earlier. A dump is matched to a log row of the same session
whose start or end lies within :data:`DUMP_MATCH_SECONDS` of the dump's time and whose usage agrees, nearest first;
a row without a matching dump (dumps off, pruned, dropped) simply has none.

OpenCode. One turn per assistant message with ``tokens`` in ``message.data`` (OpenCode writes one per model call):
``input`` is uncached input, ``cache.read`` / ``cache.write`` the cache (no 5m / 1h split is recorded),
``time.created`` the start. The session's ``parent_id`` and ``title`` come from table ``session``. The database is
opened read-only, so the analysis can run while OpenCode does.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.analyzer.model import DumpRef, TurnRecord
from proxy.features.request_log import RequestLog, RequestLogError
from proxy.wire.usage import Usage

__all__ = [
    "DUMP_MATCH_SECONDS",
    "SourceError",
    "default_opencode_db",
    "load_headway",
    "load_opencode",
]

DUMP_MATCH_SECONDS = 3.0
_ROW_LIMIT = 10_000_000
_USAGE_FIELDS = frozenset(f.name for f in fields(Usage))


class SourceError(Exception):
    """A source cannot be read (missing or foreign OpenCode database, unreadable request log)."""


# -- Headway ------------------------------------------------------------------------------------------------------


def load_headway(
    log_path: Path, dumps_dir: Path | None, *, since: float | None = None, session_id: str | None = None
) -> list[TurnRecord]:
    """Turns from Headway's request log at ``log_path``, with dumps from ``dumps_dir`` matched where present."""
    try:
        rows = RequestLog(log_path).query(since=since, session_id=session_id, limit=_ROW_LIMIT)
    except RequestLogError as exc:
        raise SourceError(str(exc)) from exc
    rows = [r for r in rows if r.usage is not None and not r.route.endswith("/count_tokens")]
    rows.sort(key=lambda r: r.ts)
    metas = _read_dump_metas(dumps_dir) if dumps_dir is not None else {}
    turns: list[TurnRecord] = []
    for row in rows:
        assert row.usage is not None
        start = row.ts - row.latency_ms / 1000
        dump = _match_dump(metas.get(row.session_id, []), start, row.ts, row.usage)
        turns.append(
            TurnRecord(
                session_id=row.session_id,
                parent_session_id=row.parent_session_id,
                start=start,
                end=row.ts,
                provider="anthropic" if row.family == "anthropic" else "openai",
                model=row.model,
                usage=row.usage,
                account=row.account_label or row.account_id,
                account_kind=row.account_kind,
                billing="subscription" if row.account_kind == "chatgpt" else "metered",
                purpose=row.purpose,
                recorded_cost=row.cost_usd,
                dump=dump,
            )
        )
    return turns


@dataclass
class _Meta:
    time: float
    usage: Usage | None
    ref: DumpRef
    used: bool = False


def _read_dump_metas(folder: Path) -> dict[str | None, list[_Meta]]:
    by_session: dict[str | None, list[_Meta]] = {}
    try:
        paths = sorted(folder.glob("*.meta.json"))
    except OSError:
        return by_session
    for path in paths:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            when = datetime.fromisoformat(str(meta["time"])).timestamp()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(meta, dict):
            continue
        request_name = _dict(meta.get("files")).get("request")
        breakpoints = _list(meta.get("breakpoints"))
        response = _dict(meta.get("response"))
        body = _dict(meta.get("body"))
        diff = meta.get("diff")
        headers = _dict(meta.get("request_headers"))
        agent = headers.get("x-claude-code-agent-id")
        ref = DumpRef(
            meta_path=path,
            request_path=folder / request_name if isinstance(request_name, str) else None,
            breakpoint_ttls=tuple(
                str(bp.get("ttl")) for bp in breakpoints if isinstance(bp, dict) and bp.get("ttl")
            ),
            diff=diff if isinstance(diff, dict) else None,
            size=body.get("size") if isinstance(body.get("size"), int) else None,
            agent_id=agent if isinstance(agent, str) and agent else None,
        )
        usage = _meta_usage(response.get("usage"))
        session = meta.get("session_id")
        by_session.setdefault(session if isinstance(session, str) else None, []).append(
            _Meta(time=when, usage=usage, ref=ref)
        )
    return by_session


def _meta_usage(raw: Any) -> Usage | None:
    """The dump's recorded usage: Headway writes ``asdict(Usage)``; raw provider shapes are read too."""
    if not isinstance(raw, Mapping):
        return None
    if _USAGE_FIELDS & raw.keys():
        return Usage(**{k: int(v) for k, v in raw.items() if k in _USAGE_FIELDS and isinstance(v, int)})
    if "cache_read_input_tokens" in raw or "cache_creation_input_tokens" in raw:
        return Usage.from_anthropic(raw)
    if "prompt_tokens" in raw or "input_tokens_details" in raw:
        return Usage.from_openai(raw)
    if "input_tokens" in raw:
        return Usage.from_anthropic(raw)
    return None


def _same_usage(a: Usage, b: Usage) -> bool:
    return (a.input_tokens, a.cache_read_tokens, a.cache_write_tokens, a.output_tokens) == (
        b.input_tokens,
        b.cache_read_tokens,
        b.cache_write_tokens,
        b.output_tokens,
    )


def _match_dump(candidates: list[_Meta], start: float, end: float, usage: Usage) -> DumpRef | None:
    best: _Meta | None = None
    best_distance = DUMP_MATCH_SECONDS
    for meta in candidates:
        if meta.used or (meta.usage is not None and not _same_usage(meta.usage, usage)):
            continue
        distance = min(abs(meta.time - end), abs(meta.time - start))
        if distance <= best_distance:
            best, best_distance = meta, distance
    if best is None:
        return None
    best.used = True
    return best.ref


# -- OpenCode -----------------------------------------------------------------------------------------------------


def default_opencode_db(environ: Mapping[str, str] | None = None) -> Path:
    """OpenCode's database: ``$OPENCODE_DB``, else ``$XDG_DATA_HOME/opencode/opencode.db`` (XDG default
    ``~/.local/share``, which OpenCode uses on every platform)."""
    env = os.environ if environ is None else environ
    if env.get("OPENCODE_DB"):
        return Path(env["OPENCODE_DB"]).expanduser()
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "opencode" / "opencode.db"


def load_opencode(
    db_path: Path, *, since: float | None = None, session_id: str | None = None
) -> list[TurnRecord]:
    """Turns from OpenCode's database at ``db_path`` (assistant messages that recorded tokens)."""
    if not db_path.is_file():
        raise SourceError(f"no OpenCode database at {db_path}")
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open the OpenCode database {db_path}: {exc}") from exc
    sql = (
        "SELECT m.session_id, m.time_created, m.data, s.parent_id, s.title "
        "FROM message m LEFT JOIN session s ON s.id = m.session_id"
    )
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("m.time_created >= ?")
        params.append(int(since * 1000))
    if session_id is not None:
        clauses.append("m.session_id = ?")
        params.append(session_id)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY m.time_created, m.id"
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise SourceError(f"{db_path} does not look like OpenCode's database: {exc}") from exc
    finally:
        conn.close()
    turns: list[TurnRecord] = []
    for session, created, raw, parent, title in rows:
        turn = _opencode_turn(session, created, raw, parent, title)
        if turn is not None:
            turns.append(turn)
    return turns


def _opencode_turn(
    session: str, created: int, raw: str, parent: str | None, title: str | None
) -> TurnRecord | None:
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("role") != "assistant"
        or not isinstance(data.get("tokens"), dict)
    ):
        return None
    tokens = data["tokens"]
    cache = _dict(tokens.get("cache"))
    usage = Usage(
        input_tokens=_int(tokens.get("input")),
        output_tokens=_int(tokens.get("output")),
        reasoning_tokens=_int(tokens.get("reasoning")),
        cache_read_tokens=_int(cache.get("read")),
        cache_write_tokens=_int(cache.get("write")),
    )
    if usage.total_input == 0 and usage.output_tokens == 0:
        return None  # a message that never reached the model (aborted, errored before the call)
    times = _dict(data.get("time"))
    start_ms = _number(times.get("created"))
    end_ms = _number(times.get("completed"))
    model = data.get("modelID") if isinstance(data.get("modelID"), str) else None
    provider_id = str(data.get("providerID") or "")
    cost = _number(data.get("cost"))
    return TurnRecord(
        session_id=session,
        parent_session_id=parent,
        session_title=title,
        start=(created if start_ms is None else start_ms) / 1000,
        end=None if end_ms is None else end_ms / 1000,
        provider=_family(provider_id, model),
        model=model,
        usage=usage,
        account=provider_id or None,
        recorded_cost=cost,
    )


def _family(provider_id: str, model: str | None) -> str:
    """Price table and cache behaviour for an OpenCode provider: Claude models cache like Anthropic, GPT models like
    OpenAI, whichever provider served them; anything else is priced under its own provider id."""
    name = (model or "").lower()
    if provider_id == "anthropic" or name.startswith("claude"):
        return "anthropic"
    if provider_id == "openai" or name.startswith(("gpt", "o1", "o3", "o4", "codex")):
        return "openai"
    return provider_id or "openai"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
