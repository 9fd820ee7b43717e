"""``headway`` with no arguments: the tray app when there is a display, else the headless gateway."""

from __future__ import annotations

import os
import sys

from proxy.paths import Paths

from .app import AlreadyRunning, build_services, run_headless

__all__ = ["run_tray_or_headless"]


def run_tray_or_headless(paths: Paths) -> None:
    try:
        services = build_services(paths)
    except AlreadyRunning as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(0) from exc
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")):
        print("No display found: running headless (the gateway without a tray icon).", file=sys.stderr)
    run_headless(services)
