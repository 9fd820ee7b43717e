"""``GET /v1/models``: the models the configured accounts can serve, in the asking protocol's shape.

Anthropic's list is forwarded upstream. On the OpenAI side, accounts whose provider lists models itself (the
ChatGPT backend, ``adapter.own_model_list``) are asked directly (cached ten minutes) and merged with the upstream
list of the API-key accounts.

Model aliases (settings ``models.aliases``) are listed too, so agents' model pickers offer them: in the family whose
list holds the alias's target (else Anthropic for a ``claude-`` target, OpenAI for the rest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy.auth.credentials import Credentials
from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.providers.base import Incoming, ProviderAdapter
from proxy.routing.sessions import SessionInfo

__all__ = ["ModelList"]

_CACHE_SECONDS = 600.0


class ModelList:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        adapters: Mapping[str, ProviderAdapter],
        credentials: Credentials,
        client: Callable[[], httpx.AsyncClient | None],
        forward: Callable[[Incoming], Awaitable[Response]],
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._adapters = adapters
        self._credentials = credentials
        self._client = client
        self._forward = forward
        self._cache: dict[str, tuple[float, list[Any]]] = {}

    async def answer(self, family: Literal["anthropic", "openai"], request: Request) -> Response:
        accounts = [a for a in self._settings().accounts if a.family == family and a.enabled]
        aliases = self._settings().models.aliases
        if family == "anthropic":
            if not accounts:
                return JSONResponse({"data": [], "has_more": False, "first_id": None, "last_id": None})
            response = await self._forward(_models_request(family, request))
            if response.status_code != 200 or not aliases:
                return response
            listed = await _json_body(response)
            if not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
                return JSONResponse(listed) if listed is not None else response
            listed["data"] += _alias_entries(family, aliases, listed["data"])
            return JSONResponse(listed)
        data: list[Any] = []
        if any(not self._adapters[a.kind].own_model_list for a in accounts):
            response = await self._forward(_models_request(family, request))
            if response.status_code != 200:
                return response
            listed = await _json_body(response)
            data = list(listed.get("data") or []) if isinstance(listed, dict) else []
        listing = next((a for a in accounts if self._adapters[a.kind].own_model_list), None)
        if listing is not None:
            known = {m.get("id") for m in data if isinstance(m, dict)}
            data += [m for m in await self._own_models(listing) if m.get("id") not in known]
        data += _alias_entries(family, aliases, data)
        return JSONResponse({"object": "list", "data": data})

    async def _own_models(self, account: Account) -> list[dict[str, Any]]:
        """The model list an account's provider keeps itself (cached; the adapter falls back to its own)."""
        cached = self._cache.get(account.id)
        if cached and time.time() - cached[0] < _CACHE_SECONDS:
            return cached[1]
        client = self._client()
        assert client is not None
        token = await self._credentials.credential(account)
        models = await self._adapters[account.kind].list_models(client, account, token, self._upstreams())
        self._cache[account.id] = (time.time(), models)
        return models


async def _json_body(response: Response) -> Any:
    body = getattr(response, "body", b"")
    if not body and hasattr(response, "body_iterator"):
        body = b"".join([chunk async for chunk in response.body_iterator])
    try:
        return json.loads(body)
    except ValueError:
        return None


def _alias_entries(
    family: Literal["anthropic", "openai"], aliases: Mapping[str, str], listed: list[Any]
) -> list[dict[str, Any]]:
    """The aliases that belong in ``family``'s list, in its shape (after the upstream's own models)."""
    known = {m.get("id") for m in listed if isinstance(m, dict)}
    entries: list[dict[str, Any]] = []
    for alias, target in aliases.items():
        if alias in known:
            continue
        if target not in known and target.startswith("claude") != (family == "anthropic"):
            continue
        if family == "anthropic":
            entries.append(
                {
                    "type": "model",
                    "id": alias,
                    "display_name": f"{alias} (alias of {target})",
                    "created_at": "1970-01-01T00:00:00Z",
                }
            )
        else:
            entries.append({"id": alias, "object": "model", "created": 0, "owned_by": f"alias of {target}"})
    return entries


def _models_request(family: Literal["anthropic", "openai"], request: Request) -> Incoming:
    return Incoming(
        method="GET",
        path="/v1/models",
        query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=b"",
        json=None,
        protocol="anthropic" if family == "anthropic" else "openai-chat",
        family=family,
        session=SessionInfo(),
    )
