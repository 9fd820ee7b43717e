"""The forwarder's bounds and hygiene, through a real gateway and fake upstreams on 127.0.0.1:

- upstream error text is redacted wherever Headway stores or shows it (health, state.json, status, error bodies);
- error bodies name enabled accounts only;
- an agent that hangs up stops the request (no attempt on the next account);
- a hanging upstream costs at most the first-byte timeout per account and the request deadline in total.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.config.settings import GatewaySettings, Settings
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.support.forgetful_relay import ForgetfulRelay
from tests.support.gateway import RunningGateway, start_gateway, wait_until

ANTHROPIC_KEY = "sk-ant-api03-" + "Zq7" * 20
OPENAI_KEY = "sk-proj-" + "Xw9" * 20
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
STREAMED = {**MESSAGE, "stream": True}


def _quick(settings: Settings) -> None:
    settings.routing.retry_base_delay_seconds = 0.01
    settings.gateway.first_byte_timeout_seconds = 1.0
    settings.gateway.read_timeout_seconds = 2.0


@pytest.fixture
def gw(anthropic: FakeAnthropic, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    with start_gateway(anthropic_url=anthropic.url, openai_url=openai.url, settings=_quick) as gateway:
        yield gateway


def post(gw: RunningGateway, body: dict[str, object] = MESSAGE, timeout: float = 15.0) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/messages", json=body, headers=gw.headers(), timeout=timeout)


def _secret_part(key: str) -> str:
    return key[-30:]


# -- redaction of upstream text ------------------------------------------------------------------------------------


def test_an_upstream_401_echoing_the_key_is_stored_and_shown_redacted(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", ANTHROPIC_KEY)
    anthropic.enqueue(
        Behavior(
            status=401, error_type="authentication_error", error_message=f"invalid x-api-key: {ANTHROPIC_KEY}"
        )
    )

    first = post(gw)
    later = post(gw)  # the account is now blocked: the error body names its state and reason

    secret = _secret_part(ANTHROPIC_KEY)
    assert first.status_code == later.status_code == 503
    assert "authentication_error" in later.text and secret not in first.text and secret not in later.text
    status = gw.status()
    assert "sk-ant-" in json.dumps(status)  # the reason is kept, masked
    assert secret not in json.dumps(status)
    over_http = httpx.get(f"{gw.url}/status", headers=gw.headers(), timeout=5).text
    assert secret not in over_http
    state_file = gw.services.paths.state_file
    assert wait_until(
        lambda: state_file.exists() and "authentication_error" in state_file.read_text(), timeout=10
    )
    assert secret not in state_file.read_text()
    gw.flush_log()
    assert all(secret not in (row.error or "") for row in gw.services.engine.request_log.query())


def test_an_openai_401_echoing_the_key_is_redacted(gw: RunningGateway, openai: FakeOpenAI) -> None:
    gw.add("openai", "main", OPENAI_KEY)
    openai.enqueue(
        Behavior(
            status=401,
            error_type="invalid_api_key",
            error_message=f"Incorrect API key provided: {OPENAI_KEY}.",
        )
    )
    response = httpx.post(
        f"{gw.url}/v1/responses",
        json={"model": "gpt-5", "input": "hi"},
        headers=gw.headers("openai"),
        timeout=15,
    )
    assert response.status_code == 503
    later = httpx.post(
        f"{gw.url}/v1/responses",
        json={"model": "gpt-5", "input": "hi"},
        headers=gw.headers("openai"),
        timeout=15,
    )
    secret = _secret_part(OPENAI_KEY)
    assert secret not in response.text and secret not in later.text and secret not in json.dumps(gw.status())


def test_a_relayed_upstream_error_body_is_redacted(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", ANTHROPIC_KEY)
    echo = Behavior(status=500, error_type="api_error", error_message=f"upstream saw key {ANTHROPIC_KEY}")
    anthropic.enqueue(echo, echo, echo)  # every retry fails: the last upstream body goes to the agent
    response = post(gw)
    assert response.status_code == 500
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "api_error"
    assert _secret_part(ANTHROPIC_KEY) not in response.text
    assert _secret_part(ANTHROPIC_KEY) not in json.dumps(gw.status())


def test_a_passed_through_400_is_redacted_and_a_non_json_error_gets_the_protocol_shape(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", ANTHROPIC_KEY)
    anthropic.enqueue(
        Behavior(
            status=400,
            error_type="invalid_request_error",
            error_message=f"bad header x-api-key={ANTHROPIC_KEY}",
        ),
        Behavior(status=404, body=b"<html>not here</html>"),
    )
    first = post(gw)
    assert first.status_code == 400 and first.json()["error"]["type"] == "invalid_request_error"
    assert _secret_part(ANTHROPIC_KEY) not in first.text
    second = post(gw)
    assert second.status_code == 404
    assert second.json()["type"] == "error" and "not here" in second.json()["error"]["message"]


# -- error bodies name enabled accounts only ---------------------------------------------------------------------


def test_error_bodies_list_only_enabled_accounts(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "old-one", "sk-ant-old1")
    gw.add("anthropic", "old-two", "sk-ant-old2")

    def disable(settings: Settings) -> None:
        for account in settings.accounts:
            if account.id.startswith("old"):
                account.enabled = False

    gw.edit(disable)
    anthropic.enqueue(Behavior(status=429, retry_after=30, error_type="rate_limit_error"))
    post(gw)
    response = post(gw)
    assert response.status_code == 429
    message = response.json()["error"]["message"]
    assert "main (cooling down" in message
    assert "old-one" not in message and "old-two" not in message
    assert "2 disabled accounts not tried" in message


def test_every_account_429_with_retry_after_zero_is_a_429_in_the_agents_shape(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    """A cooldown of 0 s has already ended when the answer is built: the agent still learns it was rate-limited."""
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-back")
    for _ in range(2):
        anthropic.enqueue(
            Behavior(status=429, retry_after=0, error_type="rate_limit_error", error_message="slow down")
        )
    response = post(gw)
    assert response.status_code == 429, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert "slow down" in error["error"]["message"]
    assert len(anthropic.requests) == 2


# -- the agent hangs up ---------------------------------------------------------------------------------------


def _raw_request(gw: RunningGateway, body: dict[str, object]) -> socket.socket:
    data = json.dumps(body).encode()
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-api-key: {gw.key}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


@pytest.mark.parametrize("body", [STREAMED, MESSAGE], ids=["stream", "json"])
def test_an_agent_that_hangs_up_is_not_served_by_the_next_account(
    gw: RunningGateway, anthropic: FakeAnthropic, body: dict[str, object]
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    gw.edit(lambda s: setattr(s.gateway, "read_timeout_seconds", 3.0))
    anthropic.enqueue(Behavior(hang=True))
    sock = _raw_request(gw, body)
    anthropic.wait_for_requests(1)
    sock.close()  # the agent gives up while the first account hangs

    def stopped() -> bool:
        gw.flush_log()
        return any(row.status == 499 for row in gw.services.engine.request_log.query())

    assert wait_until(stopped, timeout=10), "the forwarder did not notice that the agent hung up"
    row = gw.services.engine.request_log.query()[0]
    assert row.fallback_chain == [] and row.error == "the agent disconnected before its answer started"
    assert anthropic.request_count == 1  # the backup account never spent quota on nobody


def test_an_agent_that_hangs_up_during_a_retry_back_off_stops_it(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.routing, "retry_base_delay_seconds", 5.0))
    anthropic.enqueue(Behavior(status=529, error_type="overloaded_error"))
    sock = _raw_request(gw, MESSAGE)
    anthropic.wait_for_requests(1)
    sock.close()

    def stopped() -> bool:
        gw.flush_log()
        return any(row.status == 499 for row in gw.services.engine.request_log.query())

    assert wait_until(stopped, timeout=4), "the back-off went on after the agent hung up"
    assert anthropic.request_count == 1


# -- hanging upstreams: first-byte timeout and the request deadline -----------------------------------------------


def test_defaults_bound_a_hang() -> None:
    gateway = GatewaySettings()
    assert gateway.first_byte_timeout_seconds == 120
    assert gateway.request_deadline_seconds == 900
    assert gateway.first_byte_timeout_seconds < gateway.read_timeout_seconds


def test_a_streamed_request_moves_on_after_the_first_byte_timeout(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    gw.edit(lambda s: setattr(s.gateway, "read_timeout_seconds", 30.0))
    anthropic.enqueue(Behavior(hang=True))
    started = time.monotonic()
    response = post(gw, STREAMED)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and "message_stop" in response.text
    assert response.headers["x-headway-account"] == "backup"
    assert elapsed < 10  # first_byte_timeout_seconds = 1, far below the 30 s read timeout
    gw.flush_log()
    assert gw.services.engine.request_log.query()[0].fallback_chain == ["main:no-headers", "backup:200"]


def test_the_request_deadline_bounds_every_account_together(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    for name in ("a", "b", "c", "d"):
        gw.add("anthropic", name, f"sk-ant-{name}")

    def bounds(settings: Settings) -> None:
        settings.gateway.first_byte_timeout_seconds = 1.0
        settings.gateway.request_deadline_seconds = 1.5

    gw.edit(bounds)
    anthropic.enqueue(*[Behavior(hang=True)] * 4)
    started = time.monotonic()
    response = post(gw, STREAMED)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    assert "request deadline of 1.5s" in response.json()["error"]["message"]
    assert elapsed < 10  # generous: the deadline message above is what proves the deadline ended it
    assert 1 <= anthropic.request_count < 4  # 4 accounts at 1 s first-byte each would need 4 s


# -- non-finite numbers from upstream headers ----------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["inf", "nan", "1e999"])
def test_a_non_finite_quota_reset_does_not_block_an_account_for_ever(
    gw: RunningGateway, openai: FakeOpenAI, reset: str
) -> None:
    gw.add("openai", "main", "sk-main-0123456789abcdef")
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": reset,
    }
    openai.enqueue(Behavior(status=429, error_type="rate_limit_exceeded", headers=headers))
    body = {"model": "gpt-5", "input": "hi"}
    first = httpx.post(f"{gw.url}/v1/responses", json=body, headers=gw.headers("openai"), timeout=15)
    later = httpx.post(f"{gw.url}/v1/responses", json=body, headers=gw.headers("openai"), timeout=15)
    assert first.status_code == later.status_code == 429
    assert 0 < int(later.headers["retry-after"]) <= 60  # routing.default_cooldown_seconds, not infinity
    status = gw.account_status("main")
    assert status["blocked_for_seconds"] is not None and status["blocked_for_seconds"] <= 60


# -- a kept-alive connection the upstream forgot ---------------------------------------------------------------


def test_after_the_upstream_forgot_its_connections_the_first_account_still_answers(
    anthropic: FakeAnthropic,
) -> None:
    """As after a laptop's sleep: the pooled connection is dead, the upstream is fine. Before, the request went to
    the second account and the first was noted "unreachable" (with one account, the agent got a 502)."""
    with (
        ForgetfulRelay("127.0.0.1", anthropic.port) as relay,
        start_gateway(anthropic_url=relay.url, settings=_quick) as gateway,
    ):
        main = gateway.add("anthropic", "main", ANTHROPIC_KEY)
        gateway.add("anthropic", "spare", "sk-ant-api03-" + "Spa" * 20)
        assert post(gateway).status_code == 200
        relay.forget()
        for body in (MESSAGE, STREAMED):
            answer = post(gateway, body)
            assert answer.status_code == 200, answer.text
        gateway.flush_log()
        rows = gateway.services.engine.request_log.query()
        assert [row.account_id for row in rows] == [main.id] * 3
        assert all(row.fallback_chain == [f"{main.id}:200"] for row in rows), [r.fallback_chain for r in rows]
        assert gateway.account_status(main.id)["last_error"] is None
    assert relay.resets == 1
