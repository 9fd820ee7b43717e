"""Refused requests: which provider's key an agent sent instead of Headway's, and a log that does not flood.

A refusal is logged with its route and reason, never the presented key, at most once a minute per route and reason
(:class:`RefusalLog`); a key that looks like a provider's (:func:`provider_key`) gets a fix naming the environment
variable that is probably overriding the agent's Headway settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProviderKey", "RefusalLog", "provider_key"]

log = logging.getLogger("headway.gateway")

_ROUTE_PATHS = frozenset(
    {
        "/",
        "/health",
        "/api/hello",
        "/status",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/responses",
        "/v1/chat/completions",
        "/v1/models",
        "/metrics",
    }
)


@dataclass(frozen=True)
class ProviderKey:
    prefix: str
    what: str
    fix: str


# Most specific first. The local key is ``hw-…``, so it never matches these.
_PROVIDER_KEYS = (
    ProviderKey(
        "sk-ant-oat",
        "a Claude account token (sk-ant-oat…)",
        "the agent sends its own Claude login: point it at the key `headway key` prints "
        "(for Claude Code, `headway configure claude-code` sets ANTHROPIC_AUTH_TOKEN; unset CLAUDE_CODE_OAUTH_TOKEN)",
    ),
    ProviderKey(
        "sk-ant-",
        "an Anthropic API key (sk-ant-…)",
        "ANTHROPIC_API_KEY is probably exported in the agent's shell and overrides its Headway settings: "
        "`unset ANTHROPIC_API_KEY` (or set it to the key `headway key` prints) and restart the agent",
    ),
    ProviderKey(
        "sk-",
        "an OpenAI API key (sk-…)",
        "OPENAI_API_KEY is probably exported in the agent's shell and overrides its Headway settings: "
        "`unset OPENAI_API_KEY` (or set it to the key `headway key` prints) and restart the agent",
    ),
)


def provider_key(presented: list[str]) -> ProviderKey | None:
    for key in presented:
        for known in _PROVIDER_KEYS:
            if key.startswith(known.prefix):
                return known
    return None


class RefusalLog:
    """Logs refused requests without flooding the log: one line per (route, reason) per ``interval`` seconds,
    carrying the count of the ones held back since the last line.

    Owned by the gateway's loop (one instance per app); the set of keys is bounded because routes outside the known
    ones share one key and reasons are a fixed vocabulary.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def record(self, method: str, path: str, reason: str, detail: str, agent: str) -> None:
        route = path if path in _ROUTE_PATHS else "(other path)"
        key = (route, reason)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        more = f" ({held} more like it in the last {now - last:.0f}s)" if held and last is not None else ""
        log.warning(
            "refused %s %s: %s — %s [user-agent %r]%s", method, route, reason, detail, agent[:120], more
        )
