"""``headway`` with no arguments: the tray app on the main thread, the engine in the background.

Threads (see docs/architecture.md):

- main: pystray's loop. Menu callbacks only queue work; menu text is read from a snapshot (:class:`MenuView`)
  prepared elsewhere. No network or disk I/O here.
- ``headway-tray-status``: every half second reads ``engine.status()`` (in memory), takes requests from a second
  launch (:mod:`tray.instance`), draws the status ``summary`` as the icon (:mod:`tray.icon`), its tooltip and the
  menu header, works out notifications (:mod:`tray.notify`), and hands images, titles and menu updates to pystray
  (whose backends accept them from any thread). A change of health reaches the icon, tooltip and menu on the next
  tick (well within 2 s); only countdown text waits for :data:`MENU_TEXT_REFRESH_SECONDS`.
- ``headway-tray-actions``: runs what menu items do, one at a time — settings writes through ``store.update``,
  opening pages and folders, the clipboard — catching and logging every error (tray callbacks never raise).

:mod:`tray.launch` starts it: without a display, or when no tray backend loads, Headway says so and runs headless
(and this module is never imported). A second launch for the same ``HEADWAY_HOME`` asks the running tray to open the
settings page, then exits.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import FrameType, ModuleType
from typing import Any

from PIL import Image

from proxy.config.paths import write_private_file
from proxy.engine import StartCancelled
from proxy.features.request_rows import failing_text, set_aside_text
from proxy.secrets.keychain import KeychainError

from . import instance
from .app import Services
from .autostart import Autostart, AutostartError, for_platform
from .desktop import Desktop, DesktopActions
from .icon import IconState, Level, icon_state, render
from .menu import AGENTS, MenuView, build, connection_text, set_setting, signature, to_pystray
from .notify import Throttle, derive, wanted

__all__ = ["TrayApp", "icon_size"]

log = logging.getLogger("headway.tray")

POLL_SECONDS = 0.5
#: Account lines count down; rebuilding an open menu can close it, so text-only changes wait this long.
MENU_TEXT_REFRESH_SECONDS = 30.0
_WIN32_TIP_MAX = 127


def icon_size(platform: str | None = None) -> int:
    """Pixels to draw the tray icon at: the size the platform shows it, so nothing is scaled by much.

    Windows loads the icon at the large-icon size (32 px) and halves it for the 16 px notification area; macOS's
    menu bar is 22 pt, drawn at 2x for Retina; Linux trays and indicators take a file and scale it to the panel.
    """
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return 32
    if platform == "darwin":
        return 44
    try:
        return max(16, min(256, int(os.environ.get("HEADWAY_TRAY_ICON_SIZE", "64"))))
    except ValueError:
        return 64


def _uses_template(state: IconState, platform: str) -> bool:
    """macOS: calm states are template images (tinted with the menu bar); alerts keep their colour."""
    return platform == "darwin" and state.level in (Level.HEALTHY, Level.UNKNOWN, Level.PAUSED)


# --------------------------------------------------------------------------- what menu items do


class TrayActions:
    """The tray's :class:`tray.menu.Actions`. Runs on the action thread."""

    def __init__(self, app: TrayApp) -> None:
        self._app = app
        self._services = app.services

    def set_setting(self, path: str, value: Any) -> None:
        self._services.store.update(lambda settings: set_setting(settings, path, value))
        log.info("tray: %s = %r", path, value)

    def set_paused(self, paused: bool) -> None:
        engine: Any = self._services.engine
        engine.set_paused(paused)
        log.info("tray: gateway %s", "paused" if paused else "resumed")
        self._app.wake()

    def open_settings(self) -> None:
        """The settings page, signed in (``Services.open_settings()``); the settings file when it cannot open."""
        hook = getattr(self._services, "open_settings", None)
        if callable(hook) and hook() is not False:
            return
        log.info("the settings page is not available; opening the settings file")
        self._app.desktop.open(str(self._services.paths.settings_file))

    def refresh_quota(self) -> None:
        """Ask every account with a usage endpoint for its quota now; the icon and menu follow on the next tick."""
        engine: Any = self._services.engine
        engine.call(engine.refresh_quota(), timeout=30.0)
        log.info("tray: quota refreshed")
        self._app.wake()
        summary = engine.status().get("summary") or {}
        self._app.notify("Quota refreshed", str(summary.get("headline") or ""))

    def open_settings_file(self) -> None:
        self._app.desktop.open(str(self._services.paths.settings_file))

    def connect_agent(self, agent: str) -> None:
        engine = self._services.engine
        name = dict(AGENTS)[agent]
        text = connection_text(agent, engine.base_url, engine.access_key or "")
        if self._app.desktop.copy(text):
            self._app.notify(f"{name} settings copied", "Paste them into the agent's configuration.")
            return
        path = self._services.paths.config_dir / f"connect-{agent}.txt"
        write_private_file(path, text.encode())
        self._app.desktop.open(str(path))
        self._app.notify(f"{name} settings", f"No clipboard tool found; the settings are in {path}")

    def set_autostart(self, enabled: bool) -> None:
        self._app.autostart.set_enabled(enabled)
        log.info("tray: launch at login %s (%s)", "on" if enabled else "off", self._app.autostart.location())
        self._app.wake(autostart=True)

    def open_logs(self) -> None:
        self._app.desktop.open(str(self._services.paths.log_dir))

    def check_setup(self) -> None:
        """``headway doctor`` from the menu: a notification with the outcome, and the full report opened."""
        from .doctor import format_checks, run_checks, summary

        checks = run_checks(self._services.paths)
        report = self._services.paths.run_dir / "check-setup.txt"
        write_private_file(report, (format_checks(checks) + "\n").encode())
        worst = next((c for c in checks if c.status == "fail"), None) or next(
            (c for c in checks if c.status == "warn"), None
        )
        message = summary(checks) + (f" {worst.check}: {worst.detail}" if worst else "")
        log.info("tray: setup check: %s", message)
        self._app.notify("Headway setup check", message)
        self._app.desktop.open(str(report))

    def quit(self) -> None:
        self._app.quit()


