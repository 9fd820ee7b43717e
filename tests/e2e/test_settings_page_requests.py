"""The page's health surfaces in real Chromium against `headway serve`: the first-run checklist, the accounts in two
pools with per-pool order, the Test button, quota freshness and "Refresh quota", one account's history, and the
request log viewer (agent from the User-Agent, filters, fallbacks and why, the dump of a request) — each in light and
dark, at desktop and phone widths, with screenshots in test-artifacts/; primary buttons keep 4.5:1 contrast, and the
cache chart follows the dark theme."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import (
    Behavior,
    FakeAnthropic,
    FakeOpenAI,
    anthropic_ratelimit_headers,
    openai_ratelimit_headers,
)
from tests.support.browser import SignedInPage, screenshots, settings_json, show, unlabeled_controls
from tests.support.gateway import (
    GatewayProcess,
    add_account_with_cli,
    file_secrets_gateway_process,
    run_cli,
    wait_until,
)

WORK = "sk-ant-api03-e2e-req-work-" + "w" * 30
PERSONAL = "sk-ant-api03-e2e-req-personal-" + "p" * 30
TEAM = "sk-proj-e2e-req-team-" + "t" * 30
CLAUDE = "claude-cli/2.1.330 (external, cli)"
OPENCODE = "opencode/1.18.33 ai-sdk/provider-utils/4.0.46 runtime/bun/1.3.14"


@pytest.fixture
def upstreams() -> Iterator[dict[str, Any]]:
    with (
        FakeAnthropic(
            default=Behavior(
                headers=anthropic_ratelimit_headers(
                    requests_remaining=37, tokens_remaining=250_000, reset_in=50
                )
            ),
            valid_keys=[WORK, PERSONAL],
        ) as anthropic,
        FakeOpenAI(
            default=Behavior(headers=openai_ratelimit_headers(requests_remaining=420)), valid_keys=[TEAM]
        ) as openai,
    ):
        yield {"anthropic": anthropic, "openai": openai}


@pytest.fixture
def env(upstreams: dict[str, Any]) -> dict[str, str]:
    return {
        "HEADWAY_ANTHROPIC_BASE_URL": upstreams["anthropic"].url,
        "HEADWAY_OPENAI_BASE_URL": upstreams["openai"].url,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }


@pytest.fixture
def headway(env: dict[str, str], headway_home: Path) -> Iterator[GatewayProcess]:
    with file_secrets_gateway_process(env, {"dumps": {"enabled": True}}) as process:
        yield process


def _send(headway: GatewayProcess, agent: str, session: str, family: str = "anthropic") -> httpx.Response:
    if family == "anthropic":
        return httpx.post(
            f"{headway.url}/v1/messages",
            headers={
                "x-api-key": headway.key,
                "anthropic-version": "2023-06-01",
                "user-agent": agent,
                "x-claude-code-session-id": session,
            },
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=20,
        )
    return httpx.post(
        f"{headway.url}/v1/responses",
        headers={"authorization": f"Bearer {headway.key}", "user-agent": agent, "x-session-id": session},
        json={"model": "gpt-5", "input": "hello"},
        timeout=20,
    )


def _serving(headway: GatewayProcess, *labels: str) -> None:
    """Wait until the running gateway serves the accounts just added from the CLI (it reloads the settings file
    within a moment; a request before that finds no account)."""

    def seen() -> bool:
        answer = httpx.get(f"{headway.url}/status", headers={"x-api-key": headway.key}, timeout=5)
        return answer.status_code == 200 and set(labels) <= {
            a.get("label") for a in answer.json()["accounts"]
        }

    assert wait_until(seen, timeout=10), f"the gateway did not pick up {labels}"


def _contrast(page: Any, selector: str) -> float:
    """WCAG contrast of an element's text colour against its background colour, as the browser computed them."""
    return float(
        page.evaluate(
            """(selector) => {
                const node = document.querySelector(selector);
                const style = getComputedStyle(node);
                const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
                const lum = ([r, g, b]) => {
                    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
                };
                const [a, b] = [lum(rgb(style.color)), lum(rgb(style.backgroundColor))].sort((x, y) => y - x);
                return (a + 0.05) / (b + 0.05);
            }""",
            selector,
        )
    )


