"""ChatGPT Plus/Pro accounts on the Codex backend (``POST {base}/backend-api/codex/responses``, SSE only).

The credential is the account's OAuth access token (refreshed by :class:`proxy.oauth.TokenManager`); the request is
reshaped for the backend (:mod:`proxy.providers.codex_shape`) and identified honestly as Headway (``originator:
headway`` and a Headway User-Agent that also names the calling agent). Responses come back as SSE; an agent that
did not ask to stream, or that speaks Chat Completions, gets them translated by a :class:`ResponseTransformer`.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..logs import redact
from ..quota import Window, parse_codex_headers
from ..settings import Account, UpstreamSettings
from ..sse import SSEEvent
from ..upstream_url import normalize_base_url
from .base import Incoming, Outgoing, ProviderAdapter, ResponseTransformer, StreamProtocol, Verdict
from .codex_shape import (
    DONE_FRAME,
    ChatTranslationError,
    CodexResponseError,
    ResponsesToChatStream,
    aggregate_responses_stream,
    chat_include_usage,
    chat_to_responses,
    encode_chunk,
    responses_to_chat_completion,
    to_codex_request,
)
from .openai import classify_openai_event

__all__ = ["ORIGINATOR", "ChatGPTAccount", "codex_user_agent"]

ORIGINATOR = "headway"
CODEX_PATH = "/backend-api/codex/responses"


def codex_user_agent(agent: str | None) -> str:
    base = f"headway/{__version__} ({platform.system()} {platform.release()}; {platform.machine()})"
    return f"{base} {agent}" if agent else base


class _ChatStream(ResponseTransformer):
    """Responses SSE → Chat Completions chunks, as they arrive."""

    aggregate = False
    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, incoming: Incoming) -> None:
        body = incoming.json if isinstance(incoming.json, dict) else {}
        self._stream = ResponsesToChatStream(model=str(body.get("model") or ""), include_usage=chat_include_usage(body))
        self.failed: CodexResponseError | None = None

    def feed(self, event: SSEEvent) -> bytes:
        data = event.json()
        if not isinstance(data, dict) or self.failed is not None:
            return b""
        try:
            return b"".join(encode_chunk(chunk) for chunk in self._stream.feed(event.event, data))
        except CodexResponseError as exc:
            self.failed = exc
            error = {"error": {"message": redact(exc.message), "type": "server_error", "param": None, "code": exc.code}}
            return b"data: " + json.dumps(error).encode() + b"\n\n"

    def finish(self) -> bytes:
        return DONE_FRAME if self._stream.finished and self.failed is None else b""

    def result(self) -> tuple[int, bytes]:
        raise NotImplementedError


class _Aggregate(ResponseTransformer):
    """The whole SSE stream → one JSON response (Responses object, or a chat completion)."""

    aggregate = True
    content_type = "application/json"

    def __init__(self, incoming: Incoming) -> None:
        self._chat = incoming.protocol == "openai-chat"
        body = incoming.json if isinstance(incoming.json, dict) else {}
        self._model = body.get("model") if isinstance(body.get("model"), str) else None
        self._events: list[tuple[str | None, Mapping[str, Any]]] = []

    def feed(self, event: SSEEvent) -> bytes:
        data = event.json()
        if isinstance(data, dict):
            self._events.append((event.event, data))
        return b""

    def finish(self) -> bytes:
        return b""

    def result(self) -> tuple[int, bytes]:
        try:
            response = aggregate_responses_stream(self._events)
        except CodexResponseError as exc:
            status = 400 if exc.code == "context_length_exceeded" else 502
            error = {"error": {"message": redact(exc.message), "type": "server_error", "param": None, "code": exc.code}}
            return status, json.dumps(error).encode()
        if self._chat:
            return 200, json.dumps(responses_to_chat_completion(response, model=self._model)).encode()
        return 200, json.dumps(response).encode()


class ChatGPTAccount(ProviderAdapter):
    kind = "chatgpt"
    billing = "subscription"

    def __init__(self, *, stabilize_cache: bool = True) -> None:
        self.stabilize_cache = stabilize_cache

    def base_url(self, account: Account, upstreams: UpstreamSettings) -> str:
        return normalize_base_url(account.base_url or upstreams.chatgpt, "chatgpt")

    def build(self, incoming: Incoming, account: Account, secret: str, upstreams: UpstreamSettings) -> Outgoing:
        body = incoming.json if isinstance(incoming.json, dict) else {}
        try:
            request = chat_to_responses(body) if incoming.protocol == "openai-chat" else body
        except ChatTranslationError:
            raise
        shaped = to_codex_request(request, stabilize_cache=self.stabilize_cache, session_id=incoming.session.session_id)
        headers = {
            "authorization": f"Bearer {secret}",
            "content-type": "application/json",
            "accept": "text/event-stream",
            "originator": ORIGINATOR,
            "user-agent": codex_user_agent(incoming.headers.get("user-agent")),
        }
        if account.chatgpt_account_id:
            headers["chatgpt-account-id"] = account.chatgpt_account_id
        if incoming.session.session_id:
            headers["session-id"] = incoming.session.session_id
        return Outgoing(
            method="POST",
            url=self.base_url(account, upstreams) + CODEX_PATH,
            headers=headers,
            content=json.dumps(shaped, separators=(",", ":")).encode(),
        )

    def quota_windows(self, headers: Mapping[str, str], now: float) -> list[Window]:
        return parse_codex_headers(headers, now)

    def plan_type(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-codex-plan-type")

    def classify_event(self, protocol: StreamProtocol, event: SSEEvent) -> Verdict:
        # The backend always speaks Responses, whatever the agent asked for.
        return classify_openai_event("openai-responses", event)

    def upstream_protocol(self, incoming: Incoming) -> StreamProtocol:
        return "openai-responses"

    def streams(self, incoming: Incoming) -> bool:
        return True  # the Codex backend always streams, whatever the agent asked for

    def transformer(self, incoming: Incoming) -> ResponseTransformer | None:
        if not incoming.stream:
            return _Aggregate(incoming)
        if incoming.protocol == "openai-chat":
            return _ChatStream(incoming)
        return None
