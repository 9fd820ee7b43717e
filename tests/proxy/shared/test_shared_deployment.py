"""A shared gateway (team mode or remote binding) never uses a ChatGPT account, and says why."""

from __future__ import annotations

import httpx

from proxy.config.settings import Account, Settings
from proxy.features.shared_accounts import SHARED_REFUSAL, SharedAccounts
from proxy.providers.base import Incoming
from tests.fakes import FakeOpenAI
from tests.support.gateway import start_gateway
from tests.support.redis_server import RedisServer

CHATGPT = Account(id="plus", kind="chatgpt", label="plus", chatgpt_account_id="acct-1")
API_KEY = Account(id="org", kind="openai-api-key", label="org")


def _incoming() -> Incoming:
    return Incoming("POST", "/v1/responses", "", {}, b"{}", {}, "openai-responses", "openai")


def test_the_feature_skips_personal_accounts_only_when_shared() -> None:
    shared = [False]
    feature = SharedAccounts(lambda: shared[0])
    assert feature.allows(_incoming(), CHATGPT, 0.0) is None
    shared[0] = True
    block = feature.allows(_incoming(), CHATGPT, 0.0)
    assert (
        block is not None and block.state == "not_shared" and "OpenAI's terms forbid sharing" in block.reason
    )
    assert feature.allows(_incoming(), API_KEY, 0.0) is None


def test_a_team_gateway_refuses_its_chatgpt_account_and_says_why(
    redis_server: RedisServer, openai: FakeOpenAI
) -> None:
    def configure(settings: Settings) -> None:
        settings.accounts.append(CHATGPT.model_copy())

    gateway = start_gateway(
        openai_url=openai.url, settings=configure, env={"HEADWAY_SHARED_STATE_URL": redis_server.url}
    )
    try:
        response = httpx.post(
            f"{gateway.url}/v1/responses",
            json={"model": "gpt-5", "input": "hi"},
            headers={"authorization": f"Bearer {gateway.key}"},
            timeout=10,
        )
        assert response.status_code >= 400
        assert SHARED_REFUSAL in response.json()["error"]["message"]
        plus = gateway.account_status("plus")
        assert plus["health"] == "not_shared" and plus["detail"] == SHARED_REFUSAL
        summary = gateway.status()["summary"]
        entry = next(e for e in summary["accounts"] if e["id"] == "plus")
        assert not entry["enabled"] and not entry.get("serving")
        assert "personal subscription in a shared gateway" in entry["line"]
        # An organisation's API key is used as usual.
        gateway.add("openai", "org", "sk-org-key")
        ok = httpx.post(
            f"{gateway.url}/v1/responses",
            json={"model": "gpt-5", "input": "hi"},
            headers={"authorization": f"Bearer {gateway.key}"},
            timeout=10,
        )
        assert ok.status_code == 200
        assert openai.api_key(openai.last_request) == "sk-org-key"
    finally:
        gateway.stop()
