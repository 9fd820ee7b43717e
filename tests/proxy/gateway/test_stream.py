"""The committed stream (:func:`proxy.gateway.stream.pump`): what the agent's socket is handed, write by write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from proxy.gateway.attempt import Attempt
from proxy.gateway.stream import pump
from proxy.wire.sse import SSEParser
from proxy.wire.usage import UsageAccumulator

MESSAGE_START = b'event: message_start\ndata: {"type":"message_start","message":{"model":"m","usage":{}}}\n\n'
BLOCK_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":0}\n\n'
FIRST_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"Hi"}}\n\n'
SECOND_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"!"}}\n\n'


async def _rest(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _writes(held: list[bytes], rest: list[bytes]) -> tuple[list[bytes], Attempt, list[str]]:
    parser = SSEParser()
    held_events = [event for chunk in held for event in parser.feed(chunk)]
    attempt = Attempt(started=time.perf_counter())
    calls: list[str] = []

    async def close() -> None:
        calls.append("close")

    body = pump(
        _rest(*rest).__aiter__(),
        held,
        held_events,
        parser,
        UsageAccumulator("anthropic"),
        None,
        attempt,
        SimpleNamespace(protocol="anthropic"),  # type: ignore[arg-type]  # only read when the stream breaks
        close=close,
        finish=lambda: calls.append("finish"),
    )
    writes: list[Any] = [chunk async for chunk in body]
    return writes, attempt, calls


def test_the_held_events_go_out_in_one_write_with_the_first_content() -> None:
    # Held back until content arrived, they reach the agent together with it: one socket write, not one per chunk
    # the upstream happened to send (each would wake the agent for an event it cannot use yet).
    writes, attempt, calls = asyncio.run(_writes([MESSAGE_START, BLOCK_START, FIRST_DELTA], [SECOND_DELTA]))
    assert writes == [MESSAGE_START + BLOCK_START + FIRST_DELTA, SECOND_DELTA]
    assert attempt.ttfb is not None
    assert calls == ["close", "finish"]


def test_after_the_first_content_every_chunk_is_its_own_write() -> None:
    writes, _, _ = asyncio.run(_writes([MESSAGE_START + FIRST_DELTA], [SECOND_DELTA, SECOND_DELTA]))
    assert writes == [MESSAGE_START + FIRST_DELTA, SECOND_DELTA, SECOND_DELTA]
