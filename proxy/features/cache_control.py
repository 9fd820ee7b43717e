"""Anthropic prompt-cache modes: a pure rewrite of a parsed ``/v1/messages`` body.

``apply_cache_mode(body, mode, subagent=...)`` never mutates ``body``. When nothing changes it returns the very
same object (``changed=False``) so the caller can forward the agent's original bytes; otherwise the result is a
copy-on-write of the input: containers on the path to an edited ``cache_control`` are copied, everything else is
shared. Treat both bodies as read-only afterwards. Key order is kept (an edited key stays where it was; a new
``cache_control`` is appended to its object), so re-serialisation is stable from one turn to the next.

Modes:

``off``
    Identity.
``explicit``
    Keep the agent's breakpoints and give each ``ttl: "1h"``.
``automatic``
    Remove every block-level ``cache_control`` and send one top-level ``{"type": "ephemeral", "ttl": "1h"}``.
``hybrid`` (recommended)
    Top-level automatic caching (1h) plus stable 1h anchors near the start of the prompt: the last system block
    (or, with no system prompt, the last tool that is not ``defer_loading``) and the last content block of the
    first message (unless it is a thinking block or empty text). The agent's other breakpoints are kept, made 1h,
    while they fit; when they do not, the earliest are dropped, since later ones cover longer prefixes.

Decisions:

* **Breakpoint counting.** The API allows 4 breakpoints per request, counted over tools, system blocks and
  message content blocks (including blocks nested in a ``tool_result``). The top-level automatic
  ``cache_control`` occupies one of those slots, so it is counted as one breakpoint wherever it appears (the
  conservative reading: it stays within the limit even if the API merged it with a block on the same spot). In
  ``automatic`` / ``hybrid`` the top-level breakpoint lands on the last block of the prompt, so a block-level
  breakpoint on that same block is redundant and is dropped rather than spending a second slot on it.
* **Subagents.** With ``subagent=True`` every mode is the identity: Headway adds no 1h TTL to a child session's
  request and leaves the agent's own choices (normally the default 5-minute caching) untouched.
* **Pre-existing TTLs and the ordering rule.** The API rejects a 1h breakpoint that comes after a 5m one in prompt
  order (tools, then system, then messages; the top-level breakpoint counts as the last). Every rewriting mode
  makes *all* breakpoints 1h, including ones the agent sent with ``5m`` or no ``ttl`` and a top-level one it sent
  itself, so the rule holds by construction. ``off`` and subagent requests keep the agent's TTLs as they are.
* **Invalid breakpoints.** Rewriting modes drop breakpoints the API would reject because of where they sit (on a
  message object, on a ``thinking`` / ``redacted_thinking`` block, on an empty text block, on a
  ``defer_loading`` tool) and replace a malformed ``cache_control`` value by a well-formed one. Hence the output of
  a rewriting mode always passes ``validate_cache_control``; ``off`` and subagent output is valid iff the input was.
* **Strings.** A string ``system`` or a string message ``content`` is turned into one text block only when an
  anchor has to be placed on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from proxy.config.settings import Account, Settings
from proxy.features.base import Feature
from proxy.providers.base import Incoming
from proxy.wire import json_body

__all__ = [
    "DEFAULT_TTL",
    "LONG_TTL",
    "MAX_BREAKPOINTS",
    "Breakpoint",
    "CacheControl",
    "CacheMode",
    "CacheResult",
    "apply_cache_mode",
    "find_breakpoints",
    "format_path",
    "validate_cache_control",
]

CacheMode = Literal["off", "explicit", "automatic", "hybrid"]

MAX_BREAKPOINTS = 4
DEFAULT_TTL = "5m"
LONG_TTL = "1h"
_VALID_TTLS = frozenset({DEFAULT_TTL, LONG_TTL})
_THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})

Path = tuple[str | int, ...]
"""Key path from the body root to the object holding ``cache_control``; ``()`` is the top level."""


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """One ``cache_control`` in a body, in prompt order."""

    path: str
    """``tools[5]``, ``system[1]``, ``messages[3].content[0]``, ``messages[2]`` (invalid) or ``top-level``."""
    ttl: str | None
    """The ``ttl`` as sent; ``None`` when absent (the API's default, 5 minutes) or not a string."""

    @property
    def effective_ttl(self) -> str:
        return self.ttl if self.ttl is not None else DEFAULT_TTL


@dataclass(frozen=True, slots=True)
class CacheResult:
    body: dict[str, Any]
    """The body to send; the input object itself when ``changed`` is false."""
    changed: bool
    description: str
    """One line for dumps and logs, e.g. ``hybrid: top-level 1h; anchors system[1], messages[0].content[0]``."""


@dataclass(frozen=True, slots=True)
class _Mark:
    path: Path
    value: Any
    misplaced: str | None
    """Why the API would reject a breakpoint at this position, or ``None``."""


def format_path(path: Path) -> str:
    if not path:
        return "top-level"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _is_empty_text(block: dict[str, Any]) -> bool:
    return block.get("type") == "text" and block.get("text") == ""


def _block_problem(block: dict[str, Any]) -> str | None:
    if block.get("type") in _THINKING_TYPES:
        return f"cache_control on a {block.get('type')} block"
    if _is_empty_text(block):
        return "cache_control on an empty text block"
    return None


def _marks(body: dict[str, Any]) -> Iterator[_Mark]:
    """Every present (non-null) ``cache_control`` in prompt order, the top-level one last."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("cache_control") is not None:
                problem = (
                    "cache_control on a defer_loading tool" if tool.get("defer_loading") is True else None
                )
                yield _Mark(("tools", i), tool["cache_control"], problem)
    system = body.get("system")
    if isinstance(system, list):
        for i, block in enumerate(system):
            if isinstance(block, dict) and block.get("cache_control") is not None:
                yield _Mark(("system", i), block["cache_control"], _block_problem(block))
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            if message.get("cache_control") is not None:
                yield _Mark(("messages", i), message["cache_control"], "cache_control on a message object")
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for j, block in enumerate(content):
                if not isinstance(block, dict):
                    continue
                if block.get("cache_control") is not None:
                    yield _Mark(("messages", i, "content", j), block["cache_control"], _block_problem(block))
                nested = block.get("content")
                if isinstance(nested, list):
                    for k, inner in enumerate(nested):
                        if isinstance(inner, dict) and inner.get("cache_control") is not None:
                            path: Path = ("messages", i, "content", j, "content", k)
                            yield _Mark(path, inner["cache_control"], _block_problem(inner))
    if body.get("cache_control") is not None:
        yield _Mark((), body["cache_control"], None)


def _raw_ttl(value: Any) -> str | None:
    if isinstance(value, dict):
        ttl = value.get("ttl")
        if isinstance(ttl, str):
            return ttl
    return None


def find_breakpoints(body: dict[str, Any]) -> list[Breakpoint]:
    """Every ``cache_control`` in ``body`` (valid or not) in prompt order, the top-level one last."""
    return [Breakpoint(format_path(mark.path), _raw_ttl(mark.value)) for mark in _marks(body)]


def validate_cache_control(body: Any) -> list[str]:
    """The API's prompt-caching constraints that ``body`` violates; empty when it would be accepted."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems: list[str] = []
    marks = list(_marks(body))
    if len(marks) > MAX_BREAKPOINTS:
        problems.append(f"{len(marks)} cache_control breakpoints (at most {MAX_BREAKPOINTS} allowed)")
    first_short: str | None = None
    for mark in marks:
        where = format_path(mark.path)
        if mark.misplaced is not None:
            problems.append(f"{where}: {mark.misplaced}")
        value = mark.value
        if not isinstance(value, dict):
            problems.append(f"{where}: cache_control is not an object")
            continue
        if value.get("type") != "ephemeral":
            problems.append(f"{where}: cache_control.type must be 'ephemeral', not {value.get('type')!r}")
        ttl = value.get("ttl")
        if ttl is None:
            ttl = DEFAULT_TTL
        elif ttl not in _VALID_TTLS:
            problems.append(f"{where}: cache_control.ttl must be '5m' or '1h', not {ttl!r}")
            continue
        if ttl == DEFAULT_TTL and first_short is None:
            first_short = where
        elif ttl == LONG_TTL and first_short is not None:
            problems.append(f"{where}: a 1h breakpoint after the 5m breakpoint at {first_short}")
    return problems


def _long(value: Any) -> dict[str, Any]:
    """``value`` as a well-formed 1h ``cache_control``, keeping its key order and unknown keys."""
    if isinstance(value, dict) and value.get("type") == "ephemeral":
        out = dict(value)
        out["ttl"] = LONG_TTL
        return out
    return {"type": "ephemeral", "ttl": LONG_TTL}


class _Editor:
    """Copy-on-write edits of ``cache_control`` values; the input body is never written to."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body
        self._out: dict[str, Any] | None = None
        self._owned: set[Path] = set()

    @property
    def changed(self) -> bool:
        return self._out is not None

    def result(self) -> dict[str, Any]:
        return self._body if self._out is None else self._out

    def _current(self, path: Path) -> Any:
        node: Any = self.result()
        for key in path:
            node = node[key]
        return node

    def _own(self, path: Path) -> Any:
        """The container at ``path`` in the output, copied (with its parents) if still shared with the input."""
        if self._out is None:
            self._out = dict(self._body)
        node: Any = self._out
        for depth, key in enumerate(path):
            child = node[key]
            prefix = path[: depth + 1]
            if prefix not in self._owned:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[key] = child
                self._owned.add(prefix)
            node = child
        return node

    def set(self, path: Path, value: dict[str, Any]) -> None:
        if self._current(path).get("cache_control") != value:
            self._own(path)["cache_control"] = value

    def remove(self, path: Path) -> None:
        if "cache_control" in self._current(path):
            del self._own(path)["cache_control"]

    def blockify(self, parent: Path, key: str) -> None:
        """Replace the string at ``parent[key]`` by a single text block."""
        text = self._current(parent)[key]
        self._own(parent)[key] = [{"type": "text", "text": text}]
        self._owned.add((*parent, key))
        self._owned.add((*parent, key, 0))

    def get(self, path: Path) -> Any:
        return self._current(path).get("cache_control")


def _last_block_path(body: dict[str, Any]) -> Path | None:
    """Where the top-level automatic breakpoint lands: the last content block of the last message."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        if isinstance(content, list) and content:
            return ("messages", len(messages) - 1, "content", len(content) - 1)
    return None


def _cacheable_block(block: Any) -> bool:
    return isinstance(block, dict) and _block_problem(block) is None


def _system_anchor(body: dict[str, Any], editor: _Editor) -> Path | None:
    system = body.get("system")
    if isinstance(system, str) and system:
        editor.blockify((), "system")
        return ("system", 0)
    if isinstance(system, list) and system:
        return ("system", len(system) - 1) if _cacheable_block(system[-1]) else None
    tools = body.get("tools")
    if isinstance(tools, list):
        for i in range(len(tools) - 1, -1, -1):
            tool = tools[i]
            if isinstance(tool, dict) and tool.get("defer_loading") is not True:
                return ("tools", i)
    return None


def _first_message_anchor(body: dict[str, Any], editor: _Editor, last_block: Path | None) -> Path | None:
    messages = body.get("messages")
    if not (isinstance(messages, list) and messages and isinstance(messages[0], dict)):
        return None
    content = messages[0].get("content")
    if isinstance(content, str) and content:
        if len(messages) == 1:
            return None  # the top-level breakpoint lands on this very block
        editor.blockify(("messages", 0), "content")
        return ("messages", 0, "content", 0)
    if isinstance(content, list) and content and _cacheable_block(content[-1]):
        path: Path = ("messages", 0, "content", len(content) - 1)
        return None if path == last_block else path
    return None


def _explicit(body: dict[str, Any], editor: _Editor, notes: list[str]) -> None:
    marks = list(_marks(body))
    top = [m for m in marks if m.path == ()]
    blocks = [m for m in marks if m.path != () and m.misplaced is None]
    budget = MAX_BREAKPOINTS - len(top)
    kept = blocks[len(blocks) - budget :] if len(blocks) > budget else blocks
    dropped = [m for m in marks if m.path != () and m not in kept]
    for mark in kept + top:
        editor.set(mark.path, _long(mark.value))
    for mark in dropped:
        editor.remove(mark.path)
    if kept or top:
        notes.append(f"{len(kept) + len(top)} breakpoint(s) set to 1h")
    if dropped:
        notes.append("dropped " + ", ".join(format_path(m.path) for m in dropped))


def _automatic(body: dict[str, Any], editor: _Editor, notes: list[str]) -> None:
    removed = [m for m in _marks(body) if m.path != ()]
    for mark in removed:
        editor.remove(mark.path)
    editor.set((), _long(body.get("cache_control")))
    notes.append("top-level 1h")
    if removed:
        notes.append(f"removed {len(removed)} block breakpoint(s)")


def _hybrid(body: dict[str, Any], editor: _Editor, notes: list[str]) -> None:
    last_block = _last_block_path(body)
    anchors = [
        path
        for path in (_system_anchor(body, editor), _first_message_anchor(body, editor, last_block))
        if path is not None
    ]
    marks = [m for m in _marks(body) if m.path != ()]
    candidates = [m for m in marks if m.misplaced is None and m.path not in anchors and m.path != last_block]
    budget = MAX_BREAKPOINTS - 1 - len(anchors)
    kept = candidates[len(candidates) - budget :] if len(candidates) > budget else candidates
    dropped = [m for m in marks if m.path not in anchors and m not in kept]
    for path in anchors:
        editor.set(path, _long(editor.get(path)))
    for mark in kept:
        editor.set(mark.path, _long(mark.value))
    for mark in dropped:
        editor.remove(mark.path)
    editor.set((), _long(body.get("cache_control")))
    notes.append("top-level 1h")
    if anchors:
        notes.append("anchors " + ", ".join(format_path(p) for p in anchors))
    if kept:
        notes.append("kept " + ", ".join(format_path(m.path) for m in kept) + " as 1h")
    if dropped:
        notes.append("dropped " + ", ".join(format_path(m.path) for m in dropped))


def apply_cache_mode(body: dict[str, Any], mode: CacheMode, *, subagent: bool) -> CacheResult:
    """Rewrite the breakpoints of ``body`` for ``mode``; see the module docstring for the rules."""
    if mode == "off":
        return CacheResult(body, False, "off: unchanged")
    if subagent:
        return CacheResult(body, False, f"{mode}: subagent request unchanged (default caching)")
    editor = _Editor(body)
    notes: list[str] = []
    if mode == "explicit":
        _explicit(body, editor, notes)
    elif mode == "automatic":
        _automatic(body, editor, notes)
    elif mode == "hybrid":
        _hybrid(body, editor, notes)
    else:
        raise ValueError(f"unknown cache mode {mode!r}")
    if not editor.changed:
        return CacheResult(body, False, f"{mode}: unchanged")
    return CacheResult(editor.result(), True, f"{mode}: " + ("; ".join(notes) or "rewritten"))


class CacheControl(Feature):
    """The Anthropic cache mode (``cache.anthropic_mode``) applied to each ``/v1/messages`` request on an Anthropic
    account; a request the mode does not change is forwarded with the agent's own bytes."""

    name = "cache_control"

    def __init__(self) -> None:
        self._mode: CacheMode = "off"

    def configure(self, settings: Settings) -> None:
        self._mode = settings.cache.anthropic_mode

    def prepare(self, request: Incoming, account: Account) -> Incoming:
        mode = self._mode
        if mode == "off" or account.family != "anthropic" or request.path != "/v1/messages":
            return request
        if not isinstance(request.json, dict):
            return request
        result = apply_cache_mode(request.json, mode, subagent=request.session.subagent)
        if not result.changed:
            return request
        body = json_body.dumps(result.body)
        return replace(request, body=body, json=result.body, cache_change=result.description)
