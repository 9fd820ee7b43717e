"""What Headway keeps of recent Responses turns, so a turn that names ``previous_response_id`` can be sent whole.

The Codex backend stores nothing (``store:false``): a ``previous_response_id`` resolves there only on the WebSocket
that produced it, and over HTTP never. OpenAI's API resolves its stored responses, but only on the account that
stored them. Headway therefore resolves the id itself wherever it can: it keeps, per response id, the full input of
that turn followed by the turn's output items, and a later turn ``{previous_response_id: X, input: [new…]}`` becomes
``{input: [everything up to X…, new…]}`` before routing — every account, transport and fallback then sees the whole
conversation, and the upstream WebSocket transport sends only what is new on its own connection.

Two books, with the upstream's own lifetimes:

- one per agent WebSocket (:class:`ConversationBook` held by the socket's handler, dropped when it closes): every
  turn is kept, ``store`` or not, like the backend's connection-scoped cache;
- one for HTTP, owned by the gateway's app: only turns whose request did not say ``store:false`` (an agent that
  said so does not expect to reference the response again).

Both are bounded by entries and by the bytes of the request bodies they keep alive; the oldest go first. An id
that is not (or no longer) known is left in the request: the ChatGPT route then answers a 400 naming it
(:func:`proxy.providers.chatgpt.request.to_codex_request`), OpenAI's API may still know it.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response, StreamingResponse

from proxy.wire.sse import SSEEvent, SSEParser

__all__ = ["ConversationBook", "ResponseTap", "input_items", "kept"]

_TAPPED = frozenset({"response.created", "response.output_item.done", "response.completed"})


def input_items(raw: Any) -> list[Any]:
    """A request's ``input`` as a list of items (a bare string is one user message)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if isinstance(raw, list):
        return list(raw)
    return [raw]


@dataclass
class _Entry:
    items: tuple[Any, ...]
    size: int
    at: float


class ConversationBook:
    """Full conversations by response id, most recent last; bounded by ``max_entries`` and ``max_bytes``."""

    def __init__(
        self,
        max_entries: int = 64,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 6 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._clock = clock
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, response_id: object) -> bool:
        return isinstance(response_id, str) and self._get(response_id) is not None

    def items(self, response_id: str) -> list[Any] | None:
        """The whole conversation up to and including ``response_id``'s output, or None when not known."""
        entry = self._get(response_id)
        return None if entry is None else list(entry.items)

    def expand(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """``body`` with its ``previous_response_id`` resolved into the full input; None when the id is not known.

        ``body`` is not changed. A body without the id is returned as it is.
        """
        previous = body.get("previous_response_id")
        if previous is None:
            return body
        if not isinstance(previous, str):
            return None
        kept = self._get(previous)
        if kept is None:
            return None
        out = {k: v for k, v in body.items() if k != "previous_response_id"}
        out["input"] = [*kept.items, *input_items(body.get("input"))]
        return out

    def remember(self, response_id: str, conversation: list[Any], size: int) -> None:
        """Keep ``conversation`` (the turn's full input plus its output) under ``response_id``; ``size`` is what it
        costs (the request body's bytes, about)."""
        old = self._entries.pop(response_id, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[response_id] = _Entry(tuple(conversation), size, self._clock())
        self._bytes += size
        while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size

    def _get(self, response_id: str) -> _Entry | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if self._clock() - entry.at > self._ttl:
            self._bytes -= entry.size
            del self._entries[response_id]
            return None
        self._entries.move_to_end(response_id)
        return entry


class ResponseTap:
    """Watches one Responses answer (SSE events or a JSON body) for its id and output items."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.completed = False
        self._output: list[Any] = []
        self._final: list[Any] | None = None

    def feed_event(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self._output.append(data["item"])
        elif kind in ("response.created", "response.completed"):
            response = data.get("response")
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                self.response_id = response["id"]
            if kind == "response.completed":
                self.completed = True
                output = response.get("output") if isinstance(response, dict) else None
                if isinstance(output, list) and output:
                    self._final = output

    def feed_sse(self, event: SSEEvent) -> None:
        if event.event is not None and event.event not in _TAPPED:
            return
        self.feed_event(event.json())

    def feed_body(self, body: bytes) -> None:
        """A whole (non-streamed) Responses answer."""
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("status") == "completed" and isinstance(data.get("id"), str):
            self.response_id = data["id"]
            self.completed = True
            output = data.get("output")
            self._final = output if isinstance(output, list) else []

    def output(self) -> list[Any]:
        """The answer's output items (the completed response's own list when it carries one)."""
        return list(self._final if self._final is not None else self._output)


def kept(answer: Response, book: ConversationBook, request: dict[str, Any], size: int) -> Response:
    """``answer`` to a Responses request, watched so that its id can be named as ``previous_response_id`` later."""
    tap = ResponseTap()
    asked = input_items(request.get("input"))

    def keep() -> None:
        if tap.completed and tap.response_id:
            book.remember(tap.response_id, [*asked, *tap.output()], size)

    if not isinstance(answer, StreamingResponse):
        if 200 <= answer.status_code < 300:
            tap.feed_body(bytes(answer.body))
            keep()
        return answer
    chunks = answer.body_iterator

    async def watched() -> AsyncIterator[bytes | str | memoryview]:
        parser = SSEParser()
        try:
            async for chunk in chunks:
                yield chunk
                for event in parser.feed(chunk.encode() if isinstance(chunk, str) else bytes(chunk)):
                    tap.feed_sse(event)
            keep()
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()

    answer.body_iterator = watched()
    return answer