# --------------------------------------------------------------------------- the tray


class TrayApp:
    def __init__(
        self,
        services: Services,
        pystray: ModuleType,
        *,
        desktop: DesktopActions | None = None,
        autostart: Autostart | None = None,
        poll_seconds: float = POLL_SECONDS,
        platform: str | None = None,
    ) -> None:
        self.services = services
        self.pystray = pystray
        self.desktop: DesktopActions = desktop or Desktop()
        self.autostart = autostart or for_platform()
        self.platform = sys.platform if platform is None else platform
        self.size = icon_size(self.platform)
        self.actions = TrayActions(self)
        self._poll = poll_seconds
        self._inbox = instance.Inbox(services.paths)
        self._throttle = Throttle()
        self._icon: Any = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._recheck_autostart = threading.Event()
        self._jobs: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._view = MenuView(status={}, settings=services.store.current)
        self._menu_shape: Any = None
        self._menu_text: Any = None
        self._menu_built_at = 0.0
        self._icon_key: Any = None
        self._title = ""
        self._previous: Mapping[str, Any] | None = None
        self._autostart_state: bool | None = None
        self._autostart_checked = 0.0
        self._halted_icon: Any = None

    # ------------------------------------------------------------- lifecycle (main thread)

    def run(self) -> None:
        """Start the engine, show the icon, and block until Quit or SIGINT / SIGTERM; then stop everything.

        If the tray backend fails after the engine started, the gateway keeps running headless (say so, log why)
        until SIGINT / SIGTERM: agents keep working even when the desktop's tray does not.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self.services.start()
            except StartCancelled:  # quit while the start waited for the keychain
                return
            try:
                self._run_icon()
            except Exception as exc:
                log.exception("the tray icon failed; the gateway keeps running without it")
                print(
                    f"The tray icon failed ({exc}): running headless until stopped.",
                    file=sys.stderr,
                    flush=True,
                )
                self._release_setup_thread()
                while not self._stopping.wait(0.5):
                    pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_threads()
            self.services.stop()

    def _run_icon(self) -> None:
        first = self._icon_state(self.services.engine.status(), time.time())
        self._icon = self.pystray.Icon(
            "headway",
            icon=render(first, self.size, template=_uses_template(first, self.platform)),
            title=self._tooltip(first.tooltip),
            menu=self.pystray.Menu(self._menu_items),
        )
        self._icon.headway_template = _uses_template(first, self.platform)
        self.services.store.subscribe(self._settings_changed)
        self._icon.run(setup=self._setup)

    def _release_setup_thread(self) -> None:
        """pystray starts a non-daemon setup thread that waits for the backend to become ready; when the backend
        failed, that never happens and the process could not exit. Mark it ready; ``_setup`` sees we are stopping."""
        icon = self._icon
        self._icon = None
        mark_ready = getattr(icon, "_mark_ready", None)
        if callable(mark_ready):
            self._halted_icon = icon
            try:
                mark_ready()
            except Exception as exc:
                log.debug("releasing pystray's setup thread: %s", exc)

    def _setup(self, icon: Any) -> None:
        if icon is self._halted_icon:
            return
        icon.visible = True
        self._after_backend_started()
        self._start_thread("headway-tray-status", self._status_loop)
        self._start_thread("headway-tray-actions", self._action_loop)
        log.info("tray running (%s backend)", type(icon).__module__)

    def _after_backend_started(self) -> None:
        """GTK backends: pystray resets SIGINT to the default (kill) — put ours back; and draw the icon at the size
        the tray shows it (the status icon says so) instead of letting GTK scale a bigger one down."""
        backend = type(self._icon).__module__
        if "gtk" not in backend and "appindicator" not in backend:
            return
        try:
            from gi.repository import GLib
        except ImportError:
            return
        status_icon = getattr(self._icon, "_status_icon", None)

        def on_loop() -> bool:
            signal.signal(signal.SIGINT, self._on_signal)
            if status_icon is not None:
                status_icon.connect("size-changed", lambda _icon, size: self._tray_size_changed(size))
                self._tray_size_changed(status_icon.get_size())
            return False

        GLib.idle_add(on_loop)

    def _tray_size_changed(self, size: int) -> bool:
        if size >= 16:
            self.size = min(int(size), 256)
            self._wake.set()
        return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.quit()

    def quit(self) -> None:
        """Stop the tray loop (any thread); ``run`` then stops the engine."""
        self._stopping.set()
        self._wake.set()
        self.services.engine.cancel_start()
        icon = self._icon
        if icon is not None:
            self._on_tray_thread(icon.stop)

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _stop_threads(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._wake.set()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1fs", thread.name, timeout)

    def wake(self, *, autostart: bool = False) -> None:
        if autostart:
            self._recheck_autostart.set()
        self._wake.set()

    def _settings_changed(self, settings: Any) -> None:
        self._wake.set()

    # ------------------------------------------------------------- the action thread

    def submit(self, name: str, action: Callable[[], None]) -> None:
        """Queue a menu action (called on the tray thread: returns at once)."""
        self._jobs.put((name, action))

    def _action_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            name, action = job
            try:
                action()
            except (AutostartError, KeychainError, OSError, ValueError) as exc:
                log.error("tray: %s failed: %s", name, exc)
                self.notify("Headway", f"{name.rstrip('…')} failed: {exc}")
            except Exception as exc:
                log.exception("tray: %s failed", name)
                self.notify("Headway", f"{name.rstrip('…')} failed: {exc}")

    # ------------------------------------------------------------- the status thread

    def _status_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                for command in self._inbox.take():
                    if command == instance.OPEN_SETTINGS:
                        log.info("a second launch asked to open the settings page")
                        self.submit("Open settings", self.actions.open_settings)
                self.refresh()
            except Exception:
                log.exception("tray status update failed")
            self._wake.wait(self._poll)
            self._wake.clear()

    def _paused(self) -> bool | None:
        engine: Any = self.services.engine
        if not hasattr(engine, "set_paused"):
            return None
        return bool(getattr(engine, "paused", False))

    def _autostart_enabled(self, now: float) -> bool | None:
        if self._recheck_autostart.is_set() or now - self._autostart_checked > 10.0:
            self._recheck_autostart.clear()
            self._autostart_checked = now
            try:
                self._autostart_state = self.autostart.is_enabled()
            except AutostartError as exc:
                log.warning("%s", exc)
                self._autostart_state = None
        return self._autostart_state

    def refresh(self, now: float | None = None) -> None:
        """One status tick: icon, tooltip, notifications, menu. Runs on the status thread (tests call it)."""
        now = time.time() if now is None else now
        status = dict(self.services.engine.status())
        paused = self._paused()
        self._show_state(self._icon_state(status, now))

        switches = self.services.store.current.notifications
        for notice in derive(self._previous, status):
            if wanted(notice, switches) and self._throttle.allow(notice):
                log.info("notify: %s — %s", notice.title, notice.message)
                self.notify(notice.title, notice.message)
        self._previous = status

        view = MenuView(
            status=status,
            settings=self.services.store.current,
            autostart=self._autostart_enabled(now),
            paused=paused,
            now=now,
        )
        self._view = view
        entries = build(view, self.actions)
        text = signature(entries)
        summary = status.get("summary") or {}
        shape = (
            view.settings,
            view.autostart,
            view.paused,
            bool(status.get("settings_error")),
            status.get("listen_error"),
            (summary.get("state"), summary.get("ready"), summary.get("total"), summary.get("attention")),
            tuple(
                (
                    a.get("id"),
                    a.get("state"),
                    a.get("serving"),
                    [round(w["remaining_percent"]) for w in a["windows"]],
                )
                for a in summary.get("accounts") or ()
            ),
        )
        if shape != self._menu_shape or (
            text != self._menu_text and now - self._menu_built_at >= MENU_TEXT_REFRESH_SECONDS
        ):
            if shape != self._menu_shape:
                log.info("tray: %s", entries[0].text if entries else "")
            self._menu_shape, self._menu_text, self._menu_built_at = shape, text, now
            if self._icon is not None:
                self._on_tray_thread(self._icon.update_menu)

    def _icon_state(self, status: Mapping[str, Any], now: float) -> IconState:
        """The icon for this status: its summary drawn, and the tooltip with what is wrong outside the accounts."""
        state = icon_state(status.get("summary") or {}, now)
        extra = []
        if status.get("settings_error"):
            extra.append("⚠ Settings file has errors — using the last good settings")
        if status.get("listen_error"):
            extra.append(f"⚠ {status['listen_error']}")
        if status.get("request_log_set_aside"):
            extra.append("⚠ Request log: " + set_aside_text(status["request_log_set_aside"]))
        if status.get("request_log_failing"):
            extra.append("⚠ Request log " + failing_text(status["request_log_failing"]))
        return replace(state, tooltip="\n".join([state.tooltip, *extra])) if extra else state

    def _show_state(self, state: IconState) -> None:
        icon = self._icon
        if icon is None:
            return
        if (state.key, self.size) != self._icon_key:
            self._icon_key = (state.key, self.size)
            template = _uses_template(state, self.platform)
            image: Image.Image = render(state, self.size, template=template)

            def show() -> None:
                icon.headway_template = template  # read by the macOS icon class; ignored elsewhere
                icon.icon = image

            self._on_tray_thread(show)
        title = self._tooltip(state.tooltip)
        if title != self._title:
            self._title = title
            self._on_tray_thread(lambda: setattr(icon, "title", title))
            self._set_gtk_tooltip(title)

    def _on_tray_thread(self, update: Callable[[], None]) -> None:
        """Hand an icon update to the tray. pystray's GTK backends queue it on their loop themselves and the
        Windows calls are thread-safe; AppKit must only be touched on the main thread, so macOS gets it queued."""
        if self.platform == "darwin":
            from PyObjCTools import AppHelper

            AppHelper.callAfter(update)
        else:
            update()

    def _tooltip(self, text: str) -> str:
        if self.platform == "win32" and len(text) > _WIN32_TIP_MAX:
            return text[: _WIN32_TIP_MAX - 1] + "…"
        return text

    def _set_gtk_tooltip(self, text: str) -> None:
        """pystray's GTK backend sets the status icon's *title*; the hover text is its tooltip."""
        status_icon = getattr(self._icon, "_status_icon", None)
        if status_icon is None:
            return
        try:
            from gi.repository import GLib
        except ImportError:
            return

        def apply() -> bool:
            status_icon.set_tooltip_text(text)
            return False

        GLib.idle_add(apply)

    def notify(self, title: str, message: str) -> None:
        icon = self._icon
        if icon is None or not getattr(icon, "HAS_NOTIFICATION", False):
            return
        try:
            self._on_tray_thread(lambda: icon.notify(message, title))
        except Exception as exc:  # a missing notification daemon must not break the tray
            log.warning("cannot show a notification: %s", exc)

    # ------------------------------------------------------------- the menu (tray thread)

    def _menu_items(self) -> list[Any]:
        return to_pystray(build(self._view, self.actions), self.pystray, self.submit)


# --------------------------------------------------------------------------- entry point
