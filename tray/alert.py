"""A one-off desktop notification for when there is no tray icon to carry it: Headway could not start.

``headway`` launched at login has no terminal to print to, so a startup failure (a busy port, no keychain, a broken
settings file) is also shown as a desktop notification: through the notification service on the session bus on
Linux (``notify-send`` when D-Bus cannot be reached from here), ``osascript`` on macOS. Best effort: False when
nothing could show it.
"""

from __future__ import annotations

import json
import logging
import os
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


def _dbus_notify(title: str, message: str, environ: Mapping[str, str]) -> bool:
    if not environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    try:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        service = DBusAddress(
            "/org/freedesktop/Notifications",
            bus_name="org.freedesktop.Notifications",
            interface="org.freedesktop.Notifications",
        )
        urgency = {"urgency": ("y", 2)}
        call = new_method_call(
            service,
            "Notify",
            "susssasa{sv}i",
            ("Headway", 0, "dialog-error", title, message, [], urgency, -1),
        )
        with open_dbus_connection(bus="SESSION") as connection:
            reply = connection.send_and_get_reply(call, timeout=5)
        return bool(reply.header.message_type.name == "method_return")
    except Exception as exc:
        log.debug("desktop notification over D-Bus failed: %s", exc)
        return False


def desktop_alert(
    title: str, message: str, *, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    platform = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    if platform.startswith(("linux", "freebsd")) and _dbus_notify(title, message, env):
        return True
    command = _command(title, message, platform)
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
