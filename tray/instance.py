"""Talking to the Headway that already runs for this ``HEADWAY_HOME``: request files in the run folder.

One Headway runs per home: ``build_services`` holds a lock file and raises ``AlreadyRunning`` for a second launch.
That launch then asks the running one to act — today only "open the settings page" — by writing a request file
into ``<run_dir>/requests/``; the running tray polls that folder about twice a second, acts, and deletes the file.
The sender waits for the deletion and so knows whether anyone listened (a headless ``headway serve`` does not).

Why files and not a socket: the run folder is already private (0700, created by ``Paths.ensure``), so the OS does
the authentication — only this user can write there — with no port, token or protocol to get wrong. The reader
still checks each file: a regular file (not a link) owned by this user, not group/other-writable, fresh, small, and
naming a command from :data:`COMMANDS`. Commands take no arguments, so the worst another process of the same user
can do is open the settings page.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from proxy.config.paths import Paths, ensure_private_dir, write_private_file

__all__ = ["COMMANDS", "OPEN_SETTINGS", "Inbox", "request"]

log = logging.getLogger("headway.tray")

OPEN_SETTINGS = "open-settings"
COMMANDS = frozenset({OPEN_SETTINGS})
MAX_AGE_SECONDS = 30.0
_MAX_BYTES = 4096


def requests_dir(paths: Paths) -> Path:
    return paths.run_dir / "requests"


def request(paths: Paths, command: str, timeout: float = 3.0, poll: float = 0.05) -> bool:
    """Ask the running instance to run ``command``; True once it took the request within ``timeout``."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    folder = requests_dir(paths)
    ensure_private_dir(folder)
    path = folder / f"{secrets.token_hex(8)}.json"
    write_private_file(path, json.dumps({"command": command, "pid": os.getpid(), "at": time.time()}).encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(poll)
    try:
        path.unlink()
    except FileNotFoundError:
        return True  # taken at the last moment
    return False


class Inbox:
    """The running instance's side: read, check and remove pending requests. Call from a worker thread."""

    def __init__(self, paths: Paths) -> None:
        self.folder = requests_dir(paths)
        ensure_private_dir(self.folder)

    def _accept(self, path: Path, now: float) -> str | None:
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            log.warning("ignoring %s: not a regular file", path.name)
            return None
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            log.warning("ignoring %s: not owned by this user or writable by others", path.name)
            return None
        if info.st_size > _MAX_BYTES or now - info.st_mtime > MAX_AGE_SECONDS:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        command = data.get("command") if isinstance(data, dict) else None
        if command not in COMMANDS:
            log.warning("ignoring a request with unknown command %r", command)
            return None
        return str(command)

    def take(self) -> list[str]:
        """Pending commands, oldest first; every file looked at is removed (bad or stale ones too)."""
        try:
            entries = sorted(self.folder.glob("*.json"), key=_mtime)
        except OSError:
            return []
        now = time.time()
        commands = []
        for path in entries:
            command = self._accept(path, now)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove request %s: %s", path.name, exc)
            if command is not None:
                commands.append(command)
        return commands


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
