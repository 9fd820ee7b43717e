"""Real agents → a real `headway serve` → the relay Worker in workerd (npm miniflare) → fake upstreams on 127.0.0.1.

A multi-turn agent session (tool calls, so each turn resends a growing history) must reach the provider byte for byte
through the Worker: the first request as a full sync, the later ones as patches, with the savings in `headway status`.
When the Worker is down the agent still gets its answer, directly; streaming keeps its pacing through the Worker.

These need the relay wired into the gateway (proxy/gateway/forward.py sends through RelayClient, proxy/engine.py builds it
and reports `relay` in the status); without that they FAIL, saying so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.relay import RELAY_SECRET
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI, RecordedRequest, ToolCall
from tests.support.agents import require_agent, run_claude_code, run_opencode
from tests.support.gateway import GatewayProcess, e2e_keychain, run_cli, start_gateway_process
from tests.support.miniflare import MiniflareWorker, launch_worker, require_miniflare

pytestmark = [pytest.mark.keychain, pytest.mark.agents]

SECRET = "e2e-relay-secret-0123456789abcdefghijklmno"
ANTHROPIC_KEY = "sk-ant-relay-e2e-000111"
OPENAI_KEY = "sk-openai-relay-e2e-000333"
REPLY = "Relay reply 9d3e: all notes read."
PROMPT = "Read notes.txt three times with your read tool, then reply with one short sentence."


@pytest.fixture
def worker(tmp_path: Path, upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> Iterator[MiniflareWorker]:
    require_miniflare()
    origins = [fake.url for fake in upstreams]
    running = launch_worker(token=SECRET, log_dir=tmp_path / "miniflare", upstreams=origins)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    with (
        FakeAnthropic(default=Behavior(text=REPLY), valid_keys=[ANTHROPIC_KEY]) as anthropic,
        FakeOpenAI(default=Behavior(text=REPLY), valid_keys=[OPENAI_KEY]) as openai,
    ):
        yield anthropic, openai


def _start(
    worker: MiniflareWorker, fakes: tuple[FakeAnthropic, FakeOpenAI], /, **relay: Any
) -> GatewayProcess:
    """`headway serve` with both fakes as its upstreams and the relay on through ``worker``; ``relay``: settings."""
    anthropic, openai = fakes
    paths = Paths.from_env()
    keychain = e2e_keychain(paths)
    for provider, key in (("anthropic", ANTHROPIC_KEY), ("openai", OPENAI_KEY)):
        added = run_cli("accounts", "add", provider, "--label", provider, "--api-key-stdin", input=key + "\n")
        assert added.returncode == 0, added.stderr
    keychain.set(RELAY_SECRET, SECRET)

    def turn_on(settings: Any) -> None:
        settings.relay.enabled = True
        settings.relay.url = worker.url
        for name, value in relay.items():
            setattr(settings.relay, name, value)

    SettingsStore(paths.settings_file).update(turn_on)
    process = start_gateway_process(
        env={"HEADWAY_ANTHROPIC_BASE_URL": anthropic.url, "HEADWAY_OPENAI_BASE_URL": openai.url}
    )
    try:
        relay_stats(process)
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture
def gateway(worker: MiniflareWorker, upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> Iterator[GatewayProcess]:
    process = _start(worker, upstreams)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.output()


def relay_stats(gateway: GatewayProcess) -> dict[str, Any]:
    status = json.loads(run_cli("status", "--json").stdout)
    relay = status.get("relay")
    if not isinstance(relay, dict) or "totals" not in relay:
        pytest.fail(
            "the running gateway reports no relay stats: the relay is not wired into proxy/engine.py "
            "(RelayClient built, `relay` in status()) and proxy/gateway/forward.py (sends through it) yet",
            pytrace=False,
        )
    return relay


def _posts(fake: FakeAnthropic | FakeOpenAI) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST"]


def _notes(workdir: Path) -> Path:
    notes = workdir / "notes.txt"
    notes.write_text(
        "\n".join(f"{i:04d} the relay uploads only what changed since the last turn" for i in range(600))
    )
    return notes


def _check_session(
    fake: FakeAnthropic | FakeOpenAI, relay: dict[str, Any], session_header: str, turns: int
) -> dict[str, Any]:
    """The session's conversation reached the provider whole, through the Worker: one full sync per endpoint (a lane
    each: the conversation, Claude Code's count_tokens calls…), patches after that."""
    posts = _posts(fake)
    conversation = [p for p in posts if p.path in ("/v1/messages", "/v1/responses")]
    assert len(conversation) >= turns, [(p.path, len(p.body)) for p in posts]
    assert all("cf-worker" in p.headers for p in posts), "every request went through the Worker"
    assert [len(p.body) for p in conversation] == sorted(
        len(p.body) for p in conversation
    )  # a growing history
    session_id = posts[0].headers[session_header]
    assert {p.headers[session_header] for p in posts} == {session_id}
    session: dict[str, Any] = next(s for s in relay["sessions"] if s["session_id"] == session_id)
    lanes = len({p.path for p in posts})
    assert session["requests"] == len(posts)
    assert session["full_syncs"] == lanes and session["patches"] == len(posts) - lanes, session
    assert session["body_bytes"] == sum(len(p.body) for p in posts)  # the provider got the full bodies
    assert session["sent_bytes"] < session["body_bytes"] * 0.3
    trips = [r for r in relay["recent"] if r["session_id"] == session_id][::-1]
    print(
        f"RELAY-MEASURE agent session ({session_header}, {relay['transport']}): "
        f"uploaded {session['sent_bytes']} of {session['body_bytes']} body bytes ({session['saved_percent']}% saved); "
        f"per request (sent/body): {[(t['mode'], t['sent_bytes'], t['body_bytes']) for t in trips]}"
    )
    return session


