"""Real agents speaking the Responses API over WebSocket to a real `headway serve`, which holds one upstream
WebSocket per session to the fake Codex backend (tests/fakes/websocket.py): multi-turn, with tool calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes import Behavior, RecordedRequest, ToolCall
from tests.fakes.codex import FakeCodex
from tests.fakes.websocket import SocketTurn
from tests.support.agents import AgentResult, require_agent, run_codex, run_opencode
from tests.support.chatgpt_gateway import chatgpt_gateway_process
from tests.support.gateway import GatewayProcess

pytestmark = [pytest.mark.keychain, pytest.mark.agents]

REPLY = "Socket reply 7e41: served through Headway."


def first_turn_calls(codex: FakeCodex, call: ToolCall) -> None:
    """The first WebSocket turn answers with ``call``; the rest with the default reply. (Scripted per turn, not
    through the shared queue, which the idle usage poll may take from.)"""
    answered: list[bool] = []

    def script(request: RecordedRequest) -> Behavior | None:
        if request.method != "WS" or answered:
            return None
        answered.append(True)
        return Behavior(tool_call=call)

    codex.fault_for = script


@pytest.fixture
def chatgpt() -> Iterator[tuple[GatewayProcess, FakeCodex]]:
    with chatgpt_gateway_process([("personal", "acct-p")], reply=REPLY, websocket=True) as served:
        yield served


def run_tool_turn_over_websocket(
    run: Callable[..., AgentResult],
    chatgpt: tuple[GatewayProcess, FakeCodex],
    *,
    model: str,
    prompt: str,
    workdir: Path,
    tool_output: str,
) -> list[SocketTurn]:
    """Run the agent over WebSocket and check the whole exchange went over one agent socket: the reply came back,
    nothing went over HTTP, and the turn after the tool call sent only the tool's output (``tool_output`` in it),
    chained on the turn before. Returns the upstream turns."""
    gateway, codex = chatgpt
    result = run(
        base_url=gateway.url, api_key=gateway.key, model=model, prompt=prompt, workdir=workdir, websocket=True
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    log = gateway.log_path.read_text()
    assert "agent WebSocket opened on /v1/responses" in log, log[-3000:]
    turns = codex.sockets.turns
    assert not [r for r in codex.requests if r.path.endswith("/responses")]  # nothing over HTTP
    assert len(turns) >= 2
    # the tool's output went back as the only new input, chained on the same upstream socket
    last = turns[-1]
    assert last.previous_response_id == turns[-2].response_id
    assert [item["type"] for item in last.frame["input"]] == ["function_call_output"]
    assert tool_output in str(last.frame["input"][0]["output"])
    return turns


def test_codex_cli_over_websocket_with_a_tool_call(
    chatgpt: tuple[GatewayProcess, FakeCodex], tmp_path: Path
) -> None:
    require_agent("codex")
    first_turn_calls(chatgpt[1], ToolCall("exec_command", {"cmd": "echo tool-ran"}))
    turns = run_tool_turn_over_websocket(
        run_codex,
        chatgpt,
        model="gpt-5",
        prompt="Run echo tool-ran, then answer.",
        workdir=tmp_path,
        tool_output="tool-ran",
    )
    assert len({t.connection for t in turns}) == 1


def test_opencode_over_websocket(chatgpt: tuple[GatewayProcess, FakeCodex], tmp_path: Path) -> None:
    require_agent("opencode")
    first_turn_calls(chatgpt[1], ToolCall("read", {"filePath": str(tmp_path / "notes.txt")}))
    (tmp_path / "notes.txt").write_text("opencode-read-this\n")
    run_tool_turn_over_websocket(
        run_opencode,
        chatgpt,
        model="openai/gpt-5",
        prompt="Read notes.txt, then answer.",
        workdir=tmp_path,
        tool_output="opencode-read-this",
    )