def test_health_surfaces_of_the_page(
    browser: Any, headway: GatewayProcess, env: dict[str, str], upstreams: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    signed = SignedInPage(browser)
    page = signed.page

    # ---- a first run: the checklist, nothing done yet
    checklist = page.locator("#first-run")
    expect(checklist).to_be_visible()
    expect(checklist.locator('[data-done="true"]')).to_have_count(0)
    screenshots(page, "overview", "first-run")

    # ---- accounts added (from the CLI: the page follows); two pools, each with its own order
    add_account_with_cli("anthropic", "Work", WORK, env=env)
    add_account_with_cli("openai", "Team", TEAM, env=env)
    add_account_with_cli("anthropic", "Personal", PERSONAL, env=env)
    expect(checklist.locator('[data-step="account"]')).to_have_attribute("data-done", "true", timeout=10_000)
    anthropic_pool = page.locator('.pool[data-family="anthropic"]')
    openai_pool = page.locator('.pool[data-family="openai"]')
    expect(anthropic_pool.locator(".account-card")).to_have_count(2)
    expect(openai_pool.locator(".account-card")).to_have_count(1)
    expect(anthropic_pool.locator(".account-rank")).to_have_text(["1", "2"])
    expect(openai_pool.locator(".account-rank")).to_have_text(["1"])
    expect(page.get_by_role("button", name="Move Team up")).to_be_disabled()  # alone in its pool
    expect(page.get_by_role("button", name="Move Work down")).to_be_enabled()
    page.get_by_role("button", name="Move Personal up").click()
    assert wait_until(
        lambda: [a["id"] for a in settings_json()["accounts"]][:2] == ["personal", "work"], timeout=5
    )
    expect(anthropic_pool.locator(".account-title")).to_have_text(["Personal", "Work"], timeout=10_000)
    page.get_by_role("button", name="Move Work up").click()
    expect(anthropic_pool.locator(".account-title")).to_have_text(["Work", "Personal"], timeout=10_000)
    assert [a["id"] for a in settings_json()["accounts"] if a["kind"] == "anthropic-api-key"] == [
        "work",
        "personal",
    ]

    # ---- agent traffic: two agents, a fallback; dumps are on
    upstreams["anthropic"].enqueue(Behavior(status=429, retry_after=600))
    assert _send(headway, CLAUDE, "ses-claude").status_code == 200  # Work 429 → Personal
    assert _send(headway, OPENCODE, "ses-open", family="openai").status_code == 200
    assert _send(headway, OPENCODE, "ses-open", family="openai").status_code == 200
    expect(checklist).to_be_hidden(timeout=10_000)  # all three steps done

    # ---- Test: one request on exactly that account, result and latency shown; a blocked one is not sent
    page.get_by_role("button", name="Test Team").click()
    team_result = openai_pool.locator(".test-result")
    expect(team_result).to_contain_text(
        "Works: gpt-5 answered in", timeout=15_000
    )  # the model Team served last
    expect(team_result).to_contain_text(" ms")
    assert upstreams["openai"].last_request.headers["authorization"] == f"Bearer {TEAM}"
    page.get_by_role("button", name="Test Work").click()
    expect(page.locator('[data-account="work"] .test-result')).to_contain_text("Not tested:", timeout=15_000)
    upstreams["anthropic"].enqueue(
        Behavior(status=401, error_type="authentication_error", error_message="bad key")
    )
    page.get_by_role("button", name="Test Personal").click()
    personal_result = page.locator('[data-account="personal"] .test-result')
    expect(personal_result).to_contain_text("Failed", timeout=15_000)
    expect(personal_result).to_have_class("test-result error")
    screenshots(page, "accounts", "accounts-pools")

    # ---- quota: last updated, and Refresh quota says what happened
    work_quota = page.locator('#quota-list [data-account="personal"]')
    expect(work_quota.locator(".quota-updated")).to_contain_text("Updated", timeout=10_000)
    expect(page.locator("#quota-list .quota-pool")).to_have_text(["Anthropic pool", "OpenAI pool"])
    page.get_by_role("button", name="Refresh quota").click()
    expect(page.locator("#refresh-quota-status")).to_contain_text("API-key quotas update with every request")
    gap = page.evaluate(
        """() => document.querySelector("#quota-list").getBoundingClientRect().top
            - document.querySelector("#refresh-quota-status").getBoundingClientRect().bottom"""
    )
    assert gap >= 12, f"the refresh status sits {gap}px above the first pool"  # it lost its spacing once
    expect(page.get_by_role("button", name="Refresh quota")).to_be_enabled()
    screenshots(page, "overview", "overview")

    # ---- the request log viewer
    page.get_by_role("link", name="Request log").click()
    table = page.locator("#requests-table")
    rows = table.locator("tbody tr[data-id]")
    expect(rows).to_have_count(5, timeout=10_000)  # 3 agent requests, 2 tests (Work's was not sent)
    expect(rows.nth(2).locator("td").nth(1)).to_have_text("OpenCode")
    page.get_by_label("Agent", exact=True).and_(page.locator("#requests-agent")).select_option("Claude Code")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").nth(2)).to_have_attribute("title", "ses-claude")
    expect(rows.first.locator(".fallback-chip")).to_have_text("Work 429")
    expect(rows.first.locator(".fallback-chip")).to_have_attribute(
        "title", "Work 429: rate limited or out of quota\nPersonal 200: served"
    )
    page.get_by_label("Agent", exact=True).and_(page.locator("#requests-agent")).select_option("")
    page.locator("#requests-status").select_option("error")
    expect(rows.filter(has_text="401")).to_have_count(1)  # the failed Test
    page.locator("#requests-status").select_option("")
    page.locator("#requests-account").select_option("team")
    expect(rows).to_have_count(3)
    page.locator("#requests-account").select_option("")
    expect(rows).to_have_count(5)
    claude_row = rows.filter(has_text="Claude Code")
    claude_row.get_by_role("button").click()
    detail = page.locator("#request-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(CLAUDE)
    expect(detail.locator(".hops li").first).to_contain_text("rate limited or out of quota")
    dump = detail.locator(".dump-part").first
    expect(dump).to_be_visible(timeout=10_000)
    dump.locator("summary").click()
    expect(dump.locator("pre")).to_contain_text('"model": "claude-sonnet-4-5"')
    for key in (WORK, PERSONAL, TEAM):
        assert key not in page.content()
    screenshots(page, "requests", "requests")

    # ---- one account's history, per hour and per day
    show(page, "accounts")
    team = page.locator('#account-list [data-account="team"]')
    team.locator("summary", has_text="History").click()
    chart = team.locator(".chart.activity svg")
    expect(chart).to_be_visible(timeout=10_000)
    expect(chart.locator("rect.chart-bar")).not_to_have_count(0)
    expect(team.locator(".history-body p")).to_contain_text("last 24 hours: 3 requests")
    team.get_by_role("button", name="30 days").click()
    expect(team.locator(".history-body p")).to_contain_text("last 30 days")
    team.get_by_role("button", name="Tokens").click()
    expect(chart.locator("title").first).to_contain_text("Tokens per day")
    screenshots(page, "accounts", "account-history", full=False, element=team)

    # ---- the engine's pool summary, when it publishes one, is what the overview says (injected into /api/state)
    def with_summary(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["summary"] = {"state": "exhausted", "ready": 0, "total": 3, "next_reset": time.time() + 1200}
        route.fulfill(response=response, json=body)

    page.route("**/api/state", with_summary)
    show(page, "overview")
    expect(page.locator("#stat-ready")).to_have_text("0 of 3", timeout=10_000)
    expect(page.locator("#stat-ready-note")).to_have_text(
        re.compile(r"^Every account is blocked · usable again in 1\dm \d\ds$")
    )
    page.unroute("**/api/state")
    # the engine's own summary: its headline, in the tray's and `headway status`'s words
    note = page.locator("#stat-ready-note")
    expect(note).not_to_have_text(re.compile("Every account is blocked"), timeout=10_000)
    summary = json.loads(run_cli("status", "--json", env=env).stdout)["summary"]
    expect(note).to_have_attribute("data-level", re.compile(r"^(ok|warn|bad|off)$"))
    expect(note).to_contain_text(summary["headline"].split(" ")[0])
    expect(page.locator("#stat-ready")).to_have_text(f"{summary['ready']} of {summary['total']}")
    # Work cools down and Personal's key was rejected: no Anthropic account is ready, whatever Team's health
    assert summary["blocked_families"] == ["Anthropic"]
    expect(note).to_have_text(re.compile(r"^Anthropic blocked · 1/3 ready"))
    expect(note).to_have_attribute("data-level", "warn")

    # ---- primary buttons ≥ 4.5:1 in both themes; the cache chart follows the dark theme
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert _contrast(page, "#apikey-form .btn-primary") >= 4.5, scheme
        assert _contrast(page, "#health-run") >= 4.5, scheme
    page.get_by_role("link", name="Cache analysis").click()
    expect(page.locator("#analysis-chart")).to_be_visible(timeout=20_000)
    expect(page.locator("#analysis-chart")).to_have_attribute("src", _contains("theme=dark"), timeout=10_000)
    page.emulate_media(color_scheme="light")
    expect(page.locator("#analysis-chart")).to_have_attribute("src", _contains("theme=light"), timeout=10_000)

    assert unlabeled_controls(page) == []
    assert signed.problems == [], signed.problems
    signed.close()


def _contains(text: str) -> Any:
    return re.compile(re.escape(text))


# Holds the page's request-log loads of one kind until the test lets them go (an init script: the page's CSP does
# not apply to it): ``window.__hold = "unfiltered"`` holds loads without an account filter, ``"older"`` those of an
# older page. So a filter can be chosen, or a new request arrive, while a load is in flight.
_HOLD_LOADS = """
(() => {
    const realFetch = window.fetch.bind(window);
    window.__held = [];
    window.__hold = null;
    const holds = {
        unfiltered: (url) => !url.includes("account="),
        older: (url) => url.includes("before="),
    };
    window.fetch = (url, init) => {
        const text = String(url);
        if (!window.__hold || !text.includes("/api/requests?") || !holds[window.__hold](text)) return realFetch(url, init);
        return new Promise((resolve) => window.__held.push(() => resolve(realFetch(url, init))));
    };
    window.__release = () => { window.__hold = null; for (const go of window.__held.splice(0)) go(); };
})();
"""


def _request_log_with_holds(browser: Any) -> tuple[SignedInPage, Any]:
    """A signed-in page with the holds above in place, on the request log; and its table's rows."""
    signed = SignedInPage(browser)
    signed.page.add_init_script(_HOLD_LOADS)
    signed.page.reload()
    signed.page.get_by_role("link", name="Request log").click()
    return signed, signed.page.locator("#requests-table tbody tr[data-id]")


def _wait_held(page: Any) -> None:
    assert wait_until(lambda: page.evaluate("window.__held.length") > 0, timeout=10), "no load was held"


def test_a_filter_chosen_while_the_log_loads_is_what_the_table_shows(
    browser: Any, headway: GatewayProcess, env: dict[str, str]
) -> None:
    """Seen in CI: a new request made the log reload, the account filter was chosen while that load was in flight, and
    the table kept showing every account under the chosen filter."""
    from playwright.sync_api import expect

    add_account_with_cli("anthropic", "Work", WORK, env=env)
    add_account_with_cli("openai", "Team", TEAM, env=env)
    _serving(headway, "Work", "Team")
    assert _send(headway, CLAUDE, "ses-claude").status_code == 200
    assert _send(headway, OPENCODE, "ses-open", family="openai").status_code == 200

    signed, rows = _request_log_with_holds(browser)
    page = signed.page
    expect(rows).to_have_count(2, timeout=10_000)

    page.evaluate("window.__hold = 'unfiltered'")
    assert (
        _send(headway, CLAUDE, "ses-claude").status_code == 200
    )  # the page reloads the log: that load is held
    _wait_held(page)
    page.locator("#requests-account").select_option("team")
    page.evaluate("window.__release()")

    expect(rows).to_have_count(1, timeout=10_000)
    expect(rows.first.locator("td").nth(4)).to_have_text("Team")
    expect(page.locator("#requests-account")).to_have_value("team")
    # the dropped answer is not shown later either, and clearing the filter shows all three
    page.wait_for_timeout(500)
    expect(rows).to_have_count(1)
    page.locator("#requests-account").select_option("")
    expect(rows).to_have_count(3, timeout=10_000)
    assert signed.problems == [], signed.problems
    signed.close()


def test_older_pages_stay_when_a_request_arrives_while_they_load(
    browser: Any, headway: GatewayProcess, env: dict[str, str]
) -> None:
    """Older pages are not replaced by every new request (they stay until the filters change); the same holds for a
    request that arrives while they load."""
    from playwright.sync_api import expect

    add_account_with_cli("anthropic", "Work", WORK, env=env)
    _serving(headway, "Work")
    for i in range(105):  # the log shows 100 a page
        assert _send(headway, CLAUDE, f"ses-{i}").status_code == 200

    signed, rows = _request_log_with_holds(browser)
    page = signed.page
    expect(rows).to_have_count(100, timeout=10_000)
    more = page.get_by_role("button", name="Show older requests")
    expect(more).to_be_visible()

    page.evaluate("window.__hold = 'older'")
    more.click()
    _wait_held(page)
    assert (
        _send(headway, CLAUDE, "ses-late").status_code == 200
    )  # the page hears of it while the older page loads
    page.wait_for_timeout(2500)  # a poll of the page's state (every 2 s) sees the new request
    page.evaluate("window.__release()")

    expect(rows).to_have_count(105, timeout=10_000)
    expect(more).to_be_hidden()
    page.wait_for_timeout(2500)  # and the next polls leave the older page where it is
    expect(rows).to_have_count(105)
    page.locator("#requests-agent").select_option("Claude Code")  # a filter change starts from the top again
    expect(rows).to_have_count(100, timeout=10_000)
    assert signed.problems == [], signed.problems
    signed.close()
