"""The Responses API over WebSocket, agent side: a real WebSocket client → Headway → the fake Codex backend (HTTP).

The client is Headway's own wsproto client (proxy/relay/websocket.py) over a real socket; the gateway runs in its
own thread exactly as `headway serve` runs it (uvicorn with wsproto).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from proxy.relay.websocket import WebSocket, WebSocketError
from tests.fakes import Behavior, FakeOpenAI, FakeOpenAIAuth, ToolCall
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    with chatgpt_gateway(auth, codex, openai_url=openai.url) as gateway:
        yield gateway


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def connect(
    http: httpx.AsyncClient, gw: RunningGateway, path: str = "/v1/responses", **headers: str
) -> WebSocket:
    sent = {"authorization": f"Bearer {gw.key}", "session-id": "ws-session-1", **headers}
    return await WebSocket.connect(http, gw.url + path, {k: v for k, v in sent.items() if v})


async def turn(ws: WebSocket, **body: Any) -> list[dict[str, Any]]:
    """Send one response.create and read frames until the turn's last one (completed, failed or an error)."""
    await ws.send_text(json.dumps({"type": "response.create", **body}))
    frames: list[dict[str, Any]] = []
    while True:
        raw = await ws.recv(timeout=20)
        assert isinstance(raw, str)
        frames.append(json.loads(raw))
        if frames[-1]["type"] in ("response.completed", "response.failed", "error"):
            return frames


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# ---------------------------------------------------------------- the upgrade's guards


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({"authorization": ""}, 401, "no local access key"),
        ({"authorization": "Bearer hw-wrong"}, 401, "wrong local access key"),
        ({"origin": "https://evil.example"}, 403, "web pages are refused"),
        ({"host": "evil.example"}, 403, "is not allowed"),
    ],
    ids=["no-key", "wrong-key", "browser-origin", "foreign-host"],
)
async def test_a_refused_upgrade_gets_the_http_error_before_any_upgrade(
    gw: RunningGateway, http: httpx.AsyncClient, headers: dict[str, str], status: int, says: str
) -> None:
    with pytest.raises(WebSocketError) as refused:
        await connect(http, gw, **headers)
    assert refused.value.status == status
    error = json.loads(refused.value.body)["error"]
    assert says in error["message"]


async def test_the_key_may_come_as_x_api_key(gw: RunningGateway, http: httpx.AsyncClient) -> None:
    ws = await connect(http, gw, authorization="", **{"x-api-key": gw.key})
    await ws.close()


# ---------------------------------------------------------------- turns


async def test_turns_on_one_socket_carry_the_whole_conversation_upstream(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.enqueue(Behavior(tool_call=ToolCall("shell", {"command": ["ls"]})), Behavior(text="two files"))
    ws = await connect(http, gw)
    first = await turn(ws, model="gpt-5.1-codex", input=[user("list the files")], store=False)
    kinds = [f["type"] for f in first]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    call = next(f["item"] for f in first if f["type"] == "response.output_item.done")
    first_id = first[-1]["response"]["id"]

    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt b.txt"}
    second = await turn(ws, model="gpt-5.1-codex", input=[output], previous_response_id=first_id, store=False)
    text = "".join(f["delta"] for f in second if f["type"] == "response.output_text.delta")
    assert text == "two files"
    await ws.close()

    sent = codex.requests[-1].json
    assert "previous_response_id" not in sent  # resolved by Headway: the backend could not
    assert sent["store"] is False and sent["stream"] is True
    roles = [(i.get("type"), i.get("role")) for i in sent["input"]]
    assert roles == [("message", "user"), ("function_call", None), ("function_call_output", None)]
    assert sent["input"][1]["call_id"] == call["call_id"]
    assert "openai-beta" not in codex.requests[-1].headers


async def test_an_unknown_previous_response_id_is_an_error_frame_and_the_socket_stays_usable(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    ws = await connect(http, gw)
    frames = await turn(ws, model="gpt-5", input="hi", previous_response_id="resp_from_elsewhere")
    assert frames == [
        {
            "type": "error",
            "status": 400,
            "error": {
                "message": frames[0]["error"]["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": "previous_response_not_found",
            },
        }
    ]
    assert "resp_from_elsewhere" in frames[0]["error"]["message"]
    assert codex.request_count == 0
    again = await turn(ws, model="gpt-5", input="hi")
    assert again[-1]["type"] == "response.completed"
    await ws.close()


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("not json", "not valid JSON"),
        ('{"type": "session.update"}', "expected a response.create frame"),
        ("[1, 2]", "expected a response.create frame"),
    ],
)
async def test_a_bad_frame_is_an_error_frame(
    gw: RunningGateway, http: httpx.AsyncClient, frame: str, says: str
) -> None:
    ws = await connect(http, gw)
    await ws.send_text(frame)
    error = json.loads(await ws.recv(timeout=10))
    assert error["type"] == "error" and error["status"] == 400
    assert says in error["error"]["message"]
    await ws.send_binary(b"\x00")
    error = json.loads(await ws.recv(timeout=10))
    assert "binary frames" in error["error"]["message"]
    await ws.close()


async def test_a_warm_up_is_answered_locally_and_can_be_chained_from(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    ws = await connect(http, gw)
    warm = await turn(ws, model="gpt-5", input=[user("setup")], generate=False)
    assert [f["type"] for f in warm] == ["response.created", "response.completed"]
    assert warm[-1]["response"]["output"] == []
    assert codex.request_count == 0
    real = await turn(ws, model="gpt-5", input=[user("go")], previous_response_id=warm[-1]["response"]["id"])
    assert real[-1]["type"] == "response.completed"
    texts = [i["content"][0]["text"] for i in codex.requests[-1].json["input"]]
    assert texts == ["setup", "go"]
    await ws.close()


# ---------------------------------------------------------------- routing as over HTTP


async def test_a_usage_limit_before_content_moves_the_turn_without_an_error_frame(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "first")
    add_chatgpt(gw, auth, "acct-2", "second")
    codex.set_usage("acct-1", primary_used=100)
    ws = await connect(http, gw)
    frames = await turn(ws, model="gpt-5", input="hi")
    assert all(f["type"] != "error" for f in frames)
    assert frames[-1]["type"] == "response.completed"
    assert [r.headers["chatgpt-account-id"] for r in codex.requests] == ["acct-1", "acct-2"]
    assert gw.account_status("first")["health"] == "exhausted"

    codex.set_usage("acct-2", primary_used=100)
    frames = await turn(ws, model="gpt-5", input="again")
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["status"] == 429
    assert "rate-limited, out of quota or blocked" in frames[0]["error"]["message"]

    await ws.close()


async def test_each_turn_is_in_the_request_log_like_an_http_request(
    gw: RunningGateway, http: httpx.AsyncClient, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    ws = await connect(http, gw)
    for text in ("one", "two"):
        assert (await turn(ws, model="gpt-5", input=text))[-1]["type"] == "response.completed"
    await ws.close()
    gw.flush_log()
    rows = gw.services.engine.request_log.query(session_id="ws-session-1")
    assert [(r.route, r.status, r.stream) for r in rows] == [("/v1/responses", 200, True)] * 2
    assert all(r.usage is not None and r.usage.input_tokens for r in rows)


async def test_the_path_without_v1_upgrades_too(gw: RunningGateway, http: httpx.AsyncClient) -> None:
    ws = await connect(http, gw, path="/responses")
    await ws.close()
