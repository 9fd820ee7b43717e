"""An agent's Responses request → the Codex backend's body (proxy.providers.chatgpt.request)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.chatgpt.request import DEFAULT_INSTRUCTIONS, REMOVED_FIELDS, to_codex_request

WEB_SEARCH = {"type": "web_search", "external_web_access": False}

SHELL_TOOL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command and returns its output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "command": {"type": "array", "items": {"type": "string"}},
            "workdir": {"type": "string"},
        },
        "required": ["command"],
        "additionalProperties": False,
    },
}
READ_TOOL = {
    "type": "function",
    "name": "read",
    "description": "Read a file",
    "parameters": {
        "type": "object",
        "properties": {"filePath": {"type": "string"}},
        "required": ["filePath"],
    },
    "strict": False,
}


def codex_cli_request() -> dict[str, Any]:
    """What `codex exec` sends: instructions, developer + user context, a tool round, freeform apply_patch."""
    return {
        "model": "gpt-5-codex",
        "instructions": "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [
                    {"type": "input_text", "text": "<permissions instructions>read-only</permissions>"}
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "<environment_context><cwd>/repo</cwd></environment_context>",
                    }
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "list the files"}],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "**Listing files**"}],
                "content": None,
                "encrypted_content": "gAAAAABo-encrypted",
            },
            {
                "type": "function_call",
                "name": "shell",
                "arguments": '{"command":["ls"]}',
                "call_id": "call_A1",
            },
            {"type": "function_call_output", "call_id": "call_A1", "output": "README.md\nsrc\n"},
        ],
        "tools": [
            SHELL_TOOL,
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Apply a patch",
                "format": {"type": "grammar"},
            },
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a6c2-5a41-7c12-9d3e-3c1f2b7d8e90",
        "text": {"verbosity": "medium"},
    }


def opencode_request() -> dict[str, Any]:
    """The AI SDK's Responses request from OpenCode: system prompt in input, ids, item_reference, sampling knobs."""
    return {
        "model": "gpt-5",
        "input": [
            {"role": "developer", "content": "You are opencode, an interactive CLI tool that helps users."},
            {"role": "developer", "content": "Working directory: /repo\nPlatform: linux"},
            {"role": "user", "content": [{"type": "input_text", "text": "read README.md"}], "id": "msg_u1"},
            {"type": "reasoning", "id": "rs_68f0a1", "summary": []},
            {"type": "item_reference", "id": "rs_68f0a2"},
            {
                "type": "reasoning",
                "id": "rs_68f0a3",
                "summary": [],
                "encrypted_content": "gAAAAABo-enc3",
            },
            {
                "type": "function_call",
                "id": "fc_68f0a4",
                "call_id": "call_R1",
                "name": "read",
                "arguments": '{"filePath":"README.md"}',
            },
            {"type": "function_call_output", "call_id": "call_R1", "output": "# Project"},
            {
                "role": "assistant",
                "id": "msg_a1",
                "content": [{"type": "output_text", "text": "It is a project readme.", "annotations": []}],
            },
            {"role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
        ],
        "max_output_tokens": 32000,
        "temperature": 1,
        "top_p": 1,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "ses_4f2a9c1b7e",
        "reasoning": {"effort": "medium", "summary": "auto"},
        "text": {"verbosity": "low"},
        "tools": [READ_TOOL],
        "tool_choice": "auto",
        "metadata": {"session": "ses_4f2a9c1b7e"},
        "truncation": "disabled",
        "user": "someone",
    }


def pi_request() -> dict[str, Any]:
    """Pi's openai-responses provider: string developer prompt, streaming, no cache key (it sends session_id)."""
    return {
        "model": "gpt-5.1-codex",
        "input": [
            {"role": "developer", "content": "You are pi, a coding agent."},
            {"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
        ],
        "stream": True,
        "max_output_tokens": 16384,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["message.output_text.logprobs"],
        "tools": [
            {
                "type": "function",
                "name": "bash",
                "description": "Run bash",
                "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
                "strict": None,
            }
        ],
    }


# --- to_codex_request --------------------------------------------------------------------------------------------


def assert_codex_invariants(out: dict[str, Any]) -> None:
    assert out["store"] is False
    assert out["stream"] is True
    assert "reasoning.encrypted_content" in out["include"]
    assert not REMOVED_FIELDS & out.keys()
    assert isinstance(out["instructions"], str) and out["instructions"]
    assert isinstance(out["input"], list)


def test_codex_cli_request_passes_through_unchanged_where_it_already_fits() -> None:
    body = codex_cli_request()
    out = to_codex_request(body, stabilize_cache=True, session_id="other-session")
    assert_codex_invariants(out)
    assert out["instructions"] == body["instructions"]
    assert out["input"] == body["input"]
    # A freeform custom tool means "not all function tools": no web_search is added.
    assert out["tools"] == body["tools"]
    assert out["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]
    assert out["prompt_cache_key"] == "0199a6c2-5a41-7c12-9d3e-3c1f2b7d8e90"
    assert out["text"] == {"verbosity": "medium"}
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is False
    assert out == {**body, "store": False, "stream": True}


def test_opencode_request_loses_rejected_fields_and_stored_item_references() -> None:
    body = opencode_request()
    out = to_codex_request(body, stabilize_cache=False, session_id=None)
    assert_codex_invariants(out)
    for key in ("max_output_tokens", "temperature", "top_p", "metadata", "truncation", "user"):
        assert key not in out
    assert out["instructions"] == (
        "You are opencode, an interactive CLI tool that helps users.\n\nWorking directory: /repo\nPlatform: linux"
    )
    assert out["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "read README.md"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABo-enc3"},
        {
            "type": "function_call",
            "call_id": "call_R1",
            "name": "read",
            "arguments": '{"filePath":"README.md"}',
        },
        {"type": "function_call_output", "call_id": "call_R1", "output": "# Project"},
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is a project readme.", "annotations": []}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
    ]
    assert all("id" not in item for item in out["input"])
    assert out["model"] == "gpt-5"
    assert out["prompt_cache_key"] == "ses_4f2a9c1b7e"
    assert out["reasoning"] == body["reasoning"]
    assert out["text"] == {"verbosity": "low"}
    assert out["tools"] == [READ_TOOL]
    assert out["include"] == ["reasoning.encrypted_content"]


def test_pi_request_gets_instructions_cache_key_and_merged_include() -> None:
    out = to_codex_request(pi_request(), stabilize_cache=False, session_id="pi-session-7")
    assert_codex_invariants(out)
    assert out["instructions"] == "You are pi, a coding agent."
    assert out["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]}]
    assert out["prompt_cache_key"] == "pi-session-7"
    assert out["include"] == ["message.output_text.logprobs", "reasoning.encrypted_content"]
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is False
    assert "max_output_tokens" not in out


def test_string_input_becomes_one_user_message_and_missing_instructions_get_the_default() -> None:
    out = to_codex_request({"model": "gpt-5", "input": "hello"}, stabilize_cache=True, session_id=None)
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    ]
    assert out["instructions"] == DEFAULT_INSTRUCTIONS
    assert out["tools"] == []
    assert "prompt_cache_key" not in out


def test_system_message_with_an_image_is_not_lifted() -> None:
    image_system = {
        "type": "message",
        "role": "system",
        "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
    }
    out = to_codex_request({"input": [image_system, "x"]}, stabilize_cache=False, session_id=None)
    assert out["instructions"] == DEFAULT_INSTRUCTIONS
    assert out["input"][0] == image_system


def test_noop_service_tier_is_dropped_and_a_real_one_kept() -> None:
    assert "service_tier" not in to_codex_request(
        {"service_tier": "auto"}, stabilize_cache=False, session_id=None
    )
    kept = to_codex_request({"service_tier": "priority"}, stabilize_cache=False, session_id=None)
    assert kept["service_tier"] == "priority"


@pytest.mark.parametrize("key", ["previous_response_id", "conversation"])
def test_an_id_the_backend_cannot_resolve_is_refused_naming_it(key: str) -> None:
    # With store:false the backend resolves nothing over HTTP: forwarding the id would fail upstream or, worse,
    # be ignored; dropping it would cut the conversation short without a word.
    with pytest.raises(ValueError, match=f"{key} 'resp_1' cannot be resolved.*whole conversation"):
        to_codex_request({key: "resp_1", "input": []}, stabilize_cache=False, session_id=None)
    out = to_codex_request({key: None, "input": []}, stabilize_cache=False, session_id=None)
    assert key not in out or out[key] is None


@pytest.mark.parametrize(
    ("tools", "tool_choice", "stabilize", "expected_tools"),
    [
        ([SHELL_TOOL, READ_TOOL], "auto", True, [SHELL_TOOL, READ_TOOL, WEB_SEARCH]),
        ([SHELL_TOOL, READ_TOOL], "auto", False, [SHELL_TOOL, READ_TOOL]),
        ([], "auto", True, []),
        (None, None, True, []),
        ([SHELL_TOOL, {"type": "web_search"}], "auto", True, [SHELL_TOOL, {"type": "web_search"}]),
        ([SHELL_TOOL], "required", True, [SHELL_TOOL]),
        ([SHELL_TOOL], {"type": "function", "name": "shell"}, True, [SHELL_TOOL, WEB_SEARCH]),
    ],
    ids=["on", "off", "empty-tools", "no-tools", "already-web-search", "tool-required", "named-tool"],
)
def test_cache_stabilizer(tools: Any, tool_choice: Any, stabilize: bool, expected_tools: list[Any]) -> None:
    body: dict[str, Any] = {"model": "gpt-5", "input": "hi"}
    if tools is not None:
        body["tools"] = tools
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    out = to_codex_request(body, stabilize_cache=stabilize, session_id=None)
    assert out["tools"] == expected_tools
    assert sum(1 for t in out["tools"] if t.get("type") == "web_search") <= 1


@pytest.mark.parametrize("make", [codex_cli_request, opencode_request, pi_request])
def test_input_is_never_mutated_and_the_lists_headway_changes_are_new(make: Any) -> None:
    body = make()
    before = copy.deepcopy(body)
    out = to_codex_request(body, stabilize_cache=True, session_id="s")
    assert body == before
    out["tools"].append({"type": "function", "name": "extra"})
    out["input"].clear()
    assert body == before
    # The values inside are the agent's own, not copies (a deep copy cost 7 ms on a 620 KB body): the result is
    # serialized right away and never changed.
    if "reasoning" in body:
        assert out["reasoning"] is body["reasoning"]


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
REQUEST_KEYS = [
    *sorted(REMOVED_FIELDS),
    *("model", "input", "instructions", "tools", "tool_choice", "include", "store", "stream", "reasoning"),
    *("text", "prompt_cache_key", "service_tier", "parallel_tool_calls", "previous_response_id"),
]
request_keys = st.sampled_from(REQUEST_KEYS) | st.text(max_size=10)


input_items = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["message", "item_reference", "reasoning", "function_call"])
            | json_values,
            "role": st.sampled_from(["system", "developer", "user", "assistant"]) | json_values,
            "content": st.text(max_size=5)
            | st.lists(st.fixed_dictionaries({"type": st.just("input_text"), "text": st.text(max_size=5)}))
            | json_values,
            "id": st.text(max_size=6),
            "encrypted_content": st.text(max_size=4),
        },
    ),
    max_size=6,
)
tool_lists = st.lists(
    st.sampled_from(
        [SHELL_TOOL, READ_TOOL, {"type": "web_search"}, {"type": "custom", "name": "apply_patch"}]
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(request_keys, json_values, max_size=12),
    input_value=st.none() | st.text(max_size=5) | input_items,
    tools=st.none() | tool_lists,
    stabilize=st.booleans(),
    session=st.none() | st.text(max_size=6),
)
def test_property_codex_request_invariants(
    body: dict[str, Any], input_value: Any, tools: Any, stabilize: bool, session: str | None
) -> None:
    if input_value is not None:
        body["input"] = input_value
    if tools is not None:
        body["tools"] = tools
    body.pop("previous_response_id", None)  # refused (its own test)
    before = copy.deepcopy(body)
    out = to_codex_request(body, stabilize_cache=stabilize, session_id=session)
    assert_codex_invariants(out)
    assert body == before
    dict_items = [item for item in out["input"] if isinstance(item, dict)]
    assert all("id" not in item and item.get("type") != "item_reference" for item in dict_items)
    sent_tools: list[Any] = before["tools"] if isinstance(before.get("tools"), list) else []
    assert out["tools"][: len(sent_tools)] == sent_tools
    added = out["tools"][len(sent_tools) :]
    assert added in ([], [WEB_SEARCH])
    if added:
        assert stabilize and sent_tools and all(t.get("type") == "function" for t in sent_tools)


def lite_request() -> dict[str, Any]:
    """What the Codex CLI sends for a model its catalog marks use_responses_lite (shape seen in 0.169's binary)."""
    developer = {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "be brief"}],
    }
    tools = {"type": "additional_tools", "tools": [SHELL_TOOL]}
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    return {
        "model": "gpt-5.6-sol",
        "instructions": "",
        "input": [developer, tools, user],
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium", "context": "all_turns"},
        "store": False,
        "stream": True,
    }


def test_a_responses_lite_body_keeps_its_dialect() -> None:
    body = lite_request()
    out = to_codex_request(body, stabilize_cache=True, session_id="s", lite=True)
    assert out["instructions"] == ""  # no generic instructions, nothing lifted out of input
    assert out["input"] == body["input"]
    assert out["tools"] == []  # no stabilizer tool: Lite carries its tools inside input
    assert out["parallel_tool_calls"] is False  # the backend refuses Lite with parallel tool calls
    assert out["reasoning"] == {"effort": "medium", "context": "all_turns"}
    assert (
        to_codex_request({"input": "x"}, stabilize_cache=False, session_id=None, lite=True)["instructions"]
        == ""
    )
    classic = to_codex_request(body, stabilize_cache=True, session_id="s")
    assert classic["instructions"] == "be brief" and classic["parallel_tool_calls"] is True
