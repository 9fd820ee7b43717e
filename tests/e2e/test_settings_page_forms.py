"""The settings page's own forms and dialogs in real Chromium, against a `headway serve` subprocess.

What Flask's test client cannot see: the page's Sign out form post (under `Referrer-Policy: no-referrer` Chromium sent
`Origin: null` and the page refused it), Enter in the Rename / Replace key dialogs (it used to press Cancel, the
first submit button), and the relay switch without a Worker. One Chromium for the whole module; screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.config.paths import Paths
from tests.fakes import FakeAnthropic
from tests.support.browser import ARTIFACTS, SignedInPage, page_url, settings_json
from tests.support.gateway import (
    GatewayProcess,
    file_secrets_gateway_process,
    wait_until,
)

KEY = "sk-ant-api03-e2e-forms-" + "f" * 30
NEW_KEY = "sk-ant-api03-e2e-forms-new-" + "n" * 30


@pytest.fixture
def headway(headway_home: Path) -> Iterator[GatewayProcess]:
    with FakeAnthropic(valid_keys=[KEY, NEW_KEY]) as anthropic:
        env = {
            "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        with file_secrets_gateway_process(env, accounts=[("anthropic", "Main", KEY)]) as process:
            yield process


@pytest.fixture
def signed_in(browser: Any, headway: GatewayProcess) -> Iterator[SignedInPage]:
    watched = SignedInPage(browser, watch_refusals=True)
    try:
        yield watched
    finally:
        watched.close()


def _secrets() -> dict[str, str]:
    return dict(json.loads(Paths.from_env().secrets_file.read_text()))


def test_sign_out_in_chromium(signed_in: SignedInPage) -> None:
    from playwright.sync_api import expect

    page, base = signed_in.page, page_url()
    assert signed_in.context.cookies() != []
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/signed-out")
    expect(page.locator("h1")).to_have_text("You are signed out")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "settings-signed-out.png"))
    assert signed_in.context.cookies() == []
    assert page.evaluate("() => fetch('/api/state').then(r => r.status)") == 401
    response = page.goto(base + "/")
    assert response is not None and response.status == 401
    expect(page.locator("h1")).to_have_text("Open the settings from Headway")
    assert signed_in.problems == [] or all("401" in p for p in signed_in.problems), signed_in.problems


def test_enter_in_the_rename_and_replace_key_dialogs_submits_them(signed_in: SignedInPage) -> None:
    from playwright.sync_api import expect

    page = signed_in.page
    card = page.locator('#account-list [data-account="main"]')
    dialog = page.locator("#prompt-dialog")

    card.get_by_role("button", name="Rename Main").click()
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Label", exact=True).and_(page.locator("#prompt-input"))).to_be_focused()
    page.locator("#prompt-input").fill("Work")
    page.screenshot(path=str(ARTIFACTS / "settings-rename-dialog.png"))
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    assert wait_until(lambda: settings_json()["accounts"][0]["label"] == "Work", timeout=5)
    expect(card.locator(".account-top")).to_contain_text("Work", timeout=10_000)

    card.get_by_role("button", name="Replace the key of Work").click()
    expect(dialog).to_be_visible()
    page.locator("#prompt-input").fill(NEW_KEY)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    assert wait_until(lambda: _secrets().get("account:main") == NEW_KEY, timeout=5)

    # Escape and the Cancel button still cancel, and change nothing.
    card.get_by_role("button", name="Rename Work").click()
    page.locator("#prompt-input").fill("Not this")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    card.get_by_role("button", name="Rename Work").click()
    page.locator("#prompt-input").fill("Nor this")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    assert settings_json()["accounts"][0]["label"] == "Work"
    assert signed_in.problems == [], signed_in.problems


def test_the_relay_switch_without_a_worker_is_refused_and_says_why(signed_in: SignedInPage) -> None:
    from playwright.sync_api import expect

    page = signed_in.page
    page.get_by_role("link", name="Relay", exact=True).click()
    switch = page.get_by_label("Use the relay")
    expect(switch).not_to_be_checked()
    switch.click()  # not check(): the page puts the switch back as soon as the refusal arrives
    status = page.locator("#setting-relay-enabled-status")
    expect(status).to_contain_text("not set up yet")
    expect(switch).not_to_be_checked()
    expect(page.locator("#relay-pill")).to_have_text("Not set up")
    page.locator("#relay-settings, #setting-relay-enabled").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "settings-relay-refused.png"))
    page.wait_for_timeout(2500)  # a poll later, the page still says the relay is not set up
    expect(page.locator("#relay-pill")).to_have_text("Not set up")
    expect(switch).not_to_be_checked()
    assert settings_json().get("relay", {}).get("enabled", False) is False
    assert all("status of 400" in p for p in signed_in.problems), signed_in.problems  # the refusal itself


def test_a_secret_form_submitted_without_the_script_never_puts_the_secret_in_an_address(
    signed_in: SignedInPage,
) -> None:
    """The API key and Cloudflare token forms are sent by the page's script; if it ever did not run, the browser's own
    submission is a POST (the secret stays out of the address bar and history) and is refused for want of a token."""
    from playwright.sync_api import expect

    page, base = signed_in.page, page_url()
    forms = page.evaluate("() => Array.from(document.forms).map(f => [f.id || f.className, f.method])")
    assert all(method in ("post", "dialog") for _, method in forms), forms
    page.get_by_role("tab", name="API key").click()
    page.get_by_role("textbox", name="API key").fill(NEW_KEY)
    page.get_by_label("Label", exact=True).fill("Sneaky")
    with page.expect_navigation():
        page.evaluate(
            "() => document.getElementById('apikey-form').submit()"
        )  # submit() skips the script's handler
    assert NEW_KEY not in page.url and page.url.startswith(base)
    expect(page.locator("h1")).to_have_text("Refused")
    assert [a["id"] for a in settings_json()["accounts"]] == ["main"]
