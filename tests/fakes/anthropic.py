"""A fake Anthropic Messages API: /v1/messages (streamed or not), /v1/messages/count_tokens, /v1/models."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.server import (
    Behavior,
    EventStream,
    Exchange,
    FakeServer,
    RecordedRequest,
    Route,
    deep_merge,
    split_text,
)

__all__ = ["ANTHROPIC_MODELS", "FakeAnthropic", "anthropic_ratelimit_headers", "estimate_tokens"]

ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def estimate_tokens(body: bytes) -> int:
    """A deterministic stand-in for a tokenizer: one token per four bytes of request body."""
    return max(1, len(body) // 4)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_ratelimit_headers(
    *,
    requests_limit: int = 50,
    requests_remaining: int = 49,
    tokens_limit: int = 100_000,
    tokens_remaining: int = 99_000,
    reset_in: float = 60.0,
    input_tokens_limit: int | None = None,
    input_tokens_remaining: int | None = None,
    output_tokens_limit: int | None = None,
    output_tokens_remaining: int | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """`anthropic-ratelimit-*` headers; every reset is `now + reset_in` in RFC 3339.

    The input-tokens / output-tokens families are included only when their numbers are given.
    """
    reset = _rfc3339((now or datetime.now(UTC)) + timedelta(seconds=reset_in))
    families: dict[str, tuple[int | None, int | None]] = {
        "requests": (requests_limit, requests_remaining),
        "tokens": (tokens_limit, tokens_remaining),
        "input-tokens": (input_tokens_limit, input_tokens_remaining),
        "output-tokens": (output_tokens_limit, output_tokens_remaining),
    }
    headers: dict[str, str] = {}
    for family, (limit, remaining) in families.items():
        if limit is None and remaining is None:
            continue
        if limit is not None:
            headers[f"anthropic-ratelimit-{family}-limit"] = str(limit)
        if remaining is not None:
            headers[f"anthropic-ratelimit-{family}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{family}-reset"] = reset
    return headers


def _display_name(model_id: str) -> str:
    words = model_id.split("-")
    name = " ".join(word.capitalize() for word in words if not word.isdigit())
    version = ".".join(word for word in words if word.isdigit())
    return f"{name} {version}".strip()


class FakeAnthropic(FakeServer):
    """Anthropic's API shapes. The key is `x-api-key`, or `Authorization: Bearer` (OAuth-style clients)."""

    request_id_header = "request-id"
    auth_error_type = "authentication_error"
    thread_name = "fake-anthropic"

    def __init__(
        self,
        *,
        default: Behavior | None = None,
        valid_keys: Iterable[str] | None = None,
        port: int = 0,
        keep_requests: int | None = None,
        models: Iterable[str] = ANTHROPIC_MODELS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            default=default, valid_keys=valid_keys, port=port, keep_requests=keep_requests, tls=tls
        )
        self.models = tuple(models)

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("GET", "/v1/models"): self._models,
        }

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def default_error_type(self, status: int) -> str:
        return _ERROR_TYPES.get(status, "api_error")

    def api_key(self, request: RecordedRequest) -> str | None:
        if "x-api-key" in request.headers:
            return request.headers["x-api-key"]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    # -- routes ---------------------------------------------------------------------------------------------

    def _count_tokens(self, ex: Exchange) -> None:
        ex.send_json({"input_tokens": estimate_tokens(ex.request.body)})

    def _models(self, ex: Exchange) -> None:
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": _display_name(model),
                "created_at": "2025-09-29T00:00:00Z",
            }
            for model in self.models
        ]
        ex.send_json(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def _messages(self, ex: Exchange) -> None:
        b = ex.behavior
        model = ex.body.get("model", ANTHROPIC_MODELS[0])
        usage = deep_merge(
            {
                "input_tokens": estimate_tokens(ex.request.body),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": max(1, b.chunks),
            },
            b.usage,
        )
        if b.tool_call is not None:
            stop_reason = "tool_use"
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_fake_{ex.number}",
                "name": b.tool_call.name,
                "input": dict(b.tool_call.arguments),
            }
        else:
            stop_reason = "end_turn"
            block = {"type": "text", "text": b.text}
        message: dict[str, Any] = {
            "id": f"msg_fake_{ex.number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not ex.request.stream:
            if b.drop_after_events is not None:
                ex.drop()
            ex.send_json(message)
            return

        stream = ex.open_stream()
        start_usage = {**usage, "output_tokens": 1}
        stream.event(
            "message_start",
            {
                "type": "message_start",
                "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
            },
        )
        if b.in_stream_error and not b.in_stream_error_after_content:
            self._stream_error(ex, stream)
            return
        if b.tool_call is not None:
            pieces = split_text(b.tool_call.arguments_json(), b.chunks)
            stream.event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}},
            )
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        else:
            pieces = split_text(b.text, b.chunks)
            stream.event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        stream.event("ping", {"type": "ping"})
        error_at = max(1, len(deltas) // 2) if b.in_stream_error else None
        for i, delta in enumerate(deltas, start=1):
            if b.content_gate is not None:
                b.content_gate(i)
            stream.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            if i == error_at:
                self._stream_error(ex, stream)
                return
        stream.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        stream.event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        stream.event("message_stop", {"type": "message_stop"})
        stream.close()

    def _stream_error(self, ex: Exchange, stream: EventStream) -> None:
        error_type = ex.behavior.in_stream_error or "api_error"
        message = ex.behavior.error_message or f"Fake in-stream {error_type}"
        stream.event("error", self.error_body(200, error_type, message))
        stream.close()
