"""A desktop session (the tray's Xvfb session: Xvfb, trayer as the tray host, dunst for notifications, its own D-Bus)
where gnome-keyring is only D-Bus-activatable and has no unlocked login keyring — a locked keychain, as on a desktop
whose keyring was not unlocked at login:

- `headway doctor` sees the display, the tray host, menu support and notifications, and says the keychain is locked
  and how to unlock it; without trayer it warns that no tray host is there;
- `headway serve` ends in one message naming the locked keychain, and `headway` (the tray) also shows it as a
  desktop notification (observed on the bus with dbus-monitor)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.tray.test_tray_xvfb import ROOT, Session, session, stop, wait_for

__all__ = ["session"]  # the fixture, imported for pytest


def _doctor(session: Session) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "tray", "doctor", "--json"],
        env=session.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return {c["check"]: c for c in json.loads(result.stdout)}


def _names_on_bus(session: Session) -> str:
    return subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
         "org.freedesktop.DBus.ListNames"],
        env=session.env, capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip


def test_doctor_sees_the_tray_host_the_menu_support_and_notifications(session: Session) -> None:
    assert wait_for(lambda: "org.freedesktop.Notifications" in _names_on_bus(session), 10)
    assert wait_for(lambda: _doctor(session)["tray host"]["status"] == "ok", 10)
    checks = _doctor(session)
    assert checks["display"]["status"] == "ok" and session.env["DISPLAY"] in checks["display"]["detail"]
    assert "X11 system tray" in checks["tray host"]["detail"]
    assert checks["notifications"]["status"] == "ok"
    assert checks["tray menu"]["status"] in ("ok", "warn")  # depends on PyGObject being installed
    if checks["tray menu"]["status"] == "warn":
        assert "[tray-linux]" in checks["tray menu"]["fix"]

    for name in ("trayer", "dunst"):
        for process in [p for p in session.processes if p.args[0] == name]:
            stop(process)
    assert wait_for(lambda: "org.freedesktop.Notifications" not in _names_on_bus(session), 10)
    checks = _doctor(session)
    assert checks["tray host"]["status"] == "warn" and "no tray host" in checks["tray host"]["detail"]
    assert checks["notifications"]["status"] in ("ok", "warn")  # dunst may stay activatable through D-Bus


def _headway(session: Session, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tray", *args],
        env=session.env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip


def test_a_locked_keychain_is_named_with_how_to_unlock_it(session: Session) -> None:
    keychain = _doctor(session)["keychain"]
    assert keychain["status"] == "fail"
    assert "locked" in keychain["detail"] and "gnome-keyring-daemon --unlock" in keychain["fix"]

    served = _headway(session, "serve")
    assert served.returncode == 1 and "Traceback" not in served.stdout + served.stderr
    assert "the keychain is locked" in served.stderr and "gnome-keyring-daemon --unlock" in served.stderr

    monitor = session.start(
        "dbus-monitor",
        "--session",
        "interface='org.freedesktop.Notifications',member='Notify'",
        log="monitor.txt",
    )
    assert wait_for(lambda: (session.tmp / "monitor.txt").stat().st_size > 0, 10)
    tray = _headway(session)
    assert tray.returncode == 1 and "Traceback" not in tray.stdout + tray.stderr
    assert "the keychain is locked" in tray.stderr
    shown = lambda: "Headway could not start" in (session.tmp / "monitor.txt").read_text(errors="replace")  # noqa: E731
    assert wait_for(shown, 10), (session.tmp / "monitor.txt").read_text(errors="replace")
    stop(monitor)


def test_a_tray_without_menu_support_says_how_to_get_one(session: Session) -> None:
    home = Path(session.env["HEADWAY_HOME"])
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text('{"secrets": {"backend": "file"}, "gateway": {"port": 0}}')
    env = {**session.env, "PYSTRAY_BACKEND": "xorg"}
    tray = subprocess.Popen(
        [sys.executable, "-m", "tray"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    session.processes.append(tray)
    assert tray.stdout is not None
    seen: list[str] = []
    for line in tray.stdout:
        seen.append(line)
        if "no menu" in line or len(seen) > 50:
            break
    stop(tray)
    tray.stdout.close()
    text = "".join(seen)
    assert "The tray icon will have no menu" in text and "[tray-linux]" in text, text
