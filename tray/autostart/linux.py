"""Launch at login on Linux and other XDG desktops: ``$XDG_CONFIG_HOME/autostart/headway.desktop``.

The entry follows the Desktop Entry and Desktop Application Autostart specifications (checked with
``desktop-file-validate`` in the tests, and run for real with ``dex -a``). ``Exec`` arguments are quoted per the
spec: reserved characters put an argument in double quotes, ``"`$\\`` are backslash-escaped inside them, ``%``
is doubled, and the string-level escape doubles every backslash once more.
"""

from __future__ import annotations

import os
from pathlib import Path

from proxy.config.paths import write_private_file

from . import Autostart, AutostartError

__all__ = ["LinuxAutostart", "desktop_entry", "exec_line", "parse_desktop_entry"]

FILE_NAME = "headway.desktop"
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _quote(arg: str) -> str:
    if "\n" in arg or "\r" in arg:
        raise AutostartError(f"cannot put a line break in an autostart command: {arg!r}")
    arg = arg.replace("%", "%%")
    if arg and not (_RESERVED & set(arg)) and arg != "=":
        quoted = arg
    else:
        quoted = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return quoted.replace("\\", "\\\\")


def exec_line(command: list[str], environment: dict[str, str]) -> str:
    """The ``Exec`` value: ``env NAME=value … command …`` quoted for a desktop entry."""
    prefix = ["env", *(f"{k}={v}" for k, v in sorted(environment.items()))] if environment else []
    return " ".join(_quote(a) for a in [*prefix, *command])


def desktop_entry(command: list[str], environment: dict[str, str]) -> str:
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Version=1.0",
            "Name=Headway",
            "Comment=Local gateway for coding agents, with quota in the tray",
            f"Exec={exec_line(command, environment)}",
            "Terminal=false",
            "NoDisplay=true",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


def parse_desktop_entry(text: str) -> dict[str, str]:
    """The keys of the ``[Desktop Entry]`` group (values unescaped at the string level only)."""
    values: dict[str, str] = {}
    group = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        if group == "Desktop Entry" and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


class LinuxAutostart(Autostart):
    kind = "XDG autostart entry"

    def __init__(
        self, command: list[str], environment: dict[str, str] | None = None, config_home: Path | None = None
    ):
        super().__init__(command, environment)
        self._config_home = config_home

    @property
    def path(self) -> Path:
        home = self._config_home
        if home is None:
            xdg = os.environ.get("XDG_CONFIG_HOME", "")
            home = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
        return home / "autostart" / FILE_NAME

    def location(self) -> str:
        return str(self.path)

    def _entry(self) -> dict[str, str] | None:
        try:
            return parse_desktop_entry(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise AutostartError(f"cannot read {self.path}: {exc}") from exc

    def is_enabled(self) -> bool:
        entry = self._entry()
        if entry is None:
            return False
        return (
            entry.get("Hidden", "false") != "true"
            and entry.get("X-GNOME-Autostart-enabled", "true") != "false"
        )

    def registered_command(self) -> str | None:
        entry = self._entry()
        return None if entry is None else entry.get("Exec")

    def expected_command(self) -> str | None:
        return exec_line(self.command, self.environment)

    def enable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.path, desktop_entry(self.command, self.environment).encode())
        except OSError as exc:
            raise AutostartError(f"cannot write {self.path}: {exc}") from exc

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(f"cannot remove {self.path}: {exc}") from exc
