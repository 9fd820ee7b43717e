from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.codex_shape import (
    DEFAULT_INSTRUCTIONS,
    DONE_FRAME,
    REMOVED_FIELDS,
    ChatTranslationError,
    CodexResponseError,
    ResponsesToChatStream,
    SseEvent,
    UsageLimit,
    aggregate_responses_stream,
    chat_include_usage,
    chat_to_responses,
    encode_chunk,
    parse_usage_limit_error,
    responses_to_chat_completion,
    to_codex_request,
)

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


def test_previous_response_id_is_kept_for_the_backend_to_judge() -> None:
    out = to_codex_request(
        {"previous_response_id": "resp_1", "input": []}, stabilize_cache=False, session_id=None
    )
    assert out["previous_response_id"] == "resp_1"


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
def test_input_is_never_mutated_nor_shared(make: Any) -> None:
    body = make()
    before = copy.deepcopy(body)
    out = to_codex_request(body, stabilize_cache=True, session_id="s")
    assert body == before
    out["tools"].append({"type": "function", "name": "extra"})
    out["input"].clear()
    if "reasoning" in out:
        out["reasoning"]["effort"] = "high"
    assert body == before


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


# --- chat_to_responses -------------------------------------------------------------------------------------------


def chat_tool_conversation() -> dict[str, Any]:
    return {
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content": "You are a helpful coding assistant."},
            {"role": "developer", "content": [{"type": "text", "text": "Prefer short answers."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these files? Here is a screenshot too."},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read", "arguments": '{"p":"a.py"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "read", "arguments": '{"p":"b.py"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "print('a')"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "print('b')"}]},
            {"role": "assistant", "content": "Both files print a letter."},
            {"role": "system", "content": "The user is in a hurry."},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read",
                    "description": "Read a file",
                    "parameters": {"type": "object", "properties": {"p": {"type": "string"}}},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "read"}},
        "parallel_tool_calls": True,
        "reasoning_effort": "low",
        "max_completion_tokens": 2048,
        "temperature": 0.2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_chat_multi_turn_tool_conversation_maps_to_responses_items() -> None:
    body = chat_tool_conversation()
    before = copy.deepcopy(body)
    out = chat_to_responses(body)
    assert body == before
    assert out["model"] == "gpt-5"
    assert out["instructions"] == "You are a helpful coding assistant.\n\nPrefer short answers."
    assert out["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these files? Here is a screenshot too."},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            ],
        },
        {"type": "function_call", "call_id": "call_1", "name": "read", "arguments": '{"p":"a.py"}'},
        {"type": "function_call", "call_id": "call_2", "name": "read", "arguments": '{"p":"b.py"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "print('a')"},
        {"type": "function_call_output", "call_id": "call_2", "output": "print('b')"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Both files print a letter.", "annotations": []}],
        },
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "The user is in a hurry."}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "name": "read",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"p": {"type": "string"}}},
            "strict": True,
        }
    ]
    assert out["tool_choice"] == {"type": "function", "name": "read"}
    assert out["parallel_tool_calls"] is True
    assert out["reasoning"] == {"effort": "low"}
    assert out["max_output_tokens"] == 2048
    assert out["temperature"] == 0.2
    assert out["text"] == {
        "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}
    }
    assert out["stream"] is True
    assert "stream_options" not in out and "messages" not in out
    assert chat_include_usage(body) is True


def test_chat_request_then_codex_request_is_a_valid_backend_body() -> None:
    responses = chat_to_responses(chat_tool_conversation())
    out = to_codex_request(responses, stabilize_cache=True, session_id="sess-1")
    assert_codex_invariants(out)
    assert "max_output_tokens" not in out and "temperature" not in out
    assert out["tools"][-1] == WEB_SEARCH
    assert out["prompt_cache_key"] == "sess-1"
    call_ids = [item["call_id"] for item in out["input"] if "call_id" in item]
    assert call_ids == ["call_1", "call_2", "call_1", "call_2"]


