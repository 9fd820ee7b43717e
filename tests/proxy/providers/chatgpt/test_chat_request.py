"""Chat Completions requests → Responses requests (proxy.providers.chatgpt.chat_request)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proxy.providers.chatgpt.chat_request import ChatTranslationError, chat_include_usage, chat_to_responses
from proxy.providers.chatgpt.request import to_codex_request

from .test_request import WEB_SEARCH, assert_codex_invariants

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
