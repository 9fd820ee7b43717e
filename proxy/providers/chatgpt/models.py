"""The models a ChatGPT account can use, from the Codex backend's ``GET {base}/models?client_version=X``.

:func:`fetch_models` asks the backend (the caller caches); the payload is ``{"models": [{slug, display_name, visibility, supported_in_api, priority, …}]}``; an OpenAI-style
``{"data": [...]}`` or a bare list is tolerated too, and ``id`` stands in for a missing ``slug``.

Which models are listed follows the Codex CLI: ``visibility`` must be ``"list"`` (a missing or null value counts as listed;
``"hide"`` and anything else do not). ``supported_in_api`` only matters for API-key logins — the Codex CLI shows
every model in ChatGPT mode and filters on it otherwise (``ModelPreset::filter_by_auth``) — so it is ignored unless
``require_api_support`` is set. Models are ordered by ``priority`` (lower first; missing last), then as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from proxy import __version__
from proxy.config.settings import Account, UpstreamSettings
from proxy.providers.chatgpt.backend import MODELS_PATH, backend_base, backend_headers

__all__ = ["CodexModel", "fallback_models", "fetch_models", "parse_models_response", "to_openai_models_list"]

log = logging.getLogger("headway.providers.chatgpt")


@dataclass(frozen=True, slots=True)
class CodexModel:
    slug: str
    display_name: str
    priority: int | None = None
    visibility: str = "list"
    supported_in_api: bool = True
    description: str | None = None
    context_window: int | None = None


# Offline fallback only: used when the backend's model list cannot be fetched. Keep it short; the live list wins.
_FALLBACK: tuple[CodexModel, ...] = (
    CodexModel("gpt-5.1-codex-max", "GPT-5.1 Codex Max", priority=0),
    CodexModel("gpt-5.1-codex", "GPT-5.1 Codex", priority=1),
    CodexModel("gpt-5.1-codex-mini", "GPT-5.1 Codex Mini", priority=2),
    CodexModel("gpt-5.1", "GPT-5.1", priority=3),
    CodexModel("gpt-5-codex", "GPT-5 Codex", priority=4),
    CodexModel("gpt-5", "GPT-5", priority=5),
)


def fallback_models() -> list[CodexModel]:
    """The built-in OFFLINE FALLBACK list, for when the backend's model list is unavailable."""
    return list(_FALLBACK)


async def fetch_models(
    client: httpx.AsyncClient, account: Account, token: str | None, upstreams: UpstreamSettings
) -> list[CodexModel]:
    """The account's models from the backend; the built-in list when there is no token or the backend cannot say."""
    models = fallback_models()
    if not token:
        return models
    try:
        response = await client.get(
            backend_base(account, upstreams) + MODELS_PATH,
            params={"client_version": __version__},
            headers=backend_headers(token, account),
            timeout=10.0,
        )
        if response.status_code == 200:
            return parse_models_response(response.json()) or models
    except (httpx.HTTPError, ValueError) as exc:
        log.info("model list for %s unavailable, using the built-in list: %s", account.id, exc)
    return models


def parse_models_response(obj: Any, *, require_api_support: bool = False) -> list[CodexModel]:
    """The listed models of a ``/models`` payload, best (lowest ``priority``) first. Malformed entries are skipped."""
    entries: Any = obj
    if isinstance(obj, dict):
        entries = obj.get("models") if isinstance(obj.get("models"), list) else obj.get("data")
    if not isinstance(entries, list):
        return []
    models: list[CodexModel] = []
    seen: set[str] = set()
    for entry in entries:
        model = _model(entry)
        if model is None or model.slug in seen or model.visibility != "list":
            continue
        if require_api_support and not model.supported_in_api:
            continue
        seen.add(model.slug)
        models.append(model)
    return sorted(models, key=lambda m: (m.priority is None, m.priority or 0))


def to_openai_models_list(
    models: Iterable[CodexModel], *, created: int = 0, owned_by: str = "openai"
) -> dict[str, Any]:
    """The OpenAI ``GET /v1/models`` body for these models."""
    return {
        "object": "list",
        "data": [{"id": m.slug, "object": "model", "created": created, "owned_by": owned_by} for m in models],
    }


def _model(entry: Any) -> CodexModel | None:
    if not isinstance(entry, dict):
        return None
    slug = entry.get("slug") or entry.get("id")
    if not isinstance(slug, str) or not slug:
        return None
    display_name = entry.get("display_name")
    visibility = entry.get("visibility")
    supported = entry.get("supported_in_api", True)
    description = entry.get("description")
    return CodexModel(
        slug=slug,
        display_name=display_name if isinstance(display_name, str) and display_name else slug,
        priority=_int_or_none(entry.get("priority")),
        visibility=visibility if isinstance(visibility, str) else "list",
        supported_in_api=supported if isinstance(supported, bool) else True,
        description=description if isinstance(description, str) else None,
        context_window=_int_or_none(entry.get("context_window")),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
