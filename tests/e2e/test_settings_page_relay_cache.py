"""The settings page's Relay and Cache analysis sections for real: Chromium (Playwright) against `headway serve`.

Relay: the page deploys the Worker through a fake Cloudflare API (HEADWAY_CLOUDFLARE_API_URL), explains a bad token,
shows "Relay on" and the Worker URL, writes the settings file without the token, and turns the relay off again.
Cache analysis: agent-style requests with a session header go through the gateway to a fake Anthropic that reports
cache reads; the section lists the session with its numbers, its turns, the break the dumps locate, and the chart.
Screenshots of both sections at desktop and phone widths go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.paths import Paths
from tests.fakes import Behavior, FakeAnthropic
from tests.fakes.cloudflare import CF_ACCOUNT, CF_TOKEN, FakeCloudflare
from tests.support.browser import SignedInPage, screenshots, settings_json, unlabeled_controls
from tests.support.gateway import (
    GatewayProcess,
    file_secrets_gateway_process,
    run_cli,
    wait_until,
)
from tests.support.miniflare import launch_deployed, require_miniflare
from tests.support.relay_setup import run_relay_setup

KEY = "sk-ant-api03-e2e-cache-" + "c" * 30
MODEL = "claude-sonnet-4-5"
SESSION = "ses_e2e_cache_7f3a"
OTHER = "ses_e2e_other_19bd"
BAD_TOKEN = "cf-mistyped-token-" + "z" * 20
# (uncached, cache read, cache write) per turn of SESSION; the third changes the system prompt: a break
TURNS = [(20, 0, 6_000), (25, 6_000, 500), (30, 0, 6_600), (18, 6_600, 300)]


@pytest.fixture
def services() -> Iterator[dict[str, Any]]:
    with (
        FakeAnthropic(default=Behavior(text="ok"), valid_keys=[KEY]) as anthropic,
        FakeCloudflare() as cloudflare,
    ):
        yield {"anthropic": anthropic, "cloudflare": cloudflare}


@pytest.fixture
def headway(services: dict[str, Any], headway_home: Path) -> Iterator[GatewayProcess]:
    env = {
        "HEADWAY_ANTHROPIC_BASE_URL": services["anthropic"].url,
        "HEADWAY_CLOUDFLARE_API_URL": services["cloudflare"].url,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    dumps = {"dumps": {"enabled": True}}
    with file_secrets_gateway_process(env, dumps, accounts=[("anthropic", "Main", KEY)]) as process:
        yield process


def test_relay_setup_from_the_page(browser: Any, headway: GatewayProcess, services: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    cloudflare: FakeCloudflare = services["cloudflare"]
    paths = Paths.from_env()
    signed = SignedInPage(browser)
    page, problems = signed.page, signed.problems
    page.get_by_role("link", name="Relay", exact=True).click()
    expect(page.locator("#relay-pill")).to_have_text("Not set up")
    expect(page.locator(".trust")).to_contain_text("your API key or ChatGPT token")

    # a mistyped token: a clear error, nothing deployed, nothing turned on
    form = page.locator("#relay-form")
    form.get_by_label("Cloudflare API token").fill(BAD_TOKEN)
    form.get_by_label("Cloudflare account ID").fill(CF_ACCOUNT)
    page.get_by_role("button", name="Deploy", exact=True).click()
    status = page.locator("#relay-setup-status")
    expect(status).to_contain_text("Cloudflare rejected this API token", timeout=15_000)
    expect(form.get_by_label("Cloudflare API token")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Cloudflare API token")).to_have_value("")
    assert cloudflare.scripts == {}
    assert settings_json().get("relay", {}).get("enabled", False) is False

    # the real token: deployed, on, the Worker URL shown; the token is nowhere
    form.get_by_label("Cloudflare API token").fill(CF_TOKEN)
    form.get_by_label("Transport to the Worker").select_option("websocket")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("#relay-pill")).to_have_text("Relay on", timeout=15_000)
    expect(page.locator("#relay-url")).to_have_text("https://headway-relay.alice.workers.dev")
    expect(page.locator("#relay-transport")).to_contain_text("WebSocket")
    expect(status).to_contain_text(
        "The relay is on", timeout=40_000
    )  # after the (failing) probe of workers.dev
    expect(page.locator("#relay-steps li").first).to_have_text("checking the API token")
    expect(page.locator("#relay-secret")).to_have_text("in the keychain")
    expect(page.locator("#relay-probe")).to_contain_text("Did not answer")
    settings = settings_json()["relay"]
    assert settings["enabled"] is True and settings["url"] == "https://headway-relay.alice.workers.dev"
    assert settings["account_id"] == CF_ACCOUNT and settings["transport"] == "websocket"
    assert "RelaySession" in json.dumps(cloudflare.scripts["headway-relay"].metadata)
    written = paths.settings_file.read_text() + paths.secrets_file.read_text() + headway.output()
    written += "".join(f.read_text(errors="replace") for f in paths.log_dir.rglob("*") if f.is_file())
    assert CF_TOKEN not in written and BAD_TOKEN not in written
    assert CF_TOKEN not in page.content()
    secret = json.loads(paths.secrets_file.read_text())["relay-secret"]
    assert secret not in page.content()
    expect(page.locator('[data-readonly="relay.url"]')).to_have_text(
        "https://headway-relay.alice.workers.dev"
    )
    assert page.locator('[data-setting="relay.url"]').count() == 0

    assert unlabeled_controls(page) == []
    screenshots(page, "relay", "relay")

    # off again, with a confirmation first
    page.get_by_role("button", name="Turn the relay off…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert settings_json()["relay"]["enabled"] is True
    page.get_by_role("button", name="Turn the relay off…").click()
    dialog.get_by_role("button", name="Turn off", exact=True).click()
    expect(page.locator("#relay-pill")).to_have_text("Relay off", timeout=10_000)
    assert wait_until(lambda: settings_json()["relay"]["enabled"] is False, timeout=5)
    assert settings_json()["relay"]["url"] is not None
    # ... and forgotten
    page.get_by_role("button", name="Forget the relay…").click()
    dialog.get_by_role("button", name="Turn off and forget").click()
    expect(page.locator("#relay-pill")).to_have_text("Not set up", timeout=10_000)
    assert settings_json()["relay"].get("url") is None
    assert "relay-secret" not in json.loads(paths.secrets_file.read_text())
    page.wait_for_timeout(300)
    assert problems == [], problems
    signed.close()


def test_relay_forget_from_the_page(
    browser: Any, headway: GatewayProcess, services: dict[str, Any], tmp_path: Path
) -> None:
    """Agent requests go through the deployed Worker (workerd); the page's button empties what it keeps."""
    from playwright.sync_api import expect

    require_miniflare()
    cloudflare: FakeCloudflare = services["cloudflare"]
    anthropic: FakeAnthropic = services["anthropic"]
    env = {"HEADWAY_ANTHROPIC_BASE_URL": anthropic.url, "HEADWAY_CLOUDFLARE_API_URL": cloudflare.url}
    setup = run_relay_setup(env)
    assert setup.returncode == 0, setup.stderr
    script = cloudflare.scripts["headway-relay"]
    with launch_deployed(script.metadata, script.modules, log_dir=tmp_path / "miniflare") as worker:
        paths = Paths.from_env()
        data = json.loads(paths.settings_file.read_text())
        data["relay"].update(url=worker.url, min_body_bytes=0)
        paths.settings_file.write_text(json.dumps(data))
        assert wait_until(lambda: _running_relay().get("url") == worker.url, timeout=10)
        _send_session(headway, anthropic)
        assert _running_relay()["totals"]["requests"] >= 2
        info = {"x-relay-token": script.binding("RELAY_TOKEN")["text"]}
        assert httpx.get(f"{worker.url}/v1/info", headers=info).json()["sessions"] == 2

        signed = SignedInPage(browser)
        page, problems = signed.page, signed.problems
        page.get_by_role("link", name="Relay", exact=True).click()
        expect(page.locator("#relay-allowlist")).to_contain_text(anthropic.url)
        expect(page.locator("#relay-allowlist-warning")).to_be_hidden()
        expect(page.locator("#relay-keeps")).to_contain_text("24 h")
        page.get_by_role("button", name="Delete what it keeps…").click()
        dialog = page.locator("#confirm-dialog")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(page.locator("#relay-forget-status")).to_have_text(
            "Deleted 2 sessions; the Worker keeps nothing now.", timeout=10_000
        )
        assert httpx.get(f"{worker.url}/v1/info", headers=info).json()["sessions"] == 0
        assert problems == [], problems
        signed.close()


