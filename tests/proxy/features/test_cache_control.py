from __future__ import annotations

import copy
import json
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.features.cache_control import (
    MAX_BREAKPOINTS,
    Breakpoint,
    CacheMode,
    apply_cache_mode,
    find_breakpoints,
    format_path,
    validate_cache_control,
)

MODES: tuple[CacheMode, ...] = get_args(CacheMode)
REWRITING: tuple[CacheMode, ...] = ("explicit", "automatic", "hybrid")
EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


# -- realistic bodies ----------------------------------------------------------------------------------------


def opencode_body() -> dict[str, Any]:
    """Shaped like OpenCode through the AI SDK: breakpoints on the first two system blocks and the last two
    messages, without a ttl; thinking blocks in assistant turns; tool_use / tool_result round trips."""
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "system": [
            {
                "type": "text",
                "text": "You are opencode, an interactive CLI tool.",
                "cache_control": dict(EPHEMERAL),
            },
            {"type": "text", "text": "Environment: linux, /home/u/project", "cache_control": dict(EPHEMERAL)},
            {"type": "text", "text": "AGENTS.md: use pytest."},
        ],
        "tools": [
            {
                "name": "bash",
                "description": "Run a command",
                "input_schema": {"type": "object", "properties": {}},
            },
            {
                "name": "read",
                "description": "Read a file",
                "input_schema": {"type": "object", "properties": {}},
            },
            {
                "name": "edit",
                "description": "Edit a file",
                "input_schema": {"type": "object", "properties": {}},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Fix the failing test in tests/test_a.py"}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Let me look.", "signature": "sig1"},
                    {"type": "text", "text": "Reading the test."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "read",
                        "input": {"path": "tests/test_a.py"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "def test_a(): ..."}
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_2", "name": "bash", "input": {"cmd": "pytest -q"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "1 failed"}],
                        "cache_control": dict(EPHEMERAL),
                    }
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "One failure; fixing.", "cache_control": dict(EPHEMERAL)}
                ],
            },
            {"role": "user", "content": "continue"},
        ],
        "stream": True,
    }


def claude_code_body() -> dict[str, Any]:
    """Shaped like Claude Code: a short billing line, two system blocks with 1h breakpoints, deferred tools at
    the tail, and a 5m breakpoint on the last user block."""
    return {
        "model": "claude-opus-4-5",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "What does proxy/routing/router.py do?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Read it.", "signature": "s"},
                    {
                        "type": "tool_use",
                        "id": "toolu_9",
                        "name": "Read",
                        "input": {"file_path": "proxy/routing/router.py", "cache_control": "not ours"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": "class Router: ..."},
                    {"type": "text", "text": "Also explain it briefly.", "cache_control": dict(EPHEMERAL)},
                ],
            },
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
            {
                "type": "text",
                "text": "Long instructions...",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "tools": [
            {"name": "Read", "description": "Read", "input_schema": {"type": "object"}},
            {"name": "Bash", "description": "Bash", "input_schema": {"type": "object"}},
            {
                "name": "mcp__gh__issues",
                "description": "MCP",
                "input_schema": {"type": "object"},
                "defer_loading": True,
            },
        ],
        "metadata": {"user_id": "u"},
        "max_tokens": 32000,
        "stream": True,
    }


def paths(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(bp.path, bp.effective_ttl) for bp in find_breakpoints(body)]


def _strip_cc(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: v for k, v in obj.items() if k != "cache_control"}
    return obj


