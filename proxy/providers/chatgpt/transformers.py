"""The ChatGPT adapter's response transformers: Responses SSE → Chat Completions chunks as they arrive, or the whole
stream → one JSON answer for an agent that did not ask to stream."""

from __future__ import annotations

import json

from proxy.logs import redact
from proxy.providers.base import Incoming, ResponseTransformer
from proxy.providers.chatgpt.aggregate import aggregate_responses_stream, responses_to_chat_completion
from proxy.providers.chatgpt.chat_request import chat_include_usage
from proxy.providers.chatgpt.chat_stream import DONE_FRAME, ResponsesToChatStream, encode_chunk
from proxy.providers.chatgpt.events import CodexResponseError
from proxy.wire.sse import SSEEvent

__all__ = ["AggregateTransformer", "ChatStreamTransformer"]


def _error_body(exc: CodexResponseError) -> bytes:
    return json.dumps(
        {"error": {"message": redact(exc.message), "type": "server_error", "param": None, "code": exc.code}}
    ).encode()


class ChatStreamTransformer(ResponseTransformer):
    """Responses SSE → Chat Completions chunks, as they arrive."""

    aggregate = False
    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, incoming: Incoming) -> None:
        body = incoming.json if isinstance(incoming.json, dict) else {}
        self._stream = ResponsesToChatStream(
            model=str(body.get("model") or ""), include_usage=chat_include_usage(body)
        )
        self.failed: CodexResponseError | None = None

    def feed(self, event: SSEEvent) -> bytes:
        if self.failed is not None:
            return b""
        try:
            return b"".join(encode_chunk(chunk) for chunk in self._stream.feed(event))
        except CodexResponseError as exc:
            self.failed = exc
            return b"data: " + _error_body(exc) + b"\n\n"

    def finish(self) -> bytes:
        return DONE_FRAME if self._stream.finished and self.failed is None else b""

    def result(self) -> tuple[int, bytes]:
        raise NotImplementedError


class AggregateTransformer(ResponseTransformer):
    """The whole SSE stream → one JSON response (Responses object, or a chat completion)."""

    aggregate = True
    content_type = "application/json"

    def __init__(self, incoming: Incoming) -> None:
        self._chat = incoming.protocol == "openai-chat"
        body = incoming.json if isinstance(incoming.json, dict) else {}
        self._model = body.get("model") if isinstance(body.get("model"), str) else None
        self._events: list[SSEEvent] = []

    def feed(self, event: SSEEvent) -> bytes:
        self._events.append(event)
        return b""

    def finish(self) -> bytes:
        return b""

    def result(self) -> tuple[int, bytes]:
        try:
            response = aggregate_responses_stream(self._events)
        except CodexResponseError as exc:
            return (400 if exc.code == "context_length_exceeded" else 502), _error_body(exc)
        if self._chat:
            return 200, json.dumps(responses_to_chat_completion(response, model=self._model)).encode()
        return 200, json.dumps(response).encode()
