"""Which agent sent a request, read from its User-Agent header (the request log stores both; the page filters by name).

What the real agents send is in docs/agents-observed.md: Claude Code ``claude-cli/2.1.330 (external, sdk-cli)``,
OpenCode ``opencode/1.18.33 ai-sdk/…``, Codex ``codex_exec/0.169.0 (…)`` or ``codex_cli_rs/…``, Pi the bare SDKs
(``Anthropic/JS 0.91.1``, ``OpenAI/JS 6.26.0``). Anything else is named by its first product token.
"""

from __future__ import annotations

import functools
import re

__all__ = ["agent_name"]

# First match wins: agents before the SDKs they are built on.
_KNOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^claude-cli/|claude-code", re.I), "Claude Code"),
    (re.compile(r"^opencode/", re.I), "OpenCode"),
    (re.compile(r"^codex[_-]|\bcodex_(?:cli_rs|exec|vscode)\b", re.I), "Codex"),
    (re.compile(r"\baider\b", re.I), "aider"),
    (re.compile(r"\bopenhands\b", re.I), "OpenHands"),
    (re.compile(r"^Anthropic/JS\b"), "Anthropic SDK (JS)"),
    (re.compile(r"^Anthropic/Python\b"), "Anthropic SDK (Python)"),
    (re.compile(r"^OpenAI/JS\b"), "OpenAI SDK (JS)"),
    (re.compile(r"^OpenAI/Python\b"), "OpenAI SDK (Python)"),
    (re.compile(r"^curl/", re.I), "curl"),
    (re.compile(r"^python-httpx/", re.I), "httpx"),
    (
        re.compile(r"^headway-test\b", re.I),
        "Test button",
    ),  # the page's account test (proxy/gateway/account_probe.py)
    (re.compile(r"^headway/", re.I), "Headway"),
)
_PRODUCT = re.compile(r"^([A-Za-z][\w.-]{0,39})")


@functools.lru_cache(maxsize=256)  # an agent sends the same User-Agent on every request: match it once
def agent_name(user_agent: str | None) -> str | None:
    """A short name for the client: a known agent or SDK, else the first product token; None without a header."""
    if not user_agent or not user_agent.strip():
        return None
    text = user_agent.strip()
    for pattern, name in _KNOWN:
        if pattern.search(text):
            return name
    match = _PRODUCT.match(text)
    return match.group(1) if match else "other"
