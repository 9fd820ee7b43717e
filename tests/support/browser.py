"""Real Chromium (Playwright) for the settings page's end-to-end tests: one place for how it starts, how a page signs
in, and the checks every page surface gets (labelled controls, nothing wider than the screen, no script errors).

The ``browser`` fixture (one Chromium per module) is in tests/e2e/conftest.py. Without Chromium or Playwright a test
skips locally and fails in CI (scripts/install-test-deps installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from proxy.config.paths import Paths
from tests.support.gateway import run_cli

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "PHONE",
    "SignedInPage",
    "chromium",
    "free_port",
    "login_url",
    "missing",
    "overflowing",
    "page_url",
    "screenshots",
    "settings_json",
    "show",
    "unlabeled_controls",
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    # evil.test and attacker.test resolve to this machine: a DNS-rebinding page and a cross-site page.
    "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP attacker.test 127.0.0.1",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (scripts/install-test-deps installs it)")
    pytest.skip(f"{what} is not installed")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed afterwards."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        missing("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package")
    with sync_playwright() as manager:
        browser = manager.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def page_url() -> str:
    """Where the running `headway serve` (this test's HEADWAY_HOME) serves its settings page."""
    info = json.loads((Paths.from_env().run_dir / "web.json").read_text())
    return str(info["url"])


def login_url() -> str:
    """A fresh one-time sign-in link, from `headway settings --print-url`."""
    result = run_cli("settings", "--print-url")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/login\?token=[\w-]{40,}", url), url
    return url


def settings_json() -> dict[str, Any]:
    return dict(json.loads(Paths.from_env().settings_file.read_text()))


def unlabeled_controls(page: Any) -> list[str]:
    return list(
        page.evaluate(
            """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
             .map(e => e.id || e.name || e.outerHTML.slice(0, 60))"""
        )
    )


def overflowing(page: Any) -> list[str]:
    """Elements sticking out of the viewport sideways (nothing may make the page scroll horizontally)."""
    return list(
        page.evaluate(
            """() => {
                const width = window.innerWidth;
                if (document.documentElement.scrollWidth <= width + 1) return [];
                return Array.from(document.querySelectorAll('body *'))
                    .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest('.sidenav ul, .table-wrap, .snippet, .tabs'))
                    .slice(0, 10)
                    .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`)
                    .concat([`scrollWidth=${document.documentElement.scrollWidth}`]);
            }"""
        )
    )


def show(page: Any, section: str, pause_ms: int = 300) -> None:
    """Scroll the page so that section (an element id) starts at the top."""
    page.evaluate(
        "(id) => document.getElementById(id).scrollIntoView({block: 'start', behavior: 'instant'})", section
    )
    page.wait_for_timeout(pause_ms)


class SignedInPage:
    """A new browser context signed in to the page, with every script error (and, if asked, every refused request)
    it ran into in ``problems``."""

    def __init__(
        self,
        browser: Any,
        *,
        viewport: dict[str, int] | None = None,
        color_scheme: Literal["light", "dark"] = "light",
        watch_refusals: bool = False,
    ) -> None:
        from playwright.sync_api import expect

        self.context = browser.new_context(viewport=viewport or DESKTOP, color_scheme=color_scheme)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda msg: self.problems.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        if watch_refusals:
            self.page.on(
                "response",
                lambda r: (
                    self.problems.append(f"{r.request.method} {r.url} → {r.status}")
                    if r.status == 403
                    else None
                ),
            )
        self.page.goto(login_url())
        expect(self.page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()

    def close(self) -> None:
        self.context.close()


def screenshots(
    page: Any,
    section: str,
    name: str,
    *,
    schemes: tuple[str, ...] = ("light", "dark"),
    full: bool = True,
    element: Any = None,
) -> list[Path]:
    """Screenshots of one section at desktop and phone widths in each colour scheme, to test-artifacts/ as
    ``settings-{desktop,narrow}-{name}[-dark].png`` (and the whole narrow page); nothing may stick out sideways.
    With ``element`` (a locator), that element alone is shot. The page is left at desktop width, light scheme."""
    ARTIFACTS.mkdir(exist_ok=True)
    taken: list[Path] = []
    for scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        suffix = "" if scheme == "light" else f"-{scheme}"
        for width, viewport in (("desktop", DESKTOP), ("narrow", PHONE)):
            page.set_viewport_size(viewport)
            page.wait_for_timeout(300)
            show(page, section)
            path = ARTIFACTS / f"settings-{width}-{name}{suffix}.png"
            if element is not None:
                element.scroll_into_view_if_needed()
                element.screenshot(path=str(path))
            else:
                page.screenshot(path=str(path))
            taken.append(path)
            if width == "narrow" and full:
                full_path = ARTIFACTS / f"settings-narrow-{name}{suffix}-full.png"
                page.screenshot(path=str(full_path), full_page=True)
                taken.append(full_path)
            assert overflowing(page) == [], (scheme, width)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(DESKTOP)
    return taken
