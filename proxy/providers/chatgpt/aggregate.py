"""The backend's Responses SSE events → one final Responses object → one chat completion, for agents that did not
ask to stream (the backend always streams). Pure."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from proxy.providers.chatgpt.events import (
    CodexResponseError,
    chat_usage,
    event_data,
    event_type,
    finish_reason,
    message_text,
    stream_error,
)
from proxy.wire.sse import SSEEvent

__all__ = ["aggregate_responses_stream", "responses_to_chat_completion"]


def aggregate_responses_stream(events: Iterable[SSEEvent]) -> dict[str, Any]:
    """The final Responses object of a stream, for agents that did not ask to stream.

    ``response.completed``'s ``response`` is used as is when it carries output; when its ``output`` is empty (the
    backend may send it so) the output is assembled from ``response.output_item.done`` events in ``output_index``
    order. ``response.incomplete`` returns the object with ``status: "incomplete"``. ``response.failed`` / ``error``
    and a stream that ends without a terminal event raise :class:`CodexResponseError`.
    """
    done_items: dict[int, Any] = {}
    arrival = 0
    for event in events:
        data = event_data(event)
        if data is None:
            continue
        kind = event_type(event.event, data)
        if kind in ("response.failed", "error"):
            raise stream_error(kind, data)
        if kind == "response.output_item.done" and isinstance(data.get("item"), Mapping):
            index = data.get("output_index")
            done_items[index if isinstance(index, int) else 1_000_000 + arrival] = copy.deepcopy(data["item"])
            arrival += 1
        elif kind in ("response.completed", "response.incomplete") and isinstance(
            data.get("response"), Mapping
        ):
            response = copy.deepcopy(dict(data["response"]))
            if not response.get("output"):
                response["output"] = [done_items[i] for i in sorted(done_items)]
            if kind == "response.incomplete":
                response["status"] = "incomplete"
            else:
                response.setdefault("status", "completed")
            return response
    raise CodexResponseError("the upstream stream ended before response.completed", code="stream_truncated")


def responses_to_chat_completion(response: Mapping[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """A non-streaming Chat Completions response for a final Responses object."""
    text: list[str] = []
    refusal: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "message":
            item_text, item_refusal = message_text(item)
            text.append(item_text)
            refusal.append(item_refusal)
        elif item.get("type") == "function_call":
            tool_calls.append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or ""},
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if any(text) else None,
        "refusal": "".join(refusal) or None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    response_id = response.get("id")
    created = response.get("created_at")
    completion: dict[str, Any] = {
        "id": "chatcmpl-"
        + (response_id.removeprefix("resp_") if isinstance(response_id, str) else uuid.uuid4().hex),
        "object": "chat.completion",
        "created": created if isinstance(created, int) else int(time.time()),
        "model": model or response.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response, bool(tool_calls)),
            }
        ],
    }
    usage = response.get("usage")
    if isinstance(usage, Mapping):
        completion["usage"] = chat_usage(usage)
    return completion
