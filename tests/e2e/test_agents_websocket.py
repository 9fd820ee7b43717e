"""Real agents speaking the Responses API over WebSocket to a real `headway serve`, which holds one upstream
WebSocket per session to the fake Codex backend (tests/fakes/websocket.py): multi-turn, with tool calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.auth import TokenSet
from proxy.config.paths import Paths
from proxy.config.settings import Account
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import account_secret_name
from tests.fakes import Behavior, FakeAccount, FakeOpenAIAuth, RecordedRequest, ToolCall
from tests.fakes.codex import FakeCodex
from tests.support.agents import require_agent, run_codex, run_opencode
from tests.support.gateway import GatewayProcess, e2e_keychain, start_gateway_process

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
    with FakeOpenAIAuth() as auth, FakeCodex(auth=auth, default=Behavior(text=REPLY)) as codex:
        codex.sockets.enabled = True
        paths = Paths.from_env()
        keychain = e2e_keychain(paths)
        tokens = TokenSet.from_token_response(
            auth.issue_tokens(FakeAccount(account_id="acct-p")), now=time.time()
        )
        keychain.set(account_secret_name("personal"), tokens.to_json())
        account = Account(id="personal", kind="chatgpt", label="personal", chatgpt_account_id="acct-p")
        SettingsStore(paths.settings_file).update(lambda s: s.accounts.append(account))
        process = start_gateway_process(
            env={"HEADWAY_CHATGPT_BASE_URL": codex.url, "HEADWAY_OPENAI_AUTH_URL": auth.url}
        )
        try:
            yield process, codex
        finally:
            assert process.stop() == 0, process.output()


def test_codex_cli_over_websocket_with_a_tool_call(
    chatgpt: tuple[GatewayProcess, FakeCodex], tmp_path: Path
) -> None:
    require_agent("codex")
    gateway, codex = chatgpt
    first_turn_calls(codex, ToolCall("exec_command", {"cmd": "echo tool-ran"}))
    result = run_codex(
        base_url=gateway.url,
        api_key=gateway.key,
        model="gpt-5",
        prompt="Run echo tool-ran, then answer.",
        workdir=tmp_path,
        websocket=True,
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
    assert "tool-ran" in str(last.frame["input"][0]["output"])
    assert len({t.connection for t in turns}) == 1


def test_opencode_over_websocket(chatgpt: tuple[GatewayProcess, FakeCodex], tmp_path: Path) -> None:
    require_agent("opencode")
    gateway, codex = chatgpt
    first_turn_calls(codex, ToolCall("read", {"filePath": str(tmp_path / "notes.txt")}))
    (tmp_path / "notes.txt").write_text("opencode-read-this\n")
    result = run_opencode(
        base_url=gateway.url,
        api_key=gateway.key,
        model="openai/gpt-5",
        prompt="Read notes.txt, then answer.",
        workdir=tmp_path,
        websocket=True,
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    log = gateway.log_path.read_text()
    assert "agent WebSocket opened on /v1/responses" in log, log[-3000:]
    turns = codex.sockets.turns
    assert not [r for r in codex.requests if r.path.endswith("/responses")]  # nothing over HTTP
    assert len(turns) >= 2
    last = turns[-1]
    assert last.previous_response_id == turns[-2].response_id
    assert [item["type"] for item in last.frame["input"]] == ["function_call_output"]
    assert "opencode-read-this" in str(last.frame["input"][0]["output"])
