"""ChatGPT sign-in from the page (web_ui/views/chatgpt.py): the browser flow through the callback, the device flow,
cancel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fakes.openai_auth import FakeOpenAIAuth
from tests.support.gateway import wait_until
from tests.web_ui.conftest import Web
from web_ui.callback import CallbackServer
from web_ui.views.chatgpt import LoginFlows


@pytest.fixture
def auth() -> Iterator[FakeOpenAIAuth]:
    with FakeOpenAIAuth() as fake:
        yield fake


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
    page = httpx.get(
        f"http://127.0.0.1:{callback.port}{callback.path}?{callback.query}",
        headers={"Host": f"localhost:{callback.port}"},
        timeout=15,
    )
    assert page.status_code == 200 and "Signed in" in page.text
    assert wait_until(
        lambda: signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")["state"] == "done", timeout=10
    )
    done = signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")
    assert "me@example.com" in done["message"] and done["account"]["label"] == "personal"
    account = signed_in.services.store.current.accounts[-1]
    assert (
        account.kind == "chatgpt" and account.chatgpt_account_id == "acct-123" and account.plan_type == "pro"
    )
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
    assert wait_until(
        lambda: signed_in.get_json(f"/api/chatgpt/logins/{flow['id']}")["state"] == "done", timeout=10
    )
    assert any(a.chatgpt_account_id == "acct-dev" for a in signed_in.services.store.current.accounts)

    pending = signed_in.post("/api/chatgpt/device-login", {}).get_json()
    cancelled = signed_in.post(f"/api/chatgpt/logins/{pending['id']}/cancel").get_json()
    assert cancelled["id"] == pending["id"]
    assert wait_until(
        lambda: signed_in.get_json(f"/api/chatgpt/logins/{pending['id']}")["state"] == "cancelled", timeout=10
    )
    auth.device_code_enabled = False
    refused = signed_in.post("/api/chatgpt/device-login", {})
    assert refused.status_code == 409 and "device login is not enabled" in refused.get_json()["error"]
    flows.stop()
