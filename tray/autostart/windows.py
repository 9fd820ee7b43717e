"""Launch at login on Windows: a value in the per-user Run key.

``HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` value ``Headway`` holds the command line
(no admin rights needed; Task Manager's Startup tab lists it). The registry is reached only through
:class:`RunKey`, so tests replace it; :class:`WinregRunKey` imports ``winreg`` when first used.

A Run key cannot set environment variables: with ``HEADWAY_HOME`` set, the entry would start the default profile,
so enabling refuses and says so.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Protocol

from . import Autostart, AutostartError

__all__ = ["RUN_KEY", "VALUE_NAME", "RunKey", "WindowsAutostart", "WinregRunKey"]

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "Headway"


class RunKey(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class WinregRunKey:
    """The real Run key of the current user."""

    def get(self, name: str) -> str | None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _ = winreg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return str(value)

    def set(self, name: str, value: str) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

    def delete(self, name: str) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, name)
        except FileNotFoundError:
            pass


class WindowsAutostart(Autostart):
    kind = "Run key value"

    def __init__(
        self, command: list[str], environment: dict[str, str] | None = None, run_key: RunKey | None = None
    ):
        super().__init__(command, environment)
        self._key = run_key or WinregRunKey()

    @property
    def command_line(self) -> str:
        return subprocess.list2cmdline(self.command)

    def location(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{VALUE_NAME}"

    def is_enabled(self) -> bool:
        return bool(self.registered_command())

    def expected_command(self) -> str | None:
        return self.command_line

    def registered_command(self) -> str | None:
        try:
            return self._key.get(VALUE_NAME)
        except OSError as exc:
            raise AutostartError(f"cannot read {self.location()}: {exc}") from exc

    def enable(self) -> None:
        if self.environment:
            names = ", ".join(sorted(self.environment))
            raise AutostartError(
                f"a Run key cannot set {names}; launch at login works for the default profile only"
            )
        try:
            self._key.set(VALUE_NAME, self.command_line)
        except OSError as exc:
            raise AutostartError(f"cannot write {self.location()}: {exc}") from exc

    def disable(self) -> None:
        try:
            self._key.delete(VALUE_NAME)
        except OSError as exc:
            raise AutostartError(f"cannot remove {self.location()}: {exc}") from exc
