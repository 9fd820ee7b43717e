"""The settings page's Budgets and models section in real Chromium, against a `headway serve` subprocess: a budget
saved from the page is in force (the next request is refused once it is spent; the page and `headway status
[--json]` say "over budget");
aliases and routes saved from the page, a bad label refused with its key path and nothing lost."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from tests.e2e.test_settings_page_forms import headway, signed_in  # noqa: F401  (fixtures)
from tests.support.browser import ARTIFACTS, SignedInPage, screenshots, settings_json
from tests.support.gateway import GatewayProcess, run_cli, wait_until


def test_budgets_and_models_from_the_page(signed_in: SignedInPage, headway: GatewayProcess) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = signed_in.page
    page.get_by_role("link", name="Budgets and models", exact=True).click()
    row = page.locator('#budget-rows tr[data-account="main"]')
    expect(row).to_contain_text("no budget")

    row.get_by_label("Main: daily cap in USD").fill("0")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#budget-status")).to_contain_text("above 0")
    assert "budget" not in settings_json()["accounts"][0]

    row.get_by_label("Main: daily cap in USD").fill("0.000001")  # one request spends more than this
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#budget-status")).to_contain_text("Saved the budget of main")
    assert settings_json()["accounts"][0]["budget"] == {"daily_usd": 0.000001}

    with anthropic.Anthropic(base_url=headway.url, api_key=headway.key, max_retries=0) as client:
        ask: dict[str, Any] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        assert wait_until(
            lambda: client.messages.with_raw_response.create(**ask).status_code == 200, timeout=5
        )
        refused = client.messages.with_raw_response.create  # the next one is over budget
        try:
            refused(**ask)
        except anthropic.RateLimitError as exc:
            assert "daily budget $1e-06 reached" in str(exc) or "over budget" in str(exc)
        else:
            raise AssertionError("a request over budget was served")
        expect(row).to_contain_text("Over budget", timeout=10_000)
        expect(row).to_have_attribute("data-state", "over_budget")
        status = json.loads(run_cli("status", "--json").stdout)  # the CLI asks the running gateway
        main = next(a for a in status["accounts"] if a["id"] == "main")
        assert main["health"] == "over_budget" and main["budget"]["state"] == "over_budget"
        assert 0 < main["blocked_for_seconds"] <= 86400 + 3600
        assert status["summary"]["state"] == "exhausted"
        assert "over its budget, resets in" in run_cli("status").stdout

        editor = page.locator("#models-json")
        editor.fill(
            '{"aliases": {"fast": "claude-haiku-4-5"}, "routes": [{"match": "claude-opus-*", "accounts": ["Mian"]}]}'
        )
        page.get_by_role("button", name="Save aliases and routes").click()
        expect(page.locator("#models-status")).to_contain_text(
            "models.routes[0].accounts[0]: no account with the label"
        )
        assert settings_json().get("models", {}).get("routes", []) == []  # nothing saved
        editor.fill(
            '{"aliases": {"fast": "claude-haiku-4-5"}, "routes": [{"match": "claude-[opus", "accounts": ["Main"]}]}'
        )
        page.get_by_role("button", name="Save aliases and routes").click()
        expect(page.locator("#models-status")).to_contain_text("models.routes[0].match: invalid glob")
        editor.fill(
            '{"aliases": {"fast": "claude-haiku-4-5"}, "routes": [{"match": "claude-opus-*", "accounts": ["Main"]}]}'
        )
        page.get_by_role("button", name="Save aliases and routes").click()
        expect(page.locator("#models-status")).to_contain_text("Saved the aliases and routes")
        assert settings_json()["models"] == {
            "aliases": {"fast": "claude-haiku-4-5"},
            "routes": [{"match": "claude-opus-*", "accounts": ["Main"]}],
        }
        expect(page.locator("#serving-list")).to_contain_text("fast (claude-haiku-4-5): Main")
        expect(page.locator("#serving-list")).to_contain_text("claude-opus-*: Main")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#spend").screenshot(path=str(ARTIFACTS / "settings-budgets-and-models.png"))
        screenshots(page, "spend", "budgets-and-models", full=False)
        assert all("status of 400" in p or "status of 429" in p for p in signed_in.problems), (
            signed_in.problems
        )