def normalized_without_cache_control(body: dict[str, Any]) -> str:
    """``body`` with every cache_control removed from the places the API reads it, strings as text blocks,
    serialised with key order intact."""
    out = _strip_cc(body)
    if isinstance(out.get("system"), str):
        out["system"] = [{"type": "text", "text": out["system"]}]
    if isinstance(out.get("system"), list):
        out["system"] = [_strip_cc(b) for b in out["system"]]
    if isinstance(out.get("tools"), list):
        out["tools"] = [_strip_cc(t) for t in out["tools"]]
    if isinstance(out.get("messages"), list):
        messages = []
        for message in out["messages"]:
            message = _strip_cc(message)
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            if isinstance(content, list):
                blocks = []
                for block in content:
                    block = _strip_cc(block)
                    if isinstance(block, dict) and isinstance(block.get("content"), list):
                        block["content"] = [_strip_cc(inner) for inner in block["content"]]
                    blocks.append(block)
                message["content"] = blocks
            messages.append(message)
        out["messages"] = messages
    return json.dumps(out)


# -- table tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [opencode_body, claude_code_body])
@pytest.mark.parametrize("mode", MODES)
def test_off_and_subagent_are_identity(make: Any, mode: CacheMode) -> None:
    body = make()
    for subagent in (True, False) if mode == "off" else (True,):
        result = apply_cache_mode(body, mode, subagent=subagent)
        assert result.body is body
        assert result.changed is False
        assert result.body == make()


def test_explicit_sets_1h_on_the_agents_breakpoints() -> None:
    body = opencode_body()
    result = apply_cache_mode(body, "explicit", subagent=False)
    assert result.changed
    assert paths(result.body) == [
        ("system[0]", "1h"),
        ("system[1]", "1h"),
        ("messages[4].content[0]", "1h"),
        ("messages[5].content[0]", "1h"),
    ]
    assert result.body["system"][0]["cache_control"] == ONE_HOUR
    assert list(result.body["system"][0]) == ["type", "text", "cache_control"]
    assert body == opencode_body()
    assert validate_cache_control(result.body) == []
    assert result.description == "explicit: 4 breakpoint(s) set to 1h"


def test_explicit_keeps_the_latest_four_and_drops_misplaced() -> None:
    body = opencode_body()
    body["tools"][0]["cache_control"] = dict(EPHEMERAL)
    body["messages"][1]["content"][0]["cache_control"] = dict(EPHEMERAL)  # thinking block
    body["messages"][3]["cache_control"] = dict(EPHEMERAL)  # message object
    assert len(validate_cache_control(body)) == 3  # count, thinking, message
    result = apply_cache_mode(body, "explicit", subagent=False)
    assert paths(result.body) == [
        ("system[0]", "1h"),
        ("system[1]", "1h"),
        ("messages[4].content[0]", "1h"),
        ("messages[5].content[0]", "1h"),
    ]
    assert "dropped tools[0], messages[1].content[0], messages[3]" in result.description
    assert validate_cache_control(result.body) == []


def test_explicit_without_any_breakpoint_is_unchanged() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    result = apply_cache_mode(body, "explicit", subagent=False)
    assert result.body is body
    assert result.changed is False


def test_explicit_already_1h_is_unchanged() -> None:
    body = claude_code_body()
    body["messages"][2]["content"][1]["cache_control"] = dict(ONE_HOUR)
    result = apply_cache_mode(body, "explicit", subagent=False)
    assert result.body is body
    assert not result.changed


def test_automatic_moves_everything_to_one_top_level_breakpoint() -> None:
    body = claude_code_body()
    result = apply_cache_mode(body, "automatic", subagent=False)
    assert paths(result.body) == [("top-level", "1h")]
    assert result.body["cache_control"] == ONE_HOUR
    assert list(result.body) == [*list(body), "cache_control"]
    assert result.body["messages"][1]["content"][1]["input"] == {
        "file_path": "proxy/routing/router.py",
        "cache_control": "not ours",
    }
    assert normalized_without_cache_control(result.body) == normalized_without_cache_control(body)
    assert result.description == "automatic: top-level 1h; removed 3 block breakpoint(s)"
    assert body == claude_code_body()


def test_automatic_rewrites_an_agent_top_level_breakpoint_in_place() -> None:
    body = {
        "cache_control": {"type": "ephemeral"},
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
    }
    result = apply_cache_mode(body, "automatic", subagent=False)
    assert list(result.body) == ["cache_control", "model", "messages"]
    assert result.body["cache_control"] == ONE_HOUR


