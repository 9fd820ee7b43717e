"""The request log viewer: recent requests with their agent, account, status, timings, tokens, cost and fallbacks,
filtered by account, agent and status; one request in full with the dump written for it when dumps were on.

``GET /api/requests`` is the list (newest first, paged with ``before``), ``GET /api/requests/<id>`` one request.
Both read the log through :class:`~proxy.features.request_history.RequestHistory`; errors and dump texts pass
through the redactor before they are shown.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from proxy.features.request_history import LoggedRequest, RequestFilter, RequestHistory, find_dump
from proxy.features.request_log import RequestLogError
from proxy.logs import redact

from . import ctx, error

__all__ = ["blueprint", "hop_reason", "request_json"]

blueprint = Blueprint("requests", __name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_DAYS = 90
DUMP_TEXT_MAX = 256 * 1024
STATUS_WORDS = ("ok", "error", "fallback")

_REASONS = {
    "400": "bad request",
    "401": "key or login refused",
    "402": "payment required",
    "403": "not allowed",
    "404": "model or route not found",
    "408": "upstream timed out",
    "413": "request too large",
    "429": "rate limited or out of quota",
    "499": "the agent hung up",
    "500": "provider error",
    "502": "provider unreachable",
    "503": "provider unavailable",
    "504": "provider timed out",
    "529": "provider overloaded",
    "no-credential": "no key or login in the keychain",
    "no-headers": "no answer in time",
    "deadline": "the request's deadline passed",
}


def hop_reason(status: str) -> str:
    """Why an attempt in a fallback chain did not serve the request, in words."""
    if status in _REASONS:
        return _REASONS[status]
    if status.isdigit():
        code = int(status)
        if code < 400:
            return "served"
        return "provider error" if code >= 500 else f"refused ({code})"
    return status.replace("-", " ")


def _hops(chain: list[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    hops = []
    for hop in chain:
        account, _, status = hop.rpartition(":")
        ok = status.isdigit() and int(status) < 400
        hops.append(
            {
                "account_id": account or None,
                "account": labels.get(account, account) or "?",
                "status": status,
                "ok": ok,
                "why": hop_reason(status),
            }
        )
    return hops


def request_json(row: LoggedRequest, labels: dict[str, str]) -> dict[str, Any]:
    rec = row.record
    usage = rec.usage
    return {
        "id": row.id,
        "ts": rec.ts,
        "agent": row.agent,
        "user_agent": rec.user_agent,
        "session_id": rec.session_id,
        "parent_session_id": rec.parent_session_id,
        "route": rec.route,
        "family": rec.family,
        "model": rec.model,
        "account_id": rec.account_id,
        "account": labels.get(rec.account_id or "", None) or rec.account_label or rec.account_id,
        "account_kind": rec.account_kind,
        "status": rec.status,
        "ok": not row.failed,
        "error": redact(rec.error) if rec.error else None,
        "latency_ms": round(rec.latency_ms, 1),
        "ttfb_ms": None if rec.ttfb_ms is None else round(rec.ttfb_ms, 1),
        "stream": rec.stream,
        "tokens": None
        if usage is None
        else {
            "input": usage.input_tokens,
            "output": usage.output_tokens,
            "cache_read": usage.cache_read_tokens,
            "cache_write": usage.cache_write_tokens,
            "reasoning": usage.reasoning_tokens,
        },
        "cost_usd": rec.cost_usd,
        "purpose": rec.purpose,
        "fallbacks": _hops(rec.fallback_chain, labels) if len(rec.fallback_chain) > 1 else [],
        "upstream_request_id": rec.upstream_request_id,
    }


def _labels() -> dict[str, str]:
    return {a.id: a.label for a in ctx().store.current.accounts}


def _int_arg(name: str, default: int, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


def _history() -> RequestHistory:
    return RequestHistory(ctx().engine.request_log.path)


@blueprint.get("/api/requests")
def recent() -> Response:
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    days = _int_arg("days", 7, 1, MAX_DAYS)
    before = _int_arg("before", 0, 1, 2**62)
    if limit is None:
        return error(f"limit: a whole number from 1 to {MAX_LIMIT}")
    if days is None:
        return error(f"days: a whole number from 1 to {MAX_DAYS}")
    if before is None:
        return error("before: the id of a request")
    status_arg = (request.args.get("status") or "").strip().lower()
    status: str | int | None = None
    if status_arg in STATUS_WORDS:
        status = status_arg
    elif status_arg.isdigit() and 100 <= int(status_arg) <= 599:
        status = int(status_arg)
    elif status_arg:
        return error("status: ok, error, fallback or an HTTP status code")
    since = time.time() - days * 86400
    wanted = RequestFilter(
        since=since,
        account_id=request.args.get("account") or None,
        agent=request.args.get("agent") or None,
        status=status,  # type: ignore[arg-type]
        before_id=before or None,
        limit=limit + 1,  # one more: is there another page?
    )
    history = _history()
    try:
        rows = history.recent(wanted)
        choices = history.choices(since=since)
    except RequestLogError as exc:
        return error(str(exc), 503)
    labels = _labels()
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify(
        {
            "requests": [request_json(r, labels) for r in rows],
            "next_before": rows[-1].id if more and rows else None,
            "choices": {
                "accounts": [{**a, "label": labels.get(a["id"], a["label"])} for a in choices["accounts"]],
                "agents": choices["agents"],
            },
            "dumps_enabled": ctx().store.current.dumps.enabled,
            "days": days,
        }
    )


def _read_text(path: Path | None, limit: int) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return None
    text = data[:limit].decode("utf-8", errors="replace")
    if len(data) <= limit:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return {"text": redact(text), "truncated": len(data) > limit, "name": path.name}


def _redacted(value: Any) -> Any:
    """Every string in a JSON value through the redactor (the text of the whole would break its escapes)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _dump(row: LoggedRequest) -> dict[str, Any] | None:
    folder = ctx().paths.dumps_dir
    meta_path = find_dump(row.record, folder)
    if meta_path is None:
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = meta.get("files") if isinstance(meta, dict) else None
    files = files if isinstance(files, dict) else {}

    def sibling(name: Any) -> Path | None:
        return folder / name if isinstance(name, str) and "/" not in name and name else None

    return {
        "meta": _redacted(meta),
        "request": _read_text(sibling(files.get("request")), DUMP_TEXT_MAX),
        "sse": _read_text(sibling(files.get("sse")), DUMP_TEXT_MAX),
    }


@blueprint.get("/api/requests/<int:row_id>")
def one(row_id: int) -> Response:
    try:
        row = _history().get(row_id)
    except RequestLogError as exc:
        return error(str(exc), 503)
    if row is None:
        return error(f"no request {row_id} in the log", 404)
    body = request_json(row, _labels())
    body["dump"] = _dump(row)
    body["dumps_enabled"] = ctx().store.current.dumps.enabled
    return jsonify(body)
