"""Every request Headway sends the Codex backend — an agent's turn, the usage poll, the model list — carries the one
header block of proxy/providers/chatgpt/backend.py: the account's token and id, ``originator`` and Headway's
User-Agent."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.auth import TokenSet
from proxy.config.settings import Account
from proxy.providers.chatgpt.backend import (
    MODELS_PATH,
    ORIGINATOR,
    RESPONSES_PATH,
    USAGE_PATH,
    codex_user_agent,
)
from proxy.secrets.keychain import account_secret_name
from tests.fakes import FakeAccount, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import chatgpt_gateway
from tests.support.gateway import RunningGateway


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex) -> Iterator[RunningGateway]:
    with chatgpt_gateway(auth, codex) as gateway:
        yield gateway


def test_turn_usage_poll_and_model_list_carry_the_same_header_block(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    payload = auth.issue_tokens(FakeAccount(account_id="acct-7", email="work@example.com"))
    tokens = TokenSet.from_token_response(payload, now=time.time())
    gw.services.keychain.set(account_secret_name("work"), tokens.to_json())
    account = Account(id="work", kind="chatgpt", label="work", chatgpt_account_id="acct-7", plan_type="plus")
    gw.edit(lambda s: s.accounts.append(account))

    openai = gw.openai_client()
    openai.responses.create(model="gpt-5", input="hi")
    assert [m.id for m in openai.models.list()]
    assert httpx.get(f"{gw.url}/status?refresh=1", headers=gw.headers("openai")).status_code == 200

    by_path = {r.path: r.headers for r in codex.requests}
    assert {RESPONSES_PATH, MODELS_PATH, USAGE_PATH} <= set(by_path)
    for path in (RESPONSES_PATH, MODELS_PATH, USAGE_PATH):
        headers = by_path[path]
        assert headers["authorization"] == f"Bearer {tokens.access_token}", path
        assert headers["chatgpt-account-id"] == "acct-7", path
        assert headers["originator"] == ORIGINATOR == "headway", path
        assert headers["user-agent"].startswith(codex_user_agent(None)), path
    # The agent's own identity rides along on its turns (never hidden), and only there.
    assert by_path[RESPONSES_PATH]["user-agent"] != codex_user_agent(None)
    assert by_path[USAGE_PATH]["user-agent"] == by_path[MODELS_PATH]["user-agent"] == codex_user_agent(None)
