"""The local access key at the gateway's edge: any presented credential may be it; a provider's key in its place is
named, with the environment variable to unset; every refusal is logged (rate-limited, never the key)."""

from __future__ import annotations

import logging

import httpx
import pytest

from proxy.gateway.refusals import RefusalLog
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.support.gateway import RunningGateway, start_gateway

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "gpt-5", "input": "hi"}
CHAT = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}

ANTHROPIC_KEY = "sk-ant-api03-" + "Q" * 40 + "exportedTail"
OPENAI_KEY = "sk-proj-" + "Z" * 40 + "exportedTail"


def log_text(gw: RunningGateway) -> str:
    for handler in logging.getLogger("headway").handlers:
        handler.flush()
    return gw.services.logs.log_file.read_text()


def refusal_lines(gw: RunningGateway) -> list[str]:
    return [line for line in log_text(gw).splitlines() if "refused " in line]


def test_provider_key_as_x_api_key_next_to_the_local_key_as_bearer_is_served(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    # Claude Code with ANTHROPIC_API_KEY exported and ANTHROPIC_AUTH_TOKEN (the local key) in its settings.
    served = httpx.post(
        f"{gw.url}/v1/messages?beta=true",
        json=MESSAGE,
        headers={
            "x-api-key": ANTHROPIC_KEY,
            "authorization": f"Bearer {gw.key}",
            "anthropic-version": "2023-06-01",
        },
        timeout=10,
    )
    assert served.status_code == 200, served.text
    upstream = anthropic.requests[-1].headers
    assert upstream["x-api-key"] == "sk-ant-main"  # the account's key went upstream, not the exported one
    assert ANTHROPIC_KEY not in str(upstream) and gw.key not in str(upstream)


def test_local_key_as_x_api_key_next_to_a_provider_bearer_is_served(gw: RunningGateway) -> None:
    served = httpx.post(
        f"{gw.url}/v1/responses",
        json=RESPONSES,
        headers={"x-api-key": gw.key, "authorization": f"Bearer {OPENAI_KEY}"},
        timeout=10,
    )
    assert served.status_code == 200, served.text


def test_anthropic_key_alone_is_refused_naming_the_variable(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    refused = httpx.post(
        f"{gw.url}/v1/messages",
        json=MESSAGE,
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert refused.status_code == 401
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    message = body["error"]["message"]
    assert (
        "Anthropic API key" in message and "unset ANTHROPIC_API_KEY" in message and "headway key" in message
    )
    assert ANTHROPIC_KEY not in refused.text
    assert anthropic.requests == []


@pytest.mark.parametrize("path,body", [("/v1/responses", RESPONSES), ("/v1/chat/completions", CHAT)])
def test_openai_key_alone_is_refused_in_openai_shape(
    gw: RunningGateway, openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    refused = httpx.post(
        f"{gw.url}{path}", json=body, headers={"authorization": f"Bearer {OPENAI_KEY}"}, timeout=10
    )
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_local_access_key"
    assert "OpenAI API key" in error["message"] and "unset OPENAI_API_KEY" in error["message"]
    assert OPENAI_KEY not in refused.text
    assert openai.requests == []


def test_anthropic_key_sent_to_an_openai_route_names_the_anthropic_variable(gw: RunningGateway) -> None:
    refused = httpx.post(
        f"{gw.url}/v1/responses", json=RESPONSES, headers={"authorization": f"Bearer {ANTHROPIC_KEY}"}
    )
    assert refused.status_code == 401 and "ANTHROPIC_API_KEY" in refused.json()["error"]["message"]


def test_claude_login_token_gets_its_own_hint(gw: RunningGateway) -> None:
    refused = httpx.post(
        f"{gw.url}/v1/messages", json=MESSAGE, headers={"authorization": "Bearer sk-ant-oat01-" + "x" * 40}
    )
    assert refused.status_code == 401
    assert "Claude account token" in refused.json()["error"]["message"]


def test_a_wrong_key_and_a_missing_key_say_so(gw: RunningGateway) -> None:
    wrong = httpx.post(f"{gw.url}/v1/messages", json=MESSAGE, headers={"x-api-key": "hw-not-the-key"})
    assert wrong.status_code == 401 and "wrong local access key" in wrong.json()["error"]["message"]
    missing = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401 and "no local access key" in missing.json()["error"]["message"]


def test_models_refusal_answers_in_the_asking_protocol(gw: RunningGateway) -> None:
    refused = httpx.get(
        f"{gw.url}/v1/models", headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    )
    assert refused.status_code == 401
    assert refused.json()["type"] == "error" and "ANTHROPIC_API_KEY" in refused.json()["error"]["message"]


def test_refusals_are_logged_rate_limited_and_without_the_key(gw: RunningGateway) -> None:
    headers = {"x-api-key": ANTHROPIC_KEY, "user-agent": "claude-cli/2.1.0 (external, cli)"}
    for _ in range(5):
        assert httpx.post(f"{gw.url}/v1/messages", json=MESSAGE, headers=headers).status_code == 401
    assert (
        httpx.post(
            f"{gw.url}/v1/responses", json=RESPONSES, headers={"authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    lines = refusal_lines(gw)
    anthropic_lines = [line for line in lines if "/v1/messages" in line]
    assert len(anthropic_lines) == 1, lines  # five refusals, one line
    assert "Anthropic API key (sk-ant-…) instead of the local key" in anthropic_lines[0]
    assert "claude-cli/2.1.0" in anthropic_lines[0]
    assert any("/v1/responses" in line and "wrong access key" in line for line in lines)
    text = log_text(gw)
    assert "exportedTail" not in text and "Q" * 40 not in text and gw.key not in text


def test_refusal_log_reports_the_held_back_count_after_the_interval() -> None:
    now = [1000.0]
    refusals = RefusalLog(interval=60.0, clock=lambda: now[0])
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("headway.gateway")
    logger.addHandler(handler)
    try:
        for _ in range(4):
            refusals.record("POST", "/v1/messages", "wrong access key", "wrong key", "agent/1")
        refusals.record("POST", "/v1/messages", "no access key", "no key", "agent/1")
        for path in ("/a", "/b", "/c"):  # unknown paths share one key: the table stays bounded
            refusals.record("GET", path, "wrong access key", "wrong key", "agent/1")
        now[0] += 61
        refusals.record("POST", "/v1/messages", "wrong access key", "wrong key", "agent/1")
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert len(messages) == 4, messages
    assert "(3 more like it in the last 61s)" in messages[-1]
    assert "(other path)" in messages[2]
    assert len(refusals._last) == 3


def test_claude_code_probe_needs_no_key_and_logs_no_refusal(gw: RunningGateway) -> None:
    assert httpx.head(f"{gw.url}/api/hello").status_code == 200
    assert httpx.get(f"{gw.url}/api/hello").status_code == 200
    assert refusal_lines(gw) == []
    # the probe is still subject to the Host and Origin checks
    assert httpx.head(f"{gw.url}/api/hello", headers={"origin": "https://evil.example"}).status_code == 403


def test_host_and_origin_refusals_are_logged(gw: RunningGateway) -> None:
    assert (
        httpx.post(
            f"{gw.url}/v1/messages", json=MESSAGE, headers={**gw.headers(), "host": "evil.example"}
        ).status_code
        == 403
    )
    assert any("foreign Host header" in line for line in refusal_lines(gw))


def test_key_check_skipped_when_turned_off_on_loopback(anthropic: FakeAnthropic) -> None:
    gateway = start_gateway(
        anthropic_url=anthropic.url, settings=lambda s: setattr(s.gateway, "require_access_key", False)
    )
    try:
        gateway.add("anthropic", "main", "sk-ant-main")
        assert (
            httpx.post(
                f"{gateway.url}/v1/messages", json=MESSAGE, headers={"x-api-key": ANTHROPIC_KEY}
            ).status_code
            == 200
        )
    finally:
        gateway.stop()
