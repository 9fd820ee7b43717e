"""Waiting for a keychain that is not up yet, and telling the user so.

``headway`` (the tray, and the launch at login) waits up to two minutes for the system keychain before it gives up:
at login it can start before the Secret Service is on the session bus. ``headway serve`` is run by hand or by a
service manager and stops at once, as before, unless ``HEADWAY_KEYCHAIN_WAIT`` asks it to wait. The waiting itself is
:func:`proxy.secrets.keychain.wait_for_access_key`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.secrets.keychain import KeychainError

__all__ = [
    "DEFAULT_KEYCHAIN_WAIT",
    "KEYCHAIN_WAIT_ENV",
    "NOTIFY_AFTER",
    "KeychainWaitNotice",
    "keychain_wait",
]

log = logging.getLogger("headway.tray")

KEYCHAIN_WAIT_ENV = "HEADWAY_KEYCHAIN_WAIT"
#: How long ``headway`` waits for a keychain that does not answer yet: a launch at login can come before the
#: Secret Service is on the session bus.
DEFAULT_KEYCHAIN_WAIT = 120.0
#: A wait longer than this is shown as a desktop notification too (a launch at login has no terminal).
NOTIFY_AFTER = 10.0


def keychain_wait(environ: Mapping[str, str], default: float, platform: str = sys.platform) -> float:
    """Seconds to wait for the keychain: ``HEADWAY_KEYCHAIN_WAIT`` (0: stop at once), else ``default``.

    On Linux without a session bus (``DBUS_SESSION_BUS_ADDRESS`` unset, as on a server over SSH) nothing is waited
    for: a Secret Service can only come up on a bus, and this process will never have one."""
    if platform.startswith("linux") and not environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return 0.0
    raw = environ.get(KEYCHAIN_WAIT_ENV, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        log.warning("%s=%r is not 0-3600 seconds; waiting %.0f s", KEYCHAIN_WAIT_ENV, raw, default)
        return default
    return seconds


class KeychainWaitNotice:
    """Tells the user, once, that Headway is waiting for the keychain: in the log (and so on the terminal) at the
    first retry, and as a desktop notification once the wait passes :data:`NOTIFY_AFTER` seconds (when there is a
    display)."""

    def __init__(self, wait: float, *, display: bool) -> None:
        self.wait = wait
        self.display = display
        self.told = False
        self.notified = False

    def __call__(self, error: KeychainError, waited: float) -> None:
        if not self.told:
            self.told = True
            text = f"Waiting for the keychain (up to {self.wait:.0f} s; Ctrl+C stops): {self._why(error)}"
            log.warning("%s", text)  # on the terminal too: the log's console handler prints warnings
        if self.display and not self.notified and waited >= NOTIFY_AFTER:
            self.notified = True
            from .alert import desktop_alert

            desktop_alert(
                "Headway is waiting for the keychain",
                f"{self._why(error)}. Headway starts as soon as the keychain answers "
                f"(it gives up after {self.wait:.0f} s).",
            )

    @staticmethod
    def _why(error: KeychainError) -> str:
        from .failures import explain

        failure = explain(error)
        return failure.message if failure is not None else str(error)