def test_chat_simple_options() -> None:
    out = chat_to_responses(
        {
            "model": "gpt-5",
            "messages": [{"role": "user", "content": "hi"}],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "max_tokens": 10,
        }
    )
    assert "instructions" not in out
    assert out["tool_choice"] == "required"
    assert out["text"] == {"format": {"type": "json_object"}}
    assert out["max_output_tokens"] == 10
    assert out["stream"] is False
    assert chat_include_usage({"stream": True}) is False


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}], "n": 2},
        {"messages": [{"role": "oracle", "content": "hi"}]},
        {"messages": [{"role": "tool", "content": "out"}]},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {"messages": "hi"},
    ],
    ids=["n>1", "unknown-role", "tool-without-call-id", "audio-part", "messages-not-list"],
)
def test_chat_requests_we_cannot_express_raise(body: dict[str, Any]) -> None:
    with pytest.raises(ChatTranslationError):
        chat_to_responses(body)


# --- stream translation ------------------------------------------------------------------------------------------


def ev(kind: str, **fields: Any) -> SseEvent:
    return (kind, {"type": kind, **fields})


USAGE = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 85,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 1285,
}


def response_obj(
    status: str = "in_progress", output: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": "resp_68f1c0ffee",
        "object": "response",
        "created_at": 1761000000,
        "status": status,
        "model": "gpt-5-2025-08-07",
        "output": output or [],
        **extra,
    }


MESSAGE_ITEM = {
    "id": "msg_1",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hello there!", "annotations": []}],
}
REASONING_ITEM = {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "gAAA"}


def text_events(*, completed_output: list[Any] | None = None) -> list[SseEvent]:
    return [
        ev("response.created", sequence_number=0, response=response_obj()),
        ev("response.in_progress", sequence_number=1, response=response_obj()),
        ev(
            "response.output_item.added",
            output_index=0,
            item={"id": "rs_1", "type": "reasoning", "summary": []},
        ),
        ev("response.reasoning_summary_text.delta", item_id="rs_1", output_index=0, delta="Thinking"),
        ev("response.output_item.done", output_index=0, item=REASONING_ITEM),
        ev(
            "response.output_item.added",
            output_index=1,
            item={
                "id": "msg_1",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        ),
        ev("response.content_part.added", item_id="msg_1", output_index=1, content_index=0, part={}),
        ev("response.output_text.delta", item_id="msg_1", output_index=1, content_index=0, delta="Hello"),
        ev("response.output_text.delta", item_id="msg_1", output_index=1, content_index=0, delta=" there"),
        ev("response.output_text.delta", item_id="msg_1", output_index=1, content_index=0, delta="!"),
        ev(
            "response.output_text.done", item_id="msg_1", output_index=1, content_index=0, text="Hello there!"
        ),
        ev("response.output_item.done", output_index=1, item=MESSAGE_ITEM),
        ev(
            "response.completed",
            response=response_obj(
                "completed",
                completed_output if completed_output is not None else [REASONING_ITEM, MESSAGE_ITEM],
            ),
        ),
    ]


def with_usage(events: list[SseEvent]) -> list[SseEvent]:
    name, data = events[-1]
    return [*events[:-1], (name, {**data, "response": {**data["response"], "usage": USAGE}})]


def frames_to_chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    chunks = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        chunks.append(json.loads(frame[len(b"data: ") : -2]))
    return chunks


def test_text_stream_translates_to_chat_chunks() -> None:
    translator = ResponsesToChatStream(model="gpt-5")
    frames = list(translator.wire(with_usage(text_events())))
    assert frames[-1] == DONE_FRAME
    chunks = frames_to_chunks(frames)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"chatcmpl-68f1c0ffee"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"gpt-5"}
    assert {c["created"] for c in chunks} == {1761000000}
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert contents == ["Hello", " there", "!"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)
    assert translator.finished


def test_usage_chunk_only_when_include_usage() -> None:
    frames = list(ResponsesToChatStream(model="gpt-5", include_usage=True).wire(with_usage(text_events())))
    assert frames[-1] == DONE_FRAME
    chunks = frames_to_chunks(frames)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 1200,
        "completion_tokens": 85,
        "total_tokens": 1285,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])


CALL_ITEM = {
    "id": "fc_1",
    "type": "function_call",
    "status": "completed",
    "call_id": "call_X9",
    "name": "read",
    "arguments": '{"filePath":"README.md"}',
}


