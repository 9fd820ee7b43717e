"""Reading an upstream answer: hold the pre-content events, pump the committed stream, collect a whole one.

The forwarder decides; these read. :func:`hold` reads until the first content or error event (nothing has reached
the agent yet, so the forwarder may still fall back); :func:`pump` is the committed stream to the agent, passing
bytes through untouched unless a transformer translates them; :func:`collect` gathers a stream for an agent that
did not ask to stream; :func:`read_all` reads a non-streamed answer with a size cap. Usage is picked up on the way
(only from events that may carry it: most are deltas, which need no JSON parse).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.gateway.attempt import Attempt
from proxy.gateway.errors import stream_error_event
from proxy.providers.base import Incoming, ProviderAdapter, ResponseTransformer, Verdict
from proxy.wire.sse import SSEEvent, SSEParser
from proxy.wire.usage import UsageAccumulator

__all__ = ["HOLD_LIMIT", "AgentStream", "TooLarge", "close_quietly", "collect", "hold", "pump", "read_all"]

log = logging.getLogger("headway.forward")

HOLD_LIMIT = 256 * 1024  # held before the first content event; beyond it the stream is committed anyway
ACCUMULATE_LIMIT = 32 * 1024 * 1024  # a non-streamed answer Headway buffers

_DELTA_EVENTS = frozenset(
    {
        "content_block_delta",
        "content_block_start",
        "content_block_stop",
        "ping",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_text.done",
    }
)


class TooLarge(Exception):
    """A non-streamed answer beyond the size Headway buffers."""


def carries_usage(protocol: str, event: SSEEvent) -> bool:
    """Whether an event may hold usage or the model; streams are mostly deltas, which need no JSON parse."""
    if event.event in _DELTA_EVENTS:
        return False
    if protocol == "openai-chat":
        return '"usage":' in event.data and '"usage":null' not in event.data.replace(" ", "")
    return True


async def close_quietly(upstream: httpx.Response) -> None:
    try:
        await upstream.aclose()
    except Exception as exc:  # closing a broken or cancelled stream must not hide why it broke
        log.debug("closing an upstream response failed: %s", exc)


async def read_all(upstream: httpx.Response, limit: int = ACCUMULATE_LIMIT) -> bytes:
    """The whole body (closing the response); TooLarge beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in upstream.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TooLarge
    finally:
        await upstream.aclose()
    return b"".join(chunks)


async def hold(
    chunks: AsyncIterator[bytes],
    adapter: ProviderAdapter,
    incoming: Incoming,
    parser: SSEParser,
    usage: UsageAccumulator,
) -> tuple[Verdict | None, list[bytes], list[SSEEvent]]:
    """Read until the first content or error event. Returns (verdict, held chunks, held events).

    The verdict is None when the stream ended or broke first; a silence beyond the read timeout raises.
    """
    held: list[bytes] = []
    events: list[SSEEvent] = []
    size = 0
    try:
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return None, held, events
            held.append(chunk)
            size += len(chunk)
            verdict: Verdict | None = None
            # Every event of the chunk is kept, also those after the one that decides: one read often carries the
            # first content together with the rest of a short answer, and a transformer needs all of it.
            for event in parser.feed(chunk):
                events.append(event)
                data = event.json()
                if isinstance(data, dict):
                    usage.feed_event(event.event, data)
                if verdict is None:
                    decided = adapter.classify_event(incoming.protocol, event)
                    if decided.kind != "meta":
                        verdict = decided
            if verdict is not None:
                return verdict, held, events
            if size > HOLD_LIMIT:
                return Verdict("content"), held, events
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        log.warning("upstream stream broke before content: %s", type(exc).__name__)
        return None, [], []


async def collect(
    chunks: AsyncIterator[bytes],
    held_events: list[SSEEvent],
    parser: SSEParser,
    usage: UsageAccumulator,
    transformer: ResponseTransformer,
    transcript: list[bytes] | None,
) -> None:
    """Feed the rest of the stream to ``transformer`` (whose ``result()`` is then the answer); raises
    httpx.HTTPError when the stream breaks or stalls."""
    for event in held_events:
        transformer.feed(event)
    async for chunk in chunks:
        if transcript is not None:
            transcript.append(chunk)
        for event in parser.feed(chunk):
            data = event.json()
            if isinstance(data, dict):
                usage.feed_event(event.event, data)
            transformer.feed(event)


async def pump(
    chunks: AsyncIterator[bytes],
    held: list[bytes],
    held_events: list[SSEEvent],
    parser: SSEParser,
    usage: UsageAccumulator,
    transformer: ResponseTransformer | None,
    attempt: Attempt,
    incoming: Incoming,
    close: Callable[[], Awaitable[None]],
    finish: Callable[[], None],
) -> AsyncIterator[bytes]:
    """The committed event stream to the agent; a break after this point ends it with an error event.

    ``close`` releases the upstream response and ``finish`` records the request, whatever happens.
    """
    transcript = attempt.transcript
    try:
        if transformer is None:
            if (
                held
            ):  # one write: the held events reach the agent together with the first content, not before it
                attempt.ttfb = time.perf_counter() - attempt.started
                yield b"".join(held)
        else:
            out = b"".join(transformer.feed(event) for event in held_events)
            if out:
                attempt.ttfb = time.perf_counter() - attempt.started
                yield out
        async for chunk in chunks:
            if attempt.ttfb is None:
                attempt.ttfb = time.perf_counter() - attempt.started
            if transcript is not None:
                transcript.append(chunk)
            if transformer is None:
                yield chunk
            events = parser.feed(chunk)
            for event in events:
                if not carries_usage(usage.protocol, event):
                    continue
                data = event.json()
                if isinstance(data, dict):
                    usage.feed_event(event.event, data)
            if transformer is not None:
                out = b"".join(transformer.feed(event) for event in events)
                if out:
                    yield out
        if transformer is not None:
            tail = transformer.finish()
            if tail:
                yield tail
    except httpx.HTTPError as exc:
        attempt.error = f"upstream stream broke: {type(exc).__name__}"
        log.warning("account %s: %s", attempt.account.id if attempt.account else "?", attempt.error)
        if isinstance(exc, httpx.TimeoutException):
            message = "the upstream went silent mid-stream for longer than gateway.read_timeout_seconds"
        else:
            message = "the upstream connection broke mid-stream"
        yield stream_error_event(incoming.protocol, message)
    finally:
        await close()
        finish()


class AgentStream(StreamingResponse):
    """The committed stream to the agent, sent from the request's own task.

    Starlette's StreamingResponse, under a server speaking ASGI 2.3 (uvicorn), runs every stream in an anyio task
    group with a second task listening for the agent's hang-up: a cancel scope and two tasks per streamed answer. Here
    one small task waits for ``http.disconnect`` and cancels the sending task; the body iterator's ``finally``
    (closing the upstream, recording the request) runs either way.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"sending": True, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if state["sending"]:
                state["gone"] = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch(), name="headway-agent-stream-watch")
        body: Any = self.body_iterator
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # the agent went away: the stream ends here, quietly
            log.debug("the agent hung up mid-stream")
        finally:
            state["sending"] = False
            watcher.cancel()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()  # a stream left early still closes its upstream and is recorded
