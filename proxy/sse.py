"""Incremental Server-Sent Events framing.

The gateway passes upstream bytes to the agent exactly as they arrive; this parser watches the same bytes on the
side to see event boundaries (for the pre-content hold) and event payloads (for usage and in-stream errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEEvent", "SSEParser"]


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str

    def json(self) -> Any:
        """The data as JSON, or None when it is not JSON (e.g. ``[DONE]``)."""
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class SSEParser:
    """Feed bytes, get complete events. Handles LF and CRLF line endings and events split across chunks."""

    def __init__(self, max_buffer: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max_buffer = max_buffer

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        data = self._buffer + chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = data.find(b"\n\n", start)
            if end < 0:
                break
            block = data[start:end]
            start = end + 2
            event = self._parse_block(block)
            if event is not None:
                events.append(event)
        self._buffer = data[start:]
        if len(self._buffer) > self._max_buffer:
            # A stream that never frames an event is not SSE; stop accumulating rather than grow without bound.
            self._buffer = b""
        return events

    @staticmethod
    def _parse_block(block: bytes) -> SSEEvent | None:
        name: str | None = None
        data_lines: list[str] = []
        for raw in block.split(b"\n"):
            line = raw.decode("utf-8", errors="replace")
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                name = value
            elif field == "data":
                data_lines.append(value)
        if name is None and not data_lines:
            return None
        return SSEEvent(event=name, data="\n".join(data_lines))
