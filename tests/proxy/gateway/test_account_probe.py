"""The account test (proxy/gateway/account_probe.py, Engine.test_account): the tiny request per kind of account, and
what the result says — through a real gateway for a ChatGPT subscription (fake Codex backend), and with a scripted
send for the paths that never reach an upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.config.settings import Account
from proxy.gateway.account_probe import DEFAULT_MODELS, TEST_PROMPT, probe_request, run_probe
from proxy.providers.base import Incoming
from tests.fakes import FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway


def _account(kind: str, account_id: str = "a") -> Account:
    extra: dict[str, Any] = {"chatgpt_account_id": "acct"} if kind == "chatgpt" else {}
    return Account(id=account_id, kind=kind, label=account_id, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["anthropic-api-key", "openai-api-key", "chatgpt"])
def test_the_request_is_one_short_turn_in_the_pools_protocol(kind: str) -> None:
    incoming = probe_request(_account(kind))
    assert incoming.purpose == "test" and incoming.model == DEFAULT_MODELS[kind]
    assert TEST_PROMPT in incoming.body.decode()
    if kind == "anthropic-api-key":
        assert (incoming.path, incoming.family, incoming.json["max_tokens"]) == (
            "/v1/messages",
            "anthropic",
            8,
        )
    else:
        assert (incoming.path, incoming.family) == ("/v1/responses", "openai")
        assert incoming.stream is (kind == "chatgpt")  # the Codex backend answers only as a stream
    assert probe_request(_account(kind), "my-model").model == "my-model"


def _run(account: Account, send_result: bool, snapshot: list[dict[str, Any]], paused: bool = False) -> Any:
    sent: list[Incoming] = []

    async def send(incoming: Incoming, chosen: Account) -> bool:
        assert chosen is account
        sent.append(incoming)
        return send_result

    result = asyncio.run(run_probe(account, send=send, accounts=lambda: snapshot, paused=paused))
    return result, sent


def test_results_say_what_happened() -> None:
    account = _account("anthropic-api-key")
    ok, sent = _run(account, True, [{"id": "a", "health": "healthy"}])
    assert (ok.ok, ok.sent, ok.detail) == (True, True, "answered") and ok.latency_ms >= 0 and len(sent) == 1

    failing = [{"id": "a", "health": "healthy"}]
    result, _ = _run(account, False, failing)
    assert (result.ok, result.sent, result.detail) == (False, True, "the request failed")

    blocked, sent = _run(
        account, True, [{"id": "a", "health": "cooling_down", "detail": "429 from upstream"}]
    )
    assert (blocked.ok, blocked.sent, blocked.latency_ms) == (False, False, None) and sent == []
    assert blocked.detail == "not sent: 429 from upstream"

    paused, sent = _run(account, True, [{"id": "a", "health": "healthy"}], paused=True)
    assert paused.detail == "not sent: Headway is paused" and sent == []

    disabled, sent = _run(account, True, [{"id": "a", "health": "disabled"}])
    assert disabled.ok and len(sent) == 1  # a disabled account can be tested before it is enabled again


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex) -> Iterator[RunningGateway]:
    with FakeOpenAI() as platform, chatgpt_gateway(auth, codex, openai_url=platform.url) as gateway:
        yield gateway


def test_a_chatgpt_subscription_is_tested_through_the_codex_backend(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-9", "plus")
    engine = gw.services.engine
    result = engine.call(engine.test_account("plus"), timeout=30)
    assert result.ok and result.sent and result.model == DEFAULT_MODELS["chatgpt"], result
    sent = codex.requests[-1]
    assert sent.path == "/backend-api/codex/responses" and sent.headers["chatgpt-account-id"] == "acct-9"
    with pytest.raises(KeyError):
        engine.call(engine.test_account("nobody"), timeout=5)
