"""Upstream base URLs in one normal form: scheme, host and any proxy prefix — never the API's own path.

Users paste what their provider's docs show: ``https://api.openai.com/v1``, ``https://chatgpt.com/backend-api``,
``https://auth.openai.com/``. Headway appends the API path itself (``/v1/messages``, ``/backend-api/codex/responses``,
``/oauth/token``), so each base is reduced to the part before that path, once, here; every caller (the settings'
effective upstreams, the adapters, the engine's ChatGPT side calls, the login) uses the normal form.

    https://api.openai.com/v1/          → https://api.openai.com
    https://chatgpt.com/backend-api     → https://chatgpt.com
    https://proxy.corp/chatgpt/backend-api/codex → https://proxy.corp/chatgpt
"""

from __future__ import annotations

from typing import Literal

__all__ = ["UpstreamName", "normalize_base_url"]

UpstreamName = Literal["anthropic", "openai", "chatgpt", "openai_auth"]

# The API path each upstream's requests start with, longest first; a base ending in one of them loses it.
_API_PATHS: dict[str, tuple[str, ...]] = {
    "anthropic": ("/v1",),
    "openai": ("/v1",),
    "chatgpt": ("/backend-api/codex", "/backend-api"),
    "openai_auth": ("/oauth/authorize", "/oauth/token", "/oauth"),
}


def normalize_base_url(url: str, upstream: UpstreamName) -> str:
    """``url`` without trailing slashes and without the API path Headway adds itself. Idempotent."""
    base = url.strip().rstrip("/")
    for suffix in _API_PATHS[upstream]:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)].rstrip("/")
            break
    return base