def test_hybrid_on_opencode_body() -> None:
    body = opencode_body()
    result = apply_cache_mode(body, "hybrid", subagent=False)
    # anchors: last system block and the first message's last block; the latest agent breakpoint that is not
    # the prompt's final block (messages[6] is a string: the top-level breakpoint lands there) is kept.
    assert paths(result.body) == [
        ("system[2]", "1h"),
        ("messages[0].content[0]", "1h"),
        ("messages[5].content[0]", "1h"),
        ("top-level", "1h"),
    ]
    assert result.description == (
        "hybrid: top-level 1h; anchors system[2], messages[0].content[0]; kept messages[5].content[0] as 1h; "
        "dropped system[0], system[1], messages[4].content[0]"
    )
    assert validate_cache_control(result.body) == []
    assert normalized_without_cache_control(result.body) == normalized_without_cache_control(body)
    assert body == opencode_body()


def test_hybrid_on_claude_code_body_skips_the_final_block_and_keeps_earlier_ones() -> None:
    body = claude_code_body()
    result = apply_cache_mode(body, "hybrid", subagent=False)
    assert paths(result.body) == [
        ("system[1]", "1h"),
        ("system[2]", "1h"),
        ("messages[0].content[1]", "1h"),
        ("top-level", "1h"),
    ]
    assert "dropped messages[2].content[1]" in result.description
    assert validate_cache_control(result.body) == []


def test_hybrid_converts_strings_only_where_an_anchor_goes() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "system": "You are helpful.",
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "second question"},
        ],
    }
    result = apply_cache_mode(body, "hybrid", subagent=False)
    out = result.body
    assert out["system"] == [{"type": "text", "text": "You are helpful.", "cache_control": ONE_HOUR}]
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "first question", "cache_control": ONE_HOUR}
    ]
    assert out["messages"][1] is body["messages"][1]
    assert out["messages"][2]["content"] == "second question"
    assert out["cache_control"] == ONE_HOUR
    assert body["system"] == "You are helpful."
    assert body["messages"][0]["content"] == "first question"


def test_hybrid_single_message_has_no_redundant_anchor() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    result = apply_cache_mode(body, "hybrid", subagent=False)
    assert paths(result.body) == [("top-level", "1h")]


def test_hybrid_without_system_anchors_the_last_cacheable_tool() -> None:
    body = claude_code_body()
    del body["system"]
    result = apply_cache_mode(body, "hybrid", subagent=False)
    assert ("tools[1]", "1h") in paths(result.body)
    assert "cache_control" not in result.body["tools"][2]  # defer_loading tools cannot be cached


def test_hybrid_no_anchor_on_thinking_or_empty_text() -> None:
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": ""}],
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "thinking", "thinking": "t"}],
            },
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
        ],
    }
    result = apply_cache_mode(body, "hybrid", subagent=False)
    assert paths(result.body) == [("top-level", "1h")]


def test_hybrid_anchors_are_stable_across_turns() -> None:
    turn1 = opencode_body()
    turn2 = copy.deepcopy(turn1)
    turn2["messages"][-1] = {"role": "user", "content": [{"type": "text", "text": "continue"}]}
    turn2["messages"].append({"role": "assistant", "content": [{"type": "text", "text": "Done."}]})
    turn2["messages"].append({"role": "user", "content": "thanks", "cache_control": None})
    out1 = apply_cache_mode(turn1, "hybrid", subagent=False).body
    out2 = apply_cache_mode(turn2, "hybrid", subagent=False).body
    for key in ("tools", "system"):
        assert json.dumps(out1[key]) == json.dumps(out2[key])
    assert json.dumps(out1["messages"][:4]) == json.dumps(out2["messages"][:4])


