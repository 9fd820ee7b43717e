"""Where two request bodies stop sharing a prompt prefix, in the order the model's cache sees the prompt.

The raw byte diff of two bodies (``proxy.features.dumps.body_diff``) is not enough to say where a cache prefix broke:

* JSON key order is not prompt order. Anthropic renders ``tools``, then ``system``, then ``messages`` whatever order
  the keys have in the body; a changed tool at the end of the body breaks the whole cache.
* ``cache_control`` markers are not part of the cached content. Agents move their breakpoints every turn (and
  Headway's cache modes add or re-time them), so the first differing byte is usually a moved marker, not a change.

So :func:`prompt_diff` strips every ``cache_control``, walks the prompt parts in prompt order
(:data:`PROMPT_PARTS`; each element of a list part — a tool, a system block, a message, an input item — is one
segment), and reports the first segment that differs: its part (``system``, ``tools``, ``messages[3]``), the
deepest differing JSON path (``messages[3].content[0].text``), and the byte offset of that spot in the *current*
body as sent (so ``at byte X`` can be found in the ``.request.json`` with any editor). ``shared_fraction`` is the
share of the current prompt's canonical JSON bytes that precede the difference; the analyzer turns it into a token
estimate by proportion. A different ``model`` shares nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PROMPT_PARTS", "PromptDiff", "format_path", "prompt_diff", "strip_cache_control"]

PROMPT_PARTS = ("tools", "system", "instructions", "messages", "input")
"""Prompt order: Anthropic's tools → system → messages; the Responses API's instructions and input items."""

_LIST_LABELLED = frozenset({"messages", "input"})
"""Parts whose differing element is named with its index (``messages[3]``); for the others the part is enough."""

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

PathStep = str | int


@dataclass(frozen=True, slots=True)
class PromptDiff:
    """How the current request's prompt differs from the previous one's."""

    identical: bool
    """Same prompt (ignoring ``cache_control``), same model."""
    appended_only: bool
    """The previous prompt is a prefix of the current one: the agent only appended."""
    part: str | None
    """First differing part in prompt order: ``tools``, ``system``, ``messages[N]``, ``model`` …; None if identical."""
    path: str | None
    """Deepest differing JSON path, e.g. ``messages[3].content[0].text``."""
    offset: int | None
    """Byte offset of that spot in the current body (UTF-8, as sent); None when it cannot be located."""
    shared_fraction: float
    """Share (0..1) of the current prompt's bytes, in prompt order, that the previous prompt also had."""


def strip_cache_control(value: Any) -> Any:
    """A copy of ``value`` without any ``cache_control`` key, at any depth."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


def format_path(path: Sequence[PathStep]) -> str:
    """``("messages", 3, "content", 0)`` → ``messages[3].content[0]``."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else step
    return out


def prompt_diff(prev_body: bytes, cur_body: bytes) -> PromptDiff | None:
    """Compare two request bodies in prompt order; None when either is not a JSON object."""
    try:
        cur_text = cur_body.decode("utf-8")
        prev_obj = json.loads(prev_body)
        cur_obj = json.loads(cur_text)
    except ValueError:
        return None
    if not (isinstance(prev_obj, dict) and isinstance(cur_obj, dict)):
        return None
    prev = strip_cache_control(prev_obj)
    cur = strip_cache_control(cur_obj)

    if prev.get("model") != cur.get("model"):
        return PromptDiff(
            identical=False,
            appended_only=False,
            part="model",
            path="model",
            offset=_offset(cur_text, ("model",), None),
            shared_fraction=0.0,
        )

    prev_segments = _segments(prev)
    cur_segments = _segments(cur)
    total = sum(size for _, _, size in cur_segments) or 1
    shared = 0
    for index, (path, text, size) in enumerate(cur_segments):
        if index >= len(prev_segments):
            # everything the previous prompt had is still here; new segments follow
            return PromptDiff(
                identical=False,
                appended_only=True,
                part=_part_label(path),
                path=format_path(path),
                offset=_offset(cur_text, path, None),
                shared_fraction=shared / total,
            )
        prev_path, prev_text, _ = prev_segments[index]
        if prev_path == path and prev_text == text:
            shared += size
            continue
        if prev_path == path:
            shared += len(_common_prefix(prev_text, text).encode("utf-8"))
            deep, chars = _first_difference(_get(prev, path), _get(cur, path), list(path))
        else:
            deep, chars = list(path), None
        return PromptDiff(
            identical=False,
            appended_only=False,
            part=_part_label(path),
            path=format_path(deep),
            offset=_offset(cur_text, deep, chars),
            shared_fraction=min(shared / total, 1.0),
        )
    if len(prev_segments) > len(cur_segments):
        # the current prompt is a strict prefix of the previous one (history truncated at the end)
        path = prev_segments[len(cur_segments)][0]
        return PromptDiff(
            identical=False,
            appended_only=False,
            part=_part_label(path),
            path=format_path(path),
            offset=None,
            shared_fraction=1.0,
        )
    other = _other_change(prev, cur)
    return PromptDiff(
        identical=other is None,
        appended_only=False,
        part=other,
        path=other,
        offset=None if other is None else _offset(cur_text, (other,), None),
        shared_fraction=1.0,
    )


