"""The backend's Responses SSE events → Chat Completions stream chunks, as they arrive (pure)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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

__all__ = ["DONE_FRAME", "ResponsesToChatStream", "encode_chunk"]

DONE_FRAME = b"data: [DONE]\n\n"


def encode_chunk(chunk: Mapping[str, Any]) -> bytes:
    """One chat chunk as an SSE frame: ``data: {...}\\n\\n``."""
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


@dataclass
class _ItemState:
    kind: str
    text: str = ""
    refusal: str = ""
    tool_index: int = -1
    arguments: str = ""


class ResponsesToChatStream:
    """Translate one response's Responses SSE events into Chat Completions stream chunks.

    Feed every event with :meth:`feed`; send each returned chunk with :func:`encode_chunk`; when the upstream stream
    ends call :meth:`close` (raises when no terminal event came), then send :data:`DONE_FRAME`. ``response.failed`` and ``error`` events raise :class:`CodexResponseError`
    from :meth:`feed`; ``response.incomplete`` is a normal end with ``finish_reason`` ``"length"`` (or
    ``"content_filter"``). Text and arguments that arrive only in ``*.done`` events (no deltas) are still sent.
    With ``include_usage`` every chunk carries ``"usage": null`` and a last chunk with empty ``choices`` carries the
    usage (when the backend reported any).
    """

    def __init__(
        self,
        *,
        model: str,
        include_usage: bool = False,
        chunk_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self._chunk_id = chunk_id
        self._created = created
        self._started = False
        self._finished = False
        self._items: dict[str, _ItemState] = {}
        self._aliases: dict[int, str] = {}
        self._tool_calls = 0

    @property
    def finished(self) -> bool:
        """True once a terminal event (completed / incomplete) was translated."""
        return self._finished

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        """The chat chunks for one event (often none; always none for an event whose data is not a JSON object)."""
        data = event_data(event)
        if self._finished or data is None:
            return []
        kind = event_type(event.event, data)
        if kind in ("response.failed", "error"):
            raise stream_error(kind, data)
        response = data.get("response")
        if kind == "response.created" and isinstance(response, Mapping):
            self._adopt_identity(response)
            return self._start()
        if kind == "response.output_text.delta":
            return self._text(data, _ItemState(kind="message"), "content", str(data.get("delta") or ""))
        if kind == "response.refusal.delta":
            return self._text(data, _ItemState(kind="message"), "refusal", str(data.get("delta") or ""))
        if kind == "response.output_item.added":
            return self._item_added(data)
        if kind == "response.function_call_arguments.delta":
            state = self._items.get(self._key(data))
            if state is None or state.kind != "function_call":
                return []
            return self._arguments(state, state.arguments + str(data.get("delta") or ""))
        if kind == "response.function_call_arguments.done":
            state = self._items.get(self._key(data))
            if state is None or not isinstance(data.get("arguments"), str):
                return []
            return self._arguments(state, data["arguments"])
        if kind == "response.output_item.done":
            item = data.get("item")
            return self._reconcile(item, self._key(data)) if isinstance(item, Mapping) else []
        if kind in ("response.completed", "response.incomplete") and isinstance(response, Mapping):
            return self._finish(response)
        return []

    def close(self) -> None:
        """Call when the upstream stream ended; raises :class:`CodexResponseError` if it ended too early."""
        if not self._finished:
            raise CodexResponseError(
                "the upstream stream ended before response.completed", code="stream_truncated"
            )

    # -- internals -------------------------------------------------------------------------------------------

    def _adopt_identity(self, response: Mapping[str, Any]) -> None:
        if self._chunk_id is None and isinstance(response.get("id"), str) and response["id"]:
            self._chunk_id = "chatcmpl-" + response["id"].removeprefix("resp_")
        if self._created is None and isinstance(response.get("created_at"), int):
            self._created = response["created_at"]

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if self._chunk_id is None:
            self._chunk_id = "chatcmpl-" + uuid.uuid4().hex
        if self._created is None:
            self._created = int(time.time())
        chunk: dict[str, Any] = {
            "id": self._chunk_id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._delta({"role": "assistant", "content": ""})]

    def _key(self, data: Mapping[str, Any]) -> str:
        """The state key of the item an event is about: its id, else its output index (aliased so both agree)."""
        item = data.get("item")
        item_id = data.get("item_id")
        if item_id is None and isinstance(item, Mapping):
            item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            item_id = None
        index = data.get("output_index")
        index = index if isinstance(index, int) else None
        if item_id is not None and item_id in self._items:
            return item_id
        if index is not None and index in self._aliases:
            return self._aliases[index]
        key = item_id or f"#{index if index is not None else 0}"
        if index is not None:
            self._aliases[index] = key
        return key

    def _text(
        self, data: Mapping[str, Any], fresh: _ItemState, field: str, delta: str
    ) -> list[dict[str, Any]]:
        state = self._items.setdefault(self._key(data), fresh)
        if field == "content":
            state.text += delta
        else:
            state.refusal += delta
        if not delta:
            return []
        return [*self._start(), self._delta({field: delta})]

    def _item_added(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        item = data.get("item")
        if not isinstance(item, Mapping):
            return []
        key = self._key(data)
        if key in self._items:
            return []
        if item.get("type") == "function_call":
            return self._new_call(key, item)
        self._items[key] = _ItemState(kind=str(item.get("type")))
        return []

    def _new_call(self, key: str, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        state = _ItemState(kind="function_call", tool_index=self._tool_calls)
        self._tool_calls += 1
        self._items[key] = state
        opening = {
            "index": state.tool_index,
            "id": item.get("call_id") or item.get("id"),
            "type": "function",
            "function": {"name": item.get("name", ""), "arguments": ""},
        }
        chunks = [*self._start(), self._delta({"tool_calls": [opening]})]
        if isinstance(item.get("arguments"), str):
            chunks.extend(self._arguments(state, item["arguments"]))
        return chunks

    def _arguments(self, state: _ItemState, full: str) -> list[dict[str, Any]]:
        """Send whatever part of ``full`` the agent has not seen yet."""
        if state.kind != "function_call" or not full.startswith(state.arguments) or full == state.arguments:
            return []
        missing = full[len(state.arguments) :]
        state.arguments = full
        call = {"index": state.tool_index, "function": {"arguments": missing}}
        return [self._delta({"tool_calls": [call]})]

    def _reconcile(self, item: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        """A finished item: send what its deltas did not (or all of it if none came)."""
        kind = item.get("type")
        if kind == "function_call":
            state = self._items.get(key)
            if state is None:
                return self._new_call(key, item)
            arguments = item.get("arguments")
            return self._arguments(state, arguments) if isinstance(arguments, str) else []
        if kind == "message":
            state = self._items.setdefault(key, _ItemState(kind="message"))
            text, refusal = message_text(item)
            chunks: list[dict[str, Any]] = []
            if text.startswith(state.text) and text != state.text:
                chunks += self._text({"item_id": key}, state, "content", text[len(state.text) :])
            if refusal.startswith(state.refusal) and refusal != state.refusal:
                chunks += self._text({"item_id": key}, state, "refusal", refusal[len(state.refusal) :])
            return chunks
        return []

    def _finish(self, response: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._adopt_identity(response)
        chunks = self._start()
        output = response.get("output")
        if isinstance(output, list):
            for index, item in enumerate(output):
                if isinstance(item, Mapping):
                    chunks += self._reconcile(item, self._key({"item": item, "output_index": index}))
        self._finished = True
        chunks.append(self._delta({}, finish_reason(response, self._tool_calls > 0)))
        usage = response.get("usage")
        if self.include_usage and isinstance(usage, Mapping):
            usage_chunk = self._chunk([])
            usage_chunk["usage"] = chat_usage(usage)
            chunks.append(usage_chunk)
        return chunks
