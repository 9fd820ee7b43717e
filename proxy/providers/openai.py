"""OpenAI API keys: Bearer auth, Responses and Chat Completions passed through."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.providers.base import (
    Incoming,
    Outgoing,
    ProviderAdapter,
    StreamProtocol,
    Verdict,
    forwardable_headers,
    join_url,
)
from proxy.routing.quota import Window, parse_openai_headers
from proxy.wire.sse import SSEEvent
from proxy.wire.upstream_url import normalize_base_url

__all__ = ["OpenAIApiKey", "classify_openai_event"]

_META_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_FALLBACK_CODES = frozenset(
    {"rate_limit_exceeded", "insufficient_quota", "usage_not_included", "usage_limit_reached"}
)
_TRANSIENT_CODES = frozenset({"server_error", "server_is_overloaded", "overloaded", "slow_down"})


def _error_verdict(error: object) -> Verdict:
    if not isinstance(error, dict):
        return Verdict("error", "pass", "error")
    code = str(error.get("code") or error.get("type") or "")
    reason = f"{code}: {error.get('message', '')}".strip(": ")
    if code in _FALLBACK_CODES:
        return Verdict("error", "fallback", reason)
    if code in _TRANSIENT_CODES:
        return Verdict("error", "retry", reason)
    return Verdict("error", "pass", reason)


def classify_openai_event(protocol: StreamProtocol, event: SSEEvent) -> Verdict:
    data = event.json()
    if protocol == "openai-chat":
        if event.data.strip() == "[DONE]":
            return Verdict("content")
        if isinstance(data, dict) and "error" in data:
            return _error_verdict(data["error"])
        choices = data.get("choices") if isinstance(data, dict) else None
        for choice in choices or []:
            delta = choice.get("delta") or {}
            if (
                delta.get("content")
                or delta.get("tool_calls")
                or delta.get("refusal")
                or choice.get("finish_reason")
            ):
                return Verdict("content")
        if isinstance(data, dict) and data.get("usage"):
            return Verdict("content")
        return Verdict("meta")
    if not isinstance(data, dict):
        return Verdict("meta")  # not a Responses event (malformed): never a reason to commit to this stream
    name = event.event or data.get("type")
    if name is None or name in _META_EVENTS:
        return Verdict("meta")
    if name == "response.failed":
        response = data.get("response", {})
        return _error_verdict(response.get("error") if isinstance(response, dict) else None)
    if name == "error":
        return _error_verdict(data.get("error", data))
    return Verdict("content")


class OpenAIApiKey(ProviderAdapter):
    kind = "openai-api-key"

    def base_url(self, account: Account, upstreams: UpstreamSettings) -> str:
        return normalize_base_url(account.base_url or upstreams.openai, "openai")

    def build(
        self,
        incoming: Incoming,
        account: Account,
        secret: str,
        upstreams: UpstreamSettings,
        settings: Settings,
    ) -> Outgoing:
        headers = forwardable_headers(incoming.headers)
        headers["authorization"] = f"Bearer {secret}"
        return Outgoing(
            method=incoming.method,
            url=join_url(self.base_url(account, upstreams), incoming.path, incoming.query),
            headers=headers,
            content=incoming.body,
        )

    def quota_windows(self, headers: Mapping[str, str], now: float) -> list[Window]:
        return parse_openai_headers(headers, now)

    def classify_event(self, protocol: StreamProtocol, event: SSEEvent) -> Verdict:
        return classify_openai_event(protocol, event)
