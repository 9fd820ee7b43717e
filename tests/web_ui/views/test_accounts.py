"""Accounts on the page (web_ui/views/accounts.py): add, key, edit, order, remove; labels stay unique."""

from __future__ import annotations

import httpx

from proxy.secrets.keychain import account_secret_name
from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web


def test_account_management_end_to_end(signed_in: Web) -> None:
    keychain = signed_in.services.keychain
    store = signed_in.services.store
    for label, provider, key in (
        ("Work", "anthropic", "sk-ant-api03-" + "a" * 40),
        ("Home", "anthropic", "sk-ant-api03-" + "b" * 40),
        ("OA", "openai", "sk-" + "c" * 40),
    ):
        response = signed_in.post("/api/accounts", {"provider": provider, "label": label, "api_key": key})
        assert response.status_code == 200, response.get_json()
    assert [a.id for a in store.current.accounts] == ["work", "home", "oa"]
    assert keychain.get(account_secret_name("home")) == "sk-ant-api03-" + "b" * 40

    warning = signed_in.post(
        "/api/accounts", {"provider": "anthropic", "label": "odd", "api_key": "not-a-real-key"}
    ).get_json()
    assert "does not look like" in warning["warning"]
    assert (
        signed_in.post("/api/accounts", {"provider": "anthropic", "label": "", "api_key": "x"}).status_code
        == 400
    )

    assert (
        signed_in.post("/api/accounts/home/key", {"api_key": "sk-ant-api03-" + "z" * 40}).status_code == 200
    )
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
    assert [(a["id"], a["health"]) for a in state["accounts"]][:2] == [
        ("oa", "healthy"),
        ("home", "disabled"),
    ]

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
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert upstream.requests[-1].headers["x-api-key"] == key


def test_a_relabel_to_a_label_in_use_is_refused(signed_in: Web) -> None:
    """Issue 10.13: labels are unique (case-insensitive) on the page as in the CLI."""
    for label, key in (("Work", "sk-ant-api03-" + "a" * 40), ("Home", "sk-ant-api03-" + "b" * 40)):
        assert (
            signed_in.post(
                "/api/accounts", {"provider": "anthropic", "label": label, "api_key": key}
            ).status_code
            == 200
        )
    again = signed_in.post("/api/accounts", {"provider": "anthropic", "label": "WORK", "api_key": "sk-ant-x"})
    assert again.status_code == 400 and "already exists" in again.get_json()["error"]
    before = signed_in.services.paths.settings_file.read_text()
    response = signed_in.post("/api/accounts/home", {"label": " work "})
    assert response.status_code == 400
    assert "already exists" in response.get_json()["problems"]["label"]
    assert signed_in.services.paths.settings_file.read_text() == before
    assert (
        signed_in.post("/api/accounts/home", {"label": "HOME"}).status_code == 200
    )  # its own label, recased