# -- segments --------------------------------------------------------------------------------------------------


def _segments(obj: dict[str, Any]) -> list[tuple[tuple[PathStep, ...], str, int]]:
    """(path, canonical JSON, UTF-8 size) of each prompt segment, in prompt order."""
    out: list[tuple[tuple[PathStep, ...], str, int]] = []
    for part in PROMPT_PARTS:
        if part not in obj:
            continue
        value = obj[part]
        items: list[tuple[tuple[PathStep, ...], Any]]
        if isinstance(value, list):
            items = [((part, i), item) for i, item in enumerate(value)]
        else:
            items = [((part,), value)]
        for path, item in items:
            text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            out.append((path, text, len(text.encode("utf-8"))))
    return out


def _part_label(path: Sequence[PathStep]) -> str:
    name = str(path[0])
    if name in _LIST_LABELLED and len(path) > 1:
        return f"{name}[{path[1]}]"
    return name


def _other_change(prev: dict[str, Any], cur: dict[str, Any]) -> str | None:
    """The first non-prompt top-level key that differs (``tool_choice``, ``thinking`` …), or None."""
    keys = [k for k in cur if k not in PROMPT_PARTS] + [
        k for k in prev if k not in PROMPT_PARTS and k not in cur
    ]
    for key in keys:
        if json.dumps(prev.get(key), sort_keys=False) != json.dumps(cur.get(key), sort_keys=False):
            return str(key)
    return None


def _get(obj: Any, path: Sequence[PathStep]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def _common_prefix(a: str, b: str) -> str:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return a[:i]


def _first_difference(prev: Any, cur: Any, path: list[PathStep]) -> tuple[list[PathStep], int | None]:
    """The deepest path where ``prev`` and ``cur`` differ and, for two strings, the index of the first differing
    character. Dict keys are compared in the current body's order (order changes bytes)."""
    if isinstance(prev, dict) and isinstance(cur, dict):
        prev_keys, cur_keys = list(prev), list(cur)
        for i, key in enumerate(cur_keys):
            if i >= len(prev_keys) or prev_keys[i] != key:
                return [*path, key], None
            if prev[key] != cur[key] or type(prev[key]) is not type(cur[key]):
                return _first_difference(prev[key], cur[key], [*path, key])
        return path, None
    if isinstance(prev, list) and isinstance(cur, list):
        for i, (a, b) in enumerate(zip(prev, cur, strict=False)):
            if a != b or type(a) is not type(b):
                return _first_difference(a, b, [*path, i])
        if len(cur) > len(prev):
            return [*path, len(prev)], None
        return path, None
    if isinstance(prev, str) and isinstance(cur, str):
        return path, len(_common_prefix(prev, cur))
    return path, None


# -- locating a path in the raw body ----------------------------------------------------------------------------


def _offset(text: str, path: Sequence[PathStep], chars: int | None) -> int | None:
    """UTF-8 byte offset in ``text`` of the value at ``path`` (of its ``chars``-th character for a string)."""
    try:
        position = _locate(text, path)
        if position is None:
            return None
        if chars is not None and text[position] == '"':
            position = _string_char_position(text, position, chars)
    except (IndexError, ValueError):
        return None
    return len(text[:position].encode("utf-8"))


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _locate(text: str, path: Sequence[PathStep]) -> int | None:
    """Index in ``text`` where the JSON value at ``path`` starts, or None if the path is not there.

    A list index one past the end locates the list's closing bracket (where a new element would go)."""
    i = _skip(text, 0)
    for step in path:
        if isinstance(step, str):
            if text[i] != "{":
                return None
            i = _skip(text, i + 1)
            while True:
                if text[i] == "}":
                    return None
                key, i = _DECODER.raw_decode(text, i)
                i = _skip(text, i)
                i = _skip(text, i + 1)  # the colon
                if key == step:
                    break
                i = _skip(text, _DECODER.raw_decode(text, i)[1])
                if text[i] == ",":
                    i = _skip(text, i + 1)
        else:
            if text[i] != "[":
                return None
            i = _skip(text, i + 1)
            index = 0
            while index < step:
                if text[i] == "]":
                    return None
                i = _skip(text, _DECODER.raw_decode(text, i)[1])
                if text[i] == ",":
                    i = _skip(text, i + 1)
                index += 1
    return i


def _string_char_position(text: str, start: int, chars: int) -> int:
    """Index in ``text`` of the ``chars``-th decoded character of the JSON string literal starting at ``start``."""
    i = start + 1
    seen = 0
    while seen < chars:
        if text[i] == "\\":
            if text[i + 1] == "u":
                code = int(text[i + 2 : i + 6], 16)
                i += 6
                if 0xD800 <= code < 0xDC00 and text[i : i + 2] == "\\u":
                    i += 6  # a surrogate pair decodes to one character
            else:
                i += 2
        else:
            i += 1
        seen += 1
    return i
