"""Which agent session a request belongs to, from the agent's own headers.

Agents name their sessions differently (see docs/agents-observed.md): OpenCode sends ``x-session-id`` /
``x-session-affinity`` and ``x-parent-session-id`` for subagents; Claude Code ``x-claude-code-session-id`` and
``x-claude-code-agent-id`` for subagents; Codex CLI ``session-id`` (older ``session_id``) and ``thread-id``; Pi
``session_id``. The session id pins sticky routing, groups dumps and the request log, and keys the relay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["AGENT_INTERNAL_HEADERS", "SessionInfo", "identify_session"]

_SESSION_HEADERS = (
    "x-claude-code-session-id",
    "x-session-id",
    "x-session-affinity",
    "session-id",
    "session_id",
    "x-opencode-session",
    "conversation_id",
    "thread-id",
)
_PARENT_HEADERS = ("x-parent-session-id",)
_SUBAGENT_HEADERS = ("x-claude-code-agent-id",)

# Headers agents use to talk to a gateway like ours; the provider has no use for them.
AGENT_INTERNAL_HEADERS = frozenset({"x-parent-session-id", "x-session-affinity", "x-opencode-session"})


@dataclass(frozen=True)
class SessionInfo:
    session_id: str | None = None
    parent_session_id: str | None = None
    agent_id: str | None = None

    @property
    def subagent(self) -> bool:
        return self.parent_session_id is not None or self.agent_id is not None


def identify_session(headers: Mapping[str, str]) -> SessionInfo:
    def first(names: tuple[str, ...]) -> str | None:
        for name in names:
            value = headers.get(name)
            if value:
                return value[:200]
        return None

    return SessionInfo(
        session_id=first(_SESSION_HEADERS),
        parent_session_id=first(_PARENT_HEADERS),
        agent_id=first(_SUBAGENT_HEADERS),
    )
