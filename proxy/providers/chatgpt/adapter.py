"""ChatGPT Plus/Pro accounts on the Codex backend (``POST {base}/backend-api/codex/responses``, SSE only).

The credential is the account's OAuth access token (refreshed by :class:`proxy.auth.TokenManager`); the request is
reshaped for the backend (:mod:`.request`, :mod:`.chat_request`) and carries the header block of :mod:`.backend`.
Responses come back as SSE; an agent that did not ask to stream, or that speaks Chat Completions, gets them
translated by a transformer (:mod:`.transformers`). A 429 usage-limit answer exhausts the account until its reset
(:mod:`.limits`); the account's usage endpoint and model list are read by :mod:`.usage_poll` and :mod:`.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.providers.base import (
    Exhaustion,
    Incoming,
    Outgoing,
    ProviderAdapter,
    ResponseTransformer,
    StreamProtocol,
    Verdict,
)
from proxy.providers.chatgpt.backend import (
    PROTOCOL_HEADERS,
    RESPONSES_PATH,
    backend_base,
    backend_headers,
    is_lite,
)
from proxy.providers.chatgpt.chat_request import chat_to_responses
from proxy.providers.chatgpt.limits import parse_codex_headers, parse_usage_limit_error
from proxy.providers.chatgpt.models import fetch_models, to_openai_models_list
from proxy.providers.chatgpt.request import to_codex_request
from proxy.providers.chatgpt.transformers import AggregateTransformer, ChatStreamTransformer
from proxy.providers.chatgpt.usage_poll import poll_usage
from proxy.providers.openai import classify_openai_event
from proxy.routing.health import Block
from proxy.routing.quota import Window
from proxy.wire import json_body
from proxy.wire.sse import SSEEvent

__all__ = ["ChatGPTAccount"]


class ChatGPTAccount(ProviderAdapter):
    kind = "chatgpt"
    billing = "subscription"
    oauth = True
    relogin_hint = "sign in again with `headway login chatgpt`"
    polls_usage = True
    own_model_list = True

    def missing_secret(self, account: Account) -> Block:
        return Block("needs_login", "no login in the keychain: run `headway login chatgpt`")

    def base_url(self, account: Account, upstreams: UpstreamSettings) -> str:
        return backend_base(account, upstreams)

    def build(
        self,
        incoming: Incoming,
        account: Account,
        secret: str,
        upstreams: UpstreamSettings,
        settings: Settings,
    ) -> Outgoing:
        body = incoming.json if isinstance(incoming.json, dict) else {}
        request = (
            chat_to_responses(body) if incoming.protocol == "openai-chat" else body
        )  # ChatTranslationError: a 400
        lite = is_lite(incoming.headers)
        shaped = to_codex_request(
            request,
            stabilize_cache=settings.chatgpt.stabilize_cache,
            session_id=incoming.session.session_id,
            lite=lite,
        )
        headers = backend_headers(secret, account, incoming.headers.get("user-agent"))
        for name in PROTOCOL_HEADERS:
            if name in incoming.headers:
                headers[name] = incoming.headers[name]
        headers["content-type"] = "application/json"
        headers["accept"] = "text/event-stream"
        if incoming.session.session_id:
            headers["session-id"] = incoming.session.session_id
        return Outgoing(
            method="POST",
            url=self.base_url(account, upstreams) + RESPONSES_PATH,
            headers=headers,
            content=json_body.dumps(shaped),
        )

    def quota_windows(self, headers: Mapping[str, str], now: float) -> list[Window]:
        return parse_codex_headers(headers, now)

    def plan_type(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-codex-plan-type")

    def classify_error(self, status: int, body: bytes, now: float) -> Exhaustion | None:
        limit = parse_usage_limit_error(status, body, now=now)
        return None if limit is None else Exhaustion(limit.kind.replace("_", " "), limit.resets_at)

    async def poll_usage(
        self, client: httpx.AsyncClient, account: Account, token: str, upstreams: UpstreamSettings
    ) -> tuple[list[Window], str | None]:
        return await poll_usage(client, account, token, upstreams)

    def usage_poll_seconds(self, settings: Settings) -> float:
        return settings.chatgpt.usage_poll_minutes * 60

    async def list_models(
        self, client: httpx.AsyncClient, account: Account, token: str | None, upstreams: UpstreamSettings
    ) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = to_openai_models_list(
            await fetch_models(client, account, token, upstreams)
        )["data"]
        return data

    def classify_event(self, protocol: StreamProtocol, event: SSEEvent) -> Verdict:
        # The backend always speaks Responses, whatever the agent asked for.
        return classify_openai_event("openai-responses", event)

    def upstream_protocol(self, incoming: Incoming) -> StreamProtocol:
        return "openai-responses"

    def streams(self, incoming: Incoming) -> bool:
        return True  # the Codex backend always streams, whatever the agent asked for

    def transformer(self, incoming: Incoming) -> ResponseTransformer | None:
        if not incoming.stream:
            return AggregateTransformer(incoming)
        if incoming.protocol == "openai-chat":
            return ChatStreamTransformer(incoming)
        return None
