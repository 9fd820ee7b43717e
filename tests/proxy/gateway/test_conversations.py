"""previous_response_id over HTTP: resolved from what Headway kept, or a clear 400 — never sent with store:false.

The book itself (bounds, expiry) is tested directly; the rest goes through the gateway with the openai SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from proxy.gateway.conversations import ConversationBook, ResponseTap
from tests.fakes import Behavior, FakeOpenAI, FakeOpenAIAuth, ToolCall
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# ---------------------------------------------------------------- the book


def test_expand_puts_the_kept_conversation_before_the_new_input() -> None:
    book = ConversationBook()
    book.remember("resp_1", [user("a"), {"type": "message", "role": "assistant", "content": []}], 10)
    body = {"model": "m", "previous_response_id": "resp_1", "input": "b"}
    out = book.expand(body)
    assert out is not None
    assert "previous_response_id" not in out
    assert [i["role"] for i in out["input"]] == ["user", "assistant", "user"]
    assert body == {"model": "m", "previous_response_id": "resp_1", "input": "b"}  # untouched
    assert book.expand({"previous_response_id": "resp_2"}) is None
    assert book.expand({"previous_response_id": 7}) is None
    plain = {"input": "x"}
    assert book.expand(plain) is plain


def test_the_book_is_bounded_by_entries_bytes_and_age() -> None:
    now = [0.0]
    book = ConversationBook(max_entries=3, max_bytes=100, ttl=60, clock=lambda: now[0])
    for i in range(4):
        book.remember(f"r{i}", [user(str(i))], 10)
    assert "r0" not in book and len(book) == 3
    book.remember("big", [user("big")], 95)
    assert len(book) == 1 and "big" in book  # 3 x 10 + 95 > 100: the oldest went first
    now[0] = 61
    assert "big" not in book and len(book) == 0


def test_the_tap_reads_id_and_output_from_events_or_a_body() -> None:
    tap = ResponseTap()
    item = {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"}
    tap.feed_event({"type": "response.created", "response": {"id": "resp_9", "output": []}})
    tap.feed_event({"type": "response.output_item.done", "item": item})
    assert not tap.completed
    tap.feed_event({"type": "response.completed", "response": {"id": "resp_9", "output": []}})
    assert tap.completed and tap.response_id == "resp_9" and tap.output() == [item]
    whole = ResponseTap()
    whole.feed_body(b'{"id": "resp_3", "status": "completed", "output": [{"type": "message"}]}')
    assert whole.response_id == "resp_3" and whole.output() == [{"type": "message"}]


# ---------------------------------------------------------------- through the gateway


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    with chatgpt_gateway(auth, codex, openai_url=openai.url) as gateway:
        yield gateway


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_a_kept_response_is_sent_whole_to_the_chatgpt_backend(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex, stream: bool
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.enqueue(Behavior(tool_call=ToolCall("shell", {"command": ["ls"]})))
    client = gw.openai_client()
    first = client.responses.create(model="gpt-5", input=[user("list")], stream=stream)
    if stream:
        first = next(e for e in first if e.type == "response.completed").response
    call = first.output[0]
    second = client.responses.create(
        model="gpt-5",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a.txt"}],
        stream=stream,
    )
    if stream:
        assert [e.type for e in second][-1] == "response.completed"
    sent = codex.requests[-1].json
    assert "previous_response_id" not in sent
    assert [i["type"] for i in sent["input"]] == ["message", "function_call", "function_call_output"]
    assert sent["input"][1]["call_id"] == call.call_id


def test_an_unknown_previous_response_id_is_a_400_naming_it(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    client = gw.openai_client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-5", input="next", previous_response_id="resp_unknown")
    message = refused.value.body["message"]  # type: ignore[index]
    assert "previous_response_id 'resp_unknown' cannot be resolved" in message
    assert "store:false" in message and "whole conversation" in message
    assert codex.request_count == 0


def test_a_response_the_agent_did_not_store_is_not_kept(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    client = gw.openai_client()
    first = client.responses.create(model="gpt-5", input="one", store=False)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-5", input="two", previous_response_id=first.id)
    assert codex.request_count == 1


def test_an_openai_api_key_still_gets_an_id_headway_does_not_know(
    gw: RunningGateway, openai: FakeOpenAI
) -> None:
    # OpenAI's API stores responses itself: an id Headway never saw may be one of them.
    gw.add("openai", "api", "sk-test-1")
    gw.openai_client().responses.create(model="gpt-5", input="next", previous_response_id="resp_stored")
    assert openai.requests[-1].json["previous_response_id"] == "resp_stored"


def test_a_response_chained_from_an_id_headway_does_not_hold_is_not_kept(
    gw: RunningGateway, openai: FakeOpenAI, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    # OpenAI resolved resp_stored itself: Headway saw only the new input, so it cannot stand for the whole
    # conversation — chaining from the answer later must not silently drop what came before resp_stored.
    gw.add("openai", "api", "sk-test-1")
    client = gw.openai_client()
    answer = client.responses.create(model="gpt-5", input="next", previous_response_id="resp_stored")
    client.responses.create(model="gpt-5", input="after", previous_response_id=answer.id)
    assert (
        openai.requests[-1].json["previous_response_id"] == answer.id
    )  # passed on, not expanded from a part
