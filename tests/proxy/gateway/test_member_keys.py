"""Member keys on a real gateway (no Redis): accepted next to the local key, tagged on the request and its log
row, re-read from members.json within a second of `headway keys` changing it, capped per day."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from proxy.features.member_usage import member_summary
from proxy.secrets.members import Member, MemberFile
from tests.fakes import FakeAnthropic, FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.gateway import RunningGateway, run_cli, start_gateway, wait_until

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(anthropic: FakeAnthropic) -> Iterator[RunningGateway]:
    running = start_gateway(anthropic_url=anthropic.url)
    try:
        running.add("anthropic", "main", "sk-ant-main")
        yield running
    finally:
        running.stop()


def post(gateway: RunningGateway, key: str, *, bearer: bool = False) -> httpx.Response:
    auth = {"authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
    return httpx.post(
        f"{gateway.url}/v1/messages",
        json=BODY,
        headers={**auth, "anthropic-version": "2023-06-01"},
        timeout=10,
    )


def add_member(gateway: RunningGateway, name: str, daily_usd: float | None = None) -> str:
    member, key = Member.create(name, daily_usd=daily_usd)
    MemberFile(gateway.services.engine.paths.members_file).change(lambda m: m.__setitem__(name, member))
    return key


def test_member_key_is_accepted_tagged_and_logged(gateway: RunningGateway) -> None:
    key = add_member(gateway, "alice")
    assert wait_until(lambda: post(gateway, key).status_code == 200, timeout=3)
    assert post(gateway, key, bearer=True).status_code == 200
    assert post(gateway, gateway.key).status_code == 200  # the original local key keeps working
    gateway.flush_log()
    rows = gateway.services.engine.request_log.query(limit=10)
    assert sorted((r.member or "") for r in rows) == ["", "alice", "alice"]
    summary = member_summary(gateway.services.engine.paths.request_log, since=0)
    assert [(r["member"], r["requests"]) for r in summary] == [("alice", 2), (None, 1)]
    cli = run_cli("usage", "--by", "key", "--json")
    assert cli.returncode == 0, cli.stderr
    assert [(r["member"], r["requests"]) for r in json.loads(cli.stdout)] == [("alice", 2), (None, 1)]
    table = run_cli("usage", "--by", "key").stdout
    assert "alice" in table and "(local key)" in table


def test_a_wrong_or_revoked_member_key_is_refused(gateway: RunningGateway) -> None:
    key = add_member(gateway, "bob")
    assert wait_until(lambda: post(gateway, key).status_code == 200, timeout=3)
    assert post(gateway, key[:-2] + "xx").status_code == 401
    MemberFile(gateway.services.engine.paths.members_file).change(lambda m: m.pop("bob"))
    assert wait_until(lambda: post(gateway, key).status_code == 401, timeout=2)  # the bound


def test_an_unreadable_members_file_keeps_the_known_members(gateway: RunningGateway) -> None:
    key = add_member(gateway, "carol")
    assert wait_until(lambda: post(gateway, key).status_code == 200, timeout=3)
    gateway.services.engine.paths.members_file.write_text("{not json")
    assert wait_until(lambda: gateway.status()["team"]["members_error"] is not None, timeout=3)
    assert "not valid JSON" in gateway.status()["team"]["members_error"]
    assert post(gateway, key).status_code == 200


def test_a_member_over_their_daily_cap_is_refused_until_the_day_turns(gateway: RunningGateway) -> None:
    key = add_member(gateway, "dave", daily_usd=0.000001)
    assert wait_until(lambda: post(gateway, key).status_code == 200, timeout=3)
    engine = gateway.services.engine

    async def spent() -> float:
        return engine.team.spend.today("dave")

    assert wait_until(lambda: engine.call(spent()) > 0.000001, timeout=5)
    refused = post(gateway, key)
    assert refused.status_code == 429
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert "daily cap of $1e-06" in error["error"]["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86400
    assert post(gateway, gateway.key).status_code == 200  # others are not affected


def test_without_team_settings_nothing_changes(gateway: RunningGateway) -> None:
    """No shared state, no link, no listeners on the books: the lone gateway of before."""
    engine = gateway.services.engine
    assert engine.team.link is None
    state = engine._state

    async def listeners() -> list[object]:
        return [
            state.health.listener,
            state.quota.listener,
            state.router.listener,
            engine.team.spend.listener,
        ]

    assert engine.call(listeners()) == [None, None, None, None]
    assert gateway.status()["team"] == {"members": 0, "members_error": None, "shared_state": None}


def test_a_restart_keeps_todays_spend(anthropic: FakeAnthropic) -> None:
    first = start_gateway(anthropic_url=anthropic.url)
    try:
        first.add("anthropic", "main", "sk-ant-main")
        key = add_member(first, "erin", daily_usd=0.000001)
        assert wait_until(lambda: post(first, key).status_code == 200, timeout=3)
        first.flush_log()
    finally:
        first.stop()
    second = start_gateway(anthropic_url=anthropic.url)
    try:
        refused = post(second, key)
        assert refused.status_code == 429 and "daily cap" in refused.text
    finally:
        second.stop()


async def test_a_member_key_on_an_agent_websocket_tags_its_turns(
    auth: FakeOpenAIAuth, codex: FakeCodex, openai: FakeOpenAI
) -> None:
    from tests.proxy.gateway.test_websocket import connect, turn
    from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway

    with chatgpt_gateway(auth, codex, openai_url=openai.url) as gw:
        add_chatgpt(gw, auth, "acct-1", "work")
        key = add_member(gw, "frank")
        assert wait_until(lambda: gw.status()["team"]["members"] == 1, timeout=3)
        async with httpx.AsyncClient(timeout=30) as http:
            ws = await connect(http, gw, authorization=f"Bearer {key}")
            assert (await turn(ws, model="gpt-5", input="hi"))[-1]["type"] == "response.completed"
            await ws.close()
        gw.flush_log()
        rows = gw.services.engine.request_log.query(session_id="ws-session-1")
        assert [r.member for r in rows] == ["frank"]
