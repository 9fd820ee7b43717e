"""Idle keep-warm for ChatGPT sessions (setting ``chatgpt.keep_warm``, default off).

The Codex backend evicts a session's cached prompt prefix after about 5 minutes idle, so the next turn after a
coffee break pays to re-read the whole history uncached. With keep-warm on, shortly before that eviction Headway
replays the session's latest request as a small shadow: the same body (``store:false``) with one extra user message
asking for a one-word answer, so the shared prefix — everything the next real turn will reuse — is read again and
stays cached, and the answer costs a handful of tokens.

Rules:
- only sessions that were active recently: a session idle longer than ``keep_warm_idle_cap_minutes`` (default 60)
  is dropped; subagent sessions only with ``keep_warm_subagents``, and with half the idle cap;
- only on the account that served the session, and never when that account is blocked (exhausted, cooling down,
  needs login, below its killswitch) — no fallback for a shadow;
- a shadow is logged in the request log with ``purpose = "keep-warm"``, so its quota use is visible on its own;
- idle time is wall-clock time: the backend evicts while a laptop sleeps. On the monotonic clock (which stops during a
  sleep on Linux and macOS) a session left 2 minutes before the lid closed still looked fresh the next morning: it
  was replayed (its whole prompt read again uncached, on the user's quota, long after the eviction) and kept warm
  for another hour; and a short sleep made the shadow late, after the eviction it was meant to prevent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from proxy.config.settings import Account, Settings
from proxy.features.base import Feature
from proxy.providers.base import Incoming

__all__ = ["KeepWarm", "shadow_request"]

log = logging.getLogger("headway.keepwarm")

SHADOW_PROMPT = "(Headway keep-warm: this turn only refreshes the prompt cache.) Reply with just: OK"


def shadow_request(incoming: Incoming) -> Incoming:
    """The session's latest request with one small user turn appended; the shared prefix is unchanged."""
    body: dict[str, Any] = dict(incoming.json) if isinstance(incoming.json, dict) else {}
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": [{"type": "input_text", "text": items}]}]
    items = list(items) if isinstance(items, list) else []
    items.append({"role": "user", "content": [{"type": "input_text", "text": SHADOW_PROMPT}]})
    body["input"] = items
    body["stream"] = True
    return replace(
        incoming,
        json=body,
        body=json.dumps(body, separators=(",", ":")).encode(),
        protocol="openai-responses",
        path="/v1/responses",
        purpose="keep-warm",
    )


@dataclass
class _Session:
    incoming: Incoming
    account_id: str
    active_at: float
    warmed_at: float


class KeepWarm(Feature):
    """Keeps recently active ChatGPT sessions' cached prefix warm (a feature: ``on_success`` + ``run``)."""

    name = "keep_warm"

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        send: Callable[[Incoming, Account], Awaitable[bool]],
        warm_after: float = 270.0,
        max_sessions: int = 64,
        clock: Callable[[], float] = time.time,  # the wall clock, so that a sleep counts (see above)
    ) -> None:
        self._settings = settings
        self._send = send
        self.warm_after = warm_after
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def on_success(self, incoming: Incoming, account: Account) -> None:
        """A real request succeeded on ``account``: remember it as the session's latest."""
        settings = self._settings().chatgpt
        session = incoming.session.session_id
        if not settings.keep_warm or account.kind != "chatgpt" or not session or incoming.purpose != "agent":
            return
        if incoming.protocol != "openai-responses" or not isinstance(incoming.json, dict):
            return
        if incoming.session.subagent and not settings.keep_warm_subagents:
            return
        now = self._clock()
        self._sessions[session] = _Session(incoming, account.id, now, now)
        self._sessions.move_to_end(session)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)

    def due(self) -> list[tuple[str, _Session]]:
        settings = self._settings().chatgpt
        now = self._clock()
        if not settings.keep_warm:
            self._sessions.clear()
            return []
        out = []
        for key, session in list(self._sessions.items()):
            cap = settings.keep_warm_idle_cap_minutes * 60
            if session.incoming.session.subagent:
                cap /= 2
            if now - session.active_at > cap:
                del self._sessions[key]
                continue
            if now - session.warmed_at >= self.warm_after:
                out.append((key, session))
        return out

    async def tick(self) -> int:
        """Send the shadows that are due; returns how many went out."""
        sent = 0
        settings = self._settings()
        for key, session in self.due():
            account = settings.account(session.account_id)
            session.warmed_at = self._clock()
            if account is None or not account.enabled:
                self._sessions.pop(key, None)
                continue
            try:
                ok = await self._send(shadow_request(session.incoming), account)
            except Exception:
                log.exception("keep-warm for session %s failed", key)
                ok = False
            if ok:
                sent += 1
        return sent

    async def run(self) -> None:
        interval = 10.0
        while True:
            await asyncio.sleep(min(interval, max(0.05, self.warm_after / 4)))
            await self.tick()
