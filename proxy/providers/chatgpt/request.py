"""An agent's Responses request → the body the Codex backend accepts (pure, no I/O).

The backend (``POST {base}/backend-api/codex/responses``) speaks the OpenAI Responses API with a few rules of its own
(``docs: ../shared/reference/chatgpt-codex.md``). The reference lists what the backend expects and what it rejects; where
it is silent we follow the Codex CLI, which is what the backend is built for):

- ``instructions``: the agent's non-empty string is kept. Otherwise the leading run of text-only ``system`` /
  ``developer`` messages in ``input`` is lifted into ``instructions`` (joined by a blank line) — the Responses API
  treats both the same way, and OpenCode sends its system prompt as such a message. With nothing to lift,
  :data:`DEFAULT_INSTRUCTIONS` is used, because the backend requires instructions.
- Removed: the reference's list (:data:`REMOVED_FIELDS`), plus ``metadata`` and ``background`` (both describe a stored
  response; ``store`` is always false here and the Codex CLI never sends them), plus ``service_tier`` when it is a
  no-op value (``auto`` / ``default`` — the Codex CLI only ever sends a non-default tier such as ``priority``).
- Refused: ``previous_response_id`` and ``conversation`` (a ValueError, which the forwarder answers as a 400 naming
  it). With ``store:false`` the backend cannot resolve them over HTTP, and dropping them would silently cut the
  conversation short. The gateway resolves a ``previous_response_id`` it knows into the full input before this
  point (:mod:`proxy.gateway.conversations`); only an id it does not know arrives here.
- ``input``: because ``store`` is false nothing can be looked up by id, so ``item_reference`` items are dropped, the
  ``id`` of every item is removed (the Codex CLI never serialises item ids), and ``reasoning`` items without
  ``encrypted_content`` are dropped (without the encrypted payload they are only a pointer to stored state).
- ``reasoning`` is kept exactly as sent; no ``summary`` is added (an agent that wants summaries asks for them).
- ``include`` always contains ``reasoning.encrypted_content`` (merged, order kept, no duplicates): with
  ``store:false`` it is the only way reasoning carries over to the next turn.
- Defaults when absent: ``tools: []``, ``tool_choice: "auto"``, ``parallel_tool_calls: false``.
- Cache stabilizer: see :func:`to_codex_request`; it is also skipped when ``tool_choice`` is ``"required"``, where an
  extra native tool could satisfy the obligation instead of the agent's own tools.

Responses Lite (``lite=True``: the agent sent ``x-openai-internal-codex-responses-lite: true``, which the Codex CLI does
for the models its catalog marks ``use_responses_lite``; docs/agents-observed.md): the body is already in the dialect
the backend expects for those models — instructions as developer messages in ``input`` (``instructions`` may be
empty), the tools as an ``additional_tools`` input item, ``reasoning.context``. So nothing is lifted or made up for
``instructions`` (kept as sent, ``""`` when absent), no stabilizer tool is added, and ``parallel_tool_calls`` is
always false (the backend refuses a Lite request with it true; the Codex CLI sends false).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "ENCRYPTED_REASONING_INCLUDE",
    "INSTRUCTION_ROLES",
    "REMOVED_FIELDS",
    "STABILIZER_TOOL",
    "to_codex_request",
]

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
ENCRYPTED_REASONING_INCLUDE = "reasoning.encrypted_content"
STABILIZER_TOOL: Mapping[str, Any] = MappingProxyType({"type": "web_search", "external_web_access": False})

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

_UNRESOLVABLE = (
    "{key} {value!r} cannot be resolved: the ChatGPT backend stores no responses (store:false), and Headway does "
    "not know this one (it keeps the responses it relayed on this gateway, unless the request said store:false, and "
    "those of each WebSocket). Send the whole conversation in input instead"
)
# Tuples, not sets: membership tests on agent-supplied values must not fail on unhashable JSON (lists, objects).
_NOOP_SERVICE_TIERS = ("auto", "default")
INSTRUCTION_ROLES = ("system", "developer")
_TEXT_PART_TYPES = ("input_text", "text", "output_text")


def to_codex_request(
    body: Mapping[str, Any], *, stabilize_cache: bool, session_id: str | None, lite: bool = False
) -> dict[str, Any]:
    """The Codex backend body for an agent's Responses request. Returns a new dict; ``body`` is not touched.

    The new dict shares the agent's nested values (messages, tools, schemas) instead of copying them: nothing here
    or after it changes them (the result is serialized right away), and a deep copy cost 7 ms on a 620 KB body.

    ``session_id`` becomes ``prompt_cache_key`` when the agent sent none. With ``stabilize_cache``, a request whose
    tools are all ``function`` tools (at least one) gets one native ``web_search`` tool without web access appended,
    which keeps it on the backend's stable prompt-cache path; a request without tools never gets one.
    """
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise ValueError(_UNRESOLVABLE.format(key=key, value=str(body[key])[:80]))
    source = dict(body)
    input_items = _codex_input(source.pop("input", None))

    instructions = source.pop("instructions", None)
    if lite:
        instructions = instructions if isinstance(instructions, str) else ""
    elif not isinstance(instructions, str) or not instructions:
        lifted, input_items = _lift_instructions(input_items)
        instructions = lifted or DEFAULT_INSTRUCTIONS

    tools = source.pop("tools", None)
    tools = list(tools) if isinstance(tools, list) else []
    tool_choice = source.pop("tool_choice", None) or "auto"
    if stabilize_cache and not lite and _wants_stabilizer(tools, tool_choice):
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
    out["parallel_tool_calls"] = parallel if isinstance(parallel, bool) and not lite else False
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
    if item.get("role") not in INSTRUCTION_ROLES:
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
