"""The desktop around the tray: whether there is a display, opening files and URLs with the user's default apps,
the clipboard."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Protocol

__all__ = ["Desktop", "DesktopActions", "has_display"]

log = logging.getLogger("headway.tray")


def has_display(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    return platform in ("darwin", "win32") or bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


class DesktopActions(Protocol):
    def open(self, target: str) -> None: ...
    def copy(self, text: str) -> bool: ...


class Desktop:
    """Open files, folders and URLs with the user's default apps, and copy text to the clipboard."""

    def __init__(self, platform: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.platform = sys.platform if platform is None else platform
        self._env = os.environ if environ is None else environ

    def open(self, target: str) -> None:
        if self.platform == "win32":
            os.startfile(target)  # type: ignore[attr-defined,unused-ignore]
            return
        opener = "open" if self.platform == "darwin" else shutil.which("xdg-open")
        if opener is None:
            raise OSError(f"no xdg-open to open {target}; install xdg-utils")
        subprocess.Popen(
            [opener, target],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def clipboard_commands(self) -> list[list[str]]:
        if self.platform == "win32":
            return [["clip"]]
        if self.platform == "darwin":
            return [["pbcopy"]]
        commands = []
        if self._env.get("WAYLAND_DISPLAY"):
            commands.append(["wl-copy"])
        commands += [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
        return commands

    def copy(self, text: str) -> bool:
        """Put ``text`` on the clipboard with the platform's tool; False when there is none."""
        for command in self.clipboard_commands():
            if shutil.which(command[0]) is None:
                continue
            try:
                # xclip and wl-copy stay behind to serve the selection: never wait on their output pipes.
                subprocess.run(
                    command,
                    input=text.encode(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=5,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("clipboard via %s failed: %s", command[0], exc)
                continue
            return True
        return False
