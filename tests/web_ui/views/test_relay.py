"""The Relay section: setup on a worker thread against a fake Cloudflare API, errors, status, savings, disable.

The Cloudflare API token must never come back: not in a response, a log record, the settings file or the keychain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.relay import RELAY_SECRET
from tests.conftest import MemoryKeyring
from tests.fakes.cloudflare import CF_ACCOUNT, CF_TOKEN, SCRIPTS_PERMISSION, FakeCloudflare, FakeToken
from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web
from web_ui.views import relay as relay_view

NARROW_TOKEN = "cf-narrow-token-0c3e5a7b9d1f2468ace"


@pytest.fixture
def cloudflare(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudflare]:
    tokens = (FakeToken(CF_TOKEN), FakeToken(NARROW_TOKEN, permissions=frozenset({"workers_kv:edit"})))
    with FakeCloudflare(tokens=tokens) as fake:
        monkeypatch.setenv("HEADWAY_CLOUDFLARE_API_URL", fake.url)
        monkeypatch.setattr(relay_view, "PROBE_SECONDS", 0.2)  # the workers.dev address does not exist here
        yield fake


def _finish(web: Web, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = web.get_json(f"/api/relay/setup/{job['id']}")
    assert job["state"] != "running", job
    return job


def _deploy(web: Web, token: str, **extra: Any) -> dict[str, Any]:
    response = web.post("/api/relay/setup", {"api_token": token, "account_id": CF_ACCOUNT, **extra})
    assert response.status_code == 200, response.data
    return _finish(web, response.get_json())


def _everything_written(web: Web, keyring: MemoryKeyring | None) -> str:
    paths = web.services.paths
    text = paths.settings_file.read_text()
    for file in paths.log_dir.rglob("*") if paths.log_dir.exists() else []:
        if file.is_file():
            text += file.read_text(errors="replace")
    assert keyring is not None
    return text + "\n".join(keyring.entries.values())


def test_relay_posts_need_the_csrf_token(signed_in: Web, cloudflare: FakeCloudflare) -> None:
    for url, body in (
        ("/api/relay/setup", {"api_token": CF_TOKEN, "account_id": CF_ACCOUNT}),
        ("/api/relay/disable", {"forget": True}),
        ("/api/relay/check", {}),
        ("/api/relay/forget", {}),
    ):
        response = signed_in.client.post(url, json=body)
        assert response.status_code == 403, url
        assert "CSRF" in response.get_json()["error"]
    assert cloudflare.requests == [] and cloudflare.scripts == {}


def test_deploy_from_the_page_turns_the_relay_on_and_never_keeps_the_token(
    signed_in: Web,
    cloudflare: FakeCloudflare,
    memory_keyring: MemoryKeyring | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    start = signed_in.post(
        "/api/relay/setup",
        {
            "api_token": CF_TOKEN,
            "account_id": CF_ACCOUNT,
            "storage": "durable_object",
            "transport": "websocket",
        },
    )
    assert start.status_code == 200
    seen = [start.get_data(as_text=True)]
    job = start.get_json()
    assert job["state"] == "running"
    job = _finish(signed_in, job)
    seen.append(str(job))
    assert job["state"] == "done", job
    assert job["result"]["url"] == "https://headway-relay.alice.workers.dev"
    assert "checking the API token" in job["steps"] and any(s.startswith("relay on:") for s in job["steps"])
    assert "The relay is on" in job["message"]

    script = cloudflare.scripts["headway-relay"]
    assert script.binding("RELAY_SESSION")["class_name"] == "RelaySession"
    settings = signed_in.services.store.current.relay
    assert settings.enabled and settings.url == job["result"]["url"] and settings.transport == "websocket"
    secret = signed_in.services.keychain.get(RELAY_SECRET)
    assert secret and script.binding("RELAY_TOKEN")["text"] == secret

    state = signed_in.get_json("/api/state")["relay"]
    seen.append(str(state))
    assert state["enabled"] is True and state["url"] == settings.url and state["secret_in_keychain"] is True
    assert state["transport"] == "websocket" and state["setup"]["state"] == "done"
    assert state["last_probe"]["ok"] is False  # nothing answers at workers.dev in a test
    assert secret not in str(state)
    page = signed_in.client.get("/").get_data(as_text=True)
    seen.append(page)
    assert 'id="relay-form"' in page and 'type="password" id="relay-token"' in page

    for text in seen:
        assert CF_TOKEN not in text
    assert CF_TOKEN not in caplog.text
    assert all(CF_TOKEN not in str(record.args) for record in caplog.records)
    assert CF_TOKEN not in _everything_written(signed_in, memory_keyring)


def test_a_bad_token_and_a_missing_permission_are_explained(
    signed_in: Web, cloudflare: FakeCloudflare, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "cf-wrong-token-" + "x" * 24
    job = _deploy(signed_in, bad)
    assert job["state"] == "failed" and job["error_kind"] == "invalid_token"
    assert "rejected this API token" in job["message"] and "Workers Scripts" in job["message"]
    assert bad not in str(job) and bad not in caplog.text

    job = _deploy(signed_in, NARROW_TOKEN)
    assert job["state"] == "failed" and job["error_kind"] == "missing_permission"
    assert "Workers Scripts · Edit" in job["message"]
    assert SCRIPTS_PERMISSION not in cloudflare.tokens[NARROW_TOKEN].permissions
    assert NARROW_TOKEN not in str(job) and NARROW_TOKEN not in caplog.text
    assert signed_in.services.store.current.relay.enabled is False

    missing = signed_in.post("/api/relay/setup", {"api_token": "  ", "account_id": ""})
    assert missing.status_code == 400
    assert set(missing.get_json()["problems"]) == {"api_token", "account_id"}
    odd = signed_in.post(
        "/api/relay/setup", {"api_token": CF_TOKEN, "account_id": CF_ACCOUNT, "storage": "disk"}
    )
    assert odd.status_code == 400 and "storage" in odd.get_json()["problems"]
    assert CF_TOKEN not in odd.get_data(as_text=True)


def test_a_message_that_would_echo_the_token_is_scrubbed(
    signed_in: Web, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def echoing(token: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["progress"](f"using {token}")
        raise RuntimeError(f"boom with {token}")

    monkeypatch.setattr(relay_view, "setup_relay", echoing)
    job = _deploy(signed_in, CF_TOKEN)
    assert job["state"] == "failed" and job["error_kind"] == "internal"
    assert job["steps"] == ["using [redacted]"]
    assert CF_TOKEN not in str(job) and CF_TOKEN not in caplog.text
    assert "boom with [redacted]" in caplog.text


def test_one_setup_at_a_time(signed_in: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        raise relay_view.RelaySetupError("stopped")

    monkeypatch.setattr(relay_view, "setup_relay", slow)
    first = signed_in.post("/api/relay/setup", {"api_token": CF_TOKEN, "account_id": CF_ACCOUNT})
    assert first.status_code == 200
    second = signed_in.post("/api/relay/setup", {"api_token": CF_TOKEN, "account_id": CF_ACCOUNT})
    assert second.status_code == 409 and "already running" in second.get_json()["error"]
    release.set()
    assert _finish(signed_in, first.get_json())["message"] == "stopped"
    assert signed_in.client.get("/api/relay/setup/nope").status_code == 404


def test_savings_come_from_the_engine_status(signed_in: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = signed_in.services.engine
    stats = {
        "enabled": True,
        "url": "https://headway-relay.alice.workers.dev",
        "transport": "http",
        "fallback_to_direct": True,
        "totals": {"requests": 3, "sent_bytes": 30_000, "body_bytes": 300_000, "saved_bytes": 270_000, "saved_percent": 90.0,
                   "full_syncs": 1, "patches": 2, "oneshots": 0, "resyncs": 0, "failures": 0},
        "sessions": [{"session_id": "ses_1", "requests": 3, "sent_bytes": 30_000, "body_bytes": 300_000, "saved_percent": 90.0}],
        "recent": [],
        "base_bodies": {"sessions": 1, "bytes": 120_000},
        "open_sockets": 0,
        "last_error": None,
    }  # fmt: skip
    real = engine.status
    monkeypatch.setattr(engine, "status", lambda: {**real(), "relay": stats})
    traffic = signed_in.get_json("/api/state")["relay"]["traffic"]
    assert traffic["totals"]["saved_percent"] == 90.0 and traffic["sessions"][0]["session_id"] == "ses_1"


def test_disable_and_forget(signed_in: Web, cloudflare: FakeCloudflare) -> None:
    assert _deploy(signed_in, CF_TOKEN)["state"] == "done"
    store, keychain = signed_in.services.store, signed_in.services.keychain

    assert signed_in.post("/api/relay/disable", {"forget": False}).get_json() == {"ok": True, "forgot": False}
    assert store.current.relay.enabled is False and store.current.relay.url is not None
    assert keychain.get(RELAY_SECRET)
    assert wait_until(lambda: signed_in.services.engine.status()["relay"]["enabled"] is False, timeout=5)

    assert signed_in.post("/api/relay/disable", {"forget": True}).get_json()["forgot"] is True
    assert store.current.relay.url is None and keychain.get(RELAY_SECRET) is None
    state = signed_in.get_json("/api/state")["relay"]
    assert state["url"] is None and state["secret_in_keychain"] is False and state["last_probe"] is None

    check = signed_in.post("/api/relay/check")
    assert check.status_code == 200 and check.get_json()["detail"] == "The relay is not set up."


def test_the_relay_addresses_stay_read_only(signed_in: Web) -> None:
    html = signed_in.client.get("/").get_data(as_text=True)
    for path in ("relay.url", "relay.worker_name", "relay.account_id", "relay.storage"):
        assert f'data-readonly="{path}"' in html and f'data-setting="{path}"' not in html
        response = signed_in.post("/api/settings", {"changes": {path: "x"}})
        assert response.status_code == 400
    assert 'data-setting="relay.enabled"' in html


def test_the_relay_cannot_be_switched_on_without_a_worker(signed_in: Web) -> None:
    store, keychain = signed_in.services.store, signed_in.services.keychain
    refused = signed_in.post("/api/settings", {"changes": {"relay.enabled": True}})
    assert refused.status_code == 400
    assert "not set up" in refused.get_json()["problems"]["relay.enabled"]
    assert (
        store.current.relay.enabled is False and signed_in.get_json("/api/state")["relay"]["enabled"] is False
    )

    store.update(lambda s: setattr(s.relay, "url", "https://headway-relay.alice.workers.dev"))
    refused = signed_in.post("/api/settings", {"changes": {"relay.enabled": "true"}})
    assert (
        refused.status_code == 400 and "secret is missing" in refused.get_json()["problems"]["relay.enabled"]
    )
    assert store.current.relay.enabled is False

    keychain.set(RELAY_SECRET, "relay-secret-" + "s" * 32)
    accepted = signed_in.post("/api/settings", {"changes": {"relay.enabled": True}})
    assert accepted.status_code == 200 and store.current.relay.enabled is True
    assert signed_in.post("/api/settings", {"changes": {"relay.enabled": False}}).status_code == 200
    assert store.current.relay.enabled is False


def test_the_page_says_when_the_workers_upstreams_are_out_of_date_and_forgets_through_the_worker(
    signed_in: Web, cloudflare: FakeCloudflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _deploy(signed_in, CF_TOKEN)["state"] == "done"
    state = signed_in.get_json("/api/state")["relay"]
    assert state["upstreams"] == [
        "https://api.anthropic.com",
        "https://api.openai.com",
        "https://chatgpt.com",
    ]
    assert state["upstreams_warning"] is None and state["ttl_hours"] == 24.0
    monkeypatch.setenv("HEADWAY_OPENAI_BASE_URL", "https://openai.proxy.corp")
    warning = signed_in.get_json("/api/state")["relay"]["upstreams_warning"]
    assert "out of date (missing https://openai.proxy.corp)" in warning and "headway relay setup" in warning
    html = signed_in.client.get("/").get_data(as_text=True)
    assert 'id="relay-forget-sessions"' in html and "relay.upstreams" not in html  # shown in the status card
    # The workers.dev address does not exist here: the page says the Worker could not be reached, nothing more.
    refused = signed_in.post("/api/relay/forget")
    assert refused.status_code == 502 and "not reachable" in refused.get_json()["error"]
