"""Session identification from each agent's own headers (see docs/agents-observed.md)."""

from __future__ import annotations

import httpx
import pytest

from proxy.routing.sessions import AGENT_INTERNAL_HEADERS, SessionInfo, identify_session


@pytest.mark.parametrize(
    ("agent", "headers", "expected"),
    [
        ("claude code", {"X-Claude-Code-Session-Id": "cc-1"}, SessionInfo("cc-1")),
        (
            "claude code subagent",
            {"x-claude-code-session-id": "cc-1", "x-claude-code-agent-id": "agent-7"},
            SessionInfo("cc-1", agent_id="agent-7"),
        ),
        ("opencode", {"x-session-id": "oc-1", "x-session-affinity": "oc-1"}, SessionInfo("oc-1")),
        (
            "opencode subagent",
            {"x-session-id": "oc-2", "x-parent-session-id": "oc-1"},
            SessionInfo("oc-2", parent_session_id="oc-1"),
        ),
        ("opencode affinity only", {"x-session-affinity": "oc-3"}, SessionInfo("oc-3")),
        ("codex", {"session-id": "cx-1", "thread-id": "th-1"}, SessionInfo("cx-1")),
        ("codex, older", {"session_id": "cx-0"}, SessionInfo("cx-0")),
        ("codex thread only", {"thread-id": "th-1"}, SessionInfo("th-1")),
        ("pi", {"session_id": "pi-1"}, SessionInfo("pi-1")),
        ("an SDK with nothing", {"user-agent": "anthropic-python/0.40"}, SessionInfo()),
    ],
)
def test_each_agents_session(agent: str, headers: dict[str, str], expected: SessionInfo) -> None:
    assert identify_session(httpx.Headers(headers)) == expected, agent


def test_claude_code_session_wins_over_generic_headers() -> None:
    info = identify_session({"x-session-id": "generic", "x-claude-code-session-id": "cc"})
    assert info.session_id == "cc"


def test_subagent_flag() -> None:
    assert not SessionInfo("s").subagent
    assert SessionInfo("s", parent_session_id="p").subagent
    assert SessionInfo("s", agent_id="a").subagent


def test_empty_values_are_ignored() -> None:
    assert identify_session({"x-claude-code-session-id": "", "x-session-id": "oc"}).session_id == "oc"


def test_values_are_capped() -> None:
    info = identify_session({"x-session-id": "s" * 5000, "x-parent-session-id": "p" * 5000})
    assert info.session_id == "s" * 200
    assert info.parent_session_id == "p" * 200


def test_gateway_only_headers_are_named_for_stripping() -> None:
    assert {"x-parent-session-id", "x-session-affinity"} <= AGENT_INTERNAL_HEADERS
    # the session headers providers use themselves are not stripped
    assert "session-id" not in AGENT_INTERNAL_HEADERS
    assert "x-claude-code-session-id" not in AGENT_INTERNAL_HEADERS
