"""What the translators of the backend's Responses events share: the event's type, a failed stream as an error,
finish reasons, message text and usage in Chat Completions terms (pure).

Events are :class:`proxy.wire.sse.SSEEvent`s; their JSON ``data`` object's ``type`` wins over the SSE ``event:`` name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.wire.sse import SSEEvent

__all__ = [
    "CodexResponseError",
    "chat_usage",
    "event_data",
    "event_type",
    "finish_reason",
    "message_text",
    "stream_error",
]


class CodexResponseError(Exception):
    """The backend's stream failed (``response.failed`` / ``error``) or ended before ``response.completed``.

    ``code`` is the backend's error code (``context_length_exceeded``, ``insufficient_quota``,
    ``usage_not_included``, ``rate_limit_exceeded`` …) or ``"stream_truncated"`` when the stream just stopped.
    """

    def __init__(self, message: str, *, code: str | None, response: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.response: dict[str, Any] | None = dict(response) if response is not None else None


def event_data(event: SSEEvent) -> Mapping[str, Any] | None:
    """The event's JSON data object, or None when it is not an object (``[DONE]``, malformed)."""
    data = event.json()
    return data if isinstance(data, dict) else None


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses ``usage`` object in Chat Completions terms."""
    prompt = _int(usage.get("input_tokens"))
    completion = _int(usage.get("output_tokens"))
    total = usage.get("total_tokens")
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    cached = input_details.get("cached_tokens") if isinstance(input_details, Mapping) else None
    reasoning = output_details.get("reasoning_tokens") if isinstance(output_details, Mapping) else None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _int(total) if total is not None else prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _int(cached)},
        "completion_tokens_details": {"reasoning_tokens": _int(reasoning)},
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def event_type(event: str | None, data: Mapping[str, Any]) -> str | None:
    kind = data.get("type")
    return kind if isinstance(kind, str) else event


def stream_error(kind: str | None, data: Mapping[str, Any]) -> CodexResponseError:
    response = data.get("response")
    response = response if isinstance(response, Mapping) else None
    error: Any = data.get("error")
    if kind == "response.failed" and response is not None:
        error = response.get("error")
    if not isinstance(error, Mapping):
        error = data if kind == "error" else {}
    code = error.get("code") or error.get("type")
    message = error.get("message") or "the upstream response failed"
    return CodexResponseError(str(message), code=str(code) if code else None, response=response)


def finish_reason(response: Mapping[str, Any], saw_tool_call: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if saw_tool_call else "stop"


def message_text(item: Mapping[str, Any]) -> tuple[str, str]:
    """(output text, refusal text) of a message output item."""
    text: list[str] = []
    refusal: list[str] = []
    for part in item.get("content") or []:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "output_text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            refusal.append(part["refusal"])
    return "".join(text), "".join(refusal)
