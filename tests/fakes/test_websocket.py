"""The fakes' WebSocket mode keeps the service's rules (a real client over a real socket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy.relay.websocket import WebSocket, WebSocketClosed, WebSocketError
from tests.fakes import Behavior, FakeAccount, FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex

CODEX_PATH = "/backend-api/codex/responses"


@pytest.fixture(autouse=True)
def sockets_on(codex: FakeCodex) -> None:
    codex.sockets.enabled = True


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def turn(ws: WebSocket, **body: Any) -> list[dict[str, Any]]:
    await ws.send_text(json.dumps({"type": "response.create", **body}))
    frames: list[dict[str, Any]] = []
    while True:
        frames.append(json.loads(await ws.recv(timeout=10)))
        if frames[-1]["type"] in ("response.completed", "response.failed", "error"):
            return frames


def token(auth: FakeOpenAIAuth, account: str = "acct-1") -> str:
    return str(auth.issue_tokens(FakeAccount(account_id=account))["access_token"])


async def open_codex(http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth) -> WebSocket:
    headers = {"authorization": f"Bearer {token(auth)}", "chatgpt-account-id": "acct-1"}
    return await WebSocket.connect(http, codex.url + CODEX_PATH, headers)


async def test_previous_response_id_resolves_only_on_its_own_connection(
    http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth
) -> None:
    ws = await open_codex(http, codex, auth)
    first = await turn(ws, model="gpt-5", input="one", store=False)
    assert first[0]["type"] == "codex.rate_limits"
    assert first[0]["rate_limits"]["primary"]["window_minutes"] == 300
    first_id = first[-1]["response"]["id"]
    second = await turn(ws, model="gpt-5", input="two", previous_response_id=first_id)
    assert second[-1]["type"] == "response.completed"
    texts = [
        part.get("text")
        for item in codex.sockets.turns[-1].conversation
        for part in item.get("content", [])
        if isinstance(part, dict)
    ]
    assert texts == ["one", "Hello from the fake", "two"]

    other = await open_codex(http, codex, auth)
    refused = await turn(other, model="gpt-5", input="three", previous_response_id=first_id)
    assert refused == [
        {
            "type": "error",
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "code": "previous_response_not_found",
                "message": f"Previous response with id '{first_id}' not found.",
                "param": None,
            },
        }
    ]
    assert (await turn(other, model="gpt-5", input="still open"))[-1]["type"] == "response.completed"
    await ws.close()
    await other.close()
    assert codex.request_count == 0  # nothing went over HTTP


async def test_a_usage_limit_is_an_error_frame_and_behaviours_apply_per_turn(
    http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth
) -> None:
    ws = await open_codex(http, codex, auth)
    codex.enqueue(Behavior(status=503), Behavior(text="scripted"))
    assert (await turn(ws, model="gpt-5", input="a"))[-1]["status"] == 503
    frames = await turn(ws, model="gpt-5", input="b")
    assert "".join(f.get("delta", "") for f in frames) == "scripted"
    codex.set_usage("acct-1", primary_used=100)
    limit = await turn(ws, model="gpt-5", input="c")
    assert limit[-1]["status"] == 429 and limit[-1]["error"]["type"] == "usage_limit_reached"
    assert [t.error for t in codex.sockets.turns] == ["server_is_overloaded", None, "usage_limit_reached"]
    await ws.close()


async def test_a_connection_past_its_cap_is_told_so_and_closed(
    http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth
) -> None:
    codex.sockets.max_connection_seconds = 0.0
    ws = await open_codex(http, codex, auth)
    frames = await turn(ws, model="gpt-5", input="late")
    assert frames[-1]["error"]["code"] == "websocket_connection_limit_reached"
    with pytest.raises(WebSocketClosed):
        await ws.recv(timeout=5)


async def test_a_bad_token_or_a_refusing_server_answers_the_upgrade_with_http(
    http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth
) -> None:
    with pytest.raises(WebSocketError) as refused:
        await WebSocket.connect(http, codex.url + CODEX_PATH, {"authorization": "Bearer nope"})
    assert refused.value.status == 401
    codex.sockets.refuse_status = 426
    with pytest.raises(WebSocketError) as refused:
        await WebSocket.connect(http, codex.url + CODEX_PATH, {"authorization": f"Bearer {token(auth)}"})
    assert refused.value.status == 426
    assert codex.sockets.connections == []


async def test_openai_has_the_websocket_mode_with_its_key_check(http: httpx.AsyncClient) -> None:
    with FakeOpenAI(valid_keys={"sk-good"}) as openai:
        with pytest.raises(WebSocketError) as off:
            await WebSocket.connect(http, openai.url + "/v1/responses", {"authorization": "Bearer sk-good"})
        assert off.value.status == 404  # off by default, like an HTTP-only server
        openai.sockets.enabled = True
        with pytest.raises(WebSocketError) as refused:
            await WebSocket.connect(http, openai.url + "/v1/responses", {"authorization": "Bearer sk-bad"})
        assert refused.value.status == 401
        ws = await WebSocket.connect(http, openai.url + "/v1/responses", {"authorization": "Bearer sk-good"})
        frames = await turn(ws, model="gpt-5", input="hi")
        assert frames[0]["type"] == "response.created"  # no Codex rate-limit frames here
        assert frames[-1]["type"] == "response.completed"
        await ws.close()


async def test_permessage_deflate_is_agreed_and_the_wire_size_recorded(
    http: httpx.AsyncClient, codex: FakeCodex, auth: FakeOpenAIAuth
) -> None:
    headers = {"authorization": f"Bearer {token(auth)}", "chatgpt-account-id": "acct-1"}
    ws = await WebSocket.connect(http, codex.url + CODEX_PATH, headers, compress=True)
    instructions = "Keep it short. " * 400
    for text in ("one", "two"):
        assert (await turn(ws, model="gpt-5", instructions=instructions, input=text))[-1]["type"] == (
            "response.completed"
        )
    await ws.close()
    assert codex.sockets.connections[0].compressed
    first, second = codex.sockets.turns
    assert first.wire < first.size / 10  # repeated text compresses…
    assert second.wire < first.wire  # …and the second frame refers back to the first
    plain = await open_codex(http, codex, auth)  # no offer, no extension
    await turn(plain, model="gpt-5", input="three")
    await plain.close()
    assert not codex.sockets.connections[1].compressed
    assert codex.sockets.turns[2].wire > codex.sockets.turns[2].size
