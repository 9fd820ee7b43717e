"""Where the settings page is, and how a browser gets there signed in — in real Chromium, against `headway serve`.

The page keeps its port across restarts (setting `web.port`) and its sessions, so an open tab carries on; when the
port is taken it moves for that run and says so. `headway settings` hands the browser a private opener file instead of the
one-time token (visible to every local user in `ps`), and Chromium follows it to a signed-in page. One Chromium for
the module; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from proxy.config.paths import Paths
from tests.support.browser import ARTIFACTS, free_port, page_url
from tests.support.gateway import GatewayProcess, run_cli, start_gateway_process

ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


@pytest.fixture
def port(headway_home: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A settings home whose page wants a port of its own (the default, 7338, may be in use on a test machine)."""
    monkeypatch.delenv("HEADWAY_WEB_PORT")  # this module is about web.port itself
    chosen = free_port()
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}, "web": {"port": chosen}}))
    return chosen


def _opened_by_headway_settings(tmp_path: Path) -> str:
    """What `headway settings` puts on the browser's command line (a fake browser records its argument)."""
    record = tmp_path / "browser-argv.txt"
    fake = tmp_path / "fake-browser"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n')
    fake.chmod(0o755)
    result = run_cli("settings", env={**ENV, "DISPLAY": ":4242", "BROWSER": str(fake)})
    assert result.returncode == 0, result.stderr
    assert "Opened the settings page" in result.stdout
    return record.read_text().splitlines()[-1]


def _start() -> GatewayProcess:
    return start_gateway_process(env=ENV)


def test_headway_settings_signs_chromium_in_without_the_token_on_its_command_line(
    browser: Any, port: int, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    process = _start()
    try:
        base = page_url()
        argument = _opened_by_headway_settings(tmp_path)
        assert argument.startswith("file://") and "token" not in argument
        opener = Path(urllib.parse.unquote(urllib.parse.urlsplit(argument).path))
        assert opener.parent == Paths.from_env().run_dir / "web-open"
        assert opener.stat().st_mode & 0o777 == 0o600 and opener.parent.stat().st_mode & 0o777 == 0o700

        context = browser.new_context()
        page = context.new_page()
        page.goto(argument)
        expect(page).to_have_url(base + "/")
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        expect(page.locator("#gateway-chip")).to_have_attribute("data-state", "ok")
        assert [(c["httpOnly"], c["sameSite"]) for c in context.cookies()] == [(True, "Strict")]
        # The opener's token was spent: opening the file again signs nobody in.
        again = browser.new_context().new_page()
        again.goto(argument)
        expect(again.locator("h1")).to_have_text("This sign-in link has expired")
        again.context.close()
        context.close()
    finally:
        process.stop()


def test_the_page_keeps_its_address_across_restarts(browser: Any, port: int, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    process = _start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        base = page_url()
        assert base == f"http://127.0.0.1:{port}"
        page = context.new_page()
        page.goto(_opened_by_headway_settings(tmp_path))
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        expect(page.locator("#page-moved")).to_have_count(0)

        page.evaluate("() => { window.__sameTab = 'yes'; }")

        process.stop()
        expect(page.locator("#offline-banner")).to_be_visible(timeout=15_000)
        process = _start()
        assert page_url() == base
        # The open tab finds the page again by itself, still signed in (no reload, no new link), and can change things.
        expect(page.locator("#offline-banner")).to_be_hidden(timeout=20_000)
        expect(page.locator("#gateway-chip")).to_have_attribute("data-state", "ok")
        assert page.evaluate("() => window.__sameTab") == "yes" and page.url == base + "/"
        page.get_by_label("Write request dumps").check()
        expect(page.locator("#setting-dumps-enabled-status")).to_have_text("Saved")
        assert json.loads(Paths.from_env().settings_file.read_text())["dumps"]["enabled"] is True
        # A bookmark of the address opens the page too.
        bookmark = context.new_page()
        bookmark.goto(base + "/")
        expect(bookmark.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        # Signing out is remembered across a restart as well.
        bookmark.get_by_role("button", name="Sign out").click()
        expect(bookmark.locator("h1")).to_have_text("You are signed out")
        process.stop()
        process = _start()
        response = bookmark.goto(base + "/")
        assert response is not None and response.status == 401
        # The first tab was signed out with the others: its next poll gets a 401 and it reloads onto the sign-in
        # page. Wait for that: Chromium can hang closing a context while one of its pages is mid-reload.
        expect(page.locator("#signin")).to_be_visible(timeout=15_000)
    finally:
        context.close()
        process.stop()


def test_a_taken_port_moves_the_page_for_this_run_and_the_page_says_so(
    browser: Any, port: int, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        process = _start()
        try:
            base = page_url()
            assert base != f"http://127.0.0.1:{port}"
            assert json.loads((Paths.from_env().run_dir / "web.json").read_text())["wanted_port"] == port
            log_text = "".join(p.read_text(errors="replace") for p in Paths.from_env().log_dir.glob("*.log*"))
            assert f"port {port} is not available" in log_text + process.output()
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(_opened_by_headway_settings(tmp_path))
            expect(page).to_have_url(base + "/")
            banner = page.locator("#page-moved")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text(f"usual port {port} was taken")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "settings-page-moved.png"))
            context.close()
        finally:
            process.stop()
