"""Recorded-shape Responses SSE events for the translator tests, and the whole-stream helper they use."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from proxy.providers.chatgpt.chat_stream import DONE_FRAME, ResponsesToChatStream, encode_chunk
from proxy.wire.sse import SSEEvent


def ev(kind: str, **fields: Any) -> SSEEvent:
    return SSEEvent(event=kind, data=json.dumps({"type": kind, **fields}))


def wire(translator: ResponsesToChatStream, events: Iterable[SSEEvent]) -> Iterator[bytes]:
    """SSE frames for a whole event sequence, ending with ``data: [DONE]``; raises like feed / close."""
    for event in events:
        for chunk in translator.feed(event):
            yield encode_chunk(chunk)
    translator.close()
    yield DONE_FRAME


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


def text_events(*, completed_output: list[Any] | None = None) -> list[SSEEvent]:
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


def with_usage(events: list[SSEEvent]) -> list[SSEEvent]:
    last = events[-1]
    data = last.json()
    return [
        *events[:-1],
        SSEEvent(last.event, json.dumps({**data, "response": {**data["response"], "usage": USAGE}})),
    ]


def frames_to_chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    chunks = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        chunks.append(json.loads(frame[len(b"data: ") : -2]))
    return chunks


CALL_ITEM = {
    "id": "fc_1",
    "type": "function_call",
    "status": "completed",
    "call_id": "call_X9",
    "name": "read",
    "arguments": '{"filePath":"README.md"}',
}


def function_call_events() -> list[SSEEvent]:
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
