"""Anthropic API keys: ``x-api-key`` auth, Messages passed through with protocol headers unchanged."""

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
from proxy.routing.quota import Window, parse_anthropic_headers
from proxy.wire.sse import SSEEvent
from proxy.wire.upstream_url import normalize_base_url

__all__ = ["AnthropicApiKey"]

_CONTENT_EVENTS = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
)
_FALLBACK_ERRORS = frozenset(
    {"rate_limit_error", "billing_error", "authentication_error", "permission_error"}
)
_TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error", "timeout_error"})


class AnthropicApiKey(ProviderAdapter):
    kind = "anthropic-api-key"

    def base_url(self, account: Account, upstreams: UpstreamSettings) -> str:
        return normalize_base_url(account.base_url or upstreams.anthropic, "anthropic")

    def build(
        self,
        incoming: Incoming,
        account: Account,
        secret: str,
        upstreams: UpstreamSettings,
        settings: Settings,
    ) -> Outgoing:
        headers = forwardable_headers(incoming.headers)
        headers["x-api-key"] = secret
        headers.setdefault("anthropic-version", "2023-06-01")
        return Outgoing(
            method=incoming.method,
            url=join_url(self.base_url(account, upstreams), incoming.path, incoming.query),
            headers=headers,
            content=incoming.body,
        )

    def quota_windows(self, headers: Mapping[str, str], now: float) -> list[Window]:
        return parse_anthropic_headers(headers, now)

    def classify_event(self, protocol: StreamProtocol, event: SSEEvent) -> Verdict:
        name = event.event
        if name in _CONTENT_EVENTS:
            return Verdict("content")
        if name == "error":
            data = event.json()
            error = data.get("error", {}) if isinstance(data, dict) else {}
            kind = error.get("type", "") if isinstance(error, dict) else ""
            message = error.get("message", "") if isinstance(error, dict) else ""
            reason = f"{kind}: {message}".strip(": ")
            if kind in _FALLBACK_ERRORS:
                return Verdict("error", "fallback", reason)
            if kind in _TRANSIENT_ERRORS:
                return Verdict("error", "retry", reason)
            return Verdict("error", "pass", reason)
        return Verdict("meta")
