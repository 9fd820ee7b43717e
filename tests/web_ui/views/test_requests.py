"""The request log viewer (web_ui/views/requests.py): requests through the real gateway, listed with their agent
(from the User-Agent), account, status, timings, tokens and fallbacks; filtered and paged; one request with its dump
when dumps were on; bad parameters named; signed-in only."""

from __future__ import annotations

from typing import Any

import httpx

from proxy.config.settings import Settings
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web
from web_ui.views.requests import hop_reason

WORK = "sk-ant-api03-" + "w" * 40
HOME = "sk-ant-api03-" + "h" * 40
CLAUDE = "claude-cli/2.1.330 (external, cli)"
OPENCODE = "opencode/1.18.33 ai-sdk/provider-utils/4.0.46 runtime/bun/1.3.14"


def _send(web: Web, agent: str, session: str | None = None) -> httpx.Response:
    headers = {**web.gateway.headers(), "user-agent": agent}
    if session:
        headers["x-claude-code-session-id"] = session
    return httpx.post(
        f"{web.gateway.url}/v1/messages",
        headers=headers,
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def _list(web: Web, query: str = "") -> dict[str, Any]:
    return web.get_json(f"/api/requests{query}")  # type: ignore[no-any-return]


def test_requests_are_listed_filtered_and_paged(signed_in: Web, upstream: FakeAnthropic) -> None:
    signed_in.gateway.add("anthropic", "Work", WORK)
    signed_in.gateway.add("anthropic", "Home", HOME)
    assert _send(signed_in, CLAUDE, "ses-1").status_code == 200
    upstream.enqueue(Behavior(status=429, retry_after=600))
    assert _send(signed_in, OPENCODE, "ses-2").status_code == 200  # Work 429 → Home
    assert _send(signed_in, OPENCODE).status_code == 200  # Home (Work cools down)
    signed_in.gateway.flush_log()

    data = _list(signed_in)
    rows = data["requests"]
    assert [(r["agent"], r["account"], r["status"]) for r in rows] == [
        ("OpenCode", "Home", 200),
        ("OpenCode", "Home", 200),
        ("Claude Code", "Work", 200),
    ]
    first = rows[-1]
    assert first["session_id"] == "ses-1" and first["user_agent"] == CLAUDE
    assert first["model"] == "claude-sonnet-4-5" and first["latency_ms"] > 0
    assert first["tokens"]["input"] > 0 and first["tokens"]["output"] > 0
    assert first["fallbacks"] == []
    hops = rows[1]["fallbacks"]
    assert [(h["account"], h["status"], h["ok"]) for h in hops] == [
        ("Work", "429", False),
        ("Home", "200", True),
    ]
    assert hops[0]["why"] == "rate limited or out of quota"
    assert data["choices"] == {
        "accounts": [{"id": "home", "label": "Home"}, {"id": "work", "label": "Work"}],
        "agents": ["Claude Code", "OpenCode"],
    }
    assert data["dumps_enabled"] is False and data["next_before"] is None

    assert [r["session_id"] for r in _list(signed_in, "?agent=Claude+Code")["requests"]] == ["ses-1"]
    assert [r["account_id"] for r in _list(signed_in, "?account=work")["requests"]] == ["work"]
    assert [r["session_id"] for r in _list(signed_in, "?status=fallback")["requests"]] == ["ses-2"]
    assert _list(signed_in, "?status=error")["requests"] == []
    page = _list(signed_in, "?limit=2")
    assert len(page["requests"]) == 2 and page["next_before"] == page["requests"][-1]["id"]
    rest = _list(signed_in, f"?limit=2&before={page['next_before']}")
    assert [r["session_id"] for r in rest["requests"]] == ["ses-1"] and rest["next_before"] is None

    # a label changed since: the list shows the account's current label
    signed_in.gateway.edit(lambda s: _relabel(s, "work", "Work laptop"))
    assert _list(signed_in, "?account=work")["requests"][0]["account"] == "Work laptop"


def _relabel(settings: Settings, account_id: str, label: str) -> None:
    account = settings.account(account_id)
    assert account is not None
    account.label = label


def test_a_failed_request_shows_its_redacted_error(signed_in: Web, upstream: FakeAnthropic) -> None:
    signed_in.gateway.add("anthropic", "Work", WORK)
    leaked = "sk-ant-api03-" + "L" * 40
    upstream.enqueue(
        Behavior(status=400, error_type="invalid_request_error", error_message=f"bad key {leaked}")
    )
    assert _send(signed_in, CLAUDE).status_code == 400
    signed_in.gateway.flush_log()
    [row] = _list(signed_in, "?status=error")["requests"]
    assert row["ok"] is False and row["status"] == 400
    assert leaked not in str(row) and leaked not in str(signed_in.get_json(f"/api/requests/{row['id']}"))
    assert _list(signed_in, "?status=400")["requests"][0]["id"] == row["id"]


def test_one_request_comes_with_its_dump_when_dumps_were_on(signed_in: Web, upstream: FakeAnthropic) -> None:
    signed_in.gateway.add("anthropic", "Work", WORK)
    assert _send(signed_in, CLAUDE, "ses-nodump").status_code == 200
    signed_in.gateway.edit(lambda s: setattr(s.dumps, "enabled", True))
    assert _send(signed_in, CLAUDE, "ses-dump").status_code == 200
    signed_in.gateway.flush_log()
    dumps = signed_in.services.paths.dumps_dir
    assert wait_until(lambda: any(dumps.glob("*ses-dump.meta.json")), timeout=5)

    rows = {r["session_id"]: r for r in _list(signed_in)["requests"]}
    with_dump = signed_in.get_json(f"/api/requests/{rows['ses-dump']['id']}")
    assert with_dump["dumps_enabled"] is True
    dump = with_dump["dump"]
    assert dump["meta"]["session_id"] == "ses-dump"
    assert '"model": "claude-sonnet-4-5"' in dump["request"]["text"] and dump["request"]["truncated"] is False
    assert WORK not in str(dump)  # headers in the meta are redacted
    assert signed_in.get_json(f"/api/requests/{rows['ses-nodump']['id']}")["dump"] is None


def test_bad_parameters_are_named_and_signing_in_is_required(web: Web) -> None:
    assert web.client.get("/api/requests").status_code == 401
    web.sign_in()
    for query, word in (
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?days=1000", "days"),
        ("?status=maybe", "status"),
        ("?before=-3", "before"),
    ):
        response = web.client.get(f"/api/requests{query}")
        assert response.status_code == 400 and response.get_json()["error"].startswith(word), query
    assert web.client.get("/api/requests/999").status_code == 404
    assert _list(web)["requests"] == []


def test_hop_reasons_in_words() -> None:
    assert hop_reason("429") == "rate limited or out of quota"
    assert hop_reason("no-headers") == "no answer in time"
    assert hop_reason("200") == "served"
    assert hop_reason("418") == "refused (418)"
    assert hop_reason("599") == "provider error"
    assert hop_reason("something-new") == "something new"
