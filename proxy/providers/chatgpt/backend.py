"""The Codex backend's addresses and the header block every request to it carries, built here and nowhere else.

Headway identifies itself honestly: ``originator: headway`` and a Headway User-Agent that also names the calling agent.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

from proxy import __version__
from proxy.config.settings import Account, UpstreamSettings
from proxy.wire.upstream_url import normalize_base_url

__all__ = [
    "LITE_HEADER",
    "MODELS_PATH",
    "ORIGINATOR",
    "PROTOCOL_HEADERS",
    "RESPONSES_PATH",
    "USAGE_PATH",
    "backend_base",
    "backend_headers",
    "codex_user_agent",
    "is_lite",
]

ORIGINATOR = "headway"
RESPONSES_PATH = "/backend-api/codex/responses"
MODELS_PATH = "/backend-api/codex/models"
USAGE_PATH = "/backend-api/wham/usage"

#: The Codex CLI's marker for the models its catalog flags ``use_responses_lite``: the body is in the Lite dialect.
LITE_HEADER = "x-openai-internal-codex-responses-lite"
#: Headers of the agent's that describe the request's protocol, not who sends it: forwarded as they are (the
#: identity headers — originator, User-Agent, account, token — are always Headway's own).
PROTOCOL_HEADERS = (LITE_HEADER,)


def codex_user_agent(agent: str | None) -> str:
    base = f"headway/{__version__} ({platform.system()} {platform.release()}; {platform.machine()})"
    return f"{base} {agent}" if agent else base


def backend_base(account: Account, upstreams: UpstreamSettings) -> str:
    return normalize_base_url(account.base_url or upstreams.chatgpt, "chatgpt")


def is_lite(headers: Mapping[str, str]) -> bool:
    """Whether the agent's request is in the Responses Lite dialect."""
    return headers.get(LITE_HEADER, "").strip().lower() == "true"


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
