"""The desktop: a display, a tray host, a tray menu, notifications; and launch at login."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping

from . import Check

__all__ = ["MENU_FIX", "autostart_check", "tray_checks"]

MENU_FIX = (
    "install the system packages gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 (and libgirepository1.0-dev "
    "libcairo2-dev pkg-config to build PyGObject), then `.venv/bin/pip install -e '.[tray-linux]'`"
)


def _session_bus_names(environ: Mapping[str, str]) -> tuple[set[str], set[str]] | None:
    """(names with an owner, activatable names) on the session bus; None without one."""
    if not environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    try:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        bus = DBusAddress(
            "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
        )
        with open_dbus_connection(bus="SESSION") as connection:
            owned = connection.send_and_get_reply(new_method_call(bus, "ListNames"), timeout=3).body[0]
            activatable = connection.send_and_get_reply(
                new_method_call(bus, "ListActivatableNames"), timeout=3
            ).body[0]
        return set(owned), set(activatable)
    except Exception:
        return None


def _x11_tray_owner(environ: Mapping[str, str]) -> bool | None:
    """Whether an X11 system tray (the _NET_SYSTEM_TRAY selection) is there; None when there is no X display."""
    if not environ.get("DISPLAY"):
        return None
    try:
        from Xlib import display as xdisplay

        connection = xdisplay.Display(environ["DISPLAY"])
        try:
            atom = connection.intern_atom(f"_NET_SYSTEM_TRAY_S{connection.get_default_screen()}")
            return bool(connection.get_selection_owner(atom))
        finally:
            connection.close()
    except Exception:
        return None


def _menu_backend() -> str | None:
    """The pystray backend with a menu that would load (appindicator or gtk), None when only xorg (no menu) is left."""
    try:
        import gi
    except ImportError:
        return None
    for namespace, version, backend in (
        ("AyatanaAppIndicator3", "0.1", "appindicator"),
        ("AppIndicator3", "0.1", "appindicator"),
        ("Gtk", "3.0", "gtk"),
    ):
        try:
            gi.require_version(namespace, version)
        except (ValueError, AttributeError):
            continue
        return backend
    return None


def tray_checks(environ: Mapping[str, str], platform: str | None = None) -> list[Check]:
    platform = sys.platform if platform is None else platform
    if platform in ("darwin", "win32"):
        where = "the menu bar" if platform == "darwin" else "the notification area"
        return [Check("tray", "ok", f"the icon, its menu and notifications use {where}")]
    display = environ.get("WAYLAND_DISPLAY") or environ.get("DISPLAY")
    if not display:
        return [
            Check(
                "display",
                "warn",
                "no display (DISPLAY / WAYLAND_DISPLAY unset): `headway` runs headless, without a tray icon",
                "fine on a server (use `headway serve`); on a desktop, start Headway from the desktop session",
            )
        ]
    checks = [Check("display", "ok", f"display {display}")]
    names = _session_bus_names(environ)
    watcher = names is not None and "org.kde.StatusNotifierWatcher" in names[0]
    x11_tray = _x11_tray_owner(environ)
    if watcher:
        checks.append(Check("tray host", "ok", "a StatusNotifier (AppIndicator) host is running"))
    elif x11_tray:
        checks.append(Check("tray host", "ok", "an X11 system tray is running"))
    else:
        checks.append(
            Check(
                "tray host",
                "warn",
                "no tray host found (no StatusNotifierWatcher on the session bus, no X11 system tray): the icon may "
                "not show",
                'on GNOME enable the "AppIndicator and KStatusNotifierItem Support" extension; other desktops: add a '
                "system tray / status notifier panel applet",
            )
        )
    backend = _menu_backend()
    if backend:
        checks.append(Check("tray menu", "ok", f"PyGObject with {backend} support: the icon has a menu"))
    else:
        checks.append(
            Check("tray menu", "warn", "no PyGObject/GTK: the icon shows but has no menu", MENU_FIX)
        )
    if names is None:
        checks.append(
            Check(
                "notifications",
                "warn",
                "no session bus: desktop notifications cannot be shown",
                "start Headway inside the desktop session (DBUS_SESSION_BUS_ADDRESS must be set)",
            )
        )
    elif "org.freedesktop.Notifications" in names[0] or "org.freedesktop.Notifications" in names[1]:
        checks.append(Check("notifications", "ok", "a notification service is available"))
    else:
        checks.append(
            Check(
                "notifications",
                "warn",
                "no notification service on the session bus: alerts (fallbacks, quota) stay in the menu and the log",
                "install and start a notification daemon (e.g. dunst, mako, or your desktop's own)",
            )
        )
    return checks


def _runs_something(command: str) -> str | None:
    """The program a registered command line starts, when it cannot be found; else None."""
    try:
        parts = shlex.split(command.replace("\\\\", "\\"))
    except ValueError:
        return command
    if parts and parts[0] == "env":
        parts = [p for p in parts[1:] if "=" not in p or p.startswith("/")]
    if not parts:
        return command
    program = parts[0]
    if os.path.isabs(program):
        return None if os.access(program, os.X_OK) else program
    return None if shutil.which(program) else program


def autostart_check() -> Check:
    from tray.autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        enabled = entry.is_enabled()
        registered = entry.registered_command()
    except AutostartError as exc:
        return Check(
            "autostart", "fail", str(exc), f"remove or fix {entry.location()}, then `headway autostart on`"
        )
    if not enabled:
        return Check("autostart", "ok", "off (turn on with `headway autostart on`)")
    if registered:
        missing = _runs_something(registered)
        if missing is not None:
            return Check(
                "autostart",
                "fail",
                f"on, but {entry.location()} runs {missing}, which does not exist",
                "`headway autostart on` (rewrites it for this Headway) or `headway autostart off`",
            )
        expected = entry.expected_command()
        if expected is not None and expected != registered:
            return Check(
                "autostart",
                "warn",
                f"on, but the entry starts another Headway: {registered}",
                "`headway autostart on` to start this one instead",
            )
    return Check("autostart", "ok", f"on: {entry.location()}")
