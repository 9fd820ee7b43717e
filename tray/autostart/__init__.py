"""Launch at login, behind one interface with a module per OS.

- Linux (and other XDG desktops): an autostart entry ``$XDG_CONFIG_HOME/autostart/headway.desktop``
  (:mod:`tray.autostart.linux`),
- macOS: a LaunchAgent ``~/Library/LaunchAgents/dev.headway.Headway.plist`` (:mod:`tray.autostart.macos`),
- Windows: a value in the per-user Run key ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``
  (:mod:`tray.autostart.windows`).

Each writes what starts *this* Headway: the frozen app when running from a bundle, else this Python with
``-m tray``. ``HEADWAY_HOME`` is carried along where the mechanism can set environment variables, so a portable
install starts with its own folder. Nothing is started now; the entry takes effect at the next login.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["APP_ID", "Autostart", "AutostartError", "for_platform", "launch_command", "launch_environment"]

APP_ID = "dev.headway.Headway"


class AutostartError(Exception):
    """Launch at login could not be changed; the message says why."""


class Autostart(ABC):
    """Launch at login for one OS mechanism."""

    #: What the mechanism is called, for ``headway autostart status``.
    kind: str = ""

    def __init__(self, command: Sequence[str], environment: Mapping[str, str] | None = None) -> None:
        if not command:
            raise ValueError("empty launch command")
        self.command = list(command)
        self.environment = dict(environment or {})

    @abstractmethod
    def is_enabled(self) -> bool:
        """Whether Headway starts at login."""

    @abstractmethod
    def enable(self) -> None:
        """Start Headway at login (replaces an entry pointing elsewhere)."""

    @abstractmethod
    def disable(self) -> None:
        """Stop starting Headway at login (no error if it was not set up)."""

    @abstractmethod
    def location(self) -> str:
        """Where the entry lives (a file path or a registry value)."""

    def registered_command(self) -> str | None:
        """The command line the existing entry runs, if there is one."""
        return None

    def expected_command(self) -> str | None:
        """The command line :meth:`enable` would register now, in the form :meth:`registered_command` reads back
        (None: this mechanism cannot say)."""
        return None

    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            self.enable()
        else:
            self.disable()


def launch_command() -> list[str]:
    """The command that starts this Headway's tray."""
    executable = Path(sys.executable)
    if getattr(sys, "frozen", False):
        windowed = executable.with_name("Headway.exe")
        if sys.platform == "win32" and windowed.exists():
            return [str(windowed)]
        return [str(executable)]
    if sys.platform == "win32":
        pythonw = executable.with_name("pythonw.exe")
        if pythonw.exists():
            executable = pythonw
    return [str(executable), "-m", "tray"]


def launch_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment the login entry must carry: the Headway home of a portable install."""
    env = os.environ if environ is None else environ
    home = env.get("HEADWAY_HOME")
    return {"HEADWAY_HOME": str(Path(home).expanduser().resolve())} if home else {}


def for_platform(
    platform: str | None = None,
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> Autostart:
    """The launch-at-login mechanism of ``platform`` (default: this machine's)."""
    platform = sys.platform if platform is None else platform
    command = launch_command() if command is None else list(command)
    environment = launch_environment() if environment is None else dict(environment)
    if platform == "darwin":
        from .macos import MacAutostart

        return MacAutostart(command, environment)
    if platform == "win32":
        from .windows import WindowsAutostart

        return WindowsAutostart(command, environment)
    from .linux import LinuxAutostart

    return LinuxAutostart(command, environment)
