"""The browser sign-in for real: `headway login chatgpt --no-browser` in a subprocess, driven in Chromium.

Chromium opens the printed authorize URL on FakeOpenAIAuth, clicks its "Continue" button, follows the redirect to
Headway's callback on localhost, and must land on the success page while the CLI saves the account.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import TokenSet
from proxy.config.paths import Paths
from proxy.secrets.keychain import account_secret_name
from tests.fakes.openai_auth import FakeOpenAIAuth
from tests.support.browser import ARTIFACTS, free_port
from tests.tray.cli.test_login import Running

AUTHORIZE_LINE = re.compile(r"^(http://127\.0\.0\.1:\d+/oauth/authorize\?\S+)$")


@pytest.fixture
def auth() -> Iterator[FakeOpenAIAuth]:
    with FakeOpenAIAuth() as fake:
        fake.next_login("acct-browser", plan_type="pro", email="browser@example.com")
        yield fake


@pytest.fixture
def paths(headway_home: Path) -> Paths:
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))  # no OS keychain needed
    return paths


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def env(auth: FakeOpenAIAuth, paths: Paths, port: int) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(
        {
            "HEADWAY_OPENAI_AUTH_URL": auth.url,
            "HEADWAY_OAUTH_CALLBACK_PORT": str(port),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return environ


@contextmanager
def signing_in(env: dict[str, str], *args: str) -> Iterator[tuple[Running, str]]:
    """`headway login chatgpt --no-browser ARGS` running, and the authorize URL it printed; killed (and its output
    read) if the block fails."""
    login = Running([sys.executable, "-m", "tray", "login", "chatgpt", "--no-browser", *args], env)
    try:
        yield login, login.expect(AUTHORIZE_LINE).group(1)
    except BaseException:
        login.proc.kill()
        login.finish()
        raise


def test_browser_login_in_chromium(
    browser: Any, auth: FakeOpenAIAuth, paths: Paths, port: int, env: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    with signing_in(env, "--label", "Browser") as (login, url):
        assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{port}%2Fauth%2Fcallback" in url
        page = browser.new_page()
        try:
            page.goto(url)
            expect(page.locator("h1")).to_have_text("Sign in to Codex")
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(re.compile(rf"^http://localhost:{port}/auth/callback\?"))
            expect(page.locator("h1")).to_have_text("Signed in to ChatGPT")
            expect(page.locator("#message")).to_have_text(
                "Headway signed in as browser@example.com (plan pro)."
            )
            expect(page.locator("main")).to_contain_text("You can close this tab and return to Headway.")
            assert page.title() == "Signed in to ChatGPT — Headway"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chatgpt-browser-login-success.png"))
        finally:
            page.close()

    code, out, err = login.finish()
    assert code == 0, err
    lines = out.splitlines()
    assert "signed in as browser@example.com (plan pro) — account browser added" in lines, out
    assert lines[-1].startswith("Order: #1 of"), out  # where the account sits, and how to change it

    settings = json.loads(paths.settings_file.read_text())
    assert [(a["id"], a["label"], a["chatgpt_account_id"]) for a in settings["accounts"]] == [
        ("browser", "Browser", "acct-browser")
    ]
    secrets = json.loads(paths.secrets_file.read_text())
    tokens = TokenSet.from_json(secrets[account_secret_name("browser")])
    assert tokens.account_id == "acct-browser"
    assert tokens.refresh_token not in paths.settings_file.read_text()
    assert auth.code_exchanges == 1


def test_browser_login_refused_in_chromium(
    browser: Any, auth: FakeOpenAIAuth, paths: Paths, env: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    auth.login_error = "access_denied"
    with signing_in(env) as (login, url):
        page = browser.new_page()
        try:
            page.goto(url)  # the issuer refuses at once: 302 to the callback with error=access_denied
            expect(page.locator("h1")).to_have_text("Sign-in failed")
            expect(page.locator("#message")).to_contain_text("access_denied")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chatgpt-browser-login-refused.png"))
        finally:
            page.close()
    code, _, err = login.finish()
    assert code == 1
    assert "Error: the sign-in was refused (access_denied)" in err
    assert json.loads(paths.settings_file.read_text()).get("accounts", []) == []
    assert not paths.secrets_file.exists() or json.loads(paths.secrets_file.read_text()) == {}
