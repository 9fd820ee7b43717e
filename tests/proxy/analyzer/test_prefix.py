from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from proxy.analyzer.prefix import format_path, prompt_diff, strip_cache_control

CC = {"type": "ephemeral", "ttl": "1h"}


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": CC}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "first question"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
            {"role": "user", "content": [{"type": "text", "text": "second question", "cache_control": CC}]},
        ],
        "tools": [
            {"name": "bash", "description": "Run a shell command", "input_schema": {"type": "object"}},
            {"name": "read", "description": "Read a file", "input_schema": {"type": "object"}},
        ],
        "stream": True,
    }
    base.update(overrides)
    return base


def encode(obj: dict[str, Any], **kwargs: Any) -> bytes:
    return json.dumps(obj, **kwargs).encode()


def test_identical_bodies() -> None:
    diff = prompt_diff(encode(body()), encode(body()))
    assert diff is not None
    assert diff.identical and diff.part is None and diff.shared_fraction == 1.0


def test_appending_messages_keeps_the_prefix_and_moving_cache_control_is_ignored() -> None:
    prev = body()
    cur = copy.deepcopy(prev)
    del cur["messages"][2]["content"][0][
        "cache_control"
    ]  # the agent moves its breakpoint to the new last message
    cur["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "second answer"}]},
        {"role": "user", "content": [{"type": "text", "text": "third", "cache_control": CC}]},
    ]
    raw = encode(cur)
    diff = prompt_diff(encode(prev), raw)
    assert diff is not None
    assert diff.appended_only and not diff.identical
    assert diff.part == "messages[3]"
    assert diff.offset is not None and raw[diff.offset :].startswith(
        b'{"role": "assistant", "content": [{"type": "text", "text": "second answer"'
    )
    assert 0.5 < diff.shared_fraction < 1.0


def test_a_changed_tool_breaks_in_prompt_order_even_when_tools_come_last_in_the_body() -> None:
    prev = body()
    cur = copy.deepcopy(prev)
    cur["tools"][1]["description"] = "Read a file from disk"
    raw = encode(cur)
    diff = prompt_diff(encode(prev), raw)
    assert diff is not None
    assert diff.part == "tools" and diff.path == "tools[1].description"
    assert not diff.appended_only
    # the byte offset points at the first differing character inside the description string
    assert diff.offset is not None and raw[diff.offset :].startswith(b' from disk"')
    # tools come first in prompt order: only the first tool is shared
    first_tool = len(json.dumps(prev["tools"][0], separators=(",", ":")))
    assert diff.shared_fraction < 0.5 and diff.shared_fraction > first_tool / len(raw) / 2


def test_system_change_points_at_the_character() -> None:
    prev = body()
    cur = body(system=[{"type": "text", "text": "You are a careful coding agent.", "cache_control": CC}])
    raw = encode(cur, separators=(",", ":"))
    diff = prompt_diff(encode(prev), raw)
    assert diff is not None
    assert diff.part == "system" and diff.path == "system[0].text"
    assert diff.offset is not None and raw[diff.offset :].startswith(
        b'areful coding agent."'
    )  # "c" is shared with "coding"


def test_message_edit_inside_history() -> None:
    prev = body()
    cur = copy.deepcopy(prev)
    cur["messages"][1]["content"][0]["text"] = "first answer, edited"
    diff = prompt_diff(encode(prev), encode(cur))
    assert diff is not None
    assert diff.part == "messages[1]" and diff.path == "messages[1].content[0].text"


def test_offsets_count_utf8_bytes_and_json_escapes() -> None:
    prev = body(system='Ünïcödé "quoted"\nline two é')
    cur = body(system='Ünïcödé "quoted"\nline two è')
    raw = json.dumps(cur, ensure_ascii=False).encode("utf-8")
    diff = prompt_diff(encode(prev), raw)
    assert diff is not None and diff.path == "system"
    assert diff.offset is not None and raw[diff.offset :].startswith("è".encode())
    raw_ascii = encode(cur)  # \u escapes
    diff = prompt_diff(encode(prev), raw_ascii)
    assert diff is not None and diff.offset is not None
    assert raw_ascii[diff.offset :].startswith(b"\\u00e8")


def test_another_model_shares_nothing() -> None:
    diff = prompt_diff(encode(body()), encode(body(model="claude-haiku-4-5")))
    assert diff is not None
    assert diff.part == "model" and diff.shared_fraction == 0.0


def test_a_non_prompt_change_is_named_but_keeps_the_prefix() -> None:
    diff = prompt_diff(encode(body()), encode(body(max_tokens=2048)))
    assert diff is not None
    assert not diff.identical and diff.part == "max_tokens" and diff.shared_fraction == 1.0


def test_responses_api_bodies_use_instructions_and_input() -> None:
    prev: dict[str, Any] = {
        "model": "gpt-5",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": "a"}],
        "tools": [],
    }
    cur = copy.deepcopy(prev)
    cur["input"].append({"role": "user", "content": "b"})
    diff = prompt_diff(encode(prev), encode(cur))
    assert diff is not None and diff.appended_only and diff.part == "input[1]"


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]"])
def test_non_objects_give_none(bad: bytes) -> None:
    assert prompt_diff(bad, encode(body())) is None
    assert prompt_diff(encode(body()), bad) is None


def test_helpers() -> None:
    assert format_path(("messages", 3, "content", 0, "text")) == "messages[3].content[0].text"
    assert strip_cache_control({"a": [{"cache_control": CC, "b": 1}], "cache_control": CC}) == {
        "a": [{"b": 1}]
    }
