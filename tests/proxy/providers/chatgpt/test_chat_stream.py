"""The backend's Responses SSE → Chat Completions chunks (proxy.providers.chatgpt.chat_stream)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.providers.chatgpt.chat_stream import DONE_FRAME, ResponsesToChatStream, encode_chunk
from proxy.providers.chatgpt.events import CodexResponseError
from proxy.wire.sse import SSEEvent

from .responses_events import (
    CALL_ITEM,
    MESSAGE_ITEM,
    USAGE,
    ev,
    frames_to_chunks,
    function_call_events,
    response_obj,
    text_events,
    wire,
    with_usage,
)


def test_text_stream_translates_to_chat_chunks() -> None:
    translator = ResponsesToChatStream(model="gpt-5")
    frames = list(wire(translator, with_usage(text_events())))
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
    frames = list(wire(ResponsesToChatStream(model="gpt-5", include_usage=True), with_usage(text_events())))
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


def test_function_call_stream_translates_to_tool_call_chunks() -> None:
    translator = ResponsesToChatStream(model="gpt-5", chunk_id="chatcmpl-fixed", created=42)
    chunks: list[dict[str, Any]] = []
    for event in function_call_events():
        chunks.extend(translator.feed(event))
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
    chunks = frames_to_chunks(list(wire(ResponsesToChatStream(model="gpt-5"), events)))
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
    chunks = frames_to_chunks(list(wire(ResponsesToChatStream(model="gpt-5"), events)))
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
    chunks = frames_to_chunks(list(wire(ResponsesToChatStream(model="gpt-5"), events)))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello there!"


def test_failed_response_raises_with_code() -> None:
    translator = ResponsesToChatStream(model="gpt-5")
    assert translator.feed(ev("response.created", response=response_obj()))
    failed = response_obj(
        "failed",
        error={"code": "context_length_exceeded", "message": "Your input exceeds the context window."},
    )
    with pytest.raises(CodexResponseError) as info:
        translator.feed(ev("response.failed", response=failed))
    assert info.value.code == "context_length_exceeded"
    assert info.value.message == "Your input exceeds the context window."
    assert info.value.response is not None and info.value.response["status"] == "failed"


def test_error_event_raises() -> None:
    with pytest.raises(CodexResponseError) as info:
        ResponsesToChatStream(model="gpt-5").feed(
            SSEEvent(
                "error", json.dumps({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"})
            )
        )
    assert info.value.code == "rate_limit_exceeded"


def test_stream_without_completed_raises_before_done() -> None:
    frames: list[bytes] = []
    with pytest.raises(CodexResponseError) as info:
        frames.extend(wire(ResponsesToChatStream(model="gpt-5"), text_events()[:-1]))
    assert info.value.code == "stream_truncated"
    assert DONE_FRAME not in frames


def test_encode_chunk_frames_compact_json() -> None:
    assert encode_chunk({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()


# --- aggregation -------------------------------------------------------------------------------------------------
