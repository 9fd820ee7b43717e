"""The tray menu: built from a status snapshot and the settings; its items write the settings file.

The first half reads the plain menu model; the second drives a real :class:`TrayApp` — real engine, real
SettingsStore and watcher, pystray's ``dummy`` backend with the drawing calls recorded — and clicks items the way
pystray does (``item(icon)``).
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest
from PIL import Image
from pydantic import BaseModel

from proxy.config.paths import Paths, write_private_file
from proxy.config.settings import Settings
from proxy.routing.summary import health_summary
from tests.support.gateway import wait_until
from tray.app import Services, build_services
from tray.autostart.linux import LinuxAutostart
from tray.menu import (
    CONTROLS,
    SEPARATOR,
    Choice,
    Entry,
    MenuView,
    Toggle,
    available_controls,
    build,
    connection_text,
    signature,
)

NOW = 1_800_000_000.0


class RecordingActions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


def status(**extra: Any) -> dict[str, Any]:
    windows = [
        {
            "name": "5h",
            "remaining_percent": 38.0,
            "resets_in_seconds": 4320.0,
            "window_minutes": 300,
            "current": True,
        },
        {
            "name": "weekly",
            "remaining_percent": 71.0,
            "resets_in_seconds": 200000.0,
            "window_minutes": 10080,
            "current": True,
        },
    ]
    data: dict[str, Any] = {
        "url": "http://127.0.0.1:7337",
        "routing": "main-first",
        "settings_error": None,
        "accounts": [
            {
                "id": "work",
                "label": "work",
                "family": "openai",
                "enabled": True,
                "health": "healthy",
                "last_ok_at": NOW - 5,
                "quota": {"updated_at": NOW - 5, "windows": windows},
            },
            {
                "id": "api",
                "label": "api",
                "family": "anthropic",
                "enabled": True,
                "health": "needs_login",
                "last_ok_at": None,
                "quota": None,
            },
        ],
        **extra,
    }
    data["summary"] = health_summary(data["accounts"], NOW)
    return data


def texts(entries: tuple[Entry, ...]) -> list[str]:
    return ["---" if e.is_separator else e.text for e in entries]


def find(entries: tuple[Entry, ...], prefix: str) -> Entry:
    return next(e for e in entries if e.text.startswith(prefix))


# --------------------------------------------------------------------------- the model


def test_items_and_checked_states() -> None:
    settings = Settings.model_validate({"routing": {"mode": "sticky"}, "cache": {"anthropic_mode": "hybrid"}})
    entries = build(MenuView(status(), settings, autostart=True, paused=False, now=NOW), RecordingActions())
    assert texts(entries) == [
        "Anthropic blocked · 1/2 ready · 38% left",  # api, its only Anthropic account, needs login
        "● work · 5h: 38% left, resets in 1h 12m · week: 71% left",
        "○ api · needs login",
        "Gateway: http://127.0.0.1:7337",
        "---",
        "Refresh quota now",
        "Pause gateway",
        "Routing: Sticky: a session keeps its account",
        "Anthropic prompt cache: Hybrid (recommended)",
        "Record request dumps",
        "---",
        "Open settings…",
        "Connect an agent",
        "Launch at login",
        "Check setup…",
        "Open logs folder",
        "---",
        "Quit Headway",
    ]
    routing = find(entries, "Routing").submenu
    assert routing is not None
    assert [(e.text, e.checked, e.radio) for e in routing] == [
        ("Main account first", False, True),
        ("Fallback accounts first", False, True),
        ("Sticky: a session keeps its account", True, True),
    ]
    assert find(entries, "Record request dumps").checked is False
    assert find(entries, "Launch at login").checked is True
    assert find(entries, "Open settings").default
    assert not find(entries, "Gateway:").enabled
    agents = find(entries, "Connect an agent").submenu
    assert agents is not None and [e.text for e in agents] == ["OpenCode", "Pi", "Codex CLI", "Claude Code"]


def test_items_call_their_actions() -> None:
    actions = RecordingActions()
    entries = build(MenuView(status(), Settings(), autostart=False, paused=True, now=NOW), actions)
    find(entries, "Resume gateway").action()  # type: ignore[misc]
    find(entries, "Record request dumps").action()  # type: ignore[misc]
    find(entries, "Launch at login").action()  # type: ignore[misc]
    cache = find(entries, "Anthropic prompt cache").submenu
    assert cache is not None
    cache[3].action()  # type: ignore[misc]
    agents = find(entries, "Connect an agent").submenu
    assert agents is not None
    agents[2].action()  # type: ignore[misc]
    find(entries, "Quit").action()  # type: ignore[misc]
    assert actions.calls == [
        ("set_paused", (False,)),
        ("set_setting", ("dumps.enabled", True)),
        ("set_autostart", (True,)),
        ("set_setting", ("cache.anthropic_mode", "hybrid")),
        ("connect_agent", ("codex",)),
        ("quit", ()),
    ]


def test_optional_items_hide_and_problems_show() -> None:
    view = MenuView(
        status(settings_error=["x"], accounts=[]), Settings(), autostart=None, paused=None, now=NOW
    )
    entries = build(view, RecordingActions())
    shown = texts(entries)
    assert shown[0] == "No accounts yet — add one in settings"
    assert "⚠ Settings file has errors — open it" in shown
    assert not any(t.startswith(("Pause", "Resume", "Launch at login")) for t in shown)


def test_a_failed_port_change_shows_in_the_menu() -> None:
    problem = "port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:7337"
    actions = RecordingActions()
    entries = build(MenuView(status(listen_error=problem), Settings(), now=NOW), actions)
    find(entries, "⚠ port 8080").action()  # type: ignore[misc]
    find(entries, "Check setup").action()  # type: ignore[misc]
    assert actions.calls == [("open_settings", ()), ("check_setup", ())]
    assert not any(
        t.startswith("⚠ port") for t in texts(build(MenuView(status(), Settings(), now=NOW), actions))
    )


def test_only_settings_that_exist_get_a_control() -> None:
    assert [c.path for c in available_controls()] == ["routing.mode", "cache.anthropic_mode", "dumps.enabled"]

    class KeepWarm(BaseModel):
        enabled: bool = False

    class Future(BaseModel):
        keep_warm: KeepWarm = KeepWarm()
        routing_mode: Literal["a", "b"] = "a"

    extra = (*CONTROLS, Toggle("keep_warm.enabled", "Keep prompt caches warm"), Choice("nope.mode", "Nope"))
    pytest.MonkeyPatch.context  # noqa: B018 - keep the import honest for readers: CONTROLS is a plain tuple
    import tray.menu as menu_module

    original = menu_module.CONTROLS
    menu_module.CONTROLS = extra
    try:
        assert [c.path for c in available_controls()] == [
            "routing.mode",
            "cache.anthropic_mode",
            "dumps.enabled",
        ]
        assert [c.path for c in available_controls(Future)] == ["keep_warm.enabled"]
    finally:
        menu_module.CONTROLS = original


def test_signature_changes_with_what_the_user_sees() -> None:
    view = MenuView(status(), Settings(), autostart=False, paused=False, now=NOW)
    same = build(view, RecordingActions())
    assert signature(same) == signature(build(view, RecordingActions()))
    dumps_on = Settings.model_validate({"dumps": {"enabled": True}})
    assert signature(same) != signature(
        build(MenuView(status(), dumps_on, autostart=False, paused=False, now=NOW), RecordingActions())
    )
    assert SEPARATOR.is_separator


def test_connection_texts_carry_the_url_and_key() -> None:
    for agent in ("opencode", "pi", "codex", "claude"):
        text = connection_text(agent, "http://127.0.0.1:7337", "hw-secret")
        assert "127.0.0.1:7337" in text and "hw-secret" in text
    opencode = json.loads(connection_text("opencode", "http://x:1", "k").split("\n", 1)[1])
    assert opencode["provider"]["anthropic"]["options"] == {"baseURL": "http://x:1/v1", "apiKey": "k"}
    assert 'wire_api = "responses"' in connection_text("codex", "http://x:1", "k")
    with pytest.raises(ValueError):
        connection_text("nope", "http://x:1", "k")


# --------------------------------------------------------------------------- a real tray app, dummy backend


@pytest.fixture
def pystray(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    module: ModuleType = importlib.import_module("pystray")
    if type(module.Icon).__module__ != "pystray._base" and module.Icon.__module__ != "pystray._base":
        pytest.skip(f"pystray was already imported with another backend ({module.Icon.__module__})")
    return module


class FakeDesktop:
    def __init__(self, clipboard: bool = True) -> None:
        self.opened: list[str] = []
        self.copied: list[str] = []
        self.clipboard = clipboard

    def open(self, target: str) -> None:
        self.opened.append(target)

    def copy(self, text: str) -> bool:
        if self.clipboard:
            self.copied.append(text)
        return self.clipboard


@pytest.fixture
def services(headway_home: Path) -> Iterator[Services]:
    paths = Paths.from_env()
    paths.ensure()
    write_private_file(paths.settings_file, b'{"gateway": {"port": 0}}\n')
    built = build_services(paths)
    built.start()
    try:
        yield built
    finally:
        built.stop()


def recording_icon(pystray: ModuleType) -> type:
    class RecordingIcon(pystray.Icon):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.menu_updates = 0
            self.images: list[Any] = []
            self.titles: list[str] = []
            self.notices: list[tuple[str, str | None]] = []
            self.stopped = False
            super().__init__(*args, **kwargs)

        def _update_menu(self) -> None:
            self.menu_updates += 1

        def _update_icon(self) -> None:
            self.images.append(self.icon)

        def _update_title(self) -> None:
            self.titles.append(self.title)

        def _notify(self, message: str, title: str | None = None) -> None:
            self.notices.append((message, title))

        def stop(self) -> None:  # the icon never ran its loop here
            self.stopped = True

        def _show(self) -> None: ...
        def _hide(self) -> None: ...

    return RecordingIcon


@pytest.fixture
def app(services: Services, pystray: ModuleType, tmp_path: Path) -> Iterator[Any]:
    from tray.tray import TrayApp

    desktop = FakeDesktop()
    tray = TrayApp(
        services,
        pystray,
        desktop=desktop,
        autostart=LinuxAutostart(["headway"], config_home=tmp_path / "xdg"),
        poll_seconds=0.05,
    )
    blank = Image.new("RGBA", (tray.size, tray.size))
    icon = recording_icon(pystray)("headway", icon=blank, menu=pystray.Menu(tray._menu_items))
    icon.visible = True
    tray._icon = icon
    services.store.subscribe(tray._settings_changed)
    tray._start_thread("headway-tray-actions", tray._action_loop)
    tray._start_thread("headway-tray-status", tray._status_loop)
    try:
        yield tray
    finally:
        tray._stop_threads()


def item(app: Any, prefix: str, *sub: str) -> Any:
    items = app._icon.menu.items
    found = next(i for i in items if i.text.startswith(prefix))
    for name in sub:
        found = next(i for i in found.submenu.items if i.text.startswith(name))
    return found


def on_disk(services: Services) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(services.paths.settings_file.read_text())
    return data


def test_toggles_write_the_settings_file(app: Any, services: Services) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    dumps = item(app, "Record request dumps")
    assert dumps.checked is False
    dumps(app._icon)
    assert wait_until(lambda: on_disk(services).get("dumps", {}).get("enabled") is True, timeout=3)
    assert wait_until(lambda: item(app, "Record request dumps").checked is True, timeout=3)

    item(app, "Routing", "Sticky")(app._icon)
    assert wait_until(lambda: on_disk(services).get("routing", {}).get("mode") == "sticky", timeout=3)
    assert wait_until(lambda: item(app, "Routing", "Sticky").checked is True, timeout=3)
    assert item(app, "Routing", "Main account first").checked is False

    item(app, "Anthropic prompt cache", "Automatic")(app._icon)
    assert wait_until(
        lambda: on_disk(services).get("cache", {}).get("anthropic_mode") == "automatic", timeout=3
    )
    assert stat.S_IMODE(os.stat(services.paths.settings_file).st_mode) == 0o600


def test_an_edit_made_elsewhere_shows_in_the_menu(app: Any, services: Services) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    before = app._icon.menu_updates
    data = on_disk(services)
    data["cache"] = {"anthropic_mode": "hybrid"}
    write_private_file(services.paths.settings_file, json.dumps(data).encode())  # a hand edit: atomic replace
    assert wait_until(lambda: app._icon.menu_updates > before, timeout=3)
    assert item(app, "Anthropic prompt cache").text == "Anthropic prompt cache: Hybrid (recommended)"
    assert item(app, "Anthropic prompt cache", "Hybrid").checked is True


def test_pause_resume_and_the_icon(app: Any, services: Services) -> None:
    engine: Any = services.engine
    if not hasattr(engine, "set_paused"):
        assert not any(i.text.startswith("Pause") for i in app._icon.menu.items)
        pytest.skip("the engine cannot pause yet")
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    item(app, "Pause gateway")(app._icon)
    assert wait_until(lambda: engine.paused is True, timeout=3)
    assert wait_until(lambda: any(i.text == "Resume gateway" for i in app._icon.menu.items), timeout=3)
    assert wait_until(lambda: app._icon_key and app._icon_key[0][0] == "paused", timeout=3)
    assert "paused" in app._icon.title
    item(app, "Resume gateway")(app._icon)
    assert wait_until(lambda: engine.paused is False, timeout=3)


def test_launch_at_login_connect_open_and_quit(app: Any, services: Services, tmp_path: Path) -> None:
    desktop: FakeDesktop = app.desktop
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    item(app, "Launch at login")(app._icon)
    entry = tmp_path / "xdg" / "autostart" / "headway.desktop"
    assert wait_until(entry.exists, timeout=3)
    assert wait_until(lambda: item(app, "Launch at login").checked is True, timeout=3)

    item(app, "Connect an agent", "Claude Code")(app._icon)
    assert wait_until(lambda: bool(desktop.copied), timeout=3)
    assert f"ANTHROPIC_BASE_URL={services.engine.base_url}" in desktop.copied[0]
    assert str(services.engine.access_key) in desktop.copied[0]
    assert wait_until(
        lambda: any(t == "Claude Code settings copied" for _, t in app._icon.notices), timeout=3
    )

    desktop.clipboard = False
    item(app, "Connect an agent", "OpenCode")(app._icon)
    fallback = services.paths.config_dir / "connect-opencode.txt"
    assert wait_until(fallback.exists, timeout=3)
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o600
    assert wait_until(lambda: str(fallback) in desktop.opened, timeout=3)

    item(app, "Open logs folder")(app._icon)
    assert wait_until(lambda: str(services.paths.log_dir) in desktop.opened, timeout=3)

    # The settings page opens through the composition root's hook; when it cannot, the settings file does.
    calls: list[str] = []

    def page() -> bool:
        calls.append("page")
        return True

    services.open_settings = page  # type: ignore[method-assign]
    item(app, "Open settings")(app._icon)
    assert wait_until(lambda: calls == ["page"], timeout=3)
    services.open_settings = lambda: False  # type: ignore[method-assign]
    item(app, "Open settings")(app._icon)
    assert wait_until(lambda: str(services.paths.settings_file) in desktop.opened, timeout=3)

    item(app, "Quit")(app._icon)
    assert wait_until(lambda: app._icon.stopped, timeout=3)


def test_check_setup_notifies_and_opens_the_report(app: Any, services: Services) -> None:
    desktop: FakeDesktop = app.desktop
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    item(app, "Check setup")(app._icon)
    report = services.paths.run_dir / "check-setup.txt"
    assert wait_until(lambda: str(report) in desktop.opened, timeout=30)
    text = report.read_text()
    assert "] keychain" in text and "] gateway port" in text and "] running instance" in text
    assert f"served by this Headway (pid {os.getpid()})" in text or "a free port is picked" in text
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert wait_until(lambda: any(t == "Headway setup check" for _, t in app._icon.notices), timeout=3)


def test_a_failed_port_change_shows_in_the_tooltip_and_a_notice(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    problem = "port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:7337"
    real = services.engine.status
    monkeypatch.setattr(services.engine, "status", lambda: {**real(), "listen_error": problem})
    app.wake()
    assert wait_until(lambda: problem in (app._icon.title or ""), timeout=3)
    assert wait_until(lambda: any(t == "Headway kept its old port" for _, t in app._icon.notices), timeout=3)
    assert wait_until(lambda: any(i.text == f"⚠ {problem}" for i in app._icon.menu.items), timeout=3)


def test_a_request_log_kept_aside_at_start_shows_in_the_tooltip(
    app: Any, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    aside = tmp_path / "requests.sqlite3.unreadable-1"
    monkeypatch.setattr(services.engine.request_log, "set_aside", aside)  # as RequestLog.start() sets it
    app.wake()
    expected = (
        f"⚠ Request log: the old one could not be read; it is kept as {aside}, and a new one was started"
    )
    assert wait_until(lambda: expected in (app._icon.title or ""), timeout=3), app._icon.title


def test_a_request_log_that_cannot_be_written_shows_in_the_tooltip(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    monkeypatch.setattr(
        services.engine.request_log, "_failing", "database or disk is full"
    )  # as a failed write
    app.wake()
    expected = "⚠ Request log cannot be written (database or disk is full); requests are not being recorded"
    assert wait_until(lambda: expected in (app._icon.title or ""), timeout=3), app._icon.title


def test_a_failing_action_is_reported_not_raised(app: Any, services: Services) -> None:
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)

    def broken() -> None:
        raise OSError("disk full")

    app.submit("Open logs folder", broken)
    assert wait_until(lambda: any("disk full" in m for m, _ in app._icon.notices), timeout=3)
    assert app._threads[0].is_alive()


def test_quota_changes_reach_the_icon_within_a_second(app: Any, services: Services) -> None:
    from proxy.config.accounts import add_api_key_account
    from proxy.routing.quota import Window

    account = add_api_key_account(
        services.store, services.keychain, "anthropic-api-key", "work", "sk-ant-api03-" + "k" * 24
    )
    assert wait_until(lambda: services.engine.settings.account(account.id) is not None, timeout=3)
    engine: Any = services.engine
    now = time.time()
    engine._state.quota.update(
        account.id, [Window(name="tokens", limit=100, remaining=12, resets_at=now + 30)], now
    )
    engine._state.health.ok(account.id, now)
    started = time.monotonic()
    assert wait_until(lambda: app._icon_key and app._icon_key[0][:2] == ("low", "12"), timeout=3)
    assert time.monotonic() - started < 1.0
    assert "work · tokens: 12% left, resets in 30s" in app._icon.title or "resets in 29s" in app._icon.title
    assert app._icon.images and app._icon.images[-1].size == (app.size, app.size)


def test_no_display_means_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    from tray.desktop import has_display

    assert not has_display({}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux") and has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")
    assert sys.platform != "linux" or not has_display({"DISPLAY": ""}, "linux")


def test_a_failing_tray_backend_leaves_the_gateway_running(
    headway_home: Path, pystray: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    import httpx

    from tray.tray import TrayApp

    class BrokenIcon(recording_icon(pystray)):  # type: ignore[misc]
        def _run(self) -> None:
            raise RuntimeError("no tray host")

    broken = types.ModuleType("broken_pystray")
    broken.__dict__.update(pystray.__dict__)
    broken.Icon = BrokenIcon  # type: ignore[attr-defined]
    paths = Paths.from_env()
    paths.ensure()
    write_private_file(paths.settings_file, b'{"gateway": {"port": 0}}\n')
    services = build_services(paths)
    app = TrayApp(
        services, broken, desktop=FakeDesktop(), autostart=LinuxAutostart(["x"], config_home=tmp_path)
    )
    served: list[int] = []

    def probe_then_quit() -> None:
        wait_until(lambda: services.engine.port != 0 and app._halted_icon is not None, timeout=5)
        served.append(httpx.get(f"{services.engine.base_url}/health", timeout=5).status_code)
        app.quit()

    before = {t.ident for t in threading.enumerate()}
    prober = threading.Thread(target=probe_then_quit)
    prober.start()
    app.run()  # returns once quit() is called, with everything stopped
    prober.join(5)
    assert served == [200]
    assert "The tray icon failed (no tray host): running headless" in capsys.readouterr().err
    assert not paths.runtime_file.exists()
    leftovers = [t for t in threading.enumerate() if t.ident not in before and not t.daemon and t.is_alive()]
    assert wait_until(lambda: not any(t.is_alive() for t in leftovers), timeout=3), leftovers


FED_SUMMARY: dict[str, Any] = {
    "state": "critical",
    "ready": 4,
    "total": 5,
    "percent": 3.0,
    "next_reset": None,
    "attention": "blocked",
    "headline": "Fed by hand · 4/5 ready",
    "lines": ["x · a line from the summary"],
    "tooltip": "Headway — Fed by hand · 4/5 ready\nx · a line from the summary",
    "accounts": [
        {
            "id": "x",
            "label": "x",
            "family": "openai",
            "enabled": True,
            "ready": True,
            "state": "critical",
            "serving": True,
            "windows": [],
            "line": "x · a line from the summary",
        }
    ],
}


def test_one_summary_fed_by_hand_is_what_every_surface_shows(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Icon, tooltip, menu header and `headway status` all draw the summary they are given — no second opinion:
    the accounts here say nothing of the kind."""
    from tray.cli.status import format_status
    from tray.icon import IconState, Level, render

    real = services.engine.status()
    fed = {**real, "accounts": [], "summary": FED_SUMMARY}
    monkeypatch.setattr(services.engine, "status", lambda: fed)
    assert wait_until(lambda: app._icon.title == FED_SUMMARY["tooltip"], timeout=3)
    expected = render(IconState(Level.CRITICAL, "3", 0.03, badge="blocked"), app.size)
    assert wait_until(lambda: app._icon.icon.tobytes() == expected.tobytes(), timeout=3)
    assert wait_until(lambda: app._icon.menu.items[0].text == "Fed by hand · 4/5 ready", timeout=3)
    assert app._icon.menu.items[1].text == "● x · a line from the summary"
    assert format_status(fed).splitlines()[0] == "● Fed by hand · 4/5 ready"


