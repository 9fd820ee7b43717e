"""The upstream WebSocket transport through a running gateway: agents (HTTP or WebSocket) → Headway → the fake Codex
backend's and OpenAI's WebSocket mode. Every socket is real; the fakes keep the service's rules
(tests/fakes/websocket.py)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from proxy.config.settings import Settings
from proxy.features.upstream_socket import LITE_METADATA_KEY, UpstreamSockets, canonical_item
from proxy.relay.websocket import WebSocket
from proxy.wire.sleep_watch import SleepWatch
from tests.fakes import Behavior, FakeOpenAI, FakeOpenAIAuth, ToolCall
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.forgetful_relay import ForgetfulRelay
from tests.support.gateway import RunningGateway, start_gateway, wait_until


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    codex.sockets.enabled = True
    openai.sockets.enabled = True
    with chatgpt_gateway(auth, codex, openai_url=openai.url) as gateway:
        yield gateway


def transport(gw: RunningGateway) -> UpstreamSockets:
    feature = gw.services.engine._features.get(UpstreamSockets.name)
    assert isinstance(feature, UpstreamSockets)
    return feature


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def http_turn(
    gw: RunningGateway, conversation: list[Any], session: str = "sess-1", **extra: Any
) -> list[Any]:
    """One turn of an HTTP agent that resends the whole conversation (as the Codex CLI does); returns the
    conversation with the answer's output appended, as the agent would send it next."""
    events = list(
        gw.openai_client().responses.create(
            model="gpt-5",
            input=conversation,
            stream=True,
            store=False,
            extra_headers={"session-id": session},
            **extra,
        )
    )
    completed = events[-1]
    assert completed.type == "response.completed"
    output = [item.model_dump(exclude_none=True) for item in completed.response.output]
    return [*conversation, *output]