def test_hybrid_shares_untouched_parts_with_the_input() -> None:
    body = opencode_body()
    out = apply_cache_mode(body, "hybrid", subagent=False).body
    assert out["tools"] is body["tools"]
    assert out["messages"][1] is body["messages"][1]
    assert out["system"] is not body["system"]


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown cache mode"):
        apply_cache_mode({}, "sometimes", subagent=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "nope", "system": 3, "tools": {"a": 1}},
        {"messages": [None, 1, {"role": "user"}, {"role": "user", "content": [None, "x", {"type": "text"}]}]},
        {"system": [], "messages": [], "tools": []},
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_odd_shapes_do_not_raise(body: dict[str, Any], mode: CacheMode) -> None:
    snapshot = copy.deepcopy(body)
    result = apply_cache_mode(body, mode, subagent=False)
    assert body == snapshot
    assert validate_cache_control(result.body) == []


# -- validator -----------------------------------------------------------------------------------------------


def test_validator_accepts_real_bodies() -> None:
    assert validate_cache_control(opencode_body()) == []
    assert validate_cache_control(claude_code_body()) == []


def test_validator_reports_each_violation() -> None:
    body: dict[str, Any] = {
        "tools": [{"name": "t", "defer_loading": True, "cache_control": dict(EPHEMERAL)}],
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "", "cache_control": {"type": "persistent"}}],
            },
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "cache_control": "yes"}]},
            {
                "role": "user",
                "cache_control": dict(EPHEMERAL),
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "x",
                        "content": [
                            {"type": "text", "text": "r", "cache_control": {"type": "ephemeral", "ttl": "2h"}}
                        ],
                    }
                ],
            },
        ],
        "cache_control": ONE_HOUR,
    }
    problems = validate_cache_control(body)
    assert problems == [
        "7 cache_control breakpoints (at most 4 allowed)",
        "tools[0]: cache_control on a defer_loading tool",
        "messages[0].content[0]: cache_control on an empty text block",
        "messages[0].content[0]: cache_control.type must be 'ephemeral', not 'persistent'",
        "messages[1].content[0]: cache_control on a thinking block",
        "messages[1].content[0]: cache_control is not an object",
        "messages[2]: cache_control on a message object",
        "messages[2].content[0].content[0]: cache_control.ttl must be '5m' or '1h', not '2h'",
        "top-level: a 1h breakpoint after the 5m breakpoint at tools[0]",
    ]
    assert validate_cache_control([]) == ["body is not a JSON object"]