def test_claude_code_session_full_sync_then_patches(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("claude")
    anthropic, _ = upstreams
    notes = _notes(tmp_path)
    anthropic.enqueue(*[Behavior(tool_call=ToolCall("Read", {"file_path": str(notes)}))] * 3)
    result = run_claude_code(base_url=gateway.url, api_key=gateway.key, prompt=PROMPT, workdir=tmp_path)
    assert result.returncode == 0, result.describe()
    assert json.loads(result.stdout)["result"] == REPLY
    relay = relay_stats(gateway)
    # Claude Code's count_tokens calls take scripted answers from the fake's queue too: at least 3 turns.
    _check_session(anthropic, relay, "x-claude-code-session-id", 3)
    assert all(p.headers["x-api-key"] == ANTHROPIC_KEY for p in _posts(anthropic))
    text = run_cli("status").stdout
    assert "Relay: on: uploaded" in text and "% saved) over" in text
    relay_text = run_cli("relay", "status").stdout
    assert (
        "Worker: 1.1.0 (protocol 1, durable_object)" in relay_text and "This run: on: uploaded" in relay_text
    )


def test_opencode_anthropic_and_openai_over_the_websocket(
    worker: MiniflareWorker, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("opencode")
    anthropic, openai = upstreams
    gateway = _start(worker, upstreams, transport="websocket")
    try:
        notes = _notes(tmp_path)
        for model, fake in (("anthropic/claude-sonnet-4-5", anthropic), ("openai/gpt-5", openai)):
            fake.enqueue(*[Behavior(tool_call=ToolCall("read", {"filePath": str(notes)}))] * 2)
            result = run_opencode(
                base_url=gateway.url, api_key=gateway.key, model=model, prompt=PROMPT, workdir=tmp_path
            )
            assert result.returncode == 0, result.describe()
            assert REPLY in result.output
        relay = relay_stats(gateway)
        assert relay["transport"] == "websocket"
        _check_session(anthropic, relay, "x-session-id", 3)
        _check_session(openai, relay, "x-session-id", 3)
        assert all(p.headers["authorization"] == f"Bearer {OPENAI_KEY}" for p in _posts(openai))
    finally:
        assert gateway.stop() == 0, gateway.output()


def test_relay_down_the_agent_is_served_directly(
    gateway: GatewayProcess,
    worker: MiniflareWorker,
    upstreams: tuple[FakeAnthropic, FakeOpenAI],
    tmp_path: Path,
) -> None:
    require_agent("claude")
    anthropic, _ = upstreams
    worker.stop()
    result = run_claude_code(
        base_url=gateway.url, api_key=gateway.key, prompt="Say hi. Do not use tools.", workdir=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert json.loads(result.stdout)["result"] == REPLY
    posts = _posts(anthropic)
    assert posts and not any("cf-worker" in p.headers for p in posts)  # straight to the provider
    relay = relay_stats(gateway)
    assert relay["totals"]["failures"] >= 1 and "cannot reach the relay" in relay["last_error"]


def test_relay_down_without_fallback_is_an_error(
    worker: MiniflareWorker, upstreams: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    anthropic, _ = upstreams
    gateway = _start(worker, upstreams, fallback_to_direct=False)
    try:
        worker.stop()
        response = httpx.post(
            f"{gateway.url}/v1/messages",
            headers={
                "x-api-key": gateway.key,
                "anthropic-version": "2023-06-01",
                "x-session-id": "ses_nofallback",
            },
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x" * 20000}],
            },
            timeout=30,
        )
        assert response.status_code >= 500, response.text
        assert "relay" in response.text
        assert _posts(anthropic) == []
    finally:
        assert gateway.stop() == 0, gateway.output()


def test_streaming_keeps_its_pacing_through_gateway_and_worker(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    anthropic, _ = upstreams
    delay = 0.25
    anthropic.default = Behavior(text=REPLY, chunks=8, delay=delay)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "y" * 20000}],
    }

    def arrivals(session: str | None) -> list[float]:
        headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
        if session:
            headers["x-session-id"] = session
        times: list[float] = []
        started = time.perf_counter()
        with httpx.stream(
            "POST", f"{gateway.url}/v1/messages", headers=headers, json=body, timeout=30
        ) as response:
            assert response.status_code == 200
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    _, buffer = buffer.split(b"\n\n", 1)
                    times.append(time.perf_counter() - started)
        return times

    direct = arrivals(None)  # no session id: direct
    arrivals("ses_pacing")  # the session's full sync
    through = arrivals("ses_pacing")
    print(
        f"RELAY-MEASURE gateway+Worker event arrival: direct {[round(t, 3) for t in direct]}, relayed {[round(t, 3) for t in through]}"
    )
    assert "cf-worker" in _posts(anthropic)[-1].headers and "cf-worker" not in _posts(anthropic)[0].headers
    assert len(through) == len(direct)
    for relayed_at, direct_at in zip(through, direct, strict=True):
        assert abs(relayed_at - direct_at) < 0.35
    assert through[-1] - through[0] > (len(through) - 5) * delay * 0.8


@pytest.mark.parametrize("recorded", [False, True], ids=["worker-refuses", "headway-knows"])
def test_an_upstream_the_worker_was_not_deployed_for_is_served_directly(
    upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path, recorded: bool
) -> None:
    """The Worker may call OpenAI only. Anthropic requests still succeed, directly: refused by the Worker (403, before
    any network call) when Headway does not know the Worker's list, or not even offered when it does."""
    require_miniflare()
    anthropic, openai = upstreams
    with launch_worker(token=SECRET, log_dir=tmp_path / "miniflare", upstreams=[openai.url]) as openai_only:
        relay = {"upstreams": [openai.url]} if recorded else {}
        gateway = _start(openai_only, upstreams, **relay)
        try:
            response = httpx.post(
                f"{gateway.url}/v1/messages",
                headers={
                    "x-api-key": gateway.key,
                    "anthropic-version": "2023-06-01",
                    "x-session-id": "ses_new",
                },
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "z" * 20000}],
                },
                timeout=30,
            )
            assert response.status_code == 200, response.text
            posts = _posts(anthropic)
            assert len(posts) == 1 and "cf-worker" not in posts[0].headers  # straight to the provider, once
            stats = relay_stats(gateway)
            if recorded:
                assert stats["totals"]["failures"] == 0 and stats["unbound_upstreams"] == [anthropic.url]
                text = run_cli("relay", "status", "--no-probe").stdout
                assert f"went direct (the Worker was not deployed for them): {anthropic.url}" in text
            else:
                assert stats["totals"]["failures"] == 1 and "upstream_not_allowed" in stats["last_error"]
        finally:
            assert gateway.stop() == 0, gateway.output()
