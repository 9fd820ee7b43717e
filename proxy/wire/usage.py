"""Token usage from upstream responses, per protocol.

Three wire protocols carry usage differently:

- ``anthropic`` (Messages API): ``message_start.message.usage`` holds the input side (and a first output count);
  ``message_delta.usage`` holds the *cumulative* output count and, on newer responses, may restate the input side.
  A non-streaming body carries the same ``usage`` object at the top level.
- ``openai-responses`` (Responses API, ChatGPT Codex backend): the terminal event ``response.completed`` /
  ``response.incomplete`` / ``response.failed`` carries ``response.usage``; a non-streaming body is the response.
- ``openai-chat`` (Chat Completions): the last chunk carries ``usage`` (when the client asked for it); a
  non-streaming body carries ``usage`` at the top level.

:class:`Usage` always uses Anthropic's meaning of ``input_tokens``: *uncached* input only. OpenAI reports
``input_tokens`` / ``prompt_tokens`` including the cached part, so the cached count is subtracted here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["Protocol", "Usage", "UsageAccumulator"]

Protocol = Literal["anthropic", "openai-responses", "openai-chat"]

_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_WITH_MODEL = _RESPONSES_TERMINAL | {"response.created", "response.in_progress"}


@dataclass
class Usage:
    """Token counts of one request. ``input_tokens`` is uncached input only.

    ``cache_write_tokens`` is every cache write; ``cache_write_5m_tokens`` and ``cache_write_1h_tokens`` split it by
    TTL when the upstream says so (Anthropic's ``cache_creation``). ``reasoning_tokens`` is part of
    ``output_tokens`` (OpenAI's ``reasoning_tokens``), not in addition to it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input(self) -> int:
        """All input the model read: uncached, cache reads and cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def from_anthropic(cls, raw: Mapping[str, Any]) -> Usage:
        """Usage from an Anthropic ``usage`` object."""
        usage = cls()
        _apply_anthropic(usage, raw)
        return usage

    @classmethod
    def from_openai(cls, raw: Mapping[str, Any]) -> Usage:
        """Usage from an OpenAI ``usage`` object (Responses or Chat Completions field names)."""
        prompt = _opt_int(raw.get("input_tokens"))
        if prompt is None:
            prompt = _opt_int(raw.get("prompt_tokens"))
        completion = _opt_int(raw.get("output_tokens"))
        if completion is None:
            completion = _opt_int(raw.get("completion_tokens"))
        input_details = _mapping(raw.get("input_tokens_details")) or _mapping(
            raw.get("prompt_tokens_details")
        )
        output_details = _mapping(raw.get("output_tokens_details")) or _mapping(
            raw.get("completion_tokens_details")
        )
        cached = _opt_int(input_details.get("cached_tokens")) or 0
        prompt = prompt or 0
        cached = min(cached, prompt) if prompt else cached
        return cls(
            input_tokens=max(prompt - cached, 0),
            output_tokens=completion or 0,
            cache_read_tokens=cached,
            reasoning_tokens=_opt_int(output_details.get("reasoning_tokens")) or 0,
        )


class UsageAccumulator:
    """Collects usage and model from one response, streamed or not.

    Feed it every parsed SSE event (:meth:`feed_event`) or the parsed JSON body (:meth:`feed_body`). Unknown events,
    missing fields and ``null`` values are ignored; it never raises on upstream data.
    """

    def __init__(self, protocol: Protocol) -> None:
        if protocol not in get_args(Protocol):
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {get_args(Protocol)}")
        self.protocol: Protocol = protocol
        self._usage: Usage | None = None
        self._model: str | None = None

    @property
    def usage(self) -> Usage | None:
        """The usage seen so far, or None when the response reported none."""
        return self._usage

    @property
    def model(self) -> str | None:
        """The model the response says it used (it may differ from the one requested)."""
        return self._model

    def feed_event(self, event: str | None, data: Mapping[str, Any]) -> None:
        """Observe one parsed SSE event. ``event`` is the SSE ``event:`` field; ``data.type`` wins when present."""
        if not isinstance(data, Mapping):
            return
        kind = data.get("type")
        if not isinstance(kind, str):
            kind = event
        if self.protocol == "anthropic":
            self._anthropic_event(kind, data)
        elif self.protocol == "openai-responses":
            self._responses_event(kind, data)
        else:
            self._chat_object(data)

    def feed_body(self, obj: Mapping[str, Any]) -> None:
        """Observe a complete (non-streaming) JSON response body."""
        if not isinstance(obj, Mapping):
            return
        if self.protocol == "anthropic":
            self._set_model(obj.get("model"))
            raw = _mapping(obj.get("usage"))
            if raw:
                _apply_anthropic(self._ensure_usage(), raw)
        elif self.protocol == "openai-responses":
            response = _mapping(obj.get("response")) or obj
            self._responses_object(response, terminal=True)
        else:
            self._chat_object(obj)

    def _ensure_usage(self) -> Usage:
        if self._usage is None:
            self._usage = Usage()
        return self._usage

    def _set_model(self, value: object) -> None:
        if isinstance(value, str) and value:
            self._model = value

    def _anthropic_event(self, kind: str | None, data: Mapping[str, Any]) -> None:
        if kind == "message_start":
            message = _mapping(data.get("message"))
            self._set_model(message.get("model"))
            raw = _mapping(message.get("usage"))
            if raw:
                _apply_anthropic(self._ensure_usage(), raw)
        elif kind == "message_delta":
            raw = _mapping(data.get("usage"))
            if raw:
                _apply_anthropic(self._ensure_usage(), raw)

    def _responses_event(self, kind: str | None, data: Mapping[str, Any]) -> None:
        if kind in _RESPONSES_WITH_MODEL:
            self._responses_object(_mapping(data.get("response")), terminal=kind in _RESPONSES_TERMINAL)

    def _responses_object(self, response: Mapping[str, Any], *, terminal: bool) -> None:
        self._set_model(response.get("model"))
        if not terminal:
            return
        raw = _mapping(response.get("usage"))
        if raw:
            self._usage = Usage.from_openai(raw)

    def _chat_object(self, data: Mapping[str, Any]) -> None:
        self._set_model(data.get("model"))
        raw = _mapping(data.get("usage"))
        if raw:
            self._usage = Usage.from_openai(raw)


def _apply_anthropic(usage: Usage, raw: Mapping[str, Any]) -> None:
    """Overwrite the fields ``raw`` reports; Anthropic's counts are cumulative, never increments."""
    if (value := _opt_int(raw.get("input_tokens"))) is not None:
        usage.input_tokens = value
    if (value := _opt_int(raw.get("output_tokens"))) is not None:
        usage.output_tokens = value
    if (value := _opt_int(raw.get("cache_read_input_tokens"))) is not None:
        usage.cache_read_tokens = value
    creation = _mapping(raw.get("cache_creation"))
    if (value := _opt_int(creation.get("ephemeral_5m_input_tokens"))) is not None:
        usage.cache_write_5m_tokens = value
    if (value := _opt_int(creation.get("ephemeral_1h_input_tokens"))) is not None:
        usage.cache_write_1h_tokens = value
    if (value := _opt_int(raw.get("cache_creation_input_tokens"))) is not None:
        usage.cache_write_tokens = value
    usage.cache_write_tokens = max(
        usage.cache_write_tokens, usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
    )


def _opt_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
