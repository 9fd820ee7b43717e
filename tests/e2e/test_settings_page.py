"""The settings page for real: Chromium (Playwright) against the page a `headway serve` subprocess serves.

Signs in with the one-time link `headway settings --print-url` mints, adds API keys and a ChatGPT account (device
code, against the fake issuer), toggles dumps and checks the settings file and the engine both changed, edits the
settings file and the CLI behind the page's back and watches the page follow without a reload, checks the refusals
(a foreign Host through a DNS-rebinding-style name, a missing CSRF token, a cross-site form post, no cookie), and
saves screenshots of every section in light and dark, at desktop and phone widths, to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.paths import Paths
from proxy.features.request_log import RequestLog, RequestRecord
from proxy.wire.usage import Usage
from tests.fakes import (
    Behavior,
    FakeAnthropic,
    FakeOpenAI,
    FakeOpenAIAuth,
    anthropic_ratelimit_headers,
    openai_ratelimit_headers,
)
from tests.fakes.codex import FakeCodex
from tests.support.browser import (
    ARTIFACTS,
    free_port,
    login_url,
    page_url,
    screenshots,
    settings_json,
    unlabeled_controls,
)
from tests.support.gateway import (
    GatewayProcess,
    file_secrets_gateway_process,
    run_cli,
    wait_until,
)

WORK_KEY = "sk-ant-api03-e2e-work-" + "w" * 30
PERSONAL_KEY = "sk-ant-api03-e2e-personal-" + "p" * 30
TEAM_KEY = "sk-proj-e2e-team-" + "t" * 30


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    anthropic_headers = anthropic_ratelimit_headers(
        requests_limit=50, requests_remaining=41, tokens_limit=400_000, tokens_remaining=262_000, reset_in=45
    )
    with (
        FakeAnthropic(
            default=Behavior(headers=anthropic_headers), valid_keys=[WORK_KEY, PERSONAL_KEY]
        ) as anthropic,
        FakeOpenAI(
            default=Behavior(
                headers=openai_ratelimit_headers(requests_remaining=480, tokens_remaining=150_000)
            ),
            valid_keys=[TEAM_KEY],
        ) as openai,
        FakeOpenAIAuth() as auth,
    ):
        with FakeCodex(auth=auth) as codex:
            yield {"anthropic": anthropic, "openai": openai, "auth": auth, "codex": codex}


@pytest.fixture
def headway(fakes: dict[str, Any], headway_home: Path) -> Iterator[GatewayProcess]:
    env = {
        "HEADWAY_ANTHROPIC_BASE_URL": fakes["anthropic"].url,
        "HEADWAY_OPENAI_BASE_URL": fakes["openai"].url,
        "HEADWAY_CHATGPT_BASE_URL": fakes["codex"].url,
        "HEADWAY_OPENAI_AUTH_URL": fakes["auth"].url,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "HEADWAY_OAUTH_CALLBACK_PORT": str(free_port()),  # the real 1455 may be taken on this machine
    }
    with file_secrets_gateway_process(env) as process:  # no OS keychain in tests
        yield process


def _edit_settings(fn: Any) -> None:
    path = Paths.from_env().settings_file
    data = json.loads(path.read_text())
    fn(data)
    tmp = path.with_name("edit.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _send(headway: GatewayProcess, family: str) -> httpx.Response:
    if family == "anthropic":
        return httpx.post(
            f"{headway.url}/v1/messages",
            headers={"x-api-key": headway.key, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "hello"}],
            },
            timeout=20,
        )
    return httpx.post(
        f"{headway.url}/v1/responses",
        headers={"authorization": f"Bearer {headway.key}"},
        json={"model": "gpt-5", "input": "hello"},
        timeout=20,
    )


def _seed_history() -> None:
    """A week of earlier requests, written to the request log as another writer would."""
    log = RequestLog(Paths.from_env().request_log)
    log.start()
    now = time.time()
    plan = {
        "work": (WORK_KEY, "Work", 0.9),
        "personal": (PERSONAL_KEY, "Personal", 0.35),
        "team": (TEAM_KEY, "Team", 0.5),
    }
    for day in range(1, 7):
        for account, (_, label, scale) in plan.items():
            for i in range(2 + (day * 3 + len(account)) % 5):
                log.record(
                    RequestRecord(
                        ts=now - day * 86400 - i * 600,
                        route="/v1/messages" if account != "team" else "/v1/responses",
                        family="anthropic" if account != "team" else "openai",
                        account_id=account,
                        account_label=label,
                        model="claude-sonnet-4-5" if account != "team" else "gpt-5",
                        status=200,
                        latency_ms=900,
                        usage=Usage(
                            input_tokens=1200 * (1 + day % 3), output_tokens=400, cache_read_tokens=9000
                        ),
                        cost_usd=round(scale * (0.04 + 0.01 * ((day + i) % 4)), 4),
                        fallback_chain=[f"{account}:200"],
                    )
                )
    assert log.flush(5)
    log.stop(5)


def test_settings_page_end_to_end(browser: Any, headway: GatewayProcess, fakes: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    paths = Paths.from_env()
    base = page_url()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    # ---- sign in with the one-time link; the token leaves the address bar at once
    login = login_url()
    page.goto(login)
    expect(page).to_have_url(base + "/")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.locator("#gateway-chip")).to_have_attribute("data-state", "ok")
    cookies = context.cookies()
    assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]
    other = browser.new_context()
    reused = other.new_page()
    reused.goto(login)
    expect(reused.locator("h1")).to_have_text("This sign-in link has expired")
    other.close()

    # ---- add API keys through the page
    page.get_by_role("tab", name="API key").click()
    for provider, label, key in (
        ("anthropic", "Work", WORK_KEY),
        ("anthropic", "Personal", PERSONAL_KEY),
        ("openai", "Team", TEAM_KEY),
    ):
        page.get_by_label("Provider").select_option(provider)
        page.get_by_label("Label", exact=True).fill(label)
        page.get_by_role("textbox", name="API key").fill(key)
        page.get_by_role("button", name="Add account").click()
        expect(page.locator("#apikey-status")).to_have_text(f"Added {label}.")
        expect(page.locator(f'#account-list [data-account="{label.lower()}"]')).to_be_visible()
    assert [a["id"] for a in settings_json()["accounts"]] == ["work", "personal", "team"]
    secrets = json.loads(paths.secrets_file.read_text())
    assert secrets["account:work"] == WORK_KEY and secrets["account:team"] == TEAM_KEY
    expect(page.locator('[data-account="work"] .account-info')).to_contain_text("sk-ant-api03-…wwww")
    for key in (WORK_KEY, PERSONAL_KEY, TEAM_KEY):
        assert key not in page.content()

    # ---- dumps: the switch writes the settings file, and the engine starts dumping
    dumps_switch = page.get_by_label("Write request dumps")
    expect(dumps_switch).not_to_be_checked()
    dumps_switch.check()
    assert wait_until(lambda: settings_json()["dumps"]["enabled"] is True, timeout=5)
    expect(page.locator("#setting-dumps-enabled-status")).to_have_text("Saved")
    assert wait_until(
        lambda: (
            _send(headway, "anthropic").status_code == 200 and any(paths.dumps_dir.glob("*.request.json"))
        ),
        timeout=10,
    )
    expect(page.locator("#dumps-size")).to_contain_text("dump", timeout=10_000)
    expect(page.locator("#dumps-folder")).to_have_text(str(paths.dumps_dir))

    # ---- changes made elsewhere appear without a reload
    page.evaluate("() => { window.__noReload = 'still here'; }")
    _edit_settings(
        lambda d: d.setdefault("routing", {}).update({"mode": "sticky", "min_remaining_percent": 12.5})
    )
    expect(page.get_by_label("Routing mode")).to_have_value("sticky", timeout=10_000)
    expect(page.get_by_label("Skip an account below this quota left (%)")).to_have_value("12.5")
    disabled = run_cli("accounts", "disable", "personal")
    assert disabled.returncode == 0, disabled.stderr
    expect(page.locator('[data-account="personal"] .account-top .pill')).to_have_text(
        "Disabled", timeout=10_000
    )
    _edit_settings(lambda d: d["routing"].update({"mode": "bogus"}))
    expect(page.locator("#settings-error")).to_be_visible(timeout=10_000)
    expect(page.locator("#settings-error-list")).to_contain_text("routing.mode")
    _edit_settings(lambda d: d["routing"].update({"mode": "main-first"}))
    expect(page.locator("#settings-error")).to_be_hidden(timeout=10_000)
    assert page.evaluate("() => window.__noReload") == "still here"

    # ---- enable again from the page; reorder with the keyboard-usable buttons
    page.get_by_role("switch", name="Personal enabled").check()
    assert wait_until(lambda: settings_json()["accounts"][1].get("enabled", True) is True, timeout=5)
    page.get_by_role("button", name="Move Personal up").click()
    assert wait_until(
        lambda: [a["id"] for a in settings_json()["accounts"]] == ["personal", "work", "team"], timeout=5
    )
    page.get_by_role("button", name="Move Work up").click()
    assert wait_until(
        lambda: [a["id"] for a in settings_json()["accounts"]] == ["work", "personal", "team"], timeout=5
    )

    # ---- a ChatGPT account through the device-code flow
    page.get_by_role("tab", name="ChatGPT subscription").click()
    fakes["auth"].next_login("acct-plus", email="me@example.com", plan_type="plus")
    page.get_by_label("Label (optional)").fill("ChatGPT Plus")
    page.get_by_role("button", name="Use a code on another device").click()
    code = page.locator("#login-flow-code")
    expect(code).to_have_text(re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{5}$"))
    fakes["auth"].approve_device(code.inner_text())
    expect(page.locator("#login-flow-message")).to_contain_text(
        "signed in as me@example.com", ignore_case=True, timeout=15_000
    )
    expect(page.locator('#account-list [data-account="chatgpt-plus"]')).to_be_visible()
    # ... and one through the browser sign-in: a new tab on the issuer, back through the callback on localhost
    fakes["auth"].next_login("acct-pro", email="pro@example.com", plan_type="pro")
    page.get_by_label("Label (optional)").fill("ChatGPT Pro")
    with page.expect_popup() as opened:
        page.get_by_role("button", name="Sign in with the browser").click()
    popup = opened.value
    expect(popup.locator("h1")).to_have_text("Sign in to Codex", timeout=10_000)
    popup.get_by_role("button", name="Continue").click()
    expect(popup.locator("h1")).to_have_text("Signed in to ChatGPT", timeout=10_000)
    popup.close()
    expect(page.locator("#login-flow-message")).to_contain_text(
        "signed in as pro@example.com", ignore_case=True, timeout=15_000
    )
    expect(page.locator('#account-list [data-account="chatgpt-pro"]')).to_be_visible()
    pro = next(a for a in settings_json()["accounts"] if a["id"] == "chatgpt-pro")
    assert pro["chatgpt_account_id"] == "acct-pro" and pro["plan_type"] == "pro"
    page.locator('[data-account="chatgpt-pro"]').get_by_role("button", name="Remove ChatGPT Pro").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.locator('#account-list [data-account="chatgpt-pro"]')).to_have_count(0, timeout=10_000)
    assert "account:chatgpt-pro" not in json.loads(paths.secrets_file.read_text())

    fakes["codex"].set_usage(
        "acct-plus",
        primary_used=38,
        secondary_used=71,
        primary_resets_in=2 * 3600 + 840,
        secondary_resets_in=3 * 86400 + 7200,
    )
    page.get_by_role("button", name="Refresh quota").click()
    expect(page.locator('#quota-list [data-account="chatgpt-plus"] .window-row')).to_have_count(
        2, timeout=10_000
    )

    # ---- traffic: quota windows, a fallback and a cooldown, and a week of history for the chart
    fakes["anthropic"].enqueue(Behavior(status=429, retry_after=600))
    assert _send(headway, "anthropic").status_code == 200  # work → 429 → personal
    assert _send(headway, "openai").status_code == 200
    _seed_history()
    expect(page.locator('[data-account="work"] .account-top .pill')).to_contain_text(
        "Cooling down", timeout=10_000
    )
    expect(page.locator("#fallback-list li")).to_have_count(1, timeout=10_000)
    expect(page.locator("#fallback-list")).to_contain_text("Work 429")
    expect(page.locator("#usage-chart svg rect.chart-bar").first).to_be_visible(timeout=15_000)
    expect(page.locator('#quota-list [data-account="work"] .window-row').first).to_be_visible()

    # ---- connect an agent: snippet masked, copy reveals only through a POST
    expect(page.locator('.agent-panel[data-agent="opencode"] [data-role="snippet"]')).to_contain_text(
        "127.0.0.1"
    )
    assert headway.key not in page.content()

    # ---- every control has a label; the page's own script never broke the CSP
    assert unlabeled_controls(page) == []
    page.wait_for_timeout(500)
    assert problems == [], problems

    # ---- screenshots: desktop and phone widths
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("() => window.scrollTo({top: 0, behavior: 'instant'})")
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / "settings-desktop.png"))
    page.screenshot(path=str(ARTIFACTS / "settings-desktop-full.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("() => window.scrollTo({top: 0, behavior: 'instant'})")
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / "settings-narrow.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    # every section with this run's data, light and dark, desktop and phone (nothing sticks out sideways)
    for section in ("overview", "accounts", "routing", "caching", "debugging", "health", "connect"):
        screenshots(page, section, f"tour-{section}", full=section == "overview")
    assert problems == [], problems
    context.close()


def test_refusals_in_a_real_browser(browser: Any, headway: GatewayProcess, fakes: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    base = page_url()
    port = base.rsplit(":", 1)[1]

    # a page whose name resolves here (DNS rebinding): the Host check refuses it before anything else
    rebinding = browser.new_page()
    response = rebinding.goto(f"http://evil.test:{port}/")
    assert response is not None and response.status == 403
    expect(rebinding.locator("body")).to_contain_text("only answers to 127.0.0.1")
    assert httpx.get(f"{base}/api/state", headers={"Host": "evil.test"}, timeout=5).status_code == 403

    # no cookie: the page explains how to sign in; the API says 401
    anonymous = browser.new_context().new_page()
    response = anonymous.goto(base + "/")
    assert response is not None and response.status == 401
    expect(anonymous.locator("h1")).to_have_text("Open the settings from Headway")
    assert anonymous.evaluate("() => fetch('/api/state').then(r => r.status)") == 401

    # signed in, but a state change without the CSRF token is refused
    context = browser.new_context()
    page = context.new_page()
    page.goto(login_url())
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    status = page.evaluate(
        """() => fetch('/api/settings', {method: 'POST', headers: {'Content-Type': 'application/json'},
                   body: JSON.stringify({changes: {'dumps.enabled': true}})}).then(r => r.status)"""
    )
    assert status == 403
    assert settings_json().get("dumps", {}).get("enabled", False) is False

    # a cross-site page posting a form at the settings page, in the signed-in browser
    attacker = context.new_page()
    elsewhere = fakes["anthropic"].url.rsplit(":", 1)[1]
    attacker.goto(f"http://attacker.test:{elsewhere}/")  # any page on another site (here: a 404 of the fake)
    attacker.evaluate(
        """(target) => {
            const form = document.createElement('form');
            form.method = 'POST';
            form.action = target;
            const field = document.createElement('input');
            field.name = 'changes';
            field.value = 'x';
            form.append(field);
            document.body.append(form);
            form.submit();
        }""",
        f"{base}/api/settings",
    )
    attacker.wait_for_load_state()
    expect(attacker.locator("body")).to_contain_text("other sites")
    assert settings_json().get("dumps", {}).get("enabled", False) is False
    context.close()