def test_refresh_quota_now(app: Any, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    engine: Any = services.engine
    original, calls = engine.refresh_quota, []
    monkeypatch.setattr(engine, "refresh_quota", lambda: (calls.append(1), original())[1])
    assert wait_until(lambda: app._icon.menu_updates >= 1, timeout=3)
    item(app, "Refresh quota now")(app._icon)
    assert wait_until(lambda: any(t == "Quota refreshed" for _, t in app._icon.notices), timeout=5)
    assert calls == [1]


@pytest.mark.parametrize("switched_on", [True, False])
def test_the_pool_notice_follows_its_switch(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch, switched_on: bool
) -> None:
    services.store.update(lambda s: setattr(s.notifications, "exhausted", switched_on))
    assert wait_until(lambda: services.store.current.notifications.exhausted is switched_on, timeout=3)
    real = services.engine.status()
    current = {**real, "summary": {**FED_SUMMARY, "state": "healthy"}}
    monkeypatch.setattr(services.engine, "status", lambda: current)
    assert wait_until(lambda: app._icon.menu.items[0].text == "Fed by hand · 4/5 ready", timeout=3)
    current = {
        **real,
        "summary": {**FED_SUMMARY, "state": "exhausted", "next_reset": time.time() + 600, "headline": "out"},
    }
    assert wait_until(lambda: app._icon.menu.items[0].text == "out", timeout=3)
    app.refresh()  # one more tick after the change: still one notice at most
    titles = [t for _, t in app._icon.notices]
    assert titles.count("No account can take requests") == (1 if switched_on else 0)