def _running_relay() -> dict[str, Any]:
    relay = json.loads(run_cli("status", "--json").stdout).get("relay")
    return relay if isinstance(relay, dict) else {}


def _usage(uncached: int, read: int, write: int) -> dict[str, Any]:
    return {
        "input_tokens": uncached,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 40,
    }


def _send_session(headway: GatewayProcess, anthropic: FakeAnthropic) -> None:
    history: list[dict[str, Any]] = []
    system = "You are a careful coding agent. " * 40
    with httpx.Client(base_url=headway.url, timeout=20) as client:
        for index, turn in enumerate(TURNS):
            if index == 2:
                system = "You are a careful coding agent working in /repo. " * 40  # the prefix breaks here
            history.append({"role": "user", "content": f"step {index}: " + "read the file and go on. " * 30})
            anthropic.enqueue(Behavior(text=f"done {index}", usage=_usage(*turn)))
            response = client.post(
                "/v1/messages",
                headers={
                    "x-api-key": headway.key,
                    "anthropic-version": "2023-06-01",
                    "x-session-id": SESSION,
                },
                json={"model": MODEL, "max_tokens": 100, "system": system, "messages": history},
            )
            assert response.status_code == 200, response.text
            history.append({"role": "assistant", "content": f"done {index}"})
        anthropic.enqueue(Behavior(text="title", usage=_usage(40, 0, 0)))
        response = client.post(
            "/v1/messages",
            headers={"x-api-key": headway.key, "anthropic-version": "2023-06-01", "x-session-id": OTHER},
            json={"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text


def test_cache_analysis_on_the_page(browser: Any, headway: GatewayProcess, services: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    _send_session(headway, services["anthropic"])
    signed = SignedInPage(browser)
    page, problems = signed.page, signed.problems
    page.get_by_role("link", name="Cache analysis", exact=True).click()
    rows = page.locator("#analysis-sessions tbody tr")
    expect(rows).to_have_count(2, timeout=20_000)
    expect(rows.nth(0)).to_contain_text(OTHER[:20])
    main = page.locator(f'#analysis-sessions tbody tr[data-key="{SESSION}"]')
    prompt = sum(sum(t) for t in TURNS)
    read = sum(t[1] for t in TURNS)
    cells = main.locator("td")
    expect(cells.nth(0)).to_have_text("4")
    expect(cells.nth(2)).to_have_text(f"{round(100 * read / prompt)}%")
    expect(cells.nth(3)).to_have_text("1")  # one break
    expect(page.locator("#analysis-sessions tfoot")).to_contain_text("All sessions")

    page.get_by_role("button", name=f"Show the turns of session {SESSION}").click()
    expect(main).to_have_attribute("aria-selected", "true")
    expect(page.locator("#analysis-detail-title")).to_have_text(f"Session {SESSION}")
    turns = page.locator("#analysis-turns tbody tr")
    expect(turns).to_have_count(4)
    expect(turns.nth(1).locator("td").nth(5)).to_have_text("6k")
    expect(turns.nth(2)).to_contain_text("Break at system")
    for name in ("actual", "no_cache", "cache_5m", "cache_1h"):
        expect(page.locator(f'#analysis-costs [data-cost="{name}"]')).to_have_text(re.compile(r"^\$\d"))
    chart = page.locator("#analysis-chart")
    expect(chart).to_be_visible()
    assert wait_until(lambda: chart.evaluate("img => img.complete && img.naturalWidth > 0"), timeout=10)
    src = chart.get_attribute("src")
    assert src and src.startswith("/api/analysis/cache.svg?")
    image = page.evaluate(
        "(src) => fetch(src).then(async r => [r.headers.get('content-type'), await r.text()])", src
    )
    assert (
        image[0].startswith("image/svg+xml")
        and "<script" not in image[1]
        and image[1].count('class="turn"') == 4
    )

    page.get_by_label("Period").last.select_option("1")
    expect(rows).to_have_count(2, timeout=10_000)
    assert unlabeled_controls(page) == []
    screenshots(page, "analysis", "cache-analysis")
    page.wait_for_timeout(300)
    assert problems == [], problems
    signed.close()
