from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.wire.usage import Usage, UsageAccumulator

# Real-shaped streams, as the upstreams send them (SSE text, one event per blank-line-separated block).

ANTHROPIC_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":503}}

event: message_stop
data: {"type":"message_stop"}

"""

ANTHROPIC_BODY: dict[str, Any] = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [{"type": "tool_use", "id": "toolu_01", "name": "bash", "input": {"command": "ls"}}],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 0,
        "output_tokens": 503,
    },
}

RESPONSES_STREAM = """\
event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c9fdcecf488190bdd9a0a5","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-5-codex","output":[],"usage":null}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67c9fdcecf488190bdd9a0a5","object":"response","status":"in_progress","model":"gpt-5-codex","usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}

event: response.completed
data: {"type":"response.completed","sequence_number":4,"response":{"id":"resp_67c9fdcecf488190bdd9a0a5","object":"response","status":"completed","model":"gpt-5-codex","incomplete_details":null,"usage":{"input_tokens":12000,"input_tokens_details":{"cached_tokens":11264},"output_tokens":420,"output_tokens_details":{"reasoning_tokens":256},"total_tokens":12420}}}

"""

RESPONSES_INCOMPLETE_EVENT: dict[str, Any] = {
    "type": "response.incomplete",
    "sequence_number": 9,
    "response": {
        "id": "resp_2",
        "object": "response",
        "status": "incomplete",
        "model": "gpt-5",
        "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {
            "input_tokens": 900,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4096,
            "output_tokens_details": {"reasoning_tokens": 4000},
            "total_tokens": 4996,
        },
    },
}

RESPONSES_FAILED_EVENT: dict[str, Any] = {
    "type": "response.failed",
    "sequence_number": 3,
    "response": {
        "id": "resp_3",
        "object": "response",
        "status": "failed",
        "model": "gpt-5",
        "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"},
        "usage": None,
    },
}

RESPONSES_BODY: dict[str, Any] = {
    "id": "resp_4",
    "object": "response",
    "status": "completed",
    "model": "gpt-5-2025-08-07",
    "output": [],
    "usage": {
        "input_tokens": 328,
        "input_tokens_details": {"cached_tokens": 128},
        "output_tokens": 52,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 380,
    },
}

CHAT_STREAM = """\
data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":1500,"completion_tokens":30,"total_tokens":1530,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"""

CHAT_BODY: dict[str, Any] = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-5-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "tool_calls": []},
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 6},
    },
}


