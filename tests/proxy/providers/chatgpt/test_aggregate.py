"""The backend's Responses SSE → one Responses object → one chat completion (proxy.providers.chatgpt.aggregate)."""

from __future__ import annotations

import pytest

from proxy.providers.chatgpt.aggregate import aggregate_responses_stream, responses_to_chat_completion
from proxy.providers.chatgpt.events import CodexResponseError

from .responses_events import (
    MESSAGE_ITEM,
    REASONING_ITEM,
    USAGE,
    ev,
    function_call_events,
    response_obj,
    text_events,
    with_usage,
)


def test_aggregate_prefers_completed_output() -> None:
    result = aggregate_responses_stream(with_usage(text_events()))
    assert result["status"] == "completed"
    assert result["output"] == [REASONING_ITEM, MESSAGE_ITEM]
    assert result["usage"] == USAGE


def test_aggregate_assembles_output_from_item_done_events_when_completed_is_empty() -> None:
    events = text_events(completed_output=[])
    # Deliver the done events out of order: output_index decides the order.
    done = [e for e in events if e.event == "response.output_item.done"]
    others = [e for e in events if e.event != "response.output_item.done"]
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