def function_call_events() -> list[SseEvent]:
    added = {**CALL_ITEM, "status": "in_progress", "arguments": ""}
    return [
        ev("response.created", response=response_obj()),
        ev(
            "response.output_item.added",
            output_index=0,
            item={"id": "rs_1", "type": "reasoning", "summary": []},
        ),
        ev("response.output_item.done", output_index=0, item=REASONING_ITEM),
        ev("response.output_item.added", output_index=1, item=added),
        ev("response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='{"fileP'),
        ev("response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='ath":"READ'),
        ev("response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='ME.md"}'),
        ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=1,
            arguments=CALL_ITEM["arguments"],
        ),
        ev("response.output_item.done", output_index=1, item=CALL_ITEM),
        ev(
            "response.completed", response=response_obj("completed", [REASONING_ITEM, CALL_ITEM], usage=USAGE)
        ),
    ]


def test_function_call_stream_translates_to_tool_call_chunks() -> None:
    translator = ResponsesToChatStream(model="gpt-5", chunk_id="chatcmpl-fixed", created=42)
    chunks: list[dict[str, Any]] = []
    for name, data in function_call_events():
        chunks.extend(translator.feed(name, data))
    translator.close()
    assert {c["id"] for c in chunks} == {"chatcmpl-fixed"}
    assert {c["created"] for c in chunks} == {42}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {
        "tool_calls": [
            {"index": 0, "id": "call_X9", "type": "function", "function": {"name": "read", "arguments": ""}}
        ]
    }
    argument_parts = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1]]
    assert argument_parts == ['{"fileP', 'ath":"READ', 'ME.md"}']
    assert all(d["tool_calls"][0]["index"] == 0 for d in deltas[2:-1])
    assert "".join(argument_parts) == CALL_ITEM["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_two_parallel_calls_get_their_own_indexes() -> None:
    second = {**CALL_ITEM, "id": "fc_2", "call_id": "call_Y", "arguments": "{}"}
    events = [
        ev("response.created", response=response_obj()),
        ev("response.output_item.added", output_index=0, item={**CALL_ITEM, "arguments": ""}),
        ev("response.output_item.added", output_index=1, item={**second, "arguments": ""}),
        ev("response.function_call_arguments.delta", item_id="fc_2", output_index=1, delta="{}"),
        ev(
            "response.function_call_arguments.delta",
            item_id="fc_1",
            output_index=0,
            delta=CALL_ITEM["arguments"],
        ),
        ev("response.completed", response=response_obj("completed", [CALL_ITEM, second])),
    ]
    chunks = frames_to_chunks(list(ResponsesToChatStream(model="gpt-5").wire(events)))
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert [(c["index"], c.get("id")) for c in calls] == [(0, "call_X9"), (1, "call_Y"), (1, None), (0, None)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_text_that_arrives_only_in_done_events_is_sent_once() -> None:
    events = [
        ev("response.created", response=response_obj()),
        ev("response.output_item.done", output_index=0, item=MESSAGE_ITEM),
        ev("response.completed", response=response_obj("completed", [MESSAGE_ITEM])),
    ]
    chunks = frames_to_chunks(list(ResponsesToChatStream(model="gpt-5").wire(events)))
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert contents == ["", "Hello there!", None]


def test_incomplete_for_max_tokens_finishes_with_length() -> None:
    events = [
        *text_events()[:-1],
        ev(
            "response.incomplete",
            response=response_obj(
                "incomplete", [MESSAGE_ITEM], incomplete_details={"reason": "max_output_tokens"}, usage=USAGE
            ),
        ),
    ]
    chunks = frames_to_chunks(list(ResponsesToChatStream(model="gpt-5").wire(events)))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello there!"


def test_failed_response_raises_with_code() -> None:
    translator = ResponsesToChatStream(model="gpt-5")
    assert translator.feed(*ev("response.created", response=response_obj()))
    failed = response_obj(
        "failed",
        error={"code": "context_length_exceeded", "message": "Your input exceeds the context window."},
    )
    with pytest.raises(CodexResponseError) as info:
        translator.feed(*ev("response.failed", response=failed))
    assert info.value.code == "context_length_exceeded"
    assert info.value.message == "Your input exceeds the context window."
    assert info.value.response is not None and info.value.response["status"] == "failed"


def test_error_event_raises() -> None:
    with pytest.raises(CodexResponseError) as info:
        ResponsesToChatStream(model="gpt-5").feed(
            "error", {"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}
        )
    assert info.value.code == "rate_limit_exceeded"


def test_stream_without_completed_raises_before_done() -> None:
    frames: list[bytes] = []
    with pytest.raises(CodexResponseError) as info:
        frames.extend(ResponsesToChatStream(model="gpt-5").wire(text_events()[:-1]))
    assert info.value.code == "stream_truncated"
    assert DONE_FRAME not in frames


def test_encode_chunk_frames_compact_json() -> None:
    assert encode_chunk({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()


# --- aggregation -------------------------------------------------------------------------------------------------


def test_aggregate_prefers_completed_output() -> None:
    result = aggregate_responses_stream(with_usage(text_events()))
    assert result["status"] == "completed"
    assert result["output"] == [REASONING_ITEM, MESSAGE_ITEM]
    assert result["usage"] == USAGE


def test_aggregate_assembles_output_from_item_done_events_when_completed_is_empty() -> None:
    events = text_events(completed_output=[])
    # Deliver the done events out of order: output_index decides the order.
    done = [e for e in events if e[0] == "response.output_item.done"]
    others = [e for e in events if e[0] != "response.output_item.done"]
    result = aggregate_responses_stream([*others[:-1], done[1], done[0], others[-1]])
    assert result["output"] == [REASONING_ITEM, MESSAGE_ITEM]


def test_aggregate_without_completed_raises() -> None:
    with pytest.raises(CodexResponseError) as info:
        aggregate_responses_stream(text_events()[:-1])
    assert info.value.code == "stream_truncated"


def test_aggregate_failed_raises_with_code() -> None:
    failed = response_obj("failed", error={"code": "usage_not_included", "message": "Upgrade your plan."})
    with pytest.raises(CodexResponseError) as info:
        aggregate_responses_stream([*text_events()[:3], ev("response.failed", response=failed)])
    assert info.value.code == "usage_not_included"


def test_aggregate_incomplete_returns_incomplete_object() -> None:
    incomplete = response_obj("incomplete", [], incomplete_details={"reason": "max_output_tokens"})
    result = aggregate_responses_stream([*text_events()[:-1], ev("response.incomplete", response=incomplete)])
    assert result["status"] == "incomplete"
    assert result["output"] == [REASONING_ITEM, MESSAGE_ITEM]
    completion = responses_to_chat_completion(result, model="gpt-5")
    assert completion["choices"][0]["finish_reason"] == "length"


def test_chat_completion_from_text_response() -> None:
    completion = responses_to_chat_completion(
        aggregate_responses_stream(with_usage(text_events())), model="gpt-5"
    )
    assert completion["id"] == "chatcmpl-68f1c0ffee"
    assert completion["object"] == "chat.completion"
    assert completion["created"] == 1761000000
    assert completion["model"] == "gpt-5"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert completion["usage"]["prompt_tokens"] == 1200
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 1024}
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 64}


def test_chat_completion_from_tool_call_response() -> None:
    completion = responses_to_chat_completion(aggregate_responses_stream(function_call_events()))
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_X9",
            "type": "function",
            "function": {"name": "read", "arguments": '{"filePath":"README.md"}'},
        }
    ]
    assert completion["model"] == "gpt-5-2025-08-07"
    assert completion["usage"]["total_tokens"] == 1285


# --- usage limits ------------------------------------------------------------------------------------------------


def test_usage_limit_with_resets_at_from_bytes() -> None:
    body = json.dumps(
        {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": 1761003600,
                "resets_in_seconds": 999,
            }
        }
    ).encode()
    assert parse_usage_limit_error(429, body, now=1761000000.0) == UsageLimit(
        kind="usage_limit_reached", resets_at=1761003600.0, plan_type="plus"
    )


def test_usage_limit_with_only_resets_in_seconds() -> None:
    body = {"error": {"type": "usage_limit_reached", "plan_type": "pro", "resets_in_seconds": 3600}}
    limit = parse_usage_limit_error(429, body, now=1000.0)
    assert limit == UsageLimit(kind="usage_limit_reached", resets_at=4600.0, plan_type="pro")


def test_usage_not_included_without_reset() -> None:
    limit = parse_usage_limit_error(
        429, {"error": {"type": "usage_not_included", "plan_type": "free"}}, now=0.0
    )
    assert limit == UsageLimit(kind="usage_not_included", resets_at=None, plan_type="free")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"error": {"type": "usage_limit_reached"}}),
        (429, {"error": {"type": "rate_limit_exceeded"}}),
        (429, b"not json"),
        (429, b"[]"),
        (429, {"detail": "Too many requests"}),
    ],
)
def test_other_errors_are_not_usage_limits(status: int, body: Any) -> None:
    assert parse_usage_limit_error(status, body, now=0.0) is None