def _events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """A minimal SSE parse for the fixtures: (event name, JSON data) per block, skipping non-JSON data."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    for block in text.split("\n\n"):
        name: str | None = None
        data_lines: list[str] = []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data_lines.append(line.removeprefix("data:").strip())
        if data_lines and data_lines != ["[DONE]"]:
            events.append((name, json.loads("\n".join(data_lines))))
    return events


def _feed(acc: UsageAccumulator, text: str) -> None:
    for name, data in _events(text):
        acc.feed_event(name, data)


# -- Anthropic -----------------------------------------------------------------------------------------------------


def test_anthropic_stream_takes_input_from_message_start_and_cumulative_output_from_message_delta() -> None:
    acc = UsageAccumulator("anthropic")
    _feed(acc, ANTHROPIC_STREAM)

    assert acc.usage == Usage(
        input_tokens=12,
        output_tokens=503,
        cache_read_tokens=30000,
        cache_write_tokens=2048,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=2048,
    )
    assert acc.usage.total_input == 12 + 30000 + 2048
    assert acc.model == "claude-sonnet-4-5-20250929"


def test_anthropic_message_delta_restating_input_side_overrides_it() -> None:
    acc = UsageAccumulator("anthropic")
    acc.feed_event(
        "message_start",
        {"type": "message_start", "message": {"model": "claude-opus-4-1", "usage": {"input_tokens": 10}}},
    )
    acc.feed_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"input_tokens": 15, "cache_read_input_tokens": 7, "output_tokens": 99},
        },
    )
    acc.feed_event(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 120}},
    )

    assert acc.usage == Usage(input_tokens=15, cache_read_tokens=7, output_tokens=120)


def test_anthropic_event_name_is_used_when_data_has_no_type() -> None:
    acc = UsageAccumulator("anthropic")
    acc.feed_event("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 8}})

    assert acc.usage == Usage(output_tokens=8)


def test_anthropic_body_without_ttl_breakdown_counts_all_writes() -> None:
    acc = UsageAccumulator("anthropic")
    acc.feed_body(ANTHROPIC_BODY)

    assert acc.usage == Usage(input_tokens=2095, output_tokens=503, cache_write_tokens=1500)
    assert acc.usage.total_input == 2095 + 1500
    assert acc.model == "claude-haiku-4-5-20251001"


def test_anthropic_write_total_is_derived_from_the_ttl_breakdown_when_missing() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": 3,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50},
        }
    )

    assert usage.cache_write_tokens == 150
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (100, 50)


def test_anthropic_error_stream_reports_no_usage() -> None:
    acc = UsageAccumulator("anthropic")
    acc.feed_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    assert acc.usage is None
    assert acc.model is None


# -- OpenAI Responses ----------------------------------------------------------------------------------------------


def test_responses_stream_subtracts_cached_tokens_from_input() -> None:
    acc = UsageAccumulator("openai-responses")
    _feed(acc, RESPONSES_STREAM)

    assert acc.usage == Usage(
        input_tokens=12000 - 11264, cache_read_tokens=11264, output_tokens=420, reasoning_tokens=256
    )
    assert acc.usage.total_input == 12000
    assert acc.model == "gpt-5-codex"


def test_responses_model_is_known_before_the_stream_completes() -> None:
    acc = UsageAccumulator("openai-responses")
    for name, data in _events(RESPONSES_STREAM)[:2]:
        acc.feed_event(name, data)

    assert acc.model == "gpt-5-codex"
    assert acc.usage is None


def test_responses_incomplete_reports_reason_and_usage() -> None:
    acc = UsageAccumulator("openai-responses")
    acc.feed_event("response.incomplete", RESPONSES_INCOMPLETE_EVENT)

    assert acc.usage == Usage(input_tokens=900, output_tokens=4096, reasoning_tokens=4000)


def test_responses_failed_without_usage() -> None:
    acc = UsageAccumulator("openai-responses")
    acc.feed_event(None, RESPONSES_FAILED_EVENT)

    assert acc.usage is None
    assert acc.model == "gpt-5"


def test_responses_body() -> None:
    acc = UsageAccumulator("openai-responses")
    acc.feed_body(RESPONSES_BODY)

    assert acc.usage == Usage(input_tokens=200, cache_read_tokens=128, output_tokens=52)
    assert acc.model == "gpt-5-2025-08-07"


# -- OpenAI Chat Completions ---------------------------------------------------------------------------------------


def test_chat_stream_usage_comes_from_the_final_chunk() -> None:
    acc = UsageAccumulator("openai-chat")
    _feed(acc, CHAT_STREAM)

    assert acc.usage == Usage(input_tokens=1500 - 1024, cache_read_tokens=1024, output_tokens=30)
    assert acc.usage.total_input == 1500
    assert acc.model == "gpt-4o-mini-2024-07-18"


def test_chat_stream_without_include_usage_reports_none() -> None:
    acc = UsageAccumulator("openai-chat")
    for name, data in _events(CHAT_STREAM):
        if data["usage"] is None:
            acc.feed_event(name, data)

    assert acc.usage is None


def test_chat_body() -> None:
    acc = UsageAccumulator("openai-chat")
    acc.feed_body(CHAT_BODY)

    assert acc.usage == Usage(input_tokens=19, output_tokens=10, reasoning_tokens=6)
    assert acc.model == "gpt-5-mini"


# -- tolerance -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "payload"),
    [
        ("anthropic", {"type": "message_start", "message": None}),
        (
            "anthropic",
            {"type": "message_start", "message": {"usage": {"input_tokens": None, "output_tokens": "x"}}},
        ),
        ("anthropic", {"type": "message_delta", "delta": "oops", "usage": []}),
        ("openai-responses", {"type": "response.completed", "response": None}),
        ("openai-responses", {"type": "response.completed", "response": {"usage": None, "status": 3}}),
        ("openai-chat", {"choices": None, "usage": None}),
        ("openai-chat", {"choices": ["not a dict"], "model": 5}),
    ],
)
def test_malformed_events_are_ignored(protocol: str, payload: dict[str, Any]) -> None:
    acc = UsageAccumulator(protocol)  # type: ignore[arg-type]
    acc.feed_event(None, payload)
    acc.feed_body(payload)

    assert acc.usage is None or acc.usage == Usage()
    assert acc.model is None


def test_null_and_missing_fields_count_as_zero() -> None:
    usage = Usage.from_openai(
        {"input_tokens": 50, "input_tokens_details": None, "output_tokens": None, "output_tokens_details": {}}
    )

    assert usage == Usage(input_tokens=50)


def test_cached_more_than_input_never_goes_negative() -> None:
    usage = Usage.from_openai({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 64}})

    assert usage.input_tokens == 0
    assert usage.cache_read_tokens == 10


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        UsageAccumulator("gemini")  # type: ignore[arg-type]
