"""A one-off desktop notification for when there is no tray icon to carry it: Headway could not start.

``headway`` launched at login has no terminal to print to, so a startup failure (a busy port, no keychain, a broken
settings file) is also shown with the desktop's own tool — ``notify-send`` on Linux, ``osascript`` on macOS. Best
effort: False when no tool is there or it fails.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Mapping

__all__ = ["desktop_alert"]

log = logging.getLogger("headway.tray")


def _command(title: str, message: str, platform: str) -> list[str] | None:
    if platform == "darwin":
        script = f"display notification {json.dumps(message)} with title {json.dumps(title)}"
        return ["osascript", "-e", script]
    if platform.startswith("linux") or platform.startswith("freebsd"):
        tool = shutil.which("notify-send")
        return None if tool is None else [tool, "--app-name=Headway", "--urgency=critical", title, message]
    return None


def desktop_alert(title: str, message: str, *, platform: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    command = _command(title, message, sys.platform if platform is None else platform)
    if command is None:
        return False
    try:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=True,
            env=None if environ is None else dict(environ),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("desktop notification via %s failed: %s", command[0], exc)
        return False
    return True
