"""A fake OpenAI API: /v1/responses (also at the Codex path), /v1/chat/completions, /v1/models.

`GET /v1/responses` upgrades to the Responses API's WebSocket mode (`sockets`, tests/fakes/websocket.py).
The Responses route also answers at `/backend-api/codex/responses`, so a ChatGPT-backend provider can point its
base URL at `<fake>/backend-api/codex`. Codex quota headers (`x-codex-*`) and the Codex 429 body
(`usage_limit_reached`) are scripted with `Behavior(headers=..., body=...)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.fakes.anthropic import estimate_tokens
from tests.fakes.server import (
    Behavior,
    Exchange,
    FakeServer,
    RecordedRequest,
    Route,
    deep_merge,
    split_text,
)
from tests.fakes.websocket import SocketConnection, Sockets, SocketTurn

if TYPE_CHECKING:
    from tests.fakes.server import _Handler

__all__ = ["OPENAI_MODELS", "FakeOpenAI", "openai_duration", "openai_ratelimit_headers"]

OPENAI_MODELS = ("gpt-5", "gpt-5-codex", "gpt-4.1-mini")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
    503: "server_is_overloaded",
}


def openai_duration(seconds: float) -> str:
    """OpenAI's reset duration format: "6m0s", "1s", "1.5s", "120ms", "1h2m3s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return text