def test_an_http_agent_session_sends_only_new_input_on_one_upstream_socket(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.enqueue(Behavior(tool_call=ToolCall("shell", {"command": ["ls"]})))
    conversation = http_turn(gw, [user("list the files")])
    call = conversation[-1]
    conversation = http_turn(
        gw, [*conversation, {"type": "function_call_output", "call_id": call["call_id"], "output": "a b"}]
    )
    conversation = http_turn(gw, [*conversation, user("thanks")])

    turns = codex.sockets.turns
    assert len(codex.sockets.connections) == 1 and codex.request_count == 0
    assert [t.previous_response_id for t in turns] == [None, turns[0].response_id, turns[1].response_id]
    assert [len(t.frame["input"]) for t in turns] == [1, 1, 1]  # only what is new
    assert turns[2].frame["input"][0]["content"][0]["text"] == "thanks"
    # …and the model saw the whole conversation, as over HTTP
    assert [canonical_item(i) for i in turns[2].conversation] == [
        canonical_item(i) for i in conversation[:-1]
    ]
    assert turns[0].frame["store"] is False and "stream" not in turns[0].frame
    handshake = codex.sockets.connections[0].headers
    assert handshake["openai-beta"] == "responses_websockets=2026-02-06"
    assert handshake["originator"] == "headway" and handshake["chatgpt-account-id"] == "acct-1"
    gw.flush_log()
    rows = gw.services.engine.request_log.query(session_id="sess-1")
    assert [r.status for r in rows] == [200, 200, 200]
    assert all(r.usage is not None and r.usage.output_tokens for r in rows)


def test_a_changed_conversation_is_sent_whole_on_the_same_socket(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    http_turn(gw, [user("one")])
    http_turn(gw, [user("edited history"), user("two")])  # the agent compacted / rewrote its history
    turns = codex.sockets.turns
    assert turns[1].previous_response_id is None and len(turns[1].frame["input"]) == 2
    assert len(codex.sockets.connections) == 1


def test_rate_limit_frames_feed_the_quota_book(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    account = add_chatgpt(gw, auth, "acct-1", "work")
    codex.set_usage("acct-1", primary_used=62, secondary_used=29)
    http_turn(gw, [user("hi")])
    assert codex.request_count == 0
    status = gw.account_status(account.id)
    windows = {w["name"]: w["remaining_percent"] for w in status["quota"]["windows"]}
    assert windows == {"5h": 38.0, "weekly": 71.0}
    assert status["plan_type"] == "plus"


def test_rate_limit_frames_during_a_turn_update_the_quota_book(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    account = add_chatgpt(gw, auth, "acct-1", "work")
    codex.set_usage("acct-1", primary_used=62, secondary_used=29)
    codex.usage_during_turn["acct-1"] = {"primary_used": 91, "secondary_used": 33}  # reported mid-stream
    http_turn(gw, [user("hi")])
    assert not codex.usage_during_turn  # the frame was sent, after the first event
    windows = {w["name"]: w["remaining_percent"] for w in gw.account_status(account.id)["quota"]["windows"]}
    assert windows == {"5h": 9.0, "weekly": 67.0}  # not the 38 / 71 % of the turn's start


def test_a_usage_limit_frame_before_content_falls_back_to_the_next_account(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "first")
    add_chatgpt(gw, auth, "acct-2", "second")
    codex.set_usage("acct-1", primary_used=100)
    http_turn(gw, [user("hi")])
    assert [t.error for t in codex.sockets.turns] == ["usage_limit_reached", None]
    assert [c.headers["chatgpt-account-id"] for c in codex.sockets.connections] == ["acct-1", "acct-2"]
    assert gw.account_status("first")["health"] == "exhausted"


def test_an_upstream_that_refuses_the_upgrade_is_served_over_http(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.sockets.refuse_status = 426
    http_turn(gw, [user("one")])
    http_turn(gw, [user("one"), user("two")])
    assert codex.request_count == 2 and codex.sockets.turns == []
    assert len(codex.requests[-1].json["input"]) == 2  # the full input, over HTTP
    gw.flush_log()
    rows = gw.services.engine.request_log.query(session_id="sess-1")
    # the refusal is remembered: the second turn did not ask again
    assert [r.fallback_chain for r in rows] == [["work:200"], ["work:upstream_websocket-failed", "work:200"]]


def test_the_socket_is_renewed_before_the_cap_and_the_full_input_resent(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    conversation = http_turn(gw, [user("one")])
    transport(gw).max_age = 0.0  # "55 minutes" have passed
    http_turn(gw, [*conversation, user("two")])
    first, second = codex.sockets.connections
    assert wait_until(lambda: first.closed)
    turn = codex.sockets.turns[-1]
    assert turn.connection == second.number and turn.previous_response_id is None
    assert len(turn.frame["input"]) == 3


def test_a_socket_the_service_already_capped_is_replaced_within_the_turn(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    conversation = http_turn(gw, [user("one")])
    codex.sockets.max_connection_seconds = 3600
    codex.sockets.expire()  # Headway's clock and the service's disagree: the service says the hour is up
    http_turn(gw, [*conversation, user("two")])
    turns = codex.sockets.turns
    assert [t.error for t in turns] == [None, "websocket_connection_limit_reached", None]
    assert (
        turns[2].connection == 2
        and turns[2].previous_response_id is None
        and len(turns[2].frame["input"]) == 3
    )


def test_a_socket_the_upstream_forgot_is_replaced_within_the_turn(
    auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    """As after a laptop's sleep: the socket looks young (its age runs on the monotonic clock, which stands still in
    sleep) but the service forgot it. Before, the turn failed on it and went to the next account."""
    codex.sockets.enabled = True
    with (
        ForgetfulRelay("127.0.0.1", codex.port) as relay,
        start_gateway(env={"HEADWAY_CHATGPT_BASE_URL": relay.url, "HEADWAY_OPENAI_AUTH_URL": auth.url}) as gw,
    ):
        add_chatgpt(gw, auth, "acct-1", "work")
        add_chatgpt(gw, auth, "acct-2", "spare")
        conversation = http_turn(gw, [user("one")])
        relay.forget()
        http_turn(gw, [*conversation, user("two")])
        gw.flush_log()
        rows = gw.services.engine.request_log.query()
    turns = codex.sockets.turns
    assert len(turns) == 2 and turns[1].connection == 2
    assert turns[1].previous_response_id is None and len(turns[1].frame["input"]) == 3  # the full input, anew
    assert [r.account_id for r in rows] == ["work", "work"]
    assert all(r.fallback_chain == ["work:200"] for r in rows), [r.fallback_chain for r in rows]
    assert relay.resets == 1


def test_after_the_machine_slept_a_socket_a_firewall_forgot_is_not_waited_on(
    auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    """The silent kind of forgetting: a router drops the socket's frames without a reset, so the old socket would
    wait out the first-byte timeout and the turn go to the next account. After a sleep no kept socket is used."""
    codex.sockets.enabled = True

    def short_timeouts(s: Settings) -> None:
        s.gateway.first_byte_timeout_seconds = 3.0

    with (
        ForgetfulRelay("127.0.0.1", codex.port) as relay,
        start_gateway(
            env={"HEADWAY_CHATGPT_BASE_URL": relay.url, "HEADWAY_OPENAI_AUTH_URL": auth.url},
            settings=short_timeouts,
        ) as gw,
    ):
        add_chatgpt(gw, auth, "acct-1", "work")
        add_chatgpt(gw, auth, "acct-2", "spare")
        conversation = http_turn(gw, [user("one")])
        slept = [0.0]
        transport(gw).sleep_watch = SleepWatch(wall=lambda: time.time() + slept[0], monotonic=time.monotonic)
        relay.forget(silently=True)
        slept[0] = 3 * 3600.0
        http_turn(gw, [*conversation, user("two")])
        gw.flush_log()
        rows = gw.services.engine.request_log.query()
    # what went into the void: the old socket's close frame, not the turn
    assert relay.swallowed <= 1, "a turn went out on the socket from before the sleep"
    turns = codex.sockets.turns
    assert len(turns) == 2 and turns[1].connection == 2
    assert turns[1].previous_response_id is None and len(turns[1].frame["input"]) == 3
    assert [r.account_id for r in rows] == ["work", "work"]
    assert all(r.fallback_chain == ["work:200"] for r in rows), [r.fallback_chain for r in rows]


def test_an_openai_api_key_uses_the_websocket_mode_too(gw: RunningGateway, openai: FakeOpenAI) -> None:
    gw.add("openai", "api", "sk-test-1")
    conversation = http_turn(gw, [user("one")])
    http_turn(gw, [*conversation, user("two")])
    turns = openai.sockets.turns
    assert openai.request_count == 0
    assert turns[1].previous_response_id == turns[0].response_id and len(turns[1].frame["input"]) == 1
    assert openai.sockets.connections[0].headers["authorization"] == "Bearer sk-test-1"


def test_the_setting_turns_it_off(gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    gw.edit(lambda s: setattr(s.upstream_websocket, "chatgpt", False))
    http_turn(gw, [user("one")])
    assert codex.request_count == 1 and codex.sockets.connections == []


def test_no_session_id_means_http(gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    gw.openai_client().responses.create(model="gpt-5", input="no session")
    assert codex.request_count == 1 and codex.sockets.connections == []


def test_responses_lite_travels_in_client_metadata(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    gw.openai_client().responses.create(
        model="gpt-5.6-sol",
        input="hi",
        instructions="",
        extra_headers={"session-id": "lite-1", "x-openai-internal-codex-responses-lite": "true"},
    )
    turn = codex.sockets.turns[-1]
    assert turn.frame["client_metadata"] == {LITE_METADATA_KEY: "true"}
    assert turn.frame["parallel_tool_calls"] is False
    assert "x-openai-internal-codex-responses-lite" not in codex.sockets.connections[0].headers


# ---------------------------------------------------------------- an agent on WebSocket end to end


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def ws_turn(ws: WebSocket, **body: Any) -> list[dict[str, Any]]:
    await ws.send_text(json.dumps({"type": "response.create", **body}))
    frames: list[dict[str, Any]] = []
    while True:
        frames.append(json.loads(await ws.recv(timeout=20)))
        if frames[-1]["type"] in ("response.completed", "response.failed", "error"):
            return frames


async def test_an_agent_socket_maps_onto_one_upstream_socket_and_closes_it(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    headers = {"authorization": f"Bearer {gw.key}", "session-id": "agent-ws-1"}
    ws = await WebSocket.connect(http, gw.url + "/v1/responses", headers)
    previous = None
    for text in ("one", "two", "three"):
        extra = {"previous_response_id": previous} if previous else {}
        frames = await ws_turn(ws, model="gpt-5", input=[user(text)], store=False, **extra)
        assert frames[-1]["type"] == "response.completed"
        previous = frames[-1]["response"]["id"]
    turns = codex.sockets.turns
    # the agent's ids are the service's own: the chain goes through unchanged, one new item per turn
    assert [t.previous_response_id for t in turns] == [None, turns[0].response_id, turns[1].response_id]
    assert previous == turns[2].response_id
    assert [len(t.frame["input"]) for t in turns] == [1, 1, 1]
    assert len(codex.sockets.connections) == 1
    await ws.close()
    assert wait_until(lambda: codex.sockets.connections[0].closed)


async def test_a_chained_turn_that_moves_to_another_account_is_replayed_whole(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "first")
    add_chatgpt(gw, auth, "acct-2", "second")
    headers = {"authorization": f"Bearer {gw.key}", "session-id": "agent-ws-2"}
    ws = await WebSocket.connect(http, gw.url + "/v1/responses", headers)
    first = await ws_turn(ws, model="gpt-5", input=[user("one")], store=False)
    codex.set_usage("acct-1", primary_used=100)  # the first account runs out between the turns
    second = await ws_turn(
        ws, model="gpt-5", input=[user("two")], previous_response_id=first[-1]["response"]["id"], store=False
    )
    assert all(f["type"] != "error" for f in second) and second[-1]["type"] == "response.completed"
    await ws.close()
    turns = codex.sockets.turns
    assert [codex.sockets.connections[t.connection - 1].headers["chatgpt-account-id"] for t in turns] == [
        "acct-1",
        "acct-1",
        "acct-2",
    ]
    assert turns[1].error == "usage_limit_reached"
    moved = turns[2]
    # the second account's socket never saw the first response: it got the whole conversation
    assert moved.previous_response_id is None
    texts = [i["content"][0]["text"] for i in moved.frame["input"]]
    assert texts == ["one", "Hello from the fake", "two"]
