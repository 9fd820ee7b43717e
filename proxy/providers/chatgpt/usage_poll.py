"""Polling a ChatGPT account's usage endpoint (``GET {base}/backend-api/wham/usage``) for its quota windows."""

from __future__ import annotations

import time

import httpx

from proxy.config.settings import Account, UpstreamSettings
from proxy.providers.chatgpt.backend import USAGE_PATH, backend_base, backend_headers
from proxy.providers.chatgpt.limits import parse_codex_usage
from proxy.routing.quota import Window

__all__ = ["poll_usage"]


async def poll_usage(
    client: httpx.AsyncClient, account: Account, token: str, upstreams: UpstreamSettings
) -> tuple[list[Window], str | None]:
    """The account's windows and plan type. Raises ``httpx.HTTPError`` or ``ValueError`` when the poll fails."""
    response = await client.get(
        backend_base(account, upstreams) + USAGE_PATH, headers=backend_headers(token, account), timeout=15.0
    )
    response.raise_for_status()
    return parse_codex_usage(response.json(), time.time())
