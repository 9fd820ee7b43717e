"""A tiny recording HTTP server that answers just enough of the Anthropic and OpenAI APIs for a real agent to finish.

Used to observe what agents send (see docs/agents-observed.md). Answers any path, with or without a `/v1` prefix:

- `HEAD /` and any other HEAD: 200, empty
- `GET …/models`: a model list in both shapes (OpenAI's `object/data`, Anthropic's `data/has_more`)
- `POST …/messages/count_tokens`: `{"input_tokens": 10}`
- `POST …/messages`: an Anthropic message (SSE when `"stream": true`)
- `POST …/responses`: an OpenAI Responses answer (SSE when `"stream": true`)
- `POST …/chat/completions`: an OpenAI Chat Completions answer (SSE when `"stream": true`)
- anything else: 404

Every request is recorded with its raw headers (order and case kept). The fakes in tests/fakes are the real test
doubles; this one only exists to see everything, including paths the fakes do not route.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.http_base import LocalHTTPServer, read_request_body

__all__ = ["Recorded", "Recorder"]

DEFAULT_REPLY = "Hello from the recorder"


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # path + query as sent
    path: str
    query: dict[str, str]
    raw_headers: list[tuple[str, str]]  # as sent: order and case kept
    body: bytes
    json: Any | None
    at: float

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased names; repeated headers joined with ", "."""
        out: dict[str, str] = {}
        for name, value in self.raw_headers:
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    @property
    def stream(self) -> bool | None:
        return self.json.get("stream") if isinstance(self.json, dict) else None


class Recorder:
    """`with Recorder(reply="hi") as rec: ... rec.url, rec.requests`."""

    def __init__(self, reply: str = DEFAULT_REPLY) -> None:
        self.reply = reply
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.recorder = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="recorder", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _add(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)


class _Server(LocalHTTPServer):
    recorder: Recorder


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        body = read_request_body(self)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(
            method=self.command,
            target=self.path,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            raw_headers=list(self.headers.items()),
            body=body,
            json=parsed,
            at=time.time(),
        )
        self.server.recorder._add(rec)
        reply = self.server.recorder.reply
        req = parsed if isinstance(parsed, dict) else {}
        stream = req.get("stream") is True
        path = parts.path.rstrip("/")
        if self.command == "HEAD":
            return self._send(200, "text/plain", b"")
        if self.command == "GET" and path.endswith("/models"):
            models = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini"]
            data = [
                {
                    "id": m,
                    "object": "model",
                    "type": "model",
                    "display_name": m,
                    "created": 1_700_000_000,
                    "owned_by": "recorder",
                    "created_at": "2025-09-29T00:00:00Z",
                }
                for m in models
            ]
            payload = {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": models[0],
                "last_id": models[-1],
            }
            return self._json(payload)
        if self.command == "POST" and path.endswith("/messages/count_tokens"):
            return self._json({"input_tokens": 10})
        if self.command == "POST" and path.endswith("/messages"):
            return self._anthropic(req, reply, stream)
        if self.command == "POST" and path.endswith("/responses"):
            return self._responses(req, reply, stream)
        if self.command == "POST" and path.endswith("/chat/completions"):
            return self._chat(req, reply, stream)
        return self._json(
            {"error": {"type": "not_found_error", "message": f"no route {self.command} {path}"}}, 404
        )

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", "req_recorder")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _anthropic(self, req: dict[str, Any], reply: str, stream: bool) -> None:
        usage = {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        msg = {
            "id": "msg_recorder",
            "type": "message",
            "role": "assistant",
            "model": req.get("model", "claude"),
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not stream:
            return self._json(msg)
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **msg,
                        "content": [],
                        "stop_reason": None,
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": reply}},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._send(200, "text/event-stream", _sse(events))

    def _responses(self, req: dict[str, Any], reply: str, stream: bool) -> None:
        part = {"type": "output_text", "text": reply, "annotations": []}
        item = {
            "id": "msg_recorder",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
        base = {
            "id": "resp_recorder",
            "object": "response",
            "created_at": int(time.time()),
            "model": req.get("model", "gpt"),
            "error": None,
            "incomplete_details": None,
        }
        done = {**base, "status": "completed", "output": [item], "usage": usage}
        if not stream:
            return self._json(done)
        pending = {**base, "status": "in_progress", "output": [], "usage": None}
        seq = iter(range(100))
        where = {"item_id": "msg_recorder", "output_index": 0}

        def ev(kind: str, **fields: Any) -> tuple[str, Any]:
            return kind, {"type": kind, "sequence_number": next(seq), **fields}

        events = [
            ev("response.created", response=pending),
            ev("response.in_progress", response=pending),
            ev(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            ),
            ev("response.content_part.added", **where, content_index=0, part={**part, "text": ""}),
            ev("response.output_text.delta", **where, content_index=0, delta=reply),
            ev("response.output_text.done", **where, content_index=0, text=reply),
            ev("response.content_part.done", **where, content_index=0, part=part),
            ev("response.output_item.done", output_index=0, item=item),
            ev("response.completed", response=done),
        ]
        self._send(200, "text/event-stream", _sse(list(events)))

    def _chat(self, req: dict[str, Any], reply: str, stream: bool) -> None:
        base = {"id": "chatcmpl-recorder", "created": int(time.time()), "model": req.get("model", "gpt")}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            return self._json({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, Any]:
            return None, {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        events: list[tuple[str | None, Any]] = [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": reply}),
            chunk({}, "stop"),
            (None, {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}),
            (None, "[DONE]"),
        ]
        self._send(200, "text/event-stream", _sse(events))
