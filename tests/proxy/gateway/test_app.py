"""The gateway end to end, in-process: real HTTP from httpx to Headway to fake upstreams on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.config.settings import Settings
from tests.fakes import (
    Behavior,
    FakeAnthropic,
    FakeOpenAI,
    anthropic_ratelimit_headers,
    openai_ratelimit_headers,
)
from tests.support.gateway import RunningGateway, start_gateway, wait_until

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "gpt-5", "input": "hi"}


@pytest.fixture
def gw(anthropic: FakeAnthropic, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    gateway = start_gateway(
        anthropic_url=anthropic.url,
        openai_url=openai.url,
        settings=lambda s: setattr(s.routing, "retry_base_delay_seconds", 0.01),
    )
    try:
        yield gateway
    finally:
        gateway.stop()


def post(gw: RunningGateway, body: dict[str, object] | None = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/messages", json=body or MESSAGE, headers={**gw.headers(), **headers}, timeout=10
    )


def sse_events(text: str) -> list[str]:
    return [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]


# ---------------------------------------------------------------- pass-through


def test_streams_pass_through_unchanged(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    direct = httpx.post(
        f"{anthropic.url}/v1/messages", json={**MESSAGE, "stream": True}, headers={"x-api-key": "sk-ant-main"}
    )
    via = post(gw, {**MESSAGE, "stream": True})
    assert via.status_code == 200
    assert via.headers["content-type"].startswith("text/event-stream")
    # Same bytes but for the message id, which the fake numbers per request.
    assert sse_events(via.text) == sse_events(direct.text)
    assert via.text.replace("msg_fake_2", "msg_fake_1") == direct.text
    assert via.headers["request-id"] == anthropic.requests[-1].request_id
    assert anthropic.requests[-1].headers["x-api-key"] == "sk-ant-main"


def test_protocol_headers_pass_and_internal_headers_are_stripped(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    response = httpx.post(
        f"{gw.url}/v1/messages?beta=true",
        json=MESSAGE,
        headers={
            "authorization": f"Bearer {gw.key}",
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14",
            "x-parent-session-id": "ses_parent",
            "x-session-affinity": "ses_child",
            "x-claude-code-session-id": "cc-1",
            "user-agent": "claude-cli/2.1.0 (external, cli)",
        },
    )
    assert response.status_code == 200, response.text
    seen = anthropic.requests[-1]
    assert seen.query == {"beta": "true"}
    assert (
        seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14"
    )
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["x-claude-code-session-id"] == "cc-1"
    assert "x-parent-session-id" not in seen.headers and "x-session-affinity" not in seen.headers
    assert "authorization" not in seen.headers
    assert seen.headers["user-agent"].startswith("claude-cli/2.1.0 (external, cli) headway/")
    assert gw.key not in json.dumps(seen.headers)


def test_count_tokens_and_models(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    counted = httpx.post(f"{gw.url}/v1/messages/count_tokens", json=MESSAGE, headers=gw.headers())
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    models = httpx.get(f"{gw.url}/v1/models", headers=gw.headers())
    assert models.json()["data"][0]["type"] == "model"
    openai_models = httpx.get(f"{gw.url}/v1/models", headers=gw.headers("openai"))
    assert openai_models.json() == {"object": "list", "data": []}  # no OpenAI account configured


def test_head_root_and_health_need_no_key(gw: RunningGateway) -> None:
    assert httpx.head(f"{gw.url}/").status_code == 200
    assert httpx.get(f"{gw.url}/health").json()["status"] == "ok"


# ---------------------------------------------------------------- local checks


def test_access_key_required_in_both_forms(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    assert post(gw, **{"x-api-key": "wrong"}).status_code == 401
    refused = httpx.post(f"{gw.url}/v1/messages", json=MESSAGE)
    assert refused.status_code == 401
    assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "authentication_error"
    openai_refused = httpx.post(
        f"{gw.url}/v1/responses", json=RESPONSES, headers={"authorization": "Bearer nope"}
    )
    assert openai_refused.status_code == 401 and "message" in openai_refused.json()["error"]
    ok = httpx.post(f"{gw.url}/v1/messages", json=MESSAGE, headers={"authorization": f"Bearer {gw.key}"})
    assert ok.status_code == 200


def test_access_key_optional_on_loopback_when_turned_off(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.gateway, "require_access_key", False))
    assert httpx.post(f"{gw.url}/v1/messages", json=MESSAGE).status_code == 200


def test_foreign_host_and_browser_origin_are_refused(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    assert post(gw, host="evil.example").status_code == 403
    assert post(gw, origin="https://evil.example").status_code == 403
    assert post(gw, **{"sec-fetch-site": "cross-site"}).status_code == 403
    assert httpx.get(f"{gw.url}/health", headers={"host": "attacker.test:80"}).status_code == 403
    assert anthropic.requests == []
    gw.edit(lambda s: s.gateway.allowed_hosts.append("devbox.lan"))
    assert post(gw, host="devbox.lan").status_code == 200


def test_body_over_cap_is_refused_in_protocol_shape(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.gateway, "max_body_mb", 1))
    big = {**MESSAGE, "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    refused = post(gw, big)
    assert refused.status_code == 413
    assert refused.json()["error"]["type"] == "request_too_large"


# ---------------------------------------------------------------- fallback and cooldowns


def test_rate_limited_account_falls_back_and_cools_down(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    main = gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(status=429, retry_after=30, error_type="rate_limit_error"))
    served = post(gw, {**MESSAGE, "stream": True})
    assert served.status_code == 200
    assert sse_events(served.text)[-1] == "message_stop"
    assert served.headers["x-headway-account"] == "backup"
    keys = [r.headers["x-api-key"] for r in anthropic.requests]
    assert keys == ["sk-ant-main", "sk-ant-backup"]
    # the exact same body was replayed
    assert anthropic.requests[0].body == anthropic.requests[1].body

    status = gw.account_status(main.id)
    assert status["health"] == "cooling_down"
    assert 25 < status["blocked_for_seconds"] <= 30

    post(gw)
    assert [r.headers["x-api-key"] for r in anthropic.requests][-1] == "sk-ant-backup"
    assert len(anthropic.requests) == 3  # main was skipped, not tried again

    gw.flush_log()
    rows = gw.services.engine.request_log.query()
    assert [r.fallback_chain for r in reversed(rows)] == [["main:429", "backup:200"], ["backup:200"]]


def test_cooldown_uses_rate_limit_reset_when_no_retry_after(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    main = gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(
        Behavior(
            status=429,
            error_type="rate_limit_error",
            headers=anthropic_ratelimit_headers(tokens_limit=1000, tokens_remaining=0, reset_in=120),
        )
    )
    assert post(gw).status_code == 200
    assert 110 < gw.account_status(main.id)["blocked_for_seconds"] <= 120


def test_all_accounts_exhausted_is_a_429_with_earliest_reset(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(
        Behavior(status=429, retry_after=40, error_type="rate_limit_error"),
        Behavior(status=429, retry_after=15, error_type="rate_limit_error"),
    )
    refused = post(gw)
    assert refused.status_code == 429
    assert 14 <= int(refused.headers["retry-after"]) <= 15
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "main" in body["error"]["message"] and "backup" in body["error"]["message"]
    assert "resets in" in body["error"]["message"]
    # a later request is refused at once, without reaching the upstream
    before = len(anthropic.requests)
    again = post(gw)
    assert again.status_code == 429 and len(anthropic.requests) == before


def test_openai_exhausted_error_has_openai_shape(gw: RunningGateway, openai: FakeOpenAI) -> None:
    gw.add("openai", "main", "sk-main")
    openai.enqueue(Behavior(status=429, retry_after=20, error_type="rate_limit_exceeded"))
    refused = httpx.post(f"{gw.url}/v1/responses", json=RESPONSES, headers=gw.headers("openai"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "all_accounts_exhausted"
    assert "retry-after" in refused.headers


def test_auth_failure_skips_account_until_its_key_changes(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    anthropic.valid_keys = {"sk-ant-good", "sk-ant-fixed"}
    main = gw.add("anthropic", "main", "sk-ant-bad")
    gw.add("anthropic", "backup", "sk-ant-good")
    assert post(gw).headers["x-headway-account"] == "backup"
    assert gw.account_status(main.id)["health"] == "auth_failed"
    post(gw)
    assert [r.headers["x-api-key"] for r in anthropic.requests] == [
        "sk-ant-bad",
        "sk-ant-good",
        "sk-ant-good",
    ]

    from proxy.config.accounts import set_api_key

    set_api_key(gw.store, gw.services.keychain, main.id, "sk-ant-fixed")
    gw.services.engine._secrets.invalidate()  # the cache would pick it up within its TTL; the test need not wait
    assert post(gw).headers["x-headway-account"] == "main"
    assert gw.account_status(main.id)["health"] == "healthy"


def test_overloaded_is_retried_on_the_same_account(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(status=529, error_type="overloaded_error"), Behavior(status=503))
    ok = post(gw)
    assert ok.status_code == 200 and ok.headers["x-headway-account"] == "main"
    assert [r.headers["x-api-key"] for r in anthropic.requests] == ["sk-ant-main"] * 3


def test_retries_are_bounded_then_the_upstream_error_passes(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.routing, "max_retries", 1))
    anthropic.default = Behavior(status=529, error_type="overloaded_error")
    failed = post(gw)
    assert failed.status_code == 529
    assert failed.json()["error"]["type"] == "overloaded_error"
    assert len(anthropic.requests) == 2


def test_in_stream_error_before_content_falls_back(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    main = gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(in_stream_error="rate_limit_error"))
    served = post(gw, {**MESSAGE, "stream": True})
    events = sse_events(served.text)
    assert served.status_code == 200 and "error" not in events
    assert events.count("message_start") == 1 and events[-1] == "message_stop"
    assert served.headers["x-headway-account"] == "backup"
    assert gw.account_status(main.id)["health"] == "cooling_down"


def test_in_stream_error_after_content_is_never_retried(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(in_stream_error="overloaded_error", in_stream_error_after_content=True))
    served = post(gw, {**MESSAGE, "stream": True})
    assert "content_block_delta" in sse_events(served.text)
    assert sse_events(served.text)[-1] == "error"
    assert len(anthropic.requests) == 1


def test_connection_dropped_before_content_falls_back(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(drop_after_events=1))
    served = post(gw, {**MESSAGE, "stream": True})
    assert served.headers["x-headway-account"] == "backup"
    assert sse_events(served.text).count("message_start") == 1


def test_connection_dropped_mid_stream_ends_with_an_error_event(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(Behavior(drop_after_events=5, chunks=6))
    served = post(gw, {**MESSAGE, "stream": True})
    events = sse_events(served.text)
    assert events[-1] == "error" and "content_block_delta" in events
    assert "connection broke" in served.text
    assert len(anthropic.requests) == 1


def test_an_agent_leaving_mid_stream_closes_the_upstream_and_is_recorded(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    anthropic.enqueue(Behavior(chunks=6, hang_after_events=5))  # content flows, then the upstream goes quiet
    with httpx.stream(
        "POST", f"{gw.url}/v1/messages", json={**MESSAGE, "stream": True}, headers=gw.headers(), timeout=10
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                break  # the agent has what it wanted and closes its connection
    assert wait_until(
        lambda: anthropic.open_connections == 0, timeout=10
    )  # the gateway let go of the upstream
    gw.flush_log()
    rows = gw.services.engine.request_log.query(limit=1)
    assert rows and rows[0].status == 200 and rows[0].account_id is not None


def test_unreachable_upstream_is_502() -> None:
    unreachable = start_gateway(anthropic_url="http://127.0.0.1:9", openai_url="http://127.0.0.1:9")
    try:
        unreachable.add("anthropic", "main", "sk-ant-main")
        failed = post(unreachable)
        assert failed.status_code == 502
        assert failed.json()["error"]["type"] == "api_error"
        assert "cannot reach the upstream" in failed.json()["error"]["message"]
    finally:
        unreachable.stop()


def test_upstream_timeout_is_504(anthropic: FakeAnthropic) -> None:
    slow = start_gateway(
        anthropic_url=anthropic.url, settings=lambda s: setattr(s.gateway, "read_timeout_seconds", 0.5)
    )
    try:
        slow.add("anthropic", "main", "sk-ant-main")
        anthropic.enqueue(Behavior(hang=True))
        timed_out = post(slow)
        assert timed_out.status_code == 504
        assert timed_out.json()["error"]["type"] == "timeout_error"
    finally:
        slow.stop()


# ---------------------------------------------------------------- routing modes, quota


def test_sticky_sessions_stay_on_their_account(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    gw.edit(lambda s: setattr(s.routing, "mode", "sticky"))
    anthropic.enqueue(Behavior(status=429, retry_after=1, error_type="rate_limit_error"))
    assert post(gw, **{"x-claude-code-session-id": "s1"}).headers["x-headway-account"] == "backup"
    time.sleep(1.1)  # main's cooldown is over
    assert post(gw, **{"x-claude-code-session-id": "s1"}).headers["x-headway-account"] == "backup"
    assert post(gw, **{"x-claude-code-session-id": "s2"}).headers["x-headway-account"] == "main"


def test_fallback_first_keeps_the_main_account_in_reserve(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    gw.edit(lambda s: setattr(s.routing, "mode", "fallback-first"))
    assert post(gw).headers["x-headway-account"] == "backup"


def test_quota_headers_become_status_and_steer_routing(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    main = gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    anthropic.enqueue(
        Behavior(headers=anthropic_ratelimit_headers(requests_limit=50, requests_remaining=1, reset_in=45))
    )
    post(gw)
    windows = {w["name"]: w for w in gw.account_status(main.id)["quota"]["windows"]}
    assert windows["requests"]["remaining_percent"] == 2.0
    assert 40 < windows["requests"]["resets_in_seconds"] <= 45
    assert post(gw).headers["x-headway-account"] == "main"  # no minimum set yet
    gw.edit(lambda s: setattr(s.routing, "min_remaining_percent", 5))
    assert post(gw).headers["x-headway-account"] == "backup"


def test_openai_rate_limit_headers_are_read(gw: RunningGateway, openai: FakeOpenAI) -> None:
    account = gw.add("openai", "main", "sk-main")
    openai.enqueue(
        Behavior(
            headers=openai_ratelimit_headers(requests_limit=500, requests_remaining=250, requests_reset=90)
        )
    )
    ok = httpx.post(
        f"{gw.url}/v1/responses", json={**RESPONSES, "stream": True}, headers=gw.headers("openai")
    )
    assert ok.status_code == 200 and "response.completed" in ok.text
    windows = {w["name"]: w for w in gw.account_status(account.id)["quota"]["windows"]}
    assert windows["requests"]["remaining_percent"] == 50.0
    assert 85 < windows["requests"]["resets_in_seconds"] <= 90


# ---------------------------------------------------------------- live settings


def test_hand_edit_changes_routing_within_a_second(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "backup", "sk-ant-backup")
    path = gw.services.paths.settings_file
    data = json.loads(path.read_text())
    data["accounts"].reverse()
    started = time.monotonic()
    path.write_text(json.dumps(data, indent=2))
    assert wait_until(lambda: gw.services.engine.settings.accounts[0].id == "backup", timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert post(gw).headers["x-headway-account"] == "backup"


def test_broken_edit_keeps_last_good_settings_and_says_why(gw: RunningGateway) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    path = gw.services.paths.settings_file
    good = path.read_text()
    data = json.loads(good)
    data["routing"]["mode"] = "round-robin"
    data["accounts"][0]["kind"] = "antropic-api-key"
    path.write_text(json.dumps(data))
    assert wait_until(lambda: gw.status()["settings_error"] is not None, timeout=2.0)
    problems = gw.status()["settings_error"]
    assert any(p.startswith("routing.mode:") and "round-robin" in p for p in problems)
    assert any(p.startswith("accounts[0].kind:") for p in problems)
    assert post(gw).status_code == 200  # still routing on the last good settings
    path.write_text("{ not json")
    assert wait_until(lambda: "invalid JSON" in " ".join(gw.status()["settings_error"] or []), timeout=2.0)
    path.write_text(good)
    assert wait_until(lambda: gw.status()["settings_error"] is None, timeout=2.0)


def test_usage_is_logged_with_cost(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    anthropic.enqueue(
        Behavior(usage={"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 5000})
    )
    post(gw, {**MESSAGE, "stream": True}, **{"x-session-id": "ses_abc"})
    gw.flush_log()
    row = gw.services.engine.request_log.query()[0]
    assert row.status == 200 and row.stream and row.session_id == "ses_abc"
    assert row.usage is not None and row.usage.input_tokens == 1200 and row.usage.cache_read_tokens == 5000
    assert row.usage.output_tokens == 300
    assert row.cost_usd is not None and row.cost_usd > 0
    assert row.ttfb_ms is not None and row.ttfb_ms <= row.latency_ms


def test_settings_defaults_are_written_on_first_run(gw: RunningGateway) -> None:
    data = json.loads(gw.services.paths.settings_file.read_text())
    assert Settings.model_validate(data).gateway.host == "127.0.0.1"
    assert gw.services.paths.settings_file.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- cache modes and dumps


CACHED = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}],
        },
    ],
}


def test_cache_mode_off_leaves_the_body_byte_for_byte(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    raw = json.dumps(CACHED, indent=1).encode()
    httpx.post(
        f"{gw.url}/v1/messages", content=raw, headers={**gw.headers(), "content-type": "application/json"}
    )
    assert anthropic.requests[-1].body == raw


def test_hybrid_cache_mode_sets_1h_and_spares_subagents(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    from proxy.features.cache_control import find_breakpoints, validate_cache_control

    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.cache, "anthropic_mode", "hybrid"))
    post(gw, CACHED)
    sent = anthropic.requests[-1].json
    assert sent["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert validate_cache_control(sent) == []
    assert all(b.effective_ttl == "1h" for b in find_breakpoints(sent))
    post(gw, CACHED, **{"x-claude-code-agent-id": "a1b2c3d4e5f60718"})
    assert anthropic.requests[-1].json == CACHED  # a subagent keeps the default 5-minute cache
    post(gw, CACHED, **{"x-parent-session-id": "ses_parent", "x-session-id": "ses_child"})
    assert anthropic.requests[-1].json == CACHED


def test_dumps_write_the_final_upstream_body_privately(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")

    def turn_on(s: Settings) -> None:
        s.dumps.enabled = True
        s.cache.anthropic_mode = "explicit"

    gw.edit(turn_on)
    post(gw, {**CACHED, "stream": True}, **{"x-session-id": "ses_dump"})
    folder = gw.services.paths.dumps_dir
    assert wait_until(lambda: any(folder.glob("*.meta.json")), timeout=3)
    assert folder.stat().st_mode & 0o777 == 0o700
    body_file = next(folder.glob("*.request.json"))
    assert body_file.stat().st_mode & 0o777 == 0o600
    assert body_file.read_bytes() == anthropic.requests[-1].body  # exactly what went upstream
    meta = json.loads(next(folder.glob("*.meta.json")).read_text())
    assert meta["session_id"] == "ses_dump" and meta["response"]["status"] == 200
    assert "sk-ant-main" not in json.dumps(meta) and gw.key not in json.dumps(meta)
    assert any(folder.glob("*.sse.txt"))
    gw.edit(lambda s: setattr(s.dumps, "enabled", False))
    before = len(list(folder.glob("*.meta.json")))
    post(gw, CACHED)
    time.sleep(0.2)
    assert len(list(folder.glob("*.meta.json"))) == before


def test_pause_answers_503_until_resumed(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.services.engine.set_paused(True)
    assert wait_until(lambda: gw.services.engine.paused)
    paused = post(gw)
    assert paused.status_code == 503 and "paused" in paused.json()["error"]["message"]
    assert anthropic.requests == []
    gw.services.engine.set_paused(False)
    assert wait_until(lambda: not gw.services.engine.paused)
    assert post(gw).status_code == 200


def test_status_names_an_account_whose_key_is_missing(gw: RunningGateway) -> None:
    account = gw.add("anthropic", "main", "sk-ant-main")
    from proxy.secrets.keychain import account_secret_name

    gw.services.keychain.delete(account_secret_name(account.id))
    gw.services.engine._secrets.invalidate()
    status = httpx.get(f"{gw.url}/status", headers=gw.headers()).json()
    entry = next(a for a in status["accounts"] if a["id"] == account.id)
    assert entry["health"] == "no_secret" and "set-key" in entry["detail"]
    refused = post(gw)
    assert refused.status_code == 503 and "no credential" in refused.json()["error"]["message"]
