"""The live state and the settings route (web_ui/views/api.py): every change goes through the settings store, and
the engine sees it; file edits and a broken file show up at the next poll."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web
from web_ui.views.api import key_hint


def _file(web: Web) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(web.services.paths.settings_file.read_text())
    return data


def test_a_settings_change_goes_through_the_store_and_reaches_the_engine(signed_in: Web) -> None:
    engine = signed_in.services.engine
    response = signed_in.post(
        "/api/settings",
        {
            "changes": {
                "dumps.enabled": True,
                "routing.mode": "sticky",
                "routing.fallback_statuses": "429, 529",
                "logging.level": "DEBUG",
            }
        },
    )
    assert response.status_code == 200, response.get_json()
    saved = _file(signed_in)
    assert saved["dumps"]["enabled"] is True
    assert saved["routing"]["mode"] == "sticky"
    assert saved["routing"]["fallback_statuses"] == [429, 529]
    assert wait_until(lambda: engine.settings.dumps.enabled and engine.settings.routing.mode == "sticky")
    assert wait_until(
        lambda: engine.status()["routing"] == "sticky"
    )  # status() is the loop's published snapshot
    state = signed_in.get_json("/api/state")
    assert state["settings"]["dumps.enabled"] is True
    assert state["log"]["level"] == "DEBUG"


def test_invalid_values_are_refused_with_the_reason_and_nothing_is_written(signed_in: Web) -> None:
    before = signed_in.services.paths.settings_file.read_text()
    response = signed_in.post(
        "/api/settings", {"changes": {"routing.min_remaining_percent": 250, "routing.mode": "round-robin"}}
    )
    assert response.status_code == 400
    problems = response.get_json()["problems"]
    assert "less than or equal to 100" in problems["routing.min_remaining_percent"]
    assert "routing.mode" in problems
    assert signed_in.services.paths.settings_file.read_text() == before


@pytest.mark.parametrize(
    "path",
    [
        "gateway.host",
        "gateway.port",
        "gateway.allowed_hosts",
        "relay.url",
        "upstreams.anthropic",
        "secrets.backend",
        "accounts",
        "version",
    ],
)
def test_security_relevant_settings_cannot_be_changed_from_the_page(signed_in: Web, path: str) -> None:
    response = signed_in.post("/api/settings", {"changes": {path: "http://evil.example"}})
    assert response.status_code == 400
    assert "not a setting this page can change" in response.get_json()["problems"][path]


def test_a_file_edit_shows_up_in_the_state(signed_in: Web) -> None:
    path = signed_in.services.paths.settings_file
    data = _file(signed_in)
    data["cache"] = {"anthropic_mode": "hybrid"}
    path.write_text(json.dumps(data))
    assert wait_until(
        lambda: signed_in.get_json("/api/state")["settings"]["cache.anthropic_mode"] == "hybrid", timeout=5
    )


def test_a_broken_file_is_reported_and_blocks_saving(signed_in: Web) -> None:
    path = signed_in.services.paths.settings_file
    path.write_text('{"routing": {"mode": "nonsense"}}')
    assert wait_until(lambda: signed_in.get_json("/api/state")["settings_error"] is not None, timeout=5)
    problems = signed_in.get_json("/api/state")["settings_error"]
    assert any("routing.mode" in p for p in problems)
    response = signed_in.post("/api/settings", {"changes": {"dumps.enabled": True}})
    assert response.status_code == 409
    assert "nonsense" in path.read_text()


def test_dumps_folder_and_size_and_log_file_are_shown(signed_in: Web) -> None:
    folder = signed_in.services.paths.dumps_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "20260101T000000000Z-000001-s.meta.json").write_bytes(b"{}" * 100)
    (folder / "20260101T000000000Z-000001-s.request.json").write_bytes(b"x" * 800)
    expected = {"folder": str(folder), "size_bytes": 1000, "dumps": 1, "files": 2}
    # the facts are cached for 3 s, and the page's own render may have filled the cache before the files were written
    assert wait_until(lambda: signed_in.get_json("/api/state")["dumps"] == expected, timeout=10)
    state = signed_in.get_json("/api/state")
    assert state["log"]["file"] == str(signed_in.services.logs.log_file)


def test_true_for_a_number_is_refused_not_taken_as_one(signed_in: Web) -> None:
    before = signed_in.services.paths.settings_file.read_text()
    response = signed_in.post("/api/settings", {"changes": {"dumps.max_mb": True}})
    assert response.status_code == 400
    assert response.get_json()["problems"] == {"dumps.max_mb": "a number, not true or false"}
    assert signed_in.services.paths.settings_file.read_text() == before


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        (None, None),
        ("", None),
        ("short-key", "…••••"),  # too short to show any of it
        ("sk-ant-api03-" + "x" * 40 + "Zq9w", "sk-ant-api03-…Zq9w"),
        ("sk-ant-admin01-" + "x" * 40 + "ab12", "sk-ant-admin01-…ab12"),
        ("sk-proj-" + "x" * 40 + "Lm4k", "sk-proj-…Lm4k"),
        ("sk-" + "x" * 40 + "9z9z", "sk-…9z9z"),
        ("gsk_" + "x" * 40 + "wxyz", "…wxyz"),  # an unknown shape shows no prefix
    ],
)
def test_key_hints_show_only_the_public_prefix_and_the_last_four(key: str | None, hint: str | None) -> None:
    assert key_hint(key) == hint


def test_the_first_run_facts_and_the_engines_summary(signed_in: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from web_ui.views.cache import TtlCache

    def forget_recent(web: Web) -> None:  # the state's 2-second cache of the log's facts
        web.services.web.context.helper("ttl", TtlCache).forget("recent")

    state = signed_in.get_json("/api/state")
    assert state["recent"]["agent_request_seen"] is False
    assert (
        state["summary"]["state"] == "unknown" and state["summary"]["total"] == 0
    )  # the engine's, passed on
    signed_in.gateway.add("anthropic", "Work", "sk-ant-api03-" + "w" * 40)
    engine = signed_in.services.engine
    engine.call(engine.test_account("work"), timeout=10)  # a test is not an agent's request
    signed_in.gateway.flush_log()
    forget_recent(signed_in)
    assert signed_in.get_json("/api/state")["recent"]["agent_request_seen"] is False
    response = httpx.post(
        f"{signed_in.gateway.url}/v1/messages",
        headers=signed_in.gateway.headers(),
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 200
    signed_in.gateway.flush_log()
    forget_recent(signed_in)
    assert signed_in.get_json("/api/state")["recent"]["agent_request_seen"] is True

    summary = {"state": "healthy", "ready": 1, "total": 1, "next_reset": None}
    original = engine.status
    monkeypatch.setattr(engine, "status", lambda: {**original(), "summary": summary})
    assert signed_in.get_json("/api/state")["summary"] == summary


def test_refresh_quota_says_what_it_refreshed(signed_in: Web) -> None:
    signed_in.gateway.add("anthropic", "Work", "sk-ant-api03-" + "w" * 40)
    result = signed_in.post("/api/quota/refresh").get_json()
    assert result["ok"] is True and result["refreshed"] == [] and result["failed"] == []
    assert result["at"] > 0


def test_a_page_left_open_asks_the_keychain_every_five_minutes_not_at_every_poll(
    signed_in: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page polls /api/state every 2 s. It showed each key's hint and whether the relay secret is stored from
    the keychain, read again every 60 s and 10 s: 420 keychain reads an hour with two accounts, each a D-Bus
    connection to the user's keyring daemon. Now every 5 minutes, and at once after a change."""
    from proxy.relay.protocol import RELAY_SECRET
    from proxy.secrets.keychain import Keychain, account_secret_name
    from web_ui.views.cache import TtlCache

    context = signed_in.services.web.context
    now = [1000.0]
    context.caches["ttl"] = TtlCache(clock=lambda: now[0])
    work = signed_in.gateway.add("anthropic", "work", "sk-ant-api03-" + "w" * 24)
    home = signed_in.gateway.add("anthropic", "home", "sk-ant-api03-" + "h" * 24)
    keychain: Keychain = context.keychain
    reads: list[str] = []
    real_get = keychain.get

    def counted(name: str) -> str | None:
        reads.append(name)
        return real_get(name)

    monkeypatch.setattr(keychain, "get", counted)
    for _ in range(150):  # five minutes of polls, less one
        state = signed_in.get_json("/api/state")
        now[0] += 2.0
    assert reads.count(RELAY_SECRET) == 1
    assert reads.count(account_secret_name(work.id)) == reads.count(account_secret_name(home.id)) == 1
    hints = {a["id"]: a.get("key_hint") for a in state["accounts"]}
    assert hints[work.id] == "sk-ant-api03-…wwww"

    # a key replaced from the command line (another process): the next poll shows the new hint
    from proxy.config.accounts import set_api_key

    set_api_key(context.store, keychain, work.id, "sk-ant-api03-" + "n" * 24)
    state = signed_in.get_json("/api/state")
    hints = {a["id"]: a.get("key_hint") for a in state["accounts"]}
    assert hints[work.id] == "sk-ant-api03-…nnnn"

    # a relay set up from the command line: its settings change, so the next poll asks again
    assert state["relay"]["secret_in_keychain"] is False
    keychain.set(RELAY_SECRET, "s" * 43)
    context.store.update(lambda s: setattr(s.relay, "url", "https://headway-relay.example.workers.dev"))
    assert signed_in.get_json("/api/state")["relay"]["secret_in_keychain"] is True
    assert reads.count(RELAY_SECRET) == 3  # the first poll, the one five minutes on, the one after the change
