"""The Codex backend's addresses and the header block every request to it carries, built here and nowhere else.

Headway identifies itself honestly: ``originator: headway`` and a Headway User-Agent that also names the calling agent.
"""

from __future__ import annotations

import platform

from proxy import __version__
from proxy.config.settings import Account, UpstreamSettings
from proxy.wire.upstream_url import normalize_base_url

__all__ = [
    "MODELS_PATH",
    "ORIGINATOR",
    "RESPONSES_PATH",
    "USAGE_PATH",
    "backend_base",
    "backend_headers",
    "codex_user_agent",
]

ORIGINATOR = "headway"
RESPONSES_PATH = "/backend-api/codex/responses"
MODELS_PATH = "/backend-api/codex/models"
USAGE_PATH = "/backend-api/wham/usage"


def codex_user_agent(agent: str | None) -> str:
    base = f"headway/{__version__} ({platform.system()} {platform.release()}; {platform.machine()})"
    return f"{base} {agent}" if agent else base


def backend_base(account: Account, upstreams: UpstreamSettings) -> str:
    return normalize_base_url(account.base_url or upstreams.chatgpt, "chatgpt")


def backend_headers(token: str, account: Account, agent: str | None = None) -> dict[str, str]:
    """Auth and identity for one request to the backend; ``agent`` is the calling agent's User-Agent, if any."""
    headers = {
        "authorization": f"Bearer {token}",
        "originator": ORIGINATOR,
        "user-agent": codex_user_agent(agent),
    }
    if account.chatgpt_account_id:
        headers["chatgpt-account-id"] = account.chatgpt_account_id
    return headers
