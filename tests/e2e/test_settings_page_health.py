"""The settings page's "Health check" section for real: Chromium (Playwright) against `headway serve`, whose
environment exports an ANTHROPIC_API_KEY that would override the Claude Code config `headway configure` wrote.
"Run checks" lists the same checks as `headway doctor`, the override among them, with its fix. A screenshot goes to
test-artifacts/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.config.paths import Paths
from tests.support.browser import ARTIFACTS, login_url
from tests.support.gateway import GatewayProcess, run_cli, start_gateway_process

OTHER_KEY = "sk-ant-api03-health-" + "h" * 30


@pytest.fixture
def headway(headway_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayProcess]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    process = start_gateway_process(env={"ANTHROPIC_API_KEY": OTHER_KEY})
    try:
        configured = run_cli("configure", "claude-code")
        assert configured.returncode == 0, configured.stderr
        yield process
    finally:
        process.stop()


def test_health_check_section_lists_the_checks_and_the_override(
    headway: GatewayProcess, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(login_url())
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        page.get_by_role("link", name="Health check").click()
        section = page.locator("#health")
        expect(section.get_by_role("heading", name="Health check")).to_be_visible()
        section.get_by_role("button", name="Run checks").click()
        expect(section.locator("#health-status")).to_contain_text("checks", timeout=30_000)
        items = section.locator(".health-item")
        expect(items.filter(has_text="keychain")).to_have_count(1)
        port = headway.url.rsplit(":", 1)[1]
        expect(items.filter(has_text="gateway port")).to_contain_text(
            f"the running Headway (pid {headway.proc.pid}) listens on port {port}"
        )
        override = items.filter(has_text="agent claude-code")
        expect(override).to_have_attribute("data-status", "fail")
        expect(override).to_contain_text("ANTHROPIC_API_KEY")
        expect(override).to_contain_text("Fix: unset ANTHROPIC_API_KEY")
        expect(section.locator("#health-status")).to_contain_text("failed")
        assert OTHER_KEY not in section.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        section.screenshot(path=str(ARTIFACTS / "settings-health.png"))
        assert problems == []
    finally:
        context.close()
