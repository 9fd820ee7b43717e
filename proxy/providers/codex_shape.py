"""Request and response shapes for ChatGPT accounts on the Codex backend (pure, no I/O).

The backend (``POST {base}/backend-api/codex/responses``) speaks the OpenAI Responses API with a few rules of its own
(``docs: ../shared/reference/chatgpt-codex.md``). This module translates:

- an agent's Responses request → the body the backend accepts (:func:`to_codex_request`);
- a Chat Completions request → a Responses request (:func:`chat_to_responses`), so chat-only agents can use it;
- the backend's Responses SSE events → Chat Completions stream chunks (:class:`ResponsesToChatStream`), or → one
  final Responses object (:func:`aggregate_responses_stream`) → one chat completion
  (:func:`responses_to_chat_completion`) for agents that did not ask to stream (the backend always streams);
- a 429 body → :class:`UsageLimit` (:func:`parse_usage_limit_error`).

SSE events arrive here already parsed: ``(event_name, data)`` with ``data`` the JSON object. The event's ``type`` in
``data`` wins over the SSE ``event:`` name when both are present.

Decisions for :func:`to_codex_request` (the reference lists what the backend expects and what it rejects; where it
is silent we follow the Codex CLI, which is what the backend is built for):

- ``instructions``: the agent's non-empty string is kept. Otherwise the leading run of text-only ``system`` /
  ``developer`` messages in ``input`` is lifted into ``instructions`` (joined by a blank line) — the Responses API
  treats both the same way, and OpenCode sends its system prompt as such a message. With nothing to lift,
  :data:`DEFAULT_INSTRUCTIONS` is used, because the backend requires instructions.
- Removed: the reference's list (:data:`REMOVED_FIELDS`), plus ``metadata`` and ``background`` (both describe a stored
  response; ``store`` is always false here and the Codex CLI never sends them), plus ``service_tier`` when it is a
  no-op value (``auto`` / ``default`` — the Codex CLI only ever sends a non-default tier such as ``priority``).
- Kept: ``previous_response_id`` and ``conversation``. They cannot resolve with ``store:false`` over HTTP, but dropping
  them would silently cut the conversation short; the backend's own error is the honest outcome.
- ``input``: because ``store`` is false nothing can be looked up by id, so ``item_reference`` items are dropped, the
  ``id`` of every item is removed (the Codex CLI never serialises item ids), and ``reasoning`` items without
  ``encrypted_content`` are dropped (without the encrypted payload they are only a pointer to stored state).
- ``reasoning`` is kept exactly as sent; no ``summary`` is added (an agent that wants summaries asks for them).
- ``include`` always contains ``reasoning.encrypted_content`` (merged, order kept, no duplicates): with
  ``store:false`` it is the only way reasoning carries over to the next turn.
- Defaults when absent: ``tools: []``, ``tool_choice: "auto"``, ``parallel_tool_calls: false``.
- Cache stabilizer: see :func:`to_codex_request`; it is also skipped when ``tool_choice`` is ``"required"``, where an
  extra native tool could satisfy the obligation instead of the agent's own tools.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from ..retry_after import as_number

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DONE_FRAME",
    "ENCRYPTED_REASONING_INCLUDE",
    "REMOVED_FIELDS",
    "STABILIZER_TOOL",
    "ChatTranslationError",
    "CodexResponseError",
    "ResponsesToChatStream",
    "SseEvent",
    "UsageLimit",
    "aggregate_responses_stream",
    "chat_include_usage",
    "chat_to_responses",
    "chat_usage",
    "encode_chunk",
    "parse_usage_limit_error",
    "responses_to_chat_completion",
    "to_codex_request",
]

SseEvent = tuple[str | None, Mapping[str, Any]]
"""One parsed SSE event: the ``event:`` name (or None) and the JSON ``data`` object."""

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
ENCRYPTED_REASONING_INCLUDE = "reasoning.encrypted_content"
STABILIZER_TOOL: Mapping[str, Any] = MappingProxyType({"type": "web_search", "external_web_access": False})
DONE_FRAME = b"data: [DONE]\n\n"

REMOVED_FIELDS = frozenset(
    {
        # The reference: fields the backend rejects.
        "max_output_tokens",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "truncation",
        "user",
        "safety_identifier",
        "prompt_cache_retention",
        "context_management",
        # Ours: they describe a stored response, and store is always false here.
        "metadata",
        "background",
    }
)

# Tuples, not sets: membership tests on agent-supplied values must not fail on unhashable JSON (lists, objects).
_NOOP_SERVICE_TIERS = ("auto", "default")
_INSTRUCTION_ROLES = ("system", "developer")
_TEXT_PART_TYPES = ("input_text", "text", "output_text")


class ChatTranslationError(ValueError):
    """A Chat Completions request that cannot be expressed as a Responses request (render as HTTP 400)."""


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


@dataclass(frozen=True, slots=True)
class UsageLimit:
    """A ChatGPT account out of quota: exhausted until ``resets_at`` (unix seconds) when known."""

    kind: Literal["usage_limit_reached", "usage_not_included"]
    resets_at: float | None
    plan_type: str | None


# ---------------------------------------------------------------------------------------------------------------
# Responses request → Codex backend request


def to_codex_request(
    body: Mapping[str, Any], *, stabilize_cache: bool, session_id: str | None
) -> dict[str, Any]:
    """The Codex backend body for an agent's Responses request. Returns a new dict; ``body`` is not touched.

    ``session_id`` becomes ``prompt_cache_key`` when the agent sent none. With ``stabilize_cache``, a request whose
    tools are all ``function`` tools (at least one) gets one native ``web_search`` tool without web access appended,
    which keeps it on the backend's stable prompt-cache path; a request without tools never gets one.
    """
    source = copy.deepcopy(dict(body))
    input_items = _codex_input(source.pop("input", None))

    instructions = source.pop("instructions", None)
    if not isinstance(instructions, str) or not instructions:
        lifted, input_items = _lift_instructions(input_items)
        instructions = lifted or DEFAULT_INSTRUCTIONS

    tools = source.pop("tools", None)
    tools = list(tools) if isinstance(tools, list) else []
    tool_choice = source.pop("tool_choice", None) or "auto"
    if stabilize_cache and _wants_stabilizer(tools, tool_choice):
        tools.append(dict(STABILIZER_TOOL))

    include = source.pop("include", None)
    merged_include: list[Any] = []
    for entry in [*(include if isinstance(include, list) else []), ENCRYPTED_REASONING_INCLUDE]:
        if entry not in merged_include:
            merged_include.append(entry)

    out: dict[str, Any] = {}
    if "model" in source:
        out["model"] = source.pop("model")
    out["instructions"] = instructions
    out["input"] = input_items
    out["tools"] = tools
    out["tool_choice"] = tool_choice
    parallel = source.pop("parallel_tool_calls", None)
    out["parallel_tool_calls"] = parallel if isinstance(parallel, bool) else False
    if "reasoning" in source:
        out["reasoning"] = source.pop("reasoning")
    out["store"] = False
    out["stream"] = True
    out["include"] = merged_include
    cache_key = source.pop("prompt_cache_key", None) or session_id
    if cache_key:
        out["prompt_cache_key"] = cache_key
    if "text" in source:
        out["text"] = source.pop("text")
    if source.get("service_tier") is None or source.get("service_tier") in _NOOP_SERVICE_TIERS:
        source.pop("service_tier", None)

    for key, value in source.items():
        if key in REMOVED_FIELDS or key in out:
            continue
        out[key] = value
    return out


def _codex_input(raw: Any) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_user_text_message(raw)]
    if not isinstance(raw, list):
        return [raw]
    items: list[Any] = []
    for item in raw:
        if not isinstance(item, dict):
            items.append(item)
            continue
        kind = item.get("type")
        if kind == "item_reference":
            continue
        if kind == "reasoning" and not item.get("encrypted_content"):
            continue
        items.append({k: v for k, v in item.items() if k != "id"})
    return items


def _user_text_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _lift_instructions(items: list[Any]) -> tuple[str, list[Any]]:
    texts: list[str] = []
    taken = 0
    for item in items:
        text = _instruction_text(item)
        if text is None:
            break
        texts.append(text)
        taken += 1
    return "\n\n".join(t for t in texts if t), items[taken:]


def _instruction_text(item: Any) -> str | None:
    """The text of a text-only system/developer message item, else None."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        return None
    if item.get("role") not in _INSTRUCTION_ROLES:
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PART_TYPES:
            return None
        text = part.get("text")
        if not isinstance(text, str):
            return None
        parts.append(text)
    return "\n".join(parts)