def openai_ratelimit_headers(
    *,
    requests_limit: int = 500,
    requests_remaining: int = 499,
    requests_reset: float = 0.12,
    tokens_limit: int = 200_000,
    tokens_remaining: int = 199_000,
    tokens_reset: float = 6.0,
) -> dict[str, str]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; resets (seconds) become durations like "6m0s"."""
    return {
        "x-ratelimit-limit-requests": str(requests_limit),
        "x-ratelimit-remaining-requests": str(requests_remaining),
        "x-ratelimit-reset-requests": openai_duration(requests_reset),
        "x-ratelimit-limit-tokens": str(tokens_limit),
        "x-ratelimit-remaining-tokens": str(tokens_remaining),
        "x-ratelimit-reset-tokens": openai_duration(tokens_reset),
    }


def _with_total(
    usage: dict[str, Any], override: Mapping[str, Any] | None, prompt: str, completion: str
) -> dict[str, Any]:
    if not override or "total_tokens" not in override:
        usage["total_tokens"] = usage[prompt] + usage[completion]
    return usage


class FakeOpenAI(FakeServer):
    """OpenAI's API shapes. The key is the `Authorization: Bearer` token."""

    request_id_header = "x-request-id"
    auth_error_type = "invalid_api_key"
    thread_name = "fake-openai"

    def __init__(
        self,
        *,
        default: Behavior | None = None,
        valid_keys: Iterable[str] | None = None,
        port: int = 0,
        keep_requests: int | None = None,
        models: Iterable[str] = OPENAI_MODELS,
    ) -> None:
        super().__init__(default=default, valid_keys=valid_keys, port=port, keep_requests=keep_requests)
        self.models = tuple(models)
        #: The Responses API's WebSocket mode (GET /v1/responses upgraded): tests/fakes/websocket.py.
        self.sockets = Sockets(self, {"/v1/responses": self._responses}, preamble=self.socket_preamble)

    def upgrade(self, handler: _Handler) -> bool:
        parts = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        probe = RecordedRequest("GET", parts.path, {}, headers, b"", None, "")
        return self.sockets.accept(handler, parts.path, headers, self.socket_key_ok(probe))

    def socket_key_ok(self, request: RecordedRequest) -> bool:
        return self.valid_keys is None or self.api_key(request) in self.valid_keys

    def socket_preamble(
        self, turn: SocketTurn, connection: SocketConnection
    ) -> tuple[list[dict[str, Any]], tuple[int, Any] | None]:
        """Frames before a turn's events, or (status, error body) to refuse the turn instead."""
        return [], None

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/backend-api/codex/responses"): self._responses,
            ("POST", "/v1/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
        }

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": error_type, "code": error_type, "param": None}}

    def default_error_type(self, status: int) -> str:
        return _ERROR_TYPES.get(status, "server_error")

    def api_key(self, request: RecordedRequest) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def _models(self, ex: Exchange) -> None:
        data = [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
            for model in self.models
        ]
        ex.send_json({"object": "list", "data": data})

    # -- /v1/responses --------------------------------------------------------------------------------------

    def _responses(self, ex: Exchange) -> None:
        b = ex.behavior
        usage = _with_total(
            deep_merge(
                {
                    "input_tokens": estimate_tokens(ex.request.body),
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": max(1, b.chunks),
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
                b.usage,
            ),
            b.usage,
            "input_tokens",
            "output_tokens",
        )
        base = {
            "id": f"resp_fake_{ex.number}",
            "object": "response",
            "created_at": int(time.time()),
            "model": ex.body.get("model", OPENAI_MODELS[0]),
            "error": None,
            "incomplete_details": None,
        }

        def response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {**base, "status": status, "output": output, "usage": None, **extra}

        part = {"type": "output_text", "text": b.text, "annotations": []}
        if b.tool_call is not None:
            full_text = b.tool_call.arguments_json()
            item: dict[str, Any] = {
                "id": f"fc_fake_{ex.number}",
                "type": "function_call",
                "status": "in_progress",
                "call_id": f"call_fake_{ex.number}",
                "name": b.tool_call.name,
                "arguments": "",
            }
            done_item = {**item, "status": "completed", "arguments": full_text}
        else:
            full_text = b.text
            item = {
                "id": f"msg_fake_{ex.number}",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            done_item = {**item, "status": "completed", "content": [part]}

        if not ex.request.stream:
            if b.drop_after_events is not None:
                ex.drop()
            ex.send_json(response("completed", [done_item], usage=usage))
            return

        stream = ex.open_stream()
        sequence = iter(range(1_000_000))

        def emit(event_type: str, **fields: Any) -> None:
            stream.event(event_type, {"type": event_type, "sequence_number": next(sequence), **fields})

        def fail() -> None:
            code = b.in_stream_error or "server_error"
            message = b.error_message or f"Fake in-stream {code}"
            if b.in_stream_error_raw:
                emit("error", code=code, message=message, param=None)
            else:
                emit(
                    "response.failed",
                    response=response("failed", [], error={"code": code, "message": message}),
                )
            stream.close()

        emit("response.created", response=response("in_progress", []))
        if b.in_stream_error and not b.in_stream_error_after_content:
            fail()
            return
        emit("response.in_progress", response=response("in_progress", []))
        emit("response.output_item.added", output_index=0, item=item)
        where = {"item_id": item["id"], "output_index": 0}
        if b.tool_call is None:
            emit("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
            where["content_index"] = 0
        pieces = split_text(full_text, b.chunks)
        error_at = max(1, len(pieces) // 2) if b.in_stream_error else None
        delta_type = "response.function_call_arguments.delta" if b.tool_call else "response.output_text.delta"
        for i, piece in enumerate(pieces, start=1):
            if b.content_gate is not None:
                b.content_gate(i)
            emit(delta_type, **where, delta=piece)
            if i == error_at:
                fail()
                return
        if b.tool_call is not None:
            emit("response.function_call_arguments.done", **where, arguments=full_text)
        else:
            emit("response.output_text.done", **where, text=full_text)
            del where["content_index"]
            emit("response.content_part.done", **where, content_index=0, part=part)
        emit("response.output_item.done", output_index=0, item=done_item)
        emit("response.completed", response=response("completed", [done_item], usage=usage))
        stream.close()

    # -- /v1/chat/completions -------------------------------------------------------------------------------

    def _chat(self, ex: Exchange) -> None:
        b = ex.behavior
        usage = _with_total(
            deep_merge(
                {
                    "prompt_tokens": estimate_tokens(ex.request.body),
                    "completion_tokens": max(1, b.chunks),
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
                b.usage,
            ),
            b.usage,
            "prompt_tokens",
            "completion_tokens",
        )
        base = {
            "id": f"chatcmpl-fake-{ex.number}",
            "created": int(time.time()),
            "model": ex.body.get("model", OPENAI_MODELS[0]),
        }
        call_id = f"call_fake_{ex.number}"
        finish_reason = "tool_calls" if b.tool_call else "stop"

        if not ex.request.stream:
            if b.drop_after_events is not None:
                ex.drop()
            message: dict[str, Any] = {"role": "assistant", "content": b.text, "refusal": None}
            if b.tool_call is not None:
                function = {"name": b.tool_call.name, "arguments": b.tool_call.arguments_json()}
                message.update(
                    content=None, tool_calls=[{"id": call_id, "type": "function", "function": function}]
                )
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ex.send_json({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return

        options = ex.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        stream = ex.open_stream()

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> None:
            choices = (
                []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            )
            payload = {**base, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:
                payload["usage"] = None
            stream.event(None, {**payload, **extra})

        def fail() -> None:
            code = b.in_stream_error or "server_error"
            stream.event(None, self.error_body(200, code, b.error_message or f"Fake in-stream {code}"))
            stream.close()

        if b.tool_call is not None:
            call = {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": b.tool_call.name, "arguments": ""},
            }
            chunk({"role": "assistant", "content": None, "tool_calls": [call]})
            deltas: list[dict[str, Any]] = [
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                for piece in split_text(b.tool_call.arguments_json(), b.chunks)
            ]
        else:
            chunk({"role": "assistant", "content": ""})
            deltas = [{"content": piece} for piece in split_text(b.text, b.chunks)]
        if b.in_stream_error and not b.in_stream_error_after_content:
            fail()
            return
        error_at = max(1, len(deltas) // 2) if b.in_stream_error else None
        for i, delta in enumerate(deltas, start=1):
            if b.content_gate is not None:
                b.content_gate(i)
            chunk(delta)
            if i == error_at:
                fail()
                return
        chunk({}, finish_reason)
        if include_usage:
            chunk(None, usage=usage)
        stream.event(None, "[DONE]")
        stream.close()
