"""Once content flows, every event reaches the agent on its own: the gateway holds or batches nothing.

The fake upstream sends content event i only after the test has *received* event i-1 through the gateway. A gateway
that held an event back (until the next one, a buffer filling, the end of the stream) would leave the upstream
waiting for a receipt that never comes: the stream stalls and the test fails — by a bounded wait, not by a timing
measurement. Covered: /v1/messages (Anthropic key), /v1/responses and /v1/chat/completions passed through (OpenAI
key) and translated for a ChatGPT account (the Codex backend). Replaces the benchmark's coalesced-events assertion,
which depended on machine load.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway

pytestmark = pytest.mark.timeout(90)

EVENTS = 20
TEXT = "".join(f"w{i:02d} " for i in range(EVENTS))  # split into EVENTS pieces of 4 characters
RECEIPT_WAIT = 15.0  # generous: an event that gets through arrives in milliseconds


class Pacer:
    """The upstream's side waits, before content event i, until the agent's side has received event i-1."""

    def __init__(self) -> None:
        self.received = [threading.Event() for _ in range(EVENTS + 1)]
        self.stalled_at: int | None = None

    def gate(self, i: int) -> None:
        if i > 1 and not self.received[i - 1].wait(RECEIPT_WAIT) and self.stalled_at is None:
            self.stalled_at = i - 1  # go on, so nothing hangs; the test fails on this

    def behavior(self) -> Behavior:
        return Behavior(text=TEXT, chunks=EVENTS, content_gate=self.gate)


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def platform() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def gw(
    anthropic: FakeAnthropic, platform: FakeOpenAI, auth: FakeOpenAIAuth, codex: FakeCodex
) -> Iterator[RunningGateway]:
    with chatgpt_gateway(auth, codex, anthropic_url=anthropic.url, openai_url=platform.url) as gateway:
        yield gateway


def _anthropic_piece(event: dict[str, Any]) -> str | None:
    if event.get("type") == "content_block_delta":
        return str(event["delta"]["text"])
    return None


def _responses_piece(event: dict[str, Any]) -> str | None:
    if event.get("type") == "response.output_text.delta":
        return str(event["delta"])
    return None


def _chat_piece(event: dict[str, Any]) -> str | None:
    choices = event.get("choices") or []
    content = choices[0].get("delta", {}).get("content") if choices else None
    return str(content) if content else None


def _stream_through(
    gw: RunningGateway,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    pacer: Pacer,
    piece: Callable[[dict[str, Any]], str | None],
) -> list[str]:
    """Read the gateway's stream line by line; mark each content event received the moment it arrives."""
    pieces: list[str] = []
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        with client.stream("POST", f"{gw.url}{path}", json=body, headers=headers) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                text = piece(json.loads(line[5:]))
                if text is not None:
                    pieces.append(text)
                    pacer.received[min(len(pieces), EVENTS)].set()
    return pieces


def _assert_paced(pacer: Pacer, pieces: list[str]) -> None:
    assert pacer.stalled_at is None, (
        f"content event {pacer.stalled_at} did not reach the agent until later events were sent: the gateway held it"
    )
    assert len(pieces) == EVENTS and "".join(pieces) == TEXT


MESSAGE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
RESPONSES = {"model": "gpt-5.1-codex", "input": "hi", "stream": True}
CHAT = {"model": "gpt-5.1-codex", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def test_messages_events_pass_one_by_one(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-api03-" + "a" * 40)
    pacer = Pacer()
    anthropic.enqueue(pacer.behavior())
    pieces = _stream_through(gw, "/v1/messages", MESSAGE, gw.headers("anthropic"), pacer, _anthropic_piece)
    _assert_paced(pacer, pieces)


@pytest.mark.parametrize(
    ("path", "body", "piece"),
    [("/v1/responses", RESPONSES, _responses_piece), ("/v1/chat/completions", CHAT, _chat_piece)],
    ids=["responses", "chat"],
)
def test_openai_key_events_pass_one_by_one(
    gw: RunningGateway,
    platform: FakeOpenAI,
    path: str,
    body: dict[str, Any],
    piece: Callable[[dict[str, Any]], str | None],
) -> None:
    gw.add("openai", "main", "sk-proj-" + "b" * 40)
    pacer = Pacer()
    platform.enqueue(pacer.behavior())
    _assert_paced(pacer, _stream_through(gw, path, body, gw.headers("openai"), pacer, piece))


@pytest.mark.parametrize(
    ("path", "body", "piece"),
    [("/v1/responses", RESPONSES, _responses_piece), ("/v1/chat/completions", CHAT, _chat_piece)],
    ids=["responses", "chat-translated"],
)
def test_chatgpt_events_pass_one_by_one_through_the_translation(
    gw: RunningGateway,
    auth: FakeOpenAIAuth,
    codex: FakeCodex,
    path: str,
    body: dict[str, Any],
    piece: Callable[[dict[str, Any]], str | None],
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    pacer = Pacer()
    codex.enqueue(pacer.behavior())
    _assert_paced(pacer, _stream_through(gw, path, body, gw.headers("openai"), pacer, piece))
    assert codex.requests[-1].path == "/backend-api/codex/responses"
