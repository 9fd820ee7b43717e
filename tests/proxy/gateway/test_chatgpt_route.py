"""ChatGPT subscription accounts through the gateway: the openai SDK → Headway → a fake Codex backend and issuer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from proxy.auth import TokenSet
from proxy.secrets.keychain import account_secret_name
from tests.fakes import Behavior, FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway, start_gateway, wait_until


@pytest.fixture
def platform() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def gw(auth: FakeOpenAIAuth, codex: FakeCodex, platform: FakeOpenAI) -> Iterator[RunningGateway]:
    with chatgpt_gateway(auth, codex, openai_url=platform.url) as gateway:
        yield gateway


def client(gw: RunningGateway) -> openai.OpenAI:
    return gw.openai_client()  # type: ignore[no-any-return]


def test_responses_stream_is_reshaped_for_codex_and_identified_honestly(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    events = list(
        client(gw).responses.create(
            model="gpt-5.1-codex",
            input="hello",
            stream=True,
            max_output_tokens=100,
            temperature=0.2,
            tools=[{"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}],
            extra_headers={"session_id": "pi-session-1"},
        )
    )
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from the fake"
    sent = codex.requests[-1]
    assert sent.path == "/backend-api/codex/responses"
    assert sent.headers["chatgpt-account-id"] == "acct-1"
    assert sent.headers["originator"] == "headway"
    assert sent.headers["user-agent"].startswith("headway/")
    assert sent.headers["session-id"] == "pi-session-1"
    body = sent.json
    assert body["store"] is False and body["stream"] is True
    assert "max_output_tokens" not in body and "temperature" not in body
    assert "reasoning.encrypted_content" in body["include"]
    assert body["instructions"]
    assert {"type": "web_search", "external_web_access": False} in body["tools"]  # the cache stabilizer


def stream_chat(c: openai.OpenAI) -> list[ChatCompletionChunk]:
    """A streamed chat completion's chunks, with the usage chunk at the end."""
    return list(
        c.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )


def test_stabilizer_follows_the_setting(gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    gw.edit(lambda s: setattr(s.chatgpt, "stabilize_cache", False))
    client(gw).responses.create(
        model="gpt-5", input="hi", tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    )
    assert all(t["type"] == "function" for t in codex.requests[-1].json["tools"])


def test_non_streaming_responses_are_aggregated(gw: RunningGateway, auth: FakeOpenAIAuth) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    response = client(gw).responses.create(model="gpt-5", input="hi")
    assert response.output_text == "Hello from the fake"
    assert response.usage is not None and response.usage.output_tokens > 0


def test_a_whole_answer_in_one_read_is_translated_whole(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    # A short answer often arrives in one network read: the first content event with everything after it. The events
    # after the one that ends the hold were lost to the translators (and to the usage count) until they were kept.
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.default = Behavior(one_write=True, usage={"input_tokens": 7, "output_tokens": 11})
    c = client(gw)
    response = c.responses.create(model="gpt-5", input="hi")
    assert response.output_text == "Hello from the fake"
    completion = c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    chunks = stream_chat(c)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello from the fake"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 11
    gw.flush_log()
    rows = gw.services.engine.request_log.query(limit=3)
    assert [r.usage.output_tokens if r.usage else None for r in rows] == [11, 11, 11]


def test_chat_completions_translated_both_ways(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    c = client(gw)
    completion = c.chat.completions.create(
        model="gpt-5", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert codex.requests[-1].json["instructions"] == "be brief"

    chunks = stream_chat(c)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from the fake"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_codex_headers_become_5h_and_weekly_windows(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    account = add_chatgpt(gw, auth, "acct-1", "work")
    codex.set_usage("acct-1", primary_used=62, secondary_used=29)
    client(gw).responses.create(model="gpt-5", input="hi")
    status = gw.account_status(account.id)
    windows = {w["name"]: w for w in status["quota"]["windows"]}
    assert windows["5h"]["remaining_percent"] == 38.0
    assert windows["weekly"]["remaining_percent"] == 71.0
    assert 3590 < windows["5h"]["resets_in_seconds"] <= 3600
    assert status["plan_type"] == "plus"


def test_usage_is_polled_for_accounts_that_served_nothing(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    account = add_chatgpt(gw, auth, "acct-9", "idle")
    codex.set_usage("acct-9", primary_used=5, secondary_used=50)
    status = httpx.get(f"{gw.url}/status?refresh=1", headers=gw.headers("openai")).json()
    entry = next(a for a in status["accounts"] if a["id"] == account.id)
    windows = {w["name"]: w["remaining_percent"] for w in entry["quota"]["windows"]}
    assert windows == {"5h": 95.0, "weekly": 50.0}
    assert codex.usage_polls >= 1
    assert codex.requests[-1].headers["chatgpt-account-id"] == "acct-9"


def test_exhausted_account_falls_back_then_returns_after_reset(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    first = add_chatgpt(gw, auth, "acct-1", "personal")
    add_chatgpt(gw, auth, "acct-2", "work")
    codex.set_usage("acct-1", primary_used=100, primary_resets_in=2)
    response = httpx.post(
        f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai")
    )
    assert response.status_code == 200 and response.headers["x-headway-account"] == "work"
    status = gw.account_status(first.id)
    assert status["health"] == "exhausted" and 0 < status["blocked_for_seconds"] <= 2
    # while exhausted, requests go straight to the second account: no retry loop on the first
    before = [r.headers["chatgpt-account-id"] for r in codex.requests if r.path.endswith("/responses")]
    httpx.post(f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai"))
    after = [r.headers["chatgpt-account-id"] for r in codex.requests if r.path.endswith("/responses")]
    assert after[len(before) :] == ["acct-2"]
    codex.set_usage("acct-1", primary_used=0)
    time.sleep(2.1)
    again = httpx.post(
        f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai")
    )
    assert again.headers["x-headway-account"] == "personal"


def test_every_account_blocked_is_a_429_with_earliest_reset(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "personal")
    add_chatgpt(gw, auth, "acct-2", "work")
    codex.set_usage("acct-1", primary_used=100, primary_resets_in=900)
    codex.set_usage("acct-2", secondary_used=100, secondary_resets_in=7200)
    refused = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "gpt-5", "messages": []}, headers=gw.headers("openai")
    )
    assert refused.status_code == 429
    assert 890 <= int(refused.headers["retry-after"]) <= 900
    message = refused.json()["error"]["message"]
    assert "personal (exhausted" in message and "work (exhausted" in message


def test_killswitch_blocks_below_threshold(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    first = add_chatgpt(gw, auth, "acct-1", "personal", killswitch={"5h": 50})
    add_chatgpt(gw, auth, "acct-2", "work")
    codex.set_usage("acct-1", primary_used=60)
    httpx.get(f"{gw.url}/status?refresh=1", headers=gw.headers("openai"))
    served = httpx.post(
        f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai")
    )
    assert served.headers["x-headway-account"] == "work"
    assert gw.account_status(first.id)["health"] == "killswitch"


def test_concurrent_requests_during_refresh_share_one_refresh(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    auth.access_token_ttl = 60  # inside the 5-minute refresh margin: the next use refreshes
    account = add_chatgpt(gw, auth, "acct-1", "work")
    auth.access_token_ttl = 3600  # the refreshed token is fresh
    old = TokenSet.from_json(gw.services.keychain.get(account_secret_name(account.id)) or "")

    def one(_: int) -> int:
        return httpx.post(
            f"{gw.url}/v1/responses",
            json={"model": "gpt-5", "input": "hi"},
            headers=gw.headers("openai"),
            timeout=20,
        ).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(one, range(10)))
    assert statuses == [200] * 10
    assert auth.refresh_calls == 1
    stored = TokenSet.from_json(gw.services.keychain.get(account_secret_name(account.id)) or "")
    assert stored.refresh_token != old.refresh_token
    assert auth.refresh_token_state(stored.refresh_token) == "active"
    assert auth.refresh_token_state(old.refresh_token) == "used"


def test_revoked_login_marks_needs_login_and_keeps_the_token(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    auth.access_token_ttl = 60
    account = add_chatgpt(gw, auth, "acct-1", "work")
    stored_before = gw.services.keychain.get(account_secret_name(account.id))
    auth.fail_next_refreshes(1, "invalid_grant")
    refused = httpx.post(
        f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai")
    )
    assert refused.status_code == 503
    assert "needs login" in refused.json()["error"]["message"]
    assert gw.account_status(account.id)["health"] == "needs_login"
    assert gw.services.keychain.get(account_secret_name(account.id)) == stored_before


def test_models_and_zero_cost(gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    models = [m.id for m in client(gw).models.list()]
    assert models == ["gpt-5.1-codex", "gpt-5.1", "gpt-5"]
    codex.enqueue(Behavior(usage={"input_tokens": 5000, "output_tokens": 100}))
    client(gw).responses.create(model="gpt-5", input="hi")
    gw.flush_log()
    row = gw.services.engine.request_log.query(limit=1)[0]
    assert row.account_kind == "chatgpt" and row.cost_usd == 0.0
    assert row.usage is not None and row.usage.output_tokens == 100


def test_chatgpt_and_api_key_share_the_openai_pool(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex, platform: FakeOpenAI
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    gw.add("openai", "metered", "sk-test")  # an API key as the last resort
    assert client(gw).responses.create(model="gpt-5", input="hi").output_text == "Hello from the fake"
    assert platform.requests == []  # the subscription goes first while it has quota
    codex.set_usage("acct-1", primary_used=100)
    response = httpx.post(
        f"{gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi"}, headers=gw.headers("openai")
    )
    assert response.status_code == 200 and response.headers["x-headway-account"] == "metered"
    assert platform.requests[-1].headers["authorization"] == "Bearer sk-test"
    assert platform.requests[-1].json == {
        "model": "gpt-5",
        "input": "hi",
    }  # API keys get the agent's body as sent
    gw.flush_log()
    rows = gw.services.engine.request_log.query(limit=1)
    assert rows[0].fallback_chain == ["work:429", "metered:200"]
    assert rows[0].cost_usd is not None and rows[0].cost_usd > 0


# ---------------------------------------------------------------- keep-warm


@pytest.fixture
def warm_gw(auth: FakeOpenAIAuth, codex: FakeCodex) -> Iterator[RunningGateway]:
    with chatgpt_gateway(
        auth, codex, settings=lambda s: setattr(s.chatgpt, "keep_warm", True), keep_warm_after=0.3
    ) as gateway:
        yield gateway


def _codex_turns(codex: FakeCodex) -> list[dict[str, object]]:
    return [r.json for r in codex.requests if r.path == "/backend-api/codex/responses"]


def test_keep_warm_replays_the_latest_request_as_a_small_shadow(
    warm_gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(warm_gw, auth, "acct-1", "work")
    body = {
        "model": "gpt-5",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "long history"}]}],
        "stream": True,
    }
    sent = httpx.post(
        f"{warm_gw.url}/v1/responses",
        json=body,
        headers={**warm_gw.headers("openai"), "session_id": "s-main"},
    )
    assert sent.status_code == 200
    assert wait_until(lambda: len(_codex_turns(codex)) >= 2, timeout=3)
    real, shadow = _codex_turns(codex)[:2]
    assert (
        shadow["input"][: len(real["input"])] == real["input"]
    )  # the prefix the next turn reuses, unchanged
    assert len(shadow["input"]) == len(real["input"]) + 1
    assert "keep-warm" in json.dumps(shadow["input"][-1])
    assert shadow["store"] is False

    def purposes() -> list[str]:
        warm_gw.flush_log()
        return [r.purpose for r in warm_gw.services.engine.request_log.query()]

    assert wait_until(lambda: "keep-warm" in purposes(), timeout=3)
    assert "agent" in purposes()


def test_keep_warm_skips_subagents_blocked_accounts_and_when_off(
    warm_gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(warm_gw, auth, "acct-1", "work")
    headers = {**warm_gw.headers("openai"), "x-session-id": "child", "x-parent-session-id": "parent"}
    httpx.post(
        f"{warm_gw.url}/v1/responses", json={"model": "gpt-5", "input": "hi", "stream": True}, headers=headers
    )
    time.sleep(1.0)
    assert len(_codex_turns(codex)) == 1  # a subagent session is not kept warm by default

    httpx.post(
        f"{warm_gw.url}/v1/responses",
        json={"model": "gpt-5", "input": "hi", "stream": True},
        headers={**warm_gw.headers("openai"), "session_id": "main-1"},
    )
    codex.set_usage(
        "acct-1", primary_used=100
    )  # the shadow would hit the limit: mark the account exhausted first
    httpx.post(
        f"{warm_gw.url}/v1/responses",
        json={"model": "gpt-5", "input": "x"},
        headers=warm_gw.headers("openai"),
    )
    count = len(_codex_turns(codex))
    time.sleep(1.0)
    assert len(_codex_turns(codex)) == count  # never on an exhausted account

    codex.set_usage("acct-1", primary_used=0)
    warm_gw.edit(lambda s: setattr(s.chatgpt, "keep_warm", False))
    count = len(_codex_turns(codex))
    time.sleep(1.0)
    assert len(_codex_turns(codex)) == count


def test_chat_usage_is_logged_from_the_responses_stream(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    codex.default = Behavior(
        usage={"input_tokens": 900, "output_tokens": 42, "input_tokens_details": {"cached_tokens": 800}}
    )
    for stream in (True, False):
        response = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
            headers=gw.headers("openai"),
        )
        assert response.status_code == 200
    gw.flush_log()
    rows = gw.services.engine.request_log.query(limit=2)
    for row in rows:
        assert row.usage is not None
        assert (row.usage.output_tokens, row.usage.cache_read_tokens, row.usage.input_tokens) == (
            42,
            800,
            100,
        )


@pytest.mark.parametrize("suffix", ["/backend-api", "/backend-api/", "/", "/backend-api/codex"])
def test_a_base_url_with_backend_api_is_not_doubled(
    auth: FakeOpenAIAuth, codex: FakeCodex, suffix: str
) -> None:
    """HEADWAY_CHATGPT_BASE_URL as users paste it (…/backend-api) reaches /backend-api/codex/responses, not a 404."""
    gateway = start_gateway(
        env={"HEADWAY_CHATGPT_BASE_URL": codex.url + suffix, "HEADWAY_OPENAI_AUTH_URL": auth.url + "/"}
    )
    try:
        add_chatgpt(gateway, auth, "acct-1", "work")
        response = client(gateway).responses.create(model="gpt-5", input="hi")
        assert response.output_text == "Hello from the fake"
        assert codex.requests[-1].path == "/backend-api/codex/responses"
        assert wait_until(lambda: codex.usage_polls >= 1)  # the engine's own calls use the same base
        assert {r.path for r in codex.requests} <= {
            "/backend-api/codex/responses",
            "/backend-api/wham/usage",
            "/backend-api/codex/models",
        }
    finally:
        gateway.stop()


def test_an_account_base_url_with_backend_api_is_not_doubled(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work", base_url=codex.url + "/backend-api/")
    assert client(gw).responses.create(model="gpt-5", input="hi").output_text == "Hello from the fake"
    assert codex.requests[-1].path == "/backend-api/codex/responses"


def test_the_responses_lite_header_is_forwarded_and_identity_stays_headways(
    gw: RunningGateway, auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    add_chatgpt(gw, auth, "acct-1", "work")
    developer = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]}
    client(gw).responses.create(
        model="gpt-5.6-sol",
        instructions="",
        input=[developer, {"type": "message", "role": "user", "content": "hi"}],
        parallel_tool_calls=True,
        extra_headers={
            "x-openai-internal-codex-responses-lite": "true",
            "originator": "codex_cli_rs",
            "user-agent": "codex_cli_rs/0.169.0",
        },
    )
    sent = codex.requests[-1]
    assert sent.headers["x-openai-internal-codex-responses-lite"] == "true"
    assert sent.headers["originator"] == "headway"
    assert sent.headers["user-agent"].startswith("headway/")
    assert sent.json["instructions"] == "" and sent.json["input"][0]["role"] == "developer"
    assert sent.json["parallel_tool_calls"] is False