def _wants_stabilizer(tools: list[Any], tool_choice: Any) -> bool:
    if not tools or tool_choice == "required":
        return False
    return all(isinstance(tool, dict) and tool.get("type") == "function" for tool in tools)


# ---------------------------------------------------------------------------------------------------------------
# Chat Completions request → Responses request

_CHAT_COPIED_FIELDS = (
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "metadata",
    "service_tier",
    "store",
)


def chat_to_responses(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses request equivalent to a Chat Completions request. Returns a new dict.

    System / developer messages before the first other message become ``instructions`` (joined by a blank line);
    later ones stay in place as ``developer`` messages. ``stop``, ``n`` = 1, ``logprobs`` and ``stream_options`` have
    no Responses counterpart and are dropped (``stream_options.include_usage`` is read with
    :func:`chat_include_usage`); ``n`` > 1 and unknown message roles or content parts raise
    :class:`ChatTranslationError`.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ChatTranslationError("'messages' must be a list")
    n = body.get("n")
    if n is not None and n != 1:
        raise ChatTranslationError("only n=1 is supported")

    instructions: list[str] = []
    input_items: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ChatTranslationError(f"messages[{position}] must be an object")
        role = message.get("role")
        if role in _INSTRUCTION_ROLES:
            system_text = _chat_text(message.get("content"), position)
            if not input_items:
                instructions.append(system_text)
            else:
                input_items.append(_message_item("developer", [{"type": "input_text", "text": system_text}]))
        elif role == "user":
            input_items.append(_message_item("user", _chat_user_parts(message.get("content"), position)))
        elif role == "assistant":
            input_items.extend(_chat_assistant_items(message, position))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise ChatTranslationError(f"messages[{position}] (tool) needs a tool_call_id")
            output = _chat_text(message.get("content"), position)
            input_items.append({"type": "function_call_output", "call_id": call_id, "output": output})
        else:
            raise ChatTranslationError(f"messages[{position}] has unsupported role {role!r}")

    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    instruction_text = "\n\n".join(t for t in instructions if t)
    if instruction_text:
        out["instructions"] = instruction_text
    out["input"] = input_items

    tools = body.get("tools")
    if tools is None and isinstance(body.get("functions"), list):
        tools = [{"type": "function", "function": f} for f in body["functions"]]
    if isinstance(tools, list):
        out["tools"] = [_chat_tool(tool, i) for i, tool in enumerate(tools)]
    tool_choice = body.get("tool_choice", body.get("function_call"))
    if tool_choice is not None:
        out["tool_choice"] = _chat_tool_choice(tool_choice)

    for key in _CHAT_COPIED_FIELDS:
        if key in body:
            out[key] = copy.deepcopy(body[key])
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        out["max_output_tokens"] = max_tokens
    effort = body.get("reasoning_effort")
    if effort is not None:
        out["reasoning"] = {"effort": effort}

    text_options: dict[str, Any] = {}
    text_format = _chat_response_format(body.get("response_format"))
    if text_format is not None:
        text_options["format"] = text_format
    if body.get("verbosity") is not None:
        text_options["verbosity"] = body["verbosity"]
    if text_options:
        out["text"] = text_options
    out["stream"] = bool(body.get("stream", False))
    return out


def chat_include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streaming Chat Completions client asked for a usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _message_item(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _chat_text(content: Any, position: int) -> str:
    """Text of a message whose content must be text (system, developer, tool)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise ChatTranslationError(f"messages[{position}] may only hold text parts")
        return "\n".join(texts)
    raise ChatTranslationError(f"messages[{position}].content must be a string or a list of parts")


def _chat_user_parts(content: Any, position: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise ChatTranslationError(f"messages[{position}].content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            converted: dict[str, Any] = {"type": "input_image", "image_url": url}
            detail = image.get("detail") if isinstance(image, Mapping) else None
            converted["detail"] = detail or "auto"
            parts.append(converted)
        elif kind == "file":
            file = part.get("file")
            if not isinstance(file, Mapping):
                raise ChatTranslationError(f"messages[{position}] has a file part without 'file'")
            parts.append({"type": "input_file", **{k: v for k, v in file.items() if v is not None}})
        else:
            raise ChatTranslationError(f"messages[{position}] has unsupported content part {kind!r}")
    return parts


def _chat_assistant_items(message: Mapping[str, Any], position: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content = message.get("content")
    texts: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        texts.append({"type": "output_text", "text": content, "annotations": []})
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append({"type": "output_text", "text": part.get("text", ""), "annotations": []})
            elif kind == "refusal":
                texts.append({"type": "refusal", "refusal": part.get("refusal", "")})
            else:
                raise ChatTranslationError(f"messages[{position}] has unsupported assistant part {kind!r}")
    if isinstance(message.get("refusal"), str) and message["refusal"] and not texts:
        texts.append({"type": "refusal", "refusal": message["refusal"]})
    if texts:
        items.append(_message_item("assistant", texts))

    tool_calls = message.get("tool_calls")
    if tool_calls is None and isinstance(message.get("function_call"), Mapping):
        raise ChatTranslationError(f"messages[{position}] uses the legacy function_call; send tool_calls")
    for call in tool_calls or []:
        if not isinstance(call, Mapping) or call.get("type", "function") != "function":
            raise ChatTranslationError(f"messages[{position}] has an unsupported tool call")
        function = call.get("function")
        if not isinstance(function, Mapping) or not isinstance(call.get("id"), str):
            raise ChatTranslationError(f"messages[{position}] has a tool call without id or function")
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": function.get("name", ""),
                "arguments": function.get("arguments") or "",
            }
        )
    return items


def _chat_tool(tool: Any, position: int) -> dict[str, Any]:
    """``{"type": T, T: {...}}`` → ``{"type": T, ...}`` (function and custom tools nest their definition)."""
    if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
        raise ChatTranslationError(f"tools[{position}] must be an object with a type")
    kind = tool["type"]
    nested = tool.get(kind)
    if not isinstance(nested, Mapping):
        return copy.deepcopy(dict(tool))
    flat: dict[str, Any] = {"type": kind}
    flat.update(copy.deepcopy(dict(nested)))
    return flat


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if not isinstance(choice, Mapping):
        raise ChatTranslationError("tool_choice must be a string or an object")
    kind = choice.get("type")
    if kind is None and isinstance(choice.get("name"), str):  # legacy function_call: {"name": ...}
        return {"type": "function", "name": choice["name"]}
    if kind in ("function", "custom") and isinstance(choice.get(kind), Mapping):
        return {"type": kind, "name": choice[kind].get("name")}
    if kind == "allowed_tools" and isinstance(choice.get("allowed_tools"), Mapping):
        allowed = choice["allowed_tools"]
        tools = [_chat_tool(t, i) for i, t in enumerate(allowed.get("tools", []))]
        return {"type": "allowed_tools", "mode": allowed.get("mode", "auto"), "tools": tools}
    return copy.deepcopy(dict(choice))


def _chat_response_format(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), Mapping):
        return {"type": "json_schema", **copy.deepcopy(dict(fmt["json_schema"]))}
    return copy.deepcopy(dict(fmt))


# ---------------------------------------------------------------------------------------------------------------
# Responses SSE → Chat Completions stream


def encode_chunk(chunk: Mapping[str, Any]) -> bytes:
    """One chat chunk as an SSE frame: ``data: {...}\\n\\n``."""
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


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


def _event_type(event: str | None, data: Mapping[str, Any]) -> str | None:
    kind = data.get("type")
    return kind if isinstance(kind, str) else event


def _stream_error(kind: str | None, data: Mapping[str, Any]) -> CodexResponseError:
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


def _finish_reason(response: Mapping[str, Any], saw_tool_call: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if saw_tool_call else "stop"


def _message_text(item: Mapping[str, Any]) -> tuple[str, str]:
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
    ends call :meth:`close` (raises when no terminal event came), then send :data:`DONE_FRAME`. :meth:`wire` does all
    of that for a synchronous iterable. ``response.failed`` and ``error`` events raise :class:`CodexResponseError`
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

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chat chunks for one event (often none)."""
        if self._finished:
            return []
        kind = _event_type(event, data)
        if kind in ("response.failed", "error"):
            raise _stream_error(kind, data)
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

    def wire(self, events: Iterable[SseEvent]) -> Iterator[bytes]:
        """SSE frames for a whole event sequence, ending with ``data: [DONE]``. Raises like :meth:`feed` / :meth:`close`."""
        for event, data in events:
            for chunk in self.feed(event, data):
                yield encode_chunk(chunk)
        self.close()
        yield DONE_FRAME

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
            text, refusal = _message_text(item)
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
        chunks.append(self._delta({}, _finish_reason(response, self._tool_calls > 0)))
        usage = response.get("usage")
        if self.include_usage and isinstance(usage, Mapping):
            usage_chunk = self._chunk([])
            usage_chunk["usage"] = chat_usage(usage)
            chunks.append(usage_chunk)
        return chunks


# ---------------------------------------------------------------------------------------------------------------
# Responses SSE → one Responses object → one chat completion


def aggregate_responses_stream(events: Iterable[SseEvent]) -> dict[str, Any]:
    """The final Responses object of a stream, for agents that did not ask to stream.

    ``response.completed``'s ``response`` is used as is when it carries output; when its ``output`` is empty (the
    backend may send it so) the output is assembled from ``response.output_item.done`` events in ``output_index``
    order. ``response.incomplete`` returns the object with ``status: "incomplete"``. ``response.failed`` / ``error``
    and a stream that ends without a terminal event raise :class:`CodexResponseError`.
    """
    done_items: dict[int, Any] = {}
    arrival = 0
    for event, data in events:
        kind = _event_type(event, data)
        if kind in ("response.failed", "error"):
            raise _stream_error(kind, data)
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
            item_text, item_refusal = _message_text(item)
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
                "finish_reason": _finish_reason(response, bool(tool_calls)),
            }
        ],
    }
    usage = response.get("usage")
    if isinstance(usage, Mapping):
        completion["usage"] = chat_usage(usage)
    return completion


# ---------------------------------------------------------------------------------------------------------------
# Usage-limit errors


def parse_usage_limit_error(status: int, body: bytes | Mapping[str, Any], *, now: float) -> UsageLimit | None:
    """A 429 usage-limit body → :class:`UsageLimit`; anything else → None.

    ``resets_at`` (unix seconds) wins; otherwise it is ``now + resets_in_seconds``; None when neither is given.
    """
    if status != 429:
        return None
    parsed: Any = body
    if isinstance(body, bytes):
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
    if not isinstance(parsed, Mapping):
        return None
    error = parsed.get("error")
    if not isinstance(error, Mapping):
        return None
    kind = error.get("type") or error.get("code")
    if kind not in ("usage_limit_reached", "usage_not_included"):
        return None
    resets_at = as_number(error.get("resets_at"))
    if resets_at is None:
        resets_in = as_number(error.get("resets_in_seconds"))
        resets_at = now + resets_in if resets_in is not None else None
    plan_type = error.get("plan_type")
    return UsageLimit(
        kind=kind, resets_at=resets_at, plan_type=plan_type if isinstance(plan_type, str) else None
    )


