"""The page's routes over a real engine: every change goes through the settings store, and the engine sees it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from proxy.keychain import account_secret_name
from proxy.request_log import RequestRecord
from proxy.usage import Usage
from tests.fakes.openai_auth import FakeOpenAIAuth
from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web
from web_ui.callback import CallbackServer
from web_ui.views.chatgpt import LoginFlows
from web_ui.views.forms import HIDDEN, READ_ONLY, settings_groups
from web_ui.views.usage import daily_usage, render_chart


def _file(web: Web) -> dict:
    return json.loads(web.services.paths.settings_file.read_text())


# --------------------------------------------------------------------------- the page


def test_the_page_renders_every_section_and_every_setting(signed_in: Web) -> None:
    html = signed_in.client.get("/").get_data(as_text=True)
    for section in ("overview", "accounts", "routing", "caching", "debugging", "connect"):
        assert f'id="{section}"' in html
    for group in settings_groups():
        for spec in group.fields:
            if spec.readonly:
                assert f'data-readonly="{spec.path}"' in html, spec.path
                assert f'aria-labelledby="{spec.dom_id}-label"' in html, f"{spec.path} has no label"
            else:
                assert f'data-setting="{spec.path}"' in html, spec.path
                assert f'for="{spec.dom_id}"' in html, f"{spec.path} has no label"
    # shown, but never as a control
    assert 'data-setting="gateway.host"' not in html and 'data-readonly="gateway.host"' in html
    assert 'data-setting="relay.url"' not in html
    assert "upstreams" not in html and "secrets.backend" not in html


def test_settings_controls_follow_the_schema() -> None:
    paths = {spec.path: spec for group in settings_groups() for spec in group.fields}
    assert paths["dumps.enabled"].control == "switch"
    assert paths["routing.mode"].control == "select" and "sticky" in paths["routing.mode"].options
    assert paths["routing.fallback_statuses"].control == "int-list"
    assert (paths["routing.min_remaining_percent"].minimum, paths["routing.min_remaining_percent"].maximum) == (0, 100)
    assert paths["logging.level"].options == ("DEBUG", "INFO", "WARNING", "ERROR")
    assert paths["gateway.paused"].control == "switch"
    assert not any(p in HIDDEN or p.startswith(("upstreams.", "secrets.")) for p in paths)
    assert all(paths[p].readonly for p in READ_ONLY if p in paths)
    assert paths["gateway.host"].readonly and not paths["gateway.paused"].readonly


# --------------------------------------------------------------------------- settings through the store


def test_a_settings_change_goes_through_the_store_and_reaches_the_engine(signed_in: Web) -> None:
    engine = signed_in.services.engine
    response = signed_in.post(
        "/api/settings",
        {"changes": {"dumps.enabled": True, "routing.mode": "sticky", "routing.fallback_statuses": "429, 529", "logging.level": "DEBUG"}},
    )
    assert response.status_code == 200, response.get_json()
    saved = _file(signed_in)
    assert saved["dumps"]["enabled"] is True
    assert saved["routing"]["mode"] == "sticky"
    assert saved["routing"]["fallback_statuses"] == [429, 529]
    assert wait_until(lambda: engine.settings.dumps.enabled and engine.settings.routing.mode == "sticky")
    assert wait_until(lambda: engine.status()["routing"] == "sticky")  # status() is the loop's published snapshot
    state = signed_in.get_json("/api/state")
    assert state["settings"]["dumps.enabled"] is True
    assert state["log"]["level"] == "DEBUG"


def test_invalid_values_are_refused_with_the_reason_and_nothing_is_written(signed_in: Web) -> None:
    before = signed_in.services.paths.settings_file.read_text()
    response = signed_in.post("/api/settings", {"changes": {"routing.min_remaining_percent": 250, "routing.mode": "round-robin"}})
    assert response.status_code == 400
    problems = response.get_json()["problems"]
    assert "less than or equal to 100" in problems["routing.min_remaining_percent"]
    assert "routing.mode" in problems
    assert signed_in.services.paths.settings_file.read_text() == before


@pytest.mark.parametrize(
    "path",
    ["gateway.host", "gateway.port", "gateway.allowed_hosts", "relay.url", "upstreams.anthropic", "secrets.backend", "accounts", "version"],
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
    assert wait_until(lambda: signed_in.get_json("/api/state")["settings"]["cache.anthropic_mode"] == "hybrid", timeout=5)


def test_a_broken_file_is_reported_and_blocks_saving(signed_in: Web) -> None:
    path = signed_in.services.paths.settings_file
    path.write_text('{"routing": {"mode": "nonsense"}}')
    assert wait_until(lambda: signed_in.get_json("/api/state")["settings_error"] is not None, timeout=5)
    problems = signed_in.get_json("/api/state")["settings_error"]
    assert any("routing.mode" in p for p in problems)
    response = signed_in.post("/api/settings", {"changes": {"dumps.enabled": True}})
    assert response.status_code == 409
    assert "nonsense" in path.read_text()


# --------------------------------------------------------------------------- accounts


def test_account_management_end_to_end(signed_in: Web) -> None:
    keychain = signed_in.services.keychain
    store = signed_in.services.store
    for label, provider, key in (("Work", "anthropic", "sk-ant-api03-" + "a" * 40), ("Home", "anthropic", "sk-ant-api03-" + "b" * 40), ("OA", "openai", "sk-" + "c" * 40)):
        response = signed_in.post("/api/accounts", {"provider": provider, "label": label, "api_key": key})
        assert response.status_code == 200, response.get_json()
    assert [a.id for a in store.current.accounts] == ["work", "home", "oa"]
    assert keychain.get(account_secret_name("home")) == "sk-ant-api03-" + "b" * 40

    warning = signed_in.post("/api/accounts", {"provider": "anthropic", "label": "odd", "api_key": "not-a-real-key"}).get_json()
    assert "does not look like" in warning["warning"]
    assert signed_in.post("/api/accounts", {"provider": "anthropic", "label": "", "api_key": "x"}).status_code == 400

    assert signed_in.post("/api/accounts/home/key", {"api_key": "sk-ant-api03-" + "z" * 40}).status_code == 200
    assert keychain.get(account_secret_name("home")) == "sk-ant-api03-" + "z" * 40

    assert signed_in.post("/api/accounts/home", {"label": "Home laptop"}).status_code == 200
    assert signed_in.post("/api/accounts/home", {"enabled": False}).status_code == 200
    limits = signed_in.post("/api/accounts/work", {"min_remaining_percent": 15, "killswitch": {"tokens": 5}})
    assert limits.status_code == 200, limits.get_json()
    bad = signed_in.post("/api/accounts/work", {"min_remaining_percent": 400})
    assert bad.status_code == 400 and "min_remaining_percent" in bad.get_json()["problems"]
    assert signed_in.post("/api/accounts/work", {"kind": "chatgpt"}).status_code == 400

    assert signed_in.post("/api/account-order", {"ids": ["oa", "home", "work", "odd"]}).status_code == 200
    account = store.current.account("home")
    assert account is not None and account.label == "Home laptop" and account.enabled is False
    work = store.current.account("work")
    assert work is not None and work.min_remaining_percent == 15 and work.killswitch == {"tokens": 5}
    assert [a.id for a in store.current.accounts] == ["oa", "home", "work", "odd"]
    engine = signed_in.services.engine
    assert wait_until(lambda: [a.id for a in engine.settings.accounts] == ["oa", "home", "work", "odd"])
    state = signed_in.get_json("/api/state")
    assert [(a["id"], a["health"]) for a in state["accounts"]][:2] == [("oa", "healthy"), ("home", "disabled")]

    assert signed_in.post("/api/accounts/odd/remove", {}).status_code == 400  # no confirmation
    assert signed_in.post("/api/accounts/odd/remove", {"confirm": "odd"}).status_code == 200
    assert store.current.account("odd") is None
    assert keychain.get(account_secret_name("odd")) is None
    assert signed_in.post("/api/accounts/nope/remove", {"confirm": "nope"}).status_code == 400


def test_an_account_added_on_the_page_serves_requests(signed_in: Web, upstream) -> None:  # type: ignore[no-untyped-def]
    key = "sk-ant-api03-" + "k" * 40
    signed_in.post("/api/accounts", {"provider": "anthropic", "label": "main", "api_key": key})
    gateway = signed_in.gateway
    assert wait_until(lambda: gateway.services.engine.settings.account("main") is not None)
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers=gateway.headers(),
        json={"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 200
    assert upstream.requests[-1].headers["x-api-key"] == key


# --------------------------------------------------------------------------- usage


def _record(ts: float, account: str, label: str, cost: float, chain: list[str] | None = None) -> RequestRecord:
    return RequestRecord(
        ts=ts,
        route="/v1/messages",
        family="anthropic",
        account_id=account,
        account_label=label,
        model="claude-sonnet-4-5",
        status=200,
        latency_ms=10,
        usage=Usage(input_tokens=100, output_tokens=20),
        cost_usd=cost,
        fallback_chain=chain or [f"{account}:200"],
    )


def test_usage_per_day_and_account_with_labels_escaped(signed_in: Web) -> None:
    log = signed_in.services.engine.request_log
    now = time.time()
    log.record(_record(now - 60, "work", "<script>alert(1)</script>", 0.25, ["home:429", "work:200"]))
    log.record(_record(now - 86400 * 2, "work", "<script>alert(1)</script>", 0.5))
    log.record(_record(now - 30, "home", "Home", 0.1))
    assert log.flush(5)
    report = daily_usage(log, 7, now)
    assert [a.key for a in report.accounts] == ["work", "home"]
    assert report.accounts[0].requests == 2 and report.accounts[0].fallbacks == 1
    assert report.accounts[0].tokens == 240
    svg = render_chart(report, "cost")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<rect") == 3

    data = signed_in.get_json("/api/usage?days=7&metric=requests")
    assert data["metric"] == "requests" and len(data["days"]) == 7
    assert {a["key"]: a["requests"] for a in data["accounts"]} == {"work": 2, "home": 1}
    assert "<script>alert" not in data["svg"]
    recent = signed_in.get_json("/api/state")["recent"]
    assert recent["requests_24h"] == 2 and recent["fallbacks_24h"] == 1
    assert recent["fallbacks"][0]["chain"] == ["home:429", "work:200"]


def test_an_empty_log_draws_an_empty_chart(signed_in: Web) -> None:
    data = signed_in.get_json("/api/usage")
    assert data["accounts"] == [] and "No requests in this period" in data["svg"]


# --------------------------------------------------------------------------- debugging facts


def test_dumps_folder_and_size_and_log_file_are_shown(signed_in: Web) -> None:
    folder = signed_in.services.paths.dumps_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "20260101T000000000Z-000001-s.meta.json").write_bytes(b"{}" * 100)
    (folder / "20260101T000000000Z-000001-s.request.json").write_bytes(b"x" * 800)
    time.sleep(3.1)  # the facts are cached for 3 s
    state = signed_in.get_json("/api/state")
    assert state["dumps"] == {"folder": str(folder), "size_bytes": 1000, "dumps": 1, "files": 2}
    assert state["log"]["file"] == str(signed_in.services.logs.log_file)


# --------------------------------------------------------------------------- connect an agent


def test_connect_lists_agents_with_masked_keys_and_writes_configs(signed_in: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    listing = signed_in.get_json("/api/agents")
    names = [a["name"] for a in listing["agents"]]
    assert names == ["opencode", "pi", "codex", "claude-code", "openhands", "aider"]
    key = signed_in.gateway.key
    assert all(key not in a["snippet"] for a in listing["agents"])
    codex = next(a for a in listing["agents"] if a["name"] == "codex")
    assert codex["path"] == str(home / ".codex" / "config.toml") and codex["configured"] is False

    first = signed_in.post("/api/agents/codex/write")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["changed"] is True and body["backup"] is None and body["agent"]["configured"] is True
    text = (home / ".codex" / "config.toml").read_text()
    assert 'model_provider = "headway"' in text and key in text
    second = signed_in.post("/api/agents/codex/write").get_json()
    assert second["changed"] is False
    assert signed_in.post("/api/agents/openhands/write").status_code == 400
    assert signed_in.post("/api/agents/nope/write").status_code == 404


# --------------------------------------------------------------------------- ChatGPT sign-in


@pytest.fixture
def auth() -> FakeOpenAIAuth:
    with FakeOpenAIAuth() as fake:
        yield fake  # type: ignore[misc]


def _use_fake_issuer(web: Web, auth: FakeOpenAIAuth) -> LoginFlows:
    context = web.services.web.context
    flows = LoginFlows(
        context.store,
        context.keychain,
        CallbackServer,
        {"HEADWAY_OPENAI_AUTH_URL": auth.url, "HEADWAY_OAUTH_CALLBACK_PORT": "0"},
    )
    context.logins = flows
    return flows


def test_chatgpt_browser_sign_in_from_the_page(signed_in: Web, auth: FakeOpenAIAuth) -> None:
    flows = _use_fake_issuer(signed_in, auth)
    auth.next_login("acct-123", email="me@example.com", plan_type="pro")
    auth.auto_redirect = True
    started = signed_in.post("/api/chatgpt/browser-login", {"label": "personal"})
    assert started.status_code == 200, started.get_json()
    flow = started.get_json()
    assert flow["state"] == "waiting" and flow["url"].startswith(auth.url)
    # the browser: the issuer redirects to Headway's callback on localhost
    redirect = httpx.get(flow["url"], follow_redirects=False, timeout=5)
    callback = urlsplit(redirect.headers["location"])
    page = httpx.get(f"http://127.0.0.1:{callback.port}{callback.path}?{callback.query}", headers={"Host": f"localhost:{callback.port}"}, timeout=15)
    assert page.status_code == 200 and "Signed in" in page.text
    assert wait_until(lambda: signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")["state"] == "done", timeout=10)
    done = signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")
    assert "me@example.com" in done["message"] and done["account"]["label"] == "personal"
    account = signed_in.services.store.current.accounts[-1]
    assert account.kind == "chatgpt" and account.chatgpt_account_id == "acct-123" and account.plan_type == "pro"
    state = signed_in.get_json("/api/state")
    assert state["accounts"][-1]["email"] == "me@example.com"
    assert "access_token" not in json.dumps(state) and "refresh" not in json.dumps(state)
    flows.stop()


def test_chatgpt_device_sign_in_and_cancel(signed_in: Web, auth: FakeOpenAIAuth) -> None:
    flows = _use_fake_issuer(signed_in, auth)
    auth.next_login("acct-dev", email="dev@example.com")
    flow = signed_in.post("/api/chatgpt/device-login", {}).get_json()
    assert flow["kind"] == "device" and flow["user_code"] and flow["url"]
    auth.approve_device(flow["user_code"])
    assert wait_until(lambda: signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")["state"] == "done", timeout=10)
    assert any(a.chatgpt_account_id == "acct-dev" for a in signed_in.services.store.current.accounts)

    pending = signed_in.post("/api/chatgpt/device-login", {}).get_json()
    cancelled = signed_in.post(f"/api/chatgpt/logins/{pending['id']}/cancel").get_json()
    assert cancelled["id"] == pending["id"]
    assert wait_until(lambda: signed_in.get_json(f"/api/chatgpt/logins/{pending['id']}")["state"] == "cancelled", timeout=10)
    auth.device_code_enabled = False
    refused = signed_in.post("/api/chatgpt/device-login", {})
    assert refused.status_code == 409 and "device login is not enabled" in refused.get_json()["error"]
    flows.stop()


def test_a_relabel_to_a_label_in_use_is_refused(signed_in: Web) -> None:
    """Issue 10.13: labels are unique (case-insensitive) on the page as in the CLI."""
    for label, key in (("Work", "sk-ant-api03-" + "a" * 40), ("Home", "sk-ant-api03-" + "b" * 40)):
        assert signed_in.post("/api/accounts", {"provider": "anthropic", "label": label, "api_key": key}).status_code == 200
    again = signed_in.post("/api/accounts", {"provider": "anthropic", "label": "WORK", "api_key": "sk-ant-x"})
    assert again.status_code == 400 and "already exists" in again.get_json()["error"]
    before = signed_in.services.paths.settings_file.read_text()
    response = signed_in.post("/api/accounts/home", {"label": " work "})
    assert response.status_code == 400
    assert "already exists" in response.get_json()["problems"]["label"]
    assert signed_in.services.paths.settings_file.read_text() == before
    assert signed_in.post("/api/accounts/home", {"label": "HOME"}).status_code == 200  # its own label, recased