def test_validator_ttl_order() -> None:
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": "a", "cache_control": ONE_HOUR}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "b", "cache_control": dict(EPHEMERAL)}]},
        ],
    }
    assert validate_cache_control(body) == []
    body["messages"][0]["content"][0]["cache_control"] = ONE_HOUR
    body["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
    assert validate_cache_control(body) == [
        "messages[0].content[0]: a 1h breakpoint after the 5m breakpoint at system[0]"
    ]


def test_find_breakpoints_and_paths() -> None:
    assert find_breakpoints(claude_code_body()) == [
        Breakpoint("system[1]", "1h"),
        Breakpoint("system[2]", "1h"),
        Breakpoint("messages[2].content[1]", None),
    ]
    assert Breakpoint("x", None).effective_ttl == "5m"
    assert format_path(()) == "top-level"
    assert format_path(("messages", 3, "content", 0, "content", 2)) == "messages[3].content[0].content[2]"


# -- properties ----------------------------------------------------------------------------------------------

_short_text = st.text(alphabet="abc xyz", max_size=8)
_VALID_CC: list[Any] = [
    {"type": "ephemeral"},
    {"type": "ephemeral", "ttl": "5m"},
    {"type": "ephemeral", "ttl": "1h"},
]
_INVALID_CC: list[Any] = [{"type": "persistent"}, {"type": "ephemeral", "ttl": "2h"}, "ephemeral"]
_CACHE_CONTROLS = _VALID_CC * 6 + _INVALID_CC


@st.composite
def _maybe_cc(draw: st.DrawFn, block: dict[str, Any], rarity: int = 2) -> dict[str, Any]:
    """``block``, with a cache_control about once in ``2 ** rarity`` draws."""
    if all(draw(st.booleans()) for _ in range(rarity)):
        block = {**block, "cache_control": copy.deepcopy(draw(st.sampled_from(_CACHE_CONTROLS)))}
    return block


@st.composite
def _text_block(draw: st.DrawFn) -> dict[str, Any]:
    return draw(_maybe_cc({"type": "text", "text": draw(_short_text)}))


@st.composite
def _content_block(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"])
    )
    block: dict[str, Any]
    if kind == "text":
        return draw(_text_block())
    if kind == "image":
        block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    elif kind == "tool_use":
        block = {"type": "tool_use", "id": "toolu_x", "name": "bash", "input": {"cmd": draw(_short_text)}}
    elif kind == "tool_result":
        inner = draw(st.one_of(_short_text, st.lists(_text_block(), max_size=3)))
        block = {"type": "tool_result", "tool_use_id": "toolu_x", "content": inner}
    elif kind == "thinking":
        block = {"type": "thinking", "thinking": draw(_short_text), "signature": "sig"}
    else:
        block = {"type": "redacted_thinking", "data": "opaque"}
    return draw(_maybe_cc(block))


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    content = draw(st.one_of(_short_text, st.lists(_content_block(), max_size=4)))
    message: dict[str, Any] = {"role": draw(st.sampled_from(["user", "assistant"])), "content": content}
    return draw(_maybe_cc(message, rarity=4))


@st.composite
def _tool(draw: st.DrawFn) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": draw(_short_text), "input_schema": {"type": "object"}}
    if draw(st.booleans()) and draw(st.booleans()):
        tool["defer_loading"] = True
    return draw(_maybe_cc(tool, rarity=3))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}
    system = draw(st.one_of(st.none(), _short_text, st.lists(_text_block(), max_size=4)))
    tools = draw(st.lists(_tool(), max_size=5))
    keys = draw(st.permutations(["system", "tools", "messages"]))
    for key in keys:
        if key == "system" and system is not None:
            body["system"] = system
        elif key == "tools" and tools:
            body["tools"] = tools
        elif key == "messages":
            body["messages"] = draw(st.lists(_message(), min_size=1, max_size=6))
    body = draw(_maybe_cc(body, rarity=3))
    body["stream"] = True
    return body


def _misplaced_breakpoints(body: dict[str, Any]) -> list[str]:
    found = []
    for i, message in enumerate(body.get("messages", [])):
        if "cache_control" in message:
            found.append(f"messages[{i}]")
        if isinstance(message.get("content"), list):
            for j, block in enumerate(message["content"]):
                if block.get("type") in ("thinking", "redacted_thinking") and "cache_control" in block:
                    found.append(f"messages[{i}].content[{j}]")
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=requests(), mode=st.sampled_from(MODES), subagent=st.booleans())
def test_property_every_mode(body: dict[str, Any], mode: CacheMode, subagent: bool) -> None:
    snapshot = copy.deepcopy(body)
    serialised = json.dumps(body)
    input_valid = validate_cache_control(body) == []

    result = apply_cache_mode(body, mode, subagent=subagent)

    assert body == snapshot
    assert json.dumps(body) == serialised
    out = result.body
    if mode == "off" or subagent:
        assert out is body
        assert not result.changed
    else:
        assert validate_cache_control(out) == []
        assert len(find_breakpoints(out)) <= MAX_BREAKPOINTS
        assert _misplaced_breakpoints(out) == []
        assert all(bp.ttl == "1h" for bp in find_breakpoints(out))
        assert result.changed == (out is not body)
        again = apply_cache_mode(out, mode, subagent=False)
        assert json.dumps(again.body) == json.dumps(out)
    if input_valid:
        assert validate_cache_control(out) == []
    assert normalized_without_cache_control(out) == normalized_without_cache_control(body)
    if mode == "automatic" and not subagent:
        assert [bp.path for bp in find_breakpoints(out)] == ["top-level"]
