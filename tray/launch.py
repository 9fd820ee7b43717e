"""``headway`` with no arguments: the tray when there is a display, else the gateway headless.

Apart from :mod:`tray.tray` so that the headless case — and a second launch, which hands over to the running
instance — never imports the tray's own modules (Pillow, the icon renderer, the menu, pystray).
"""

from __future__ import annotations

import logging
import os
import sys

from proxy.config.paths import Paths

from . import instance
from .app import AlreadyRunning, build_services, run_headless
from .backend import import_pystray
from .desktop import has_display
from .keychain_wait import DEFAULT_KEYCHAIN_WAIT, KeychainWaitNotice, keychain_wait

__all__ = ["run_tray_or_headless"]

log = logging.getLogger("headway.tray")


def _second_launch(paths: Paths, exc: AlreadyRunning) -> None:
    runtime = exc.runtime or {}
    where = f" (pid {runtime.get('pid')}, gateway at {runtime.get('url')})" if runtime else ""
    if instance.request(paths, instance.OPEN_SETTINGS):
        print(f"Headway is already running{where}; it is opening its settings page.", file=sys.stderr)
        return
    # No tray took the request (a headless `headway serve`): open its settings page from here, signed in.
    url = None
    try:
        from web_ui.opener import open_signed_in
        from web_ui.server import cli_login_url

        url = cli_login_url(paths)
    except (ImportError, OSError) as exc:
        log.debug("no settings page to open: %s", exc)
    if url and has_display() and open_signed_in(paths, url):  # the token stays off the browser's command line
        print(f"Headway is already running{where} without a tray; opened its settings page.", file=sys.stderr)
        return
    print(
        f"Headway is already running{where} without a tray. "
        f"Open its settings page with `headway settings`; the settings file is {paths.settings_file}",
        file=sys.stderr,
    )


def run_tray_or_headless(paths: Paths) -> None:
    """The tray (or headless without a display). A failure to start is raised for the CLI to explain
    (:mod:`tray.failures`); with a display it is also shown as a desktop notification, since a launch at login
    has no terminal."""
    try:
        _run_tray_or_headless(paths)
    except Exception as exc:
        if has_display():
            from .alert import desktop_alert
            from .failures import explain

            failure = explain(exc)
            text = failure.message if failure else f"unexpected error: {exc}"
            if failure and failure.fix:
                text += f" — {failure.fix}"
            desktop_alert("Headway could not start", text)
        raise


def _run_tray_or_headless(paths: Paths) -> None:
    from .memory import prepare_long_running_process

    prepare_long_running_process()  # before build_services imports the engine's modules
    from proxy.engine import EngineOptions

    wait = keychain_wait(os.environ, DEFAULT_KEYCHAIN_WAIT)
    notice = KeychainWaitNotice(wait, display=has_display())
    try:
        services = build_services(paths, EngineOptions(keychain_wait=wait, on_keychain_wait=notice))
    except AlreadyRunning as exc:
        _second_launch(paths, exc)
        raise SystemExit(0) from exc
    if not has_display():
        print("No display found: running headless (the gateway without a tray icon).", file=sys.stderr)
        run_headless(services)
        return
    try:
        pystray = import_pystray()
    except Exception as exc:  # no usable backend: GTK missing, display refused, …
        print(f"Cannot show a tray icon ({exc}): running headless.", file=sys.stderr)
        run_headless(services)
        return
    if str(getattr(pystray.Icon, "__module__", "")).endswith("_xorg"):
        from .doctor.desktop import MENU_FIX

        message = f"The tray icon will have no menu (no PyGObject/GTK here). To get one: {MENU_FIX}"
        log.warning("%s", message)
        print(message, file=sys.stderr, flush=True)
    from .tray import TrayApp  # the tray itself: Pillow, the icon renderer, the menu

    TrayApp(services, pystray).run()
