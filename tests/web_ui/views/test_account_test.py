"""The Test button (POST /api/accounts/<id>/test → Engine.test_account → proxy/gateway/account_probe.py): one tiny
request on exactly that account through the real gateway, no fallback; its result, latency and why it failed."""

from __future__ import annotations

import httpx

from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.web_ui.conftest import Web

WORK = "sk-ant-api03-" + "w" * 40
HOME = "sk-ant-api03-" + "h" * 40
TEAM = "sk-proj-" + "t" * 40


def _accounts(web: Web) -> None:
    web.gateway.add("anthropic", "Work", WORK)
    web.gateway.add("anthropic", "Home", HOME)
    web.gateway.add("openai", "Team", TEAM)


def test_a_test_is_one_small_request_on_exactly_that_account(
    signed_in: Web, upstream: FakeAnthropic, openai_upstream: FakeOpenAI
) -> None:
    _accounts(signed_in)
    result = signed_in.post("/api/accounts/home/test").get_json()
    assert result["ok"] is True and result["sent"] is True, result
    assert result["latency_ms"] > 0 and result["model"] == "claude-haiku-4-5"
    [sent] = upstream.requests
    assert sent.headers["x-api-key"] == HOME  # Home, although Work is first in the order
    assert sent.json["max_tokens"] <= 16 and len(sent.json["messages"]) == 1

    team = signed_in.post("/api/accounts/team/test").get_json()
    assert team["ok"] is True and team["model"] == "gpt-5-mini"
    assert openai_upstream.last_request.path == "/v1/responses"

    signed_in.gateway.flush_log()
    rows = signed_in.get_json("/api/requests")["requests"]
    assert [(r["account_id"], r["purpose"], r["agent"]) for r in rows] == [
        ("team", "test", "Test button"),
        ("home", "test", "Test button"),
    ]


def test_a_failure_says_why_and_never_falls_back(signed_in: Web, upstream: FakeAnthropic) -> None:
    _accounts(signed_in)
    upstream.enqueue(
        Behavior(status=401, error_type="authentication_error", error_message="invalid x-api-key")
    )
    result = signed_in.post("/api/accounts/work/test").get_json()
    assert result["ok"] is False and result["sent"] is True
    assert "401" in result["detail"] or "invalid" in result["detail"], result
    assert len(upstream.requests) == 1  # Home was not tried
    signed_in.gateway.flush_log()
    [row] = signed_in.get_json("/api/requests?status=error")["requests"]  # logged with what the upstream said
    assert (row["account_id"], row["status"], row["purpose"]) == ("work", 401, "test")
    assert "invalid x-api-key" in row["error"]


def test_a_blocked_account_is_not_sent_anything(signed_in: Web, upstream: FakeAnthropic) -> None:
    _accounts(signed_in)
    upstream.enqueue(Behavior(status=429, retry_after=600))
    agent = httpx.post(
        f"{signed_in.gateway.url}/v1/messages",
        headers=signed_in.gateway.headers(),
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert agent.status_code == 200  # Work 429 → Home
    before = len(upstream.requests)
    result = signed_in.post("/api/accounts/work/test").get_json()
    assert result == {**result, "ok": False, "sent": False, "latency_ms": None}
    assert result["detail"].startswith("not sent:")
    assert len(upstream.requests) == before


def test_the_model_the_account_served_last_is_tested(signed_in: Web, upstream: FakeAnthropic) -> None:
    _accounts(signed_in)
    httpx.post(
        f"{signed_in.gateway.url}/v1/messages",
        headers={**signed_in.gateway.headers(), "user-agent": "claude-cli/2.1.330 (external, cli)"},
        json={"model": "claude-opus-4-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    signed_in.gateway.flush_log()
    assert signed_in.post("/api/accounts/work/test").get_json()["model"] == "claude-opus-4-1"
    assert upstream.last_request.json["model"] == "claude-opus-4-1"


def test_unknown_accounts_and_missing_csrf_are_refused(signed_in: Web) -> None:
    assert signed_in.post("/api/accounts/nobody/test").status_code == 404
    _accounts(signed_in)
    assert signed_in.client.post("/api/accounts/work/test").status_code == 403
