"""The settings page's "Test" button: one tiny request on exactly one account, its result and latency.

It goes through the forwarder's shadow path (``Forwarder.send_shadow``: the account given, no fallback, no retry),
so the account's real credential, URL and request transforms are used, the quota headers it answers with are
harvested, a failure marks its health as an agent's request would, and the request log records it with
``purpose = "test"``. A blocked account (cooling down, out of quota, needs login, paused) is not sent anything: the
result says why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from proxy.config.settings import Account
from proxy.providers.base import Incoming
from proxy.routing.sessions import SessionInfo

__all__ = ["DEFAULT_MODELS", "TEST_PROMPT", "ProbeResult", "probe_request", "run_probe"]

TEST_PROMPT = "Headway connection test. Reply with just: OK"
# A small, cheap model per kind, when the account has served no request yet to take the model from.
DEFAULT_MODELS = {
    "anthropic-api-key": "claude-haiku-4-5",
    "openai-api-key": "gpt-5-mini",
    "chatgpt": "gpt-5.1-codex-mini",
}


@dataclass(frozen=True)
class ProbeResult:
    """``ok``: the account answered 2xx. ``sent``: a request went out (False when the account is blocked)."""

    account_id: str
    ok: bool
    sent: bool
    latency_ms: float | None
    model: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "ok": self.ok,
            "sent": self.sent,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "model": self.model,
            "detail": self.detail,
        }


def probe_request(account: Account, model: str | None = None) -> Incoming:
    """The smallest request the account's provider serves: one short user turn, a one-word answer."""
    chosen = model or DEFAULT_MODELS.get(account.kind, "")
    body: dict[str, Any]
    if account.family == "anthropic":
        body = {"model": chosen, "max_tokens": 8, "messages": [{"role": "user", "content": TEST_PROMPT}]}
        path, protocol = "/v1/messages", "anthropic"
    else:
        body = {
            "model": chosen,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": TEST_PROMPT}]}],
            "max_output_tokens": 16,
            "store": False,
        }
        if account.kind == "chatgpt":  # the Codex backend answers only as a stream, and takes no token cap
            body["stream"] = True
            del body["max_output_tokens"]
        path, protocol = "/v1/responses", "openai-responses"
    raw = json.dumps(body, separators=(",", ":")).encode()
    return Incoming(
        method="POST",
        path=path,
        query="",
        headers={"content-type": "application/json", "user-agent": "headway-test"},
        body=raw,
        json=body,
        protocol=protocol,  # type: ignore[arg-type]
        family=account.family,
        session=SessionInfo(),
        purpose="test",
    )


async def run_probe(
    account: Account,
    *,
    send: Callable[[Incoming, Account], Awaitable[bool]],
    accounts: Callable[[], list[dict[str, Any]]],
    paused: bool = False,
    model: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ProbeResult:
    """Send :func:`probe_request` on ``account`` with ``send`` (the forwarder's shadow path).

    ``accounts()`` is the status snapshot's account list (proxy/status.py): asked before sending — a blocked account
    is sent nothing, its block is the answer — and after a failure, for the error it left on the account.
    """
    incoming = probe_request(account, model)
    chosen = incoming.model or ""

    def entry() -> dict[str, Any]:
        return next((a for a in accounts() if a.get("id") == account.id), {})

    before = entry()
    if paused:
        return ProbeResult(account.id, False, False, None, chosen, "not sent: Headway is paused")
    if before.get("health") not in (None, "healthy", "disabled"):
        reason = before.get("detail") or str(before.get("health")).replace("_", " ")
        return ProbeResult(account.id, False, False, None, chosen, f"not sent: {reason}")
    started = clock()
    ok = await send(incoming, account)
    latency = (clock() - started) * 1000
    if ok:
        return ProbeResult(account.id, True, True, latency, chosen, "answered")
    after = entry()
    detail = after.get("detail") or after.get("last_error") or "the request failed"
    return ProbeResult(account.id, False, True, latency, chosen, str(detail))
