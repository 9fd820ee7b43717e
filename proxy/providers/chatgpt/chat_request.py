"""A Chat Completions request → a Responses request, so chat-only agents can use the Codex backend (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from proxy.providers.chatgpt.request import INSTRUCTION_ROLES

__all__ = ["ChatTranslationError", "chat_include_usage", "chat_to_responses"]


class ChatTranslationError(ValueError):
    """A Chat Completions request that cannot be expressed as a Responses request (render as HTTP 400)."""


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
        if role in INSTRUCTION_ROLES:
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
