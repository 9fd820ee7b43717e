"""Tests of the fake upstreams themselves, through a real HTTP client (httpx) on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import (
    Behavior,
    FakeAnthropic,
    FakeOpenAI,
    FakeServer,
    ToolCall,
    anthropic_ratelimit_headers,
    openai_duration,
    openai_ratelimit_headers,
)

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
RESPONSES_BODY = {"model": "gpt-5", "input": [{"role": "user", "content": "hi"}]}
CHAT_BODY = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def parse_sse(lines: list[str]) -> list[tuple[str | None, Any]]:
    """(event name or None, parsed data) per SSE event; `[DONE]` stays a string."""
    events: list[tuple[str | None, Any]] = []
    name: str | None = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            raw = line.removeprefix("data: ")
            events.append((name, raw if raw == "[DONE]" else json.loads(raw)))
            name = None
    return events


def stream_events(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[Any]]:
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        lines = list(response.iter_lines())
    return response, parse_sse(lines)


def names(events: list[tuple[str | None, Any]]) -> list[str | None]:
    return [name for name, _ in events]


# -- event order -------------------------------------------------------------------------------------------


def test_anthropic_stream_follows_the_real_event_sequence(
    anthropic: FakeAnthropic, client: httpx.Client
) -> None:
    anthropic.default = Behavior(text="abcdefgh", chunks=4, usage={"cache_read_input_tokens": 40})
    response, events = stream_events(client, f"{anthropic.url}/v1/messages?beta=true", ANTHROPIC_BODY)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["request-id"] == "req_fake_1"
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["model"] == "claude-sonnet-4-5"
    assert start["usage"]["cache_read_input_tokens"] == 40
    assert start["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    assert (
        "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta") == "abcdefgh"
    )
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {"output_tokens": 4}
    assert anthropic.last_request.query == {"beta": "true"}


def test_openai_responses_stream_follows_the_real_event_sequence(
    openai: FakeOpenAI, client: httpx.Client
) -> None:
    openai.default = Behavior(text="abcdefgh", chunks=4, usage={"input_tokens_details": {"cached_tokens": 7}})
    response, events = stream_events(client, f"{openai.url}/v1/responses", RESPONSES_BODY)

    assert response.headers["x-request-id"] == "req_fake_1"
    assert names(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert (
        "".join(data["delta"] for name, data in events if name == "response.output_text.delta") == "abcdefgh"
    )
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens_details"] == {"cached_tokens": 7}
    assert completed["usage"]["total_tokens"] == completed["usage"]["input_tokens"] + 4


def test_openai_responses_also_answers_at_the_codex_path(openai: FakeOpenAI, client: httpx.Client) -> None:
    _, events = stream_events(client, f"{openai.url}/backend-api/codex/responses", RESPONSES_BODY)
    assert names(events)[0] == "response.created"
    assert names(events)[-1] == "response.completed"


def test_openai_chat_stream_ends_with_usage_then_done(openai: FakeOpenAI, client: httpx.Client) -> None:
    openai.default = Behavior(text="abcdef", chunks=3, usage={"prompt_tokens_details": {"cached_tokens": 2}})
    body = {**CHAT_BODY, "stream_options": {"include_usage": True}}
    _, events = stream_events(client, f"{openai.url}/v1/chat/completions", body)

    assert names(events) == [None] * 7
    chunks = [data for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["ab", "cd", "ef"]
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["completion_tokens"] == 3
    assert chunks[5]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert events[-1] == (None, "[DONE]")

    _, without_usage = stream_events(client, f"{openai.url}/v1/chat/completions", CHAT_BODY)
    assert all("usage" not in data for _, data in without_usage[:-1])


# -- non-streaming routes -----------------------------------------------------------------------------------


def test_anthropic_non_streaming_routes(anthropic: FakeAnthropic, client: httpx.Client) -> None:
    message = client.post(f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY)
    assert message.headers["content-type"] == "application/json"
    assert message.json()["content"] == [{"type": "text", "text": "Hello from the fake"}]
    assert message.json()["usage"]["output_tokens"] == 3

    count = client.post(f"{anthropic.url}/v1/messages/count_tokens", json=ANTHROPIC_BODY).json()
    assert count == {"input_tokens": len(json.dumps(ANTHROPIC_BODY).replace(" ", "")) // 4}

    models = client.get(f"{anthropic.url}/v1/models").json()
    assert models["has_more"] is False
    assert models["first_id"] == models["data"][0]["id"] == "claude-sonnet-4-5"
    assert models["data"][0] == {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    }
    assert client.head(f"{anthropic.url}/").status_code == 200

    missing = client.get(f"{anthropic.url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    ids = {r.headers["request-id"] for r in (message, missing)}
    assert len(ids) == 2


def test_openai_non_streaming_routes(openai: FakeOpenAI, client: httpx.Client) -> None:
    response = client.post(f"{openai.url}/v1/responses", json=RESPONSES_BODY).json()
    assert response["object"] == "response"
    assert response["output"][0]["content"][0]["text"] == "Hello from the fake"

    chat = client.post(f"{openai.url}/v1/chat/completions", json=CHAT_BODY).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["content"] == "Hello from the fake"
    assert (
        chat["usage"]["total_tokens"] == chat["usage"]["prompt_tokens"] + chat["usage"]["completion_tokens"]
    )

    models = client.get(f"{openai.url}/v1/models").json()
    assert models["object"] == "list"
    assert {"id": "gpt-5", "object": "model", "created": 1_700_000_000, "owned_by": "openai"} in models[
        "data"
    ]


def test_tool_calls_in_both_protocols(
    anthropic: FakeAnthropic, openai: FakeOpenAI, client: httpx.Client
) -> None:
    call = ToolCall("read_file", {"path": "README.md"})
    anthropic.default = openai.default = Behavior(tool_call=call, chunks=3)

    _, events = stream_events(client, f"{anthropic.url}/v1/messages", ANTHROPIC_BODY)
    assert events[1][1]["content_block"]["type"] == "tool_use"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"path": "README.md"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    _, events = stream_events(client, f"{openai.url}/v1/responses", RESPONSES_BODY)
    assert "response.content_part.added" not in names(events)
    arguments = "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"path": "README.md"}
    assert events[-1][1]["response"]["output"][0]["name"] == "read_file"

    chat = client.post(f"{openai.url}/v1/chat/completions", json=CHAT_BODY).json()
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert chat["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "read_file"


# -- timing, errors, drops, hangs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fake_class", "path", "body"),
    [(FakeAnthropic, "/v1/messages", ANTHROPIC_BODY), (FakeOpenAI, "/v1/responses", RESPONSES_BODY)],
)
def test_streamed_events_arrive_spread_over_time(
    fake_class: type[FakeServer], path: str, body: dict[str, Any], client: httpx.Client
) -> None:
    with fake_class(default=Behavior(chunks=4, delay=0.05)) as fake:
        sent = time.monotonic()
        arrivals: list[float] = []
        with client.stream("POST", fake.url + path, json={**body, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic())

    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 10
    assert arrivals[0] - sent < 0.2  # the first event came before the others were written
    assert arrivals[-1] - arrivals[0] >= 0.05 * len(gaps) * 0.8
    assert sorted(gaps)[len(gaps) // 2] >= 0.03  # not one burst at the end


def test_first_byte_delay_holds_back_the_headers(anthropic: FakeAnthropic, client: httpx.Client) -> None:
    anthropic.enqueue(Behavior(first_byte_delay=0.2))
    started = time.monotonic()
    assert client.post(f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY).status_code == 200
    assert time.monotonic() - started >= 0.19


def test_429_carries_retry_after_and_the_provider_error_shape(
    anthropic: FakeAnthropic, openai: FakeOpenAI, client: httpx.Client
) -> None:
    limits = anthropic_ratelimit_headers(requests_remaining=0, reset_in=30)
    anthropic.enqueue(Behavior(status=429, retry_after=30, headers=limits))
    response = client.post(f"{anthropic.url}/v1/messages", json={**ANTHROPIC_BODY, "stream": True})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Fake rate_limit_error (HTTP 429)"},
    }

    openai.enqueue(
        Behavior(status=429, retry_after=1.5, error_type="insufficient_quota", error_message="quota gone"),
        Behavior(status=529),
    )
    response = client.post(f"{openai.url}/v1/responses", json=RESPONSES_BODY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    assert response.json() == {
        "error": {
            "message": "quota gone",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "param": None,
        }
    }
    assert client.post(f"{openai.url}/v1/responses", json=RESPONSES_BODY).status_code == 529


def test_error_body_override_for_codex_usage_limit(openai: FakeOpenAI, client: httpx.Client) -> None:
    body = {"error": {"type": "usage_limit_reached", "plan_type": "plus", "resets_in_seconds": 600}}
    openai.enqueue(Behavior(status=429, body=body, headers={"x-codex-primary-used-percent": "100"}))
    response = client.post(f"{openai.url}/backend-api/codex/responses", json=RESPONSES_BODY)
    assert response.status_code == 429
    assert response.json() == body
    assert response.headers["x-codex-primary-used-percent"] == "100"


def test_valid_keys_answer_401_to_any_other_key(client: httpx.Client) -> None:
    with FakeAnthropic(valid_keys={"sk-ant-good"}) as anthropic, FakeOpenAI(valid_keys={"sk-good"}) as openai:
        anthropic.enqueue(Behavior(text="scripted"))
        bad = client.post(
            f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY, headers={"x-api-key": "sk-ant-bad"}
        )
        assert bad.status_code == 401
        assert bad.json()["error"]["type"] == "authentication_error"
        good = client.post(
            f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY, headers={"x-api-key": "sk-ant-good"}
        )
        assert good.json()["content"][0]["text"] == "scripted"  # the 401 did not use up the script
        bearer = client.post(
            f"{anthropic.url}/v1/messages",
            json=ANTHROPIC_BODY,
            headers={"authorization": "Bearer sk-ant-good"},
        )
        assert bearer.status_code == 200
        assert [r.headers.get("x-api-key") for r in anthropic.requests] == ["sk-ant-bad", "sk-ant-good", None]

        bad = client.post(
            f"{openai.url}/v1/responses", json=RESPONSES_BODY, headers={"authorization": "Bearer sk-bad"}
        )
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        assert bad.json()["error"]["param"] is None
        good = client.post(
            f"{openai.url}/v1/responses", json=RESPONSES_BODY, headers={"authorization": "Bearer sk-good"}
        )
        assert good.status_code == 200
        assert client.get(f"{openai.url}/v1/models").status_code == 401


def test_in_stream_error_before_any_content(
    anthropic: FakeAnthropic, openai: FakeOpenAI, client: httpx.Client
) -> None:
    anthropic.enqueue(Behavior(in_stream_error="overloaded_error"))
    _, events = stream_events(client, f"{anthropic.url}/v1/messages", ANTHROPIC_BODY)
    assert names(events) == ["message_start", "error"]
    assert events[1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Fake in-stream overloaded_error"},
    }

    openai.enqueue(
        Behavior(in_stream_error="rate_limit_exceeded"),
        Behavior(in_stream_error="insufficient_quota", in_stream_error_raw=True),
        Behavior(in_stream_error="rate_limit_exceeded"),
    )
    _, events = stream_events(client, f"{openai.url}/v1/responses", RESPONSES_BODY)
    assert names(events) == ["response.created", "response.failed"]
    failed = events[1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "rate_limit_exceeded"

    _, events = stream_events(client, f"{openai.url}/v1/responses", RESPONSES_BODY)
    assert names(events) == ["response.created", "error"]
    assert events[1][1]["code"] == "insufficient_quota"
    assert events[1][1]["sequence_number"] == 1

    _, events = stream_events(client, f"{openai.url}/v1/chat/completions", CHAT_BODY)
    assert len(events) == 2
    assert events[1][1]["error"]["code"] == "rate_limit_exceeded"
    assert (None, "[DONE]") not in events


def test_in_stream_error_after_some_content(
    anthropic: FakeAnthropic, openai: FakeOpenAI, client: httpx.Client
) -> None:
    anthropic.enqueue(
        Behavior(chunks=4, in_stream_error="overloaded_error", in_stream_error_after_content=True)
    )
    _, events = stream_events(client, f"{anthropic.url}/v1/messages", ANTHROPIC_BODY)
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "error",
    ]

    openai.enqueue(Behavior(chunks=4, in_stream_error="server_error", in_stream_error_after_content=True))
    _, events = stream_events(client, f"{openai.url}/v1/responses", RESPONSES_BODY)
    assert names(events)[-3:] == [
        "response.output_text.delta",
        "response.output_text.delta",
        "response.failed",
    ]
    assert "response.completed" not in names(events)


@pytest.mark.parametrize(
    ("fake_class", "path", "body"),
    [
        (FakeAnthropic, "/v1/messages", ANTHROPIC_BODY),
        (FakeOpenAI, "/v1/responses", RESPONSES_BODY),
        (FakeOpenAI, "/v1/chat/completions", CHAT_BODY),
    ],
)
def test_dropped_connection_breaks_the_stream(
    fake_class: type[FakeServer], path: str, body: dict[str, Any], client: httpx.Client
) -> None:
    with fake_class(default=Behavior(chunks=4, drop_after_events=3)) as fake:
        received: list[str] = []
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            with client.stream("POST", fake.url + path, json={**body, "stream": True}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(line)
        assert len(received) == 3

        with pytest.raises(httpx.RemoteProtocolError):
            client.post(fake.url + path, json=body)  # not streamed: closed without any answer

        fake.default = Behavior()
        assert client.post(fake.url + path, json=body).status_code == 200  # the pool recovers


def test_requests_are_recorded(anthropic: FakeAnthropic, client: httpx.Client) -> None:
    client.post(
        f"{anthropic.url}/v1/messages?beta=true",
        json=ANTHROPIC_BODY,
        headers={"X-Api-Key": "sk-ant-1", "anthropic-beta": "a,b", "anthropic-version": "2023-06-01"},
    )
    client.get(f"{anthropic.url}/v1/models")

    first, second = anthropic.wait_for_requests(2)
    assert (first.method, first.path, first.query) == ("POST", "/v1/messages", {"beta": "true"})
    assert first.headers["x-api-key"] == "sk-ant-1"
    assert first.headers["anthropic-beta"] == "a,b"
    assert all(name == name.lower() for name in first.headers)
    assert first.json == ANTHROPIC_BODY
    assert json.loads(first.body) == ANTHROPIC_BODY
    assert first.stream is False
    assert (second.method, second.path, second.body, second.json) == ("GET", "/v1/models", b"", None)
    assert [first.request_id, second.request_id] == ["req_fake_1", "req_fake_2"]

    anthropic.reset()
    assert anthropic.requests == []
    assert anthropic.request_count == 2


def test_enqueue_is_fifo_then_default(openai: FakeOpenAI, client: httpx.Client) -> None:
    openai.default = Behavior(text="default")
    openai.enqueue(Behavior(text="first"), Behavior(status=500))
    openai.enqueue(Behavior(text="third"))

    def answer() -> str | int:
        response = client.post(f"{openai.url}/v1/chat/completions", json=CHAT_BODY)
        return (
            response.json()["choices"][0]["message"]["content"]
            if response.is_success
            else response.status_code
        )

    assert [answer() for _ in range(5)] == ["first", 500, "third", "default", "default"]

    openai.enqueue(Behavior(text="dropped by reset"))
    openai.reset()
    assert answer() == "default"


def test_keep_alive_is_reused_and_connection_close_is_honoured(
    anthropic: FakeAnthropic, client: httpx.Client
) -> None:
    for _ in range(2):
        client.post(f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY)
        stream_events(client, f"{anthropic.url}/v1/messages", ANTHROPIC_BODY)
    assert anthropic.connection_count == 1

    started = time.monotonic()
    for _ in range(20):
        client.post(f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY)
    assert time.monotonic() - started < 0.5  # no ~40 ms Nagle / delayed-ACK stall per request

    closing = client.post(
        f"{anthropic.url}/v1/messages", json=ANTHROPIC_BODY, headers={"connection": "close"}
    )
    assert closing.headers["connection"] == "close"
    client.get(f"{anthropic.url}/v1/models")
    assert anthropic.connection_count == 2


def test_hang_times_out_the_client_and_stop_is_quick(client: httpx.Client) -> None:
    fake = FakeOpenAI(default=Behavior(hang=True)).start()
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{fake.url}/v1/responses", json=RESPONSES_BODY, timeout=0.2)

    outcome: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(f"{fake.url}/v1/responses", json=RESPONSES_BODY, timeout=5.0)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    fake.wait_for_requests(2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1.0
    waiter.join(2.0)
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.RemoteProtocolError | httpx.ReadError)


async def test_concurrent_streams_are_served_in_parallel() -> None:
    with FakeAnthropic(default=Behavior(chunks=4, delay=0.05)) as fake:
        async with httpx.AsyncClient(timeout=5.0) as client:

            async def one() -> int:
                async with client.stream(
                    "POST", f"{fake.url}/v1/messages", json={**ANTHROPIC_BODY, "stream": True}
                ) as r:
                    return sum([1 async for line in r.aiter_lines() if line.startswith("event: ")])

            started = time.monotonic()
            counts = await asyncio.gather(*(one() for _ in range(5)))
            elapsed = time.monotonic() - started
    assert counts == [10] * 5
    assert elapsed < 1.5  # one stream takes ~0.45 s; five in a row would take ~2.3 s


# -- helpers and the standalone runner -------------------------------------------------------------------


def test_ratelimit_header_helpers() -> None:
    assert [openai_duration(s) for s in (360, 1, 0.12, 1.5, 3723)] == [
        "6m0s",
        "1s",
        "120ms",
        "1.5s",
        "1h2m3s",
    ]
    headers = openai_ratelimit_headers(requests_remaining=0, requests_reset=360, tokens_reset=0.12)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "6m0s"
    assert headers["x-ratelimit-reset-tokens"] == "120ms"

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    limits = anthropic_ratelimit_headers(tokens_remaining=5, reset_in=90, now=now, output_tokens_limit=8000)
    assert limits["anthropic-ratelimit-tokens-remaining"] == "5"
    assert limits["anthropic-ratelimit-requests-reset"] == "2026-01-01T12:01:30Z"
    assert limits["anthropic-ratelimit-output-tokens-limit"] == "8000"
    assert "anthropic-ratelimit-input-tokens-limit" not in limits
    assert datetime.fromisoformat(limits["anthropic-ratelimit-tokens-reset"]) == datetime(
        2026, 1, 1, 12, 1, 30, tzinfo=UTC
    )


def test_standalone_runner_prints_its_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "openai", "--port", "0", "--events", "40"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with httpx.Client(timeout=5.0) as client:
                _, events = stream_events(client, f"{url}/v1/responses", RESPONSES_BODY)
            assert names(events).count("response.output_text.delta") == 40
            assert all(d["delta"] for n, d in events if n == "response.output_text.delta")
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0
    assert "stopped after 1 request" in stderr
