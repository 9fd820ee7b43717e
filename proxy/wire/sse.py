"""Incremental Server-Sent Events framing.

The gateway passes upstream bytes to the agent exactly as they arrive; this parser watches the same bytes on the
side to see event boundaries (for the pre-content hold) and event payloads (for usage and in-stream errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SSEEvent", "SSEParser"]


_UNPARSED: Any = object()


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str
    _parsed: Any = field(default=_UNPARSED, compare=False, repr=False)

    def json(self) -> Any:
        """The data as JSON, or None when it is not JSON (e.g. ``[DONE]``). Parsed once."""
        if self._parsed is _UNPARSED:
            try:
                value = json.loads(self.data)
            except ValueError:
                value = None
            object.__setattr__(self, "_parsed", value)
        return self._parsed


class SSEParser:
    """Feed bytes, get complete events. Handles LF and CRLF line endings and events split across chunks."""

    def __init__(self, max_buffer: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max_buffer = max_buffer
        self._skipping = False
        self._cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Complete events in ``chunk`` (plus what was buffered). Only the new bytes are scanned for a boundary."""
        if self._cr:
            chunk = b"\r" + chunk
        self._cr = chunk.endswith(b"\r")  # its \n may come in the next chunk
        if self._cr:
            chunk = chunk[:-1]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        previous = len(self._buffer)
        data = self._buffer + chunk
        events: list[SSEEvent] = []
        start = 0
        search = max(0, previous - 1)  # a boundary can straddle the old and new bytes
        while True:
            end = data.find(b"\n\n", search)
            if end < 0:
                break
            block = data[start:end]
            start = search = end + 2
            if self._skipping:
                self._skipping = False  # the rest of an oversized event: not an event of its own
                continue
            event = self._parse_block(block)
            if event is not None:
                events.append(event)
        self._buffer = data[start:]
        if len(self._buffer) > self._max_buffer:
            # An event larger than any real one: drop it, and the rest of it when its end arrives.
            self._buffer = b""
            self._skipping = True
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
