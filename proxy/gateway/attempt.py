"""What one request did while the forwarder routed it, and how its failures are worded.

An :class:`Attempt` collects, across every account tried, what the request log, the dumps and the error answers
need. The helpers here turn upstream answers and blocks into short, redacted text for people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from proxy.config.settings import Account
from proxy.durations import format_duration
from proxy.logs import redact
from proxy.routing.quota import Window
from proxy.routing.router import Skipped
from proxy.wire.errors import HeadwayError

__all__ = [
    "AGENT_GONE",
    "RETRYABLE",
    "Attempt",
    "Failure",
    "Outcome",
    "describe_blocks",
    "redact_body",
    "reset_of_exhausted",
    "short_error",
]

RETRYABLE = frozenset({500, 502, 503, 504, 529})
AGENT_GONE = 499  # nginx's "client closed request": the request log's status for an agent that hung up

# Why an account's attempt did not answer: the upstream's own error answer, or Headway's.
Failure = tuple[int, httpx.Headers, bytes] | HeadwayError | None
# An attempt that did not answer: what the routing loop does next ("next" account or "retry" this one), the
# failure to report if nothing else answers, and how long the upstream asked to wait before a retry.
Outcome = tuple[str, Failure, float | None]


@dataclass
class Attempt:
    """What one request did, for the request log and the dump."""

    started: float  # perf_counter
    chain: list[str] = field(default_factory=list)
    account: Account | None = None
    status: int = 0
    ttfb: float | None = None
    error: str | None = None
    upstream_request_id: str | None = None
    upstream_body: bytes | None = None
    transcript: list[bytes] | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)


def reset_of_exhausted(windows: list[Window], now: float) -> float | None:
    """When the last exhausted quota window resets, or None when none is exhausted."""
    resets = [
        w.resets_at
        for w in windows
        if w.resets_at
        and w.resets_at > now
        and (w.remaining_fraction is not None and w.remaining_fraction <= 0)
    ]
    return max(resets) if resets else None


def short_error(body: bytes, limit: int = 300) -> str:
    """An upstream error body as one short line, redacted: it is stored (health, request log) and shown."""
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            text = str(error.get("type") or error.get("code") or "error") + ": " + str(error["message"])
            return redact(text)[:limit]
    except ValueError:
        pass
    return redact(body.decode("utf-8", errors="replace")).strip()[:limit]


def redact_body(body: bytes) -> bytes:
    """An upstream body relayed to the agent, with any secret it echoes masked."""
    text = body.decode("utf-8", errors="replace")
    clean = redact(text)
    return body if clean == text else clean.encode()


def describe_blocks(skipped: list[Skipped], now: float) -> str:
    """Each enabled account's state, for an error body; disabled accounts are only counted."""
    parts = []
    disabled = 0
    for item in skipped:
        if item.block.state == "disabled":
            disabled += 1
            continue
        text = f"{item.account.label} ({item.block.state.replace('_', ' ')}"
        if item.block.until:
            text += f", resets in {format_duration(item.block.until - now)}"
        if item.block.reason:
            text += f": {redact(item.block.reason)}"
        parts.append(text + ")")
    if disabled:
        parts.append(f"{disabled} disabled account{'s' if disabled > 1 else ''} not tried")
    return "; ".join(parts) if parts else "no enabled account"
